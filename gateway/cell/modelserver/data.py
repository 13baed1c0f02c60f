"""The data services (LM, vision, audio, custom): each call finds the loaded model, checks it
supports the method, and turns the model's plain-Python answer into Sax's reply."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Protocol, TypeAlias, TypeVar

import grpc
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
from gateway.cell.modelserver.loaded import LoadedModels

Context: TypeAlias = grpc.aio.ServicerContext
_T = TypeVar("_T")
_Resp = TypeVar("_Resp")


def _extra(proto: common_pb2.ExtraInputs) -> ExtraInputs:
    return ExtraInputs(floats=dict(proto.items), strings=dict(proto.strings))


class _DataRequest(Protocol):
    @property
    def model_key(self) -> str: ...
    @property
    def extra_inputs(self) -> common_pb2.ExtraInputs: ...


_Req = TypeVar("_Req", bound=_DataRequest)


class DataServicer:
    def __init__(self, *, loaded: LoadedModels) -> None:
        self._loaded = loaded


def forward(
    request_type: type[_Req],
    method: str,
    call: Callable[[_Req, ServableModel, ExtraInputs], Awaitable[_T]],
    reply: Callable[[_T], _Resp],
) -> Callable[[DataServicer, _Req, Context], Awaitable[_Resp]]:
    """A unary RPC: find the loaded model (counted under ``method``), call it, build the reply.

    Every unary data method of every service is one such line; ``request_type`` only fixes the
    types the two functions see."""

    @unary_errors
    async def rpc(self: DataServicer, request: _Req, context: Context) -> _Resp:
        with self._loaded.call(request.model_key, method) as model:
            return reply(await call(request, model, _extra(request.extra_inputs)))

    return rpc


def _lm_texts(hyps: list[Hypothesis]) -> list[lm_pb2.DecodedText]:
    return [lm_pb2.DecodedText(text=h.text, score=h.score) for h in hyps]


def _vm_texts(hyps: list[Hypothesis]) -> list[vision_pb2.DecodedText]:
    return [vision_pb2.DecodedText(text=h.text, score=h.score) for h in hyps]


def _generations(images: list[tuple[bytes, float]]) -> list[vision_pb2.ImageGenerations]:
    return [vision_pb2.ImageGenerations(image=data, score=score) for data, score in images]


def _gradient_reply(result: tuple[list[float], dict[str, list[float]]]) -> lm_pb2.GradientResponse:
    scores, gradients = result
    reply = lm_pb2.GradientResponse(score=scores)
    for name, values in gradients.items():
        reply.gradients[name].values.extend(values)
    return reply


class LMServicer(DataServicer, lm_pb2_grpc.LMServiceServicer):  # type: ignore[misc,unused-ignore]
    Generate = forward(
        lm_pb2.GenerateRequest,
        base.LM_GENERATE,
        lambda r, model, x: model.generate(r.text, x),
        lambda hyps: lm_pb2.GenerateResponse(texts=_lm_texts(hyps)),
    )
    Score = forward(
        lm_pb2.ScoreRequest,
        base.LM_SCORE,
        lambda r, model, x: model.score(r.prefix, list(r.suffix), x),
        lambda logp: lm_pb2.ScoreResponse(logp=logp),
    )
    Embed = forward(
        lm_pb2.EmbedRequest,
        base.LM_EMBED,
        lambda r, model, x: model.embed_text(r.text, x),
        lambda vector: lm_pb2.EmbedResponse(embedding=vector),
    )
    Gradient = forward(
        lm_pb2.GradientRequest,
        base.LM_GRADIENT,
        lambda r, model, x: model.gradient(r.prefix, r.suffix, x),
        _gradient_reply,
    )

    @stream_errors
    async def GenerateStream(
        self, request: lm_pb2.GenerateRequest, context: Context
    ) -> AsyncGenerator[lm_pb2.GenerateStreamResponse]:
        key: str = request.model_key
        sent = 0
        with self._loaded.call(key, base.LM_GENERATE_STREAM) as model:
            # Like upstream, items only ever append: prefix_len is how much of the sample's
            # text (in characters) the client already has, and text is what comes after it.
            # Like upstream's decoder, scores are per step; a client sums them (as saxutil does).
            lengths: list[int] = []
            totals: list[float] = []
            try:
                async for step in model.generate_stream(request.text, _extra(request.extra_inputs)):
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
                    yield reply
                    sent += 1
            except (asyncio.CancelledError, GeneratorExit):
                # The client went away: stop decoding now, and say so for tests and operators.
                self._loaded.record_cancellation(key, tokens_sent=sent)
                raise


class VisionServicer(DataServicer, vision_pb2_grpc.VisionServiceServicer):  # type: ignore[misc,unused-ignore]
    Classify = forward(
        vision_pb2.ClassifyRequest,
        base.VM_CLASSIFY,
        lambda r, model, x: model.classify(r.image_bytes, x),
        lambda hyps: vision_pb2.ClassifyResponse(texts=_vm_texts(hyps)),
    )
    TextToImage = forward(
        vision_pb2.TextToImageRequest,
        base.VM_GENERATE,
        lambda r, model, x: model.text_to_image(r.text, x),
        lambda images: vision_pb2.TextToImageResponse(images=_generations(images)),
    )
    Embed = forward(
        vision_pb2.EmbedRequest,
        base.VM_EMBED,
        lambda r, model, x: model.embed_image(r.image_bytes, x),
        lambda vector: vision_pb2.EmbedResponse(embedding=vector),
    )
    Detect = forward(
        vision_pb2.DetectRequest,
        base.VM_DETECT,
        lambda r, model, x: model.detect(r.image_bytes, list(r.text), x),
        lambda boxes: vision_pb2.DetectResponse(bounding_boxes=[b.to_proto() for b in boxes]),
    )
    ImageToText = forward(
        vision_pb2.ImageToTextRequest,
        base.VM_IMAGE_TO_TEXT,
        lambda r, model, x: model.image_to_text(r.image_bytes, r.text, x),
        lambda hyps: vision_pb2.ImageToTextResponse(texts=_vm_texts(hyps)),
    )
    ImageToImage = forward(
        vision_pb2.ImageToImageRequest,
        base.VM_IMAGE_TO_IMAGE,
        lambda r, model, x: model.image_to_image(r.image_bytes, x),
        lambda images: vision_pb2.ImageToImageResponse(images=_generations(images)),
    )
    TextAndImageToImage = forward(
        vision_pb2.TextAndImageToImageRequest,
        base.VM_TEXT_AND_IMAGE_TO_IMAGE,
        lambda r, model, x: model.text_and_image_to_image(r.text, r.image_bytes, x),
        lambda images: vision_pb2.TextAndImageToImageResponse(images=_generations(images)),
    )
    VideoToText = forward(
        vision_pb2.VideoToTextRequest,
        base.VM_VIDEO_TO_TEXT,
        lambda r, model, x: model.video_to_text(list(r.image_frames), r.text, x),
        lambda hyps: vision_pb2.VideoToTextResponse(texts=_vm_texts(hyps)),
    )
    VideoToToken = forward(
        vision_pb2.VideoToTokenRequest,
        base.VM_VIDEO_TO_TOKEN,
        lambda r, model, x: model.video_to_token(list(r.image_frames), x),
        lambda tokens: vision_pb2.VideoToTokenResponse(tokens=tokens),
    )
    TokenToVideo = forward(
        vision_pb2.TokenToVideoRequest,
        base.VM_TOKEN_TO_VIDEO,
        lambda r, model, x: model.token_to_video(list(r.tokens), x),
        lambda frames: vision_pb2.TokenToVideoResponse(image_frames=frames),
    )


class AudioServicer(DataServicer, audio_pb2_grpc.AudioServiceServicer):  # type: ignore[misc,unused-ignore]
    Recognize = forward(
        audio_pb2.AsrRequest,
        base.AM_RECOGNIZE,
        lambda r, model, x: model.recognize(r.audio_bytes, x),
        lambda hyps: audio_pb2.AsrResponse(
            hyps=[audio_pb2.AsrHypothesis(text=h.text, score=h.score) for h in hyps]
        ),
    )


class CustomServicer(DataServicer, custom_pb2_grpc.CustomServiceServicer):  # type: ignore[misc,unused-ignore]
    Custom = forward(
        custom_pb2.CustomRequest,
        base.CUSTOM,
        lambda r, model, x: model.custom(r.method_name, r.request, x),
        lambda data: custom_pb2.CustomResponse(response=data),
    )
