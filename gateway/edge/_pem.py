"""Whether Envoy can use the ``tls`` files, checked where the config is loaded: given a
certificate or key it cannot read, Envoy only logs "Filesystem config update rejected" and
resets every connection to the public port, while ``saxgw up`` reported the stack ready.

    problem = key_problem(cert_file, key_file)   # or None; certificates_problem(ca_file)

OpenSSL (Python's `ssl`) reads PEM as Envoy's BoringSSL does. Security level 0: keys that
BoringSSL takes and OpenSSL's default level refuses (RSA 1024) are not this check's business.
"""

from __future__ import annotations

import ssl
from pathlib import Path


class _Encrypted(Exception):
    """The key file wants a passphrase, which the config has no way to give Envoy."""


def _context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


def _passphrase() -> bytes:
    raise _Encrypted


def certificates_problem(path: Path) -> str | None:
    """Why ``path`` holds no PEM certificate, or None."""
    context = _context()
    try:
        context.load_verify_locations(cafile=path)
    except (ssl.SSLError, OSError, UnicodeDecodeError):
        return "holds no PEM certificate"
    if not context.cert_store_stats()["x509"]:  # a file of CRLs only
        return "holds no PEM certificate"
    return None


def key_problem(cert: Path, key: Path) -> str | None:
    """Why ``key`` is no PEM private key of the (readable) certificate ``cert``, or None."""
    try:
        _context().load_cert_chain(cert, key, password=_passphrase)
    except _Encrypted:
        return "is encrypted; Envoy is given no passphrase"
    except ssl.SSLError as exc:
        if exc.reason in ("KEY_VALUES_MISMATCH", "NO_CERTIFICATE_ASSIGNED"):
            return "is not the key of tls.cert_file's certificate"
        return "holds no PEM private key"
    except OSError:
        return "holds no PEM private key"
    return None
