"""sax-gateway: gRPC and HTTP/JSON access to Saxml (Sax) model-serving cells.

Roles, each its own package:

- ``gateway.client``: a pure-Python asyncio Sax client (plus an upstream-shaped ``sax`` facade).
- ``gateway.cell``: an embedded Sax-compatible cell (admin server and CPU model servers).
- ``gateway.service``: the ``saxgateway.v1.SaxGateway`` gRPC service.
- ``gateway.cli``: the ``saxgw`` command.
"""

from __future__ import annotations

from functools import cache


@cache
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sax-gateway")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+unknown"


def __getattr__(name: str) -> str:
    # ``__version__`` is looked up when first used, not when ``gateway`` is imported: reading
    # the installed metadata takes tens of milliseconds, and `saxgw` imports this package
    # before it can catch Ctrl-C.
    if name == "__version__":
        return _version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["__version__"]
