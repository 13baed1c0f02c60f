"""What the gateway enforces itself, because only it knows Sax: model ACLs, each client's
model list, and concurrency (per client; per model, with a bounded queue).

Envoy has already authenticated the caller and checked its role; the client id arrives in a
header Envoy sets (`AccessSettings.identity_header`) and strips from clients. Without one
(no authentication configured) the caller is anonymous: it passes no model ACL.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from gateway.client import (
    Client,
    PermissionDeniedError,
    SaxError,
)
from gateway.common import limits as lim
from gateway.common.deadline import Deadline
from gateway.common.intercept import Streaming, Unary, WrappingInterceptor
from gateway.common.rpc import call_metadata
from gateway.config import AccessSettings, GatewaySettings
from gateway.service import _deadlines as deadlines
from gateway.service import _fields as f
from gateway.service._acls import AclCache, Changes
from gateway.service._bindings import path_check
from gateway.service._counts import Counts, LocalCounts
from gateway.service._fields import with_slash
from gateway.service._gates import UNLIMITED, Gate, Slot, Unlimited, WaitCounts, uncounted
from gateway.service._stackgate import StackCounts, StackGate
from gateway.service._streams import Caller, client_of

log = logging.getLogger(__name__)

SERVICE = "/saxgateway.v1.SaxGateway/"
#: gRPC method -> the Sax method name its model ACL is set on (``saxutil setacl M lm.generate``).
#: Every model call must be here or in `NAMED_METHODS`: only these pass the ACL check and take
#: the per-client and per-model slots (tests/unit/test_service_access.py checks them against
#: `_usage.DATA_METHODS`).
SAX_METHODS = {
    "Generate": "lm.generate",
    "GenerateStream": "lm.generate_stream",
    "Score": "lm.score",
    "Embed": "lm.embed",
    "Gradient": "lm.gradient",
    "Classify": "vm.classify",
    "TextToImage": "vm.generate",
    "EmbedImage": "vm.embed",
    "Detect": "vm.detect",
    "ImageToText": "vm.image_to_text",
    "Recognize": "am.recognize",
    "MultimodalGenerate": "mm.generate",
    "MultimodalScore": "mm.score",
    "MultimodalEmbed": "mm.embed",
    "ImageToImage": "vm.image_to_image",
    "TextAndImageToImage": "vm.text_and_image_to_image",
    "VideoToText": "vm.video_to_text",
    "VideoToToken": "vm.video_to_token",
    "TokenToVideo": "vm.token_to_video",
}
#: Model calls whose Sax method the request names, by the field naming it: a Custom call is
#: the model's own method of its ``method_name``, and upstream's model servers check the ACL
#: of that name. They are checked and limited as `SAX_METHODS` are.
NAMED_METHODS = {"Custom": "method_name"}
MODEL_CALLS = frozenset(SAX_METHODS) | frozenset(NAMED_METHODS)
#: Data streams whose servicer admits them itself (`Access.admit`), within the keep-alive that
#: bridges their wait in the model's queue; the access interceptor fixes their deadline only.
SELF_ADMITTED = frozenset({"GenerateStream"})
ANONYMOUS = "anonymous"
_T = TypeVar("_T")
#: A model's gate: this process's own, or one counting in the stack's table.
ModelGate = Gate | StackGate


class Access:
    """The checks, shared by every call of one gateway process."""

    def __init__(
        self,
        settings: AccessSettings,
        client: Client,
        counts: Counts | None = None,
        board: Changes | None = None,
        models: StackCounts | None = None,
        waits: WaitCounts = uncounted,
    ) -> None:
        self._settings = settings
        self._client = client
        self._gates: dict[str, ModelGate] = {}
        # Each model's calls in flight and queued: this process's own, unless the stack's
        # gateway processes share theirs (then `quotas.model` is the stack's limit).
        self._models = models
        # Where each model's calls waiting for a slot are counted: the queue gauge.
        self._waits = waits
        # Calls in flight per client: this process's own, unless the stack's gateway
        # processes share theirs (`saxgw up --workers N`: the limit is the stack's).
        self._per_client = counts if counts is not None else LocalCounts()
        # ``board``: where the stack's gateway processes tell each other of their changes.
        self._acls = AclCache(client, settings.acl_cache_seconds, board)

    def identity(self, context: Caller) -> str | None:
        """The client id Envoy established, if any."""
        header = self._settings.identity_header
        for key, value in call_metadata(context):
            if key == header and isinstance(value, str) and value:
                return value
        return None

    def label(self, client: str | None) -> str:
        """The client as a log or metric label: one of a bounded set of values."""
        if client is None:
            return ANONYMOUS
        return client if client in self._settings.known_clients else "other"

    def _in_model_list(self, client: str | None, model: str) -> bool:
        patterns = self._settings.client_models.get(client or "")
        return patterns is None or any(fnmatch.fnmatchcase(model, p) for p in patterns)

    def _acl_admits(self, client: str | None, acl: str) -> bool:
        return not acl or (client is not None and client in self.members(acl))

    def may_use(
        self, client: str | None, model: str, acls: Mapping[str, str], methods: Sequence[str]
    ) -> bool:
        """Whether ``client`` may call at least one of ``methods`` (Sax method names) on
        ``model``, whose ACLs are ``acls`` as just listed: what a model listing shows a client,
        so that it names no model the client would be refused."""
        return self._in_model_list(client, model) and any(
            self._acl_admits(client, acls.get(m, "")) for m in methods
        )

    def may_name(self, context: Caller, model: str) -> bool:
        """Whether the caller's model list lets it name ``model``: a cell's listing shows it
        only such models (ListModels), as any call naming another one is refused."""
        return self._in_model_list(self.identity(context), model)

    def check_named(self, context: Caller, model: str) -> None:
        """PERMISSION_DENIED unless the caller's model list lets it name ``model``: for work
        done for a call before it is admitted (a chat template rendered for its model)."""
        self._check_models(self.identity(context), model)

    def _check_models(self, client: str | None, model: str) -> None:
        if not self._in_model_list(client, model):
            log.info("client=%s refused model=%s: not in its model list", self.label(client), model)
            raise PermissionDeniedError(f"client {client} may not use {model}")

    def changed(
        self, model: str, method_acl: tuple[str, str] | None = None, *, admin_away: bool = False
    ) -> None:
        """This gateway published, updated or unpublished the model, or set one of its ACLs
        (``method_acl``: a Sax method and its ACL), or may have: its next call reads its ACLs
        anew, or (``admin_away``: the admin could not be reached) renews them in the
        background (`AclCache.changed`)."""
        self._acls.changed(model, method_acl, admin_away=admin_away)

    def members(self, acl: str) -> frozenset[str]:
        """Client ids a Sax ACL name admits: a group's (``acl/NAME``) members, else the client
        of its name; any other name is a client id, even one a group has (as docs/api.md
        says: a client ``ops`` set as an ACL admits the client, not a group ``ops``)."""
        group = acl.removeprefix("acl/")
        if group == acl:
            return frozenset({acl})
        return self._settings.groups.get(group, frozenset({group}))

    async def _check_acl(
        self, client: str | None, model: str, method: str, deadline: Deadline
    ) -> None:
        acl = (await self._acls.get(model, deadline)).get(method, "")
        if not self._acl_admits(client, acl):
            log.info(
                "client=%s refused %s on model=%s by ACL %s", self.label(client), method, model, acl
            )
            who = client or ANONYMOUS
            raise PermissionDeniedError(
                f"{method} on {model} is limited to {acl}; client {who} is not in it"
            )

    def admit(
        self, method: str, request: Any, context: Caller, deadline: Deadline | None
    ) -> _Admission:
        """Checks ``request`` and holds its concurrency slots while the body runs. A data call
        (one of `MODEL_CALLS`) waits for its model's ACLs and slot until ``deadline``, the
        call's own (`_deadlines`); other calls wait for nothing, and need none."""
        return _Admission(self, method, request, context, deadline)

    def admit_model(
        self, method: str, model: str, context: Caller, deadline: Deadline
    ) -> _Admission:
        """`admit` for a call whose model is not a proto field, as on the OpenAI face (whose
        body is OpenAI's JSON): ``method`` is the SaxGateway method it stands for."""
        return self.admit(method, _Named(model), context, deadline)

    def _client_slot(self, client: str | None, context: Caller) -> Slot | Unlimited:
        if client is None:
            # A caller without a client id is its address, as for `quotas.rate` and the stream
            # limit: one anonymous caller must not use up the calls of every other one.
            limit = self._settings.default_max_concurrent
            if limit is None:
                return UNLIMITED
            return Slot(self._per_client, f"{ANONYMOUS}@{client_of(context)}", limit)
        limit = self._settings.client_max_concurrent.get(client)
        if limit is None:
            limit = self._settings.default_max_concurrent
            if limit is None:
                return UNLIMITED  # nothing counted: no cost where no limit is configured
        return Slot(self._per_client, client, limit)

    def _gate(self, model: str) -> ModelGate:
        """The model's gate, made at its first call in flight or queued here."""
        gate = self._gates.get(model)
        if gate is None:
            limit = self._settings.models.get(model, self._settings.model)
            models = self._models
            waits = self._waits
            gate = Gate(limit, waits) if models is None else StackGate(limit, models, model, waits)
            self._gates[model] = gate
        return gate


class _Admission(AbstractAsyncContextManager["_Admission"]):
    """`Access.admit`, as a plain object rather than an ``@asynccontextmanager``: every open
    stream holds one for its whole life, and this is a third of the size of the generator,
    its frame and the wrapper that one costs (and a little less work per unary call)."""

    __slots__ = (
        "_access",
        "_context",
        "_deadline",
        "_gate",
        "_holds",
        "_method",
        "_model",
        "_request",
        "_slot",
    )

    def __init__(
        self,
        access: Access,
        method: str,
        request: Any,
        context: Caller,
        deadline: Deadline | None,
    ) -> None:
        self._access, self._method, self._request = access, method, request
        self._context, self._deadline = context, deadline
        self._gate: ModelGate | None = None
        self._slot: Slot | Unlimited | None = None
        self._model = ""
        self._holds = False  # a slot of ``_gate``

    async def __aenter__(self) -> _Admission:
        named = _named_model(self._request)
        if named is None:
            return self
        field, model = named
        if len(model) > lim.MAX_ID_CHARS:
            # No model has such an ID: the servicer's 400, before a refusal below echoes it
            # whole into a log line and a reply (a 32 MiB body: a 32 MB line a call).
            f.model_id(model, field)
        access = self._access
        client = access.identity(self._context)
        access._check_models(client, model)
        sax_method = _sax_method(self._method, self._request)
        if sax_method is None:
            return self
        deadline = self._deadline
        # Every caller fixes a data call's deadline; without one the call fails, never
        # skipping its checks.
        assert deadline is not None, f"{self._method} admitted without its deadline"
        await access._check_acl(client, model, sax_method, deadline)
        slot = access._client_slot(client, self._context)
        slot.__enter__()
        gate = access._gate(model)
        gate.users += 1
        try:
            await gate.acquire(model, deadline)
        except BaseException:
            self._leave(gate, model, slot)
            raise
        self._gate, self._slot, self._model = gate, slot, model
        self._holds = True
        return self

    async def each(self, calls: Sequence[Callable[[], Awaitable[_T]]]) -> list[_T]:
        """Runs ``calls``, this request's model calls (an OpenAI request's prompts or inputs),
        and returns their results in order: one after the other in the slot the request holds,
        more at once only in what is free now, without waiting: a slot of the model that no
        call waits for, and one of the client's (its ``max_concurrent`` counts every call in
        flight). So one request never exceeds the model's limit nor its client's, nor jumps
        the model's queue; and between two calls a slot goes to a call waiting for one
        (`Gate.pass_on`): a call queued behind a big request waits for one of its calls, not
        for all of them. The first failure cancels the others and is raised as is."""
        if len(calls) == 1:  # the common case: no task, no group
            return [await calls[0]()]
        gate, slot = self._gate, self._slot
        if gate is None or slot is None:  # no slots held: nothing to share
            return [await call() for call in calls]
        total = len(calls)
        done: dict[int, _T] = {}
        started = 0  # calls begun, in order
        extras = 0  # workers beside the request's own, each in a model and a client slot

        async def extra(ticket: int) -> None:
            nonlocal started, extras
            try:
                while started < total:
                    number = started
                    started += 1
                    done[number] = await calls[number]()
                    if gate.waiting:  # its slot goes to the first call waiting
                        break
            finally:
                extras -= 1
                gate.release()
                slot.give(ticket)

        async def own(group: asyncio.TaskGroup) -> None:
            nonlocal started, extras
            while started < total:
                number = started
                started += 1
                # The model's check first: it is this process's, the client's may be the
                # stack's (a lock on a shared table).
                while extras < total - started and await gate.try_acquire():
                    ticket = slot.spare()
                    if ticket is None:
                        gate.release()
                        break
                    extras += 1
                    group.create_task(extra(ticket))
                done[number] = await calls[number]()
                if started < total:
                    await self.pass_on()
            if extras:  # the others run the last calls: its model slot is idle
                self._holds = False
                gate.release()

        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(own(group))
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None
        return [done[number] for number in range(total)]

    async def pass_on(self) -> None:
        """Between two model calls of this request: its model slot to a call waiting for one,
        if any, and back in line behind it (`Gate.pass_on`)."""
        gate, deadline = self._gate, self._deadline
        if gate is None or deadline is None or not gate.waiting:
            return
        self._holds = False
        await gate.pass_on(self._model, deadline)
        self._holds = True

    async def __aexit__(self, *exc: object) -> None:
        gate, slot = self._gate, self._slot
        if gate is not None and slot is not None:
            if self._holds:
                gate.release()
            self._leave(gate, self._model, slot)

    def _leave(self, gate: ModelGate, model: str, slot: Slot | Unlimited) -> None:
        gate.users -= 1
        if not gate.users:
            del self._access._gates[model]
        slot.__exit__()


@dataclass(frozen=True)
class _Named:
    model: str


def _sax_method(method: str, request: Any) -> str | None:
    """The Sax method whose ACL a model call of ``method`` is checked against; None for
    every other call."""
    field = NAMED_METHODS.get(method)
    if field is None:
        return SAX_METHODS.get(method)
    return str(getattr(request, field, ""))


def _named_model(request: Any) -> tuple[str, str] | None:
    """The field naming a model in a request and the model ID, spelled as the servicer
    serves it (with its leading slash: resource paths bind "sax/test/lm"), so that checks and
    limits apply to the model the call reaches. GetAcl and SetAcl name a model or a cell in
    ``name``; a cell is no model. Malformed IDs pass through, but overlong ones (`admit`):
    the servicer refuses them."""
    model = getattr(request, "model", None)
    if isinstance(model, str) and model:
        return "model", with_slash(model)
    name = getattr(request, "name", None)
    if not isinstance(name, str) or with_slash(name).count("/") != 3:
        return None
    return "name", with_slash(name)


# Calls that change a model's definition, and so maybe its ACLs (SetAcl: a method's ACL):
# once one has run here, this gateway's next call on the model reads them anew (other
# gateways within two lifetimes).
_CHANGES = frozenset({"PublishModel", "UpdateModel", "UnpublishModel", "SetAcl"})
#: When a change that may have been made (its caller left, its reply was lost) has its model's
#: ACLs read anew again, after it failed: a save the admin finishes lands within a moment, or
#: within GCS's retries (10 s).
_SETTLE_S = (0.5, 2.0, 11.0)
# A change that fails with one of these was refused, by this gateway's own checks or by the
# admin: nothing changed, and the ACLs at hand stay as they are. Any other end (success, or
# a reply lost: UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED, INTERNAL, ...) may have changed
# the model.
_REFUSED = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)


def _set_acl(request: Any) -> tuple[str, str] | None:
    """The Sax method and ACL a SetAcl request set (once it succeeded); None for anything
    else, and for a model's admin ACL (no method), which the gateway does not enforce."""
    method = getattr(request, "method", None)
    acl = getattr(request, "acl", None)
    if isinstance(method, str) and method and isinstance(acl, str):
        return method, acl
    return None


class AccessInterceptor(WrappingInterceptor):
    """Runs `Access.admit` around every SaxGateway call (inside the error interceptor), with
    a data call's deadline fixed first (`_deadlines.fix`): its waits here count against it.
    Before either, a call that came by a resource path must name what its path names
    (`_bindings`): the checks apply to the model the call reaches. The one data stream,
    GenerateStream, is admitted by the servicer (`SELF_ADMITTED`)."""

    def __init__(self, access: Access, settings: GatewaySettings) -> None:
        super().__init__((SERVICE,))
        self._access = access
        self._settings = settings

    def wrap_unary(self, method: str, behavior: Unary) -> Unary:
        name, access, settings = method.removeprefix(SERVICE), self._access, self._settings
        data = name in MODEL_CALLS
        on_path = path_check(method)

        async def call(request: Any, context: Any) -> Any:
            if on_path is not None:  # first: the checks below are on the request's model
                on_path(request, context)
            deadline = deadlines.fix(context, request, settings) if data else None
            async with access.admit(name, request, context, deadline):
                return await behavior(request, context)

        if name not in _CHANGES:
            return call

        async def change(request: Any, context: Any) -> Any:
            try:
                reply = await call(request, context)
            except SaxError as exc:
                if exc.code not in _REFUSED:  # it may have been made all the same
                    _changed(request, admin_away=exc.code == grpc.StatusCode.UNAVAILABLE)
                    _changed_later(request)
                raise
            except BaseException:  # cancelled, or a bug: it may have been made
                _changed(request)
                _changed_later(request)
                raise
            _changed(request, _set_acl(request) if name == "SetAcl" else None)
            return reply

        def _changed_later(request: Any) -> None:
            # A change whose caller left (or whose reply was lost) may land later: the admin
            # finishes a save its caller left. ACLs read anew before it lands are the old
            # ones, and were kept for their whole lifetime (acl_cache_seconds), by whichever
            # process read them: a revoked ACL went unenforced. Read anew again as it may land.
            loop = asyncio.get_running_loop()
            for delay in _SETTLE_S:
                loop.call_later(delay, _changed, request)

        def _changed(
            request: Any, method_acl: tuple[str, str] | None = None, *, admin_away: bool = False
        ) -> None:
            named = _named_model(request)
            if named is not None:
                access.changed(named[1], method_acl, admin_away=admin_away)

        return change

    def wrap_streaming(self, method: str, behavior: Streaming) -> Streaming:
        name, access, settings = method.removeprefix(SERVICE), self._access, self._settings
        data = name in MODEL_CALLS
        # A data stream this does not admit would go unchecked: ACLs, clients' models, slots.
        assert not data or name in SELF_ADMITTED, f"{name} is a data stream no one admits"
        on_path = path_check(method)

        async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
            if on_path is not None:
                on_path(request, context)
            if data:
                # The one data stream, GenerateStream, holds its client's stream slot and is
                # admitted by the servicer, within its keep-alive (its wait in the model's
                # queue must not leave the caller with nothing): its deadline is fixed here.
                deadlines.fix(context, request, settings, stream=True)
                async for response in behavior(request, context):
                    yield response
                return
            async with access.admit(name, request, context, None):
                async for response in behavior(request, context):
                    yield response

        return stream
