"""An error that echoes a large value stays the caller's 400 (or 404), with its whole JSON
body, and no other call notices: the gateway reports a status in headers (grpc-message,
grpc-status-details-bin, the OpenAI face's x-openai-error), and a header block over Envoy's
limit made Envoy reset the gateway's whole HTTP/2 connection, every stream on it too."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import httpx
import openai
import pytest
from google.rpc import error_details_pb2, status_pb2

from gateway.common.limits import quote
from gateway.common.logs import LOGGED_ID_CHARS
from gateway.launch._replies import TRANSCODE_ECHO_BYTES
from gateway.launch.stack import Stack
from tests.e2e._bodies import envoy_error, openai_error
from tests.e2e._openai import SLOW
from tests.e2e._published import BAD_REQUEST, REQUEST_INFO, request_info

_HI = [{"role": "user", "content": "hi"}]
# JSON's ensure_ascii spells each emoji as 12 bytes: 3,000 of them are 36 KB of header.
_LARGE = ["x" * 100_000, "\U0001f600" * 3_000]
_CONSTRAINED = (
    ": JSON mode and structured outputs are not supported: Sax cannot constrain decoding "
    '(remove it or use {"type": "text"})'
)
# (path, the request with the value at V, param, message after "param: " with the value at V)
_ECHOES: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "/v1/chat/completions",
        {"messages": _HI, "response_format": {"type": "V"}},
        "response_format",
        "V" + _CONSTRAINED,
    ),
    (
        "/v1/completions",
        {"prompt": "hi", "response_format": {"type": "V"}},
        "response_format",
        "V" + _CONSTRAINED,
    ),
    (
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": [{"type": "V"}]}]},
        "messages[0].content",
        "V parts are not supported: only text reaches Sax",
    ),
    (
        "/v1/responses",
        {"input": "hi", "truncation": "V"},
        "truncation",
        "V is not supported: the gateway cannot shorten a conversation to fit the model "
        '(remove it or set "disabled")',
    ),
    (
        "/v1/responses",
        {"input": "hi", "text": {"format": {"type": "V"}}},
        "text.format",
        "V" + _CONSTRAINED,
    ),
    (
        "/v1/responses",
        {"input": "hi", "text": {"verbosity": "V"}},
        "text.verbosity",
        "V is not supported: remove it",
    ),
    (
        "/v1/responses",
        {"input": [{"type": "V"}]},
        "input[0]",
        "V items are not supported: only messages reach Sax",
    ),
]


def _put(request: Any, value: str) -> Any:
    """``request`` with ``value`` where it says "V"."""
    if isinstance(request, dict):
        return {k: _put(v, value) for k, v in request.items()}
    if isinstance(request, list):
        return [_put(v, value) for v in request]
    return value if request == "V" else request


@contextmanager
def _a_stream_alongside(stack: Stack) -> Iterator[None]:
    """Streams a completion of the slow model (50 tokens, 5 s) through the whole block, and
    checks that it ended as it should, every token received."""
    started, received, failures = threading.Event(), [], []

    def stream() -> None:
        try:
            with openai.OpenAI(base_url=stack.http_url + "/v1", api_key="x", max_retries=0) as sdk:
                for chunk in sdk.completions.create(model=SLOW, prompt="q", stream=True):
                    received.append((chunk.choices[0].text, chunk.choices[0].finish_reason))
                    started.set()
        except Exception as exc:
            failures.append(exc)
        finally:
            started.set()

    streaming = threading.Thread(target=stream)
    streaming.start()
    try:
        assert started.wait(30)
        yield
    finally:
        streaming.join(30)
    assert failures == []
    assert "".join(text for text, _ in received).split() == ["tok"] * 50
    assert [reason for _, reason in received if reason] == ["stop"]


@pytest.mark.parametrize("value", _LARGE, ids=["ascii", "emoji"])
def test_an_openai_error_echoing_a_large_value_is_a_whole_400(
    stack: Stack, openai_models: None, http: httpx.Client, value: str
) -> None:
    # It was a 502 or 503 (Envoy's "upstream connect error ... protocol error"), which the
    # SDKs retry, and the stream beside it died.
    with _a_stream_alongside(stack):
        for path, fields, param, message in _ECHOES:
            response = http.post(path, json={"model": "oai", **_put(fields, value)})
            assert response.status_code == 400, (path, param, response.text[:300])
            said = message.replace("V", quote(value), 1)
            assert response.json() == {"error": openai_error(f"{param}: {said}", param=param)}


def test_a_native_error_is_whole_whatever_the_callers_request_id(
    stack: Stack, http: httpx.Client, openai_models: None
) -> None:
    # The caller picks its x-request-id, up to Envoy's header limit (60 KiB), and the
    # gateway put it whole in grpc-status-details-bin: base64, 4/3 of its size, over the
    # limit (a 503 where the model is unknown, and the stream beside it died). The body now
    # names the prefix the access log keeps.
    asked = "r" * 55_000
    with _a_stream_alongside(stack):
        for _ in range(2):  # one call to each gateway process
            response = http.post(
                "/generate",
                json={"model": "/sax/test/nosuch", "query": "q"},
                headers={"x-request-id": asked},
            )
            assert response.status_code == 404, response.text[:300]
            assert response.json() == {
                "code": 5,
                "message": "model /sax/test/nosuch is not published: NotFound",
                "details": [{**request_info(response), "request_id": asked[:LOGGED_ID_CHARS]}],
            }


def test_native_errors_quote_large_values_cut_short(
    stack: Stack, http: httpx.Client, openai_models: None
) -> None:
    # No native error echoes a request's value unbounded: model IDs are quoted (and over
    # their limit), other fields' values are not echoed at all.
    model = "/sax/test/" + "m" * 100_000
    with _a_stream_alongside(stack):
        response = http.post("/generate", json={"model": model, "query": "q"})
        message = f"model ID {quote(model)}: 100010 characters is over the limit of 256"
        assert response.status_code == 400
        assert response.json() == {
            "code": 3,
            "message": message,
            "details": [
                {
                    "@type": BAD_REQUEST,
                    "field_violations": [{"field": "model", "description": message, "reason": ""}],
                },
                request_info(response),
            ],
        }
        key = "k" * 100_000
        response = http.post(
            "/generate",
            json={"model": "/sax/test/nosuch", "query": "q", "extra_inputs": {key: 1}},
        )
        field = f"extra_inputs[{quote(key)}]"
        assert response.status_code == 400
        assert response.json() == {
            "code": 3,
            "message": f"{field}: the key is too long",
            "details": [
                {
                    "@type": BAD_REQUEST,
                    "field_violations": [
                        {"field": field, "description": "the key is too long", "reason": ""}
                    ],
                },
                request_info(response),
            ],
        }


def test_a_large_body_envoy_cannot_take_is_a_400_that_does_not_repeat_it(
    stack: Stack, http: httpx.Client
) -> None:
    # The transcoder's message repeats the value it could not take: a 5 MiB image with one
    # character that is not base64 came back as a 7 MB error. A small body keeps the message
    # that names the field.
    small = http.post("/generate", json={"model": "/sax/test/nosuch", "query": 5})
    assert small.status_code == 400
    said = "query: invalid value 5 for type TYPE_STRING"
    assert small.json() == envoy_error(small, 3, said)
    content = json.dumps({"model": "/sax/test/nosuch", "image_bytes": "A" * (5 << 20) + "!!!!"})
    message = (
        "the body does not fit this method's JSON: a value has the wrong type, or a bytes field"
        " is not base64 (the parser's message, which repeats the value, is left out for a body"
        f" over {TRANSCODE_ECHO_BYTES} bytes)"
    )
    # With a Content-Length, and chunked without one, as an HTTP/2 client or an upload may send.
    for sent in (content.encode(), iter([content.encode()])):
        response = http.post("/classify", content=sent)
        assert response.status_code == 400, response.text[:300]
        assert response.json() == envoy_error(response, 3, message)


def test_envoys_own_errors_name_the_request_id_prefix_the_logs_keep(
    stack: Stack, http: httpx.Client
) -> None:
    # Envoy's replies named the caller's x-request-id whole, three times for a gRPC caller
    # (the grpc-message's JSON body twice, grpc-status-details-bin), where the gateway's
    # errors name the prefix the logs keep: with a 7,000-character ID, a gRPC client got
    # grpc's own RESOURCE_EXHAUSTED ("received metadata size exceeds hard limit") instead of
    # the refusal, which the gateway's own errors with that ID do not come to.
    asked = "r" * 7_000
    response = http.get("/no/such/path", headers={"x-request-id": asked})
    assert response.status_code == 404, response.text[:300]
    body = response.json()
    info = {"@type": REQUEST_INFO, "request_id": asked[:LOGGED_ID_CHARS]}
    assert (body["request_id"], body["details"]) == (asked[:LOGGED_ID_CHARS], [info])
    with grpc.insecure_channel(stack.grpc_address) as channel:
        elsewhere: tuple[tuple[str, str | bytes], ...] = (("origin", "http://elsewhere.example"),)
        calls = [  # grpc's own failure, and Envoy's own reply (an Origin not allowed)
            ("NoSuchMethod", (), grpc.StatusCode.UNIMPLEMENTED),
            ("ListCells", elsewhere, grpc.StatusCode.PERMISSION_DENIED),
        ]
        for method, headers, code in calls:
            call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                f"/saxgateway.v1.SaxGateway/{method}"
            )
            with pytest.raises(grpc.RpcError) as failed:
                call(b"", metadata=(*headers, ("x-request-id", asked)), timeout=30)
            error: Any = failed.value
            assert error.code() == code, error.details()[:300]
            [details] = [v for k, v in error.trailing_metadata() if k == "grpc-status-details-bin"]
            status = status_pb2.Status.FromString(details)
            found = error_details_pb2.RequestInfo()
            assert status.details[-1].Unpack(found), status
            assert found.request_id == asked[:LOGGED_ID_CHARS]
