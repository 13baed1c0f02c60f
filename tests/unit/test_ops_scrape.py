"""The ops server's scrape: gateway processes' metrics files added up, and the live gauges
of processes that are gone dropped: in the ops server's PID namespace by pid, in another one
(containers sharing the metrics volume) by heartbeat."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.common import metricsfiles
from gateway.common.metricsfiles import SETTLED_AFTER_S, STALE_AFTER_S
from gateway.ops import OpsSettings, scrape

# One short-lived "gateway process": records metrics the way the gateway does, then exits.
_PROCESS = textwrap.dedent(
    """
    import sys
    from gateway.service._metrics import GatewayMetrics, use_directory
    use_directory(sys.argv[1])
    m = GatewayMetrics()
    m.requests.labels("Generate", "OK", "team-a").inc(int(sys.argv[2]))
    m.in_flight.labels("Generate").inc()
    m.request_duration.labels("lm.generate", "/sax/test/lm", "").observe(0.01)
    """
)


def _record(metrics_dir: Path, requests: int) -> None:
    command = [sys.executable, "-c", _PROCESS, str(metrics_dir), str(requests)]
    subprocess.run(command, check=True, timeout=60)


def _values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_scrape_adds_up_processes_and_forgets_the_live_gauges_of_dead_ones(tmp_path: Path) -> None:
    _record(tmp_path, 3)
    _record(tmp_path, 4)
    values = _values(scrape(OpsSettings(metrics_dir=str(tmp_path))).decode())

    labels = (("client", "team-a"), ("grpc_code", "OK"), ("grpc_method", "Generate"))
    assert values[("saxgw_requests_total", labels)] == 7
    histogram = (
        "gen_ai_server_request_duration_seconds_count",
        (
            ("error_type", ""),
            ("gen_ai_operation_name", "lm.generate"),
            ("gen_ai_request_model", "/sax/test/lm"),
        ),
    )
    assert values[histogram] == 2
    # Both processes have exited: their calls in flight are no longer counted.
    assert not any(name == "saxgw_requests_in_flight" for name, _ in values)
    assert not list(tmp_path.glob("gauge_live*"))


_REQUESTS = (("client", "team-a"), ("grpc_code", "OK"), ("grpc_method", "Generate"))
_IN_FLIGHT = ("saxgw_requests_in_flight", (("grpc_method", "Generate"),))


def test_gateways_in_separate_containers_sharing_the_directory_do_not_clash(
    tmp_path: Path,
) -> None:
    # Two gateways running at once, each pid 1 in a PID namespace of its own (a container):
    # their files must differ. Each says when it has recorded its calls, then waits until the
    # test closes its stdin. (Its counter file appears before it holds the count: a file is
    # made when a label set is first used, and the count written after.)
    script = _PROCESS + "print('recorded', flush=True)\nsys.stdin.read()\n"
    command = ["unshare", "--pid", "--fork", sys.executable, "-c", script, str(tmp_path)]
    with contextlib.ExitStack() as stack:
        for requests in (3, 4):
            gateway = subprocess.Popen(
                [*command, str(requests)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
            stack.enter_context(gateway)
            assert gateway.stdin is not None and gateway.stdout is not None
            stack.callback(gateway.stdin.close)
            assert gateway.stdout.readline() == b"recorded\n"
        assert len(list(tmp_path.glob("counter_1-*.db"))) == 2
        beats = list(tmp_path.glob("1-*.alive"))
        assert len(beats) == 2

        # The ops server cannot look them up by pid in another namespace: their fresh
        # heartbeats keep their calls in flight counted.
        values = _values(scrape(OpsSettings(metrics_dir=str(tmp_path))).decode())
        assert values[("saxgw_requests_total", _REQUESTS)] == 7
        assert values[_IN_FLIGHT] == 2
        assert len(list(tmp_path.glob("counter_1-*.db"))) == 2  # not folded: not gone

    # Both exited as if killed; silent for longer than STALE_AFTER_S, they are gone: their
    # live gauges go, their counts stay, in their own files while a stalled process (a paused
    # container) could still come back and write to them...
    old = time.time() - STALE_AFTER_S - 1
    for beat in beats:
        os.utime(beat, (old, old))
    values = _values(scrape(OpsSettings(metrics_dir=str(tmp_path))).decode())
    assert values[("saxgw_requests_total", _REQUESTS)] == 7
    assert _IN_FLIGHT not in values
    assert not list(tmp_path.glob("gauge_live*"))
    assert (
        len(list(tmp_path.glob("counter_1-*.db"))) == 2 and len(list(tmp_path.glob("*.alive"))) == 2
    )

    # ...and silent for longer than SETTLED_AFTER_S, folded into the archives, heartbeats gone.
    older = time.time() - SETTLED_AFTER_S - 1
    for beat in beats:
        os.utime(beat, (older, older))
    values = _values(scrape(OpsSettings(metrics_dir=str(tmp_path))).decode())
    assert values[("saxgw_requests_total", _REQUESTS)] == 7
    assert _IN_FLIGHT not in values
    assert not list(tmp_path.glob("gauge_live*")) and not list(tmp_path.glob("*.alive"))
    assert sorted(p.name for p in tmp_path.glob("*.db")) == [
        "counter_archive.db",
        "histogram_archive.db",
    ]


# A gateway process with calls queued for a model, which it may then have seen unpublished
# (its gauge NaN); it says when it has written them, and lives until its stdin closes.
_QUEUED = textwrap.dedent(
    """
    import sys
    from gateway.service._metrics import GatewayMetrics, use_directory
    use_directory(sys.argv[1])
    m = GatewayMetrics()
    m.queues(lambda model: True)("/sax/test/lm").calls += int(sys.argv[2])
    m.flush()
    if sys.argv[3] == "unpublished":
        m.forget_model("/sax/test/lm")
    print("recorded", flush=True)
    sys.stdin.read()
    """
)
_MODEL_QUEUED = ("saxgw_model_calls_queued", (("gen_ai_request_model", "/sax/test/lm"),))


def test_a_model_one_process_forgot_still_shows_the_calls_another_has_queued(
    tmp_path: Path,
) -> None:
    # Calls queued are added up over processes (livesum): one process's NaN (its model
    # unpublished, as its watch saw) made the sum NaN, and the scrape left out the series
    # while another process still had calls waiting for the model.
    with contextlib.ExitStack() as stack:
        gateways = {}
        for calls, seen in ((2, "unpublished"), (1, "published")):
            command = [sys.executable, "-c", _QUEUED, str(tmp_path), str(calls), seen]
            gateway = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            stack.enter_context(gateway)
            assert gateway.stdin is not None and gateway.stdout is not None
            stack.callback(gateway.stdin.close)
            assert gateway.stdout.readline() == b"recorded\n"
            gateways[seen] = gateway
        values = _values(scrape(OpsSettings(metrics_dir=str(tmp_path))).decode())
        assert values[_MODEL_QUEUED] == 1
        # The other process exits: the model is gone from every live process, and so is its
        # series (not a 0, nor a NaN).
        live = gateways["published"]
        assert live.stdin is not None
        live.stdin.close()
        live.wait(timeout=60)
        text = scrape(OpsSettings(metrics_dir=str(tmp_path))).decode()
        assert _MODEL_QUEUED not in _values(text)
        assert "/sax/test/lm" not in text


# A gateway whose pid (in its namespace) a dead gateway had: restarted in its container, say.
_SUCCESSOR = textwrap.dedent(
    """
    import os, sys
    from gateway.common.metricsfiles import process_id
    from gateway.service._metrics import GatewayMetrics, use_directory
    folder = sys.argv[1]
    for name in os.listdir(folder):  # the dead one's files, as if they bore this pid
        if name.endswith(".db"):
            kind, _, _ = name.rpartition("_")
            os.rename(os.path.join(folder, name), os.path.join(folder, f"{kind}_{process_id()}.db"))
    use_directory(folder)
    m = GatewayMetrics()
    m.requests.labels("Generate", "OK", "team-a").inc()
    m.in_flight.labels("Generate").inc()
    print(process_id())
    sys.stdout.flush()
    sys.stdin.read()  # alive until the test has scraped
    """
)


def test_a_gateway_reusing_a_dead_ones_pid_starts_its_live_gauges_from_zero(
    tmp_path: Path,
) -> None:
    _record(tmp_path, 3)  # exits with one call "in flight", as if killed
    command = [sys.executable, "-c", _SUCCESSOR, str(tmp_path)]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as successor:
        assert successor.stdout is not None and successor.stdin is not None
        ident = successor.stdout.readline().decode().strip()
        assert ident.startswith(f"{successor.pid}-")
        values = _values(scrape(OpsSettings(metrics_dir=str(tmp_path))).decode())
        # The counter carries on from the file (totals never go backwards); in flight is its own.
        assert values[("saxgw_requests_total", _REQUESTS)] == 4
        assert values[_IN_FLIGHT] == 1
        successor.stdin.close()


# A gateway process half way through a flush: its request counter written, its histogram not
# yet, when the parent says so (a line on stdin).
_HALF_FLUSH = textwrap.dedent(
    """
    import sys
    from gateway.common import metricsfiles
    from gateway.service._metrics import GatewayMetrics, use_directory
    use_directory(sys.argv[1])
    m = GatewayMetrics()
    with metricsfiles.flushing(sys.argv[1], wait=True):
        m.requests.labels("Generate", "OK", "team-a").inc()
        print("half", flush=True)
        sys.stdin.readline()
        m.request_duration.labels("lm.generate", "/sax/test/lm", "").observe(0.01)
    """
)


def test_a_scrape_never_reads_a_flush_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before, a scrape read each file as it found it: a counter from after a call and a
    # histogram from before it, so the dashboard's ratios of the two could pass 100%.
    # A scrape waits for a flush at most LOCK_WAIT_S (1 s), then reads anyway (as
    # test_a_scrape_does_not_wait_for_a_stopped_flush_for_ever shows). With that budget this
    # test raced the clock: the half second slept below and the writer's finishing its flush
    # had to fit in it, which a loaded machine need not do. Here the scrape waits for the
    # flush however long that takes.
    monkeypatch.setattr(metricsfiles, "LOCK_WAIT_S", 60.0)
    command = [sys.executable, "-c", _HALF_FLUSH, str(tmp_path)]
    with (
        subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        ) as writer,
        ThreadPoolExecutor(1) as pool,
    ):
        assert writer.stdin is not None and writer.stdout is not None
        assert writer.stdout.readline() == "half\n"
        scraped = pool.submit(scrape, OpsSettings(metrics_dir=str(tmp_path)))
        time.sleep(0.5)
        assert not scraped.done()  # it waits for the flush
        writer.stdin.write("\n")
        writer.stdin.close()
        values = _values(scraped.result(timeout=30).decode())
        assert writer.wait(timeout=30) == 0
    labels = (("client", "team-a"), ("grpc_code", "OK"), ("grpc_method", "Generate"))
    assert values[("saxgw_requests_total", labels)] == 1
    duration = (
        ("error_type", ""),
        ("gen_ai_operation_name", "lm.generate"),
        ("gen_ai_request_model", "/sax/test/lm"),
    )
    assert values[("gen_ai_server_request_duration_seconds_count", duration)] == 1


def test_a_flush_that_finds_a_scrape_reading_waits_for_the_next_tick(tmp_path: Path) -> None:
    with (
        metricsfiles.scraping(str(tmp_path)),
        metricsfiles.flushing(str(tmp_path), wait=False) as free,
    ):
        assert not free
    with metricsfiles.flushing(str(tmp_path), wait=False) as free:
        assert free
        with metricsfiles.flushing(str(tmp_path), wait=False) as also:
            assert also  # flushes share the lock


def test_a_scrape_does_not_wait_for_a_stopped_flush_for_ever(tmp_path: Path) -> None:
    # A gateway stopped (SIGSTOP) inside its flush holds the lock: scrapes wait a moment, then
    # read anyway, rather than pile up behind it.
    with ThreadPoolExecutor(1) as pool, metricsfiles.flushing(str(tmp_path), wait=True) as held:
        assert held
        scraped = pool.submit(scrape, OpsSettings(metrics_dir=str(tmp_path)))
        assert scraped.result(timeout=metricsfiles.LOCK_WAIT_S + 10) is not None


class _SteppedClock:
    """The clocks `metricsfiles` reads: the wall clock stepped by ``step`` (NTP, a VM's resume,
    a hand), and the monotonic one ``waited`` seconds on."""

    def __init__(self) -> None:
        self.step = 0.0
        self.waited = 0.0

    def time(self) -> float:
        return time.time() + self.step

    def monotonic(self) -> float:
        return time.monotonic() + self.waited

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def test_a_step_of_the_wall_clock_neither_buries_a_live_gateway_nor_keeps_a_dead_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A gateway in another container (PID namespace "1": never the test's own), with its
    # heartbeat, a live gauge and a counter. Judged by its heartbeat's mtime against the wall
    # clock, an hour's step forward between its touch and a scrape (within its second) made a
    # live gateway an hour silent: its live gauges dropped and its counts folded while it went
    # on writing them; an hour back kept a dead one's gauges for an hour.
    clock = _SteppedClock()
    monkeypatch.setattr(metricsfiles, "time", clock)
    beat, gauge, counter = (
        tmp_path / name for name in ("4242-1.alive", "gauge_livesum_4242-1.db", "counter_4242-1.db")
    )
    for path in (beat, gauge, counter):
        path.touch()
    touched = time.time() - 1
    os.utime(beat, (touched, touched))
    assert metricsfiles.forget_gone(str(tmp_path)) == set()
    os.utime(beat, (touched + 1, touched + 1))  # its next touch, a second later
    clock.step = 3600.0
    for _ in range(2):  # the touch after the step, and again before its next one
        assert metricsfiles.forget_gone(str(tmp_path)) == set()
        assert beat.exists() and gauge.exists() and counter.exists()

    # It dies (no more touches), and the clock steps back an hour: silent for STALE_AFTER_S,
    # it is gone all the same, and gone for good after SETTLED_AFTER_S.
    clock.step = -3600.0
    clock.waited = STALE_AFTER_S + 1
    assert metricsfiles.forget_gone(str(tmp_path)) == set()
    assert beat.exists() and not gauge.exists() and counter.exists()
    clock.waited = SETTLED_AFTER_S + 1
    assert metricsfiles.forget_gone(str(tmp_path)) == {"4242-1"}
    assert not beat.exists() and counter.exists()
