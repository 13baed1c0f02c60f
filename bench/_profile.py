"""Where a process spends its time under load: py-spy samples, summarised.

py-spy samples the target with ``--native`` (C frames too, so time inside grpc's C core and
in system calls is visible) while a load generator drives it at c=64. Only the main thread's
samples count (the one running the asyncio loop and every servicer); idle worker threads
would otherwise swamp them.
"""

from __future__ import annotations

import asyncio
import collections
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]+)(?::\d+)?\)$")
_ADDRESS = re.compile(r"^0x[0-9a-f]+ \((?P<file>[^()]+)\)$")
_SITE = re.compile(r".*/site-packages/")

# Coarse buckets for a frame's file, first match wins.
_SYSCALLS = frozenset({"write", "sendmsg", "recvmsg", "recv", "read", "syscall", "eventfd_write"})
BUCKETS = (
    ("gateway/service", "gateway: servicer, interceptor, errors"),
    ("gateway/client", "gateway: Sax client (routing, channels)"),
    ("grpc/", "grpc (Python layer + C core calls)"),
    ("google/protobuf", "protobuf"),
    ("asyncio/", "asyncio event loop"),
    ("logging/", "logging"),
)


def _short(path: str) -> str:
    path = _SITE.sub("", path)
    return re.sub(r".*/lib/python3\.\d+/", "", path)


def parse(raw: str) -> list[tuple[list[tuple[str, str]], int]]:
    """py-spy's raw (collapsed) output: [(frames root-first as (func, file)), count]."""
    stacks = []
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = []
        for frame in stack.split(";"):
            match = _FRAME.match(frame)
            if match and not frame.startswith("0x"):
                frames.append((match["func"], _short(match["file"])))
            elif address := _ADDRESS.match(frame):  # a C function without symbols
                frames.append(("<native>", _short(address["file"])))
        stacks.append((frames, int(count)))
    return stacks


def summarise(raw: str, *, main: str, top: int = 15) -> dict[str, Any]:
    """Shares of the samples whose stack has a frame in file ``main`` (the main thread)."""
    stacks = [(f, c) for f, c in parse(raw) if any(main in file for _, file in f)]
    total = sum(count for _, count in stacks) or 1
    leaf: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    buckets: collections.Counter[str] = collections.Counter()
    for frames, count in stacks:
        if not frames:
            continue
        func, file = frames[-1]
        leaf[f"{func} ({file})"] += count
        for name in {f"{f} ({p})" for f, p in frames if p.startswith("gateway/")}:
            inclusive[name] += count
        if func == "epoll_wait":
            buckets["idle: waiting in epoll_wait"] += count
            continue
        if func in _SYSCALLS:
            buckets["system calls (socket I/O, eventfd wake-ups of grpc threads)"] += count
            continue
        bucket = "other C code (grpc core, CPython)"
        for _, frame_file in reversed(frames):  # the innermost known frame decides
            found = next((label for prefix, label in BUCKETS if prefix in frame_file), None)
            if found:
                bucket = found
                break
        buckets[bucket] += count

    # Entry points (in every sample) say nothing.
    inclusive = collections.Counter({k: v for k, v in inclusive.items() if v < total})

    def share(counter: collections.Counter[str]) -> list[dict[str, Any]]:
        return [{"name": k, "percent": 100 * v / total} for k, v in counter.most_common(top)]

    return {
        "samples": total,
        "self_time": share(leaf),
        "gateway_inclusive": share(inclusive),
        "by_layer": share(buckets),
    }


async def record(
    pid: int,
    *,
    main: str,
    seconds: float,
    out: Path,
    load: Callable[[], Any],
    log: Callable[[str], None],
) -> dict[str, Any] | None:
    """Samples ``pid`` for ``seconds`` while ``load()`` (a coroutine) runs."""
    py_spy = shutil.which("py-spy") or str(Path(__file__).parents[1] / ".venv/bin/py-spy")
    if not Path(py_spy).exists():
        log("py-spy not found: no profile")
        return None
    proc = await asyncio.create_subprocess_exec(
        py_spy,
        "record",
        f"--pid={pid}",
        f"--duration={seconds:g}",
        "--rate=100",
        "--native",
        "--format=raw",
        f"--output={out}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    await load()
    _, err = await proc.communicate()
    if proc.returncode != 0 or not out.exists():
        log(f"py-spy failed: {err.decode()[-500:]}")
        return None
    return summarise(out.read_text(), main=main)
