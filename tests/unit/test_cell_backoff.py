"""How long `python -m gateway.cell` waits before restarting a server that keeps exiting."""

from __future__ import annotations

from gateway.cell._supervise import _Backoff


def test_the_wait_doubles_up_to_the_cells_max_restart_backoff() -> None:
    default = _Backoff(30.0)
    assert [default.next_delay() for _ in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    # The fault tests' shared cell: a killed admin is back within a second however often.
    capped = _Backoff(1.0)
    assert [capped.next_delay() for _ in range(4)] == [0.5, 1, 1, 1]
    short = _Backoff(0.2)
    assert [short.next_delay() for _ in range(2)] == [0.2, 0.2]
