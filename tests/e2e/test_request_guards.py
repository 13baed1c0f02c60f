"""Requests that must not reach a gateway as sent: a header grpc cannot parse, a query
parameter or body field that would replace the model the URL names, a compressed body.

Found by probing the stack from outside: one malformed header left Envoy's connection to a
gateway refusing every later call that carried a new header value, whoever sent it, for
minutes; and `POST /v1/sax/test/a:unpublish?model=/sax/test/b` unpublished b (every way to
name another model than the path's: tests/e2e/test_path_names.py).
"""

from __future__ import annotations

import base64
import gzip
import json
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc

from gateway.launch.stack import Stack
from tests._grpc import sync_channel
from tests.e2e._bodies import REQUEST_INFO, envoy_error, gateway_error, openai_error
from tests.e2e._published import TEST_LM, published

GRPC_TIMEOUT_MESSAGE = (
    "grpc-timeout: not a gRPC timeout, which is a positive number of up to 8 digits and a unit"
    " (H, M, S, m, u or n), such as 30S"
)
COMPRESSED = (
    "the request body is compressed (content-encoding), which this API does not take: "
    "send it uncompressed"
)


@pytest.fixture(scope="module")
def model(stack: Stack) -> Iterator[str]:
    with published(stack, "/sax/test/guards", TEST_LM, {"text": "ok"}) as name:
        yield name


def _generate(http: httpx.Client, model: str, **headers: str) -> httpx.Response:
    return http.post("/generate", json={"model": model, "query": "q"}, headers=headers)


# "0m" used to reach the gateway, where grpc answered DEADLINE_EXCEEDED before any of its code
# ran: a 504 with no request ID, counted in none of the gateway's metrics.
@pytest.mark.parametrize("value", ["5s", "abc", "1.5S", "-1S", "123456789S", "", "0m", "00000S"])
def test_a_malformed_grpc_timeout_is_a_json_400(http: httpx.Client, model: str, value: str) -> None:
    response = _generate(http, model, **{"grpc-timeout": value})
    assert response.status_code == 400, response.text
    assert response.json() == envoy_error(response, 3, GRPC_TIMEOUT_MESSAGE)


@pytest.mark.parametrize("value", ["1S", "00000500m", "99999999n"])
def test_a_grpc_timeout_with_leading_zeros_or_8_digits_is_taken(
    http: httpx.Client, model: str, value: str
) -> None:
    response = _generate(http, model, **{"grpc-timeout": value})
    assert (response.status_code, response.json()) == (
        200,
        {"texts": [{"text": "ok", "score": -0.1}]},
    )


def test_a_malformed_grpc_timeout_on_an_openai_path_is_an_openai_400(
    http: httpx.Client, model: str
) -> None:
    response = http.post(
        "/v1/completions", json={"model": model, "prompt": "q"}, headers={"grpc-timeout": "5s"}
    )
    assert response.status_code == 400, response.text
    assert response.json() == {"error": openai_error(GRPC_TIMEOUT_MESSAGE)}


def test_a_header_grpc_refuses_leaves_later_calls_unharmed(
    stack: Stack, http: httpx.Client, model: str
) -> None:
    # Not base64: grpc in the gateway refuses the call (INTERNAL, as it would from any client,
    # which the edge makes INVALID_ARGUMENT: tests/e2e/test_grpc_made_errors.py). Sent twice,
    # so that it reaches both gateway processes behind Envoy.
    for _ in range(2):
        refused = _generate(http, model, **{"x-probe-bin": "###"})
        assert refused.status_code == 400, refused.text
    # Headers whose values the connection has not carried before: each is sent in full and
    # added to the sender's HPACK table, where grpc would have looked up the wrong entry.
    for n in range(6):
        value = base64.b64encode(f"fine-{n}".encode()).decode()
        later = _generate(http, model, **{"x-probe-bin": value, "grpc-timeout": f"{20 + n}S"})
        assert later.status_code == 200, later.text
        assert later.json() == {"texts": [{"text": "ok", "score": -0.1}]}
    with sync_channel(stack.grpc_address) as channel:
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        for n in range(4):  # a gRPC client's deadline: a new grpc-timeout value each call
            reply = stub.Generate(pb.GenerateRequest(model=model, query="q"), timeout=25 + n)
            assert [t.text for t in reply.texts] == ["ok"]


# HTTP names that gRPC metadata cannot carry (it takes 0-9 a-z _ . -): grpc in the gateway
# failed the call 500 INTERNAL "Illegal header key", before any of its code ran.
@pytest.mark.parametrize("name", ["+", "a|b", "x~y", "x!", "c'est"])
def test_a_header_grpc_cannot_name_is_dropped(http: httpx.Client, model: str, name: str) -> None:
    response = _generate(http, model, **{name: "1", "x-next": "kept"})
    assert (response.status_code, response.json()) == (
        200,
        {"texts": [{"text": "ok", "score": -0.1}]},
    ), response.text[:200]


@pytest.mark.parametrize("size", [14_000, 40_000, 58_000])
def test_headers_envoy_takes_are_served(http: httpx.Client, model: str, size: int) -> None:
    # Envoy takes 60 KiB of headers (limits.max_request_headers_kb; more is a 431). grpc in the
    # gateway took 8 KiB: it refused a share of calls at random up to 16 KiB and every call
    # beyond with RESOURCE_EXHAUSTED, a 429 that clients retry, for headers Envoy accepted
    # (and before the gateway's code ran: no request ID, in none of its metrics). Five times,
    # so that both gateway processes answer.
    for _ in range(5):
        response = _generate(http, model, **{"x-padding": "p" * size})
        assert (response.status_code, response.json()) == (
            200,
            {"texts": [{"text": "ok", "score": -0.1}]},
        ), response.text[:200]


@pytest.mark.parametrize("name", ["x-probe", "x-request-id"])
def test_a_header_value_that_is_not_utf8_is_served(
    http: httpx.Client, model: str, name: str
) -> None:
    # grpc decodes such a value as Latin-1 and logs an error; the gateway's log line read the
    # call's request ID from the same metadata, which logged again, until RecursionError: a
    # 500 "Unexpected <class 'RecursionError'>" for any call carrying such a header. Sent
    # twice, so that it reaches both gateway processes behind Envoy.
    for _ in range(2):
        response = http.post(
            "/generate", json={"model": model, "query": "q"}, headers={name.encode(): b"\xff\xfe"}
        )
        assert (response.status_code, response.json()) == (
            200,
            {"texts": [{"text": "ok", "score": -0.1}]},
        )
        completion = http.post(
            "/v1/completions",
            json={"model": model, "prompt": "q"},
            headers={name.encode(): b"\xff"},
        )
        assert completion.status_code == 200, completion.text
        assert completion.json()["choices"][0]["text"] == "ok"


def test_a_header_value_that_is_not_utf8_is_not_logged_at_each_reading(
    stack: Stack, http: httpx.Client, model: str
) -> None:
    # grpc logs an ERROR, with a traceback and the value, each time it decodes such a value,
    # and a gateway reads a call's metadata several times: any client wrote ~20 ERROR lines
    # per request into the gateways' logs. Now at most one WARNING a minute, without it.
    marker = f"not-utf8-{secrets.token_hex(6)}"
    for _ in range(4):
        response = http.post(
            "/generate",
            json={"model": model, "query": "q"},
            headers={b"x-probe": b"\xff" + marker.encode()},
        )
        assert response.status_code == 200, response.text
    logs = [
        json.loads(line)
        for path in Path(stack.settings.log_dir or "").glob("gateway-*.log")
        for line in path.read_text(errors="replace").splitlines()
        if line.startswith("{")
    ]
    assert not [r for r in logs if marker in json.dumps(r)]
    # grpc's own records of the value (the stack is shared: other tests' records stay apart).
    undecodable = [r for r in logs if r["logger"] == "grpc._cython.cygrpc"]
    assert not [r for r in undecodable if "Invalid encoding on" in r["message"]]


def _is_published(http: httpx.Client, model: str) -> bool:
    response = http.get("/listcell", params={"model": model})
    assert response.status_code in (200, 404), response.text
    return response.status_code == 200


def test_a_body_field_may_not_rename_what_the_path_names(http: httpx.Client, model: str) -> None:
    response = http.post("/v1/sax/test/guards-a:unpublish", json={"model": model})
    assert response.status_code == 400, response.text
    description = (
        f"the URL path names '/sax/test/guards-a', the query string or body {model!r}: "
        "a /v1/ resource path alone names what a call acts on"
    )
    violation = {"field": "model", "description": description, "reason": ""}
    assert response.json() == {
        "code": 3,
        "message": f"model: {description}",
        "details": [
            {"@type": "type.googleapis.com/google.rpc.BadRequest", "field_violations": [violation]},
            {
                "@type": REQUEST_INFO,
                "request_id": response.headers["x-request-id"],
                "serving_data": "",
            },
        ],
    }
    assert _is_published(http, model)
    # The path alone still works, and acts on the model it names.
    missing = http.post("/v1/sax/test/guards-a:unpublish", json={})
    assert missing.status_code == 404, missing.text
    assert missing.json() == gateway_error(
        missing, 5, "model /sax/test/guards-a is not published: NotFound"
    )
    assert _is_published(http, model)


@pytest.mark.parametrize("encoding", ["gzip", "br", "GZIP, identity"])
def test_a_compressed_body_is_a_json_415_not_a_parse_error(
    http: httpx.Client, model: str, encoding: str
) -> None:
    # It used to reach the transcoder as JSON: 400 "Encountered non UTF-8 code points".
    body = gzip.compress(json.dumps({"model": model, "query": "q"}).encode())
    headers = {"content-type": "application/json", "content-encoding": encoding}
    response = http.post("/generate", content=body, headers=headers)
    assert response.status_code == 415, response.text
    assert response.json() == envoy_error(response, 12, COMPRESSED)
    openai = http.post("/v1/completions", content=body, headers=headers)
    assert openai.status_code == 415, openai.text
    assert openai.json() == {"error": openai_error(COMPRESSED)}
    # RFC 9110 15.5.16: a 415 for a content coding says which codings it takes.
    assert response.headers["accept-encoding"] == openai.headers["accept-encoding"] == "identity"


@pytest.mark.parametrize(
    ("header", "status"), [(b"Content-Encoding: gzip", 415), (b"grpc-timeout: soon", 400)]
)
def test_a_refusal_that_needs_no_body_comes_before_it(
    stack: Stack, header: bytes, status: int
) -> None:
    # Envoy held the request until the whole body had come (the buffer filter, up to 32 MiB),
    # and only then said what its headers had already decided: a 30 MB gzipped upload was
    # sent whole for a 415.
    url = httpx.URL(stack.http_url)
    head = b"POST /generate HTTP/1.1\r\nHost: localhost\r\n%s\r\n" % header
    with socket.create_connection((url.host, url.port), timeout=10) as sock:
        sock.sendall(head + b"Content-Length: %d\r\n\r\n{" % (8 << 20))
        reply = sock.recv(65536)  # socket.timeout: no answer within 10 s
    assert reply.startswith(b"HTTP/1.1 %d " % status), reply[:300]


def test_an_identity_content_encoding_is_read_as_usual(http: httpx.Client, model: str) -> None:
    # Content-Encoding is a list of the codings applied (RFC 9110 8.4): an empty one, or one
    # of identity only (given once or in two headers, which Envoy joins with a comma), says
    # the body is as it is. Those were 415 "the request body is compressed", which it was not.
    body = json.dumps({"model": model, "query": "q"}).encode()
    for headers in (
        [("content-encoding", "identity")],
        [("content-encoding", "")],
        [("content-encoding", "Identity , identity")],
        [("content-encoding", "identity"), ("content-encoding", "identity")],
    ):
        response = http.post("/generate", content=body, headers=headers)
        assert response.status_code == 200, (headers, response.text)
        assert response.json() == {"texts": [{"text": "ok", "score": -0.1}]}


# The transcoder compared a body's model with the path's as text, so the path's own model with
# its leading slash, as every reply spells it, was a 400 that said a model conflicted with
# itself. The gateway compares them as model IDs.
def test_a_body_may_name_the_paths_own_model_with_or_without_its_slash(
    http: httpx.Client, model: str
) -> None:
    for named in (model, model[1:]):
        response = http.post(f"/v1{model}:generate", json={"model": named, "query": "q"})
        assert (response.status_code, response.json()) == (
            200,
            {"texts": [{"text": "ok", "score": -0.1}]},
        ), named
