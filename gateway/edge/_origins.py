"""The browser origins CORS allows (``--cors-origin``, ``cors.allowed_origins``), as browsers
send them in the ``Origin`` header (RFC 6454 §6.2): Envoy's CORS filter and the origin check
(gateway/edge/_envoy.py) compare the header exactly, so an origin written another way, such
as ``https://app.example.com/`` or ``app.example.com``, matched no request, and its page got
403 with nothing at start to say why.

    allowed_origin("HTTPS://App.Example.com:443")   # "https://app.example.com"
"""

from __future__ import annotations

import ipaddress
import re

_ORIGIN = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<host>[a-z0-9_.-]+|\[[0-9a-f:.]+\])(?::(?P<port>\d{1,5}))?"
)
# A browser leaves the scheme's default port out of the origin it sends.
_DEFAULT_PORTS = {"http": 80, "https": 443}


def ipv6_host(host: str) -> str:
    """``[IPV6]`` as browsers write it in ``Origin`` and ``Host`` (RFC 5952: ``[0:0::1]`` is
    sent as ``[::1]``); ValueError if it is none."""
    return f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"


def allowed_origin(text: str) -> str:
    """``text`` as browsers send it: the scheme and host in lower case, without the scheme's
    default port; ``*`` (any) and ``null`` (sandboxed and ``file:`` pages) as they are.
    ValueError says what is expected."""
    origin = text.strip().lower()
    if origin in ("*", "null"):
        return origin
    match = _ORIGIN.fullmatch(origin)
    if match is None or not _valid(match):
        raise ValueError(
            "expected an origin as browsers send it, scheme://host[:port] without a path "
            "(https://app.example.com), or *"
        )
    scheme, host = match["scheme"], match["host"]
    # As a number: a browser sends :8443 for :08443, and :80 for :080 not at all.
    port = None if match["port"] is None else int(match["port"])
    if host.startswith("["):
        host = ipv6_host(host)  # _valid checked it
    if port is None or _DEFAULT_PORTS.get(scheme) == port:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _valid(match: re.Match[str]) -> bool:
    if match["port"] is not None and not 0 < int(match["port"]) < 65536:
        return False
    if match["host"].startswith("["):
        try:
            ipv6_host(match["host"])
        except ValueError:
            return False
    return True
