"""One admin server at a time keeps a cell's state in a local fs root.

`refuse_if_alive` finds another admin of the cell through its SAX_ROOT's location.proto, but
two SAX_ROOTs may hold cells of one name and be given one fs root (two `saxgw up` with the
same --fs-root): each admin restored the other's models, its next save dropped the other's
from state.proto, and its start removed the other's save in progress. So an admin also takes
an exclusive lock on ``<fs_root>/sax/.<name>.admin.lock`` for its life, writing its address
and SAX_ROOT there; the kernel drops the lock of an admin that dies, however it dies::

    lock = await hold_state(fs_root, cell="/sax/test", mine="127.0.0.1:10000", sax_root=root)
    ...
    release(lock)

The holder of a lock that is taken is asked, as `refuse_if_alive` asks: one that answers
keeps the cell, and this admin refuses to start; one of the same SAX_ROOT that hangs (stopped)
is as good as gone, and this one goes on without the lock, as it takes over from a hung admin
of its own SAX_ROOT (which, resumed, finds location.proto naming this one, and stops). One of
another SAX_ROOT never learns of a takeover: this admin refuses to start while it lives.
A gs:// fs root has no such lock (upstream's has none at all), and one this process cannot
write to (read-only) needs none: nothing can be saved there.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from gateway.cell._errors import CellStartError
from gateway.cell.admin.takeover import admin_answers
from gateway.common.lockfile import HeldBy, take
from gateway.common.storage import FILE_MODE, Storage, make_dirs

_log = logging.getLogger("gateway.cell.admin")

#: ``<fs_root>/sax/.<name>`` and this: beside the cell's directory, which holds state.proto
#: alone, as upstream's does; a file there is no cell to whoever lists the cells (if the fs
#: root is the SAX_ROOT).
LOCK_SUFFIX = ".admin.lock"


async def hold_state(fs_root: str, *, cell: str, mine: str, sax_root: str) -> int | None:
    """Locks the state of ``cell`` under ``fs_root`` for this admin (at ``mine``): the lock's
    descriptor, or None where there is none to take; raises CellStartError if another admin
    that answers holds it."""
    if "://" in fs_root:
        return None
    cell_dir = Path(fs_root) / Storage.join(cell)
    path = cell_dir.parent / f".{cell_dir.name}{LOCK_SUFFIX}"
    try:
        make_dirs(path.parent)
        fd = take(path, f"{mine} {sax_root}", FILE_MODE)
    except HeldBy as held:
        address, _, root = held.holder.partition(" ")
        if not address:
            # Its holder could not write who it is (its disk was full as it started): taken
            # for a hung admin of this SAX_ROOT, it was taken over, and the two admins wrote
            # their states over each other's (an acknowledged publish was lost).
            raise CellStartError(
                f"the state of {cell} under {fs_root} is locked by a process that did not "
                f"write who it is in {path} (its disk full?): two admins of one cell "
                "overwrite each other's saved state; stop it first (`fuser` names it), or "
                "create the cell with an --fs-root of its own"
            ) from None
        answers = bool(address) and await admin_answers(address, cell)
        # A hung holder of another SAX_ROOT is no admin this one takes over from: that
        # SAX_ROOT's location.proto still names it, so once it resumes it serves on, unaware,
        # and each wrote its own state over the other's (an acknowledged publish was lost).
        if answers or (root and root != sax_root):
            hung = "" if answers else ", and does not answer (stopped or hung)"
            raise CellStartError(
                f"the admin server of {cell} at {address} (SAX_ROOT {root}) keeps its state "
                f"under {fs_root} too{hung}: two admins of one cell overwrite each other's "
                f"saved state; {'stop' if answers else 'kill'} it first, or create the cell "
                "with an --fs-root of its own"
            ) from None
        _log.warning(
            "the admin server of %s at %s holds the state under %s but does not answer: "
            "taking the cell over without its lock",
            cell,
            address,
            fs_root,
        )
        return None
    except OSError:
        return None
    with contextlib.suppress(OSError):  # as every file the cell keeps, whatever the umask
        os.fchmod(fd, FILE_MODE)
    return fd


def release(lock: int | None) -> None:
    """Lets go of a lock `hold_state` took (exiting does too)."""
    if lock is not None:
        os.close(lock)
