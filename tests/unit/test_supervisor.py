"""The supervisor of `saxgw up` restarts a child that exits, with a growing delay, and kills
one whose health probes keep failing (tests/integration/test_watchdog.py probes real servers)."""

from __future__ import annotations

import itertools
import shutil
import sys
import time
from pathlib import Path

import pytest

from gateway.launch.probes import Probe, Refused
from gateway.launch.processes import Output, ProcessGroup
from gateway.launch.supervisor import RestartSettings, Supervisor

FIRST_DELAY_S = 0.2


def _tick_until(supervisor: Supervisor, name: str, restarts: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while supervisor.restarts(name) < restarts:
        assert time.monotonic() < deadline, f"{name} was not restarted {restarts} times"
        supervisor.tick()
        time.sleep(0.02)


def test_a_child_that_exits_is_restarted_with_backoff_and_logged() -> None:
    group = ProcessGroup(grace=5)
    lines: list[str] = []
    try:
        group.start("crasher", [sys.executable, "-c", "raise SystemExit(3)"])
        group.start("steady", [sys.executable, "-c", "import time; time.sleep(60)"])
        steady = dict(group.children)["steady"].pid
        supervisor = Supervisor(
            group, RestartSettings(first_delay=FIRST_DELAY_S), report=lines.append
        )
        _tick_until(supervisor, "crasher", 2)
    finally:
        group.stop()
    assert lines[0].startswith("saxgw: crasher (pid ")
    assert lines[0].endswith(f"exited with status 3; restarting it in {FIRST_DELAY_S:.1f} s")
    assert lines[1].startswith("saxgw: restarted crasher (pid ")
    # The second exit waits twice as long; the other child was never touched.
    assert lines[2].endswith(f"restarting it in {2 * FIRST_DELAY_S:.1f} s")
    assert supervisor.restarts("steady") == 0
    assert all("steady" not in line for line in lines)
    assert steady not in [p.pid for n, p in group.children if n == "crasher"]


def test_restart_keeps_the_stop_order() -> None:
    group = ProcessGroup(grace=5)
    try:
        group.start("first", [sys.executable, "-c", "pass"])
        group.start("second", [sys.executable, "-c", "import time; time.sleep(60)"])
        dict(group.children)["first"].wait()
        group.restart("first")
        assert [name for name, _ in group.children] == ["first", "second"]
    finally:
        group.stop()


def _watched(group: ProcessGroup, probe: Probe, lines: list[str]) -> Supervisor:
    group.start("steady", [sys.executable, "-c", "import time; time.sleep(60)"])
    settings = RestartSettings(first_delay=FIRST_DELAY_S, probe_interval=0.02, probe_failures=3)
    return Supervisor(group, settings, report=lines.append, probes={"steady": probe})


def test_a_child_whose_probes_fail_is_killed_and_restarted() -> None:
    group = ProcessGroup(grace=5)
    lines: list[str] = []
    supervisor = _watched(group, lambda timeout: f"silent for {timeout:g} s", lines)
    try:
        pid = dict(group.children)["steady"].pid
        _tick_until(supervisor, "steady", 1)
        new = dict(group.children)["steady"].pid
    finally:
        supervisor.close()
        group.stop()
    assert lines == [
        f"saxgw: steady (pid {pid}) is hung: 3 health probes in a row failed (the last: "
        "silent for 2 s); killing it with SIGKILL",
        f"saxgw: steady (pid {pid}) exited with status -9; restarting it in 0.2 s",
        f"saxgw: restarted steady (pid {new})",
    ]


def test_failures_must_come_in_a_row() -> None:
    answers = itertools.cycle(["no answer", "no answer", None])  # 2 of 3 fail, never 3 in a row
    group = ProcessGroup(grace=5)
    lines: list[str] = []
    supervisor = _watched(group, lambda _: next(answers), lines)
    try:
        deadline = time.monotonic() + 0.6  # ~30 probes
        while time.monotonic() < deadline:
            supervisor.tick()
            time.sleep(0.01)
        assert group.exited() == []
    finally:
        supervisor.close()
        group.stop()
    assert lines == []


def test_a_child_that_closed_its_port_has_the_stop_grace_to_exit() -> None:
    """Refused after it answered: it is stopping (a gateway sent SIGTERM drains its calls),
    not hung, until the group's stop grace is over; then it is killed as a hung one."""
    refused: list[float] = []

    def probe(timeout: float) -> str | None:
        if time.monotonic() < closes:
            return None
        refused.append(time.monotonic())
        return Refused("Connection refused")

    closes = time.monotonic() + 0.2  # it answers a few probes first
    group = ProcessGroup(grace=0.5)
    lines: list[str] = []
    supervisor = _watched(group, probe, lines)
    try:
        pid = dict(group.children)["steady"].pid
        _tick_until(supervisor, "steady", 1)
    finally:
        supervisor.close()
        group.stop()
    assert lines[0].startswith(
        f"saxgw: steady (pid {pid}) is hung: 3 health probes in a row failed (the last: "
        "Connection refused; its port closed "
    )
    assert lines[0].endswith(" s ago); killing it with SIGKILL")
    assert refused[-1] - refused[0] >= 0.5 + 2 * 0.02  # the grace, then 3 failures


def test_a_restart_that_cannot_start_is_retried_not_raised(tmp_path: Path) -> None:
    # A child's log directory removed while the stack ran (a clean-up, a rotation) made the
    # restart's open() raise out of `tick`: `saxgw up` died with a traceback, and the whole
    # stack with it, over one gateway that had exited. The directory is made again; what
    # still cannot start (a file where the directory should be) is reported and retried.
    logs = tmp_path / "logs"
    logs.mkdir()
    group = ProcessGroup(grace=5)
    lines: list[str] = []
    try:
        group.start("crasher", [sys.executable, "-c", "pass"], log_path=str(logs / "c.log"))
        supervisor = Supervisor(
            group, RestartSettings(first_delay=FIRST_DELAY_S), report=lines.append
        )
        shutil.rmtree(logs)
        _tick_until(supervisor, "crasher", 1)
        assert (logs / "c.log").is_file()
        shutil.rmtree(logs)
        logs.write_text("not a directory")
        deadline = time.monotonic() + 30
        while not any(line.startswith("saxgw: could not restart") for line in lines):
            assert time.monotonic() < deadline, lines
            supervisor.tick()
            time.sleep(0.02)
        logs.unlink()
        _tick_until(supervisor, "crasher", 2)
    finally:
        group.stop()
    failed = next(line for line in lines if line.startswith("saxgw: could not restart"))
    assert failed == (
        f"saxgw: could not restart crasher: cannot write the log of crasher, {logs / 'c.log'}: "
        "Not a directory; trying again in 0.8 s"
    )


def test_a_childs_stdout_is_kept_off_ours_unless_asked(
    capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Without --log-dir the children's stdout was saxgw's: the cell's address lines and the
    # gateway's and the ops server's "listening on" came before `saxgw up`'s banner (`saxgw up
    # | head -1` read `SAX_ROOT=...`), and once that reader had gone the first to print died
    # of the broken pipe, and the stack with it ("cell exited with status 1 while starting").
    # The cell's lines, no log records, were text lines in a JSON log too.
    talk = "import sys; print('out'); print('err', file=sys.stderr)"
    group = ProcessGroup(grace=5)
    try:
        outputs: tuple[Output, ...] = ("log", "ours", "discard")
        for output in outputs:
            group.start(output, [sys.executable, "-c", talk], stdout=output)
            dict(group.children)[output].wait()
        group.start("logged", [sys.executable, "-c", talk], log_path=str(tmp_path / "l.log"))
        dict(group.children)["logged"].wait()
    finally:
        group.stop()
    assert capfd.readouterr() == ("out\n", "out\nerr\nerr\nerr\n")
    assert (tmp_path / "l.log").read_text() == "out\nerr\n"
