"""Bad input on the issue-6 routes: 400 with the offending field named in a BadRequest.

Wrong JSON types never reach the gateway: Envoy's transcoder rejects them with its own
text/plain 400, so only the status is asserted there.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import pytest

from gateway.launch.stack import Stack
from tests.e2e._bodies import envoy_error, gateway_error
from tests.e2e._published import (
    BAD_REQUEST,
    IMAGE,
    TEST_AUDIO,
    TEST_LM,
    TEST_VISION,
    b64,
    published,
    request_info,
)

LM = "/sax/test/errors-lm"
VISION = "/sax/test/errors-vision"
AUDIO = "/sax/test/errors-audio"
LIMIT = 10 * 1024 * 1024  # GatewaySettings.max_payload_bytes


@pytest.fixture(scope="module", autouse=True)
def models(stack: Stack) -> Iterator[None]:
    with (
        published(stack, LM, TEST_LM),
        published(stack, VISION, TEST_VISION),
        published(stack, AUDIO, TEST_AUDIO),
    ):
        yield


def _violations(response: httpx.Response) -> list[str]:
    """The fields named by a 400's BadRequest; asserts the whole error shape."""
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == 3
    detail, info = body["details"]
    assert detail["@type"] == BAD_REQUEST
    assert info == request_info(response)
    for violation in detail["field_violations"]:
        assert violation["description"], violation
    return [v["field"] for v in detail["field_violations"]]


IMG = b64(IMAGE)

# (method, path, body or query, field named)
CASES = [
    # A missing model, on every new route that takes one.
    ("POST", "/score", {"suffix": ["a"]}, "model"),
    ("POST", "/embed", {"text": "t"}, "model"),
    ("POST", "/gradient", {"suffix": "s"}, "model"),
    ("POST", "/classify", {"image_bytes": IMG}, "model"),
    ("POST", "/text_to_image", {"text": "t"}, "model"),
    ("POST", "/embed_image", {"image_bytes": IMG}, "model"),
    ("POST", "/detect", {"image_bytes": IMG}, "model"),
    ("POST", "/image_to_text", {"image_bytes": IMG}, "model"),
    ("POST", "/recognize", {"audio_bytes": IMG}, "model"),
    ("POST", "/image_to_image", {"image_bytes": IMG}, "model"),
    ("POST", "/text_and_image_to_image", {"text": "t", "image_bytes": IMG}, "model"),
    ("POST", "/video_to_text", {"image_frames": [IMG]}, "model"),
    ("POST", "/video_to_token", {"image_frames": [IMG]}, "model"),
    ("POST", "/token_to_video", {"tokens": [0.5]}, "model"),
    ("POST", "/custom", {"method_name": "echo"}, "model"),
    ("POST", "/wait_for_ready", {}, "model"),
    ("GET", "/watch", {}, "model"),
    ("GET", "/listall", {}, "sax_cell"),
    ("GET", "/stats", {}, "name"),
    ("GET", "/getacl", {}, "name"),
    ("POST", "/setacl", {"acl": "x"}, "name"),
    # A malformed model or cell name.
    ("POST", "/score", {"model": "/sax/test/Bad!", "suffix": ["a"]}, "model"),
    ("POST", "/v1/sax/test/Bad!:embed", {"text": "t"}, "model"),
    ("GET", "/listall", {"sax_cell": "/sax/Bad!"}, "sax_cell"),
    ("GET", "/getacl", {"name": "/nope/test"}, "name"),
    # Empty or missing required inputs.
    ("POST", "/score", {"model": LM, "prefix": "p", "suffix": []}, "suffix"),
    ("POST", "/v1/sax/test/errors-lm:score", {"prefix": "p"}, "suffix"),
    ("POST", "/embed", {"model": LM, "text": ""}, "text"),
    ("POST", "/gradient", {"model": LM, "prefix": "p"}, "suffix"),
    ("POST", "/text_to_image", {"model": VISION}, "text"),
    ("POST", "/classify", {"model": VISION, "image_bytes": ""}, "image_bytes"),
    ("POST", "/v1/sax/test/errors-vision:classify", {}, "image_bytes"),
    ("POST", "/embed_image", {"model": VISION}, "image_bytes"),
    ("POST", "/detect", {"model": VISION, "text": ["cat"]}, "image_bytes"),
    ("POST", "/image_to_text", {"model": VISION, "text": "p"}, "image_bytes"),
    ("POST", "/recognize", {"model": AUDIO, "audio_bytes": ""}, "audio_bytes"),
    ("POST", "/image_to_image", {"model": VISION}, "image_bytes"),
    ("POST", "/v1/sax/test/errors-vision:imageToImage", {"image_bytes": ""}, "image_bytes"),
    ("POST", "/text_and_image_to_image", {"model": VISION, "text": "t"}, "image_bytes"),
    ("POST", "/text_and_image_to_image", {"model": VISION, "image_bytes": IMG}, "text"),
    ("POST", "/video_to_text", {"model": VISION, "text": "p"}, "image_frames"),
    ("POST", "/video_to_text", {"model": VISION, "image_frames": [IMG, ""]}, "image_frames[1]"),
    ("POST", "/video_to_token", {"model": VISION}, "image_frames"),
    (
        "POST",
        "/v1/sax/test/errors-vision:videoToToken",
        {"image_frames": [IMG, ""]},
        "image_frames[1]",
    ),
    ("POST", "/token_to_video", {"model": VISION}, "tokens"),
    # A token JSON spells as a string (proto3 JSON's "NaN", "Infinity"): no token a video has.
    ("POST", "/v1/sax/test/errors-vision:tokenToVideo", {"tokens": [0.5, 1, "NaN"]}, "tokens[2]"),
    ("POST", "/token_to_video", {"model": VISION, "tokens": ["-Infinity"]}, "tokens[0]"),
    ("POST", "/v1/sax/test/errors-vision:custom", {"request": IMG}, "method_name"),
    # A method of Sax's own services is no custom method: the embedded cell failed it UNKNOWN
    # (500), and upstream's servers answer NOT_FOUND, which the gateway retried as a replica
    # without the model until the deadline, then 503.
    ("POST", "/custom", {"model": VISION, "method_name": "vm.classify"}, "method_name"),
    ("POST", "/v1/sax/test/errors-lm:custom", {"method_name": "lm.generate"}, "method_name"),
    # Out-of-range numbers and untyped extra inputs.
    ("POST", "/wait_for_ready", {"model": LM, "replicas": -1}, "replicas"),
    ("POST", "/score", {"model": LM, "suffix": ["a"], "timeout": "-1s"}, "timeout"),
    # Zero was taken for "not sent" and the call ran on the default deadline.
    ("POST", "/generate", {"model": LM, "query": "q", "timeout": "0s"}, "timeout"),
    (
        "POST",
        "/classify",
        {"model": VISION, "image_bytes": IMG, "extra_inputs": {"k": {"nested": 1}}},
        "extra_inputs[k]",
    ),
    ("POST", "/embed", {"model": LM, "text": "t", "extra_inputs": {"k": True}}, "extra_inputs[k]"),
    # Over float32's range: it reached the model as infinity (a 500 with a Python error).
    (
        "POST",
        "/generate",
        {"model": LM, "query": "q", "extra_inputs": {"per_example_top_k": 1e39}},
        "extra_inputs[per_example_top_k]",
    ),
    (
        "POST",
        "/v1/sax/test/errors-lm:streamGenerate",
        {"query": "q", "extra_inputs": {"per_example_max_decode_steps": -1e39}},
        "extra_inputs[per_example_max_decode_steps]",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "payload", "field"),
    CASES,
    ids=[f"{path}-{field}-{i}" for i, (_, path, _, field) in enumerate(CASES)],
)
def test_bad_input_is_400_naming_the_field(
    http: httpx.Client, method: str, path: str, payload: dict[str, object], field: str
) -> None:
    get = method == "GET"
    query = {key: value for key, value in payload.items() if isinstance(value, str)}
    assert not get or query == payload  # a GET case's fields are query strings
    response = http.request(
        method, path, params=query if get else None, json=None if get else payload
    )
    assert _violations(response) == [field]


@pytest.mark.parametrize(
    ("path", "field", "model"),
    [
        ("/classify", "image_bytes", VISION),
        ("/embed_image", "image_bytes", VISION),
        ("/detect", "image_bytes", VISION),
        ("/image_to_text", "image_bytes", VISION),
        ("/recognize", "audio_bytes", AUDIO),
        ("/image_to_image", "image_bytes", VISION),
        ("/text_and_image_to_image", "image_bytes", VISION),
        ("/custom", "request", VISION),
    ],
)
def test_oversized_payload_is_400_naming_the_field(
    http: httpx.Client, path: str, field: str, model: str
) -> None:
    big = base64.b64encode(b"\0" * (LIMIT + 1)).decode()
    # What the route needs besides, so that the payload is what is wrong.
    others = {"/text_and_image_to_image": {"text": "t"}, "/custom": {"method_name": "echo"}}
    response = http.post(path, json={"model": model, **others.get(path, {}), field: big})
    assert _violations(response) == [field]
    description = response.json()["details"][0]["field_violations"][0]["description"]
    assert str(LIMIT + 1) in description and str(LIMIT) in description


def test_a_payload_at_the_limit_is_served(http: httpx.Client) -> None:
    # Above gRPC's default 4 MiB message size: every hop must accept it, and nothing may
    # mistake "message larger than max" for an overloaded replica and retry it.
    image = base64.b64encode(b"\0" * LIMIT).decode()
    response = http.post("/embed_image", json={"model": VISION, "image_bytes": image})
    assert response.status_code == 200, response.text[:300]
    assert len(response.json()["embedding"]) > 0


def test_a_reply_over_the_message_limit_is_a_400_not_a_retried_429(
    stack: Stack, http: httpx.Client
) -> None:
    # TestLM repeats its one 3 MiB word 12 times: a 36 MiB reply (an image model's few large
    # images alike). Left to grpc it failed RESOURCE_EXHAUSTED "Sent message larger than max"
    # once the work was done: a 429, which clients retry, redoing the work to fail again.
    # A stream sends the words one by one, each well within the limit; its last message,
    # every sample's whole text, is the 36 MiB reply: it ended the stream with no done
    # message and no error (a clean end to an HTTP client; gRPC's RESOURCE_EXHAUSTED).
    query = {"query": "w" * (3 << 20)}
    with published(stack, "/sax/test/errors-long", TEST_LM, {"length": "12"}) as model:
        response = http.post("/generate", json={"model": model, **query})
        with http.stream("POST", "/generate_stream", json={"model": model, **query}) as stream:
            events = [json.loads(line[6:]) for line in stream.iter_lines() if line]
    last = events.pop()
    assert len(events) == 12 and all(e["deltas"][0]["text"].strip("w ") == "" for e in events)
    size = int(last["error"]["message"].split()[4])
    assert size > 36 << 20
    error = gateway_error(
        stream,
        3,
        f"the reply would be {size} bytes, over this gateway's limit of {32 << 20} bytes:"
        " the stream's last message holds every sample's whole text, which its messages"
        " before it brought: ask the model for less (fewer or shorter samples)",
    )
    assert last == {"deltas": [], "done": True, "texts": [], "error": error}
    assert response.status_code == 400, response.text[:300]
    assert "retry-after" not in response.headers
    message = response.json()["message"]
    size = int(message.split()[4])
    assert size > 36 << 20
    assert response.json() == gateway_error(
        response,
        3,
        f"the reply would be {size} bytes, over this gateway's limit of {32 << 20} bytes:"
        " ask the model for less (fewer or shorter samples, fewer or smaller outputs)",
    )


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/score", {"model": 5, "suffix": ["a"]}),
        ("/score", {"model": LM, "suffix": {"a": 1}}),
        ("/classify", {"model": VISION, "image_bytes": "not base64!"}),
        ("/recognize", {"model": AUDIO, "audio_bytes": 12}),
        ("/wait_for_ready", {"model": LM, "replicas": "many"}),
        ("/detect", {"model": VISION, "image_bytes": IMG, "text": [{"label": "cat"}]}),
    ],
)
def test_wrong_json_types_are_rejected_by_envoy(
    http: httpx.Client, path: str, payload: dict[str, object]
) -> None:
    response = http.post(path, json=payload)
    assert response.status_code == 400, response.text
    # Envoy's own reply, in the gateway's error shape (it used to be text/plain).
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["code"] == 3 and body["message"]
    assert body["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize(
    "path", ["/generate", "/v1/sax/test/errors-lm:generate", "/v1/sax/test/errors-lm:publish"]
)
def test_an_empty_key_is_a_json_400(http: httpx.Client, path: str) -> None:
    # A probe saw the transcoder's text/plain ": Proto fields must have a name." for it; it
    # is Envoy's reply in the gateway's error shape, as every other body the transcoder
    # refuses. Its words stay the transcoder's: its response code details say only
    # grpc_json_transcode_failure{INVALID_ARGUMENT}, so no local_reply_config mapper can tell
    # it from another refusal to give it words of its own.
    response = http.post(path, json={"": 1, "model": LM, "query": "q"})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == envoy_error(response, 3, ": Proto fields must have a name.")


def test_unknown_model_is_404_on_every_data_route(http: httpx.Client) -> None:
    nosuch = "/sax/test/nosuch"
    payloads: list[tuple[str, dict[str, object]]] = [
        ("/score", {"suffix": ["a"]}),
        ("/embed", {"text": "t"}),
        ("/gradient", {"suffix": "s"}),
        ("/classify", {"image_bytes": IMG}),
        ("/text_to_image", {"text": "t"}),
        ("/embed_image", {"image_bytes": IMG}),
        ("/detect", {"image_bytes": IMG}),
        ("/image_to_text", {"image_bytes": IMG}),
        ("/recognize", {"audio_bytes": IMG}),
        ("/image_to_image", {"image_bytes": IMG}),
        ("/text_and_image_to_image", {"text": "t", "image_bytes": IMG}),
        ("/video_to_text", {"image_frames": [IMG]}),
        ("/video_to_token", {"image_frames": [IMG]}),
        ("/token_to_video", {"tokens": [0.5]}),
        ("/custom", {"method_name": "echo"}),
        ("/wait_for_ready", {}),
    ]
    for path, payload in payloads:
        response = http.post(path, json={"model": nosuch, **payload})
        assert response.status_code == 404, (path, response.text)
        assert response.json()["code"] == 5
    for path in ["/stats", "/getacl"]:
        assert http.get(path, params={"name": nosuch}).status_code == 404, path
    assert http.get("/watch", params={"model": nosuch}).status_code == 404
