"""Per-model address tables, kept current by a background ``WatchLoc`` long poll.

A data call only reads its model's table (no admin RPC, no file read). Each table spreads calls
over a preferred subset of at most ``num_conn`` replicas, chosen by rendezvous hashing with a
per-client seed so that many clients spread over all replicas while each keeps few connections
(upstream's ``num_conn``). Within it, the next replica in round-robin order is taken unless the
one after it runs fewer of our calls (the better of two choices), or is not suspect of hanging
while the first is (`_hung.py`): a replica that hangs keeps the calls it holds and stops getting
new ones, where plain round-robin kept sending it every other call until each ran into its
deadline. A replica that just failed is skipped for a moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence

import grpc
from saxml.protobuf import admin_pb2

from gateway import naming
from gateway.client._admin import FIRST_WATCH_LOC, RETRY_CODES, WATCH_LOC, CellAdmin
from gateway.common.deadline import Deadline, now
from gateway.common.errors import DeadlineExceededError, SaxError
from gateway.common.failurelog import FailureLog
from gateway.common.limits import first_named, quote

_log = logging.getLogger(__name__)

# One long poll lasts at most this long; then it is simply re-issued. Bounding it means a
# silently vanished admin (no TCP reset) is noticed, and the location file is re-read.
LONG_POLL_S = 60.0
# No negative cache: a watch that fails for good (the model is not published) drops its table
# at once, so the next call asks the admin again and a model published meanwhile (by this
# process or any other) is found at once.
# A poll that ends with one of these says nothing about the model: poll again, keep the table.
# CANCELLED: the admin shut down under the poll (our own cancellations never arrive as a code).
_WATCH_RETRY_CODES = RETRY_CODES | {grpc.StatusCode.CANCELLED}
# A replica that failed with UNAVAILABLE is skipped (while others remain) for this long.
_DOWN_FOR_S = 1.0
# A restarted admin knows no model server until they re-join it, so its first answers are
# empty sets. For this long after a restart, an empty set does not replace the addresses we
# know: the model servers are most likely still serving (a dead one fails calls by itself).
RESTART_HOLD_S = 30.0


class AddressTable:
    """The serving addresses of one model, as last reported by the admin."""

    def __init__(self, model_id: str, *, num_conn: int, seed: int) -> None:
        self.model_id = model_id
        self._num_conn = max(num_conn, 1)
        self._seed = seed
        self.addresses: tuple[str, ...] = ()  # sorted
        self.known = False  # whether the admin has answered at least once
        # The admin_server_id of the admin incarnation that last answered ("": none yet).
        self.incarnation = ""
        self.error: SaxError | None = None  # final: the watch ended (e.g. model unpublished)
        # When the admin was asked for the answer in ``error`` (monotonic): only calls that
        # began before then may take it as the truth; later ones ask again.
        self.error_asked_at = 0.0
        # The admin could not be reached (for --admin-unreachable-after): a call that finds
        # no replica it can reach fails with this rather than wait for an answer that will
        # not come (cleared when the admin answers again).
        self.unreachable: SaxError | None = None
        # What the admin said of a model without replicas that has none requested (""
        # otherwise), when (monotonic), and when it was last asked (`_requested`).
        self.none_requested = ""
        self.none_requested_at = 0.0
        self.requested_read_at = float("-inf")
        # The stack's count of the model's changes when it was last asked (`_requested`).
        self.requested_mark = 0
        # What the admin last named for the model that is not HOST:PORT: never dialled.
        self.undialable: tuple[str, ...] = ()
        self.version = 0
        self._preferred: tuple[str, ...] = ()
        self._next = random.randrange(self._num_conn)
        self._down: dict[str, float] = {}
        self._changed = asyncio.Event()

    def pick(
        self,
        worse: Callable[[str, str], bool] | None = None,
        suspect: Callable[[str], bool] | None = None,
    ) -> str | None:
        """The next preferred replica round-robin, or the one after it if ``worse`` says the
        first is the worse choice (it runs more calls, or may hang); None if none is serving.
        In place of one that could not be reached just now, one that could and is not
        ``suspect`` of hanging, if there is one."""
        preferred = self._preferred
        count = len(preferred)
        if not count:
            return None
        i = self._next % count
        self._next = i + 1
        address = preferred[i]
        if count > 1 and worse is not None:
            other = preferred[i + 1 if i + 1 < count else 0]
            if worse(address, other):
                address = other
        if self._down and address in self._down:
            return self._pick_up(address, suspect)
        return address

    def pick_other(
        self, tried: Sequence[str], suspect: Callable[[str], bool] | None = None
    ) -> str | None:
        """A replica not in ``tried`` (preferred ones first), one not ``suspect`` of hanging
        if there is one, or None if all were tried. A retry (after a busy replica's
        RESOURCE_EXHAUSTED, an unreachable one) took the next untried replica even when it
        was known to hang, and waited there for the rest of the deadline: a 504 while others
        served."""
        hanging = None
        for candidates in (self._preferred, self.addresses):
            for address in candidates:
                if address in tried:
                    continue
                if suspect is None or not suspect(address):
                    return address
                hanging = hanging or address
        return hanging

    def mark_down(self, address: str) -> None:
        self._down[address] = now() + _DOWN_FOR_S

    def all_down(self) -> bool:
        """Whether every replica failed to be reached just now (none, if there are none)."""
        at = now()
        down = self._down
        return all(down.get(a, 0.0) > at for a in self.addresses)

    def _pick_up(self, fallback: str, suspect: Callable[[str], bool] | None) -> str:
        at = now()
        self._down = {a: t for a, t in self._down.items() if t > at}
        up = [a for a in self._preferred if a not in self._down]
        for address in up:
            if suspect is None or not suspect(address):
                return address
        return up[0] if up else fallback  # every replica failed lately: try one anyway

    def set_addresses(self, addresses: set[str]) -> None:
        self.addresses = tuple(sorted(addresses))
        seed = self._seed
        ranked = sorted(self.addresses, key=lambda a: hash((seed, a)))
        self._preferred = tuple(ranked[: self._num_conn])
        self._down = {a: t for a, t in self._down.items() if a in addresses}
        if addresses:
            self.none_requested = ""
        self.known = True
        self._notify()

    def carry(self, older: AddressTable) -> None:
        """Starts from what ``older``, the model's table (answered) before a change made to
        it, knew:
        its replicas serve on while the admin is asked anew, and, should the admin be
        restarting, until the model servers have re-joined it (`RESTART_HOLD_S`)."""
        self.incarnation = older.incarnation
        self.set_addresses(set(older.addresses))

    def set_error(self, error: SaxError, *, asked_at: float) -> None:
        self.error = error
        self.error_asked_at = asked_at
        self._notify()

    def set_none_requested(self, message: str) -> None:
        """The admin lists the model with no replica requested (``message`` says so)."""
        self.none_requested, self.none_requested_at = message, now()
        self._notify()

    def set_unreachable(self, error: SaxError | None) -> None:
        self.unreachable = error
        if error is not None:
            self._notify()

    def _notify(self) -> None:
        self.version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def changed_within(self, timeout: float) -> None:
        """Returns when the table changes or after ``timeout`` seconds, whichever is first."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):  # not wait_for: it can lose a cancellation
                await self._changed.wait()

    async def wait_changed(self, timeout: float | None) -> None:
        """Returns when the table changes; DeadlineExceededError after ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):  # not wait_for, as in `changed_within`
                await self._changed.wait()
        except TimeoutError:
            ready = len(self.addresses)
            raise DeadlineExceededError(
                f"no replica of {self.model_id} answered within the deadline "
                f"({ready} {'replica is' if ready == 1 else 'replicas are'} ready)"
            ) from None


class StaticTable(AddressTable):
    """A table that always names one address (``proxy_addr``); never watched."""

    def __init__(self, model_id: str, address: str) -> None:
        super().__init__(model_id, num_conn=1, seed=0)
        self.set_addresses({address})

    def mark_down(self, address: str) -> None:
        pass  # there is nowhere else to go


class CellWatches:
    """The watches of one cell's models, which an outage of its admin fails together: logged
    for the cell, naming how many models it holds up, when it starts, then once a minute
    while it lasts, and when every watch it failed has been answered; not for each model (a
    cell of 200 models was 200 WARNINGs when its admin went away, 200 a minute while it was
    away and 200 INFOs when it came back, from each gateway process)."""

    __slots__ = ("_failing", "_log", "cell", "running")

    def __init__(self, cell: str) -> None:
        self.cell = cell
        self.running = 0  # watches of this cell's models
        self._failing: set[str] = set()  # models whose last poll failed
        self._log = FailureLog(_log)

    def failed(self, model_id: str, error: SaxError) -> None:
        self._failing.add(model_id)
        count = f"{self.running} model{'' if self.running == 1 else 's'}"
        self._log.failed(
            ("watching", self.cell), f"watching {count} of {self.cell}: {error}", cause=str(error)
        )

    def answered(self, model_id: str) -> None:
        self._failing.discard(model_id)
        if not self._failing:
            self._log.succeeded(("watching", self.cell), f"watching the models of {self.cell}")

    def ended(self, model_id: str) -> None:
        """The watch of ``model_id`` ended (its model is gone, or its client closed)."""
        self._failing.discard(model_id)
        self.running -= 1


async def watch(
    table: AddressTable,
    admin: CellAdmin,
    on_change: Callable[[AddressTable], None],
    watches: CellWatches,
) -> None:
    """Keeps ``table`` current until the model is gone (then sets ``table.error``);
    ``watches``: those of the model's cell, which this one joins while it runs."""
    watches.running += 1
    try:
        await _watch(table, admin, on_change, watches)
    finally:
        watches.ended(table.model_id)


async def _watch(
    table: AddressTable,
    admin: CellAdmin,
    on_change: Callable[[AddressTable], None],
    watches: CellWatches,
) -> None:
    server_id, seqno, current = "", 0, set[str]()
    incarnation = table.incarnation  # the admin_server_id of the admin that last answered
    hold_until = 0.0  # while later, an empty set from a restarted admin is not applied
    while True:
        request = admin_pb2.WatchLocRequest(
            model_id=table.model_id, admin_server_id=server_id, seqno=seqno
        )
        started = now()
        poll_until = started + LONG_POLL_S
        if hold_until:
            poll_until = min(poll_until, max(hold_until, started + 1.0))
        asked_at = started
        try:
            method = WATCH_LOC if table.known else FIRST_WATCH_LOC
            response = await admin.call(method, request, deadline=Deadline(poll_until))
        except DeadlineExceededError:
            if hold_until and now() >= hold_until:
                server_id, seqno, hold_until = "", 0, 0.0  # ask for the full set, and apply it
            # Nothing changed within one poll. An admin that answers DEADLINE_EXCEEDED at once
            # (its own limit is shorter) must not turn this into a busy loop.
            await _paced(started)
            continue
        except SaxError as error:
            if error.code not in _WATCH_RETRY_CODES:
                # NOT_FOUND (not published) and other final answers end the watch. Worth a
                # line when it followed a model (unpublished while served); a call naming a
                # model that never was is the caller's error (the access log has its 404), and
                # a line per such call would let any caller flood the log.
                level = logging.INFO if table.known else logging.DEBUG
                _log.log(level, "watch of %s ended: %s", table.model_id, error)
                _answered(table, watches)
                table.set_error(error, asked_at=asked_at)
                return
            # The admin is unreachable (UNAVAILABLE comes after --admin-unreachable-after).
            # Keep serving from the replicas we know (the model servers are likely fine) and
            # start over with a full set; calls that find no replica they can reach (none
            # known, or every one refusing: the whole cell is down) fail now rather than at
            # their deadline.
            watches.failed(table.model_id, error)
            if not table.known or error.code == grpc.StatusCode.UNAVAILABLE:
                table.set_unreachable(error)
            server_id, seqno = "", 0
            await asyncio.sleep(1.0)
            continue
        _answered(table, watches)
        if incarnation and response.admin_server_id != incarnation and table.addresses:
            hold_until = now() + RESTART_HOLD_S
            _log.info("admin of %s restarted; keeping known addresses", table.model_id)
        result = response.result
        same = response.admin_server_id == server_id
        if same and not result.has_fullset and result.next_seqno < seqno:
            # Behind what we asked for: the set we followed is gone (the model was
            # unpublished and published again between two polls) and this is another one.
            # Read it again from the start rather than apply its changes to the old one.
            seqno = 0
            continue
        # An admin answers a poll from seqno 0, or from another incarnation (which it takes
        # as 0), with the whole set: a full set, or (upstream's, while its log is short) every
        # change since 0 and no full set. Either way nothing we held before is still in it.
        whole = seqno == 0 or not same
        server_id = incarnation = table.incarnation = response.admin_server_id
        if result.has_fullset:
            current = set(result.values)
        elif whole:
            current = set()
        for mutation in result.changelog:
            if mutation.WhichOneof("kind") == "addition":
                current.add(mutation.addition)
            elif mutation.WhichOneof("kind") == "deletion":
                current.discard(mutation.deletion)
        seqno = result.next_seqno
        current = _dialable(table, current)
        if not current and table.addresses and now() < hold_until:
            await _paced(started)
            continue  # the model servers have not re-joined the restarted admin yet
        hold_until = 0.0
        if not table.known or current != set(table.addresses):
            table.set_addresses(current)
            on_change(table)
        else:
            await _paced(started)


def _dialable(table: AddressTable, addresses: set[str]) -> set[str]:
    """Those of ``addresses`` that are ``HOST:PORT``; the rest, named in a WARNING when they
    change, are kept in ``table.undialable``. grpc dials much else (`is_server_address`):
    ``127.0.0.1:99999`` reached port 34463, a server of someone else's; ``""`` failed every
    call UNKNOWN 'Failed to create channel', a 500."""
    undialable = tuple(sorted(a for a in addresses if not naming.is_server_address(a)))
    if undialable != table.undialable:
        table.undialable = undialable
        if undialable:
            _log.warning(
                "the admin names %s for %s, not HOST:PORT; calls do not go there",
                naming_list(undialable),
                table.model_id,
            )
    return addresses.difference(undialable) if undialable else addresses


def naming_list(addresses: Sequence[str]) -> str:
    """``addresses`` quoted for a message (each cut short, at most three named)."""
    return first_named([quote(a) for a in addresses], 3)


async def _paced(started: float) -> None:
    """After a poll (begun at ``started``) whose answer changed nothing: the next one begins
    a second after it at the soonest. An admin holds a poll until its set changes, but one
    that answers at once whatever the seqno (a proxy before it, a buggy admin) was polled
    again at once, hundreds of times a second for each model, each gateway burning half a
    core and the admin as much; a change is still seen within a second."""
    left = started + 1.0 - now()
    if left > 0:
        await asyncio.sleep(left)


def _answered(table: AddressTable, watches: CellWatches) -> None:
    """The admin answered a poll of ``table``: it is reachable again."""
    table.set_unreachable(None)
    watches.answered(table.model_id)
