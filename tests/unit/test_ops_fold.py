"""The ops server folds the counters and histograms of gateway processes that are gone into one
archive per type: every scraped value stays as it was, the directory holds the live
processes' files and the archives however many processes came and went, and an ops server
killed (SIGKILL) at any step of a fold neither loses nor counts twice what it was folding.

The "gateway processes" are real processes that record metrics the way the gateway does. Their
values are multiples of 1/8, so every sum is exact whatever the order it is added up in.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import Gauge

from gateway.ops import OpsSettings, scrape, start
from gateway.ops._fold import JOURNAL, KINDS, archive_name
from gateway.service._metrics import GatewayMetrics
from tests._metricsdir import Values, unfolded, values

# Records metrics for the call number ``n``, as the gateway does; then exits, or with "wait",
# says "ready" and waits for its stdin to close (or to be killed).
_PROCESS = textwrap.dedent(
    """
    import sys
    from gateway.service._metrics import GatewayMetrics, use_directory
    use_directory(sys.argv[1])
    n = int(sys.argv[2])
    m = GatewayMetrics()
    m.requests.labels("Generate", "OK", "team-a").inc(n)
    m.requests.labels("Generate", "NOT_FOUND", f"team-{n % 3}").inc()
    m.in_flight.labels("Generate").inc()
    m.set_replicas("/sax/test/lm", ["a"] * n)
    m.request_duration.labels("lm.generate", "/sax/test/lm", "").observe(n / 8)
    m.token_usage.labels("lm.generate", "/sax/test/lm", "output", "team-a").observe(n)
    if sys.argv[3:] == ["wait"]:
        print("ready", flush=True)
        sys.stdin.read()
    """
)


def _record(directory: Path, *calls: int) -> None:
    """Processes that record ``calls`` (one each, all at once) and exit."""
    with contextlib.ExitStack() as stack:
        procs = [
            stack.enter_context(
                subprocess.Popen([sys.executable, "-c", _PROCESS, str(directory), str(n)])
            )
            for n in calls
        ]
        assert [p.wait(timeout=60) for p in procs] == [0] * len(procs)


@contextlib.contextmanager
def _running(directory: Path, n: int) -> Iterator[subprocess.Popen[str]]:
    """A process that has recorded ``n`` and stays until the block ends (or it is killed)."""
    command = [sys.executable, "-c", _PROCESS, str(directory), str(n), "wait"]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as p:
        assert p.stdout is not None and p.stdin is not None
        assert p.stdout.readline() == "ready\n"
        try:
            yield p
        finally:
            with contextlib.suppress(BrokenPipeError):
                p.stdin.close()


def _scraped(directory: Path) -> Values:
    return values(scrape(OpsSettings(metrics_dir=str(directory))).decode())


def _requests(calls: list[int]) -> dict[tuple[str, str], float]:
    """The request counts ``calls`` recorded, by code and client."""
    counts = {("OK", "team-a"): float(sum(calls))}
    for n in calls:
        key = ("NOT_FOUND", f"team-{n % 3}")
        counts[key] = counts.get(key, 0.0) + 1
    return counts


def _requests_scraped(values: Values) -> dict[tuple[str, str], float]:
    labels = ("client", "grpc_code", "grpc_method")
    return {
        (dict(k[1])["grpc_code"], dict(k[1])["client"]): v
        for k, v in values.items()
        if k[0] == "saxgw_requests_total" and tuple(name for name, _ in k[1]) == labels
    }


def _db_files(directory: Path) -> set[str]:
    return {p.name for p in directory.glob("*.db")}


def _files_of(proc: subprocess.Popen[str], directory: Path) -> set[str]:
    return {p.name for p in directory.glob(f"*_{proc.pid}-*.db")}


ARCHIVES = {archive_name(kind) for kind in KINDS}


def test_a_fold_leaves_every_scraped_value_as_it_was(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    _record(metrics, 1, 2, 3)
    with _running(metrics, 4) as killed, _running(metrics, 5) as live:
        killed.kill()
        killed.wait(timeout=30)
        before = unfolded(metrics, tmp_path / "before")
        after = _scraped(metrics)  # folds 1, 2, 3 and the killed 4
        assert after == before
        assert _requests_scraped(after) == _requests([1, 2, 3, 4, 5])
        # Only the live process's files are left beside the archives (before: every one).
        assert _db_files(metrics) == ARCHIVES | _files_of(live, metrics)
        assert {p.name for p in metrics.glob("*.alive")} == {f"{live.pid}-{_ns()}.alive"}
        assert _scraped(metrics) == before  # the archives read alone

    # The last one exits: folded into the archives there are.
    after = _scraped(metrics)
    assert _db_files(metrics) == ARCHIVES
    live_gauges = {"saxgw_requests_in_flight", "saxgw_model_replicas"}
    assert after == {k: v for k, v in before.items() if k[0] not in live_gauges}


def _ns() -> str:
    return os.readlink("/proc/self/ns/pid").strip("pid:[]")


def test_the_directory_holds_live_files_and_archives_however_many_processes_ran(
    tmp_path: Path,
) -> None:
    # A gateway that restarts again and again (crash looping, or `--workers N` replaced)
    # left ~256 KB for each life, and every scrape read them all.
    calls: list[int] = []
    with _running(tmp_path, 100) as live:
        for round_ in range(4):
            lives = [4 * round_ + i for i in range(1, 5)]
            _record(tmp_path, *lives)
            calls += lives
            values = _scraped(tmp_path)
            assert _requests_scraped(values) == _requests([*calls, 100])
            others = {f"{live.pid}-{_ns()}.alive", "flush.lock"}
            assert {p.name for p in tmp_path.iterdir()} == (
                ARCHIVES | _files_of(live, tmp_path) | others
            )


# An ops server's scrape that dies of SIGKILL right before its step number argv[2] (every
# rename, removal, sync or reservation of a file it makes is a step); it prints how many
# steps it made if it gets to the end.
_KILLED_SCRAPE = textwrap.dedent(
    """
    import os, signal, sys
    from gateway.ops import OpsSettings, scrape
    kill_at, made = int(sys.argv[2]), 0

    def step(call):
        def counted(*args, **kwargs):
            global made
            made += 1
            if made == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return call(*args, **kwargs)
        return counted

    for name in ("rename", "replace", "unlink", "remove", "fsync", "posix_fallocate"):
        setattr(os, name, step(getattr(os, name)))
    scrape(OpsSettings(metrics_dir=sys.argv[1]))
    print(made)
    """
)


# A Python process per step of the fold (~40 s on a quiet 2-core machine): past the suite's
# 120 s hang guard when the machine is loaded (8 test processes), which is not what this tests.
@pytest.mark.timeout(360)
def test_an_ops_server_killed_at_any_step_of_a_fold_loses_and_doubles_nothing(
    tmp_path: Path,
) -> None:
    template = tmp_path / "template"
    template.mkdir()
    _record(template, 1, 2)
    _scraped(template)  # archives to replace
    _record(template, 3, 4)
    with _running(template, 5) as live:
        expected = unfolded(template, tmp_path / "expected")
        assert _requests_scraped(expected) == _requests([1, 2, 3, 4, 5])
        left = {"journal": 0, "new files": 0}
        kill_at = 0
        while True:
            kill_at += 1
            metrics = tmp_path / f"killed-at-{kill_at}"
            shutil.copytree(template, metrics)
            command = [sys.executable, "-c", _KILLED_SCRAPE, str(metrics), str(kill_at)]
            run = subprocess.run(command, capture_output=True, text=True, timeout=60)
            if run.returncode == 0:
                assert int(run.stdout) == kill_at - 1  # each step was killed at once
                break
            assert run.returncode == -signal.SIGKILL, run.stderr
            if (metrics / JOURNAL).exists():
                left["journal"] += 1
                if left["journal"] % 2:  # the next ops server finishes it as it starts;
                    server = start(OpsSettings(port=0, metrics_dir=str(metrics)))
                    server.server_close()
                    assert not (metrics / JOURNAL).exists()
                # else its first scrape does
            elif list(metrics.glob("*.new")):
                left["new files"] += 1
            assert _scraped(metrics) == expected, f"killed at step {kill_at}"
            assert _db_files(metrics) == ARCHIVES | _files_of(live, metrics)
            assert not list(metrics.glob("*.new")) and not (metrics / JOURNAL).exists()
            shutil.rmtree(metrics)
        # Kills landed before the commit (strays) and after it (a journal to finish).
        assert left["journal"] >= 4 and left["new files"] >= 3, left


def test_every_gateway_metric_is_folded_or_goes_with_its_process() -> None:
    # A new family of a type (or gauge mode) the fold does not know would stay in the files
    # of every process that ever ran, or be folded into a sum where it means something else.
    kinds = set()
    for family in vars(GatewayMetrics()).values():
        if isinstance(family, Gauge):
            assert family._multiprocess_mode.startswith("live"), family
        elif hasattr(family, "_type"):
            kinds.add(family._type)
    assert kinds == set(KINDS)
