"""Envoy's access log (docs/operations.md) as the secure stack writes it: what a client sends
in a query string never reaches it, and its `grpc_status` is the code the client got, for
replies Envoy makes itself (the code of the JSON body its local reply mapper wrote) and for
calls the client gave up (CANCELLED), over HTTP/JSON, gRPC and grpc-web alike."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf.message import Message
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc

from gateway.common.logs import LOGGED_ID_CHARS
from gateway.launch._replies import CODE_HEADER
from gateway.service._streams import HTTP_METHOD_HEADER
from tests._grpc import sync_channel
from tests._stacks import FORWARDED, envoy_stat, wait_forwarded
from tests.e2e._access_log import access_log_line, access_log_line_after, access_log_size
from tests.e2e._grpc_replies import native_headers, status_details
from tests.e2e.security.conftest import BURSTY_KEY, TEAM_A_KEY, SecureStack
from tests.e2e.test_grpc_web import _frame

pytestmark = pytest.mark.e2e

SECRET = "sk-in-the-query-7e1f0c9a2b"
SERVICE = "/saxgateway.v1.SaxGateway"
KEY = {"x-api-key": TEAM_A_KEY}
FOREIGN_ORIGIN = "http://evil.example"
#: Over the secure stack's 64 KiB body limit.
TOO_LARGE = json.dumps({"model": "/sax/test/x", "query": "a" * 70_000})
BIG_MESSAGE = pb.GenerateRequest(model="/sax/test/x", query="a" * 70_000)
SMALL_MESSAGE = pb.GenerateRequest(model="/sax/test/x", query="q")


def test_the_access_log_keeps_no_query_string(secure: SecureStack) -> None:
    log = Path(secure.stack.settings.log_dir or "") / "envoy.log"
    # An open path Envoy answers itself, and a call the transcoder turns into a gRPC method
    # (a query parameter it knows, so that it transcodes; the model does not exist).
    calls = {
        "/openapi.json": ("/openapi.json", "/openapi.json"),
        "/generate": ("/generate", "/saxgateway.v1.SaxGateway/Generate"),
    }
    ids = {path: str(uuid.uuid4()) for path in calls}
    with httpx.Client(base_url=secure.stack.http_url, timeout=30) as http:
        for path, request_id in ids.items():
            headers = {"x-request-id": request_id, "x-api-key": TEAM_A_KEY}
            body = {"model": "/sax/test/no-such-model"}
            http.post(path, params={"query": SECRET}, json=body, headers=headers)
    for path, (logged_path, grpc_method) in calls.items():
        line = access_log_line(secure.stack, ids[path])
        assert (line["path"], line["grpc_method"]) == (logged_path, grpc_method)
    assert SECRET not in log.read_text()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("GET", "/listcells", None, id="get"),
        pytest.param("HEAD", "/listcells", None, id="head"),
        pytest.param("POST", "/generate", "{}", id="post"),
        pytest.param("DELETE", "/generate", None, id="refused-by-envoy"),
        pytest.param("GET", "/openapi.json", None, id="direct-response"),
    ],
)
def test_the_access_log_names_the_clients_method(
    secure: SecureStack, method: str, path: str, body: str | None
) -> None:
    # The transcoder makes every call a POST, and the log said POST for each GET.
    response, request_id = _http(secure, method, path, body, **{HTTP_METHOD_HEADER: "PATCH"})
    assert response.status_code in (200, 400, 405), response.text
    assert access_log_line(secure.stack, request_id)["method"] == method


def test_the_access_log_cuts_a_long_method(secure: SecureStack) -> None:
    # HTTP/1.1's codec refuses a method it does not know; HTTP/2 hands any on.
    method, request_id = "X" * 100, str(uuid.uuid4())
    command = ["curl", "-s", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}"]
    command += ["-X", method, "-H", f"x-request-id: {request_id}", "-H", f"x-api-key: {TEAM_A_KEY}"]
    url = secure.stack.http_url + "/listcells"
    assert subprocess.run([*command, url], capture_output=True, text=True).stdout == "405"
    assert access_log_line(secure.stack, request_id)["method"] == method[:32]


def _logged(secure: SecureStack, request_id: str) -> tuple[object, object]:
    """The status and grpc_status of the access log line of ``request_id``."""
    line = access_log_line(secure.stack, request_id)
    return line["status"], line["grpc_status"]


def _http(
    secure: SecureStack, method: str, path: str, body: str | None, **headers: str
) -> tuple[httpx.Response, str]:
    """An HTTP/JSON request with team-a's key and ``headers``; the reply and its request ID."""
    request_id = str(uuid.uuid4())
    sent = {**KEY, "content-type": "application/json", **headers, "x-request-id": request_id}
    url = secure.stack.http_url + path
    return httpx.request(method, url, content=body, headers=sent, timeout=30), request_id


# The log used to hold null for most of these (no grpc-status for Envoy to read), 13 for bad
# JSON (its reading of a 400) and 14 for the 429; the client got the body's code.
@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "code"),
    [
        pytest.param("POST", "/generate", TOO_LARGE, {}, 413, 8, id="body-too-large"),
        pytest.param("GET", "/no/such/path", None, {}, 404, 5, id="unknown-path"),
        pytest.param("POST", "/generate", '{"model": ', {}, 400, 3, id="bad-json"),
        pytest.param(
            "GET", "/listcell?model=/sax/test/x&colour=blue", None, {}, 400, 3, id="unknown-query"
        ),
        pytest.param("GET", "/generate", None, {}, 405, 12, id="method-not-allowed"),
        pytest.param(
            "POST", "/generate", "{}", {"content-encoding": "gzip"}, 415, 12, id="compressed"
        ),
        pytest.param("POST", "/generate", "{}", {"grpc-timeout": "soon"}, 400, 3, id="bad-timeout"),
        pytest.param(
            "POST", "/v1/sax/test/x:generate?model=/sax/test/y", "{}", {}, 400, 3, id="renamed"
        ),
        pytest.param("POST", "/generate", "{}", {"origin": FOREIGN_ORIGIN}, 403, 7, id="origin"),
        pytest.param("POST", "/generate", "{}", {"x-api-key": "sk-wrong"}, 401, 16, id="bad-key"),
    ],
)
def test_envoys_reply_to_http_json_logs_the_code_in_its_body(
    secure: SecureStack,
    method: str,
    path: str,
    body: str | None,
    headers: dict[str, str],
    status: int,
    code: int,
) -> None:
    response, request_id = _http(secure, method, path, body, **headers)
    assert (response.status_code, response.json()["code"]) == (status, code), response.text
    assert CODE_HEADER not in response.headers  # the log's, removed before the reply leaves
    assert _logged(secure, request_id) == (status, code)


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        pytest.param("/v1/assistants", "{}", 404, 5, id="unknown-path"),
        pytest.param("/v1/completions", TOO_LARGE, 413, 8, id="body-too-large"),
    ],
)
def test_envoys_reply_on_an_openai_path_logs_the_code_its_envelope_stands_for(
    secure: SecureStack, path: str, body: str, status: int, code: int
) -> None:
    response, request_id = _http(secure, "POST", path, body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert _logged(secure, request_id) == (status, code)


def test_headers_too_large_log_the_code_in_the_body(secure: SecureStack) -> None:
    offset = access_log_size(secure.stack)
    response = httpx.get(
        secure.stack.http_url + "/listcells", headers={**KEY, "x-pad": "p" * (20 << 10)}
    )
    assert (response.status_code, response.json()["code"]) == (431, 8), response.text
    assert CODE_HEADER not in response.headers
    # Envoy refused the headers before it had a request ID: the line is the next 431. It
    # used to log null.
    line = access_log_line_after(secure.stack, offset, lambda line: line["status"] == 431)
    assert line["grpc_status"] == 8


def test_an_access_log_line_stays_under_16_kib_whatever_the_caller_sends(
    secure: SecureStack,
) -> None:
    # Docker's and Kubernetes' log files split a line at 16 KiB, and a split JSON line is two
    # broken ones. Envoy writes each byte of a header that is not UTF-8 as \u00XX (6 bytes):
    # these ~14 KB of headers, within the stack's 16 KiB limit, made a line of ~60 KB.
    marker = uuid.uuid4().hex
    path = f"/{marker}" + "p" * 3000
    headers = {
        b"x-api-key": TEAM_A_KEY.encode(),
        b"x-request-id": b"\xff" * 3000,
        b"user-agent": b"\xfe" * 5000,
        b"traceparent": b"t" * 2000,
    }
    offset = access_log_size(secure.stack)
    response = httpx.get(secure.stack.http_url + path, headers=headers)
    assert response.status_code == 404, response.text
    line = access_log_line_after(secure.stack, offset, lambda line: marker in str(line["path"]))
    log = Path(secure.stack.settings.log_dir or "") / "envoy.log"
    [raw] = [text for text in log.read_bytes().splitlines() if marker.encode() in text]
    assert len(raw) < 16 << 10, len(raw)
    # Each field a prefix of what was sent: still enough to find the call by.
    assert line["path"] == path[:512]
    assert line["request_id"] == "\xff" * LOGGED_ID_CHARS
    assert line["user_agent"] == "\xfe" * 256


def _grpc(secure: SecureStack, message: Message, *headers: str) -> tuple[str, str]:
    """A native gRPC Generate call over h2c (`native_headers`: curl sends any header,
    grpc-timeout included); the grpc-status it got and its request ID."""
    request_id = str(uuid.uuid4())
    sent = dict(header.split(": ", 1) for header in headers)
    url = f"{secure.stack.http_url}{SERVICE}/Generate"
    got = native_headers(url, message, {**sent, "x-request-id": request_id})
    assert CODE_HEADER not in got
    return got["grpc-status"], request_id


@pytest.mark.parametrize(
    ("message", "headers", "code"),
    [
        pytest.param(BIG_MESSAGE, (), 8, id="message-too-large"),
        pytest.param(SMALL_MESSAGE, ("content-encoding: gzip",), 12, id="compressed"),
        pytest.param(SMALL_MESSAGE, ("grpc-timeout: soon",), 3, id="bad-timeout"),
        pytest.param(SMALL_MESSAGE, (f"origin: {FOREIGN_ORIGIN}",), 7, id="origin"),
    ],
)
def test_envoys_reply_to_grpc_logs_its_grpc_status(
    secure: SecureStack, message: Message, headers: tuple[str, ...], code: int
) -> None:
    status, request_id = _grpc(secure, message, f"x-api-key: {TEAM_A_KEY}", *headers)
    assert status == str(code)
    assert _logged(secure, request_id) == (200, code)


def _grpc_web(secure: SecureStack, message: Message, **headers: str) -> tuple[httpx.Response, str]:
    request_id = str(uuid.uuid4())
    sent = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1", **KEY, **headers}
    response = httpx.post(
        f"{secure.stack.http_url}{SERVICE}/Generate",
        content=_frame(message),
        headers={**sent, "x-request-id": request_id},
        timeout=30,
    )
    return response, request_id


def _grpc_web_status(response: httpx.Response) -> tuple[int, str, object]:
    """What a grpc-web client got for a reply Envoy made itself: the HTTP status, the
    grpc-status and the code of the google.rpc.Status in grpc-status-details-bin."""
    code = status_details(response.headers["grpc-status-details-bin"]).code
    return response.status_code, response.headers["grpc-status"], code


@pytest.mark.parametrize(
    ("message", "headers", "code"),
    [
        pytest.param(BIG_MESSAGE, {}, 8, id="message-too-large"),
        pytest.param(SMALL_MESSAGE, {"content-encoding": "gzip"}, 12, id="compressed"),
        pytest.param(SMALL_MESSAGE, {"grpc-timeout": "soon"}, 3, id="bad-timeout"),
        pytest.param(SMALL_MESSAGE, {"origin": FOREIGN_ORIGIN}, 7, id="origin"),
    ],
)
def test_envoys_reply_to_grpc_web_logs_its_grpc_status(
    secure: SecureStack, message: Message, headers: dict[str, str], code: int
) -> None:
    # As to gRPC (tests/e2e/security/test_grpc_web_replies.py): HTTP 200, the mapper's code.
    response, request_id = _grpc_web(secure, message, **headers)
    assert _grpc_web_status(response) == (200, str(code), code)
    assert CODE_HEADER not in response.headers
    assert _logged(secure, request_id) == (200, code)


def test_a_rate_limited_call_logs_resource_exhausted(secure: SecureStack) -> None:
    # `bursty` may make 3 calls at once and 1 a second: calls in a row soon get 429 (JSON
    # code 8), which the log held as Envoy's reading of a 429, 14.
    bursty = {"x-api-key": BURSTY_KEY}
    for _ in range(10):
        response, request_id = _http(secure, "GET", "/listcells", None, **bursty)
        if response.status_code == 429:
            break
    assert (response.status_code, response.json()["code"]) == (429, 8), response.text
    assert _logged(secure, request_id) == (429, 8)
    for _ in range(10):
        status, request_id = _grpc(secure, SMALL_MESSAGE, f"x-api-key: {BURSTY_KEY}")
        if status == "8":
            break
    assert status == "8"
    assert _logged(secure, request_id) == (200, 8)
    for _ in range(10):
        response, request_id = _grpc_web(secure, SMALL_MESSAGE, **bursty)
        if response.headers.get("grpc-status") == "8":
            break
    assert _grpc_web_status(response) == (200, "8", 8)
    assert _logged(secure, request_id) == (200, 8)


SLOW = "/sax/test/sec-log-slow"


@pytest.fixture(scope="module")
def slow_model(secure: SecureStack) -> Iterator[str]:
    """50 tokens, 0.1 s apart: a call the client gives up is still running."""
    overrides = {"text": " ".join(["tok"] * 50), "delay_ms": "100"}
    with secure.published(SLOW, overrides) as name:
        yield name


def _cancelled(secure: SecureStack, request_id: str, status: int) -> None:
    line = access_log_line(secure.stack, request_id)
    # Envoy used to log 2 (its reading of a 200 without a status) or null (no reply yet).
    assert (line["status"], line["grpc_status"]) == (status, 1), line
    assert line["response_flags"] in ("DC", "DR")


def test_an_sse_stream_the_client_closed_logs_cancelled(
    secure: SecureStack, slow_model: str
) -> None:
    request_id = str(uuid.uuid4())
    with (
        httpx.Client(base_url=secure.stack.http_url, headers=KEY, timeout=30) as http,
        http.stream(
            "POST",
            "/generate_stream",
            json={"model": slow_model, "query": "q"},
            headers={"x-request-id": request_id},
        ) as response,
    ):
        assert response.status_code == 200
        assert next(line for line in response.iter_lines() if line.startswith("data:"))
    _cancelled(secure, request_id, 200)


def test_an_http_call_the_client_gave_up_logs_cancelled(
    secure: SecureStack, slow_model: str
) -> None:
    request_id = str(uuid.uuid4())
    headers = {**KEY, "x-request-id": request_id}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            secure.stack.http_url + "/generate",
            json={"model": slow_model, "query": "q"},
            headers=headers,
            timeout=httpx.Timeout(30, read=0.5),
        )
    _cancelled(secure, request_id, 0)


def test_a_grpc_stream_the_client_cancelled_logs_cancelled(
    secure: SecureStack, slow_model: str
) -> None:
    request_id = str(uuid.uuid4())
    metadata = (("x-api-key", TEAM_A_KEY), ("x-request-id", request_id))
    with sync_channel(secure.stack.grpc_address) as channel:
        call = gateway_pb2_grpc.SaxGatewayStub(channel).GenerateStream(
            pb.GenerateStreamRequest(model=slow_model, query="q"), metadata=metadata, timeout=30
        )
        assert next(call).deltas[0].text == "tok"
        call.cancel()
    _cancelled(secure, request_id, 200)


def test_a_grpc_call_the_client_cancelled_logs_cancelled(
    secure: SecureStack, slow_model: str
) -> None:
    request_id = str(uuid.uuid4())
    metadata = (("x-api-key", TEAM_A_KEY), ("x-request-id", request_id))
    forwarded = envoy_stat(secure.stack, FORWARDED)
    with sync_channel(secure.stack.grpc_address) as channel:
        call = gateway_pb2_grpc.SaxGatewayStub(channel).Generate.future(
            pb.GenerateRequest(model=slow_model, query="q"), metadata=metadata, timeout=30
        )
        # The request is with the gateway, which waits for the model (5 s): cancelled before
        # it reached Envoy, it would leave no line at all.
        wait_forwarded(secure.stack, forwarded)
        assert call.cancel()
        assert call.code() == grpc.StatusCode.CANCELLED
    _cancelled(secure, request_id, 0)


def test_a_grpc_web_stream_the_client_closed_logs_cancelled(
    secure: SecureStack, slow_model: str
) -> None:
    request_id = str(uuid.uuid4())
    headers = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1", **KEY}
    with (
        httpx.Client(base_url=secure.stack.http_url, timeout=30) as http,
        http.stream(
            "POST",
            f"{SERVICE}/GenerateStream",
            content=_frame(pb.GenerateStreamRequest(model=slow_model, query="q")),
            headers={**headers, "x-request-id": request_id},
        ) as response,
    ):
        assert response.status_code == 200
        assert next(response.iter_bytes())
    _cancelled(secure, request_id, 200)


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ({"extra_inputs": {"per_example_max_decode_steps": 2}}, 0),
        ({"timeout": "0.35s"}, 4),  # an in-band DEADLINE_EXCEEDED, the stream's last event
    ],
)
def test_an_sse_stream_the_gateway_ended_logs_its_status(
    secure: SecureStack, slow_model: str, extra: dict[str, object], code: int
) -> None:
    request_id = str(uuid.uuid4())
    body = {"model": slow_model, "query": "q", **extra}
    response = httpx.post(
        secure.stack.http_url + "/generate_stream",
        json=body,
        headers={**KEY, "x-request-id": request_id},
        timeout=30,
    )
    assert response.status_code == 200
    assert '"done":true' in response.text
    assert _logged(secure, request_id) == (200, code)
