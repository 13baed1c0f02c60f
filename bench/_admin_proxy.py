"""A counting gRPC proxy in front of the Sax admin server: discovery cost, seen from the admin.

    python -m bench._admin_proxy --target 127.0.0.1:10000 --listen 20000 --listen 20001

Every call on a ``--listen`` port is forwarded to ``--target`` as opaque bytes (all Sax admin
methods are unary) and counted by port and method. The bench points a client at a proxy port
by giving it its own SAX_ROOT whose ``location.proto`` names that port, so the client under
test needs no change. ``/bench.AdminProxy/Counts`` on any port answers the counts as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import signal
from collections.abc import Callable
from typing import Any

import grpc

COUNTS_METHOD = "/bench.AdminProxy/Counts"


def _identity(data: bytes) -> bytes:
    return data


class _Forwarder(grpc.GenericRpcHandler):
    def __init__(self, port: int, target: grpc.aio.Channel, counts: dict[str, Any]) -> None:
        self._port = str(port)
        self._target = target
        self._counts = counts

    def service(self, handler_call_details: Any) -> grpc.RpcMethodHandler[bytes, bytes]:
        method: str = handler_call_details.method
        if method == COUNTS_METHOD:
            return grpc.unary_unary_rpc_method_handler(self._report)
        return grpc.unary_unary_rpc_method_handler(self._forward_to(method))

    async def _report(
        self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> bytes:
        return json.dumps(self._counts).encode()

    def _forward_to(self, method: str) -> Callable[..., Any]:
        call = self._target.unary_unary(
            method, request_serializer=_identity, response_deserializer=_identity
        )
        per_port = self._counts.setdefault(self._port, collections.Counter())

        async def forward(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            per_port[method.rsplit("/", 1)[-1]] += 1
            try:
                response: bytes = await call(request, timeout=context.time_remaining())
            except grpc.aio.AioRpcError as exc:
                await context.abort(exc.code(), exc.details() or "")
            return response

        return forward


async def _serve(target: str, ports: list[int]) -> None:
    channel = grpc.aio.insecure_channel(target)
    counts: dict[str, Any] = {}
    servers = []
    for port in ports:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers([_Forwarder(port, channel, counts)])
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        servers.append(server)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopped.set)
    await stopped.wait()
    await asyncio.gather(*(s.stop(0.5) for s in servers))
    await channel.close()


async def counts(address: str) -> dict[str, dict[str, int]]:
    """Admin RPCs forwarded so far, ``{port: {method: n}}``, from the proxy at ``address``."""
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(
            COUNTS_METHOD, request_serializer=_identity, response_deserializer=_identity
        )
        result: dict[str, dict[str, int]] = json.loads(await call(b"", timeout=5))
        return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench._admin_proxy", description=__doc__)
    parser.add_argument("--target", required=True, help="host:port of the real admin server")
    parser.add_argument("--listen", type=int, action="append", required=True, help="a port")
    args = parser.parse_args()
    asyncio.run(_serve(args.target, args.listen))


if __name__ == "__main__":
    main()
