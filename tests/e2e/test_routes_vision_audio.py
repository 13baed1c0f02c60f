"""Vision and audio routes through the real Envoy, short paths and /v1/ twins.

The expected bodies are computed by the stand-in models' own code (`TestVision`,
`TestAudio`) on the same bytes, so they change only if the wire path changes them.
"""

from __future__ import annotations

import asyncio
import base64
import struct
from collections.abc import Iterator
from dataclasses import asdict

import httpx
import pytest

from gateway.cell.models.base import ExtraInputs
from gateway.cell.models.media import TestAudio, TestVision
from gateway.launch.stack import Stack
from tests.e2e._published import IMAGE, TEST_AUDIO, TEST_VISION, b64, published, wav

VISION = "/sax/test/routes-vision"
AUDIO = "/sax/test/routes-audio"
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


def _post(http: httpx.Client, path: str, model: str, body: dict[str, object]) -> object:
    if not path.startswith("/v1/"):
        body = {"model": model, **body}
    response = http.post(path, json=body)
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
    boxes = asyncio.run(TestVision().detect(IMAGE, labels, NONE))
    assert [b.text for b in boxes] == (labels or ["object"])
    assert _post(http, path, vision, {"image_bytes": b64(IMAGE), "text": labels}) == {
        # The gateway's box has no mask fields (the stand-in models give no masks).
        "boxes": [{k: v for k, v in asdict(b).items() if not k.startswith("mask_")} for b in boxes]
    }


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
