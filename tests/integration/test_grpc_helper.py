"""The tests' channel helper (tests/_grpc.py) against the grpc behaviour it exists for: a
channel left open to a stopped server must not fail a new channel to the next server that
gets the same port."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests._grpc import aio_channel

SERVING = health_pb2.HealthCheckResponse.SERVING


async def _health_server(port: int) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, bound


async def test_a_new_server_on_a_reused_port_is_dialled_afresh() -> None:
    first, port = await _health_server(0)
    # A channel some earlier test never closed, its subchannel in reconnect backoff.
    left_open = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        check = health_pb2_grpc.HealthStub(left_open).Check
        assert (await check(health_pb2.HealthCheckRequest())).status == SERVING
        await first.stop(grace=0)
        try:
            # Refused at once; the 10 s (1 s before) only ends a hang, where a loaded host's
            # slow refusal would have failed the test as DEADLINE_EXCEEDED.
            await check(health_pb2.HealthCheckRequest(), timeout=10)
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE
        second, again = await _health_server(port)
        try:
            assert again == port
            async with aio_channel(f"127.0.0.1:{port}") as channel:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest()
                )
            assert reply.status == SERVING
        finally:
            await second.stop(grace=0)
    finally:
        await left_open.close()
