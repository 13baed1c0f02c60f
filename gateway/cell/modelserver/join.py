"""Keeps a model server joined to its cell's admin, wherever that admin is.

It re-reads location.proto every `location_watch_interval` and calls Join when: it has not
joined yet (retrying), the admin moved (the file changed), `rejoin_interval` passed, or the
admin has not polled this server for `server_dead_after` (the admin restarted in place or
dropped us, and would otherwise not know this server until the next periodic join). In
between, each step sends a heartbeat Join, which an admin that restarted in place answers by
taking the server (and the models it still holds) back at once. Whether a heartbeat was
taken as a join is the admin's word (`gateway.cell.joined`), not a guess: a poll of its own
that lands during a heartbeat (its poll loop and the heartbeats tick in step) is no re-join.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import grpc
from saxml.protobuf import admin_pb2, admin_pb2_grpc

from gateway.cell import joined
from gateway.cell._files import CellFiles, parse_location
from gateway.cell.settings import CellSettings
from gateway.common.failurelog import FailureLog
from gateway.common.storage import StorageError

_log = logging.getLogger("gateway.cell.modelserver")


HEARTBEAT = "heartbeat"

# Seconds a first failed join waits before it is reported. A cell stopped cleanly sends the
# admin and its model servers SIGTERM at once: a heartbeat in flight is refused by the admin
# that just closed its port, while this process's own SIGTERM is already pending, and the
# failure was logged (a WARNING at every clean stop on a loaded machine, CI) before the stop
# cancelled the loop. Waiting first lets that stop cancel the report with the loop.
_FIRST_FAILURE_WAIT_S = 0.25


class JoinLoop:
    def __init__(
        self,
        *,
        settings: CellSettings,
        request: admin_pb2.JoinRequest,
        last_polled: Callable[[], float],
        on_joined: Callable[[str], None] | None = None,
    ) -> None:
        self._on_joined = on_joined
        self._settings = settings
        self._files = CellFiles(settings)
        self._request = request
        self._last_polled = last_polled
        self._joined_location: bytes | None = None
        self._last_join = 0.0
        self._task: asyncio.Task[None] | None = None
        self.joined = asyncio.Event()
        # An admin away (down, hung, replaced by a server that is no admin) fails each step's
        # join: a WARNING when that starts, then at most one a minute, and an INFO at its end.
        self._failures = FailureLog(_log)
        self._joining = ("joining", settings.cell)
        # No admin named (location.proto missing or empty): the admin has not started, or
        # the file was lost; an INFO when that starts, then at most one a minute.
        self._unnamed = FailureLog(_log, level=logging.INFO)
        self._finding = ("finding the admin of", settings.cell)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="join loop")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _should_join(self, location: bytes, now: float) -> str | None:
        if self._joined_location is None:
            # A join that failed (the admin away) is retried at every step.
            return "the last join failed" if self.joined.is_set() else "first join"
        if location != self._joined_location:
            return "the admin moved"
        if now - self._last_join >= self._settings.rejoin_interval:
            return "periodic re-join"
        unpolled = now - max(self._last_polled(), self._last_join)
        if unpolled >= self._settings.server_dead_after:
            return f"not polled for {unpolled:.1f}s"
        # An admin that knows us answers a repeated Join at once, without dialling back; one
        # that restarted in place learns about us now instead of after server_dead_after.
        return HEARTBEAT

    async def _run(self) -> None:
        while True:
            try:
                await self._step()
            except Exception:
                _log.exception("join loop step failed")
            await asyncio.sleep(self._settings.location_watch_interval)

    async def _step(self) -> None:
        try:
            location = await self._files.read_location_bytes()
        except StorageError:
            # The storage logs its failures (a WARNING when one starts, then one a minute);
            # as an error here, each step's traceback (125 lines) went to the log every 15 s.
            return
        address = parse_location(location)
        if location is None or address is None:
            self._unnamed.failed(
                self._finding,
                f"location.proto of {self._settings.cell} names no admin server (missing or "
                "empty): this server joins one once it is named there",
            )
            return
        self._unnamed.succeeded(self._finding, f"finding the admin of {self._settings.cell}")
        reason = self._should_join(location, time.monotonic())
        if reason is None:
            return
        try:
            taken_in = await self._join(address)
        except grpc.aio.AioRpcError as exc:
            if not self._failures.failing(self._joining):
                await asyncio.sleep(_FIRST_FAILURE_WAIT_S)
            why = f"{exc.code().name} {exc.details()}"
            self._failures.failed(self._joining, f"joining the admin at {address} failed: {why}")
            self._joined_location = None  # retry at the next step
            return
        self._failures.succeeded(self._joining, f"joining the admin of {self._settings.cell}")
        if reason is HEARTBEAT and not taken_in:
            return  # the admin already knew us
        if reason is HEARTBEAT:
            reason = "it did not know this server: it restarted, or had dropped it"
        _log.info("joined admin %s (%s) as %s", address, reason, self._request.address)
        self._joined_location = location
        self._last_join = time.monotonic()
        self.joined.set()
        if self._on_joined is not None:
            self._on_joined(address)

    async def _join(self, address: str) -> bool:
        """Joins the admin at ``address``; returns whether it says it took this server in
        (rather than answering the heartbeat of a server it knows)."""
        async with grpc.aio.insecure_channel(address) as channel:
            call = admin_pb2_grpc.AdminStub(channel).Join(
                self._request,
                timeout=self._settings.rpc_timeout,
                metadata=((joined.CELL_KEY, self._settings.cell),),
            )
            await call
            return joined.took_in(await call.trailing_metadata())
