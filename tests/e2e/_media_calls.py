"""One call of each SaxGateway method on a vision, audio, multimodal or custom model: its
request, the reply the stand-in model makes to it (computed by the stand-in's own code), the
Sax method whose ACL guards it, and a request the gateway refuses with the field it names.

The grpc-web tests (`test_routes_vision_audio`, `test_routes_multimodal`) and the ACL test of
the secure stack (`security/test_method_acls`) go through this one table, so that every
method of these families is tried each way."""

from __future__ import annotations

import asyncio
import base64
import math
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from saxgateway.v1 import gateway_pb2 as pb

from gateway.cell.models.base import ExtraInputs, Hypothesis, Item
from gateway.cell.models.media import AUDIO_PATH, CUSTOM_PATH, VISION_PATH, TestAudio, TestVision
from gateway.cell.models.multimodal import MULTIMODAL_PATH, TestMultimodal
from tests.e2e._published import IMAGE, wav
from tests.e2e.test_grpc_web import _call as grpc_web_call

_NONE = ExtraInputs()
_VISION, _AUDIO, _MM = TestVision(), TestAudio(), TestMultimodal()
_FRAMES = [IMAGE, IMAGE[::-1]]
_CLIP = wav(1.0)
_ITEMS: list[Item] = [("text", "what is this?"), ("image_bytes", IMAGE)]
_REQUIRED = "required: base64-encoded bytes in JSON"
_T = TypeVar("_T")


def _run(made: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run(made)


def _texts(hypotheses: list[Hypothesis]) -> list[pb.DecodedText]:
    return [pb.DecodedText(text=h.text, score=h.score) for h in hypotheses]


def _images(pairs: list[tuple[bytes, float]]) -> list[pb.GeneratedImage]:
    return [pb.GeneratedImage(image=image, score=score) for image, score in pairs]


def _items(items: list[Item]) -> list[pb.MultimodalItem]:
    return [pb.MultimodalItem(**{kind: value}) for kind, value in items]  # type: ignore[arg-type]


def _tokens() -> list[float]:
    return _run(_VISION.video_to_token(_FRAMES, _NONE))


@dataclass(frozen=True)
class MediaCall:
    """One call, its reply and a refusal, for a model of ``model_path``."""

    rpc: str
    model_path: str
    #: The Sax method whose ACL guards the call (None: a custom method, which the model
    #: names and no ACL set through the gateway names: docs/security.md).
    sax_method: str | None
    #: The request, for a model ID (its inputs: ``request("")`` is the JSON body of its
    #: ``/v1/{model}:verb`` route).
    request: Callable[[str], Message]
    #: The reply the stand-in model makes to ``request``.
    reply: Callable[[], Message]
    #: A request the gateway refuses (INVALID_ARGUMENT), and the field and description of
    #: its google.rpc.BadRequest.
    refused: Callable[[str], Message]
    field: str
    description: str

    @property
    def verb(self) -> str:
        """The custom verb of its resource route: ``POST /v1/{model}:verb``."""
        return self.rpc[0].lower() + self.rpc[1:]

    def body(self) -> dict[str, object]:
        """Its request as the JSON body of its resource route (bytes in base64)."""
        return json_format.MessageToDict(self.request(""), preserving_proto_field_name=True)

    def reply_message(self, data: bytes) -> Message:
        """``data``, a serialized reply of this call's method."""
        return type(self.reply()).FromString(data)

    def reply_from_json(self, body: object) -> Message:
        """A JSON reply of this call's method, as its message."""
        assert isinstance(body, dict), body
        return json_format.ParseDict(body, type(self.reply())())


MEDIA_CALLS = [
    MediaCall(
        "Classify", VISION_PATH, "vm.classify",
        lambda m: pb.ClassifyRequest(model=m, image_bytes=IMAGE),
        lambda: pb.ClassifyResponse(texts=_texts(_run(_VISION.classify(IMAGE, _NONE)))),
        lambda m: pb.ClassifyRequest(model=m), "image_bytes", _REQUIRED,
    ),
    MediaCall(
        "TextToImage", VISION_PATH, "vm.generate",
        lambda m: pb.TextToImageRequest(model=m, text="a red boat"),
        lambda: pb.TextToImageResponse(
            images=_images(_run(_VISION.text_to_image("a red boat", _NONE)))
        ),
        lambda m: pb.TextToImageRequest(model=m), "text", "required",
    ),
    MediaCall(
        "EmbedImage", VISION_PATH, "vm.embed",
        lambda m: pb.EmbedImageRequest(model=m, image_bytes=IMAGE),
        lambda: pb.EmbedImageResponse(embedding=_run(_VISION.embed_image(IMAGE, _NONE))),
        lambda m: pb.EmbedImageRequest(model=m), "image_bytes", _REQUIRED,
    ),
    MediaCall(
        "Detect", VISION_PATH, "vm.detect",
        lambda m: pb.DetectRequest(model=m, image_bytes=IMAGE, text=["cat", "boat"]),
        lambda: pb.DetectResponse(
            boxes=[
                pb.BoundingBox(cx=b.cx, cy=b.cy, w=b.w, h=b.h, text=b.text, score=b.score)
                for b in _run(_VISION.detect(IMAGE, ["cat", "boat"], [], _NONE))
            ]
        ),
        lambda m: pb.DetectRequest(
            model=m, image_bytes=IMAGE, boxes_of_interest=[pb.Region(w=math.inf)]
        ),
        "boxes_of_interest[0]", "cx, cy, w and h must be finite, got (0.0, 0.0, inf, 0.0)",
    ),
    MediaCall(
        "ImageToText", VISION_PATH, "vm.image_to_text",
        lambda m: pb.ImageToTextRequest(model=m, image_bytes=IMAGE, text="Look:"),
        lambda: pb.ImageToTextResponse(
            texts=_texts(_run(_VISION.image_to_text(IMAGE, "Look:", _NONE)))
        ),
        lambda m: pb.ImageToTextRequest(model=m, text="Look:"), "image_bytes", _REQUIRED,
    ),
    MediaCall(
        "ImageToImage", VISION_PATH, "vm.image_to_image",
        lambda m: pb.ImageToImageRequest(model=m, image_bytes=IMAGE),
        lambda: pb.ImageToImageResponse(images=_images(_run(_VISION.image_to_image(IMAGE, _NONE)))),
        lambda m: pb.ImageToImageRequest(model=m), "image_bytes", _REQUIRED,
    ),
    MediaCall(
        "TextAndImageToImage", VISION_PATH, "vm.text_and_image_to_image",
        lambda m: pb.TextAndImageToImageRequest(model=m, text="make it red", image_bytes=IMAGE),
        lambda: pb.TextAndImageToImageResponse(
            images=_images(_run(_VISION.text_and_image_to_image("make it red", IMAGE, _NONE)))
        ),
        lambda m: pb.TextAndImageToImageRequest(model=m, image_bytes=IMAGE), "text", "required",
    ),
    MediaCall(
        "VideoToText", VISION_PATH, "vm.video_to_text",
        lambda m: pb.VideoToTextRequest(model=m, image_frames=_FRAMES, text="Look:"),
        lambda: pb.VideoToTextResponse(
            texts=_texts(_run(_VISION.video_to_text(_FRAMES, "Look:", _NONE)))
        ),
        lambda m: pb.VideoToTextRequest(model=m, text="Look:"),
        "image_frames", "required: at least one frame, base64-encoded bytes in JSON",
    ),
    MediaCall(
        "VideoToToken", VISION_PATH, "vm.video_to_token",
        lambda m: pb.VideoToTokenRequest(model=m, image_frames=_FRAMES),
        lambda: pb.VideoToTokenResponse(tokens=_tokens()),
        lambda m: pb.VideoToTokenRequest(model=m, image_frames=[IMAGE, b""]),
        "image_frames[1]", _REQUIRED,
    ),
    MediaCall(
        # The tokens VideoToToken gives, back to frames.
        "TokenToVideo", VISION_PATH, "vm.token_to_video",
        lambda m: pb.TokenToVideoRequest(model=m, tokens=_tokens()),
        lambda: pb.TokenToVideoResponse(
            image_frames=_run(_VISION.token_to_video(_tokens(), _NONE))
        ),
        lambda m: pb.TokenToVideoRequest(model=m, tokens=[0.5, math.nan]),
        "tokens[1]", "must be a finite number, got nan",
    ),
    MediaCall(
        "Recognize", AUDIO_PATH, "am.recognize",
        lambda m: pb.RecognizeRequest(model=m, audio_bytes=_CLIP),
        lambda: pb.RecognizeResponse(texts=_texts(_run(_AUDIO.recognize(_CLIP, _NONE)))),
        lambda m: pb.RecognizeRequest(model=m), "audio_bytes", _REQUIRED,
    ),
    MediaCall(
        "MultimodalGenerate", MULTIMODAL_PATH, "mm.generate",
        lambda m: pb.MultimodalGenerateRequest(model=m, items=_items(_ITEMS)),
        lambda: pb.MultimodalGenerateResponse(
            samples=[
                pb.MultimodalSample(items=_items(items), score=score)
                for items, score in _run(_MM.mm_generate(_ITEMS, _NONE))
            ]
        ),
        lambda m: pb.MultimodalGenerateRequest(model=m), "items", "required: at least one item",
    ),
    MediaCall(
        "MultimodalScore", MULTIMODAL_PATH, "mm.score",
        lambda m: pb.MultimodalScoreRequest(
            model=m, prefix_items=_items(_ITEMS[:1]), suffix_items=_items(_ITEMS[1:])
        ),
        lambda: pb.MultimodalScoreResponse(
            scores=_run(_MM.mm_score(_ITEMS[:1], _ITEMS[1:], _NONE))
        ),
        lambda m: pb.MultimodalScoreRequest(model=m, prefix_items=_items(_ITEMS)),
        "suffix_items", "required: at least one item",
    ),
    MediaCall(
        "MultimodalEmbed", MULTIMODAL_PATH, "mm.embed",
        lambda m: pb.MultimodalEmbedRequest(model=m, items=_items(_ITEMS)),
        lambda: pb.MultimodalEmbedResponse(embedding=_run(_MM.mm_embed(_ITEMS, _NONE))),
        lambda m: pb.MultimodalEmbedRequest(model=m, items=[pb.MultimodalItem()]),
        "items[0]", "set one of text, image_bytes or video",
    ),
    MediaCall(
        "Custom", CUSTOM_PATH, None,
        lambda m: pb.CustomRequest(model=m, method_name="echo", request=b"\0\1 echo"),
        lambda: pb.CustomResponse(response=b"\0\1 echo"),
        lambda m: pb.CustomRequest(model=m, request=b"x"), "method_name", "required",
    ),
]  # fmt: skip


def calls_of(*model_paths: str) -> list[MediaCall]:
    """The calls on models of ``model_paths``."""
    return [call for call in MEDIA_CALLS if call.model_path in model_paths]


def check_over_grpc_web(http: httpx.Client, call: MediaCall, model: str, *, text: bool) -> None:
    """``call`` on ``model`` as a browser makes it (Envoy's grpc_web filter; grpc-web-text if
    ``text``): the stand-in's reply; then its refused request: no message, INVALID_ARGUMENT
    in the trailers with the message and the google.rpc details a gRPC client gets."""
    _, messages, trailers = grpc_web_call(http, call.rpc, call.request(model), text=text)
    assert trailers["grpc-status"] == "0", trailers
    assert [call.reply_message(m) for m in messages] == [call.reply()]
    response, messages, trailers = grpc_web_call(http, call.rpc, call.refused(model), text=text)
    message = f"{call.field}: {call.description}"
    assert (messages, trailers["grpc-status"], trailers["grpc-message"]) == ([], "3", message)
    status = status_pb2.Status.FromString(
        base64.b64decode(trailers["grpc-status-details-bin"] + "==")
    )
    bad, info = error_details_pb2.BadRequest(), error_details_pb2.RequestInfo()
    assert [status.details[0].Unpack(bad), status.details[1].Unpack(info)] == [True, True]
    violation = (call.field, call.description)
    assert [(v.field, v.description) for v in bad.field_violations] == [violation]
    assert (status.code, status.message, info.request_id) == (
        3,
        message,
        response.headers["x-request-id"],
    )
