"""Data calls: build the Sax request, route it to a replica, unpack the reply.

The model key sent to model servers is the model ID. ``options=None`` means defaults.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Protocol, TypeVar

from saxml.protobuf import audio_pb2, common_pb2, custom_pb2, lm_pb2, vision_pb2
from saxml.protobuf import multimodal_pb2 as mm

from gateway.client._router import Router, Unary, named
from gateway.client._types import DEFAULT_CALL_OPTIONS, CallOptions, StreamItem
from gateway.common.errors import InternalError
from gateway.common.results import Box

# The data RPCs, typed by the stubs and named for observers.
_LM_GENERATE = named("lm.Generate", lambda b: b.lm.Generate)
_LM_GENERATE_STREAM = named("lm.GenerateStream", lambda b: b.lm.GenerateStream)
_LM_SCORE = named("lm.Score", lambda b: b.lm.Score)
_LM_EMBED = named("lm.Embed", lambda b: b.lm.Embed)
_LM_GRADIENT = named("lm.Gradient", lambda b: b.lm.Gradient)
_VM_CLASSIFY = named("vm.Classify", lambda b: b.vm.Classify)
_VM_TEXT_TO_IMAGE = named("vm.TextToImage", lambda b: b.vm.TextToImage)
_VM_EMBED = named("vm.Embed", lambda b: b.vm.Embed)
_VM_DETECT = named("vm.Detect", lambda b: b.vm.Detect)
_VM_IMAGE_TO_TEXT = named("vm.ImageToText", lambda b: b.vm.ImageToText)
_VM_IMAGE_TO_IMAGE = named("vm.ImageToImage", lambda b: b.vm.ImageToImage)
_VM_TEXT_AND_IMAGE_TO_IMAGE = named("vm.TextAndImageToImage", lambda b: b.vm.TextAndImageToImage)
_VM_VIDEO_TO_TEXT = named("vm.VideoToText", lambda b: b.vm.VideoToText)
_VM_VIDEO_TO_TOKEN = named("vm.VideoToToken", lambda b: b.vm.VideoToToken)
_VM_TOKEN_TO_VIDEO = named("vm.TokenToVideo", lambda b: b.vm.TokenToVideo)
_AM_RECOGNIZE = named("am.Recognize", lambda b: b.am.Recognize)
_CM_CUSTOM = named("cm.Custom", lambda b: b.cm.Custom)
_MM_GENERATE = named("mm.Generate", lambda b: b.mm.Generate)
_MM_SCORE = named("mm.Score", lambda b: b.mm.Score)
_MM_EMBED = named("mm.Embed", lambda b: b.mm.Embed)


class _DataRequest(Protocol):
    """What every Sax data request has: the model key and the extra inputs."""

    model_key: str

    @property
    def extra_inputs(self) -> common_pb2.ExtraInputs: ...


_Req = TypeVar("_Req", bound=_DataRequest)
_Resp = TypeVar("_Resp")


class DataCalls:
    """The data-plane half of ``Client``: one method per Sax data RPC."""

    _router: Router

    async def _unary(
        self, model_id: str, method: Unary[_Req, _Resp], request: _Req, options: CallOptions | None
    ) -> _Resp:
        # The one forwarding path of unary data calls: Sax's request, addressed to the model
        # with the call's extra inputs, routed to a replica within the call's deadline.
        o = options or DEFAULT_CALL_OPTIONS
        request.model_key = model_id
        extra = o.extra_inputs_proto()
        if extra is not None:
            request.extra_inputs.CopyFrom(extra)
        return await self._router.unary(model_id, method, request, o.call_deadline())

    async def lm_generate(
        self, model_id: str, text: str, options: CallOptions | None = None
    ) -> list[tuple[str, float]]:
        """Samples completions of ``text``: ``[(text, score), ...]``."""
        request = lm_pb2.GenerateRequest(text=text)
        response = await self._unary(model_id, _LM_GENERATE, request, options)
        return [(t.text, t.score) for t in response.texts]

    def lm_generate_stream(
        self, model_id: str, text: str, options: CallOptions | None = None
    ) -> AsyncGenerator[list[StreamItem], None]:
        """Streams samples of ``text``: one list of items (one per sample) per Sax response.

        Closing the iterator (``aclose()``, or cancelling the task iterating it) cancels the
        RPC, so the model server stops generating."""
        o = options or DEFAULT_CALL_OPTIONS
        request = lm_pb2.GenerateRequest(
            model_key=model_id, text=text, extra_inputs=o.extra_inputs_proto()
        )
        deadline = o.call_deadline()
        return self._router.stream(model_id, _LM_GENERATE_STREAM, request, deadline, _stream_items)

    async def lm_score(
        self,
        model_id: str,
        prefix: str,
        suffixes: Sequence[str],
        options: CallOptions | None = None,
    ) -> list[float]:
        """Log-probabilities of each suffix after ``prefix``."""
        request = lm_pb2.ScoreRequest(prefix=prefix, suffix=suffixes)
        logp = list((await self._unary(model_id, _LM_SCORE, request, options)).logp)
        if len(logp) != len(suffixes):
            # Passed on, a caller pairing them with its suffixes paired them wrong, or lost
            # some, from a 200.
            raise InternalError(
                f"{model_id} answered {len(logp)} log-probabilities for {len(suffixes)} suffix(es)"
            )
        return logp

    async def lm_embed(
        self, model_id: str, text: str, options: CallOptions | None = None
    ) -> list[float]:
        """The embedding of ``text``."""
        request = lm_pb2.EmbedRequest(text=text)
        response = await self._unary(model_id, _LM_EMBED, request, options)
        return list(response.embedding)

    async def lm_gradient(
        self, model_id: str, prefix: str, suffix: str, options: CallOptions | None = None
    ) -> tuple[list[float], dict[str, list[float]]]:
        """Scores and named gradients of ``suffix`` after ``prefix``."""
        request = lm_pb2.GradientRequest(prefix=prefix, suffix=suffix)
        response = await self._unary(model_id, _LM_GRADIENT, request, options)
        gradients = {k: list(v.values) for k, v in response.gradients.items()}
        return list(response.score), gradients

    async def vm_classify(
        self, model_id: str, image: bytes, options: CallOptions | None = None
    ) -> list[tuple[str, float]]:
        """Labels of ``image``: ``[(label, score), ...]``."""
        request = vision_pb2.ClassifyRequest(image_bytes=image)
        response = await self._unary(model_id, _VM_CLASSIFY, request, options)
        return [(t.text, t.score) for t in response.texts]

    async def vm_text_to_image(
        self, model_id: str, text: str, options: CallOptions | None = None
    ) -> list[tuple[bytes, float]]:
        """Images generated from ``text``: ``[(image, score), ...]``."""
        request = vision_pb2.TextToImageRequest(text=text)
        response = await self._unary(model_id, _VM_TEXT_TO_IMAGE, request, options)
        return [(i.image, i.score) for i in response.images]

    async def vm_embed(
        self, model_id: str, image: bytes, options: CallOptions | None = None
    ) -> list[float]:
        """The embedding of ``image``."""
        request = vision_pb2.EmbedRequest(image_bytes=image)
        return list((await self._unary(model_id, _VM_EMBED, request, options)).embedding)

    async def vm_detect(
        self,
        model_id: str,
        image: bytes,
        text: Sequence[str] = (),
        options: CallOptions | None = None,
        *,
        boxes: Sequence[tuple[float, float, float, float]] = (),
    ) -> list[Box]:
        """Objects in ``image`` (optionally only those described by ``text``, or in ``boxes``
        of interest given as ``(cx, cy, w, h)``)."""
        of_interest = [vision_pb2.BoundingBox(cx=cx, cy=cy, w=w, h=h) for cx, cy, w, h in boxes]
        request = vision_pb2.DetectRequest(
            image_bytes=image, text=text, boxes_of_interest=of_interest
        )
        response = await self._unary(model_id, _VM_DETECT, request, options)
        return [Box.from_proto(b) for b in response.bounding_boxes]

    async def vm_image_to_text(
        self, model_id: str, image: bytes, text: str = "", options: CallOptions | None = None
    ) -> list[tuple[str, float]]:
        """Captions of ``image`` (continuing ``text``): ``[(text, score), ...]``."""
        request = vision_pb2.ImageToTextRequest(image_bytes=image, text=text)
        response = await self._unary(model_id, _VM_IMAGE_TO_TEXT, request, options)
        return [(t.text, t.score) for t in response.texts]

    async def vm_image_to_image(
        self, model_id: str, image: bytes, options: CallOptions | None = None
    ) -> list[tuple[bytes, float]]:
        """Images made from ``image``: ``[(image, score), ...]``."""
        request = vision_pb2.ImageToImageRequest(image_bytes=image)
        response = await self._unary(model_id, _VM_IMAGE_TO_IMAGE, request, options)
        return [(i.image, i.score) for i in response.images]

    async def vm_text_and_image_to_image(
        self, model_id: str, text: str, image: bytes, options: CallOptions | None = None
    ) -> list[tuple[bytes, float]]:
        """Images made from ``text`` and a conditioning ``image``: ``[(image, score), ...]``."""
        request = vision_pb2.TextAndImageToImageRequest(text=text, image_bytes=image)
        response = await self._unary(model_id, _VM_TEXT_AND_IMAGE_TO_IMAGE, request, options)
        return [(i.image, i.score) for i in response.images]

    async def vm_video_to_text(
        self,
        model_id: str,
        frames: Sequence[bytes],
        text: str = "",
        options: CallOptions | None = None,
    ) -> list[tuple[str, float]]:
        """Captions of a video given as encoded ``frames``: ``[(text, score), ...]``."""
        request = vision_pb2.VideoToTextRequest(image_frames=frames, text=text)
        response = await self._unary(model_id, _VM_VIDEO_TO_TEXT, request, options)
        return [(t.text, t.score) for t in response.texts]

    async def vm_video_to_token(
        self, model_id: str, frames: Sequence[bytes], options: CallOptions | None = None
    ) -> list[float]:
        """The tokens of a video given as encoded ``frames``."""
        request = vision_pb2.VideoToTokenRequest(image_frames=frames)
        response = await self._unary(model_id, _VM_VIDEO_TO_TOKEN, request, options)
        return list(response.tokens)

    async def vm_token_to_video(
        self, model_id: str, tokens: Sequence[float], options: CallOptions | None = None
    ) -> list[bytes]:
        """The encoded frames of the video ``tokens`` describe."""
        request = vision_pb2.TokenToVideoRequest(tokens=tokens)
        response = await self._unary(model_id, _VM_TOKEN_TO_VIDEO, request, options)
        return list(response.image_frames)

    async def am_recognize(
        self, model_id: str, audio: bytes, options: CallOptions | None = None
    ) -> list[tuple[str, float]]:
        """Transcriptions of ``audio``: ``[(text, score), ...]``."""
        request = audio_pb2.AsrRequest(audio_bytes=audio)
        response = await self._unary(model_id, _AM_RECOGNIZE, request, options)
        return [(h.text, h.score) for h in response.hyps]

    async def custom(
        self, model_id: str, request: bytes, method_name: str, options: CallOptions | None = None
    ) -> bytes:
        """Calls a custom model method with an opaque request; returns its opaque response."""
        call = custom_pb2.CustomRequest(request=request, method_name=method_name)
        return bytes((await self._unary(model_id, _CM_CUSTOM, call, options)).response)

    async def mm_generate(
        self, model_id: str, request: mm.GenerateRequest, options: CallOptions | None = None
    ) -> mm.GenerateResponse:
        """Samples continuations of ``request.items`` (text, images, audio, video)."""
        rpc = mm.GenerateRpcRequest(request=request)
        return (await self._unary(model_id, _MM_GENERATE, rpc, options)).response

    async def mm_score(
        self, model_id: str, request: mm.ScoreRequest, options: CallOptions | None = None
    ) -> mm.ScoreResponse:
        """Scores ``request.suffix_items`` after ``request.prefix_items``."""
        rpc = mm.ScoreRpcRequest(request=request)
        return (await self._unary(model_id, _MM_SCORE, rpc, options)).response

    async def mm_embed(
        self, model_id: str, request: mm.EmbedRequest, options: CallOptions | None = None
    ) -> mm.EmbedResponse:
        """The embedding of ``request.items``."""
        rpc = mm.EmbedRpcRequest(request=request)
        return (await self._unary(model_id, _MM_EMBED, rpc, options)).response


def _stream_items(response: lm_pb2.GenerateStreamResponse) -> list[StreamItem]:
    return [StreamItem(i.text, i.prefix_len, list(i.scores)) for i in response.items]
