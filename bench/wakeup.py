"""How long a grpc.aio server takes to enter its handler, back to back and after idling.

    python -m bench.wakeup                  # 200 calls per kind and gap, on CPU 1
    python -m bench.wakeup --calls 400 --gaps 0.005,0.02,0.05

One grpc.aio server process (the gateway's grpc settings and event loop) and one grpc.aio
client (this process), both on the bench's front core. Each call carries the client's
wall-clock time when it was sent; the handler answers with how long ago that was. Unary and
server-streaming calls alternate, with a pause (the gap) before each. A hop that waits for its
next call idles, so the gap is the time the machine had to fall asleep: on this VM the entry
takes about twice as long after 50 ms of idling as back to back (BENCHMARKS.md, "Where the
time goes"). It is why a stream's first byte (one call every 20 ms per token at c=1) pays
more per hop than a unary call under load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time

import grpc

from bench._stack import pinned
from gateway.client._channels import insecure_channel
from gateway.launch import tuning
from gateway.launch.processes import free_port, port_open

_SERVICE = "bench.Wakeup"


def _since(request: bytes) -> bytes:
    return str(time.time_ns() - int(request)).encode()


async def _serve(port: int) -> None:
    async def unary(request: bytes, context: object) -> bytes:
        return _since(request)

    async def stream(request: bytes, context: object) -> object:
        yield _since(request)

    server = grpc.aio.server()
    handlers: dict[str, grpc.RpcMethodHandler[bytes, bytes]] = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_SERVICE, handlers),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def _measure(port: int, calls: int, gaps: list[float]) -> None:
    channel = insecure_channel(f"127.0.0.1:{port}")
    unary: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        f"/{_SERVICE}/Unary"
    )
    stream: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(
        f"/{_SERVICE}/Stream"
    )

    async def unary_call(request: bytes) -> bytes:
        return await unary(request, timeout=5)

    async def stream_call(request: bytes) -> bytes:
        call = stream(request, timeout=5)
        reply = await call.read()
        while await call.read() is not grpc.aio.EOF:
            pass
        assert isinstance(reply, bytes)
        return reply

    kinds = {"unary": unary_call, "server-streaming": stream_call}
    for gap in gaps:
        entries: dict[str, list[float]] = {k: [] for k in kinds}
        for i in range(calls + 20):  # the first 20: warm-up
            for kind, call in kinds.items():
                await asyncio.sleep(gap)
                reply = await call(str(time.time_ns()).encode())
                if i >= 20:
                    entries[kind].append(int(reply) / 1e6)
        for kind, values in entries.items():
            values.sort()
            p50, p90 = values[len(values) // 2], values[int(len(values) * 0.9)]
            print(
                f"gap {gap * 1000:g} ms  {kind:<16} handler entry p50 {p50:.3f} ms, p90 {p90:.3f}"
            )
    await channel.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--gaps", default="0.005,0.05", help="seconds idle before each call")
    parser.add_argument("--cpu", type=int, default=min(1, (os.cpu_count() or 1) - 1))
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the server process
    args = parser.parse_args()
    if args.serve:
        tuning.run(_serve(args.serve))
        return
    port = free_port()
    with pinned({args.cpu}):
        server = subprocess.Popen(
            [sys.executable, "-m", "bench.wakeup", f"--serve={port}"],
            env={**os.environ, **tuning.grpc_env()},
        )
        try:
            deadline = time.monotonic() + 30
            while not port_open(f"127.0.0.1:{port}"):
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the server did not start")
                time.sleep(0.1)
            tuning.run(_measure(port, args.calls, [float(g) for g in args.gaps.split(",")]))
        finally:
            server.kill()
            server.wait()


if __name__ == "__main__":
    main()
