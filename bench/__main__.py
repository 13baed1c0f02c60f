"""Runs every benchmark in one go and writes bench/results.json and BENCHMARKS.md.

python -m bench                  # the full run (`make bench`), about 6 minutes on a quiet machine
python -m bench --quick          # a smoke run of every phase (not for citing)
python -m bench --only streams   # one phase; the report keeps the others' last results
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from bench import (
    _capacity,
    _discovery,
    _machine,
    _many_streams,
    _profile,
    _report,
    _streaming,
    _unary,
    _workers,
)
from bench._loadgen import wrk
from bench._stack import PROMPT, UNARY_MODEL, BenchStack

ROOT = Path(__file__).resolve().parents[1]


def _log(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


PHASES = ("discovery", "unary", "profile", "streaming", "rss", "streams", "workers")


async def _run_all(stack: BenchStack, args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    only = set(args.only or PHASES)
    results: dict[str, Any] = {}
    if "discovery" in only:
        _log("discovery cost")
        results["discovery"] = await _discovery.measure(
            stack, calls=500 if quick else 2000, log=_log
        )
    if "unary" in only:
        _log("unary matrix")
        results["unary"] = await _unary.measure(
            stack,
            rounds=1 if quick else args.rounds,
            seconds=1.0 if quick else args.seconds,
            concurrencies=(1, 64),
            log=_log,
        )
    if "profile" in only:
        _log("profiles under load (py-spy)")
        results["profile"] = await _profiles(stack, seconds=3.0 if quick else 6.0)
    if "streaming" in only:
        _log("streaming")
        results["streaming"] = await _streaming.measure(
            stack, rounds=1 if quick else 2, sequential=2 if quick else 5, concurrent=16, log=_log
        )
    if "rss" in only:
        _log("RSS over unary requests")
        total = 10_000 if quick else 50_000
        results["rss_growth"] = await _capacity.rss_growth(
            stack, total=total, step=total // 10, concurrency=32, log=_log
        )
    if "streams" in only:
        _log(f"{args.streams:,} open streams")
        results["many_streams"] = await _many_streams.measure(stack, count=args.streams, log=_log)
    if "workers" in only:
        _log("scale-out: 1 and 2 gateway processes, unpinned")
        results["workers"] = await _workers.measure(
            stack,
            rounds=1 if quick else args.rounds,
            seconds=1.0 if quick else args.seconds,
            concurrency=64,
            log=_log,
        )
    return results


async def _profiles(stack: BenchStack, seconds: float) -> dict[str, Any]:
    body = json.dumps({"model": UNARY_MODEL, "query": PROMPT})
    direct = _unary.runners(stack, channel=None)["direct-h2load"]
    loads = {
        "gateway-0": lambda: wrk(
            f"http://{stack.envoy}/generate", body, concurrency=64, seconds=seconds + 1
        ),
        "modelserver": lambda: direct(64, seconds + 1),
    }
    mains = {"gateway-0": "gateway/cli/run.py", "modelserver": "gateway/cell/_process.py"}
    out: dict[str, Any] = {}
    for name, load in loads.items():
        out[name] = await _profile.record(
            stack.pid(name),
            main=mains[name],
            seconds=seconds,
            out=stack.workdir / f"profile-{name}.txt",
            load=load,
            log=_log,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the unary matrix")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per unary run")
    parser.add_argument(
        "--streams", type=int, default=10_000, help="concurrent SSE streams (the streams phase)"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=PHASES,
        help="run only this phase (repeatable); the report keeps the other phases' last results",
    )
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument("--markdown", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--workdir", type=Path, default=ROOT / ".saxgw" / "bench")
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite the markdown from --results; no run"
    )
    args = parser.parse_args()
    if args.report_only:  # the targets are judged again: the rules may have changed
        results = json.loads(args.results.read_text())
        results["targets"] = _report.targets(results)
        args.results.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
        _report.write_markdown(results, args.markdown)
        return
    missing = [tool for tool in ("wrk", "h2load") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: apt-get install wrk nghttp2-client")
    started = time.monotonic()
    speed_before = _machine.speed()
    with BenchStack(args.workdir) as stack:
        _log(
            f"stack up (logs in {stack.logs}); cell on CPU {stack.cpus.cell}, "
            f"the rest on CPU {stack.cpus.front}"
        )
        results = asyncio.run(_run_all(stack, args))
        if args.only and args.results.exists():  # keep the other phases' last results
            results = {**json.loads(args.results.read_text()), **results}
        results["pinning"] = {"cell": sorted(stack.cpus.cell), "front": sorted(stack.cpus.front)}
    results["machine"] = _machine.describe()
    results["machine_speed"] = _machine.speed_over(speed_before, _machine.speed())
    results["run"] = {
        "quick": args.quick,
        "wall_seconds": time.monotonic() - started,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    results["targets"] = _report.targets(results)
    args.results.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    _report.write_markdown(results, args.markdown)
    _log(f"wrote {args.results} and {args.markdown} in {results['run']['wall_seconds']:.0f} s")
    for target in results["targets"]:
        _log(f"{'met   ' if target['met'] else 'MISSED'} {target['name']}: {target['measured']}")


if __name__ == "__main__":
    main()
