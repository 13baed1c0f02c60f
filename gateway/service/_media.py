"""The gateway's image-making, video and custom methods: Sax's vision methods beyond the
first five (vm.image_to_image, vm.text_and_image_to_image, vm.video_to_text,
vm.video_to_token, vm.token_to_video) and its custom service, whose methods each model names
itself.

A mixin of `SaxGatewayServicer`, which supplies the client, the settings and the call options;
the reply builders here serve its own vision methods too."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from saxgateway.v1 import gateway_pb2 as pb

from gateway.client import CallOptions, Client
from gateway.common import limits as lim
from gateway.common.names import ACL_METHODS
from gateway.common.results import Box
from gateway.common.rpc import Context
from gateway.config import GatewaySettings
from gateway.service import _fields as f


def decoded_texts(pairs: Sequence[tuple[str, float]]) -> list[pb.DecodedText]:
    """Sax's ``[(text, score), ...]`` as the API's DecodedText list."""
    return [pb.DecodedText(text=text, score=score) for text, score in pairs]


def generated_images(pairs: Sequence[tuple[bytes, float]]) -> list[pb.GeneratedImage]:
    """Sax's ``[(image, score), ...]`` as the API's GeneratedImage list."""
    return [pb.GeneratedImage(image=image, score=score) for image, score in pairs]


def detected_boxes(boxes: Sequence[Box]) -> list[pb.BoundingBox]:
    """Sax's detected objects as the API's BoundingBox list, each with its mask if it has
    one (a segmenter's)."""
    out = []
    for b in boxes:
        box = pb.BoundingBox(cx=b.cx, cy=b.cy, w=b.w, h=b.h, text=b.text, score=b.score)
        if b.mask_values:
            box.mask.mask_values = b.mask_values
            box.mask.mask_height, box.mask.mask_width = b.mask_height, b.mask_width
        out.append(box)
    return out


def regions(values: Sequence[pb.Region], field: str) -> list[tuple[float, float, float, float]]:
    """A detect call's boxes of interest as Sax takes them, ``(cx, cy, w, h)`` each: at most
    `limits.MAX_ITEMS`, of finite numbers; INVALID_ARGUMENT naming the field (or the box)
    otherwise."""
    if len(values) > lim.MAX_ITEMS:
        raise f.invalid(field, f"{len(values)} boxes is over the limit of {lim.MAX_ITEMS}")
    out = []
    for i, r in enumerate(values):
        region = (r.cx, r.cy, r.w, r.h)
        if not all(math.isfinite(v) for v in region):
            raise f.invalid(f"{field}[{i}]", f"cx, cy, w and h must be finite, got {region!r}")
        out.append(region)
    return out


def frames(values: Sequence[bytes], field: str, payload_limit: int) -> list[bytes]:
    """A video's encoded frames: at least one, at most `limits.MAX_ITEMS`, each one as an
    image is (not empty, at most ``payload_limit`` bytes); INVALID_ARGUMENT naming the field
    (or the frame) otherwise."""
    if not values:
        raise f.invalid(field, "required: at least one frame, base64-encoded bytes in JSON")
    if len(values) > lim.MAX_ITEMS:
        raise f.invalid(field, f"{len(values)} frames is over the limit of {lim.MAX_ITEMS}")
    return [f.payload(v, f"{field}[{i}]", payload_limit) for i, v in enumerate(values)]


def tokens(values: Sequence[float], field: str) -> list[float]:
    """A video's tokens: at least one, at most `limits.MAX_VIDEO_TOKENS`, each a finite
    number (JSON's "NaN" and "Infinity" are no token); INVALID_ARGUMENT naming the field (or
    the token) otherwise."""
    if not values:
        raise f.invalid(field, "required: at least one token")
    if len(values) > lim.MAX_VIDEO_TOKENS:
        limit = lim.MAX_VIDEO_TOKENS
        raise f.invalid(field, f"{len(values)} tokens is over the limit of {limit}")
    out = list(values)
    if not all(map(math.isfinite, out)):  # one pass in C; then find the first, to name it
        i, value = next((i, v) for i, v in enumerate(out) if not math.isfinite(v))
        raise f.invalid(f"{field}[{i}]", f"must be a finite number, got {value!r}")
    return out


class MediaMethods:
    _client: Client
    _settings: GatewaySettings

    def _target(self, request: Any, context: Context) -> tuple[str, CallOptions]:
        raise NotImplementedError  # SaxGatewayServicer's

    def _payload(self, value: bytes, field: str) -> bytes:
        return f.payload(value, field, self._settings.max_payload_bytes)

    def _frames(self, values: Sequence[bytes]) -> list[bytes]:
        return frames(values, "image_frames", self._settings.max_payload_bytes)

    async def ImageToImage(
        self, request: pb.ImageToImageRequest, context: Context
    ) -> pb.ImageToImageResponse:
        model, options = self._target(request, context)
        image = self._payload(request.image_bytes, "image_bytes")
        images = await self._client.vm_image_to_image(model, image, options)
        return pb.ImageToImageResponse(images=generated_images(images))

    async def TextAndImageToImage(
        self, request: pb.TextAndImageToImageRequest, context: Context
    ) -> pb.TextAndImageToImageResponse:
        model, options = self._target(request, context)
        f.required(request.text, "text")
        image = self._payload(request.image_bytes, "image_bytes")
        images = await self._client.vm_text_and_image_to_image(model, request.text, image, options)
        return pb.TextAndImageToImageResponse(images=generated_images(images))

    async def VideoToText(
        self, request: pb.VideoToTextRequest, context: Context
    ) -> pb.VideoToTextResponse:
        model, options = self._target(request, context)
        video = self._frames(request.image_frames)
        f.bounded(request.text, "text")
        texts = await self._client.vm_video_to_text(model, video, request.text, options)
        return pb.VideoToTextResponse(texts=decoded_texts(texts))

    async def VideoToToken(
        self, request: pb.VideoToTokenRequest, context: Context
    ) -> pb.VideoToTokenResponse:
        model, options = self._target(request, context)
        video = self._frames(request.image_frames)
        made = await self._client.vm_video_to_token(model, video, options)
        return pb.VideoToTokenResponse(tokens=made)

    async def TokenToVideo(
        self, request: pb.TokenToVideoRequest, context: Context
    ) -> pb.TokenToVideoResponse:
        model, options = self._target(request, context)
        wanted = tokens(request.tokens, "tokens")
        video = await self._client.vm_token_to_video(model, wanted, options)
        return pb.TokenToVideoResponse(image_frames=video)

    async def Custom(self, request: pb.CustomRequest, context: Context) -> pb.CustomResponse:
        model, options = self._target(request, context)
        method = request.method_name
        f.required(method, "method_name", lim.MAX_METHOD_NAME_CHARS)
        if not method.isprintable():
            # The model server's refusal repeats the name as it is: a line break or a
            # terminal's escape sequence would reach the caller's logs and screen.
            raise f.invalid(
                "method_name", f"{lim.quote(method)} has a control or other unprintable character"
            )
        if method in ACL_METHODS:
            # Upstream's servers serve it through its own service only: through the custom
            # one they answer NOT_FOUND, which the client takes for a replica that lacks the
            # model, and retries to the deadline.
            raise f.invalid(
                "method_name",
                f"{method} is a method of Sax's {method.split('.')[0]} service, not a custom"
                " method: call it through its own route",
            )
        # An input only the model reads: empty may mean something to it, so only bounded.
        data = f.payload(
            request.request, "request", self._settings.max_payload_bytes, required=False
        )
        done = await self._client.custom(model, data, method, options)
        return pb.CustomResponse(response=done)
