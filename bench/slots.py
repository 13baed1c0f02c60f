"""What a per-client limit costs a call: the gateway's admission (`Access.admit`, its ACL
check answered from the cache) with no limit, with a limit counted in this process, and with
one counted in a table shared by two workers (gateway/common/slottable.py), alone and while
another process takes and gives slots of that table, 20,000 a second or as fast as it can
(its lock contended).

    python -m bench.slots                   # 7 rounds of 20,000 admissions per case
    python -m bench.slots --rounds 3 --calls 5000

Prints the median microseconds per admission (enter and exit) of each case, and of the
table's own `take` + `give`; the cases take turns in every round.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from gateway.common import slottable
from gateway.common.deadline import Deadline
from gateway.common.slottable import SlotTable
from gateway.config import AccessSettings
from gateway.service._access import Access
from gateway.service._counts import Counts, LocalCounts, SharedCounts

MODEL = "/sax/test/lm"


@dataclass
class _Context:
    client: str

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-saxgw-client", self.client), ("x-forwarded-for", "10.0.0.1"))

    def peer(self) -> str:
        return "ipv4:127.0.0.1:40000"


@dataclass
class _Request:
    model: str = MODEL


class _Client:
    async def list_detail(self, model: str, *, timeout: float) -> Any:
        return type("Detail", (), {"acls": {}})()


def _access(limited: bool, counts: Counts) -> Access:
    settings = AccessSettings(
        client_max_concurrent=MappingProxyType({"team-a": 4} if limited else {}),
        acl_cache_seconds=3600,
    )
    return Access(settings, _Client(), counts)  # type: ignore[arg-type]


async def _admissions(access: Access, calls: int) -> float:
    """Microseconds per admission (enter and exit), ``calls`` back to back."""
    request, context, deadline = _Request(), _Context("team-a"), Deadline.after(3600)
    async with access.admit("Generate", request, context, deadline):  # the ACLs, read once
        pass
    started = time.perf_counter()
    for _ in range(calls):
        async with access.admit("Generate", request, context, deadline):
            pass
    return (time.perf_counter() - started) / calls * 1e6


def _hammer(path: str, go: Any, stop: Any, rate: Any) -> None:
    """Another worker taking and giving slots of another client while ``go``: ``rate`` a
    second (in batches of 100), or without pause when it is 0."""
    table = SlotTable(path, 1)
    while not stop.is_set():
        if not go.wait(0.05):
            continue
        started = time.perf_counter()
        for _ in range(100):
            table.give(table.take("calls:team-b", 1_000_000))
        if rate.value:
            time.sleep(max(0.0, 100 / rate.value - (time.perf_counter() - started)))


def _table_cost(table: SlotTable, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        table.give(table.take("calls:team-a", 4))
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "slots")
        slottable.create(path, workers=2)
        table = SlotTable(path, 0)
        shared = SharedCounts(table, "calls")
        go, stop, rate = (
            multiprocessing.Event(),
            multiprocessing.Event(),
            multiprocessing.Value("i"),
        )
        other = multiprocessing.Process(target=_hammer, args=(path, go, stop, rate))
        other.start()

        def contended(per_second: int) -> float:
            rate.value = per_second
            go.set()
            time.sleep(0.2)
            try:
                return asyncio.run(_admissions(_access(True, shared), args.calls))
            finally:
                go.clear()

        cases: dict[str, Callable[[], float]] = {
            "no limit": lambda: asyncio.run(_admissions(_access(False, shared), args.calls)),
            "limit, this process": lambda: asyncio.run(
                _admissions(_access(True, LocalCounts()), args.calls)
            ),
            "limit, shared table": lambda: asyncio.run(
                _admissions(_access(True, shared), args.calls)
            ),
            # Another process admitting 20,000 calls a second (several gateways at full load).
            "limit, shared, other 20k/s": lambda: contended(20_000),
            # ...and one doing nothing else: the lock held half the time, the worst case.
            "limit, shared, other flat out": lambda: contended(0),
            "table take+give": lambda: _table_cost(table, args.calls),
        }
        results: dict[str, list[float]] = {name: [] for name in cases}
        try:
            for _ in range(args.rounds):  # the cases in turn: a load that comes and goes
                for name, case in cases.items():  # weighs on each alike
                    results[name].append(case())
        finally:
            stop.set()
            other.join()
            table.close()
    for name, values in results.items():
        print(f"{name:<30} {statistics.median(values):6.2f} us  (min {min(values):.2f})")


if __name__ == "__main__":
    main()
