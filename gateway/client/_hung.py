"""Notices a replica that answers nothing (hung: its process stopped, its connections still
open) within seconds, where the admin drops it only after 30 s, and steers new calls away.

Nothing runs per call. Twice a second a task looks at the replicas this process calls: one
that has held calls for ``STALL_S`` without answering any meanwhile is asked a Modelet
``GetStatus`` (no failure reasons, no stats) with a deadline of its own. A Sax model
server answers that at once even while its model computes, so a slow model is not taken for
a hung one; a replica that does not answer within ``PROBE_TIMEOUT_S`` is *suspect*: the pool
prefers any other replica for new calls (`ChannelPool.worse`), never refuses it when every
replica is suspect, and it is asked again every tick until it answers, which clears it.
A call stuck on a hung replica thus warns its process off it within 2.5 s, before a call
given 3 s has ended, so the next call goes elsewhere.

Calls it already holds are left as they are (they end at their deadline, or move to another
replica once the admin drops it and its channel closes): moving them would restart their
work elsewhere, which a replica merely slow to answer a probe (a loaded host) would pay for.
HTTP/2 keepalive pings (`_channels`) find a silent connection too, and end the calls it
holds, but only ~20 s into the silence: pinging sooner or more often than grpc's 2 pings
without data, 15 s apart, Sax's Python model servers (a 5-minute minimum interval) would
close the connection (GOAWAY) of a client that pings.

The stack's other gateway processes (``board``: the change board of their shared table,
gateway/common/slottable.py): each process used to find a hung replica alone, each through
a call of its own stuck on it, so a caller whose calls went through N processes one after
another met N such calls (each a 504 at its deadline: two, 3 s apart, with 2 gateways). A
process that finds a replica silent counts it on the board; the others, within ``HEAR_S``,
take the replica as suspect too (``hinted``: new calls go elsewhere) and probe it at once.
Their own probe decides: unanswered, it is their finding (its WARNING); answered, the hint
is dropped without a word. So a hint that is wrong (a counter of the board shared with
another key, or a replica slow to answer the other process only) costs at most the time of
one probe that answers (milliseconds), during which new calls prefer the other replicas.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
from typing import Protocol

import grpc
from saxml.protobuf import modelet_pb2, modelet_pb2_grpc

from gateway.client._channels import Backend, ChannelPool
from gateway.common.deadline import now
from gateway.common.rpc import PROBE_METADATA, cancelled_by_caller

_log = logging.getLogger(__name__)

#: How often replicas holding calls are looked at, and suspect ones asked again.
TICK_S = 0.5
#: How often the board is read for the other processes' findings (`HangWatch.board`): a few
#: reads of memory, and a caller's next call, begun as the call that found the replica
#: silent ends, must find it known (at the earliest 0.5 s after the finding, 3 s calls).
HEAR_S = 0.1
#: How long a replica may hold calls without answering any before it is asked (and, while
#: it holds calls that long, between two askings: a healthy one running a long call).
STALL_S = 1.0
#: How long a probe waits for its answer: a model server answers GetStatus in milliseconds.
PROBE_TIMEOUT_S = 1.0
# A probe that ended so got no answer from the server (UNAVAILABLE: it refused the
# connection, or the connection broke); any other status is the server answering.
_NO_ANSWER = frozenset({grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE})
_REQUEST = modelet_pb2.GetStatusRequest()
_BOARD_KEY = "silent:"  # a replica's key on the board: a count of its findings


class Board(Protocol):
    """Where the stack's gateway processes count what each found (gateway/common/slottable.py:
    its change board)."""

    def note_change(self, key: str) -> None: ...
    def changes(self, key: str) -> int: ...


class HangWatch:
    """Probes the pool's replicas that hold unanswered calls, and marks the silent ones."""

    def __init__(self, pool: ChannelPool) -> None:
        self._pool = pool
        self.board: Board | None = None
        """The stack's board, if this process is one of several (`Client.share_findings`)."""
        # The board's count of each replica's findings, as last read (`_hear`).
        self._heard: dict[str, int] = {}
        # Replicas that held calls at the last tick: their answer count then, and since when
        # (or since they were last asked) it has not moved.
        self._seen: dict[Backend, tuple[int, float]] = {}
        self._probes: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Starts the watch (once; on a running loop)."""
        if self._task is None:
            # It belongs to no call: an empty context keeps a call's (request ID, trace) off it.
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="hang watch", context=contextvars.Context()
            )

    async def close(self) -> None:
        tasks = [*self._probes, *([self._task] if self._task else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self) -> None:
        ticks = round(TICK_S / HEAR_S)
        for turn in itertools.count(1):
            await asyncio.sleep(HEAR_S if self.board is not None else TICK_S)
            try:
                if self.board is None or turn % ticks == 0:
                    self.tick()
                else:
                    self._hear(self.board, self._pool.backends())
            except Exception:  # a bug: log it, and keep watching rather than stop for good
                _log.exception("looking for hung replicas failed")

    def tick(self) -> None:
        """Probes each suspect replica, and each that has held calls for STALL_S without
        answering any."""
        at = now()
        seen: dict[Backend, tuple[int, float]] = {}
        backends = self._pool.backends()
        if self.board is not None:
            self._hear(self.board, backends)
        for backend in backends:
            if backend.suspect_since is not None:
                self._probe(backend)
            elif backend.in_flight:
                answers, since = self._seen.get(backend, (-1, at))
                if answers != backend.answers:
                    since = at
                elif at - since >= STALL_S:
                    self._probe(backend)
                    since = at
                seen[backend] = (backend.answers, since)
        self._seen = seen

    def _hear(self, board: Board, backends: list[Backend]) -> None:
        """Takes as suspect each replica another process has found silent since the last
        reading, and probes it. A replica first seen here is not: a count from before this
        process called it is no news."""
        heard: dict[str, int] = {}
        for backend in backends:
            count = heard[backend.address] = board.changes(_BOARD_KEY + backend.address)
            last = self._heard.get(backend.address)
            if last is not None and count != last and backend.suspect_since is None:
                backend.suspect_since, backend.hinted = now(), True
                self._probe(backend)
        self._heard = heard  # replicas gone from the pool are forgotten

    def _probe(self, backend: Backend) -> None:
        if backend.probing:
            return
        backend.probing = True
        task = asyncio.get_running_loop().create_task(
            self._ask(backend), name=f"probe {backend.address}", context=contextvars.Context()
        )
        self._probes.add(task)
        task.add_done_callback(self._probes.discard)

    async def _ask(self, backend: Backend) -> None:
        stub = modelet_pb2_grpc.ModeletStub(backend.channel)
        try:
            await stub.GetStatus(_REQUEST, timeout=PROBE_TIMEOUT_S, metadata=PROBE_METADATA)
            answered = True
        except grpc.aio.AioRpcError as exc:
            answered = exc.code() not in _NO_ANSWER
        except asyncio.CancelledError:
            if cancelled_by_caller():
                raise
            return  # its channel closed under it: the replica left the address set
        finally:
            backend.probing = False
        if self._judge(backend, answered) and self.board is not None:
            # Counted after our own reading of the board: this process takes no hint of it.
            key = _BOARD_KEY + backend.address
            self.board.note_change(key)
            self._heard[backend.address] = self.board.changes(key)

    def _judge(self, backend: Backend, answered: bool) -> bool:
        """Marks or clears ``backend`` by a probe's outcome; whether this is the stack's
        finding of its silence (for the board), not one hinted by another process."""
        since, hinted = backend.suspect_since, backend.hinted
        backend.hinted = False
        if answered and since is not None and hinted:
            backend.suspect_since = None  # another process's finding, not ours: no word
            return False
        if not answered and since is not None and hinted:
            _warn(backend, "found silent by another gateway process of this stack, and")
            return False
        return _mark_or_clear(backend, answered)


def _mark_or_clear(backend: Backend, answered: bool) -> bool:
    since = backend.suspect_since
    if answered and since is not None:
        backend.suspect_since = None
        _log.info(
            "model server %s answers again, after %.0f s without an answer; it gets new "
            "calls again",
            backend.address,
            now() - since,
        )
    elif not answered and since is None:
        backend.suspect_since = now()
        _warn(backend, "holds a call and")
        return True
    return False


def _warn(backend: Backend, why: str) -> None:
    _log.warning(
        "model server %s %s answers nothing, not even a status request within %.0f s: it may "
        "hang; new calls go to its model's other replicas while it does not answer",
        backend.address,
        why,
        PROBE_TIMEOUT_S,
    )
