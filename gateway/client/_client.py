"""The asyncio Sax client: admin operations and data calls on one shared instance.

async with Client(ClientSettings(sax_root="/tmp/sax-root")) as client:
    await client.publish("/sax/test/lm", "some.model.Path", "None", 1)
    samples = await client.lm_generate("/sax/test/lm", "Q: hello", CallOptions(timeout=5))
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncGenerator, Mapping
from functools import partial
from typing import TypeVar

import grpc
from google.protobuf.message import Message
from saxml.protobuf import admin_pb2

from gateway import naming
from gateway.client import _lost_replies as lost_replies
from gateway.client import _othercell as othercell
from gateway.client._admin import (
    LIST,
    STATS,
    WAIT_FOR_READY,
    WATCH_LOC,
    AdminMethod,
    CellAdmin,
    RpcCounter,
)
from gateway.client._changes import ModelChanges, list_one
from gateway.client._data import DataCalls
from gateway.client._hung import Board
from gateway.client._observer import Observer
from gateway.client._router import Router
from gateway.client._saxroot import list_cells
from gateway.client._types import CellStats, ClientSettings, ModelDetail
from gateway.common.closing import AsyncClosing
from gateway.common.deadline import Deadline
from gateway.common.errors import (
    DeadlineExceededError,
    FailedPreconditionError,
    NotFoundError,
    RequestCancelledError,
    SaxError,
    code_from_text,
)
from gateway.common.storage import Storage, open_storage

_Req = TypeVar("_Req", bound=Message)
_Resp = TypeVar("_Resp")

#: Cell admins kept before the idle ones (no connection: cells that were never found, or
#: whose admin is away) are dropped. Cell IDs come from callers: every data call names one,
#: and without a bound each distinct name a caller made up kept a CellAdmin for good.
MAX_CELL_ADMINS = 256


class Client(AsyncClosing, DataCalls):
    """A Sax client for any number of cells under one SAX_ROOT; safe to share across tasks.

    Admin operations go to the cell's admin server (found through ``location.proto``) and
    retry UNAVAILABLE/RESOURCE_EXHAUSTED within their deadline (``settings.admin_timeout``
    unless given; a caller's absolute ``deadline`` covers every RPC an operation makes, e.g.
    both of ``update``'s). Data calls go straight to a model server picked from an address
    table that a background ``WatchLoc`` keeps current; they fail over between replicas within
    ``options.timeout`` (or ``options.deadline``). Every failure is raised as a ``SaxError``
    subclass.
    """

    def __init__(self, settings: ClientSettings, *, observer: Observer | None = None) -> None:
        """``observer`` receives every Sax RPC attempt, failover and address change."""
        self.settings = settings
        self._storage: Storage = open_storage(settings.sax_root, gcs_endpoint=settings.gcs_endpoint)
        self._rpcs = RpcCounter()
        self._admins: dict[str, CellAdmin] = {}
        # Every admin not yet collected, dropped from ``_admins`` or not: a watch may still
        # hold one it was given, which `close` must close too.
        self._every_admin: weakref.WeakSet[CellAdmin] = weakref.WeakSet()
        # The base Observer watches nothing: pass None down so the hot path skips the hooks.
        self._observer = None if observer is None or type(observer) is Observer else observer
        self._router = Router(admin_for=self._admin, settings=settings, observer=self._observer)
        self._changes = ModelChanges(
            admin_for=self._admin, forget=partial(self._router.forget, keep_replicas=True)
        )

    async def close(self) -> None:
        """Stops the address watches and closes every channel."""
        await self._router.close()
        admins, self._admins = list(self._every_admin), {}
        await asyncio.gather(*(a.close() for a in admins))

    @property
    def admin_rpcs(self) -> int:
        """Admin RPCs sent so far (every attempt, WatchLoc long polls included)."""
        return self._rpcs.value

    def share_findings(self, board: Board) -> None:
        """Has this client tell the stack's other gateway processes of each model server it
        finds hung, on ``board`` (their shared table's), and take theirs as a hint, checked
        by a probe of its own (gateway/client/_hung.py)."""
        self._router.share_findings(board)

    def lookup_failure(self, model_id: str) -> SaxError | None:
        """Why the admin of ``model_id``'s cell cannot be looked up now (SAX_ROOT does not
        answer, or names no admin), if this client has been looking for it
        (`CellAdmin.lookup_failure`)."""
        admin = self._admins.get(naming.parse_model_id(model_id).cell.name)
        return None if admin is None else admin.lookup_failure()

    def is_serving(self, model_id: str) -> bool:
        """Whether the admin has reported ``model_id`` as published (its watch is live).

        Cheap (a dict lookup): observers use it to keep unknown model names out of metrics."""
        return self._router.is_serving(model_id)

    def knows_replicas(self) -> bool:
        """Whether data calls to some model can go ahead without the admin: the admin reported
        its replicas and has not taken them back (health uses it while the admin is away)."""
        return self._router.knows_replicas()

    def known_cells(self) -> list[str]:
        """Cell IDs whose admin this client is connected to, sorted: health probes them when
        SAX_ROOT itself cannot be listed (storage down, a volume gone) but admins still answer.
        Cells that callers named but that do not exist never connect, so are not listed."""
        return sorted(admin.cell.id for admin in self._admins.values() if admin.connected)

    @property
    def num_channels(self) -> int:
        """Open model-server channels."""
        return self._router.num_channels

    def _admin(self, cell: naming.CellId) -> CellAdmin:
        admin = self._admins.get(cell.name)
        if admin is None:
            if len(self._admins) >= MAX_CELL_ADMINS:
                self._drop_idle_admins()
            admin = self._admins[cell.name] = CellAdmin(
                cell,
                self._storage,
                self._rpcs,
                self._observer,
                unreachable_after=self.settings.admin_unreachable_after,
            )
            self._every_admin.add(admin)
        return admin

    @property
    def num_cell_admins(self) -> int:
        """Cell admins this client keeps, connected or not."""
        return len(self._admins)

    def _drop_idle_admins(self) -> None:
        """Forgets the admins that hold nothing (`CellAdmin.idle`): the next call naming one
        of their cells starts again from its location.proto, as a first call does."""
        for name in [name for name, admin in self._admins.items() if admin.idle]:
            del self._admins[name]

    async def _call_admin(
        self,
        cell: naming.CellId,
        method: AdminMethod[_Req, _Resp],
        request: _Req,
        timeout: float | None,
        deadline: Deadline | None,
    ) -> _Resp:
        # One admin RPC that is a whole operation: its deadline is fixed here.
        return await self._admin(cell).call(
            method, request, deadline=self._admin_deadline(timeout, deadline)
        )

    # Admin operations.

    async def list_cells(self, *, deadline: Deadline | None = None) -> list[str]:
        """Cell IDs under SAX_ROOT (``["/sax/test", ...]``), sorted; UNAVAILABLE if SAX_ROOT
        has not answered by ``deadline``."""
        return await list_cells(self._storage, deadline)

    async def publish(
        self,
        model_id: str,
        model_path: str,
        checkpoint: str,
        num_replicas: int,
        overrides: Mapping[str, str] | None = None,
        *,
        timeout: float | None = None,
        deadline: Deadline | None = None,
    ) -> None:
        """Publishes a model. ALREADY_EXISTS if it is published; INVALID_ARGUMENT if the
        admin rejects the model path, checkpoint or replica count."""
        model = naming.parse_model_id(model_id)
        request = admin_pb2.PublishRequest(
            model=admin_pb2.Model(
                model_id=model.id,
                model_path=model_path,
                checkpoint_path=checkpoint,
                requested_num_replicas=num_replicas,
                overrides=overrides or {},
            )
        )
        admin, deadline = self._admin(model.cell), self._admin_deadline(timeout, deadline)
        await lost_replies.publish(admin, request, deadline)
        self._router.forget(model.id)

    async def update(
        self,
        model_id: str,
        *,
        model_path: str | None = None,
        checkpoint: str | None = None,
        num_replicas: int | None = None,
        overrides: Mapping[str, str] | None = None,
        timeout: float | None = None,
        deadline: Deadline | None = None,
    ) -> ModelDetail:
        """Changes the given fields of a published model (read, modify, Update); returns the
        model as this change wrote it (its replicas as they were just before).

        Sax's Update takes the whole model, so two changes that read it at once would each
        write back what the other changed: see `ModelChanges`."""
        model = naming.parse_model_id(model_id)

        def change(current: admin_pb2.Model) -> None:
            if model_path is not None:
                current.model_path = model_path
            if checkpoint is not None:
                current.checkpoint_path = checkpoint
            if num_replicas is not None:
                current.requested_num_replicas = num_replicas
            if overrides is not None:
                current.overrides.clear()
                current.overrides.update(overrides)

        written = await self._changes.apply(model, change, self._admin_deadline(timeout, deadline))
        return ModelDetail.from_proto(written)

    async def unpublish(
        self, model_id: str, *, timeout: float | None = None, deadline: Deadline | None = None
    ) -> None:
        """Unpublishes a model. NOT_FOUND if it is not published."""
        model = naming.parse_model_id(model_id)
        request = admin_pb2.UnpublishRequest(model_id=model.id)
        admin, deadline = self._admin(model.cell), self._admin_deadline(timeout, deadline)
        await lost_replies.unpublish(admin, request, deadline)
        self._router.gone(model.id)

    async def list_detail(
        self, model_id: str, *, timeout: float | None = None, deadline: Deadline | None = None
    ) -> ModelDetail:
        """A published model's definition and serving addresses. NOT_FOUND if unpublished."""
        model = naming.parse_model_id(model_id)
        deadline = self._admin_deadline(timeout, deadline)
        return ModelDetail.from_proto(await list_one(self._admin(model.cell), model, deadline))

    async def load_error(
        self, model_id: str, *, timeout: float | None = None, deadline: Deadline | None = None
    ) -> str:
        """Why a published model failed to load (no replica serves it and every assigned
        model server failed to load it), or "" when it did not fail."""
        model = naming.parse_model_id(model_id)
        # Without an admin_server_id, WatchLoc answers at once with the current set, or with
        # FAILED_PRECONDITION and the load error.
        request = admin_pb2.WatchLocRequest(model_id=model.id)
        try:
            await self._call_admin(model.cell, WATCH_LOC, request, timeout, deadline)
        except FailedPreconditionError as exc:
            return exc.message
        return ""

    async def list_all(
        self, cell: str, *, timeout: float | None = None, deadline: Deadline | None = None
    ) -> list[ModelDetail]:
        """Every model published in ``cell`` (``"/sax/test"``), sorted by model ID."""
        cell_id = naming.parse_cell_id(cell)
        request = admin_pb2.ListRequest()
        response = await self._call_admin(cell_id, LIST, request, timeout, deadline)
        details = [ModelDetail.from_proto(m) for m in othercell.of_cell(response, cell_id)]
        return sorted(details, key=lambda d: d.model_id)

    async def stats(
        self,
        cell_or_model_id: str,
        *,
        timeout: float | None = None,
        deadline: Deadline | None = None,
    ) -> CellStats:
        """Model servers of a cell, or of the servers of one model."""
        target = naming.parse_cell_or_model_id(cell_or_model_id)
        if isinstance(target, naming.ModelId):
            cell, request = target.cell, admin_pb2.StatsRequest(model_id=target.id)
        else:
            cell, request = target, admin_pb2.StatsRequest()
        response = await self._call_admin(cell, STATS, request, timeout, deadline)
        return CellStats.from_proto(response)

    async def wait_for_ready(
        self,
        model_id: str,
        num_replicas: int = 1,
        *,
        timeout: float | None = None,
        deadline: Deadline | None = None,
    ) -> None:
        """Returns once ``num_replicas`` replicas serve the model; DEADLINE_EXCEEDED if not
        within ``timeout`` (default ``settings.admin_timeout``); NOT_FOUND if the model is
        not published, or is unpublished while this waits."""
        model = naming.parse_model_id(model_id)
        request = admin_pb2.WaitForReadyRequest(model_id=model.id, num_replicas=num_replicas)
        try:
            await self._call_admin(model.cell, WAIT_FOR_READY, request, timeout, deadline)
        except DeadlineExceededError as exc:
            # The long poll's usual end: the replicas were not ready in time (or the admin
            # said nothing). "admin WaitForReady for /sax/test did not finish" named the cell
            # alone and sounded like the admin's failure; the model and count come first.
            ready = "1 ready replica" if num_replicas == 1 else f"{num_replicas} ready replicas"
            raise DeadlineExceededError(
                f"{model.id} did not have {ready} within the deadline ({exc.message})"
            ) from exc
        except RequestCancelledError as exc:
            # Sax's admin ends the waits on a model it unpublishes with its own Canceled: the
            # admin's decision, not the caller's (CANCELLED, HTTP 499, would say the caller
            # gave up). The model is gone, as a wait begun now would find: NOT_FOUND.
            if code_from_text(exc.message) != grpc.StatusCode.CANCELLED:
                raise
            raise NotFoundError(
                f"model {model.id} was unpublished while waiting for it to be ready"
            ) from exc

    async def get_acl(
        self,
        cell_or_model_id: str,
        *,
        method: str | None = None,
        timeout: float | None = None,
        deadline: Deadline | None = None,
    ) -> str:
        """The admin ACL of a cell (from its ``config.proto``) or of a model; with ``method``
        (a model's data method, e.g. ``"lm.generate"``), that method's ACL."""
        target = naming.parse_cell_or_model_id(cell_or_model_id)
        acl: str
        if isinstance(target, naming.CellId):
            acl = (await self._admin(target).files.read_config()).admin_acl
            return acl
        deadline = self._admin_deadline(timeout, deadline)
        published = await list_one(self._admin(target.cell), target, deadline)
        acl = published.model.acls.items.get(method, "") if method else published.model.admin_acl
        return acl

    async def set_acl(
        self,
        cell_or_model_id: str,
        acl: str,
        *,
        method: str | None = None,
        timeout: float | None = None,
        deadline: Deadline | None = None,
    ) -> None:
        """Sets the admin ACL of a cell or model, or (``method``) a model data method's ACL;
        an empty ``acl`` with ``method`` removes that method's ACL."""
        target = naming.parse_cell_or_model_id(cell_or_model_id)
        if isinstance(target, naming.CellId):
            admin = self._admin(target)
            config = await admin.files.read_config()
            config.admin_acl = acl
            await admin.files.write_config(config)
            return

        def change(model: admin_pb2.Model) -> None:
            if method is None:
                model.admin_acl = acl
            elif acl:
                model.acls.items[method] = acl
            else:
                model.acls.items.pop(method, None)

        await self._changes.apply(target, change, self._admin_deadline(timeout, deadline))

    def _admin_deadline(self, timeout: float | None, deadline: Deadline | None) -> Deadline:
        # Fixed once per operation: every admin RPC the operation makes shares it. A caller's
        # deadline stands alone; without one, ``timeout`` (or the client's default) counts.
        if deadline is not None and timeout is None:
            return deadline
        timeout = self.settings.admin_timeout if timeout is None else timeout
        return Deadline.after(timeout).earliest(deadline)

    def watch_addresses(self, model_id: str) -> AsyncGenerator[list[str], None]:
        """Yields the model's sorted serving addresses now and whenever they change.

        Raises NOT_FOUND (through the iterator) once the model is not published."""
        return self._watch_addresses(model_id)

    async def _watch_addresses(self, model_id: str) -> AsyncGenerator[list[str], None]:
        table = self._router.table(model_id)
        seen, sent = -1, None
        while True:
            if table.error is not None and table.error_asked_at == float("-inf"):
                # Forgotten after a change this client made: a new table, whose versions
                # start again from 0 (so a version equal to the old one's last is no reason
                # to skip its first answer).
                table, seen = self._router.table(model_id), -1
                continue
            if table.error is not None:
                # The watch ended: first the set the consumer has not been sent. A model
                # that is not published (NOT_FOUND) serves nowhere, although the admin's
                # empty set may never have reached the table: held back after an admin
                # restart (RESTART_HOLD_S), or answered to a table forgotten since.
                if isinstance(table.error, NotFoundError):
                    last: list[str] | None = []
                else:
                    last = list(table.addresses) if table.known else None
                if sent is not None and last is not None and last != sent:
                    sent = last
                    yield list(last)
                raise type(table.error)(table.error.message)
            if table.known and table.version != seen:
                seen = table.version
                if list(table.addresses) != sent:  # a new table repeats what was sent
                    sent = list(table.addresses)
                    yield list(sent)
                # Look again before waiting: what changed while the consumer had the last
                # value (a new address, a forgotten table) notified no one.
                continue
            await table.wait_changed(None)
