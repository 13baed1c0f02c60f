"""Value types of the server commands' flags, and the checks across flags, so that a wrong
value stops ``saxgw up|serve|gateway`` with one line before anything starts (not a traceback,
nor a child that fails and is restarted for ever).

    cmd.add_argument("--port", type=port)                  # 1..65535
    cmd.add_argument("--gateway-ports", type=ports)         # "50051,50052", each once
    cmd.add_argument("--default-timeout", type=seconds)     # positive, at most MAX_SECONDS
    clash = port_clash([("127.0.0.1", 8888, "--port"), ("127.0.0.1", 8888, "--ops-port")])
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
from collections.abc import Iterable
from pathlib import Path

from gateway.common.errors import InvalidArgumentError
from gateway.common.limits import MAX_REPLICAS, MAX_SECONDS
from gateway.common.names import parse_cell_id


def _port(text: str, lowest: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not lowest <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from {lowest} to 65535, got {text!r}")
    return value


def port(text: str) -> int:
    """A TCP port to listen on."""
    return _port(text, 1)


def optional_port(text: str) -> int:
    """A TCP port, or 0: none (``--ops-port 0``), or any free one (``saxgw gateway --port 0``)."""
    return _port(text, 0)


def ports(text: str) -> list[int]:
    """Comma-separated ports, at least one, none twice (``50051,50052``)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError("expected comma-separated ports such as 50051,50052")
    values = [port(p) for p in parts]
    if twice := sorted({p for p in values if values.count(p) > 1}):
        raise argparse.ArgumentTypeError(f"port {twice[0]} is listed twice")
    return values


def replicas(text: str) -> int:
    """A replica count, 0..MAX_REPLICAS: past int32 protobuf refuses it with a traceback."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_REPLICAS:
        raise argparse.ArgumentTypeError(
            f"expected a number of replicas from 0 to {MAX_REPLICAS}, got {text!r}"
        )
    return value


def _number(text: str) -> float:
    """``text`` as a float; NaN (which every range check refuses) when it is none."""
    try:
        return float(text)
    except ValueError:
        return math.nan


def seconds(text: str) -> float:
    """A positive number of seconds, at most `MAX_SECONDS`."""
    value = _number(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return at_most_max_seconds(value, text)


def seconds_or_zero(text: str) -> float:
    """A number of seconds from 0 to `MAX_SECONDS` (``--grace-period 0``: none)."""
    value = _number(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a number of seconds, 0 or more, got {text!r}")
    return at_most_max_seconds(value, text)


def at_most_max_seconds(value: float, text: str) -> float:
    """``value`` (read from ``text``), if it is at most `MAX_SECONDS`: a longer deadline
    overflows grpc's and fails at once. Refused rather than capped: a number that large is
    a typo (a unit too many) more often than a wish to wait for decades."""
    if value > MAX_SECONDS:
        raise argparse.ArgumentTypeError(
            f"expected at most {MAX_SECONDS} seconds (about 31 years), got {text!r}"
        )
    return value


def ratio(text: str) -> float:
    """A share from 0 to 1."""
    value = _number(text)
    if not 0 <= value <= 1:  # NaN fails both
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}")
    return value


def cell_id(text: str) -> str:
    """A Sax cell ID, ``/sax/<cell name>``."""
    try:
        return parse_cell_id(text).id
    except InvalidArgumentError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("cell: ")) from None


def split_port(address: str) -> tuple[str, str | None]:
    """``HOST[:PORT]`` (``[::1]:PORT`` too) as the host and the port's text, None if it has
    none: a bare IPv6 address has none. The port is not checked: `port` does that."""
    if address.startswith("["):
        host, bracket, rest = address.partition("]")
        if bracket and rest.startswith(":"):
            return host + bracket, rest[1:]
        return address, None
    if address.count(":") == 1:
        host, _, number = address.partition(":")
        return host, number
    return address, None


def host_port(text: str) -> str:
    """``HOST:PORT``, as Envoy's config names an upstream (``gateway:50051``)."""
    host, colon, number = text.rpartition(":")
    if not colon or not host or " " in host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT such as gateway:50051, got {text!r}")
    port(number)
    return text


def endpoint(text: str) -> str:
    """A server's URL, ``http[s]://HOST[:PORT]``, or ``HOST:PORT`` (``--gcs-endpoint``,
    ``--otlp-endpoint``): a port out of range failed each call (the GCS client's "Port out of
    range"), or reached another port (grpc takes 103624 as 38088). Empty: none."""
    if not text:
        return text
    host, number = split_port(otlp_target(text))
    if not host or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError(
            f"expected a URL such as http://127.0.0.1:4317, got {text!r}"
        )
    if number is not None:
        port(number)
    return text


def otlp_target(url: str) -> str:
    """The ``HOST:PORT`` of ``url`` (`endpoint`), without scheme, user or path: what `endpoint`
    checks, and the gRPC target a collector's exporters dial, the gateway's and Envoy's: OTLP/
    gRPC has no path, and one (an OTLP/HTTP traces URL's /v1/traces) became part of the
    target, so that every export failed and its spans were lost ("Failed to parse port"):
    Envoy's for any URL, the gateway's without a scheme."""
    rest = url.partition("://")[2] if "://" in url else url
    return rest.partition("/")[0].rpartition("@")[2]


def tls_endpoint(url: str | None) -> bool:
    """Whether a collector's ``url`` asks for TLS (``https://``), as the gateway's exporter and
    Envoy's both read it: ``HOST:PORT`` and ``http://`` are plaintext."""
    return url is not None and url.startswith("https://")


def pem_file(text: str) -> str:
    """A readable file of PEM certificates (``--otlp-certificate``): checked at start, where
    the gateway and Envoy would each have failed on their own, Envoy only at its first span."""
    try:
        data = Path(text).read_bytes()
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {text}: {exc.strerror}") from exc
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise argparse.ArgumentTypeError(f"{text} holds no PEM certificate")
    return text


def ip_address(text: str) -> str:
    """An IP address to listen on: Envoy binds addresses, not host names (``localhost`` is
    taken as 127.0.0.1); an IPv6 one with or without brackets."""
    if text == "localhost":
        return "127.0.0.1"
    bare = text.removeprefix("[").removesuffix("]") if text.startswith("[") else text
    try:
        # In its one spelling: 0:0:0:0:0:0:0:0 is ::, every address of both families.
        return str(ipaddress.ip_address(bare))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an IP address such as 127.0.0.1, 0.0.0.0 or ::1, got {text!r}"
        ) from None


def port_clash(wanted: Iterable[tuple[str, int, str]]) -> str | None:
    """Why the (host, port, role) triples cannot all be bound, if two roles share a port."""
    seen: dict[int, str] = {}
    for _, number, role in wanted:
        if number == 0:
            continue
        if number in seen:
            return f"port {number} is given twice ({seen[number]}; {role})"
        seen[number] = role
    return None


class EnvironmentSaxRoot(str):
    """A ``--sax-root`` taken from the ``SAX_ROOT`` variable, so that a refusal names where the
    value came from (an operator who typed no flag would look for a typo in vain)."""


def add_sax_root_argument(parser: argparse.ArgumentParser) -> None:
    """``--sax-root`` of a command that serves an existing cell (``serve``, ``gateway``): as Sax's
    own tools (saxutil, the Python client) read ``SAX_ROOT`` from the environment, an operator
    who exported it need not repeat it; the flag wins when both are given."""
    exported = os.environ.get("SAX_ROOT")
    given = (exported or "").strip()
    parser.add_argument(
        "--sax-root",
        # Exported but empty (`SAX_ROOT=$ROOT` with ROOT unset) is taken too, for
        # `sax_root_problem` to refuse naming the variable: argparse's "the following arguments
        # are required: --sax-root" told an operator who had set it nothing.
        default=None if exported is None else EnvironmentSaxRoot(given),
        required=exported is None,
        help="SAX_ROOT of the cell (dir or gs://); default: the SAX_ROOT environment variable"
        + (f" ({given})" if given else ", not set" if exported is None else ", set but empty"),
    )


def sax_root_problem(path: str, *, must_exist: bool) -> str | None:
    """What is wrong with a ``--sax-root``: an empty one, or a local one that is not a
    directory (None if nothing, or if it is a URL)."""
    if not path.strip():
        # `--sax-root=$SAX_ROOT` with the variable unset (a unit file's, a compose file's):
        # `saxgw gateway` served the current directory as SAX_ROOT, with no word of it.
        where = (
            "SAX_ROOT is set but empty (the environment's)"
            if isinstance(path, EnvironmentSaxRoot)
            else "--sax-root is empty"
        )
        return f"{where}: give the SAX_ROOT of the cell (a directory or gs://BUCKET/PATH)"
    if "://" in path:
        return None
    from_environment = isinstance(path, EnvironmentSaxRoot)
    named = f"SAX_ROOT={path} (the environment's)" if from_environment else f"--sax-root {path}"
    if os.path.exists(path) and not os.path.isdir(path):
        return f"{named} is not a directory"
    if must_exist and not os.path.isdir(path):
        return (
            f"{named} does not exist; give the SAX_ROOT of a running cell "
            "(a directory or gs://BUCKET/PATH), or run `saxgw up` for an embedded one"
        )
    return None
