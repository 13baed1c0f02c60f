"""The admin server of one cell: found through ``location.proto``, called with retries.

The admin's address is read from ``<root>/sax/<cell>/location.proto`` (by `_saxroot`, which
owns the cell's files) on first use and kept.
When a call finds the admin UNAVAILABLE, the connection is dropped and the file is read again
on the next attempt, so a client follows an admin that moved (restarted elsewhere) without
being restarted itself. While connected, the file is also re-read every `LOCATION_CHECK_S`:
an admin may move while its old address hangs rather than refuses (its host gone without
closing connections), and then no call would ever find it UNAVAILABLE. An admin that stays
unreachable for ``unreachable_after`` seconds fails the call with UNAVAILABLE naming the cell
and the address tried, however long its deadline: a caller learns in seconds that the cell is
down instead of waiting out a minute. Once a call has found it so, the outage is the cell's:
a call that starts while it lasts makes one attempt (the admin may be back) and, failing,
fails at once, as a data call to a model none of whose replicas can be reached does; each
call waited the whole window again, so during a cell outage every call whose model's ACLs a
gateway had not read yet, and every listing, took 5 s to fail (three times over with the
OpenAI SDKs' retries). A call the admin answers ends the outage.

An admin that hangs (its process stopped, its host gone without closing connections) takes
connections and requests and answers nothing; no connection error ever comes. A read (List,
Stats: answered from the admin's memory at once) that has had no answer for
``unreachable_after`` is taken for that: its connection is dropped and the call fails as for
an unreachable admin. Other calls wait for their deadline: a long poll (WaitForReady,
WatchLoc) waits by design, and a change (Publish, Update, Unpublish) may be slow for good
reasons (its save to storage retries for up to 10 s, behind other changes) and, sent, may
yet be made: its outcome is unknown, which is DEADLINE_EXCEEDED, not UNAVAILABLE ("not
done, retry").
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import grpc
from google.protobuf.message import Message
from saxml.protobuf import admin_pb2_grpc

from gateway import naming
from gateway.client import _othercell as othercell
from gateway.client._channels import close_channel, insecure_channel
from gateway.client._observer import Metadata, Observer, observed
from gateway.client._saxroot import CellDir
from gateway.client._types import ADMIN_UNREACHABLE_AFTER_S
from gateway.common.deadline import Deadline, now
from gateway.common.errors import (
    BEING_UNPUBLISHED,
    SAVED_DURING_TAKEOVER,
    DeadlineExceededError,
    SaxError,
    UnavailableError,
    asks_for_credentials,
    code_from_text,
    from_grpc_error,
)
from gateway.common.storage import Storage, StorageError

_log = logging.getLogger(__name__)

# UNAVAILABLE: the admin is unreachable (maybe moving); RESOURCE_EXHAUSTED: it is busy.
RETRY_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
# How often a connected client re-reads location.proto (upstream's model servers, too, follow
# the file); a new address there drops the connection, and calls on it retry at the new one.
LOCATION_CHECK_S = 5.0
#: How long a read of location.proto may keep a call waiting before a deadline that runs out
#: during it is SAX_ROOT's fault (UNAVAILABLE) rather than the call's (DEADLINE_EXCEEDED): a
#: local root answers in microseconds and GCS in tens of milliseconds, but a read runs in a
#: thread, and a call of a few milliseconds ran out in it and was told SAX_ROOT was down.
SLOW_LOCATION_READ_S = 0.2
_INITIAL_BACKOFF_S = 0.01
_MAX_BACKOFF_S = 1.0
_BACKOFF_MULTIPLIER = 1.6


_Req = TypeVar("_Req", bound=Message)
_Resp = TypeVar("_Resp")


@dataclass(frozen=True)
class AdminMethod(Generic[_Req, _Resp]):
    """An RPC of Sax's Admin service: its name (for errors and observers) and how to pick it
    off the typed stub, which gives the request and reply types of ``CellAdmin.call``."""

    name: str
    pick: Callable[[admin_pb2_grpc.AdminAsyncStub], grpc.aio.UnaryUnaryMultiCallable[_Req, _Resp]]
    #: A read the admin answers at once: no answer within the unreachable window is a hung
    #: admin (see the module docstring).
    prompt: bool = False
    #: A change: once an attempt may have been made (its answer lost), it is retried until
    #: its deadline, not given up as UNAVAILABLE ("not done") after the unreachable window.
    changes: bool = False
    #: Called again and again by a loop of its own, no caller waiting (a model's address
    #: watch): an outage other calls found does not shorten its window, which paces that loop.
    paced: bool = False
    #: A long poll (`saxgw wait`): the caller asked to wait, so an admin that cannot be
    #: reached is tried until the deadline, as a slow model is waited for; it ended 503 at
    #: once in a cell outage, or mid-wait once another call found the admin hung.
    long_poll: bool = False


PUBLISH = AdminMethod("Publish", lambda s: s.Publish, changes=True)
UPDATE = AdminMethod("Update", lambda s: s.Update, changes=True)
UNPUBLISH = AdminMethod("Unpublish", lambda s: s.Unpublish, changes=True)
LIST = AdminMethod("List", lambda s: s.List, prompt=True)
STATS = AdminMethod("Stats", lambda s: s.Stats, prompt=True)
WATCH_LOC = AdminMethod("WatchLoc", lambda s: s.WatchLoc, paced=True)
#: The watch of a model whose replicas are not known yet: calls wait on its answer, so an
#: outage another call found fails it at once, as it fails any admin call.
FIRST_WATCH_LOC = AdminMethod("WatchLoc", lambda s: s.WatchLoc)
WAIT_FOR_READY = AdminMethod("WaitForReady", lambda s: s.WaitForReady, long_poll=True)


class RpcCounter:
    """Counts admin RPCs sent (attempts, retries included), for tests and benchmarks."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


def backoff_delays() -> Iterator[float]:
    """Exponential backoff with jitter: 10 ms, growing 1.6x, capped at 1 s."""
    delay = _INITIAL_BACKOFF_S
    while True:
        yield delay * random.uniform(0.8, 1.2)
        delay = min(delay * _BACKOFF_MULTIPLIER, _MAX_BACKOFF_S)


# Methods that every Sax admin has had: a server without them is no admin (an older admin may
# lack a newer one, such as Stats or WaitForReady, and answer it the same way).
_EVERY_ADMIN_HAS = frozenset({"Publish", "Update", "Unpublish", "List", "WatchLoc"})
# What grpc answers for a service the server does not have, and for an HTTP server's 404.
NO_SUCH_SERVICE = ("Method not found!", "Received http2 header with status: 404")


def _answered(exc: grpc.aio.AioRpcError) -> bool:
    """Whether the admin itself failed the call: Sax admins (upstream's and the embedded
    cell's) end their messages with the code's Go name; grpc's own failures to reach a
    server ("failed to connect to all addresses; ...", "Socket closed") do not."""
    return code_from_text(exc.details() or "") is not None


def _never_sent(exc: BaseException | None) -> bool:
    """Whether grpc failed a call for want of a connection, so the admin never had it."""
    return isinstance(exc, grpc.aio.AioRpcError) and (exc.details() or "").startswith(
        "failed to connect to all addresses"
    )


def _not_an_admin(exc: grpc.aio.AioRpcError) -> bool:
    """Whether the server at the admin's address answered as a server without sax.Admin."""
    return exc.code() == grpc.StatusCode.UNIMPLEMENTED and exc.details() in NO_SUCH_SERVICE


class Attempts:
    """What a caller learns of one admin call's attempts: whether one of them may have been
    applied although its answer was lost (the connection dropped or the admin died after the
    request was sent), so that the retry's ALREADY_EXISTS or NOT_FOUND may be its own doing."""

    __slots__ = ("uncertain",)

    def __init__(self) -> None:
        self.uncertain = False


class _Outage:
    """Since when one call has found the admin unavailable, where, and the last error;
    ``explained``: that error says itself why (the admin answered it, or SAX_ROOT failed),
    so the call ends with it rather than with "the admin is unreachable". ``sent``: an
    attempt is out since that error; if the error was a failure to reach the admin, the
    admin may be back, and a deadline that runs out now is the call's own. ``finding``:
    since when the call has waited for the admin's address, read from SAX_ROOT (None: it
    is not waiting)."""

    __slots__ = ("address", "error", "explained", "finding", "sent", "since")

    def __init__(self) -> None:
        self.since = 0.0
        self.finding: float | None = None
        self.address: str | None = None
        self.error: SaxError | None = None
        self.explained = False
        self.sent = False

    def record(self, now: float, address: str | None, error: SaxError, *, explained: bool) -> None:
        if self.error is None:
            self.since = now
        self.error = error
        self.explained = explained
        self.address = address or self.address


class _Connection:
    __slots__ = ("address", "answered", "channel", "connected", "of_this_cell", "poisoned", "stub")

    def __init__(self, address: str) -> None:
        self.address = address
        self.channel = insecure_channel(address)
        self.stub = admin_pb2_grpc.AdminStub(self.channel)
        self.poisoned = False
        self.of_this_cell = False  # an answer showed it is this cell's admin (`_othercell`)
        # Whether it was connected (HTTP/2 set up) when it was dropped: if not, no call on it
        # was ever sent (a hung admin's kernel takes the connection, the admin never greets).
        self.connected = True
        # Whether the admin has answered a call on it: it was connected. grpc reports the
        # channel IDLE by the time a call it lost to a reset (an admin killed after its save)
        # fails, so its state read then said "never sent", and the retry's ALREADY_EXISTS was
        # the caller's 409 for its own publish (503 if the admin stayed away).
        self.answered = False

    def could_have_sent(self) -> bool:
        """Whether a call on it may have reached the admin: it is, or was until it was
        dropped, connected."""
        if self.poisoned:
            return self.connected
        return self.answered or self.channel.get_state() == grpc.ChannelConnectivity.READY


class CellAdmin:
    """Calls the admin server of one cell."""

    def __init__(
        self,
        cell: naming.CellId,
        storage: Storage,
        counter: RpcCounter,
        observer: Observer | None = None,
        *,
        unreachable_after: float = ADMIN_UNREACHABLE_AFTER_S,
    ) -> None:
        self.cell = cell
        self._unreachable_after = unreachable_after
        self.files = CellDir(cell, storage)
        self._counter = counter
        self._observer = observer
        self._conn: _Connection | None = None
        self._announced: str | None = None  # the admin address last logged at INFO
        self._connect_lock = asyncio.Lock()
        # The location read under way (since when), and how the last one failed (None once
        # one succeeds): what `lookup_failure` tells a caller that gave up waiting.
        self._reading_since: float | None = None
        self._read_failed: SaxError | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._follower: asyncio.Task[None] | None = None
        # Since when the admin has been unreachable, once a call found it so for the whole
        # window (`_call_with_retries`); None since it last answered.
        self._down_since: float | None = None

    @property
    def connected(self) -> bool:
        """Whether a connection to the admin is open (its address was found)."""
        return self._conn is not None

    @property
    def idle(self) -> bool:
        """Whether it holds nothing: no connection, no task following the location, no
        channel still closing; dropping it then loses no more than a fresh one would know."""
        follower = self._follower
        return self._conn is None and (follower is None or follower.done()) and not self._closing

    async def call(
        self,
        method: AdminMethod[_Req, _Resp],
        request: _Req,
        *,
        deadline: Deadline,
        attempts: Attempts | None = None,
        metadata: Metadata = (),
    ) -> _Resp:
        """Calls ``method`` (with ``metadata``), retrying UNAVAILABLE and RESOURCE_EXHAUSTED
        until ``deadline``. Raises a ``SaxError``; ``attempts`` learns whether an attempt
        whose answer was lost may have been applied."""
        outage = _Outage()
        attempts = attempts or Attempts()
        try:
            async with asyncio.timeout(deadline.remaining()):
                return await self._call_with_retries(
                    method, request, deadline, outage, attempts, metadata
                )
        except TimeoutError:
            if method.changes and attempts.uncertain:
                raise self._maybe_made(method, outage) from None
            # The deadline ran out while the admin was away, or while it answered why it
            # could not serve (its storage failing); not while an attempt waited on an admin
            # that came back after a failure to reach it (a WaitForReady long poll on a
            # restarted admin was "unreachable: Connection refused", its first attempt's error).
            if outage.error is not None and (outage.explained or not outage.sent):
                raise self._unreachable(outage) from None
            if outage.finding is not None and now() - outage.finding >= SLOW_LOCATION_READ_S:
                # SAX_ROOT has not answered (a storage read retries for up to GCS_RETRY_S):
                # the admin could not be looked for, which is not an admin that hung. A
                # shorter wait is the deadline's: no read could have met it.
                raise self.files.unanswered() from None
            raise DeadlineExceededError(
                f"admin {method.name} for {self.cell} did not finish within its deadline"
            ) from None

    async def _call_with_retries(
        self,
        method: AdminMethod[_Req, _Resp],
        request: _Req,
        deadline: Deadline,
        outage: _Outage,
        attempts: Attempts,
        metadata: Metadata,
    ) -> _Resp:
        delays = backoff_delays()
        number = 0
        while True:
            conn: _Connection | None = None
            silent_after: float | None = None
            answered = False  # the admin itself answered UNAVAILABLE: it is reachable
            refused = False  # an admin answered, but is not this cell's
            try:
                outage.finding = now()
                conn = await self._connection()
                outage.finding = None
                self._counter.value += 1
                number += 1
                rpc = method.pick(conn.stub)
                timeout = deadline.timeout(f"admin {method.name}")
                silent_after = self._silent_after(method, timeout)
                if silent_after is not None:
                    timeout = silent_after
                sent_at = now()
                outage.sent = True
                if self._observer is None:
                    reply = await rpc(request, timeout=timeout, metadata=metadata or None)
                else:
                    attempt = self._observer.attempt(
                        self.cell.id, f"admin.{method.name}", conn.address, number
                    )
                    sent = (*metadata, *(attempt.metadata or ()))
                    reply = await observed(
                        attempt, rpc(request, timeout=timeout, metadata=sent or None)
                    )
                conn.answered = True
                other = othercell.in_listing(reply, self.cell)
                if other is None:
                    self._down_since = None
                    return reply
                raise othercell.unavailable(other, self.cell)
            except grpc.aio.AioRpcError as exc:
                error = from_grpc_error(exc)
                if conn is not None and _answered(exc):
                    conn.answered = True
                other = othercell.in_error(exc.details(), self.cell)
                unchecked = False
                if other is None and conn is not None and error.code == grpc.StatusCode.NOT_FOUND:
                    other, unchecked = await self._other_cell(conn, method, request)
                if other is not None:
                    error = othercell.unavailable(other, self.cell)
                    refused = True  # by the wrong admin: nothing was made
                elif unchecked:
                    # Which cell said NOT_FOUND is unknown: ask again rather than take it.
                    error = othercell.unchecked(method.name)
                    refused = True
                elif silent_after is not None and exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    # Its own bound, not the call's deadline: the admin has said nothing since
                    # `sent_at`, the start of this outage.
                    error = UnavailableError(
                        f"it has answered nothing to {method.name} for {silent_after:g} s"
                    )
                    outage.record(sent_at, conn.address if conn else None, error, explained=False)
                elif error.code == grpc.StatusCode.CANCELLED and conn is not None and conn.poisoned:
                    # Another call dropped this connection under us: the admin is unreachable.
                    error = UnavailableError(f"admin {conn.address} of {self.cell} unreachable")
                elif method.name in _EVERY_ADMIN_HAS and _not_an_admin(exc):
                    # A stale location.proto whose address another server took over: this is
                    # an admin that is not there (UNIMPLEMENTED would read as the gateway's).
                    error = UnavailableError(f"it does not serve sax.Admin ({exc.details()})")
                    refused = True  # by no admin: nothing was made
                elif asks_for_credentials(exc.code(), exc.details() or ""):
                    # The same, a server behind an auth proxy: its 401 or 403 would read as
                    # the caller's own credentials refused.
                    error = UnavailableError(
                        f"it is no Sax admin: it asks for credentials ({exc.code().name}: "
                        f"{exc.details()})"
                    )
                    refused = True
                else:
                    answered = _answered(exc)
                    # Saved by an admin replaced meanwhile: the one now serving may have it.
                    attempts.uncertain |= SAVED_DURING_TAKEOVER in (exc.details() or "")
                error.__cause__ = exc
            except UnavailableError as exc:
                error = exc
            except asyncio.CancelledError:
                # grpc.aio reports a call on a channel that another call closed (poisoned) as
                # a local cancellation; unless this task is being cancelled, the admin is away.
                task = asyncio.current_task()
                if conn is None or not conn.poisoned or (task is not None and task.cancelling()):
                    raise
                error = UnavailableError(f"admin {conn.address} of {self.cell} unreachable")
            outage.sent = False
            if error.code == grpc.StatusCode.UNAVAILABLE:
                if conn is not None and not answered:
                    # Sent, maybe applied, answer lost; unless grpc never had a connection.
                    never = refused or _never_sent(error.__cause__) or not conn.could_have_sent()
                    attempts.uncertain |= not never
                    self._poison(conn)
                # SAX_ROOT's own failure (the location could not be read) explains itself too.
                explained = answered or isinstance(error.__cause__, StorageError)
                outage.record(now(), conn.address if conn else None, error, explained=explained)
                maybe_made = method.changes and attempts.uncertain
                # The admin itself says retry later: the model is still being unloaded after
                # its unpublish (upstream's admin says so for ~10 s, this project's until the
                # unload is done). It passes; given up after the unreachable window, a publish
                # right after an unpublish was a 503 within the call's deadline.
                passing = answered and BEING_UNPUBLISHED in error.message
                since = outage.since
                if self._down_since is not None and not explained and not method.paced:
                    since = min(since, self._down_since)  # the cell's outage goes on
                if now() - since >= self._unreachable_after and not (
                    maybe_made or method.long_poll or passing
                ):
                    if not explained:
                        self._down_since = since
                    raise self._unreachable(outage)
                if answered:
                    self._down_since = None
            else:
                outage.error = None  # it answered
                self._down_since = None
            delay = next(delays)
            if error.code not in RETRY_CODES:
                raise error
            if not deadline.allows(delay):
                if method.changes and attempts.uncertain:
                    raise self._maybe_made(method, outage)
                raise self._unreachable(outage) if outage.error is not None else error
            _log.debug(
                "admin %s for %s: %s; retrying in %.3fs", method.name, self.cell, error, delay
            )
            await asyncio.sleep(delay)

    async def _other_cell(
        self, conn: _Connection, method: AdminMethod[_Req, _Resp], request: _Req
    ) -> tuple[str | None, bool]:
        """After a NOT_FOUND, the other cell ``conn``'s admin serves, if it does and the method
        is one that admins do not check the cell of (asked once per connection), and whether
        the admin did not answer that question (then its NOT_FOUND may be another cell's)."""
        model_id = getattr(request, "model_id", "")
        if conn.of_this_cell or method.name not in othercell.UNCHECKED or not model_id:
            return None, False
        if conn.poisoned:  # dropped by another call meanwhile: grpc refuses a closed channel
            return None, True
        self._counter.value += 1
        try:
            answered, other = await othercell.in_answer_to_list(
                conn.stub, model_id, self.cell, self._unreachable_after
            )
        except asyncio.CancelledError:
            # Another call dropped the connection under the List (grpc.aio reports that as a
            # local cancellation). Raised from here, it ended the caller's call: a watch
            # ended so, and forgot replicas that still served.
            task = asyncio.current_task()
            if not conn.poisoned or (task is not None and task.cancelling()):
                raise
            answered, other = False, None
        conn.of_this_cell = answered and other is None
        return other, not answered

    def _silent_after(
        self, method: AdminMethod[_Req, _Resp], timeout: float | None
    ) -> float | None:
        """How long an attempt of ``method`` may go unanswered before the admin is taken for
        hung; None when only the call's deadline (``timeout`` from now) bounds it."""
        if not method.prompt or (timeout is not None and timeout <= self._unreachable_after):
            return None
        return self._unreachable_after

    def _maybe_made(self, method: AdminMethod[_Req, _Resp], outage: _Outage) -> SaxError:
        """A change whose outcome is unknown: sent, its answer lost, and no retry answered."""
        where = f" at {outage.address}" if outage.address else ""
        return DeadlineExceededError(
            f"admin {method.name} for {self.cell} did not finish within its deadline: the admin"
            f" server{where} did not answer it once it was sent (it went away or hangs), so it"
            " may have been made"
        )

    def _unreachable(self, outage: _Outage) -> SaxError:
        assert outage.error is not None
        if outage.explained:
            return outage.error
        where = f"at {outage.address}" if outage.address else "(no address)"
        error = UnavailableError(
            f"the admin server of cell {self.cell} {where} is unreachable: {outage.error.message}"
        )
        error.__cause__ = outage.error
        return error

    async def _connection(self) -> _Connection:
        conn = self._conn
        if conn is not None:
            return conn
        async with self._connect_lock:  # one location read for all callers waiting on it
            if self._conn is None:
                self._reading_since = now()
                try:
                    address = await self.files.read_location()
                except SaxError as exc:  # SAX_ROOT failed, or names no admin
                    self._read_failed = exc
                    raise
                finally:
                    self._reading_since = None
                self._read_failed = None
                self._conn = _Connection(address)
                if self._conn.address != self._announced:
                    self._announced = self._conn.address
                    _log.info("admin of %s is at %s", self.cell, self._conn.address)
                else:  # a reconnection to the same address, once per retry while it is away
                    _log.debug(
                        "reconnecting to the admin of %s at %s", self.cell, self._conn.address
                    )
                if self._follower is None or self._follower.done():
                    self._follower = asyncio.get_running_loop().create_task(
                        self._follow_location(),
                        name=f"location of {self.cell}",
                        context=contextvars.Context(),  # part of no call
                    )
            return self._conn

    def lookup_failure(self) -> SaxError | None:
        """Why this cell's admin cannot be looked up now: a read of its location.proto under
        way for `SLOW_LOCATION_READ_S` or more (SAX_ROOT does not answer), or the last one's
        failure (SAX_ROOT failed, or names no admin); None if the last read found it. For a
        caller whose own deadline ran out waiting on something that needed the admin."""
        since = self._reading_since
        if since is not None and now() - since >= SLOW_LOCATION_READ_S:
            return self.files.unanswered()
        return self._read_failed

    async def _follow_location(self) -> None:
        """Drops the connection when location.proto names another address; ends when there
        is no connection (the next one starts it again)."""
        while self._conn is not None:
            await asyncio.sleep(LOCATION_CHECK_S)
            conn = self._conn
            if conn is None:
                return
            try:
                address = await self.files.read_location()
            except Exception as exc:  # unreadable for now: keep the connection we have
                _log.debug("re-reading the location of %s: %s", self.cell, exc)
                continue
            if address != conn.address and self._conn is conn:
                _log.warning("admin of %s moved from %s to %s", self.cell, conn.address, address)
                self._poison(conn)

    def _poison(self, conn: _Connection) -> None:
        if conn.poisoned:
            return
        conn.connected = conn.could_have_sent()
        conn.poisoned = True
        if self._conn is conn:
            self._conn = None
        task = asyncio.get_running_loop().create_task(close_channel(conn.channel))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        follower, self._follower = self._follower, None
        conn, self._conn = self._conn, None
        if follower is not None:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
        if conn is not None:
            await close_channel(conn.channel)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
