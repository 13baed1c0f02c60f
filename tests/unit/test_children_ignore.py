"""`children_ignore`: the drain's SIGUSR1, which `saxgw up|serve` sends its gateways, finds a
child that has not set its handler yet (a gateway started again a moment before a stop, still
importing) ignoring it, where the signal's default action had ended that child."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.launch.processes import ProcessGroup, children_ignore


def _ignored(pid: int) -> int:
    """The child's mask of ignored signals (``SigIgn`` in /proc: bit N-1 for signal N)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return int(line.split(":", 1)[1], 16)
    raise AssertionError(f"no SigIgn in /proc/{pid}/status")


@pytest.fixture
def group() -> Iterator[ProcessGroup]:
    before = signal.getsignal(signal.SIGUSR1)
    group = ProcessGroup(grace=5)
    try:
        yield group
    finally:
        group.stop()
        signal.signal(signal.SIGUSR1, before)


def test_a_child_started_after_it_ignores_the_signal_until_it_sets_a_handler(
    group: ProcessGroup,
) -> None:
    children_ignore(signal.SIGUSR1)
    child = group.start("sleeper", ["sleep", "30"])  # sets no handler of its own
    assert _ignored(child.pid) & 1 << (signal.SIGUSR1 - 1)
    group.send_signal(["sleeper"], signal.SIGUSR1)
    with pytest.raises(subprocess.TimeoutExpired):
        child.wait(timeout=0.5)


def test_without_it_the_signal_ends_such_a_child(group: ProcessGroup) -> None:
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    child = group.start("sleeper", ["sleep", "30"])
    assert not _ignored(child.pid) & 1 << (signal.SIGUSR1 - 1)
    group.send_signal(["sleeper"], signal.SIGUSR1)
    assert child.wait(timeout=30) == -signal.SIGUSR1
