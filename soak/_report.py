"""RELIABILITY.md from a finished soak: totals, errors by status, p99 per minute, the
disruptions and what callers saw around them, memory at start and end."""

from __future__ import annotations

import datetime
import math
from collections import Counter, defaultdict

from soak._load import WORKERS, Call, Soak


def _p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)] if ordered else 0.0


def _errors(calls: list[Call]) -> str:
    counts = Counter(c.status for c in calls if c.status != "200")
    return ", ".join(f"{status}: {n}" for status, n in sorted(counts.items())) or "none"


def _rate(calls: list[Call], start: float, end: float) -> float:
    ok = [c for c in calls if c.kind == "generate" and c.status == "200"]
    return sum(1 for c in ok if start <= c.ended < end) / (end - start)


def render(soak: Soak, *, seconds: float, started: float, machine: str) -> str:
    calls = soak.calls
    when = datetime.datetime.fromtimestamp(started, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    kinds = sorted({c.kind for c in calls})
    lines = [
        "# Reliability",
        "",
        "Figures from `make soak` (`python -m soak`): the whole stack as `saxgw up` runs it",
        "(Envoy, 2 gateways, an embedded cell with an admin and 2 model servers) under a mixed",
        "closed-loop load through Envoy's HTTP/JSON port, with the admin, a model server and a",
        "gateway killed (SIGKILL) in the middle. The supervisors restart them; nothing else",
        "intervenes. Regenerate with `make soak` (`SOAK_SECONDS=60 make soak` for a short run).",
        "",
        f"- Run: {when}, {seconds:.0f} s of load, on {machine}.",
        "- The machine was shared with other work while this ran (a loaded machine): absolute",
        "  rates and latencies are low and noisy; errors and recovery times are the point.",
        "- Workers: "
        + ", ".join(f"{n} {kind}" for kind, n in WORKERS.items())
        + " (churn: publish, wait for ready, generate, unpublish a fresh model, in a loop).",
        "",
        "## Totals",
        "",
        "| calls | kind | errors by status |",
        "|---:|---|---|",
    ]
    for kind in kinds:
        of_kind = [c for c in calls if c.kind == kind]
        lines.append(f"| {len(of_kind)} | {kind} | {_errors(of_kind)} |")
    lines.append(f"| **{len(calls)}** | **all** | **{_errors(calls)}** |")
    lines += [
        "",
        "## Disruptions",
        "",
        "Generate calls completed per second in the 10 s before each kill and in the 10 s",
        "after it (kept: the share of throughput kept), the slowest single second of those",
        "10 s (0 would be a stall), and every error in them.",
        "",
        "| at (s) | killed | pid | back after (s) | generate/s before | after | kept "
        "| slowest second | errors within 10 s |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for d in soak.plan:
        near = [c for c in calls if d.at <= c.ended < d.at + 10]
        back = f"{d.back_after:.1f}" if d.back_after is not None else "not seen"
        before, after = _rate(calls, d.at - 10, d.at), _rate(calls, d.at, d.at + 10)
        kept = f"{after / before:.0%}" if before else "-"
        slowest = min(_rate(calls, d.at + i, d.at + i + 1) for i in range(10))
        lines.append(
            f"| {d.at:.0f} | {d.what} | {d.pid} | {back} | {before:.1f} | {after:.1f} | {kept} "
            f"| {slowest:.0f} | {_errors(near)} |"
        )
    lines += [
        "",
        "## Per minute",
        "",
        "Requests completed, errors, and p99 latency (ms) of each kind of call.",
        "",
        "| minute | requests | errors | " + " | ".join(f"p99 {k}" for k in kinds) + " |",
        "|---:|---:|---:|" + "---:|" * len(kinds),
    ]
    by_minute: dict[int, list[Call]] = defaultdict(list)
    for call in calls:
        by_minute[int(call.ended // 60)].append(call)
    for minute in sorted(by_minute):
        group = by_minute[minute]
        errors = sum(1 for c in group if c.status != "200")
        p99s = [
            f"{_p99([c.latency for c in group if c.kind == k and c.status == '200']) * 1000:.0f}"
            for k in kinds
        ]
        lines.append(f"| {minute + 1} | {len(group)} | {errors} | " + " | ".join(p99s) + " |")
    lines += ["", "## Memory (RSS, MiB)", "", "| process | start | end |", "|---|---:|---:|"]
    for name in sorted(set(soak.rss_start) | set(soak.rss_end)):
        start = soak.rss_start.get(name)
        end = soak.rss_end.get(name)
        cells = [f"{v / 1024:.0f}" if v is not None else "-" for v in (start, end)]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    lines += [
        "",
        "Processes killed during the run are new processes at the end, so their two figures",
        "belong to different incarnations.",
        "",
    ]
    return "\n".join(lines)
