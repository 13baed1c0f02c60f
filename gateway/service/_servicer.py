"""The SaxGateway servicer: unpack the request, await the Sax client, build the reply.

Validation helpers live in `_fields`, stream normalisation in `_stream`, and error mapping in
`_errors` (applied to every method by an interceptor), so each method here stays a few lines.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any, TypedDict

from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc

from gateway import __version__
from gateway.client import CallOptions, Client, DeadlineExceededError, ModelDetail, SaxError
from gateway.common import limits as lim
from gateway.common.closing import aclose
from gateway.common.deadline import Deadline
from gateway.common.rpc import Context
from gateway.config import GatewaySettings
from gateway.service import _deadlines as deadlines
from gateway.service import _fields as f
from gateway.service._access import Access
from gateway.service._errors import check_reply, request_id, to_status
from gateway.service._keepalive import KeepAlive
from gateway.service._media import (
    MediaMethods,
    decoded_texts,
    detected_boxes,
    generated_images,
    regions,
)
from gateway.service._multimodal import MultimodalMethods
from gateway.service._pages import Page
from gateway.service._stream import DeltaTracker
from gateway.service._streams import StreamSlots, is_head
from gateway.service._usage import note_answered, note_samples

GREETING = "HTTP Server for SAX Client"  # what the original Sax HTTP server answered on "/"


class _Listing(TypedDict):
    """What ListCellResponse and ModelInfo both say of a model (ModelInfo's first fields)."""

    model: str
    model_path: str
    checkpoint: str
    max_replicas: int
    active_replicas: int


def _listing(detail: ModelDetail) -> _Listing:
    return {
        "model": detail.model_id,
        "model_path": detail.model_path,
        "checkpoint": detail.checkpoint,
        "max_replicas": detail.max_replicas,
        "active_replicas": detail.active_replicas,
    }


def _model_info(detail: ModelDetail) -> pb.ModelInfo:
    return pb.ModelInfo(
        **_listing(detail),
        overrides=detail.overrides,
        addresses=sorted(detail.addresses),
        methods=sorted(detail.method_names),
        method_acls=detail.acls,
    )


def _defined_model(
    request: pb.PublishModelRequest | pb.UpdateModelRequest, *, publish: bool
) -> str:
    """The model ID of a publish or update, its path and checkpoint checked (an update may
    leave them empty: unchanged)."""
    model = f.model_id(request.model)
    f.model_path(request.model_path, needed=publish)
    f.checkpoint(request.checkpoint, needed=publish)
    return model


def _short_of(deadline: Deadline) -> Deadline:
    """``deadline`` less the time one more admin read needs (a tenth of what is left, at most
    a second): a wait that ends there can still say how many replicas were ready."""
    remaining = deadline.remaining()
    if remaining is None or remaining <= 0:
        return deadline
    return deadline.earliest(Deadline.after(remaining - min(1.0, remaining / 10)))


def _not_ready(model: str, wanted: int, detail: ModelDetail) -> str:
    """Why a wait for ``wanted`` replicas of ``model`` ended at its deadline: the admin's own
    message said only that its WaitForReady had not finished."""
    text = (
        f"{model}: {detail.active_replicas} of {wanted} replica(s) ready when the wait's "
        "deadline passed"
    )
    if wanted > detail.max_replicas:
        text += (
            f"; it is published with {detail.max_replicas} replica(s), so {wanted} can be "
            "ready only once its replicas are updated"
        )
    return text


class SaxGatewayServicer(MultimodalMethods, MediaMethods, gateway_pb2_grpc.SaxGatewayServicer):
    """Implements saxgateway.v1.SaxGateway over one shared Sax `Client`."""

    def __init__(
        self, client: Client, settings: GatewaySettings, streams: StreamSlots, access: Access
    ) -> None:
        self._client = client
        self._settings = settings
        self._streams = streams  # shared with the OpenAI face
        self._access = access

    def _deadline(self, context: Context, request: Any = None, stream: bool = False) -> Deadline:
        # Fixed once where the call enters (a data call's by the access checks, before they
        # wait for its model's ACLs and slot); every Sax RPC the call makes uses what is left.
        return deadlines.fixed(context, request, self._settings, stream=stream)

    def _target(
        self, request: Any, context: Context, stream: bool = False
    ) -> tuple[str, CallOptions]:
        """Where a data call goes and how: the request's model ID (checked) and its options."""
        deadline = self._deadline(context, request, stream)
        return f.model_id(request.model), f.call_options(request.extra_inputs, deadline)

    # Admin methods.

    async def GetInfo(self, request: pb.GetInfoRequest, context: Context) -> pb.GetInfoResponse:
        return pb.GetInfoResponse(message=GREETING, version=__version__)

    async def PublishModel(
        self, request: pb.PublishModelRequest, context: Context
    ) -> pb.PublishModelResponse:
        model = _defined_model(request, publish=True)
        replicas = f.replicas(request.replicas if request.HasField("replicas") else 1)
        await self._client.publish(
            model,
            request.model_path,
            request.checkpoint,
            replicas,
            f.overrides(request.overrides),
            deadline=self._deadline(context),
        )
        return pb.PublishModelResponse(
            model=model, path=request.model_path, checkpoint=request.checkpoint, replicas=replicas
        )

    async def ListCell(self, request: pb.ListCellRequest, context: Context) -> pb.ListCellResponse:
        detail = await self._client.list_detail(
            f.model_id(request.model), deadline=self._deadline(context)
        )
        return pb.ListCellResponse(**_listing(detail))

    async def GetModel(self, request: pb.GetModelRequest, context: Context) -> pb.GetModelResponse:
        model, deadline = f.model_id(request.model), self._deadline(context)
        detail = await self._client.list_detail(model, deadline=deadline)
        info = _model_info(detail)
        # Fewer replicas than asked for may mean that loading failed: say why.
        if detail.active_replicas < detail.max_replicas and (
            load_error := await self._client.load_error(model, deadline=deadline)
        ):
            info.load_error = load_error
        return pb.GetModelResponse(model=info)

    async def ListModels(
        self, request: pb.ListModelsRequest, context: Context
    ) -> pb.ListModelsResponse:
        cell = f.cell_id(request.sax_cell)
        wanted = Page.asked(cell, size=request.page_size, token=request.page_token)
        listed = await self._client.list_all(cell, deadline=self._deadline(context))
        # Only the models the caller may name: its pages, and their tokens, name no other.
        details = [d for d in listed if self._access.may_name(context, d.model_id)]
        # What the reply holds beside the models: the cell, the token (a model ID), framing.
        budget = self._settings.max_message_bytes - 2 * lim.MAX_ID_CHARS - 64
        models, token = wanted.of(details, _model_info, budget)
        return pb.ListModelsResponse(sax_cell=cell, models=models, next_page_token=token)

    async def ListCells(
        self, request: pb.ListCellsRequest, context: Context
    ) -> pb.ListCellsResponse:
        cells = await self._client.list_cells(deadline=self._deadline(context))
        return pb.ListCellsResponse(cells=sorted(cells))

    async def UpdateModel(
        self, request: pb.UpdateModelRequest, context: Context
    ) -> pb.UpdateModelResponse:
        model = _defined_model(request, publish=False)
        f.overrides(request.overrides)
        # The definition this update wrote: a read after it could find the model unpublished
        # (404) or the admin gone (503) by then, for an update that was made.
        detail = await self._client.update(
            model,
            model_path=request.model_path or None,
            checkpoint=request.checkpoint or None,
            num_replicas=f.replicas(request.replicas) if request.HasField("replicas") else None,
            overrides=dict(request.overrides) or ({} if request.clear_overrides else None),
            deadline=self._deadline(context),
        )
        return pb.UpdateModelResponse(
            model=model,
            path=detail.model_path,
            checkpoint=detail.checkpoint,
            replicas=detail.max_replicas,
            overrides=detail.overrides,
        )

    async def UnpublishModel(
        self, request: pb.UnpublishModelRequest, context: Context
    ) -> pb.UnpublishModelResponse:
        model = f.model_id(request.model)
        await self._client.unpublish(model, deadline=self._deadline(context))
        return pb.UnpublishModelResponse(model=model)

    async def GetStats(self, request: pb.GetStatsRequest, context: Context) -> pb.GetStatsResponse:
        stats = await self._client.stats(
            f.cell_or_model_id(request.name), deadline=self._deadline(context)
        )
        return pb.GetStatsResponse(
            server_types=[
                pb.ServerTypeStat(
                    chip_type=s.chip_type, chip_topology=s.chip_topology, replicas=s.num_replicas
                )
                for s in stats.server_types
            ],
            servers_by_model_path=stats.servers_by_model_path,
        )

    async def WaitForReady(
        self, request: pb.WaitForReadyRequest, context: Context
    ) -> pb.WaitForReadyResponse:
        model = f.model_id(request.model)
        replicas = f.replicas(request.replicas) if request.HasField("replicas") else 1
        deadline = self._deadline(context, request)
        # A wait can last as long as a stream (until the replicas come up or its deadline),
        # so it is counted with the client's streams: one client cannot hold any number.
        with self._streams.hold(context):
            ran_out: DeadlineExceededError | None = None
            try:
                await self._client.wait_for_ready(model, replicas, deadline=_short_of(deadline))
            except DeadlineExceededError as exc:
                ran_out = exc
            # The answer's count, and a wait that ran out says why with it.
            detail = await self._client.list_detail(model, deadline=deadline)
            if ran_out is not None and detail.active_replicas < replicas:
                raise DeadlineExceededError(_not_ready(model, replicas, detail)) from ran_out
        return pb.WaitForReadyResponse(model=model, active_replicas=detail.active_replicas)

    async def GetAcl(self, request: pb.GetAclRequest, context: Context) -> pb.GetAclResponse:
        name, deadline = f.cell_or_model_id(request.name), self._deadline(context)
        if f.is_cell(name):
            return pb.GetAclResponse(
                name=name, acl=await self._client.get_acl(name, deadline=deadline)
            )
        detail = await self._client.list_detail(name, deadline=deadline)  # one read for both
        return pb.GetAclResponse(name=name, acl=detail.admin_acl, method_acls=detail.acls)

    async def SetAcl(self, request: pb.SetAclRequest, context: Context) -> pb.SetAclResponse:
        name = f.cell_or_model_id(request.name)
        acl, method = f.acl(request.acl), f.acl_method(request.method, name)
        await self._client.set_acl(name, acl, method=method, deadline=self._deadline(context))
        return pb.SetAclResponse(name=name, acl=acl, method=request.method)

    async def WatchAddresses(
        self, request: pb.WatchAddressesRequest, context: Context
    ) -> AsyncIterator[pb.WatchAddressesResponse]:
        model = f.model_id(request.model)
        # Only the caller's own deadline (a moment before it) ends a watch: at grpc's, the
        # stream stopped with no last message, which an SSE client took for a clean end.
        until = Deadline.after(f.deadline(context, None, math.inf))
        with self._streams.hold(context):
            await self._client.list_detail(model, deadline=self._deadline(context))  # NOT_FOUND
            if is_head(context):  # GET's status and headers, then the end a HEAD reply needs
                return
            watch = self._client.watch_addresses(model)
            try:
                while True:
                    addresses = await _next_before(watch, until, f"watching {model}")
                    yield pb.WatchAddressesResponse(addresses=addresses)
            except SaxError as exc:
                yield pb.WatchAddressesResponse(error=to_status(exc, request_id(context))[2])
                raise
            finally:
                await aclose(watch)

    # Language models.

    async def Generate(self, request: pb.GenerateRequest, context: Context) -> pb.GenerateResponse:
        model, options = self._target(request, context)
        f.required(request.query, "query")
        texts = await self._client.lm_generate(model, request.query, options)
        return pb.GenerateResponse(texts=decoded_texts(texts))

    async def GenerateStream(
        self, request: pb.GenerateStreamRequest, context: Context
    ) -> AsyncIterator[pb.GenerateStreamResponse]:
        # Its messages are events (Envoy frames each), so a wait for the first token can be
        # bridged with its headers alone, once; nothing between two tokens. One generator,
        # the keep-alive awaited in it: every layer more lives as long as the stream.
        every = self._settings.stream_keepalive
        keepalive = KeepAlive(every, context.send_initial_metadata, (), repeat=False)
        # Admitted here, not by the access interceptor as other calls are: its wait in the
        # model's queue is one the keep-alive bridges (a queued stream sent nothing until it
        # was refused, and a proxy's read timeout gave up on it first). Its client's stream
        # slot is held from before, so that a stream waiting in its model's queue counts.
        # The request is checked first: a stream queued past the keep-alive has its 200 out.
        # After the caller's model list, as a unary call's is (a 403 before a 400); an ID past
        # any model's length is the 400 below, never echoed whole in a refusal.
        if len(request.model) <= lim.MAX_ID_CHARS:
            self._access.check_named(context, request.model)
        model, options = self._target(request, context, stream=True)
        f.required(request.query, "query")
        admission = self._access.admit("GenerateStream", request, context, options.deadline)
        tracker = DeltaTracker()
        started = False
        stream = None
        keepalive.start()
        try:
            with self._streams.hold(context):
                # Left in `finally` whatever happened: its slots are taken before a beat under
                # way ends, which a caller that leaves meanwhile cuts short (a flag set after
                # this line missed that, and the model's slot was held for good).
                await keepalive.bridge(admission.__aenter__())
                note_samples(tracker.texts)  # the telemetry's, kept once
                stream = self._client.lm_generate_stream(model, request.query, options)
                while True:
                    try:
                        async with keepalive:
                            items = await anext(stream)
                    except StopAsyncIteration:
                        break
                    if deltas := tracker.feed(items):
                        started = True
                        yield pb.GenerateStreamResponse(deltas=deltas)
                final = pb.GenerateStreamResponse(done=True, texts=tracker.final())
                # Every sample's whole text at once: over the limit where no delta was, and
                # left to grpc the stream ended with neither it nor an error.
                check_reply(final, self._settings.max_message_bytes)
        except Exception as exc:
            # Before the first message (and the headers) the caller still gets a plain
            # status (an HTTP status through Envoy). After it, an HTTP/1.1 client could
            # not see a trailer, so the stream ends with an in-band error; gRPC callers
            # also get the real status.
            if started or keepalive.sent:
                yield pb.GenerateStreamResponse(
                    done=True, error=to_status(exc, request_id(context))[2]
                )
            raise
        finally:
            keepalive.stop()
            if stream is not None:
                await aclose(stream)  # on client disconnect, this cancels the Sax call
            await admission.__aexit__(None, None, None)  # what it holds, if anything
        note_answered()
        yield final

    async def Score(self, request: pb.ScoreRequest, context: Context) -> pb.ScoreResponse:
        model, options = self._target(request, context)
        if not request.suffix:
            raise f.invalid("suffix", "required: at least one suffix to score")
        f.bounded(request.prefix, "prefix")
        suffixes = f.texts(request.suffix, "suffix")
        logp = await self._client.lm_score(model, request.prefix, suffixes, options)
        return pb.ScoreResponse(logp=logp)

    async def Embed(self, request: pb.EmbedRequest, context: Context) -> pb.EmbedResponse:
        model, options = self._target(request, context)
        f.required(request.text, "text")
        return pb.EmbedResponse(embedding=await self._client.lm_embed(model, request.text, options))

    async def Gradient(self, request: pb.GradientRequest, context: Context) -> pb.GradientResponse:
        model, options = self._target(request, context)
        f.required(request.suffix, "suffix")
        f.bounded(request.prefix, "prefix")
        score, gradients = await self._client.lm_gradient(
            model, request.prefix, request.suffix, options
        )
        return pb.GradientResponse(
            score=score,
            gradients={k: pb.GradientValues(values=v) for k, v in gradients.items()},
        )

    # Vision and audio models.

    async def Classify(self, request: pb.ClassifyRequest, context: Context) -> pb.ClassifyResponse:
        model, options = self._target(request, context)
        image = self._payload(request.image_bytes, "image_bytes")
        return pb.ClassifyResponse(
            texts=decoded_texts(await self._client.vm_classify(model, image, options))
        )

    async def TextToImage(
        self, request: pb.TextToImageRequest, context: Context
    ) -> pb.TextToImageResponse:
        model, options = self._target(request, context)
        f.required(request.text, "text")
        images = await self._client.vm_text_to_image(model, request.text, options)
        return pb.TextToImageResponse(images=generated_images(images))

    async def EmbedImage(
        self, request: pb.EmbedImageRequest, context: Context
    ) -> pb.EmbedImageResponse:
        model, options = self._target(request, context)
        image = self._payload(request.image_bytes, "image_bytes")
        return pb.EmbedImageResponse(embedding=await self._client.vm_embed(model, image, options))

    async def Detect(self, request: pb.DetectRequest, context: Context) -> pb.DetectResponse:
        model, options = self._target(request, context)
        image = self._payload(request.image_bytes, "image_bytes")
        texts = f.texts(request.text, "text")
        of_interest = regions(request.boxes_of_interest, "boxes_of_interest")
        boxes = await self._client.vm_detect(model, image, texts, options, boxes=of_interest)
        return pb.DetectResponse(boxes=detected_boxes(boxes))

    async def ImageToText(
        self, request: pb.ImageToTextRequest, context: Context
    ) -> pb.ImageToTextResponse:
        model, options = self._target(request, context)
        image = self._payload(request.image_bytes, "image_bytes")
        f.bounded(request.text, "text")
        texts = await self._client.vm_image_to_text(model, image, request.text, options)
        return pb.ImageToTextResponse(texts=decoded_texts(texts))

    async def Recognize(
        self, request: pb.RecognizeRequest, context: Context
    ) -> pb.RecognizeResponse:
        model, options = self._target(request, context)
        audio = self._payload(request.audio_bytes, "audio_bytes")
        return pb.RecognizeResponse(
            texts=decoded_texts(await self._client.am_recognize(model, audio, options))
        )


async def _next_before(stream: AsyncIterator[Any], deadline: Deadline, what: str) -> Any:
    """The stream's next item, or DeadlineExceededError naming ``what`` once ``deadline``
    passes first (the stream is then cancelled where it waited)."""
    try:
        async with asyncio.timeout(deadline.remaining()):  # not wait_for: it can lose a cancel
            return await anext(stream)
    except TimeoutError:
        raise DeadlineExceededError(f"{what} reached the call's deadline") from None
