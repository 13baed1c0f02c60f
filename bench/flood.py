"""A flood against a slow model: is it shed quickly, and does the gateway's memory stay bounded?

    .venv/bin/python -m bench.flood [--clients 2000]

Starts a stack from a config with one API key and a per-model limit (8 in flight, 64 queued),
publishes a test LM that takes ~1 s per call, then opens N concurrent HTTP/1.1 clients that each
send one /generate. Prints how many were served and shed, how long the shed ones waited for
their 429, and the gateway process's resident memory before and at its peak.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import yaml

from gateway.cell import CellSettings
from gateway.cell.models.test_lm import MODEL_PATH
from gateway.cli._edge import envoy_settings
from gateway.client import ClientSettings
from gateway.config import GatewaySettings
from gateway.configfile import load_config
from gateway.launch.envoy import EnvoySettings
from gateway.launch.processes import free_port
from gateway.launch.stack import Stack, StackSettings

KEY = "sk-flood-0123456789abcdef"
MODEL = "/sax/test/flood"


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _post(host: str, port: int, body: bytes) -> int:
    """One HTTP/1.1 POST /generate on its own connection; the status code (0: failed).

    Raw asyncio streams, because an HTTP client library's connection pool costs more CPU at
    2,000 connections than the gateway does, and would measure itself.
    """
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return 0
    try:
        head = (
            f"POST /generate HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()
        status_line = await reader.readline()
        await reader.read()  # the rest, until Envoy closes
        return int(status_line.split()[1]) if status_line else 0
    except (OSError, ValueError, IndexError):
        return 0
    finally:
        writer.close()


async def _flood(host: str, port: int, clients: int) -> list[tuple[int, float]]:
    body = json.dumps({"model": MODEL, "query": "q"}).encode()

    async def one() -> tuple[int, float]:
        start = time.monotonic()
        status = await _post(host, port, body)
        return status, time.monotonic() - start

    return list(await asyncio.gather(*(one() for _ in range(clients))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flood-") as tmp:
        base = Path(tmp)
        config_file = base / "saxgw.yaml"
        config_file.write_text(
            yaml.safe_dump(
                {
                    "auth": {
                        "api_keys": [{"key": KEY, "client": "flood", "roles": ["admin", "data"]}]
                    },
                    "quotas": {"model": {"max_in_flight": 8, "max_queued": 64}},
                }
            )
        )
        sax_root = str(base / "sax-root")
        settings = StackSettings(
            gateway=GatewaySettings(
                client=ClientSettings(sax_root=sax_root), config_file=str(config_file)
            ),
            cell=CellSettings(
                sax_root=sax_root,
                fs_root=str(base / "fs-root"),
                admin_port=free_port(),
                model_server_ports=(free_port(),),
            ),
            gateway_ports=(free_port(),),
            envoy=envoy_settings(
                EnvoySettings(
                    gateway_endpoints=(),
                    listen_address="127.0.0.1",
                    listen_port=free_port(),
                    admin_port=free_port(),
                ),
                load_config(config_file).edge,
            ),
            log_dir=str(base),
        )
        (base / "sax-root").mkdir()
        (base / "fs-root").mkdir()
        with Stack(settings) as stack:
            assert stack.wait_healthy(60)
            auth = {"Authorization": f"Bearer {KEY}"}
            body = {
                "model": MODEL,
                "model_path": MODEL_PATH,
                "checkpoint": "None",
                "overrides": {"text": "a b c d e", "delay_ms": "200"},
            }
            with httpx.Client(base_url=stack.http_url, timeout=60, headers=auth) as http:
                http.post("/publish", json=body).raise_for_status()
                http.post("/wait_for_ready", json={"model": MODEL}).raise_for_status()
                http.post("/generate", json={"model": MODEL, "query": "q"}).raise_for_status()
            pid = dict(stack.group.children)["gateway-0"].pid
            before = _rss_kib(pid)
            peak = before
            done = threading.Event()

            def sample() -> None:
                nonlocal peak
                while not done.wait(0.05):
                    peak = max(peak, _rss_kib(pid))

            sampler = threading.Thread(target=sample)
            sampler.start()
            start = time.monotonic()
            port = stack.envoy.listen_port
            results = asyncio.run(_flood("127.0.0.1", port, args.clients))
            elapsed = time.monotonic() - start
            done.set()
            sampler.join()
    served = [t for s, t in results if s == 200]
    shed = [t for s, t in results if s == 429]
    other = Counter(s for s, _ in results if s not in (200, 429))
    print(
        f"clients {args.clients}: {len(served)} served, {len(shed)} shed (429), "
        f"other {dict(other)} (0: no connection)"
    )
    if shed:
        q = statistics.quantiles(shed, n=100)
        print(f"429 latency: p50 {q[49] * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms")
    if served:
        print(f"served latency: max {max(served):.1f} s")
    print(f"flood took {elapsed:.1f} s")
    print(f"gateway RSS: {before / 1024:.1f} MiB before, {peak / 1024:.1f} MiB peak")


if __name__ == "__main__":
    main()
