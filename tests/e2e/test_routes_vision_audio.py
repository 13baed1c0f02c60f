"""Vision, audio and custom routes through the real Envoy, short paths and /v1/ twins.

The expected bodies are computed by the stand-in models' own code (`TestVision`,
`TestAudio`, `TestCustom`) on the same bytes, so they change only if the wire path changes
them.
"""

from __future__ import annotations

import asyncio
import base64
import math
import re
import struct
from collections.abc import Iterator, Mapping
from dataclasses import asdict

import grpc
import httpx
import pytest
from google.protobuf.message import Message
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway_client import BadRequestError, Client, PermissionDeniedError, SaxGatewayError

from gateway.cell.models.base import ExtraInputs, ServableModel
from gateway.cell.models.media import TOKENS_PER_FRAME, TestAudio, TestCustom, TestVision
from gateway.common.limits import MAX_VIDEO_TOKENS
from gateway.launch.stack import Stack
from tests.e2e._bodies import gateway_error
from tests.e2e._media_calls import MediaCall, calls_of, check_over_grpc_web
from tests.e2e._published import (
    BAD_REQUEST,
    IMAGE,
    TEST_AUDIO,
    TEST_CUSTOM,
    TEST_VISION,
    b64,
    published,
    request_info,
    wav,
)

VISION = "/sax/test/routes-vision"
AUDIO = "/sax/test/routes-audio"
CUSTOM = "/sax/test/routes-custom"
NONE = ExtraInputs()
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def vision(stack: Stack) -> Iterator[str]:
    with published(stack, VISION, TEST_VISION) as name:
        yield name


@pytest.fixture(scope="module")
def audio(stack: Stack) -> Iterator[str]:
    with published(stack, AUDIO, TEST_AUDIO) as name:
        yield name


@pytest.fixture(scope="module")
def custom(stack: Stack) -> Iterator[str]:
    with published(stack, CUSTOM, TEST_CUSTOM) as name:
        yield name


def _post(http: httpx.Client, path: str, model: str, body: Mapping[str, object]) -> object:
    named = body if path.startswith("/v1/") else {"model": model, **body}
    response = http.post(path, json=named)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


@pytest.mark.parametrize("path", ["/classify", "/v1/sax/test/routes-vision:classify"])
def test_classify(http: httpx.Client, vision: str, path: str) -> None:
    labels = asyncio.run(TestVision().classify(IMAGE, NONE))
    assert len(labels) == 3
    assert _post(http, path, vision, {"image_bytes": b64(IMAGE)}) == {
        "texts": [asdict(label) for label in labels]
    }


@pytest.mark.parametrize("path", ["/text_to_image", "/v1/sax/test/routes-vision:textToImage"])
def test_text_to_image(http: httpx.Client, vision: str, path: str) -> None:
    body = _post(http, path, vision, {"text": "a red boat"})
    [(png, score)] = asyncio.run(TestVision().text_to_image("a red boat", NONE))
    assert body == {"images": [{"image": b64(png), "score": score}]}
    assert isinstance(body, dict)
    image = base64.b64decode(body["images"][0]["image"])
    assert image.startswith(PNG_SIGNATURE)
    assert image[12:16] == b"IHDR"
    assert struct.unpack(">II", image[16:24]) == (8, 8)


@pytest.mark.parametrize("path", ["/embed_image", "/v1/sax/test/routes-vision:embedImage"])
def test_embed_image(http: httpx.Client, vision: str, path: str) -> None:
    embedding = asyncio.run(TestVision().embed_image(IMAGE, NONE))
    assert len(embedding) == 8
    assert _post(http, path, vision, {"image_bytes": b64(IMAGE)}) == {"embedding": embedding}


@pytest.mark.parametrize(
    ("path", "labels"),
    [
        ("/detect", ["cat", "boat"]),
        ("/v1/sax/test/routes-vision:detect", ["cat", "boat"]),
        ("/detect", []),  # no labels: one "object" box
    ],
)
def test_detect(http: httpx.Client, vision: str, path: str, labels: list[str]) -> None:
    boxes = asyncio.run(TestVision().detect(IMAGE, labels, [], NONE))
    assert [b.text for b in boxes] == (labels or ["object"])
    assert _post(http, path, vision, {"image_bytes": b64(IMAGE), "text": labels}) == {
        # Without boxes of interest the stand-in gives no masks: a box without one has none.
        "boxes": [{k: v for k, v in asdict(b).items() if not k.startswith("mask_")} for b in boxes]
    }


@pytest.mark.parametrize("path", ["/detect", "/v1/sax/test/routes-vision:detect"])
def test_detect_in_boxes_of_interest_answers_masks(
    stack: Stack, http: httpx.Client, vision: str, path: str
) -> None:
    # A segmenter's call: regions in, a mask for each out. The gateway took no regions and
    # dropped every mask Sax returned, so such a model was out of reach through it.
    regions = [(0.5, 0.5, 0.25, 0.25), (0.1, 0.2, 0.05, 0.1)]
    boxes = asyncio.run(TestVision().detect(IMAGE, [], regions, NONE))
    assert [(b.cx, b.cy, b.w, b.h) for b in boxes] == regions and all(b.mask_values for b in boxes)
    body = {
        "image_bytes": b64(IMAGE),
        "boxes_of_interest": [dict(zip(("cx", "cy", "w", "h"), r, strict=True)) for r in regions],
    }
    mask = {"mask_values": "", "mask_height": 0, "mask_width": 0}
    assert _post(http, path, vision, body) == {
        "boxes": [
            {
                **{k: v for k, v in asdict(b).items() if k not in mask},
                "mask": {
                    "mask_values": b64(b.mask_values),
                    "mask_height": b.mask_height,
                    "mask_width": b.mask_width,
                },
            }
            for b in boxes
        ]
    }
    with Client(stack.grpc_address, timeout=30) as client:
        request = pb.DetectRequest(model=vision, image_bytes=IMAGE)
        request.boxes_of_interest.add(cx=0.5, cy=0.5, w=0.25, h=float("nan"))
        with pytest.raises(BadRequestError) as caught:
            client.call("Detect", request)
    assert [v.field for v in caught.value.field_violations] == ["boxes_of_interest[0]"]


@pytest.mark.parametrize(
    ("path", "prompt"),
    [
        ("/image_to_text", ""),
        ("/v1/sax/test/routes-vision:imageToText", "Look:"),
    ],
)
def test_image_to_text(http: httpx.Client, vision: str, path: str, prompt: str) -> None:
    [caption] = asyncio.run(TestVision().image_to_text(IMAGE, prompt, NONE))
    assert caption.text.startswith(f"{prompt} a picture of a ".lstrip())
    assert _post(http, path, vision, {"image_bytes": b64(IMAGE), "text": prompt}) == {
        "texts": [asdict(caption)]
    }


@pytest.mark.parametrize("path", ["/recognize", "/v1/sax/test/routes-audio:recognize"])
def test_recognize(http: httpx.Client, audio: str, path: str) -> None:
    clip = wav(1.5)
    [transcript] = asyncio.run(TestAudio().recognize(clip, NONE))
    assert transcript.text.startswith("1.50 seconds of audio: ")
    assert len(transcript.text.split(": ")[1].split()) == 3
    assert _post(http, path, audio, {"audio_bytes": b64(clip)}) == {
        "texts": [{"text": transcript.text, "score": -0.75}]
    }


def _images(pairs: list[tuple[bytes, float]]) -> dict[str, object]:
    return {"images": [{"image": b64(image), "score": score} for image, score in pairs]}


@pytest.mark.parametrize("path", ["/image_to_image", "/v1/sax/test/routes-vision:imageToImage"])
def test_image_to_image(http: httpx.Client, vision: str, path: str) -> None:
    made = asyncio.run(TestVision().image_to_image(IMAGE, NONE))
    assert made[0][0].startswith(PNG_SIGNATURE)
    assert _post(http, path, vision, {"image_bytes": b64(IMAGE)}) == _images(made)


@pytest.mark.parametrize(
    "path", ["/text_and_image_to_image", "/v1/sax/test/routes-vision:textAndImageToImage"]
)
def test_text_and_image_to_image(http: httpx.Client, vision: str, path: str) -> None:
    made = asyncio.run(TestVision().text_and_image_to_image("make it red", IMAGE, NONE))
    # The text and the image both reach the model: neither alone makes this image.
    assert made != asyncio.run(TestVision().image_to_image(IMAGE, NONE))
    body = {"text": "make it red", "image_bytes": b64(IMAGE)}
    assert _post(http, path, vision, body) == _images(made)


@pytest.mark.parametrize(
    ("path", "prompt"),
    [("/video_to_text", ""), ("/v1/sax/test/routes-vision:videoToText", "Look:")],
)
def test_video_to_text(http: httpx.Client, vision: str, path: str, prompt: str) -> None:
    frames = [IMAGE, IMAGE[::-1], b"frame three"]
    [caption] = asyncio.run(TestVision().video_to_text(frames, prompt, NONE))
    assert caption.text.endswith(", 3 frame(s)")  # every frame, in order, reached the model
    body = {"image_frames": [b64(frame) for frame in frames], "text": prompt}
    assert _post(http, path, vision, body) == {"texts": [asdict(caption)]}


VIDEO = [IMAGE, IMAGE[::-1], b"frame three"]


@pytest.mark.parametrize("path", ["/video_to_token", "/v1/sax/test/routes-vision:videoToToken"])
def test_video_to_token(http: httpx.Client, vision: str, path: str) -> None:
    tokens = asyncio.run(TestVision().video_to_token(VIDEO, NONE))
    assert len(tokens) == 3 * TOKENS_PER_FRAME  # every frame reached the model
    body = {"image_frames": [b64(frame) for frame in VIDEO]}
    assert _post(http, path, vision, body) == {"tokens": tokens}


@pytest.mark.parametrize("path", ["/token_to_video", "/v1/sax/test/routes-vision:tokenToVideo"])
def test_token_to_video(http: httpx.Client, vision: str, path: str) -> None:
    # The tokens VideoToToken gives, back to frames: each number reaches the model exactly
    # (the stand-in's frames hash them), and a token JSON spells as an integer is a double.
    tokens = asyncio.run(TestVision().video_to_token(VIDEO, NONE))
    frames = asyncio.run(TestVision().token_to_video([*tokens, 7.0], NONE))
    assert len(frames) == 4 and all(frame.startswith(PNG_SIGNATURE) for frame in frames)
    body = {"tokens": [*tokens, 7]}
    assert _post(http, path, vision, body) == {"image_frames": [b64(f) for f in frames]}


@pytest.mark.parametrize(
    ("call", "text"),
    [
        *((c, False) for c in calls_of(TEST_VISION, TEST_AUDIO, TEST_CUSTOM)),
        *((c, True) for c in calls_of(TEST_VISION) if c.rpc in ("VideoToToken", "TokenToVideo")),
    ],
    ids=lambda p: p.rpc if isinstance(p, MediaCall) else ("text" if p else "binary"),
)
def test_over_grpc_web(
    http: httpx.Client, vision: str, audio: str, custom: str, call: MediaCall, text: bool
) -> None:
    # A browser's calls (Envoy's grpc_web filter), binary and text, and a refusal's status.
    model = {TEST_VISION: vision, TEST_AUDIO: audio, TEST_CUSTOM: custom}[call.model_path]
    check_over_grpc_web(http, call, model, text=text)


def test_a_method_acl_guards_video_tokens(stack: Stack, http: httpx.Client) -> None:
    # Their ACLs are vm.video_to_token's and vm.token_to_video's, as upstream's servers check
    # them. A model of its own, whose ACLs no gateway process has read yet: the first call
    # after the change sees it, whichever process answers.
    model = "/sax/test/routes-vision-acl"
    with published(stack, model, TEST_VISION):
        for method in ("vm.video_to_token", "vm.token_to_video"):
            done = http.post(f"/v1{model}:setAcl", json={"method": method, "acl": "acl/team-a"})
            assert done.status_code == 200, done.text
        calls: list[tuple[str, dict[str, object], str]] = [
            (
                "/video_to_token",
                {"model": model, "image_frames": [b64(IMAGE)]},
                "vm.video_to_token",
            ),
            (f"/v1{model}:tokenToVideo", {"tokens": [0.5]}, "vm.token_to_video"),
        ]
        for path, body, method in calls:
            refused = http.post(path, json=body)
            message = f"{method} on {model} is limited to acl/team-a; client anonymous is not in it"
            assert refused.json() == gateway_error(refused, 7, message), path
            assert refused.status_code == 403
        with Client(stack.grpc_address, timeout=30) as client, pytest.raises(PermissionDeniedError):
            client.call("TokenToVideo", pb.TokenToVideoRequest(model=model, tokens=[0.5]))
        # Another method of the model has an ACL of its own (none).
        caption = http.post("/video_to_text", json={"model": model, "image_frames": [b64(IMAGE)]})
        assert caption.status_code == 200, caption.text


@pytest.mark.parametrize(
    ("path", "payload"),
    [("/custom", bytes(range(256))), ("/v1/sax/test/routes-custom:custom", b"")],
)
def test_custom(http: httpx.Client, custom: str, path: str, payload: bytes) -> None:
    echoed = asyncio.run(TestCustom().custom("echo", payload, NONE))
    body = {"method_name": "echo", "request": b64(payload)}
    # An empty response is proto3's default: printed as "" (always_print_primitive_fields).
    assert _post(http, path, custom, body) == {"response": b64(echoed)}


def test_every_base64_the_transcoder_takes_is_what_the_document_allows(
    http: httpx.Client, custom: str
) -> None:
    # proto3 JSON takes standard and URL-safe base64, padded or not, and Envoy's transcoder
    # does; the document's pattern allowed standard padded base64 alone, so a client checking
    # its requests against it refused the other three. Replies are standard and padded.
    payload = b"\xfb\xff\xbf" * 3 + b"\xfe"  # "+" and "/" in standard, "-" and "_" URL-safe
    schema = http.get("/openapi.json").json()["components"]["schemas"]
    request = re.compile(schema["saxgateway.v1.CustomRequest"]["properties"]["request"]["pattern"])
    reply = re.compile(schema["saxgateway.v1.CustomResponse"]["properties"]["response"]["pattern"])
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for spelt in (encode(payload).decode(), encode(payload).decode().rstrip("=")):
            body = {"method_name": "echo", "request": spelt}
            assert _post(http, "/custom", custom, body) == {"response": b64(payload)}, spelt
            assert request.match(spelt), spelt
    assert reply.match(b64(payload)) and not reply.match(base64.urlsafe_b64encode(payload).decode())
    # What neither takes: the two alphabets mixed, or padding where none belongs.
    for spelt in ("+_8=", b64(payload) + "="):
        response = http.post(
            "/custom", json={"model": custom, "method_name": "echo", "request": spelt}
        )
        assert response.status_code == 400, spelt
        assert not request.match(spelt), spelt


def test_a_custom_method_the_model_does_not_define_is_a_400(
    http: httpx.Client, custom: str
) -> None:
    response = http.post("/custom", json={"model": custom, "method_name": "nope"})
    assert response.status_code == 400, response.text
    # The model server's words, with the code upstream's servers spell into their text.
    message = f"{custom} ({TEST_CUSTOM}) does not support nope; it supports echo: InvalidArgument"
    assert response.json() == gateway_error(response, 3, message)
    # A name no model defines, refused by the gateway: the model server's words would repeat
    # its escape sequence and line break as they are.
    response = http.post("/custom", json={"model": custom, "method_name": "e\x1b[31m\nx"})
    assert response.status_code == 400, response.text
    why = "'e\\x1b[31m\\nx' has a control or other unprintable character"
    violation = {"field": "method_name", "description": why, "reason": ""}
    assert response.json() == {
        "code": 3,
        "message": f"method_name: {why}",
        "details": [
            {"@type": BAD_REQUEST, "field_violations": [violation]},
            request_info(response),
        ],
    }


STAND_INS: dict[str, tuple[str, type[ServableModel]]] = {
    VISION: (TEST_VISION, TestVision),
    AUDIO: (TEST_AUDIO, TestAudio),
}
# (path, body, Sax method) of each new route, with every input it needs.
NEW_ROUTES: list[tuple[str, dict[str, object], str]] = [
    ("/image_to_image", {"image_bytes": b64(IMAGE)}, "vm.image_to_image"),
    (
        "/text_and_image_to_image",
        {"text": "t", "image_bytes": b64(IMAGE)},
        "vm.text_and_image_to_image",
    ),
    ("/video_to_text", {"image_frames": [b64(IMAGE)]}, "vm.video_to_text"),
    ("/video_to_token", {"image_frames": [b64(IMAGE)]}, "vm.video_to_token"),
    ("/token_to_video", {"tokens": [0.5]}, "vm.token_to_video"),
    ("/custom", {"method_name": "echo", "request": b64(IMAGE)}, "echo"),
]


def test_a_model_of_another_family_is_a_400_as_on_the_other_vision_routes(
    http: httpx.Client, vision: str, audio: str
) -> None:
    # The model server's own refusal, INVALID_ARGUMENT, as /classify gets on an audio model.
    def refusal(model: str, method: str) -> str:
        path, served = STAND_INS[model]
        supported = ", ".join(sorted(served.method_names))
        return (
            f"{model} ({path}) does not support {method}; it supports {supported}: InvalidArgument"
        )

    classify = http.post("/classify", json={"model": audio, "image_bytes": b64(IMAGE)})
    assert classify.json() == gateway_error(classify, 3, refusal(audio, "vm.classify"))
    assert classify.status_code == 400
    for path, body, method in NEW_ROUTES:
        model = vision if path == "/custom" else audio
        response = http.post(path, json={"model": model, **body})
        assert response.json() == gateway_error(response, 3, refusal(model, method)), path
        assert response.status_code == 400


# (method, request) of each call the gateway refuses, and the code and fields it names.
Refusal = tuple[str, Message, grpc.StatusCode, list[str]]


def _refusals(vision: str, audio: str, custom: str) -> list[Refusal]:
    nosuch, frames, bad = "/sax/test/routes-nosuch", [IMAGE], grpc.StatusCode.INVALID_ARGUMENT
    return [
        ("ImageToImage", pb.ImageToImageRequest(model=nosuch, image_bytes=IMAGE),
         grpc.StatusCode.NOT_FOUND, []),
        ("VideoToText", pb.VideoToTextRequest(model=nosuch, image_frames=frames),
         grpc.StatusCode.NOT_FOUND, []),
        ("Custom", pb.CustomRequest(model=nosuch, method_name="echo"),
         grpc.StatusCode.NOT_FOUND, []),
        ("TextAndImageToImage",
         pb.TextAndImageToImageRequest(model=audio, text="t", image_bytes=IMAGE), bad, []),
        ("ImageToImage", pb.ImageToImageRequest(model=vision), bad, ["image_bytes"]),
        ("TextAndImageToImage",
         pb.TextAndImageToImageRequest(model=vision, image_bytes=IMAGE), bad, ["text"]),
        ("VideoToText", pb.VideoToTextRequest(model=vision), bad, ["image_frames"]),
        ("VideoToText", pb.VideoToTextRequest(model=vision, image_frames=[IMAGE, b""]), bad,
         ["image_frames[1]"]),
        ("Custom", pb.CustomRequest(model=custom, request=b"x"), bad, ["method_name"]),
        ("VideoToToken", pb.VideoToTokenRequest(model=nosuch, image_frames=frames),
         grpc.StatusCode.NOT_FOUND, []),
        ("TokenToVideo", pb.TokenToVideoRequest(model=nosuch, tokens=[0.5]),
         grpc.StatusCode.NOT_FOUND, []),
        ("TokenToVideo", pb.TokenToVideoRequest(model=audio, tokens=[0.5]), bad, []),
        ("VideoToToken", pb.VideoToTokenRequest(model=vision), bad, ["image_frames"]),
        ("VideoToToken", pb.VideoToTokenRequest(model=vision, image_frames=[b"", IMAGE]), bad,
         ["image_frames[0]"]),
        ("TokenToVideo", pb.TokenToVideoRequest(model=vision), bad, ["tokens"]),
        ("TokenToVideo", pb.TokenToVideoRequest(model=vision, tokens=[0.5, -math.inf]), bad,
         ["tokens[1]"]),
        ("TokenToVideo",
         pb.TokenToVideoRequest(model=vision, tokens=[0.0] * (MAX_VIDEO_TOKENS + 1)), bad,
         ["tokens"]),
    ]  # fmt: skip


def test_the_new_methods_over_grpc(stack: Stack, vision: str, audio: str, custom: str) -> None:
    # Through the Python client of the gateway: its call() takes every RPC of the service.
    model, frames = TestVision(), [IMAGE, b"second frame"]
    with Client(stack.grpc_address, timeout=30) as client:
        request = pb.ImageToImageRequest(model=vision, image_bytes=IMAGE)
        made = asyncio.run(model.image_to_image(IMAGE, NONE))
        assert [(i.image, i.score) for i in client.call("ImageToImage", request).images] == made
        both = pb.TextAndImageToImageRequest(model=vision, text="red", image_bytes=IMAGE)
        made = asyncio.run(model.text_and_image_to_image("red", IMAGE, NONE))
        done = client.call("TextAndImageToImage", both)
        assert [(i.image, i.score) for i in done.images] == made
        video = pb.VideoToTextRequest(model=vision, image_frames=frames)
        [caption] = asyncio.run(model.video_to_text(frames, "", NONE))
        told = client.call("VideoToText", video)
        assert [(t.text, t.score) for t in told.texts] == [(caption.text, caption.score)]
        tokenize = pb.VideoToTokenRequest(model=vision, image_frames=frames)
        tokens = list(client.call("VideoToToken", tokenize).tokens)
        assert tokens == asyncio.run(model.video_to_token(frames, NONE))
        render = pb.TokenToVideoRequest(model=vision, tokens=tokens)
        rendered = client.call("TokenToVideo", render).image_frames
        assert list(rendered) == asyncio.run(model.token_to_video(tokens, NONE))
        echo = pb.CustomRequest(model=custom, method_name="echo", request=b"\0\1")
        assert client.call("Custom", echo).response == b"\0\1"
        for method, refused, code, fields in _refusals(vision, audio, custom):
            with pytest.raises(SaxGatewayError) as caught:
                client.call(method, refused)
            named = getattr(caught.value, "field_violations", ())
            got = (caught.value.code, [v.field for v in named])
            assert got == (code, fields), (method, refused, caught.value)
