"""The OpenAIGateway servicer: OpenAI's JSON in, the same Sax client calls as SaxGateway, OpenAI's
JSON or Server-Sent Events out.

The body's JSON is read in `_body`; parsing and the parameter table live in `_requests` (the
Responses API's in `_responses_request`), response objects in `_responses`
(`_responses_reply`), stop strings in `_stops`, chat templates in `_chat`, token counts in
`_tokens`, a streamed prompt and the finish reason in `_generate`, and errors in `_errors`;
deadlines and error codes are SaxGateway's (`gateway.service._fields`, `_errors`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

from google.api.httpbody_pb2 import HttpBody
from saxgateway.v1 import openai_pb2 as pb
from saxgateway.v1 import openai_pb2_grpc

from gateway.client import (
    CallOptions,
    Client,
    InternalError,
    InvalidArgumentError,
    ModelDetail,
    NotFoundError,
    PermissionDeniedError,
    SaxError,
)
from gateway.common.closing import aclose
from gateway.common.deadline import Deadline
from gateway.common.limits import quote
from gateway.common.names import parse_model_id
from gateway.common.rpc import Context
from gateway.config import GatewaySettings
from gateway.modelconfig import aliases_of, all_stops
from gateway.service import _fields as f
from gateway.service._access import ANONYMOUS, Access
from gateway.service._bindings import Check, path_check
from gateway.service._keepalive import KeepAlive
from gateway.service._stream import TextSoFar
from gateway.service._streams import StreamSlots
from gateway.service._usage import note_answered, note_usage
from gateway.service.openai import _errors
from gateway.service.openai import _requests as rq
from gateway.service.openai import _responses as rs
from gateway.service.openai._body import parse_body
from gateway.service.openai._chat import ChatTemplates
from gateway.service.openai._embeddings import EmbeddingList
from gateway.service.openai._generate import (
    Job,
    check_samples,
    finish_reason,
    kept_stops,
    stream_prompt,
)
from gateway.service.openai._listing import CellListings
from gateway.service.openai._responses_reply import ResponseReply
from gateway.service.openai._responses_request import responses_request
from gateway.service.openai._stops import cut
from gateway.service.openai._tokens import TokenCounter

log = logging.getLogger(__name__)

LM_METHOD = "lm.generate"
"""Models that report this method are language models, listed by /v1/models."""


def _language_model(methods: Sequence[str]) -> bool:
    """Whether a model with these reported methods is offered as a language model. Sax
    reports a model's methods only once its admin has polled a replica that loaded it (up to
    10 s after data calls reach it, upstream): until then the model may well be one, and a
    completion on it is waited for and served, so it is not turned away as a 404."""
    return not methods or LM_METHOD in methods


_LISTED_FOR = (LM_METHOD, "lm.generate_stream")
"""/v1/models shows a client the language models it may call one of these on (its model list
and the models' Sax ACLs), as OpenAI lists the models an API key can use."""

_LESS_TEXT = "send fewer or shorter prompts, or a lower n or max_tokens"
"""How to make a completion's response smaller."""

#: A request body this large is read, checked and rendered by its chat template in a thread:
#: on the event loop, a 32 MiB chat of a million empty messages held every other call of the
#: process for 3.5 s (parsed 0.4 s, checked 1.3 s, rendered the rest; 55 ms a MiB).
_OFF_LOOP_BYTES = 1 << 20
_T = TypeVar("_T")


async def _off_loop(large: bool, work: Callable[[], _T]) -> _T:
    """``work()``, in a thread if ``large`` (its errors raised here, as they would be)."""
    return await asyncio.to_thread(work) if large else work()


def _path_check(method: str) -> Check:
    check = path_check(f"/{pb.DESCRIPTOR.services_by_name['OpenAIGateway'].full_name}/{method}")
    assert check is not None, f"{method} binds no field from its path"
    return check


_MODEL_ON_PATH = _path_check("GetOpenAIModel")
"""GET /v1/models/{model}: the model the path names must be the request's (`_bindings`)."""


class OpenAIGatewayServicer(openai_pb2_grpc.OpenAIGatewayServicer):
    """Implements saxgateway.v1.OpenAIGateway over one shared Sax `Client`."""

    def __init__(
        self,
        client: Client,
        settings: GatewaySettings,
        access: Access,
        streams: StreamSlots,
        tokens: TokenCounter | None = None,
    ) -> None:
        self._client = client
        self._settings = settings
        # The client's model list, Sax ACLs and concurrency slots, as on SaxGateway (whose
        # calls the access interceptor checks; these name their model inside OpenAI's JSON).
        self._access = access
        self._streams = streams  # SaxGateway's: a client's streams count once, on either face
        self._aliases = aliases_of(settings.models)
        self._chat = ChatTemplates(settings.models)
        self._tokens = tokens or TokenCounter(settings.models)
        self._listings = CellListings(client)

    async def _usage(
        self, model: str, prompts: Sequence[str], completions: Sequence[str] = ()
    ) -> dict[str, Any]:
        """OpenAI's ``usage`` object; the call's metrics count the same texts."""
        note_usage(model, prompts, completions)
        return await self._tokens.usage_off_loop(model, prompts, completions)

    def _resolve(self, name: str) -> str:
        """The Sax model ID ``name`` stands for: an alias, or a model ID ("/" optional).
        The call's telemetry learns it here, so that a call failing later counts under it."""
        if name in self._aliases:
            model = self._aliases[name]
            note_usage(model, (), ())
            return model
        try:
            model = parse_model_id(f.with_slash(name)).id
            note_usage(model, (), ())
            return model
        except InvalidArgumentError:
            raise NotFoundError(
                f"model {quote(name)} does not exist: use a Sax model ID such as /sax/test/lm2b or "
                "a configured alias (GET /v1/models lists them)",
                field_violations=(("model", "unknown model"),),
            ) from None

    def _fitted(self, message: HttpBody, hint: str = "ask for less") -> HttpBody:
        return rs.fitted(message, self._settings.max_message_bytes, hint)

    def _deadline(self, context: Context, default: float) -> Deadline:
        # Fixed once where the call enters; every Sax RPC the call makes uses what is left.
        return Deadline.after(f.deadline(context, None, default))

    def _generation_deadline(self, context: Context) -> Deadline:
        """A generation's deadline: it may decode for the stream timeout, but the Sax client
        stops retrying overloaded or unreachable replicas when a unary call would. Retried
        for the whole stream timeout, an overloaded model answered its 429 after 600 s,
        when the SDKs (whose own timeout is 600 s) had given up, and they retried that."""
        # The retries' bound first, as `_deadlines.call_deadline` does: read second, the
        # caller's grpc-timeout would leave it a few µs short of the deadline it is equal to.
        retry_for = f.deadline(context, None, self._settings.default_timeout)
        return Deadline.after(
            f.deadline(context, None, self._settings.stream_timeout), retry_for=retry_for
        )

    # Models.

    async def _language_models(self, context: Context) -> list[str]:
        deadline = self._deadline(context, self._settings.default_timeout)
        listed = await self._listings.models(deadline)
        client = self._access.identity(context)
        return [
            d.model_id
            for d in listed
            if _language_model(d.method_names)
            and self._access.may_use(client, d.model_id, d.acls, _LISTED_FOR)
        ]

    @_errors.unary
    async def ListOpenAIModels(
        self, request: pb.ListOpenAIModelsRequest, context: Context
    ) -> HttpBody:
        models = await self._language_models(context)
        created = rs.now()
        data = [rs.model_object(m, created) for m in models]
        published = set(models)
        data += [
            rs.model_object(alias, created, root=target)
            for alias, target in sorted(self._aliases.items())
            if target in published
        ]
        return self._fitted(rs.body({"object": "list", "data": data}))

    @_errors.unary
    async def GetOpenAIModel(self, request: pb.GetOpenAIModelRequest, context: Context) -> HttpBody:
        _MODEL_ON_PATH(request, context)  # the model the URL names, not one a query names
        # The SDKs percent-encode the ID as one path segment (/v1/models/%2Fsax%2Ftest%2Flm),
        # which Envoy's transcoder decodes (its url_unescape_spec: ALL_CHARACTERS).
        name = request.model
        model = self._resolve(name)
        deadline = self._deadline(context, self._settings.default_timeout)
        async with self._access.admit_model("GetModel", model, context, deadline):
            detail = await self._client.list_detail(model, deadline=deadline)
        if not _language_model(detail.method_names):
            raise NotFoundError(f"{model} is not a language model (it has no {LM_METHOD})")
        client = self._access.identity(context)
        if not self._access.may_use(client, model, detail.acls, _LISTED_FOR):
            # What /v1/models leaves out is not there to retrieve either.
            raise PermissionDeniedError(
                f"{' and '.join(_LISTED_FOR)} on {model} are limited by its Sax ACLs; "
                f"client {client or ANONYMOUS} is in neither"
            )
        shown = name if name in self._aliases else model
        return self._fitted(rs.body(rs.model_object(shown, rs.now(), root=model)))

    # Completions.

    @_errors.streaming
    async def CreateCompletion(
        self, request: pb.CreateCompletionRequest, context: Context
    ) -> AsyncIterator[HttpBody]:
        data = request.body.data
        req = await _off_loop(
            len(data) >= _OFF_LOOP_BYTES, lambda: rq.completion_request(parse_body(data))
        )
        shape = rs.Shape(chat=False, model=req.model, include_usage=req.sampling.include_usage)
        job = self._job(req.model, req.sampling, shape, prompts=lambda _: (req.prompts, ()))
        async for message in self._complete(context, job):
            yield message

    @_errors.streaming
    async def CreateChatCompletion(
        self, request: pb.CreateChatCompletionRequest, context: Context
    ) -> AsyncIterator[HttpBody]:
        data = request.body.data
        large = len(data) >= _OFF_LOOP_BYTES
        req = await _off_loop(large, lambda: rq.chat_request(parse_body(data)))
        shape = rs.Shape(chat=True, model=req.model, include_usage=req.sampling.include_usage)
        job = await self._conversation(
            context, req.model, req.messages, req.sampling, shape, "messages", large, req.template
        )
        async for message in self._complete(context, job):
            yield message

    @_errors.streaming
    async def CreateResponse(
        self, request: pb.CreateResponseRequest, context: Context
    ) -> AsyncIterator[HttpBody]:
        data = request.body.data
        large = len(data) >= _OFF_LOOP_BYTES
        req = await _off_loop(large, lambda: responses_request(parse_body(data)))
        shape = ResponseReply(req.model, req.echo)
        job = await self._conversation(
            context, req.model, req.messages, req.sampling, shape, "input", large
        )
        async for message in self._complete(context, job):
            yield message

    async def _conversation(
        self,
        context: Context,
        name: str,
        messages: Sequence[Mapping[str, str]],
        sampling: rq.Sampling,
        shape: rs.Reply,
        field: str,
        large: bool,
        templating: rq.Templating = rq.AS_CONFIGURED,
    ) -> Job:
        """The job of answering ``messages`` (chat and responses; the request's ``field``):
        one prompt, rendered by the model's chat template as ``templating`` asks (in a thread
        for a ``large`` request), which may add its own stop strings, and within the limit on
        text sent to Sax."""
        model = self._resolve(name)
        # Before the template runs for it: a client whose model list leaves the model out got
        # the template's 400 (its raise_exception texts, a role it knows) where every call
        # naming the model is a 403 (docs/config.md).
        self._access.check_named(context, model)
        if not self._chat.has_template(model):
            # Its 400 says how to configure a template: first make sure the model is there,
            # or a misspelt name would be told to configure one, not OpenAI's 404; and that
            # it generates text, or a vision model would be sent to /v1/completions.
            detail = await self._published(model, context)
            method = "lm.generate_stream" if sampling.stream else LM_METHOD
            if lacking := _lacking(model, method, detail.method_names):
                raise lacking

        prompt = await _off_loop(
            large, lambda: self._chat.render(model, messages, field, templating)
        )
        stops = self._chat.stops(model)
        return self._job(name, sampling, shape, prompts=lambda _: ((prompt,), stops))

    async def _published(self, model: str, context: Context) -> ModelDetail:
        """``model``'s detail; NOT_FOUND unless it is published (PERMISSION_DENIED first if the
        caller's model list leaves it out, so the answer says nothing of models it may not
        use)."""
        deadline = self._deadline(context, self._settings.default_timeout)
        async with self._access.admit_model("GetModel", model, context, deadline):
            return await self._client.list_detail(model, deadline=deadline)

    def _job(
        self,
        name: str,
        sampling: rq.Sampling,
        shape: rs.Reply,
        *,
        prompts: Callable[[str], tuple[Sequence[str], Sequence[str]]],
    ) -> Job:
        """Resolves the requested model ``name``; ``prompts`` gives the model's prompts and the
        stop strings it adds to the request's and the configured ones."""
        model = self._resolve(name)
        texts, extra_stops = prompts(model)
        note_usage(model, texts, ())  # the input counts, if the call fails from here on
        stops = all_stops(self._settings.models.get(model), (*sampling.stop, *extra_stops))
        return Job(shape, model, texts, sampling, stops)

    def _complete(self, context: Context, job: Job) -> AsyncIterator[HttpBody]:
        """The reply's messages: its events (``stream: true``), or its one body. Not a
        generator of its own: a layer that relays the events lives as long as the stream."""
        # A completion decodes as long as its max_tokens asks, streamed or not: an SDK sends
        # no deadline, and cut at the unary default it would be a 504 the SDKs retry twice
        # (the decoding three times over, then a failure). OpenAI and vLLM do not cut it;
        # the SDKs themselves wait 600 s, as long as a stream may last here. One deadline
        # for the whole request (however many prompts it has), from before it waits for
        # its model's ACLs and slot.
        deadline = self._generation_deadline(context)
        options = CallOptions(extra_inputs=job.sampling.extra_inputs(), deadline=deadline)
        if job.sampling.stream:
            return self._streamed(context, job, options, deadline)
        return self._whole(context, job, options, deadline)

    async def _whole(
        self, context: Context, job: Job, options: CallOptions, deadline: Deadline
    ) -> AsyncIterator[HttpBody]:
        shape, model, prompts, sampling, stops = job
        generate = self._client.lm_generate
        try:
            async with self._access.admit_model("Generate", model, context, deadline) as admitted:
                each = [partial(generate, model, p, options) for p in prompts]
                results = await admitted.each(each)
        except InvalidArgumentError as exc:
            raise await self._unserved(exc, model, LM_METHOD, deadline) from None
        choices = []
        limit = sampling.max_tokens
        for samples in results:
            check_samples(model, len(samples), sampling.n)
            for text, _score in samples[: sampling.n]:
                kept, stopped = cut(text, stops, kept_stops(sampling))
                reason = finish_reason(self._tokens, model, kept, stopped, None, limit)
                choices.append((kept, reason))
        usage = await self._usage(model, prompts, [text for text, _ in choices])
        yield self._fitted(rs.body(shape.whole(choices, usage)), _LESS_TEXT)

    async def _streamed(
        self, context: Context, job: Job, options: CallOptions, deadline: Deadline
    ) -> AsyncIterator[HttpBody]:
        """A ``stream: true`` call's events, and a comment (`rs.KEEPALIVE`) each time it has
        sent nothing for ``stream_keepalive`` seconds. Once anything was sent, the HTTP status
        is 200 already: a failure becomes the last event, as OpenAI sends it (the call still
        fails with its gRPC code); before, it is the HTTP status the SDKs act on (retry a 429
        or a 5xx)."""
        every = self._settings.stream_keepalive
        keepalive = KeepAlive(every, context.write, rs.KEEPALIVE, repeat=True)
        messages = self._admitted(context, job, options, deadline)
        sent = False
        keepalive.start()
        try:
            while True:
                try:
                    async with keepalive:
                        message = await anext(messages)
                except StopAsyncIteration:
                    break
                sent = True
                yield message
        except Exception as exc:
            if not (sent or keepalive.sent):
                raise
            yield job.shape.failure(exc)
            raise
        finally:
            keepalive.stop()
            await aclose(messages)

    async def _admitted(
        self, context: Context, job: Job, options: CallOptions, deadline: Deadline
    ) -> AsyncIterator[HttpBody]:
        """`_stream` within the client's stream count and the model's ACLs and queue."""
        model = job.model
        sent = False
        try:
            with self._streams.hold(context):
                admission = self._access.admit_model("GenerateStream", model, context, deadline)
                async with admission as admitted:
                    async for message in self._stream(job, options, admitted.pass_on):
                        sent = True
                        yield message
        except InvalidArgumentError as exc:
            if sent:  # about the stream's events, not the model
                raise
            raise await self._unserved(exc, model, "lm.generate_stream", deadline) from None

    async def _stream(
        self, job: Job, options: CallOptions, pass_on: Callable[[], Awaitable[None]]
    ) -> AsyncIterator[HttpBody]:
        shape, model, prompts, sampling, _ = job
        # Every choice's text as sent (`stream_prompt` fills it): the call's usage from here
        # on, read when the call ends, so a stream that fails or whose client leaves counts
        # the text that went out, with no extra work per chunk.
        texts: list[TextSoFar] = []
        note_usage(model, prompts, texts)
        for number, prompt in enumerate(prompts):  # one prompt after the other
            if number:  # its model slot to a call waiting for one, if any, in between
                await pass_on()
            first = number * sampling.n
            pieces = stream_prompt(self._client, self._tokens, job, prompt, first, options, texts)
            async for chunks in pieces:
                yield self._fitted(shape.frame(chunks), _LESS_TEXT)
        sent = [str(text) for text in texts]
        tail = shape.tail(await self._tokens.usage_off_loop(model, prompts, sent))
        note_answered()
        yield tail

    async def _unserved(
        self, exc: InvalidArgumentError, model: str, method: str, deadline: Deadline
    ) -> InvalidArgumentError:
        """What reports ``exc``, an INVALID_ARGUMENT from ``method`` on ``model``: if the
        model has no such method (a vision or audio model), a 400 naming ``model``, where
        Sax's message ends in its Go code name and names no field; otherwise ``exc``."""
        if exc.field_violations:
            return exc
        try:
            detail = await self._client.list_detail(model, deadline=deadline)
        except SaxError:
            return exc
        return _lacking(model, method, detail.method_names) or exc

    # Embeddings.

    @_errors.unary
    async def CreateEmbedding(
        self, request: pb.CreateEmbeddingRequest, context: Context
    ) -> HttpBody:
        req = rq.embedding_request(parse_body(request.body.data))
        model = self._resolve(req.model)
        # From before the call waits for its model's ACLs and slot, as a completion's.
        deadline = self._deadline(context, self._settings.default_timeout)
        options = CallOptions(deadline=deadline)
        hint = "send fewer inputs" + ("" if req.base64 else " (or encoding_format=base64)")
        limit = self._settings.max_message_bytes
        reply = EmbeddingList(len(req.inputs), req.base64, limit, hint)
        sized: list[tuple[int, int]] = []  # the first vector's input and size

        async def embedded(index: int, text: str) -> None:
            # Each vector is checked and written as it comes: a reply that cannot be sent is
            # refused before the other inputs are embedded (`_embeddings`).
            try:
                vector = await self._client.lm_embed(model, text, options)
            except InvalidArgumentError as exc:
                raise await self._unserved(exc, model, "lm.embed", deadline) from None
            # The model's failures, not answers: a 200 carried empty vectors, or vectors of
            # 1, 3 and 2 dimensions in one list (and `dimensions` blamed the caller).
            if not vector:
                raise InternalError(f"{model} embedded input {index} into no dimensions")
            if not sized:
                sized.append((index, len(vector)))
            if len(vector) != sized[0][1]:
                (i, m), (j, n) = sorted([sized[0], (index, len(vector))])
                raise InternalError(
                    f"{model} embedded input {i} into {m} dimensions and input {j} into {n}"
                )
            if req.dimensions is not None and req.dimensions != len(vector):
                size = len(vector)
                why = f"{model} embeds into {size} dimensions, not {req.dimensions}"
                raise f.invalid("dimensions", why)
            reply.add(index, vector)

        async with self._access.admit_model("Embed", model, context, deadline) as admitted:
            await admitted.each([partial(embedded, i, t) for i, t in enumerate(req.inputs)])
        usage = await self._usage(model, req.inputs)
        return self._fitted(reply.body(req.model, usage), hint)


def _lacking(model: str, method: str, methods: Iterable[str]) -> InvalidArgumentError | None:
    """The 400 of a call to ``method`` on ``model``, which serves ``methods`` and not it; None
    if it serves it, or its methods are not known yet (a model server reports them)."""
    served = sorted(methods)
    if not served or method in served:
        return None
    return f.invalid("model", f"{model} has no {method}: it serves {', '.join(served)}")
