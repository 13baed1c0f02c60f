"""The data services (LM, vision, audio, custom): each call finds the loaded model, checks it
supports the method, and turns the model's plain-Python answer into Sax's reply."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import TypeAlias

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
from gateway.cell.models.base import ExtraInputs
from gateway.cell.modelserver.loaded import LoadedModels

Context: TypeAlias = grpc.aio.ServicerContext


def _extra(proto: common_pb2.ExtraInputs) -> ExtraInputs:
    return ExtraInputs(floats=dict(proto.items), strings=dict(proto.strings))


class LMServicer(lm_pb2_grpc.LMServiceServicer):  # type: ignore[misc,unused-ignore]
    def __init__(self, *, loaded: LoadedModels) -> None:
        self._loaded = loaded

    @unary_errors
    async def Generate(
        self, request: lm_pb2.GenerateRequest, context: Context
    ) -> lm_pb2.GenerateResponse:
        with self._loaded.call(request.model_key, base.LM_GENERATE) as model:
            hyps = await model.generate(request.text, _extra(request.extra_inputs))
        return lm_pb2.GenerateResponse(
            texts=[lm_pb2.DecodedText(text=h.text, score=h.score) for h in hyps]
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

    @unary_errors
    async def Score(self, request: lm_pb2.ScoreRequest, context: Context) -> lm_pb2.ScoreResponse:
        with self._loaded.call(request.model_key, base.LM_SCORE) as model:
            logp = await model.score(
                request.prefix, list(request.suffix), _extra(request.extra_inputs)
            )
        return lm_pb2.ScoreResponse(logp=logp)

    @unary_errors
    async def Embed(self, request: lm_pb2.EmbedRequest, context: Context) -> lm_pb2.EmbedResponse:
        with self._loaded.call(request.model_key, base.LM_EMBED) as model:
            vector = await model.embed_text(request.text, _extra(request.extra_inputs))
        return lm_pb2.EmbedResponse(embedding=vector)

    @unary_errors
    async def Gradient(
        self, request: lm_pb2.GradientRequest, context: Context
    ) -> lm_pb2.GradientResponse:
        with self._loaded.call(request.model_key, base.LM_GRADIENT) as model:
            scores, gradients = await model.gradient(
                request.prefix, request.suffix, _extra(request.extra_inputs)
            )
        reply = lm_pb2.GradientResponse(score=scores)
        for name, values in gradients.items():
            reply.gradients[name].values.extend(values)
        return reply


class VisionServicer(vision_pb2_grpc.VisionServiceServicer):  # type: ignore[misc,unused-ignore]
    def __init__(self, *, loaded: LoadedModels) -> None:
        self._loaded = loaded

    @unary_errors
    async def Classify(
        self, request: vision_pb2.ClassifyRequest, context: Context
    ) -> vision_pb2.ClassifyResponse:
        with self._loaded.call(request.model_key, base.VM_CLASSIFY) as model:
            hyps = await model.classify(request.image_bytes, _extra(request.extra_inputs))
        return vision_pb2.ClassifyResponse(
            texts=[vision_pb2.DecodedText(text=h.text, score=h.score) for h in hyps]
        )

    @unary_errors
    async def TextToImage(
        self, request: vision_pb2.TextToImageRequest, context: Context
    ) -> vision_pb2.TextToImageResponse:
        with self._loaded.call(request.model_key, base.VM_GENERATE) as model:
            images = await model.text_to_image(request.text, _extra(request.extra_inputs))
        return vision_pb2.TextToImageResponse(
            images=[vision_pb2.ImageGenerations(image=data, score=score) for data, score in images]
        )

    @unary_errors
    async def Embed(
        self, request: vision_pb2.EmbedRequest, context: Context
    ) -> vision_pb2.EmbedResponse:
        with self._loaded.call(request.model_key, base.VM_EMBED) as model:
            vector = await model.embed_image(request.image_bytes, _extra(request.extra_inputs))
        return vision_pb2.EmbedResponse(embedding=vector)

    @unary_errors
    async def Detect(
        self, request: vision_pb2.DetectRequest, context: Context
    ) -> vision_pb2.DetectResponse:
        with self._loaded.call(request.model_key, base.VM_DETECT) as model:
            boxes = await model.detect(
                request.image_bytes, list(request.text), _extra(request.extra_inputs)
            )
        return vision_pb2.DetectResponse(bounding_boxes=[box.to_proto() for box in boxes])

    @unary_errors
    async def ImageToText(
        self, request: vision_pb2.ImageToTextRequest, context: Context
    ) -> vision_pb2.ImageToTextResponse:
        with self._loaded.call(request.model_key, base.VM_IMAGE_TO_TEXT) as model:
            hyps = await model.image_to_text(
                request.image_bytes, request.text, _extra(request.extra_inputs)
            )
        return vision_pb2.ImageToTextResponse(
            texts=[vision_pb2.DecodedText(text=h.text, score=h.score) for h in hyps]
        )


class AudioServicer(audio_pb2_grpc.AudioServiceServicer):  # type: ignore[misc,unused-ignore]
    def __init__(self, *, loaded: LoadedModels) -> None:
        self._loaded = loaded

    @unary_errors
    async def Recognize(
        self, request: audio_pb2.AsrRequest, context: Context
    ) -> audio_pb2.AsrResponse:
        with self._loaded.call(request.model_key, base.AM_RECOGNIZE) as model:
            hyps = await model.recognize(request.audio_bytes, _extra(request.extra_inputs))
        return audio_pb2.AsrResponse(
            hyps=[audio_pb2.AsrHypothesis(text=h.text, score=h.score) for h in hyps]
        )


class CustomServicer(custom_pb2_grpc.CustomServiceServicer):  # type: ignore[misc,unused-ignore]
    def __init__(self, *, loaded: LoadedModels) -> None:
        self._loaded = loaded

    @unary_errors
    async def Custom(
        self, request: custom_pb2.CustomRequest, context: Context
    ) -> custom_pb2.CustomResponse:
        with self._loaded.call(request.model_key, base.CUSTOM) as model:
            data = await model.custom(
                request.method_name, request.request, _extra(request.extra_inputs)
            )
        return custom_pb2.CustomResponse(response=data)
