"""sax-gateway: gRPC and HTTP/JSON access to Saxml (Sax) model-serving cells.

Roles, each its own package:

- ``gateway.client``: a pure-Python asyncio Sax client (plus an upstream-shaped ``sax`` facade).
- ``gateway.cell``: an embedded Sax-compatible cell (admin server and CPU model servers).
- ``gateway.service``: the ``saxgateway.v1.SaxGateway`` gRPC service.
- ``gateway.cli``: the ``saxgw`` command.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sax-gateway")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
