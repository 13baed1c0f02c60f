"""Data calls: build the Sax request, route it to a replica, unpack the reply.

The model key sent to model servers is the model ID. ``options=None`` means defaults.
"""

from __future__ import annotations

import operator
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any

from google.protobuf.message import Message
from saxml.protobuf import audio_pb2, custom_pb2, lm_pb2, multimodal_pb2, vision_pb2

from gateway.client._router import Method, Router
from gateway.client._types import DEFAULT_CALL_OPTIONS, CallOptions, StreamItem
from gateway.common.results import Box

_LM_GENERATE: Method = operator.attrgetter("lm.Generate")
_LM_GENERATE_STREAM: Method = operator.attrgetter("lm.GenerateStream")
_LM_SCORE: Method = operator.attrgetter("lm.Score")
_LM_EMBED: Method = operator.attrgetter("lm.Embed")
_LM_GRADIENT: Method = operator.attrgetter("lm.Gradient")
_VM_CLASSIFY: Method = operator.attrgetter("vm.Classify")
_VM_TEXT_TO_IMAGE: Method = operator.attrgetter("vm.TextToImage")
_VM_EMBED: Method = operator.attrgetter("vm.Embed")
_VM_DETECT: Method = operator.attrgetter("vm.Detect")
_VM_IMAGE_TO_TEXT: Method = operator.attrgetter("vm.ImageToText")
_VM_IMAGE_TO_IMAGE: Method = operator.attrgetter("vm.ImageToImage")
_VM_TEXT_AND_IMAGE_TO_IMAGE: Method = operator.attrgetter("vm.TextAndImageToImage")
_VM_VIDEO_TO_TEXT: Method = operator.attrgetter("vm.VideoToText")
_VM_VIDEO_TO_TOKEN: Method = operator.attrgetter("vm.VideoToToken")
_VM_TOKEN_TO_VIDEO: Method = operator.attrgetter("vm.TokenToVideo")
_AM_RECOGNIZE: Method = operator.attrgetter("am.Recognize")
_CM_CUSTOM: Method = operator.attrgetter("cm.Custom")
_MM_GENERATE: Method = operator.attrgetter("mm.Generate")
_MM_SCORE: Method = operator.attrgetter("mm.Score")
_MM_EMBED: Method = operator.attrgetter("mm.Embed")


class DataCalls:
    """The data-plane half of ``Client``: one method per Sax data RPC."""

    _router: Router

    async def _unary(
        self,
        model_id: str,
        method: Method,
        request_type: Callable[..., Message],
        options: CallOptions | None,
        **fields: Any,
    ) -> Any:
        # The one forwarding path of unary data calls: Sax's request (model key, extra inputs,
        # ``fields``), routed to a replica within the call's deadline.
        o = options or DEFAULT_CALL_OPTIONS
        request = request_type(model_key=model_id, extra_inputs=o.extra_inputs_proto(), **fields)
        return await self._router.unary(model_id, method, request, o.call_deadline())

    async def lm_generate(
        self, model_id: str, text: str, options: CallOptions | None = None
    ) -> list[tuple[str, float]]:
        """Samples completions of ``text``: ``[(text, score), ...]``."""
        response = await self._unary(
            model_id, _LM_GENERATE, lm_pb2.GenerateRequest, options, text=text
        )
        return [(t.text, t.score) for t in response.texts]

    async def lm_generate_stream(
        self, model_id: str, text: str, options: CallOptions | None = None
    ) -> AsyncGenerator[list[StreamItem], None]:
        """Streams samples of ``text``: one list of items (one per sample) per Sax response.

        Closing the iterator (``aclose()``, or cancelling the task iterating it) cancels the
        RPC, so the model server stops generating."""
        o = options or DEFAULT_CALL_OPTIONS
        request = lm_pb2.GenerateRequest(
            model_key=model_id, text=text, extra_inputs=o.extra_inputs_proto()
        )
        responses = self._router.stream(model_id, _LM_GENERATE_STREAM, request, o.call_deadline())
        try:
            async for response in responses:
                yield [StreamItem(i.text, i.prefix_len, list(i.scores)) for i in response.items]
        finally:
            await responses.aclose()

    async def lm_score(
        self,
        model_id: str,
        prefix: str,
        suffixes: Sequence[str],
        options: CallOptions | None = None,
    ) -> list[float]:
        """Log-probabilities of each suffix after ``prefix``."""
        response = await self._unary(
            model_id, _LM_SCORE, lm_pb2.ScoreRequest, options, prefix=prefix, suffix=suffixes
        )
        return list(response.logp)

    async def lm_embed(
        self, model_id: str, text: str, options: CallOptions | None = None
    ) -> list[float]:
        """The embedding of ``text``."""
        response = await self._unary(model_id, _LM_EMBED, lm_pb2.EmbedRequest, options, text=text)
        return list(response.embedding)

    async def lm_gradient(
        self, model_id: str, prefix: str, suffix: str, options: CallOptions | None = None
    ) -> tuple[list[float], dict[str, list[float]]]:
        """Scores and named gradients of ``suffix`` after ``prefix``."""
        response = await self._unary(
            model_id, _LM_GRADIENT, lm_pb2.GradientRequest, options, prefix=prefix, suffix=suffix
        )
        gradients = {k: list(v.values) for k, v in response.gradients.items()}
        return list(response.score), gradients

    async def vm_classify(
        self, model_id: str, image: bytes, options: CallOptions | None = None
    ) -> list[tuple[str, float]]:
        """Labels of ``image``: ``[(label, score), ...]``."""
        response = await self._unary(
            model_id, _VM_CLASSIFY, vision_pb2.ClassifyRequest, options, image_bytes=image
        )
        return [(t.text, t.score) for t in response.texts]

    async def vm_text_to_image(
        self, model_id: str, text: str, options: CallOptions | None = None
    ) -> list[tuple[bytes, float]]:
        """Images generated from ``text``: ``[(image, score), ...]``."""
        response = await self._unary(
            model_id, _VM_TEXT_TO_IMAGE, vision_pb2.TextToImageRequest, options, text=text
        )
        return [(i.image, i.score) for i in response.images]

    async def vm_embed(
        self, model_id: str, image: bytes, options: CallOptions | None = None
    ) -> list[float]:
        """The embedding of ``image``."""
        response = await self._unary(
            model_id, _VM_EMBED, vision_pb2.EmbedRequest, options, image_bytes=image
        )
        return list(response.embedding)

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
        response = await self._unary(
            model_id,
            _VM_DETECT,
            vision_pb2.DetectRequest,
            options,
            image_bytes=image,
            text=text,
            boxes_of_interest=[
                vision_pb2.BoundingBox(cx=b[0], cy=b[1], w=b[2], h=b[3]) for b in boxes
            ],
        )
        return [Box.from_proto(b) for b in response.bounding_boxes]

    async def vm_image_to_text(
        self, model_id: str, image: bytes, text: str = "", options: CallOptions | None = None
    ) -> list[tuple[str, float]]:
        """Captions of ``image`` (continuing ``text``): ``[(text, score), ...]``."""
        response = await self._unary(
            model_id,
            _VM_IMAGE_TO_TEXT,
            vision_pb2.ImageToTextRequest,
            options,
            image_bytes=image,
            text=text,
        )
        return [(t.text, t.score) for t in response.texts]

    async def vm_image_to_image(
        self, model_id: str, image: bytes, options: CallOptions | None = None
    ) -> list[tuple[bytes, float]]:
        """Images made from ``image``: ``[(image, score), ...]``."""
        response = await self._unary(
            model_id, _VM_IMAGE_TO_IMAGE, vision_pb2.ImageToImageRequest, options, image_bytes=image
        )
        return [(i.image, i.score) for i in response.images]

    async def vm_text_and_image_to_image(
        self, model_id: str, text: str, image: bytes, options: CallOptions | None = None
    ) -> list[tuple[bytes, float]]:
        """Images made from ``text`` and a conditioning ``image``: ``[(image, score), ...]``."""
        request_type = vision_pb2.TextAndImageToImageRequest
        response = await self._unary(
            model_id,
            _VM_TEXT_AND_IMAGE_TO_IMAGE,
            request_type,
            options,
            text=text,
            image_bytes=image,
        )
        return [(i.image, i.score) for i in response.images]

    async def vm_video_to_text(
        self,
        model_id: str,
        frames: Sequence[bytes],
        text: str = "",
        options: CallOptions | None = None,
    ) -> list[tuple[str, float]]:
        """Captions of a video given as encoded ``frames``: ``[(text, score), ...]``."""
        request_type = vision_pb2.VideoToTextRequest
        response = await self._unary(
            model_id, _VM_VIDEO_TO_TEXT, request_type, options, image_frames=frames, text=text
        )
        return [(t.text, t.score) for t in response.texts]

    async def vm_video_to_token(
        self, model_id: str, frames: Sequence[bytes], options: CallOptions | None = None
    ) -> list[float]:
        """The tokens of a video given as encoded ``frames``."""
        request_type = vision_pb2.VideoToTokenRequest
        response = await self._unary(
            model_id, _VM_VIDEO_TO_TOKEN, request_type, options, image_frames=frames
        )
        return list(response.tokens)

    async def vm_token_to_video(
        self, model_id: str, tokens: Sequence[float], options: CallOptions | None = None
    ) -> list[bytes]:
        """The encoded frames of the video ``tokens`` describe."""
        request_type = vision_pb2.TokenToVideoRequest
        response = await self._unary(
            model_id, _VM_TOKEN_TO_VIDEO, request_type, options, tokens=tokens
        )
        return list(response.image_frames)

    async def am_recognize(
        self, model_id: str, audio: bytes, options: CallOptions | None = None
    ) -> list[tuple[str, float]]:
        """Transcriptions of ``audio``: ``[(text, score), ...]``."""
        response = await self._unary(
            model_id, _AM_RECOGNIZE, audio_pb2.AsrRequest, options, audio_bytes=audio
        )
        return [(h.text, h.score) for h in response.hyps]

    async def custom(
        self, model_id: str, request: bytes, method_name: str, options: CallOptions | None = None
    ) -> bytes:
        """Calls a custom model method with an opaque request; returns its opaque response."""
        response = await self._unary(
            model_id,
            _CM_CUSTOM,
            custom_pb2.CustomRequest,
            options,
            request=request,
            method_name=method_name,
        )
        return bytes(response.response)

    async def mm_generate(
        self,
        model_id: str,
        request: multimodal_pb2.GenerateRequest,
        options: CallOptions | None = None,
    ) -> multimodal_pb2.GenerateResponse:
        """Samples continuations of ``request.items`` (text, images, audio, video)."""
        rpc_type = multimodal_pb2.GenerateRpcRequest
        done = await self._unary(model_id, _MM_GENERATE, rpc_type, options, request=request)
        response: multimodal_pb2.GenerateResponse = done.response
        return response

    async def mm_score(
        self,
        model_id: str,
        request: multimodal_pb2.ScoreRequest,
        options: CallOptions | None = None,
    ) -> multimodal_pb2.ScoreResponse:
        """Scores ``request.suffix_items`` after ``request.prefix_items``."""
        rpc_type = multimodal_pb2.ScoreRpcRequest
        done = await self._unary(model_id, _MM_SCORE, rpc_type, options, request=request)
        response: multimodal_pb2.ScoreResponse = done.response
        return response

    async def mm_embed(
        self,
        model_id: str,
        request: multimodal_pb2.EmbedRequest,
        options: CallOptions | None = None,
    ) -> multimodal_pb2.EmbedResponse:
        """The embedding of ``request.items``."""
        rpc_type = multimodal_pb2.EmbedRpcRequest
        done = await self._unary(model_id, _MM_EMBED, rpc_type, options, request=request)
        response: multimodal_pb2.EmbedResponse = done.response
        return response
