"""Publishing a stand-in model for a test module, and the inputs the route tests send."""

from __future__ import annotations

import base64
import io
import wave
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
from saxml.protobuf import admin_pb2

from gateway.cell.models import media, test_lm
from gateway.launch.stack import Stack

TEST_LM = test_lm.MODEL_PATH
TEST_VISION = media.VISION_PATH
TEST_AUDIO = media.AUDIO_PATH
TEST_CUSTOM = media.CUSTOM_PATH
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
REQUEST_INFO = "type.googleapis.com/google.rpc.RequestInfo"


def request_info(response: httpx.Response) -> dict[str, str]:
    """The detail every gateway error carries: the request's x-request-id."""
    return {
        "@type": REQUEST_INFO,
        "request_id": response.headers["x-request-id"],
        "serving_data": "",
    }


def publish_body(
    model: str, model_path: str = TEST_LM, replicas: int = 1, **overrides: str
) -> dict[str, object]:
    """The ``/publish`` body of ``model``: ``model_path`` with no checkpoint, on ``replicas``
    replicas, with ``overrides``."""
    return {
        "model": model,
        "model_path": model_path,
        "checkpoint": "None",
        "replicas": replicas,
        "overrides": overrides,
    }


@contextmanager
def published(
    stack: Stack,
    model: str,
    model_path: str,
    overrides: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """Publishes ``model`` on one replica, waits for it, and unpublishes it afterwards;
    ``headers`` carry credentials where the stack wants them."""
    with httpx.Client(base_url=stack.http_url, timeout=30, headers=headers) as http:
        body = publish_body(model, model_path, 1, **(overrides or {}))
        response = http.post("/publish", json=body)
        assert response.status_code == 200, response.text
        try:
            ready = http.post("/wait_for_ready", json={"model": model, "timeout": "20s"})
            assert ready.status_code == 200, ready.text
            yield model
        finally:
            http.post("/unpublish", json={"model": model})


def stored_model(stack: Stack, model: str) -> admin_pb2.Model | None:
    """The model as the stack's admin saved it in its cell's state.proto (None: not saved)."""
    assert stack.settings.cell is not None
    path = Path(stack.settings.cell.effective_fs_root) / "sax" / "test" / "state.proto"
    state = admin_pb2.State.FromString(path.read_bytes())
    return next((m for m in state.models if m.model_id == model), None)


def b64(data: bytes) -> str:
    """Bytes as proto3 JSON spells them."""
    return base64.b64encode(data).decode()


def wav(seconds: float, rate: int = 16000) -> bytes:
    """A mono 16-bit WAV file of ``seconds`` of a deterministic waveform."""
    frames = int(seconds * rate)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes((i * 7) % 256 for i in range(frames * 2)))
    return buffer.getvalue()


# Not a real image: the vision stand-in hashes whatever bytes it gets.
IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
