"""Envoy's memory per open SSE stream (HTTP/1.1, or h2c: ``--mode h2_sse``), per variant.

    .venv/bin/python -m bench._stream_memory --streams 1500 --runs 2 base no_retry

One embedded cell and one gateway (the stack `saxgw up` starts) serve a model whose tokens
come 10 s apart; each variant is its own Envoy, rendered as the stack renders it and then
changed by one function of ``VARIANTS`` (bench/_envoy_variants.py), started on free ports in
front of that gateway.
Per run: open ``--streams`` streams, wait for each one's first event, read Envoy's admin
``/memory`` (allocated) and VmRSS; KB per stream is the growth over the idle Envoy, divided
by the streams. ``--mode`` holds connections at an earlier stage instead (idle, headers
only, a body short of its last byte...) or opens native gRPC streams over HTTP/2, or SSE
streams over h2c (``h2_sse``, 200 on each connection).

Read both numbers: ``allocated`` is tcmalloc's, and LuaJIT allocates outside it, so a Lua
filter's coroutine per stream (~13 KB) shows in VmRSS only. VmRSS growth of a fresh Envoy
is under-counted by what its allocator already held; use 3,000 streams or more for it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import functools
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
import yaml
from saxgateway.v1 import gateway_pb2, gateway_pb2_grpc

from bench._capacity import rss_mb
from bench._envoy_variants import VARIANTS
from bench._sse import open_stream
from bench._stack import CELL, PROMPT, TEST_LM
from gateway.cell import CellSettings
from gateway.client import Client, ClientSettings
from gateway.config import GatewaySettings
from gateway.launch.envoy import EnvoySettings, envoy_binary, render
from gateway.launch.processes import ProcessGroup, free_port
from gateway.launch.stack import Stack, StackSettings

MODEL = f"{CELL}/memstream"
IN_FLIGHT = 20_000


def _envoy_memory(admin: str) -> dict[str, int]:
    with urllib.request.urlopen(admin + "/memory", timeout=5) as response:
        memory = json.loads(response.read())
    return {k: int(v) for k, v in memory.items() if str(v).isdigit()}


def _rss_parts(pid: int) -> dict[str, float]:
    """VmRSS split: anonymous (the heap, which streams grow) and file-backed (the binary's own
    pages, 55-70 MB of an idle Envoy, which vary with the page cache and not with streams)."""
    parts = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile"):
            parts[key] = int(value.split()[0]) * 1024 / 1e6
    return parts


def _ready(admin: str) -> bool:
    try:
        with urllib.request.urlopen(admin + "/ready", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


class _Held(asyncio.Protocol):
    """A connection that sends ``parts`` (``None``: a pause) and then holds still."""

    def __init__(self, parts: list[bytes | None]) -> None:
        self.parts = parts
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._sending = asyncio.ensure_future(self._send())

    async def _send(self) -> None:
        for part in self.parts:
            if part is None:
                await asyncio.sleep(0.05)
            elif self.transport is not None:
                self.transport.write(part)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def _request(path: str, body: bytes, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode()


def _client_parts(mode: str) -> list[bytes | None]:
    body = json.dumps({"model": MODEL, "query": PROMPT}).encode()
    head = _request("/generate_stream", body)
    parts: dict[str, list[bytes | None]] = {
        "idle": [],
        "headers": [head],
        "split": [head, None, body],
        "short_body": [head + body[:-1]],
        "split_short": [head, None, body[:-1]],
        "one_byte": [head + body[:1]],
    }
    return parts[mode]


class _H2Sse(asyncio.Protocol):
    """One h2c connection carrying ``count`` SSE streams (``POST /generate_stream``, JSON);
    ``got_data`` is set once every stream has had a DATA frame (its first event)."""

    def __init__(self, count: int) -> None:
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.count, self.waiting = count, set[int]()
        self.ended: collections.Counter[str] = collections.Counter()  # why, of streams ended
        self.statuses: dict[int, str] = {}
        loop = asyncio.get_running_loop()
        self.got_data, self.closed = asyncio.Event(), loop.create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.h2.initiate_connection()
        body = json.dumps({"model": MODEL, "query": PROMPT}).encode()
        for _ in range(self.count):
            stream_id = self.h2.get_next_available_stream_id()
            headers = [
                (":method", "POST"),
                (":path", "/generate_stream"),
                (":scheme", "http"),
                (":authority", "127.0.0.1"),
                ("content-type", "application/json"),
                ("content-length", str(len(body))),
            ]
            self.h2.send_headers(stream_id, headers)
            self.h2.send_data(stream_id, body, end_stream=True)
            self.waiting.add(stream_id)
        transport.write(self.h2.data_to_send())

    def data_received(self, data: bytes) -> None:
        for event in self.h2.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                self.statuses[event.stream_id] = dict(event.headers).get(b":status", b"").decode()
            elif isinstance(event, h2.events.DataReceived):
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                self.waiting.discard(event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self.waiting.discard(event.stream_id)
                self.ended[f"ended {self.statuses.get(event.stream_id)}"] += 1
            elif isinstance(event, h2.events.StreamReset):
                self.waiting.discard(event.stream_id)
                self.ended[f"reset {event.error_code!r}"] += 1
        if not self.waiting:
            self.got_data.set()
        if self.transport is not None:
            self.transport.write(self.h2.data_to_send())

    def connection_lost(self, exc: Exception | None) -> None:
        self.got_data.set()
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def _h2_streams(port: int, count: int, per_connection: int = 200) -> list[Any]:
    """``count`` SSE streams over h2c, ``per_connection`` on each connection (Envoy allows
    256 at once on one)."""
    loop = asyncio.get_running_loop()
    sizes = [min(per_connection, count - first) for first in range(0, count, per_connection)]
    made = await asyncio.gather(
        *(loop.create_connection(functools.partial(_H2Sse, n), "127.0.0.1", port) for n in sizes)
    )
    conns = [protocol for _, protocol in made]
    await asyncio.wait_for(asyncio.gather(*(c.got_data.wait() for c in conns)), 120)
    return conns


async def _open(port: int, count: int, mode: str = "sse", batch: int = 250) -> list[Any]:
    if mode == "grpc":
        return await _grpc_calls(port, count)
    if mode == "h2_sse":
        return await _h2_streams(port, count)
    loop = asyncio.get_running_loop()
    conns: list[Any] = []
    for first in range(0, count, batch):
        size = min(batch, count - first)
        if mode == "sse":
            body = {"model": MODEL, "query": PROMPT}
            conns += await asyncio.gather(
                *(open_stream("127.0.0.1", port, "/generate_stream", body) for _ in range(size))
            )
        else:
            held = functools.partial(_Held, _client_parts("split" if mode == "split_sse" else mode))
            made = await asyncio.gather(
                *(loop.create_connection(held, "127.0.0.1", port) for _ in range(size))
            )
            conns += [protocol for _, protocol in made]
    if mode == "sse":
        await asyncio.wait_for(asyncio.gather(*(s.got_data.wait() for s in conns)), 120)
    elif mode == "grpc":
        conns = await _grpc_calls(port, count)
    elif mode == "split_sse":
        await asyncio.sleep(12)  # the first token is 10 s after the call starts
    else:
        await asyncio.sleep(1)
    return conns


class _GrpcCalls:
    """Server-streaming gRPC calls over channels of at most 200 calls each (one h2
    connection per channel: Envoy allows 256 streams on one)."""

    def __init__(self, channels: list[grpc.aio.Channel], calls: list[Any]) -> None:
        self.channels, self.calls = channels, calls
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def close(self) -> None:
        for call in self.calls:
            call.cancel()

    async def shut(self) -> None:
        for channel in self.channels:
            await channel.close()
        self.closed.set_result(None)


async def _grpc_calls(port: int, count: int) -> list[Any]:
    channels = [
        grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
        )
        for _ in range((count + 199) // 200)
    ]
    calls = []
    for i in range(count):
        stub = gateway_pb2_grpc.SaxGatewayStub(channels[i // 200])
        calls.append(
            stub.GenerateStream(gateway_pb2.GenerateStreamRequest(model=MODEL, query=PROMPT))
        )
    await asyncio.wait_for(asyncio.gather(*(c.read() for c in calls)), 120)
    return [_GrpcCalls(channels, calls)]


def _still_open(stream: Any) -> int:
    """The streams still open of what `_open` returned: a connection, or h2c's many."""
    if isinstance(stream, _H2Sse):
        return 0 if stream.closed.done() else stream.count - stream.ended.total()
    return int(not stream.closed.done())


async def _close(streams: list[Any]) -> None:
    for stream in streams:
        if isinstance(stream, _GrpcCalls):
            stream.close()
            await stream.shut()
    for stream in streams:
        stream.close()
    await asyncio.gather(*(s.closed for s in streams))


def measure(
    stack: Stack,
    name: str,
    workdir: Path,
    count: int,
    settle: float,
    mode: str = "sse",
    heap_dir: Path | None = None,
    warm: int = 0,
) -> dict[str, float]:
    """One Envoy with variant ``name``: its memory idle and with ``count`` streams open."""
    port, admin_port = free_port(), free_port()
    envoy = dataclasses.replace(stack.envoy, listen_port=port, admin_port=admin_port)
    config = yaml.safe_load(render(envoy, secrets_dir=workdir / "secrets"))
    VARIANTS[name](config)
    config["admin"]["allow_paths"].append({"exact": "/heap_dump"})
    path = workdir / f"envoy-{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    admin = f"http://127.0.0.1:{admin_port}"
    group = ProcessGroup(grace=5.0)
    argv = [str(envoy_binary()), "-c", str(path), "--log-level", "warn"]
    argv += ["--disable-hot-restart", "--concurrency", str(stack.envoy.concurrency or 1)]
    group.start("envoy", argv, log_path=str(workdir / f"envoy-{name}.log"))
    try:
        group.wait_until("envoy", lambda: _ready(admin), 30)
        pid = group.children[0][1].pid

        async def run() -> dict[str, float]:
            await _close(await _open(port, warm or 20))  # lazily built state: not per stream
            await asyncio.sleep(settle)
            idle_memory = _envoy_memory(admin)
            idle, idle_rss, idle_parts = idle_memory["allocated"], rss_mb(pid), _rss_parts(pid)
            streams = await _open(port, count, mode)
            await asyncio.sleep(settle)
            held_memory = _envoy_memory(admin)
            held, held_rss, held_parts = held_memory["allocated"], rss_mb(pid), _rss_parts(pid)
            if heap_dir is not None:  # tcmalloc's sampled heap profile (pprof, gzipped)
                with urllib.request.urlopen(admin + "/heap_dump", timeout=30) as response:
                    (heap_dir / f"heap-{name}-{mode}.prof").write_bytes(response.read())
            ok = sum(_still_open(s) for s in streams)
            ended = sum((s.ended for s in streams if isinstance(s, _H2Sse)), collections.Counter())
            await _close(streams)
            return {
                "open": ok,
                **({"ended": dict(ended)} if ended else {}),
                "idle_mb": idle / 1e6,
                "kb_allocated": (held - idle) / 1e3 / count,
                "kb_rss": (held_rss - idle_rss) * 1e3 / count,
                "rss_mb": held_rss,
                "idle_rss_mb": idle_rss,
                "rss_file_mb": held_parts["RssFile"],
                "kb_rss_anon": (held_parts["RssAnon"] - idle_parts["RssAnon"]) * 1e3 / count,
                **{
                    f"kb_{k}": (held_memory[k] - idle_memory[k]) / 1e3 / count
                    for k in sorted(held_memory)
                    if k != "allocated"
                },
            }

        return asyncio.run(run())
    finally:
        group.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", default=["base"])
    parser.add_argument("--streams", type=int, default=1500)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=1, help="Envoy's worker threads")
    parser.add_argument(
        "--mode",
        default="sse",
        choices=[
            "sse",
            "split_sse",
            "grpc",
            "h2_sse",
            "idle",
            "headers",
            "short_body",
            "split_short",
            "one_byte",
        ],
    )
    parser.add_argument(
        "--warm", type=int, default=0, help="open and close this many streams first"
    )
    parser.add_argument("--heap-dir", type=Path, help="save Envoy's /heap_dump here per run")
    args = parser.parse_args()
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variants {unknown}; known: {sorted(VARIANTS)}")
    with tempfile.TemporaryDirectory(prefix="stream-memory-") as tmp:
        workdir = Path(tmp)
        root = workdir / "sax-root"
        quotas = workdir / "saxgw.yaml"
        quotas.write_text(
            f"quotas:\n  models:\n    {MODEL}: {{max_in_flight: {IN_FLIGHT}, max_queued: 0}}\n"
        )
        settings = StackSettings(
            gateway=GatewaySettings(
                client=ClientSettings(sax_root=str(root)),
                default_timeout=600.0,
                max_streams_per_client=IN_FLIGHT,
                config_file=str(quotas),
            ),
            cell=CellSettings(
                sax_root=str(root),
                cell=CELL,
                admin_port=free_port(),
                poll_interval=0.5,
                model_server_ports=(free_port(),),
            ),
            gateway_ports=(free_port(),),
            envoy=EnvoySettings(
                gateway_endpoints=(),
                listen_port=free_port(),
                admin_port=free_port(),
                concurrency=args.concurrency,
            ),
            log_dir=str(workdir / "logs"),
        )
        with Stack(settings) as stack:
            asyncio.run(_publish(str(root)))
            if not stack.wait_healthy(60):
                sys.exit(f"the gateway never became healthy; see {workdir / 'logs'}")
            for run in range(args.runs):
                for name in args.variants:
                    started = time.monotonic()
                    result = measure(
                        stack,
                        name,
                        workdir,
                        args.streams,
                        args.settle,
                        args.mode,
                        args.heap_dir,
                        args.warm,
                    )
                    took = time.monotonic() - started
                    print(
                        json.dumps(
                            {
                                "variant": name,
                                "mode": args.mode,
                                "run": run,
                                **result,
                                "s": round(took),
                            }
                        ),
                        flush=True,
                    )


async def _publish(root: str) -> None:
    text = " ".join(f"m{i}" for i in range(100))
    async with Client(ClientSettings(sax_root=root)) as client:
        await client.publish(MODEL, TEST_LM, "None", 1, {"text": text, "delay_ms": "10000"})
        await client.wait_for_ready(MODEL, 1, timeout=60)


if __name__ == "__main__":
    main()
