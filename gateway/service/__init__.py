"""The ``saxgateway.v1.SaxGateway`` gRPC service over a Sax client.

server = await GatewayServer.start(GatewaySettings(client=ClientSettings(sax_root="/tmp/root")))
...
await server.stop()

Role: the gateway service. May import ``gateway.client``, ``gateway.common`` and
``gateway.config``; never the cell, the launchers or the CLI.
"""

from __future__ import annotations

from gateway.service._server import GatewayServer, serve
from gateway.service._servicer import SaxGatewayServicer

__all__ = ["GatewayServer", "SaxGatewayServicer", "serve"]
