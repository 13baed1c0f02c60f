"""What the embedded admin's answer to a Join says beyond Sax's (empty) JoinResponse: whether
that Join took the model server in, as trailing metadata that upstream's servers ignore.

A model server joins again every few seconds (a heartbeat), and an admin that knows it
answers at once; one that does not (it restarted, or had dropped the server) dials back and
takes it in. Only the admin knows which happened: the model server logs a re-join when the
admin says so, never by guessing from when it was polled.
"""

from __future__ import annotations

from collections.abc import Iterable

#: Trailing metadata key of a Join's answer; `TOOK_IN` its value when the admin took the
#: server in (it did not know it, or knew it with other specs) rather than a heartbeat.
KEY = "x-saxgw-joined"
TOOK_IN = "taken-in"
#: Request metadata key of a Join: the cell of the model server that sends it.
CELL_KEY = "x-saxgw-cell"


def took_in(trailing: Iterable[tuple[str, str | bytes]] | None) -> bool:
    """Whether a Join's trailing metadata says the admin took the server in with it. An
    upstream admin sends none: its Joins are then all heartbeats here."""
    return any(key == KEY and value == TOOK_IN for key, value in trailing or ())


def cell_of(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The cell a Join's request ``metadata`` names, or None (an upstream model server's)."""
    for key, value in metadata or ():
        if key == CELL_KEY:
            return value if isinstance(value, str) else value.decode(errors="replace")
    return None
