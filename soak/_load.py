"""The soak's load: closed-loop workers of each kind, the disruptions, and what they saw."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from gateway.cell.models import test_lm
from gateway.launch.ports import listener_pid
from gateway.launch.stack import Stack
from gateway.launch.supervisor import Supervisor

MODEL = "/sax/test/soak"
OVERRIDES = {"text": "the quick brown fox jumps over the lazy dog", "length": "16"}
# Closed-loop workers per kind of call.
WORKERS = {"generate": 6, "listcell": 1, "stream": 2, "churn": 1}


@dataclass
class Disruption:
    at: float
    """Seconds into the load."""
    what: str
    port: int
    pid: int | None = None
    back_after: float | None = None
    """Seconds until something listened on the port again."""


@dataclass(frozen=True)
class Call:
    kind: str
    ended: float
    """Seconds into the load."""
    latency: float
    status: str
    """"200", another HTTP status, "stream: <code>" for an in-band error, or "connection"."""


@dataclass
class Soak:
    stack: Stack
    supervisor: Supervisor
    plan: list[Disruption]
    calls: list[Call] = field(default_factory=list)
    rss_start: dict[str, int] = field(default_factory=dict)
    rss_end: dict[str, int] = field(default_factory=dict)
    _t0: float = 0.0

    def processes(self) -> dict[str, int]:
        s = self.stack.settings
        assert s.cell is not None
        named = {"admin": s.cell.admin_port}
        named |= {f"model server {i}": p for i, p in enumerate(s.cell.model_server_ports)}
        named |= {f"gateway {i}": p for i, p in enumerate(s.gateway_ports)}
        named["envoy"] = self.stack.envoy.listen_port
        pids = {name: listener_pid(port) for name, port in named.items()}
        cell = dict(self.stack.group.children).get("cell")
        if cell is not None:
            pids["cell supervisor"] = cell.pid
        return {name: pid for name, pid in pids.items() if pid is not None}

    async def run(self, seconds: float) -> None:
        async with httpx.AsyncClient(base_url=self.stack.http_url, timeout=60) as http:
            await _publish(http, MODEL, replicas=2, overrides=OVERRIDES)
            self.rss_start = _rss(self.processes())
            self._t0 = time.monotonic()
            stop_at = self._t0 + seconds
            workers = [
                *(self._loop(stop_at, self._generate(http)) for _ in range(WORKERS["generate"])),
                *(self._loop(stop_at, self._listcell(http)) for _ in range(WORKERS["listcell"])),
                *(self._loop(stop_at, self._stream(http)) for _ in range(WORKERS["stream"])),
                self._churn(http, stop_at),
                self._disrupt(stop_at),
                self._progress(stop_at, seconds),
            ]
            await asyncio.gather(*workers)
            self.rss_end = _rss(self.processes())

    def _now(self) -> float:
        return time.monotonic() - self._t0

    def _record(self, kind: str, started: float, status: str) -> None:
        self.calls.append(Call(kind, self._now(), time.monotonic() - started, status))

    async def _loop(self, stop_at: float, one: object) -> None:
        assert callable(one)
        while time.monotonic() < stop_at:
            await one()

    def _generate(self, http: httpx.AsyncClient) -> object:
        async def one() -> None:
            started = time.monotonic()
            status = await _post(http, "/generate", {"model": MODEL, "query": "hello"})
            self._record("generate", started, status)

        return one

    def _listcell(self, http: httpx.AsyncClient) -> object:
        async def one() -> None:
            started = time.monotonic()
            try:
                response = await http.request("GET", "/listcell", json={"model": MODEL})
                status = str(response.status_code)
            except httpx.HTTPError:
                status = "connection"
            self._record("listcell", started, status)
            await asyncio.sleep(0.05)

        return one

    def _stream(self, http: httpx.AsyncClient) -> object:
        async def one() -> None:
            started = time.monotonic()
            status = "200"
            try:
                body = {"model": MODEL, "query": "stream me"}
                async with http.stream("POST", "/generate_stream", json=body) as response:
                    status = str(response.status_code)
                    last: dict[str, object] = {}
                    async for line in response.aiter_lines():
                        if line.startswith("data: "):
                            last = json.loads(line[6:])
                    if status == "200" and (not last.get("done") or last.get("error")):
                        error = last.get("error")
                        code = error.get("code", "?") if isinstance(error, dict) else "cut"
                        status = f"stream: {code}"
            except httpx.HTTPError:
                status = "connection"
            self._record("stream", started, status)

        return one

    async def _churn(self, http: httpx.AsyncClient, stop_at: float) -> None:
        n = 0
        while time.monotonic() < stop_at:
            n += 1
            model = f"/sax/test/churn-{n}"
            steps = (
                ("publish", "/publish", _spec(model)),
                ("wait", "/wait_for_ready", {"model": model, "timeout": "30s"}),
                ("generate", "/generate", {"model": model, "query": "churn"}),
                ("unpublish", "/unpublish", {"model": model}),
            )
            for step, path, body in steps:
                started = time.monotonic()
                status = await _post(http, path, body)
                self._record(f"churn {step}", started, status)
            await asyncio.sleep(1.0)

    async def _disrupt(self, stop_at: float) -> None:
        for disruption in self.plan:
            await asyncio.sleep(max(0.0, disruption.at - self._now()))
            pid = listener_pid(disruption.port)
            if pid is None:
                continue
            disruption.pid = pid
            killed = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            print(
                f"soak: {self._now():.0f} s: killed the {disruption.what} (pid {pid})", flush=True
            )
            while time.monotonic() < stop_at:
                self.supervisor.tick()
                if listener_pid(disruption.port) not in (None, pid):
                    disruption.back_after = time.monotonic() - killed
                    break
                await asyncio.sleep(0.05)

    async def _progress(self, stop_at: float, seconds: float) -> None:
        while time.monotonic() < stop_at:
            self.supervisor.tick()
            await asyncio.sleep(0.2)
            if int(self._now()) % 60 == 0 and self._now() % 60 < 0.2:
                errors = sum(1 for c in self.calls if c.status != "200")
                print(
                    f"soak: {self._now():.0f}/{seconds:.0f} s, {len(self.calls)} calls, "
                    f"{errors} errors",
                    flush=True,
                )


def _spec(model: str) -> dict[str, object]:
    return {"model": model, "model_path": test_lm.MODEL_PATH, "checkpoint": "None", "replicas": 1}


async def _post(http: httpx.AsyncClient, path: str, body: Mapping[str, object]) -> str:
    try:
        return str((await http.post(path, json=body)).status_code)
    except httpx.HTTPError:
        return "connection"


async def _publish(
    http: httpx.AsyncClient, model: str, *, replicas: int, overrides: dict[str, str]
) -> None:
    spec = _spec(model) | {"replicas": replicas, "overrides": overrides}
    response = await http.post("/publish", json=spec)
    response.raise_for_status()
    ready = await http.post(
        "/wait_for_ready", json={"model": model, "replicas": replicas, "timeout": "60s"}
    )
    ready.raise_for_status()


def _rss(pids: dict[str, int]) -> dict[str, int]:
    """Resident memory (KiB) of each named process."""
    out: dict[str, int] = {}
    for name, pid in pids.items():
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    out[name] = int(line.split()[1])
    return out
