"""The data services (LM, vision, audio, custom): each call finds the loaded model, checks it
supports the method, and turns the model's plain-Python answer into Sax's reply."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

from saxml.protobuf import (
    audio_pb2,
    audio_pb2_grpc,
    common_pb2,
    custom_pb2,
    custom_pb2_grpc,
    lm_pb2,
    lm_pb2_grpc,
    vision_pb2,
    vision_pb2_grpc,
)

from gateway.cell._errors import stream_errors, unary_errors
from gateway.cell.models import base
from gateway.cell.models.base import ExtraInputs, Hypothesis, ServableModel
from gateway.cell.modelserver.cost import report_cost
from gateway.cell.modelserver.extra import checked
from gateway.cell.modelserver.loaded import LoadedModels
from gateway.common.rpc import Context

_Resp = TypeVar("_Resp")


class _DataRequest(Protocol):
    @property
    def model_key(self) -> str: ...
    @property
    def extra_inputs(self) -> common_pb2.ExtraInputs: ...


def _extra(request: _DataRequest, model: ServableModel, method: str) -> ExtraInputs:
    """The request's extra inputs, once they are ones ``method`` of ``model`` takes."""
    return checked(request.extra_inputs, model.extra_inputs.get(method, {}), method)


_Req = TypeVar("_Req", bound=_DataRequest)


class DataServicer:
    def __init__(self, *, loaded: LoadedModels) -> None:
        self._loaded = loaded


_Self = TypeVar("_Self", bound=DataServicer)
# What each unary data method writes: the request, the loaded model and the request's extra
# inputs in; Sax's reply out.
_Body = Callable[[_Self, _Req, ServableModel, ExtraInputs], Awaitable[_Resp]]
_Rpc = Callable[[_Self, _Req, Context], Awaitable[_Resp]]


def forward(
    method: str | Callable[[Any], str],
) -> Callable[[_Body[_Self, _Req, _Resp]], _Rpc[_Self, _Req, _Resp]]:
    """Makes a unary RPC of a method body: find the loaded model (counted under ``method``,
    or, for the custom service, the name ``method`` reads off the request), run the body on
    it, report what it cost, and turn a SaxError into the call's status."""
    custom = not isinstance(method, str)

    def decorate(body: _Body[_Self, _Req, _Resp]) -> _Rpc[_Self, _Req, _Resp]:
        @unary_errors
        async def rpc(self: _Self, request: _Req, context: Context) -> _Resp:
            started = time.perf_counter()
            name = method if isinstance(method, str) else method(request)
            with self._loaded.call(request.model_key, name, custom=custom) as model:
                response = await body(self, request, model, _extra(request, model, name))
            report_cost(context, started)
            return response

        return rpc

    return decorate


def _lm_texts(hyps: list[Hypothesis]) -> list[lm_pb2.DecodedText]:
    return [lm_pb2.DecodedText(text=h.text, score=h.score) for h in hyps]


def _vm_texts(hyps: list[Hypothesis]) -> list[vision_pb2.DecodedText]:
    return [vision_pb2.DecodedText(text=h.text, score=h.score) for h in hyps]


def _generations(images: list[tuple[bytes, float]]) -> list[vision_pb2.ImageGenerations]:
    return [vision_pb2.ImageGenerations(image=data, score=score) for data, score in images]


class LMServicer(DataServicer, lm_pb2_grpc.LMServiceServicer):
    @forward(base.LM_GENERATE)
    async def Generate(
        self, r: lm_pb2.GenerateRequest, model: ServableModel, x: ExtraInputs
    ) -> lm_pb2.GenerateResponse:
        return lm_pb2.GenerateResponse(texts=_lm_texts(await model.generate(r.text, x)))

    @forward(base.LM_SCORE)
    async def Score(
        self, r: lm_pb2.ScoreRequest, model: ServableModel, x: ExtraInputs
    ) -> lm_pb2.ScoreResponse:
        return lm_pb2.ScoreResponse(logp=await model.score(r.prefix, list(r.suffix), x))

    @forward(base.LM_EMBED)
    async def Embed(
        self, r: lm_pb2.EmbedRequest, model: ServableModel, x: ExtraInputs
    ) -> lm_pb2.EmbedResponse:
        return lm_pb2.EmbedResponse(embedding=await model.embed_text(r.text, x))

    @forward(base.LM_GRADIENT)
    async def Gradient(
        self, r: lm_pb2.GradientRequest, model: ServableModel, x: ExtraInputs
    ) -> lm_pb2.GradientResponse:
        scores, gradients = await model.gradient(r.prefix, r.suffix, x)
        reply = lm_pb2.GradientResponse(score=scores)
        for name, values in gradients.items():
            reply.gradients[name].values.extend(values)
        return reply

    @stream_errors
    async def GenerateStream(
        self, request: lm_pb2.GenerateRequest, context: Context
    ) -> AsyncGenerator[lm_pb2.GenerateStreamResponse]:
        started = time.perf_counter()
        key: str = request.model_key
        sent = 0
        with self._loaded.call(key, base.LM_GENERATE_STREAM) as model:
            extra = _extra(request, model, base.LM_GENERATE_STREAM)
            # Like upstream, items only ever append: prefix_len is how much of the sample's
            # text (in characters) the client already has, and text is what comes after it.
            # Like upstream's decoder, scores are per step; a client sums them (as saxutil does).
            lengths: list[int] = []
            totals: list[float] = []
            try:
                async for step in model.generate_stream(request.text, extra):
                    lengths += [0] * (len(step.pieces) - len(lengths))
                    totals += [0.0] * (len(step.pieces) - len(totals))
                    reply = lm_pb2.GenerateStreamResponse()
                    for i, (piece, total) in enumerate(zip(step.pieces, step.scores, strict=True)):
                        increment = total - totals[i]
                        reply.items.add(
                            text=piece, prefix_len=lengths[i], score=increment, scores=[increment]
                        )
                        lengths[i] += len(piece)
                        totals[i] = total
                    # Counted once handed to gRPC: the client may read it before gRPC asks
                    # for the next one, and a cancellation then lands on this yield.
                    sent += 1
                    yield reply
            except (asyncio.CancelledError, GeneratorExit):
                # The client went away: stop decoding now, and say so for tests and operators.
                self._loaded.record_cancellation(key, tokens_sent=sent)
                raise
        report_cost(context, started)  # a stream that ended normally


class VisionServicer(DataServicer, vision_pb2_grpc.VisionServiceServicer):
    @forward(base.VM_CLASSIFY)
    async def Classify(
        self, r: vision_pb2.ClassifyRequest, model: ServableModel, x: ExtraInputs
    ) -> vision_pb2.ClassifyResponse:
        return vision_pb2.ClassifyResponse(texts=_vm_texts(await model.classify(r.image_bytes, x)))

    @forward(base.VM_GENERATE)
    async def TextToImage(
        self, r: vision_pb2.TextToImageRequest, model: ServableModel, x: ExtraInputs
    ) -> vision_pb2.TextToImageResponse:
        images = await model.text_to_image(r.text, x)
        return vision_pb2.TextToImageResponse(images=_generations(images))

    @forward(base.VM_EMBED)
    async def Embed(
        self, r: vision_pb2.EmbedRequest, model: ServableModel, x: ExtraInputs
    ) -> vision_pb2.EmbedResponse:
        return vision_pb2.EmbedResponse(embedding=await model.embed_image(r.image_bytes, x))

    @forward(base.VM_DETECT)
    async def Detect(
        self, r: vision_pb2.DetectRequest, model: ServableModel, x: ExtraInputs
    ) -> vision_pb2.DetectResponse:
        regions = [(b.cx, b.cy, b.w, b.h) for b in r.boxes_of_interest]
        boxes = await model.detect(r.image_bytes, list(r.text), regions, x)
        return vision_pb2.DetectResponse(bounding_boxes=[b.to_proto() for b in boxes])

    @forward(base.VM_IMAGE_TO_TEXT)
    async def ImageToText(
        self, r: vision_pb2.ImageToTextRequest, model: ServableModel, x: ExtraInputs
    ) -> vision_pb2.ImageToTextResponse:
        hyps = await model.image_to_text(r.image_bytes, r.text, x)
        return vision_pb2.ImageToTextResponse(texts=_vm_texts(hyps))

    @forward(base.VM_IMAGE_TO_IMAGE)
    async def ImageToImage(
        self, r: vision_pb2.ImageToImageRequest, model: ServableModel, x: ExtraInputs
    ) -> vision_pb2.ImageToImageResponse:
        images = await model.image_to_image(r.image_bytes, x)
        return vision_pb2.ImageToImageResponse(images=_generations(images))

    @forward(base.VM_TEXT_AND_IMAGE_TO_IMAGE)
    async def TextAndImageToImage(
        self, r: vision_pb2.TextAndImageToImageRequest, model: ServableModel, x: ExtraInputs
    ) -> vision_pb2.TextAndImageToImageResponse:
        images = await model.text_and_image_to_image(r.text, r.image_bytes, x)
        return vision_pb2.TextAndImageToImageResponse(images=_generations(images))

    @forward(base.VM_VIDEO_TO_TEXT)
    async def VideoToText(
        self, r: vision_pb2.VideoToTextRequest, model: ServableModel, x: ExtraInputs
    ) -> vision_pb2.VideoToTextResponse:
        hyps = await model.video_to_text(list(r.image_frames), r.text, x)
        return vision_pb2.VideoToTextResponse(texts=_vm_texts(hyps))

    @forward(base.VM_VIDEO_TO_TOKEN)
    async def VideoToToken(
        self, r: vision_pb2.VideoToTokenRequest, model: ServableModel, x: ExtraInputs
    ) -> vision_pb2.VideoToTokenResponse:
        tokens = await model.video_to_token(list(r.image_frames), x)
        return vision_pb2.VideoToTokenResponse(tokens=tokens)

    @forward(base.VM_TOKEN_TO_VIDEO)
    async def TokenToVideo(
        self, r: vision_pb2.TokenToVideoRequest, model: ServableModel, x: ExtraInputs
    ) -> vision_pb2.TokenToVideoResponse:
        frames = await model.token_to_video(list(r.tokens), x)
        return vision_pb2.TokenToVideoResponse(image_frames=frames)


class AudioServicer(DataServicer, audio_pb2_grpc.AudioServiceServicer):
    @forward(base.AM_RECOGNIZE)
    async def Recognize(
        self, r: audio_pb2.AsrRequest, model: ServableModel, x: ExtraInputs
    ) -> audio_pb2.AsrResponse:
        hyps = await model.recognize(r.audio_bytes, x)
        return audio_pb2.AsrResponse(
            hyps=[audio_pb2.AsrHypothesis(text=h.text, score=h.score) for h in hyps]
        )


def _custom_method(request: custom_pb2.CustomRequest) -> str:
    return request.method_name


class CustomServicer(DataServicer, custom_pb2_grpc.CustomServiceServicer):
    # As upstream's: a custom model names its own methods, and a call is the one it names.
    @forward(_custom_method)
    async def Custom(
        self, r: custom_pb2.CustomRequest, model: ServableModel, x: ExtraInputs
    ) -> custom_pb2.CustomResponse:
        return custom_pb2.CustomResponse(response=await model.custom(r.method_name, r.request, x))
