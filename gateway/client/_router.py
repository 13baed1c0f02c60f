"""Routes data calls to a model's replicas: pick, call, fail over, retry within the deadline
(an overloaded model: within ``ClientSettings.overloaded_after``).

The steady-state path of a unary call is: a dict lookup for the model's table, a round-robin
pick, a dict lookup for the replica's stub, the RPC. Nothing else is allocated, no admin RPC
is made and no file is read; the failure bookkeeping (``Retry``) only exists once a call fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
from collections.abc import AsyncGenerator, Callable
from typing import TypeAlias, TypeVar

import grpc

from gateway import naming
from gateway.client._admin import CellAdmin
from gateway.client._channels import Backend, ChannelPool
from gateway.client._failover import (
    CLIENT_CLOSED,
    Retry,
    closed_under,
    failed,
    stream_error,
    unparsed,
)
from gateway.client._hung import Board, HangWatch
from gateway.client._locations import AddressTable, CellWatches, StaticTable, naming_list, watch
from gateway.client._observer import NO_ATTEMPT, Observer, observed
from gateway.client._requested import RequestedReplicas
from gateway.client._serializing import Unparsed
from gateway.client._types import ClientSettings
from gateway.common.deadline import Deadline, now
from gateway.common.errors import (
    InternalError,
    UnavailableError,
    error_for_code,
    from_grpc_error,
)
from gateway.common.rpc import cancelled_by_caller

_log = logging.getLogger(__name__)

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")
_Out = TypeVar("_Out")
# Picks the RPC off a backend's typed stubs, e.g. ``lambda b: b.lm.Generate``: the request
# and response types of a call follow from it.
Unary: TypeAlias = Callable[[Backend], grpc.aio.UnaryUnaryMultiCallable[_Req, _Resp]]
Streaming: TypeAlias = Callable[[Backend], grpc.aio.UnaryStreamMultiCallable[_Req, _Resp]]

_C = TypeVar("_C")
_names: dict[object, str] = {}
NOT_FOUND = grpc.StatusCode.NOT_FOUND
# Models of one cell whose admin has not answered yet, each with a table and a watch that
# retries until it does. Normally a table is answered within milliseconds; while the admin
# does not answer, every name a caller made up kept one (about 17 KB and a task polling each
# second: 3,000 names took a gateway from 69 to 121 MB and 7% of a core). Past this many, a
# call naming another model of that cell is UNAVAILABLE at once.
MAX_UNANSWERED = 1_000


def named(name: str, pick: Callable[[Backend], _C]) -> Callable[[Backend], _C]:
    """``pick`` (an RPC off a backend's stubs), known to observers as ``name``."""
    _names[pick] = name
    return pick


def method_name(method: Callable[[Backend], object]) -> str:
    """The name `named` gave ``method`` (``"lm.Generate"``), for observers."""
    return _names.get(method) or repr(method)


class Router:
    """Address tables, their watches and the channel pool, shared by all data calls."""

    def __init__(
        self,
        *,
        admin_for: Callable[[naming.CellId], CellAdmin],
        settings: ClientSettings,
        observer: Observer | None = None,
    ) -> None:
        self._admin_for = admin_for
        # None when nobody watches: the hot path then skips every hook.
        self._observer = observer
        self._num_conn = settings.num_conn
        self._fail_fast = settings.fail_fast
        self._fail_unrequested = settings.fail_unrequested
        self._overloaded_after = settings.overloaded_after
        self._proxy_addr = settings.proxy_addr
        self._seed = random.getrandbits(64)
        self._tables: dict[str, AddressTable] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._watches: dict[naming.CellId, CellWatches] = {}  # of each cell's models
        self._pool = ChannelPool(settings.max_reply_bytes)
        self._hang_watch = HangWatch(self._pool)
        self._requested = RequestedReplicas(admin_for)
        self._closed = False
        # Unary calls, and streams past their first response, which `close` cuts: closing
        # their channels does not when a channel is already closing after its grace period
        # (its replica left), as every one is once `close` has stopped the watches.
        self._in_flight: set[grpc.aio.Call] = set()

    @property
    def num_channels(self) -> int:
        return len(self._pool)

    def is_serving(self, model_id: str) -> bool:
        """Whether ``model_id`` has a table the admin has answered for, without an error."""
        table = self._tables.get(model_id)
        return table is not None and table.known and table.error is None

    def knows_replicas(self) -> bool:
        """Whether some model has replicas on record that the admin reported (data calls to
        it work without the admin, while the admin cannot be reached)."""
        return any(t.addresses and t.error is None for t in self._tables.values() if t.known)

    def table(self, model_id: str) -> AddressTable:
        """The model's table, opened (and its watch started) on first use."""
        table = self._tables.get(model_id)
        if table is None:
            table = self._open(model_id)
        return table

    def _open(self, model_id: str) -> AddressTable:
        if self._closed:  # a closed router starts no watch (every table went at close)
            raise from_grpc_error(CLIENT_CLOSED)
        model = naming.parse_model_id(model_id)  # only unknown IDs are parsed
        if len(self._tables) >= MAX_UNANSWERED and self._unanswered(model.cell) >= MAX_UNANSWERED:
            raise UnavailableError(
                f"{MAX_UNANSWERED} models of cell {model.cell} wait for their admin's first "
                "answer, which does not come; retry later"
            )
        if self._proxy_addr is not None:
            table: AddressTable = StaticTable(model_id, self._proxy_addr)
        else:
            table = AddressTable(model_id, num_conn=self._num_conn, seed=self._seed)
            # The watch belongs to no call: an empty context keeps it from inheriting the
            # context (request ID, trace) of the call that happened to open the table.
            watches = self._watches.get(model.cell)
            if watches is None:
                watches = self._watches[model.cell] = CellWatches(model.cell.id)
            self._tasks[model_id] = asyncio.get_running_loop().create_task(
                self._watch(table, self._admin_for(model.cell), model.cell, watches),
                name=f"watch {model_id}",
                context=contextvars.Context(),
            )
        self._tables[model_id] = table
        self._hang_watch.start()
        return table

    def _unanswered(self, cell: naming.CellId) -> int:
        """How many tables of ``cell`` the admin has not answered for yet."""
        prefix = f"{cell.id}/"
        return sum(
            1 for t in self._tables.values() if not t.known and t.model_id.startswith(prefix)
        )

    async def _watch(
        self, table: AddressTable, admin: CellAdmin, cell: naming.CellId, watches: CellWatches
    ) -> None:
        try:
            await watch(table, admin, self._changed, watches)
        except asyncio.CancelledError:
            if cancelled_by_caller():  # `forget` or `close`: they settle the table
                raise
            # A cancellation no one asked for (grpc.aio raises one in a call whose channel was
            # closed under it): ended so, the watch left the calls waiting on the table asleep
            # until their deadline. They ask the admin again, as after `forget`.
            _log.warning("watch of %s was cut short; its calls ask again", table.model_id)
            table.set_error(
                UnavailableError(f"watching {table.model_id} was cut short"),
                asked_at=float("-inf"),
            )
        except Exception as exc:  # a bug; fail the model's calls rather than hang them
            _log.exception("watch of %s failed", table.model_id)
            table.set_error(
                InternalError(f"watching {table.model_id} failed: {exc!r}"),
                asked_at=now(),
            )
        finally:
            # A cell none of whose models is watched is forgotten: every cell name a caller
            # made up (`/sax/c12345/x`, a 404) kept its entry, about 1 KB each, for good.
            if watches.running == 0 and self._watches.get(cell) is watches:
                del self._watches[cell]
            # Forget the model at once: the next call asks the admin again (no negative cache).
            if self._tables.get(table.model_id) is table:
                del self._tables[table.model_id]
                del self._tasks[table.model_id]
                self._retain_channels(table)
                if not self._closed:  # the model did not lose its replicas: this client stops
                    self._no_replicas(table.model_id)
                error = table.error
                if self._observer is not None and error is not None and error.code == NOT_FOUND:
                    self._observer.model_gone(table.model_id)

    def gone(self, model_id: str) -> None:
        """The model was unpublished (by this client): forgets it, and tells the observer."""
        self._requested.changed(model_id)
        self._drop(model_id)
        if self._observer is not None:
            self._observer.model_gone(model_id)

    def share_findings(self, board: Board) -> None:
        """Tells the stack's other processes of the hung replicas this one finds, and hears
        of theirs (gateway/client/_hung.py), and of the models it changes (_requested.py)."""
        self._hang_watch.board = board
        self._requested.board = board

    def forget(self, model_id: str, *, keep_replicas: bool = False) -> None:
        """Drops what is known of the model (after this client published or updated it): the
        next call, and every call waiting for it, asks the admin anew, and a model this
        client watched is watched anew at once. The observer hears of its replicas from the
        new watch: reported as none meanwhile, a model that served showed 0 replicas after
        an ACL change, and its old count after a change of its replicas, until a call of it
        came to this process. ``keep_replicas`` (a model updated, which its replicas go on
        serving): calls go to the replicas known until the admin answers the new watch;
        dropped, an update answered (or lost) as the admin died left the model's calls
        UNAVAILABLE until it was back, though its replicas served all along."""
        self._requested.changed(model_id)
        older = self._tables.get(model_id)
        # Taken before `_drop`, which sets its error.
        kept = keep_replicas and older is not None and older.known and older.error is None
        if not self._drop(model_id) or self._closed:
            return
        # Its cell's admin may answer no new watch now: the next call asks again.
        with contextlib.suppress(UnavailableError):
            table = self._open(model_id)
            if kept and older is not None:
                table.carry(older)

    def _drop(self, model_id: str) -> bool:
        """Drops the model's table, if it has one (whether it had)."""
        table = self._tables.pop(model_id, None)
        if table is None:
            return False
        self._tasks.pop(model_id).cancel()
        # Asked "before every call": waiting calls take it as stale and open a new table.
        table.set_error(UnavailableError(f"{model_id} changed"), asked_at=float("-inf"))
        self._retain_channels(table)
        return True

    def _changed(self, table: AddressTable) -> None:
        self._retain_channels(table)
        if self._observer is not None:
            self._observer.addresses_changed(table.model_id, table.addresses)

    def _no_replicas(self, model_id: str) -> None:
        """The model's table is gone: report no replicas until a new table finds some."""
        if self._observer is not None:
            self._observer.addresses_changed(model_id, ())

    def _retain_channels(self, _changed: AddressTable) -> None:
        self._pool.retain(a for t in self._tables.values() for a in t.addresses)

    def _failed(
        self, retry: Retry | None, table: AddressTable, address: str, exc: grpc.aio.AioRpcError
    ) -> Retry:
        retry = failed(retry, table, address, exc)  # raises unless another replica may help
        if self._observer is not None:
            self._observer.failover(table.model_id, address, exc.code())
        return retry

    async def unary(
        self, model_id: str, method: Unary[_Req, _Resp], request: _Req, deadline: Deadline
    ) -> _Resp:
        """Calls ``method`` on a replica of ``model_id``, failing over and retrying."""
        started = now()
        table = self._tables.get(model_id) or self._open(model_id)
        retry: Retry | None = None
        number = 0
        while True:
            address, retry, table = await self._pick(table, started, deadline, retry)
            number += 1
            backend = self._pool.get(address)
            backend.in_flight += 1
            call: grpc.aio.UnaryUnaryCall[_Req, _Resp] | None = None
            try:
                rpc = method(backend)
                timeout = deadline.timeout(f"call to {model_id}")
                if self._observer is None:
                    call = rpc(request, timeout=timeout)
                    self._in_flight.add(call)
                    response = await call
                else:
                    attempt = self._observer.attempt(model_id, method_name(method), address, number)
                    call = rpc(request, timeout=timeout, metadata=attempt.metadata)
                    self._in_flight.add(call)
                    response = await observed(attempt, call)
                backend.answers += 1
                if isinstance(response, Unparsed):
                    raise unparsed(model_id, address, response)
                return response
            except grpc.aio.AioRpcError as exc:
                retry = self._failed(retry, table, address, exc)
            except asyncio.CancelledError:
                if cancelled_by_caller():
                    raise
                retry = self._failed(retry, table, address, self._cut_under(address))
            finally:
                self._in_flight.discard(call)
                backend.in_flight -= 1

    async def stream(
        self,
        model_id: str,
        method: Streaming[_Req, _Resp],
        request: _Req,
        deadline: Deadline,
        convert: Callable[[_Resp], _Out],
    ) -> AsyncGenerator[_Out, None]:
        """Streams what ``convert`` makes of each of ``method``'s responses from a replica of
        ``model_id``. (Converted here rather than in a generator around this one: each layer
        lives as long as the stream, about 0.5 KB per open stream.)

        Failures before the first response fail over like unary calls; after it they end the
        stream. Closing the generator (or cancelling its consumer) cancels the RPC at once.
        """
        started = now()
        table = self._tables.get(model_id) or self._open(model_id)
        retry: Retry | None = None
        attempt = NO_ATTEMPT
        number = 0
        backend: Backend | None = None  # the replica running the stream, counted as busy
        try:
            while True:
                address, retry, table = await self._pick(table, started, deadline, retry)
                number += 1
                if self._observer is not None:
                    attempt = self._observer.attempt(model_id, method_name(method), address, number)
                timeout = deadline.timeout(f"call to {model_id}")
                backend = self._pool.get(address)
                call = method(backend)(request, timeout=timeout, metadata=attempt.metadata)
                backend.in_flight += 1
                try:
                    response = await call.read()
                    backend.answers += 1
                    if isinstance(response, Unparsed):
                        raise unparsed(model_id, address, response)
                    break
                except grpc.aio.AioRpcError as exc:
                    attempt.end(exc.code(), exc.trailing_metadata())
                    retry = self._failed(retry, table, address, exc)
                except asyncio.CancelledError:
                    attempt.end(grpc.StatusCode.CANCELLED, None)
                    if cancelled_by_caller():
                        call.cancel()
                        raise
                    retry = self._failed(retry, table, address, closed_under(address))
                except BaseException:
                    attempt.end(grpc.StatusCode.CANCELLED, None)
                    call.cancel()
                    raise
                backend.in_flight -= 1  # this attempt failed over: another replica is next
                backend = None
            code, trailing = grpc.StatusCode.CANCELLED, None
            self._in_flight.add(call)
            try:
                while response is not grpc.aio.EOF:
                    # types-grpcio types read() as `object | response`, its EOF being a plain
                    # object, so `is not EOF` cannot narrow it to the response type.
                    yield convert(response)  # type: ignore[arg-type]
                    response = await call.read()
                    if isinstance(response, Unparsed):
                        raise unparsed(model_id, address, response)
                if attempt is not NO_ATTEMPT:
                    code, trailing = grpc.StatusCode.OK, await call.trailing_metadata()
            except grpc.aio.AioRpcError as exc:
                code, trailing = exc.code(), exc.trailing_metadata()
                raise stream_error(model_id, address, exc) from exc
            except asyncio.CancelledError:
                if cancelled_by_caller():
                    raise
                # The channel was closed under the stream (the replica was dropped while
                # hung, or the client closed). Responses went out already, so no other
                # replica can take over: the stream failed, and its consumer must see a
                # failure to report, not a cancellation that passes for its caller leaving.
                closed = self._cut_under(address)
                code = closed.code()
                raise from_grpc_error(closed) from None
            finally:
                self._in_flight.discard(call)
                call.cancel()  # a no-op once the call has ended
                attempt.end(code, trailing)
        finally:
            if backend is not None:
                backend.in_flight -= 1

    def _cut_under(self, address: str) -> grpc.aio.AioRpcError:
        """Why a call on ``address`` was cancelled by no caller: `close`, or its channel
        closing under it."""
        return CLIENT_CLOSED if self._closed else closed_under(address)

    async def _pick(
        self, table: AddressTable, started: float, deadline: Deadline, retry: Retry | None
    ) -> tuple[str, Retry | None, AddressTable]:
        """The replica to try next (one not tried this round) and the table it came from (a
        new one when the old one went stale), waiting for one if need be."""
        while True:
            if self._closed:  # no new channel for a call (or a failover) once closed
                raise from_grpc_error(CLIENT_CLOSED)
            if retry and retry.tried:
                address = table.pick_other(retry.tried, self._pool.suspect)
            else:
                address = table.pick(self._pool.worse, self._pool.suspect)
            if address is not None:
                return address, retry, table
            retry = retry or Retry()
            table = await self._wait(table, started, deadline, retry)

    async def _wait(
        self, table: AddressTable, started: float, deadline: Deadline, retry: Retry
    ) -> AddressTable:
        """Waits until trying again makes sense and returns the table to try (a new one when
        the old one went stale), or raises why trying again does not make sense."""
        if table.error is not None:
            if table.error_asked_at < started:
                # The admin was asked before this call began (the model may exist again
                # since): ask again rather than serve a stale NOT_FOUND.
                retry.next_round()
                return self.table(table.model_id)
            # A fresh instance: the stored one is shared by every call that fails this way.
            raise error_for_code(table.error.code, table.error.message)
        unreachable = table.unreachable
        if unreachable is not None and not table.known:
            raise error_for_code(unreachable.code, unreachable.message)
        if unreachable is not None and table.all_down():
            # The admin has been unreachable for a while and no replica on record can be
            # reached (or none is on record): the whole cell is most likely down, and no
            # answer will come within the deadline to say where the model went.
            raise error_for_code(
                unreachable.code,
                f"no replica of {table.model_id} can be reached: {unreachable.message}",
            )
        if not table.known or not table.addresses:
            if table.known and table.undialable:
                raise UnavailableError(
                    f"no replica of {table.model_id} can be reached: the admin of its cell "
                    f"names only {naming_list(table.undialable)} for it, not HOST:PORT"
                )
            if table.known and self._fail_fast:
                raise retry.last or UnavailableError(f"no replica of {table.model_id} is serving")
            recheck: float | None = None
            if table.known and self._fail_unrequested:
                refusal = self._requested.refusal(table)
                if refusal is not None:
                    raise refusal
                recheck = self._requested.next_read_in(table)
            # No longer than a unary call would wait: a stream to a model without replicas
            # waited for its whole stream deadline (ten minutes) without a byte.
            timeout = deadline.wait_timeout(f"call to {table.model_id}")
            if recheck is not None and (timeout is None or recheck < timeout):
                await table.changed_within(recheck)  # then asks whether any is requested
                retry.next_round()
                return table
            await table.wait_changed(timeout)
        else:
            # Every replica failed this round: back off, then go round again, or sooner when
            # the admin reports a change (a dead replica's model loaded elsewhere). Until the
            # deadline; an overloaded model, only for `overloaded_after` (`_failover.py`).
            delay = next(retry.delays)
            if (
                self._fail_fast
                or retry.hopeless()
                or not deadline.allows(delay)
                or retry.overload_ended(delay, self._overloaded_after)
            ):
                raise retry.error(table.model_id)
            if self._observer is not None:
                self._observer.retry(table.model_id)
            await table.changed_within(delay)
        retry.next_round()
        return table

    async def close(self) -> None:
        """Ends every call in flight with UNAVAILABLE (a stream after its first response
        too) and refuses new ones: what a server stopping wants its streams to report while
        they can still send a last message."""
        self._closed = True
        for call in list(self._in_flight):
            call.cancel()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tables.clear()
        await self._hang_watch.close()
        await self._requested.close()
        await self._pool.close()
