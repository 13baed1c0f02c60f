"""Whether Envoy can use a JWKS file (``auth.jwt[].jwks_file``), checked where the config is
loaded: Envoy refuses a key set with no usable key only when it starts, with a protobuf dump
of its whole config, so ``saxgw`` would report "envoy exited" instead of the key at fault.

    problem = jwks_problem('{"keys": [{"kty": "RSA", "n": "...", "e": "AQAB"}]}')  # or None

The rules are those of Envoy's JWT library (google/jwt_verify_lib, ``src/jwks.cc``) on
BoringSSL, measured against Envoy 1.40 (``envoy --mode validate``): a key type it knows, an
``alg`` that fits it, and key material that parses. Like Envoy, one usable key is enough: it
ignores the others (a JWKS copied from an identity provider may hold encryption keys too).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

_B64URL = re.compile(r"[A-Za-z0-9_-]*")

# NIST curves, y^2 = x^3 - 3x + b (mod p): BoringSSL refuses a point not on the curve.
_CURVES: dict[str, tuple[int, int]] = {
    "P-256": (
        2**256 - 2**224 + 2**192 + 2**96 - 1,
        0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B,
    ),
    "P-384": (
        2**384 - 2**128 - 2**96 + 2**32 - 1,
        0xB3312FA7E23EE7E4988E056BE3F82D19181D9C6EFE8141120314088F5013875AC656398D8A2ED19D2A85C8EDD3EC2AEF,
    ),
    "P-521": (
        2**521 - 1,
        0x51953EB9618E1C9A1F929A21A0B68540EEA2DA725B99B315F3B8B489918EF109E156193951EC7E937B1652C0BD3BB1BF073573DF883D2C34F1EF451FD46B503F00,
    ),
}
_EC_ALGS = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_RSA_BITS = (512, 16384)  # BoringSSL's RSA_check_key
_RSA_EXPONENTS = (3, 65537)  # jwt_verify_lib refuses any other
_ED25519_BYTES = 32


class _Unusable(ValueError):
    """Why Envoy cannot use one key."""


def _b64url(key: Mapping[str, Any], name: str) -> bytes:
    """The field ``name`` decoded as Envoy decodes it (absl's WebSafeBase64Unescape): the
    URL-safe alphabet, whitespace skipped, ``=`` padding either absent or complete."""
    value = key.get(name)
    if value is None:
        raise _Unusable(f"no {name!r}")
    if not isinstance(value, str):
        raise _Unusable(f"{name!r} is not a string")
    text = "".join(value.split())
    body = text.rstrip("=")
    padding = len(text) - len(body)
    if not _B64URL.fullmatch(body) or len(body) % 4 == 1 or padding not in (0, -len(body) % 4):
        raise _Unusable(f"{name!r} is not base64url")
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except binascii.Error:
        raise _Unusable(f"{name!r} is not base64url") from None


def _uint(key: Mapping[str, Any], name: str) -> int:
    return int.from_bytes(_b64url(key, name), "big")


def _rsa(key: Mapping[str, Any], alg: str) -> None:
    if alg and not alg.startswith(("RS", "PS")):
        raise _Unusable(f"alg {alg!r} is not RS* or PS* for an RSA key")
    n, e = _uint(key, "n"), _uint(key, "e")
    if e not in _RSA_EXPONENTS:
        raise _Unusable("'e' is not 3 or 65537")
    low, high = _RSA_BITS
    if not low <= n.bit_length() <= high or n % 2 == 0:
        raise _Unusable(f"'n' is no RSA modulus (odd, {low} to {high} bits)")


def _ec(key: Mapping[str, Any], alg: str) -> None:
    if alg and not alg.startswith("ES"):
        raise _Unusable(f"alg {alg!r} is not ES* for an EC key")
    crv = key.get("crv", "")
    if not isinstance(crv, str):
        raise _Unusable("'crv' is not a string")
    if alg and crv and _EC_ALGS.get(alg) != crv:
        raise _Unusable(f"crv {crv!r} does not fit alg {alg!r}")
    curve = _EC_ALGS.get(alg) or crv or ("" if alg else "P-256")
    if curve not in _CURVES:
        named = f"crv {curve!r}" if curve else f"alg {alg!r}"
        raise _Unusable(f"{named} is not a curve of P-256, P-384 or P-521")
    x, y = _uint(key, "x"), _uint(key, "y")
    p, b = _CURVES[curve]
    if x >= p or y >= p or (y * y - x * x * x + 3 * x - b) % p:
        raise _Unusable(f"'x' and 'y' are not a point of {curve}")


def _oct(key: Mapping[str, Any], alg: str) -> None:
    if alg and alg not in ("HS256", "HS384", "HS512"):
        raise _Unusable(f"alg {alg!r} is not HS256, HS384 or HS512 for an oct key")
    if not _b64url(key, "k"):
        raise _Unusable("'k' is empty")


def _okp(key: Mapping[str, Any], alg: str) -> None:
    if alg and alg != "EdDSA":
        raise _Unusable(f"alg {alg!r} is not EdDSA for an OKP key")
    if key.get("crv") != "Ed25519":
        raise _Unusable("'crv' is not Ed25519")
    if len(_b64url(key, "x")) != _ED25519_BYTES:
        raise _Unusable(f"'x' is not {_ED25519_BYTES} bytes")


_KEY_TYPES: dict[str, Callable[[Mapping[str, Any], str], None]] = {
    "RSA": _rsa,
    "EC": _ec,
    "oct": _oct,
    "OKP": _okp,
}


def _check_key(key: Any) -> None:
    if not isinstance(key, Mapping):
        raise _Unusable("not a JSON object")
    kty = key.get("kty")
    if not isinstance(kty, str):
        raise _Unusable("no 'kty' string")
    if kty not in _KEY_TYPES:
        raise _Unusable(f"kty {kty!r} is not one of {', '.join(_KEY_TYPES)}")
    alg = key.get("alg")
    _KEY_TYPES[kty](key, alg if isinstance(alg, str) else "")  # Envoy ignores a non-string alg


class _NotEnvoysJson(ValueError):
    """JSON that Python's decoder takes and Envoy's (protobuf's) refuses: Envoy then exits at
    start with "Jwks is an invalid JSON", where ``saxgw`` said the file was fine."""


def _strict_json(text: str) -> object:
    """``text`` parsed as Envoy parses it: no key twice in an object, no NaN or Infinity, no
    number past a double's range, no lone surrogate in a string."""

    def pairs(items: list[tuple[str, object]]) -> dict[str, object]:
        found: dict[str, object] = {}
        for name, value in items:
            if name in found:
                raise _NotEnvoysJson(f"a key given twice in one object ({name!r})")
            found[name] = value
        return found

    def constant(name: str) -> float:
        raise _NotEnvoysJson(f"{name} is no JSON number")

    def number(literal: str) -> float:
        if math.isinf(value := float(literal)):
            raise _NotEnvoysJson(f"a number past a double's range ({literal[:20]})")
        return value

    def integer(literal: str) -> int:
        number(literal)  # Envoy reads every JSON number as a double
        return int(literal)

    document = json.loads(
        text,
        object_pairs_hook=pairs,
        parse_constant=constant,
        parse_float=number,
        parse_int=integer,
    )
    try:
        json.dumps(document, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise _NotEnvoysJson("a string with a lone surrogate (\\ud800 to \\udfff)") from None
    return document


def jwks_problem(text: str) -> str | None:
    """Why Envoy cannot use the JWKS ``text`` (the first key's reason when none is usable);
    None when it can. Never echoes key material."""
    try:
        document = _strict_json(text)
    except _NotEnvoysJson as exc:
        return f"is not JSON Envoy reads: {exc}"
    except (ValueError, RecursionError):  # nested too deeply for the decoder: no JWKS either
        document = None
    keys = document.get("keys") if isinstance(document, Mapping) else None
    if not isinstance(keys, list) or not keys:
        return "is not a JWKS: a JSON object with a non-empty keys list"
    reasons = []
    for i, key in enumerate(keys):
        try:
            _check_key(key)
        except _Unusable as exc:
            reasons.append(f"keys[{i}]: {exc}")
        else:
            return None
    return f"has no key Envoy can use ({reasons[0]})"
