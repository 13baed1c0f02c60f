"""A liveness probe command's `--timeout` counts from the command's start: the seconds Python
and grpc took to start are taken off the Check's own timeout (down to MIN_CHECK_S), so a probe
of a hung gateway on a busy node ends before kubelet's timeout and says why."""

from __future__ import annotations

import subprocess
import sys

from gateway.launch.probes import MIN_CHECK_S, check_budget

_SLEPT = 0.6


def test_since_exec_counts_from_the_process_start() -> None:
    code = (
        f"import time; time.sleep({_SLEPT}); "
        "from gateway.launch.probes import since_exec; print(since_exec())"
    )
    started_ago = float(subprocess.check_output([sys.executable, "-c", code], text=True))
    assert _SLEPT <= started_ago < 60


def test_the_check_gets_what_is_left_of_the_timeout_and_never_less_than_the_floor() -> None:
    assert check_budget(2.0, 0.5) == 1.5
    assert check_budget(2.0, 0.0) == 2.0
    assert check_budget(2.0, 1.9) == MIN_CHECK_S
    assert check_budget(2.0, 30.0) == MIN_CHECK_S
