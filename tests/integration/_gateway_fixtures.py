"""A gateway server in the test's own process, over real gRPC on a free port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from gateway.client import ClientSettings
from gateway.config import GatewaySettings
from gateway.service import GatewayServer


@asynccontextmanager
async def running_gateway(
    sax_root: str, client: ClientSettings | None = None, **options: Any
) -> AsyncIterator[GatewayServer]:
    """Serves the cells under ``sax_root`` (with ``client``, if given, as its Sax client's
    settings); ``options`` are other GatewaySettings fields. Stopped at once (no grace
    period) on the way out."""
    settings = GatewaySettings(client=client or ClientSettings(sax_root=sax_root), **options)
    server = await GatewayServer.start(settings)
    try:
        yield server
    finally:
        await server.stop(grace=0)
