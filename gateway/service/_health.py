"""grpc.health.v1 status: whether this gateway can serve data calls.

SERVING while the admin of some cell under SAX_ROOT answers (one of several cells down does
not take the gateway out of rotation: its other cells' calls still work), and also while none
does but the gateway holds the replicas of some model an admin reported: data calls to those
go ahead without the admin (and their ACLs as last read stay in force), so a hung or
restarting admin is not an outage.
NOT_SERVING when neither holds: a gateway that starts while the admin is away knows nothing.
Envoy health-checks every gateway process with it and answers ``/healthz`` from the result,
which is Kubernetes' readiness: were it to follow the admin alone, an admin outage would take
every pod out of its Service at once. The server ("", what Envoy checks) and each API it
serves report the same status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from functools import partial

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from saxgateway.v1 import gateway_pb2, openai_pb2

from gateway.client import Client, ModelDetail, SaxError
from gateway.common.rpc import Context
from gateway.config import GatewaySettings
from gateway.service._metrics import GatewayMetrics
from gateway.service._streams import StreamSlots

log = logging.getLogger(__name__)

SERVICE = gateway_pb2.DESCRIPTOR.services_by_name["SaxGateway"].full_name
OPENAI_SERVICE = openai_pb2.DESCRIPTOR.services_by_name["OpenAIGateway"].full_name
SERVICES = ("", SERVICE, OPENAI_SERVICE)
"""The services whose health a gateway reports: "" (the server) and each API it serves, all
with the server's status (both APIs need the cell alike), so that a per-service probe
(Kubernetes' ``grpc.service``, grpc-health-probe's ``-service``) of either one works."""
UNKNOWN_SERVICE = (
    f'no such service: health is reported for "" (the server), {SERVICE} and {OPENAI_SERVICE}'
)
STOPPING = "the gateway is stopping"
"""How a Watch stream ends, once it has sent NOT_SERVING, when the gateway stops."""
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


async def cell_reachable(client: Client, timeout: float) -> bool:
    """True when some cell has an admin server that answers: a cell under SAX_ROOT, or one
    the client already knows the admin of (SAX_ROOT may be unreadable while admins answer)."""
    return await cell_problem(client, timeout) is None


async def cell_problem(client: Client, timeout: float) -> str | None:
    """None when some cell's admin answers (as `cell_reachable`), else why none does: what
    the operator reads in the log while the gateway is NOT_SERVING."""
    listed, problem = await listed_cells(client, timeout)
    async with contextlib.aclosing(probe_cells(client, listed, timeout)) as answers:
        async for _, why in answers:
            if why is None:
                return None
            problem = why
    return problem or no_cell(client)


def no_cell(client: Client) -> str:
    """Why no admin answers when SAX_ROOT holds no cell, naming the root: one taken from the
    environment (`saxgw serve` with SAX_ROOT exported) was named nowhere else in the log."""
    return f"no cell under SAX_ROOT {client.settings.sax_root}"


async def listed_cells(client: Client, timeout: float) -> tuple[list[str], str | None]:
    """The cells under SAX_ROOT, and None; or none, and why SAX_ROOT could not be listed."""
    try:
        async with asyncio.timeout(timeout):  # not wait_for: it can lose a cancellation
            return await client.list_cells(), None
    except TimeoutError:
        return [], f"SAX_ROOT not listed within {timeout:g} s"
    except (SaxError, OSError) as exc:
        return [], str(exc)


async def probe_cells(
    client: Client,
    listed: list[str],
    timeout: float,
    models: dict[str, list[ModelDetail]] | None = None,
) -> AsyncGenerator[tuple[str, str | None], None]:
    """Asks the admins of the ``listed`` cells and of those the client is connected to at
    once, and yields ``(cell, None)`` for each that answers within ``timeout`` and ``(cell,
    why)`` for each that does not, as they finish. Closing it early cancels the rest. All at
    once: one by one, each hung admin before the one that answers took the whole ``timeout``
    of every probe (and a gateway that started meanwhile stayed NOT_SERVING that long).
    ``models``, if given, gets the models each cell that answered lists."""
    cells = list(dict.fromkeys([*client.known_cells(), *listed]))
    asked = {asyncio.ensure_future(client.list_all(cell, timeout=timeout)): cell for cell in cells}
    try:
        pending = set(asked)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for call in done:
                failed = call.exception()
                if failed is not None and not isinstance(failed, SaxError):
                    raise failed
                if failed is None and models is not None:
                    models[asked[call]] = call.result()
                yield asked[call], None if failed is None else failed.message
    finally:
        for call in asked:
            call.cancel()
        await asyncio.gather(*asked, return_exceptions=True)


class _Health(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    """grpc.health.v1 for `SERVICES`, all with one status, NOT_SERVING until `set`. Watch
    streams each hold one of the caller's stream slots (Watch is open to anonymous callers and
    lasts as long as they like, like a model stream), and end once the gateway stops: grpc's
    servicer kept them open, which held every stop for its whole grace period."""

    def __init__(self, slots: StreamSlots, longest: float) -> None:
        self._slots = slots
        self._longest = longest or None  # 0: for good
        self._status: health_pb2.HealthCheckResponse.ServingStatus.ValueType = NOT_SERVING
        self._stopping = False
        self._changed = asyncio.Condition()

    async def set(
        self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType, *, final: bool
    ) -> None:
        """Reports ``status`` for every service; ``final`` (the gateway stops) also ends the
        Watch streams once they have sent it."""
        async with self._changed:
            self._status, self._stopping = status, final
            self._changed.notify_all()

    def _status_of(self, service: str) -> health_pb2.HealthCheckResponse.ServingStatus.ValueType:
        return self._status if service in SERVICES else SERVICE_UNKNOWN

    def _news(self, service: str, sent: object) -> bool:
        """Whether a watcher of ``service`` that has ``sent`` has more to do."""
        return self._stopping or self._status_of(service) != sent

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: Context
    ) -> health_pb2.HealthCheckResponse:
        # Saying which services there are (not the name asked for, which may be as long as a
        # message may be): grpc's servicer answered NOT_FOUND with no message.
        if request.service not in SERVICES:
            await context.abort(grpc.StatusCode.NOT_FOUND, UNKNOWN_SERVICE)
        return health_pb2.HealthCheckResponse(status=self._status)

    async def List(
        self, request: health_pb2.HealthListRequest, context: Context
    ) -> health_pb2.HealthListResponse:
        # Every service Check answers for, with the status Check gives (grpc's servicers left
        # List UNIMPLEMENTED, though its proto, which reflection serves, has it).
        listed = health_pb2.HealthListResponse()
        for service in SERVICES:
            listed.statuses[service].status = self._status
        return listed

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Context) -> None:
        # It lasts no longer than any stream may, and ends with a status of its own there,
        # before Envoy's backstop resets it (INTERNAL to gRPC clients, as for a failure).
        with self._slots.hold(context):
            try:
                async with asyncio.timeout(self._longest):
                    await self._watch(request.service, context)
            except TimeoutError:
                await context.abort(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"a health watch lasts at most {self._longest:g} s"
                    " (limits.max_stream_duration); watch again",
                )

    async def _watch(self, service: str, context: Context) -> None:
        """Sends the status now, then each change (a change and its undoing between two sends
        may go unseen: a watcher wants the latest status); an unknown service is
        SERVICE_UNKNOWN for good, as the protocol has it. Sent outside the lock: a watcher
        that does not read must not hold up the health probe or the stop."""
        sent = None
        while True:
            async with self._changed:
                await self._changed.wait_for(partial(self._news, service, sent))
                status = self._status_of(service)
            if status == sent:  # stopping, and the watcher has the last status
                await context.abort(grpc.StatusCode.UNAVAILABLE, STOPPING)
            await context.write(health_pb2.HealthCheckResponse(status=status))
            sent = status


class HealthReporter:
    """Probes the cell every ``settings.health_interval`` seconds and publishes SERVING /
    NOT_SERVING; ``slots`` bound each caller's Watch streams."""

    def __init__(
        self,
        client: Client,
        settings: GatewaySettings,
        slots: StreamSlots,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        # NOT_SERVING until the first probe: a first probe of an admin that does not answer
        # takes seconds, in which Envoy would count this gateway healthy and route calls to
        # it (and `saxgw up` say it is ready), as it did when grpc's servicer started SERVING.
        self.servicer = _Health(slots, settings.max_watch_duration)
        self._client = client
        self._interval = settings.health_interval
        self._task: asyncio.Task[None] | None = None
        self._serving: bool | None = None
        self._why = ""
        self._metrics = metrics
        self._cells: set[str] = set()  # those with a saxgw_sax_admin_up series
        self._settled = asyncio.Event()  # the first probe has set the status
        self._draining = False

    async def start(self) -> None:
        """Returns once the first probe has set the status (the first answer is right), which
        may be before it has heard every cell."""
        self._task = asyncio.create_task(self._run(), name="health-probe")
        settled = asyncio.ensure_future(self._settled.wait())
        try:
            await asyncio.wait({settled, self._task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            settled.cancel()
        if not self._settled.is_set():
            self._task.result()  # the probe failed: its error

    async def drain(self) -> None:
        """NOT_SERVING from now on, whatever the probe finds, while calls are still served:
        the stack's drain began (Envoy's /healthz is 503), and a Watch opened before it, to
        which Envoy can add no message of its own, must hear it now, not when the gateway
        stops. The probe goes on for the metrics."""
        if self._draining:
            return
        self._draining = True
        log.info("health: NOT_SERVING (draining: calls are still served until the stop)")
        self._serving = False
        await self.servicer.set(NOT_SERVING, final=False)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._serving is not False:
            log.info("health: NOT_SERVING (stopping)")
        await self.servicer.set(NOT_SERVING, final=True)

    async def _run(self) -> None:
        while True:
            await self._probe()
            await asyncio.sleep(self._interval)

    async def _probe(self) -> None:
        """Sets the status at the first admin that answers; then, for the metrics, waits for
        the other cells' answers (up to the probe's timeout) to record each cell's."""
        timeout = max(self._interval, 1.0)
        listed, unlisted = await listed_cells(self._client, timeout)
        problem: str | None = unlisted or no_cell(self._client)
        found: dict[str, bool] = {}
        models: dict[str, list[ModelDetail]] | None = {} if self._metrics is not None else None
        # Past the client's unreachable window, so that an admin silent that long is taken for
        # hung and its connection dropped, as other reads of it are. Given the window alone,
        # the List ran out as its own deadline and left a connection gone silent (one a NAT
        # forgot) to the models' address watches, which polled on it for as long as the kernel
        # kept it (~15 minutes) and missed every change the admin made meanwhile.
        window = self._client.settings.admin_unreachable_after
        asking = max(timeout, window + 1.0)
        probe = probe_cells(self._client, listed, asking, models)
        async with contextlib.aclosing(probe) as answers:
            async for cell, why in answers:
                found[cell] = why is None
                if problem is None:
                    continue  # reported already
                problem = why
                if why is None:
                    await self._report(None)  # at once: a hung admin must not delay it
                    if self._metrics is None:
                        break
        if problem is not None:
            await self._report(problem)
        if models is not None:
            self._record(found, None if unlisted else listed, models)

    def _record(
        self,
        found: dict[str, bool],
        listed: list[str] | None,
        models: dict[str, list[ModelDetail]],
    ) -> None:
        """Each cell's admin, up or not, as this probe found it. Once SAX_ROOT no longer lists
        a cell, it was removed, and its series goes unless its admin still answers; while
        SAX_ROOT cannot be listed (``listed`` None), cells no admin answers for are down.
        The replicas of the ``models`` each cell that answered lists, for models no call has
        brought into this process's address table (`GatewayMetrics.note_listing`)."""
        assert self._metrics is not None
        if listed is None:
            found = dict.fromkeys(self._cells, False) | found
        else:
            found = {c: up for c, up in found.items() if up or c in listed}
        for cell in self._cells - found.keys():
            self._metrics.forget_cell(cell)
            self._metrics.note_listing(cell, {})  # its models went with it
        for cell, published in models.items():
            self._metrics.note_listing(cell, {m.model_id: m.active_replicas for m in published})
        for cell, up in found.items():
            self._metrics.set_admin_up(cell, up)
        self._cells = set(found)

    async def _report(self, problem: str | None) -> None:
        if problem is None:
            await self._set(True, "the cell's admin answers")
            return
        # A WARNING: for an admin that hangs, whose address watches' long polls just run out,
        # it is the gateway's only line (it was an INFO, as its end still is).
        if self._client.knows_replicas():
            why = f"no admin answers: {problem}; serving the replicas on record"
            await self._set(True, why, logging.WARNING)
        else:
            why = f"no admin answers: {problem}; no replicas are on record"
            await self._set(False, why, logging.WARNING)

    async def _set(self, serving: bool, why: str, level: int = logging.INFO) -> None:
        self._settled.set()
        if self._draining:
            return  # NOT_SERVING for good; the probe's findings would only undo it
        if (serving, why) == (self._serving, self._why):
            return
        self._why = why  # logged when it changes, even if the status does not
        status = "SERVING" if serving else "NOT_SERVING"
        if serving == self._serving:
            log.log(level, "health: still %s (%s)", status, why)
            return
        self._serving = serving
        log.log(level, "health: %s (%s)", status, why)
        await self.servicer.set(SERVING if serving else NOT_SERVING, final=False)
