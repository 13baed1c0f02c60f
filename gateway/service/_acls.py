"""Each model's ACLs as the admin lists them, kept for a while by each gateway process so that
a data call seldom waits for the admin (`Access`'s ACL check, gateway/service/_access.py).

A model's ACLs are read with one admin ``List`` per model at a time, however many calls wait
for them; kept ``auth.acl_cache_seconds``; renewed in the background while stale by less than
that (those of a cell with `CELL_RENEWAL_MODELS` models at hand or more: all of them, by one
listing of the cell); kept in force while the admin cannot be reached. No call waits past its
own deadline.

The gateway processes of one stack (`saxgw up --workers N`) tell each other of the changes
they make (`Changes`, the stack's slot table): ACLs read before a change that another process
made are read anew by the next call here, as the process that made it does, so a change
through the stack's port holds for its next call whichever process that reaches.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import time
from collections import Counter
from typing import NamedTuple, Protocol

from gateway.client import (
    Client,
    DeadlineExceededError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)
from gateway.common.deadline import Deadline
from gateway.common.failurelog import FailureLog

log = logging.getLogger(__name__)
# Failed reads, logged per cell, not per model: while an admin is unreachable, each new model
# name a caller sent was a WARNING of its own (1,000 calls naming 1,000 names: 1,000 lines).
_FAILURES = FailureLog(log)
_READING = "reading model ACLs from the admin of"

#: Seconds an ACL read may take; each call waits for it until its own deadline at most.
_ACL_TIMEOUT = 10.0
# ACL reads failing with these say that the admin did not answer, not what the ACLs are.
_UNREACHABLE = (UnavailableError, DeadlineExceededError)
# How long calls wait for the admin to renew ACLs they already have (`AclCache.get`): counted
# from when the read began, so it is one moment per read, not one per call.
_STALE_WAIT_S = 2.0
# Only published models' ACLs are kept (a name the admin does not know keeps none); past this
# many, the one unused longest is dropped for each new one.
_MAX_MODELS = 10_000
#: A cell with this many models' ACLs at hand renews them all with one listing of the cell, not
#: a List per model: a gateway process sent each admin a List per model in use per lifetime
#: (96 models called without a pause: ~85 a second; a big cell's hundreds, behind several
#: processes, thousands). Its models then share one expiry, so they go stale, and are renewed,
#: together.
CELL_RENEWAL_MODELS = 8


class Changes(Protocol):
    """The board on which the stack's gateway processes count the changes each made
    (gateway/common/slottable.py)."""

    def note_change(self, key: str) -> None: ...
    def changes(self, key: str) -> int: ...


class _Entry(NamedTuple):
    """A model's ACLs at hand: until when they answer calls, and the board's count of the
    model's changes when they were read (`Changes`)."""

    expires: float
    acls: dict[str, str]
    mark: int


class AclCache:
    """The ACLs of the models this process's calls named, by Sax method name."""

    def __init__(self, client: Client, lifetime: float, board: Changes | None = None) -> None:
        self._client = client
        self._lifetime = lifetime
        self._board = board
        self._acls: dict[str, _Entry] = {}
        self._fetching: dict[str, _Read] = {}
        # Models whose last ACL read found the admin unreachable: their cached ACLs stay in
        # force, and calls do not wait for the admin (`get`).
        self._unreachable: set[str] = set()
        # Cells whose ACLs one listing renews (`_renew_cell`), while it is under way.
        self._renewing: dict[str, _Listing] = {}
        self._kept: Counter[str] = Counter()  # models in `_acls`, by cell

    async def get(self, model: str, deadline: Deadline) -> dict[str, str]:
        """The model's ACLs (Sax method name -> ACL name; {} for a model the admin does not
        know), waiting for the admin no later than ``deadline``, the call's."""
        cached = self._acls.get(model)
        if cached is not None and self._board is not None and cached.mark != self._mark(model):
            self._stale(model)  # another process of the stack changed the model since
            cached = self._acls[model]
        if cached is not None:
            expires, acls, _ = cached
            now = time.monotonic()
            if now < expires:
                return acls
            if now < expires + self._lifetime or model in self._unreachable:
                # Stale by less than its lifetime: answer with it and refresh it in the
                # background, so that no call waits for the admin while calls keep coming (a
                # model's ACL is still at most two lifetimes old). Older, the call waits.
                # The same while the admin cannot be reached: nobody can change the ACLs
                # through it then, and data calls must not depend on it (upstream's model
                # servers keep enforcing the ACLs they last got, too).
                self._renew(model)
                return acls
        # Never read, the call waits for them: it fails rather than skip the check. Read
        # before, an admin that does not answer at all (hung, or its host gone) would hold
        # every call for the whole fetch: past a moment, the ACLs at hand answer. Neither
        # waits past the call's deadline (the fetch is shared: its time is no one call's).
        left = deadline.remaining()
        moment = cached is not None and (left is None or left > _STALE_WAIT_S)
        wait = left
        if moment:
            # The moment is the read's: once it is over, calls that come while the read is
            # still out (an admin that hangs or was killed: 5 s until it is reported
            # unreachable) answer at once. Each waited a moment of its own, so a caller's
            # calls stalled 2 s after 2 s until the read failed.
            wait = self._read_began(model) + _STALE_WAIT_S - time.monotonic()
            if wait <= 0:
                assert cached is not None
                return cached.acls
        fetch = asyncio.shield(self._refresh(model, contextvars.copy_context()))
        try:
            async with asyncio.timeout(wait):
                return await fetch
        except TimeoutError:
            if cached is None or not moment:
                # Not the admin's fault when it could not be looked up (SAX_ROOT down): a
                # short deadline was a 504 blaming the admin, a long one the 503 saying why.
                raise self._client.lookup_failure(model) or DeadlineExceededError(
                    f"call to {model} exceeded its deadline reading the model's ACLs from the admin"
                ) from None
            return cached.acls
        except _UNREACHABLE:
            if cached is None:
                raise
            return cached.acls  # and `_fetch_acls` keeps them in force

    def _read_began(self, model: str) -> float:
        """When the read out for the model's ACLs began, its own or its cell's listing
        (`_renew_cell`), the earlier; now if none is. A listing renewing them was no read of
        the model's: a call found none out, and waited a moment (2 s) from its own start,
        not 1 s from the listing's (the stall of a hung admin's, doubled)."""
        out = self._fetching.get(model)
        began = [out.began] if out is not None and not out.task.done() else []
        listing = self._renewing.get(_cell_of(model))
        if listing is not None and model in listing.models:  # not one read since it began
            began.append(listing.began)
        return min(began, default=time.monotonic())

    def _renew(self, model: str) -> None:
        """Renews stale ACLs in the background: the model's alone, or, when this process keeps
        those of `CELL_RENEWAL_MODELS` models of its cell or more, all of them at once."""
        cell = _cell_of(model)
        listing = self._renewing.get(cell)
        if listing is not None and model in listing.models:
            return  # the listing under way renews this model's too
        # One read first after the listing began is not in it: it was not renewed until the
        # listing was over (a hung admin's: 5 s), its calls answered from it unrenewed.
        if listing is not None or self._kept[cell] < CELL_RENEWAL_MODELS:
            self._refresh(model, contextvars.Context())
            return
        kept = [m for m in self._acls if _cell_of(m) == cell]
        self._renewing[cell] = _Listing(time.monotonic(), frozenset(kept))
        # Part of no call (no span, no request ID), as a background `_refresh`.
        task = asyncio.get_running_loop().create_task(
            self._renew_cell(cell, kept), context=contextvars.Context()
        )
        task.add_done_callback(lambda _: self._renewing.pop(cell, None))

    async def _renew_cell(self, cell: str, kept: list[str]) -> None:
        """Renews the ACLs of ``kept`` (models of ``cell``) from one listing of the cell. A
        model's entry replaced meanwhile (read anew, or changed here: `changed`) keeps its
        newer value; a model the listing lacks (unpublished elsewhere) is dropped, as a read
        of it keeps nothing."""
        before = {m: self._acls[m] for m in kept if m in self._acls}
        marks = {m: self._mark(m) for m in before}  # as a read's, taken before it
        try:
            listed = await self._client.list_all(cell, timeout=_ACL_TIMEOUT)
        except Exception as error:  # reported as any failed read is (`_fetched`)
            if isinstance(error, _UNREACHABLE):
                self._unreachable.update(m for m in before if m in self._acls)
            log.debug("reading the ACLs of the models of %s failed: %s", cell, error)
            _FAILURES.failed((_READING, cell), f"{_READING} {cell} failed: {error}")
            return
        acls = {d.model_id: d.acls for d in listed}
        expires = time.monotonic() + self._lifetime
        for model, entry in before.items():
            if self._acls.get(model) is not entry:
                continue
            del self._acls[model]  # and in again, last: read most recently
            self._unreachable.discard(model)
            if model in acls:
                self._acls[model] = _Entry(expires, acls[model], marks[model])
            else:  # no longer published: kept no more, as a read of it would keep none
                self._kept[cell] -= 1
        _FAILURES.succeeded((_READING, cell), f"{_READING} {cell}")

    def _refresh(self, model: str, context: contextvars.Context) -> asyncio.Future[dict[str, str]]:
        """The model's ACL fetch: one admin call per model at a time, however many calls wait
        for its answer (a burst must not turn into a burst of admin calls), each until its
        own deadline; the fetch has its own (`_ACL_TIMEOUT`), since it is no one call's. A
        background one runs in an empty ``context``: it is part of no call (no span, no
        request ID)."""
        out = self._fetching.get(model)
        mark = self._mark(model)
        # One done already is forgotten by its callback, still pending: a new read starts;
        # so does one if the model changed since that read began (through another process).
        if out is not None and not out.task.done() and out.mark == mark:
            return out.task
        loop = asyncio.get_running_loop()
        fetch = loop.create_task(self._fetch_acls(model), context=context)
        self._fetching[model] = _Read(fetch, time.monotonic(), mark)
        # In the fetch's own context: the call that started it may be long over when it ends
        # (`CallRecord.end`).
        fetch.add_done_callback(lambda done: self._fetched(model, done), context=context)
        return fetch

    def _fetched(self, model: str, fetch: asyncio.Future[dict[str, str]]) -> None:
        out = self._fetching.get(model)
        if out is not None and out.task is fetch:
            del self._fetching[model]
        error = None if fetch.cancelled() else fetch.exception()
        if error is not None:
            # Nobody may be waiting (a background refresh): log it here. The entry is left
            # as it was: once it is too old, calls wait for a fetch and fail with its error,
            # unless the admin could not be reached (`_fetch_acls` keeps it in force then).
            log.debug("reading the ACLs of %s failed: %s", model, error)
            cell = _cell_of(model)
            _FAILURES.failed(
                (_READING, cell),
                f"{_READING} {cell} failed: " + str(error).replace(model, "<model>"),
            )

    async def _fetch_acls(self, model: str) -> dict[str, str]:
        try:
            detail = await self._client.list_detail(model, timeout=_ACL_TIMEOUT)
        except (InvalidArgumentError, NotFoundError):
            # No such model: no ACL to apply; the call itself reports the real error (and a
            # missing field before an unknown model). Other errors fail closed.
            self._unreachable.discard(model)
            _read_worked(model)
            return {}
        except _UNREACHABLE:
            # Kept in force from the moment the read is over, not from its done callback
            # (`_fetched`), which runs a turn of the loop later: a call that came between
            # found the read over and the ACLs not in force, and waited a moment (2 s) of
            # its own for a read of its own.
            if model in self._acls:
                self._unreachable.add(model)
            raise
        out = self._fetching.get(model)
        if out is None or out.task is not asyncio.current_task():
            return detail.acls  # read before a change made here (`changed`): not kept
        # Kept in the order they were last read: a model in use is read again each lifetime
        # (`get`), so the first entry is the one unused longest, which goes when the cache is
        # full. Emptying the whole cache when full made every model's next call wait for the
        # admin, and fail while it was away.
        if self._acls.pop(model, None) is not None:
            self._kept[_cell_of(model)] -= 1
        if len(self._acls) >= _MAX_MODELS:
            unused = next(iter(self._acls))
            del self._acls[unused]
            self._kept[_cell_of(unused)] -= 1
            self._unreachable.discard(unused)
        self._unreachable.discard(model)
        _read_worked(model)
        expires = time.monotonic() + self._lifetime
        self._acls[model] = _Entry(expires, detail.acls, out.mark)
        self._kept[_cell_of(model)] += 1
        return detail.acls

    def changed(
        self, model: str, method_acl: tuple[str, str] | None = None, *, admin_away: bool = False
    ) -> None:
        """This gateway changed the model, or may have (it published, updated or unpublished
        it, or set one of its ACLs: ``method_acl``, a Sax method and its new ACL, "" for
        none, once the admin took it): its next call waits for its ACLs read anew, and a
        read begun before the change is not kept. The ACLs last read (with ``method_acl``
        in them) stay at hand for when the admin cannot be reached, as any ACLs do
        (docs/security.md): a change refused or lost while it is away takes no model's
        data calls down with it. ``admin_away``: the change found the admin unreachable, so
        calls do not wait for it; they answer from the ACLs at hand while one background
        read renews them. The stack's other processes hear of it (`Changes`) before the
        caller does."""
        if self._board is not None:
            self._board.note_change(_BOARD_KEY + model)
        self._stale(model, method_acl, admin_away=admin_away)

    def _stale(
        self, model: str, method_acl: tuple[str, str] | None = None, *, admin_away: bool = False
    ) -> None:
        """The model's ACLs at hand answer no call until read anew (`changed`)."""
        self._fetching.pop(model, None)
        self._unreachable.discard(model)
        cached = self._acls.get(model)
        if cached is None:
            return
        acls = cached.acls
        if method_acl is not None:
            method, acl = method_acl
            acls = {m: a for m, a in acls.items() if m != method} | ({method: acl} if acl else {})
        # Too old to answer a call without a read; read under the board's count from now on.
        self._acls[model] = _Entry(-math.inf, acls, self._mark(model))
        if admin_away:
            self._unreachable.add(model)

    def _mark(self, model: str) -> int:
        """The board's count of the model's changes (0 without a board)."""
        return 0 if self._board is None else self._board.changes(_BOARD_KEY + model)


_BOARD_KEY = "acl:"  # a model's key on the board


class _Listing(NamedTuple):
    """A cell's listing under way that renews the ACLs of ``models``, when it began."""

    began: float
    models: frozenset[str]


class _Read(NamedTuple):
    """A model's ACL read under way, when it began (``time.monotonic()``), and the board's
    count of the model's changes then."""

    task: asyncio.Future[dict[str, str]]
    began: float
    mark: int


def _cell_of(model: str) -> str:
    """The cell part of a model ID (``/sax/test`` of ``/sax/test/lm``)."""
    return model.rpartition("/")[0] or model


def _read_worked(model: str) -> None:
    cell = _cell_of(model)
    _FAILURES.succeeded((_READING, cell), f"{_READING} {cell}")
