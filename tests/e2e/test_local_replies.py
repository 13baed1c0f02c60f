"""Every error an HTTP client gets is JSON with an x-request-id, Envoy's own replies included.

Envoy answers some requests itself (bad JSON, unknown path or query parameter, too large, no
healthy gateway); `local_reply_config` gives them the gateway's error shape, and on the OpenAI
paths OpenAI's envelope. Success bodies, the OpenAPI document Envoy serves with
direct_response included, stay untouched.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from http.client import HTTPConnection

import httpx
import openai
import pytest
from saxgateway.v1.gateway_pb2 import ListCellsRequest
from saxml.protobuf import admin_pb2

from gateway.client import ClientSettings
from gateway.config import GatewaySettings
from gateway.launch._methods import ENVOY_GET_PATHS
from gateway.launch.processes import free_port
from gateway.launch.stack import Stack, StackSettings
from tests._stacks import logs_dir, loopback_envoy
from tests.e2e._access_log import access_log_line
from tests.e2e._bodies import REQUEST_INFO, documented_error, envoy_error, openai_error
from tests.e2e._grpc_replies import grpc_web_call, native_headers, trailers_only_message

CELL = "/sax/test"


def _request_info(request_id: str) -> dict[str, str]:
    return {"@type": REQUEST_INFO, "request_id": request_id}


def assert_local_reply(response: httpx.Response, status: int, code: int) -> dict[str, object]:
    """An error Envoy made itself: JSON in the gateway's shape, carrying the request ID."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    request_id = response.headers["x-request-id"]
    body = documented_error(response.json())
    assert set(body) == {"code", "message", "details", "request_id"}
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert body["details"] == [_request_info(request_id)]
    assert body["request_id"] == request_id
    return dict(body)


def test_malformed_json_is_a_json_400(http: httpx.Client) -> None:
    response = http.post(
        "/generate",
        content=b'{"model": "/sax/test/x", ',
        headers={"content-type": "application/json"},
    )
    assert_local_reply(response, 400, 3)


def test_wrong_field_type_is_a_json_400(http: httpx.Client) -> None:
    response = http.post("/generate", json={"model": "/sax/test/x", "query": {"not": "text"}})
    assert_local_reply(response, 400, 3)


def test_unknown_path_is_a_json_404(http: httpx.Client) -> None:
    assert_local_reply(http.get("/no/such/path"), 404, 5)


PATH_NOT_NORMALIZED = (
    "the path cannot be normalized: it holds a fragment (#...), which a client keeps to itself,"
    " or an encoded NUL"
)

QUERY_WITHOUT_TYPE = (
    "a QUERY request needs a Content-Type naming its body's media type; no path of this API"
    " takes QUERY (it is a 405 naming those a path takes)"
)


@pytest.mark.parametrize(
    ("method", "target", "host", "status", "code", "message"),
    [
        ("GET", "/listcells", False, 400, 3, "the request has no Host header"),
        ("GET", "/list%00cells", True, 400, 3, PATH_NOT_NORMALIZED),
        # A fragment is the client's own (RFC 9110 4.2.5); the message blamed a NUL.
        ("GET", "/listcells#top", True, 400, 3, PATH_NOT_NORMALIZED),
        # HTTP's QUERY method (a GET with a body) without the Content-Type it must carry:
        # refused as that, by Envoy, with "message": "" too (a fuzzer's undeclared method).
        ("QUERY", "/listcells", True, 400, 3, QUERY_WITHOUT_TYPE),
        (
            "OPTIONS",
            "*",
            True,
            404,
            5,
            "the request target must be a path such as /generate (OPTIONS * is not served)",
        ),
        # Envoy's 403 "Forbidden", which read as a denial.
        (
            "GET",
            "https://localhost/listcells",
            True,
            400,
            3,
            "an https:// request target on a plaintext connection: send http://, or https://"
            " to a port that serves TLS",
        ),
    ],
)
def test_a_request_refused_before_any_route_says_why(
    stack: Stack, method: str, target: str, host: bool, status: int, code: int, message: str
) -> None:
    # Envoy refuses these before it has a route or a request ID; its reply said "message": "".
    url = httpx.URL(stack.http_url)
    connection = HTTPConnection(url.host, url.port, timeout=30)
    try:
        connection.putrequest(method, target, skip_host=not host)
        if host:
            connection.putheader("Host", "localhost")
        connection.endheaders()
        response = connection.getresponse()
        body = documented_error(json.loads(response.read()))
    finally:
        connection.close()
    assert (response.status, response.getheader("content-type")) == (status, "application/json")
    assert body == {
        "code": code,
        "message": message,
        "details": [{"@type": REQUEST_INFO, "request_id": None}],
        "request_id": None,
    }
    assert response.getheader("x-request-id") is None  # README: the replies without one


def test_a_method_envoy_does_not_know_is_a_json_400_without_a_request_id(stack: Stack) -> None:
    # Refused as it is parsed, before there is a request to give an ID (README).
    url = httpx.URL(stack.http_url)
    connection = HTTPConnection(url.host, url.port, timeout=30)
    try:
        connection.request("FOO", "/generate", headers={"x-request-id": "mine"})
        response = connection.getresponse()
        body = documented_error(json.loads(response.read()))
    finally:
        connection.close()
    assert (response.status, response.getheader("x-request-id")) == (400, None)
    assert body == {
        "code": 3,
        "message": "Bad Request",
        "details": [{"@type": REQUEST_INFO, "request_id": None}],
        "request_id": None,
    }


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",  # both: request smuggling
        b"Content-Length: abc\r\n",
    ],
)
def test_a_body_of_unclear_length_is_a_documented_json_400_without_a_request_id(
    stack: Stack, framing: bytes
) -> None:
    # Refused as it is parsed (README): "request_id": null, which the OpenAPI document's
    # Error schema, a string, did not allow.
    url = httpx.URL(stack.http_url)
    head = b"POST /generate HTTP/1.1\r\nHost: localhost\r\nx-request-id: mine\r\n" + framing
    with socket.create_connection((url.host, url.port), timeout=10) as sock:
        sock.sendall(head + b"\r\n0\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):  # Envoy closes the connection after its reply
            reply += chunk
    head_lines, _, body = reply.partition(b"\r\n\r\n")
    assert head_lines.startswith(b"HTTP/1.1 400 Bad Request"), reply[:300]
    assert b"\r\ncontent-type: application/json\r\n" in head_lines
    assert b"x-request-id" not in head_lines
    assert documented_error(json.loads(body)) == {
        "code": 3,
        "message": "Bad Request",
        "details": [{"@type": REQUEST_INFO, "request_id": None}],
        "request_id": None,
    }


TRANSFER_CODING = (
    "Transfer-Encoding: this server implements only the chunked transfer coding: send the"
    " body with Content-Length, or chunked alone"
)


def _raw_reply(stack: Stack, request: bytes) -> tuple[int, dict[str, object]]:
    """Sends ``request`` as is; the reply's status and JSON body (Envoy closes after it)."""
    url = httpx.URL(stack.http_url)
    with socket.create_connection((url.host, url.port), timeout=30) as connection:
        connection.sendall(request)
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


@pytest.mark.parametrize("coding", ["gzip, chunked", "gzip", "chunked, chunked"])
def test_a_transfer_coding_other_than_chunked_is_a_501_saying_so(stack: Stack, coding: str) -> None:
    # RFC 9112 6.1: a transfer coding the server does not implement is a 501 (README). Envoy
    # refuses before it reads the headers: no request ID. It said "Not Implemented".
    request = (
        f"POST /generate HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: {coding}\r\n"
        "\r\n2\r\n{}\r\n0\r\n\r\n"
    )
    status, body = _raw_reply(stack, request.encode())
    assert (status, documented_error(body)) == (
        501,
        {
            "code": 12,
            "message": TRANSFER_CODING,
            "details": [{"@type": REQUEST_INFO, "request_id": None}],
            "request_id": None,
        },
    )


UPGRADES_NOT_SERVED = (
    "protocol upgrades (WebSocket, CONNECT) are not served: send plain HTTP requests;"
    " streams are server-sent events (/generate_stream) or gRPC"
)


@pytest.mark.parametrize(
    ("method", "target", "headers"),
    [
        # A client that takes the port for a forward proxy: held, with no reply, until the
        # stream idle timeout (the buffer filter waited for the end of a tunnel's body).
        ("CONNECT", "example.com:443", {"Host": "example.com:443"}),
        ("CONNECT", "localhost:443", {"Host": "localhost:443"}),
        # Envoy's 403 with "message": "", which read as a denial.
        ("GET", "/listcells", {"Host": "localhost", "Connection": "Upgrade", "Upgrade": "ws"}),
    ],
)
def test_a_protocol_upgrade_is_refused_at_once_saying_why(
    stack: Stack, method: str, target: str, headers: dict[str, str]
) -> None:
    url = httpx.URL(stack.http_url)
    connection = HTTPConnection(url.host, url.port, timeout=10)
    try:
        connection.putrequest(method, target, skip_host=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        body = documented_error(json.loads(response.read()))
    finally:
        connection.close()
    assert (response.status, response.getheader("content-type")) == (501, "application/json")
    request_id = response.getheader("x-request-id")
    assert body == {
        "code": 12,
        "message": UPGRADES_NOT_SERVED,
        "details": [{"@type": REQUEST_INFO, "request_id": request_id}],
        "request_id": request_id,
    }


def test_a_websocket_upgrade_of_an_openai_path_is_refused_in_openais_envelope(
    stack: Stack,
) -> None:
    # As the Responses API's WebSocket mode asks: the native body before, which an OpenAI SDK
    # reads no message from.
    headers = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13"}
    response = httpx.get(f"{stack.http_url}/v1/responses", headers=headers, timeout=10)
    assert (response.status_code, response.headers["content-type"]) == (501, "application/json")
    assert response.headers["x-should-retry"] == "false"  # as the gateway's own 501s
    assert response.json() == {
        "error": {
            "message": "protocol upgrades (WebSocket, CONNECT) are not served: send plain HTTP"
            ' requests; streams are server-sent events ("stream": true)',
            "type": "invalid_request_error",
            "param": None,
            "code": "unsupported",
        }
    }


def test_unknown_query_parameter_is_a_json_400(http: httpx.Client) -> None:
    response = http.get("/listcell", params={"model": "/sax/test/x", "colour": "blue"})
    assert_local_reply(response, 400, 3)


def test_body_over_the_message_limit_is_a_json_413(http: httpx.Client) -> None:
    # Over Envoy's 32 MiB body limit: its buffer filter stops it with 413 before any gateway
    # reads it (not gRPC's RESOURCE_EXHAUSTED 429, which clients would retry).
    huge = b'{"model": "/sax/test/x", "query": "' + b"a" * (40 << 20) + b'"}'
    response = http.post("/generate", content=huge, headers={"content-type": "application/json"})
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == envoy_error(response, 8, "Payload Too Large")


@pytest.mark.parametrize("content_type", [b"Content-Type: application/json\r\n", b""])
def test_a_body_declared_over_the_limit_is_a_413_before_it_is_sent(
    stack: Stack, content_type: bytes
) -> None:
    # The buffer filter answered only once the limit's worth had arrived: a client that
    # declared 40 MiB and sent little held its connection, with no reply, for minutes.
    url = httpx.URL(stack.http_url)
    head = b"POST /generate HTTP/1.1\r\nHost: localhost\r\n" + content_type
    with socket.create_connection((url.host, url.port), timeout=10) as sock:
        sock.sendall(head + b"Content-Length: %d\r\n\r\n{" % (40 << 20))
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)  # socket.timeout: no answer within 10 s
            if not chunk:
                break
            reply += chunk
    head_lines, _, body = reply.partition(b"\r\n\r\n")
    assert head_lines.startswith(b"HTTP/1.1 413 Payload Too Large"), reply[:300]
    request_id = dict(
        line.decode().lower().split(": ", 1) for line in head_lines.split(b"\r\n")[1:]
    )["x-request-id"]
    assert documented_error(json.loads(body)) == {
        "code": 8,
        "message": "Payload Too Large",
        "details": [{"@type": REQUEST_INFO, "request_id": request_id}],
        "request_id": request_id,
    }


def test_a_20_mb_body_gets_a_json_error(http: httpx.Client) -> None:
    image = "A" * (20 << 20)  # valid base64, over the gateway's 10 MiB payload limit
    response = http.post("/classify", json={"model": "/sax/test/x", "image_bytes": image})
    assert response.status_code == 400, response.text[:300]
    body = response.json()
    assert body["code"] == 3 and "image_bytes" in body["message"]
    assert _request_info(response.headers["x-request-id"]) in [
        {k: v for k, v in d.items() if k != "serving_data"} for d in body["details"]
    ]


def test_headers_too_large_is_a_json_431(http: httpx.Client) -> None:
    response = http.get("/listcells", headers={"x-padding": "p" * (100 << 10)})
    assert response.status_code == 431
    assert response.headers["content-type"] == "application/json"
    # Envoy refuses the headers before it has a request, so there is no request ID to give.
    assert "x-request-id" not in response.headers
    assert documented_error(response.json()) == {
        "code": 8,
        "message": "Request Header Fields Too Large",
        "details": [{"@type": REQUEST_INFO, "request_id": None}],
        "request_id": None,
    }


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("POST", "/v1/assistants", 404, "Could not resolve /v1/assistants to a method."),
        ("GET", "/v1/responses", 405, "GET is not allowed on this path; it takes POST"),
        # Nothing is stored: there is no response to get or delete.
        ("GET", "/v1/responses/resp_1", 404, "Could not resolve /v1/responses/resp_1 to a method."),
        (
            "DELETE",
            "/v1/responses/resp_1",
            404,
            "Could not resolve /v1/responses/resp_1 to a method.",
        ),
        ("DELETE", "/v1/models", 405, "DELETE is not allowed on this path; it takes GET, HEAD"),
        ("GET", "/v1/chat/completions", 405, "GET is not allowed on this path; it takes POST"),
        # A query parameter the API does not know is ignored there (tests/e2e/test_openai_query.py).
        ("GET", "/v1/nope?colour=blue", 404, "Could not resolve /v1/nope to a method."),
    ],
)
def test_envoys_replies_on_openai_paths_are_openai_envelopes(
    http: httpx.Client, method: str, path: str, status: int, message: str
) -> None:
    response = http.request(method, path, headers={"x-request-id": "oai-17"})
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"] == "oai-17"  # the SDKs' `request_id`
    assert response.json() == {"error": openai_error(message)}


def test_native_v1_routes_keep_the_gateways_shape(http: httpx.Client) -> None:
    for path in ("/v1/cells?colour=blue", "/v1/sax/test:listModels?colour=blue"):
        assert_local_reply(http.get(path), 400, 3)
    assert_local_reply(http.delete("/v1/cells"), 405, 12)
    # A model ID sent as one segment, its slashes encoded, names no route, and is no OpenAI
    # path: it was a 404 in OpenAI's envelope.
    for path in ("/v1/sax%2Ftest%2Flm:generate", "/v1/sax%2ftest/lm:generate"):
        assert_local_reply(http.post(path, json={"query": "q"}), 404, 5)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/generate", "POST"),  # the seed's paths
        ("PUT", "/generate_stream", "POST"),
        ("POST", "/listcell?cell=/sax/test", "GET, HEAD"),  # HEAD wherever GET is
        ("DELETE", "/update", "POST, PUT"),  # /update takes two
        ("GET", "/v1/sax/test/lm:generate", "POST"),  # resource paths, the model in the path
        ("DELETE", "/v1/sax/test/lm", "GET, HEAD"),
        ("PUT", "/v1/sax/test:listModels", "GET, HEAD"),
        ("PATCH", "/v1/sax/test/lm:setAcl", "POST"),  # ** (a cell or a model)
    ],
)
def test_a_method_the_path_does_not_take_is_a_json_405_naming_those_it_does(
    http: httpx.Client, method: str, path: str, allowed: str
) -> None:
    # The transcoder alone answers both a wrong method and a wrong path with 404 "Could not
    # resolve": a caller would look for a typo in a path that is right.
    response = http.request(method, path, content=b"{}")
    body = assert_local_reply(response, 405, 12)
    assert body["message"] == f"{method} is not allowed on this path; it takes {allowed}"
    assert response.headers["allow"] == allowed


def test_the_files_envoy_serves_take_get_and_head_only(http: httpx.Client) -> None:
    # DELETE /openapi.json, TRACE /docs, PUT /docs/swagger-ui.css... were a 200 with the
    # file, as if each had done what it asked.
    for path in ENVOY_GET_PATHS:
        for method in ("DELETE", "PUT", "POST", "PATCH", "TRACE", "OPTIONS"):
            response = http.request(method, path + "?v=2", content=b"{}")
            body = assert_local_reply(response, 405, 12)
            assert body["message"] == f"{method} is not allowed on this path; it takes GET, HEAD"
            assert response.headers["allow"] == "GET, HEAD"
        assert http.head(path).status_code == http.get(path).status_code
    # A query string is no other path: a monitor's cache-buster was a 404 on /healthz, which
    # answers any method (HAProxy's httpchk sends OPTIONS).
    for method in ("GET", "OPTIONS"):
        health = http.request(method, "/healthz?probe=1")
        assert (health.status_code, health.content) == (200, b""), method
    assert http.get("/openapi.json?v=2").json()["openapi"].startswith("3.")
    # A browser's preflight is still CORS's to answer, not a 405.
    preflight = http.options(
        "/openapi.json",
        headers={"origin": "http://allowed.example", "access-control-request-method": "GET"},
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://allowed.example"


def test_405_leaves_paths_and_methods_the_api_has_alone(http: httpx.Client) -> None:
    assert_local_reply(http.get("/generates"), 404, 5)  # no such path: still a 404
    assert_local_reply(http.get("/v1/sax/test/lm/extra"), 404, 5)
    # Allowed methods reach the gateway, whose own 404 (no such model) stays a 404.
    response = http.put("/update", json={"model": "/sax/test/nosuch", "replicas": 1})
    assert response.status_code == 404, response.text
    assert response.json()["code"] == 5
    assert "allow" not in response.headers
    assert "allow" not in http.head("/listcell", params={"model": "/sax/test/nosuch"}).headers


def test_a_clients_request_id_is_kept(http: httpx.Client) -> None:
    response = http.get("/no/such/path", headers={"x-request-id": "my-request-17"})
    assert response.headers["x-request-id"] == "my-request-17"
    assert assert_local_reply(response, 404, 5)["request_id"] == "my-request-17"


def test_gateway_errors_carry_the_request_id(http: httpx.Client) -> None:
    response = http.get("/listcell", params={"model": "/sax/test/nosuch"})
    assert response.status_code == 404
    request_id = response.headers["x-request-id"]
    assert response.json() == {
        "code": 5,
        "message": "model /sax/test/nosuch is not published: NotFound",
        "details": [{**_request_info(request_id), "serving_data": ""}],
    }


def test_success_bodies_are_untouched(http: httpx.Client) -> None:
    openapi = http.get("/openapi.json")
    assert openapi.status_code == 200
    assert openapi.headers["x-request-id"]
    document = openapi.json()
    assert document["openapi"].startswith("3.") and "request_id" not in document
    root = http.get("/")
    assert root.status_code == 200 and root.headers["x-request-id"]
    assert "request_id" not in root.json()


@pytest.fixture(scope="module")
def dead_cell_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, str]]:
    """Envoy and a gateway in front of a cell whose location.proto names a dead admin."""
    base = tmp_path_factory.mktemp("dead-cell")
    cell_dir = base / "sax-root" / "sax" / "test"
    cell_dir.mkdir(parents=True)
    admin = f"127.0.0.1:{free_port()}"  # nothing listens there
    (cell_dir / "config.proto").write_bytes(
        admin_pb2.Config(fs_root=str(base / "fs-root")).SerializeToString()
    )
    (cell_dir / "location.proto").write_bytes(
        admin_pb2.Location(location=admin).SerializeToString()
    )
    client = ClientSettings(
        sax_root=str(base / "sax-root"),
        admin_unreachable_after=2.0,  # configurable (default 5 s): saxgw passes it down
    )
    settings = StackSettings(
        gateway=GatewaySettings(client=client, default_timeout=60.0),
        cell=None,
        gateway_ports=(free_port(),),
        envoy=loopback_envoy(),
        log_dir=str(logs_dir(base)),
    )
    with Stack(settings) as stack:
        yield stack, admin


def test_an_unreachable_admin_is_a_503_naming_cell_and_address(
    dead_cell_stack: tuple[Stack, str],
) -> None:
    stack, admin = dead_cell_stack
    # Far below the 60 s deadline the calls get: waiting it out (the bug) times out here.
    with httpx.Client(base_url=stack.http_url, timeout=40) as http:
        listing = http.get("/listall", params={"sax_cell": CELL})
        generating = http.post("/generate", json={"model": f"{CELL}/lm", "query": "q"})
    for response in (listing, generating):
        assert response.status_code == 503, response.text
        body = response.json()
        assert body["code"] == 14
        assert CELL in body["message"] and admin in body["message"], body
        assert response.headers["x-request-id"]


def test_no_healthy_gateway_is_a_json_503(dead_cell_stack: tuple[Stack, str]) -> None:
    stack, _ = dead_cell_stack
    for name, proc in stack.group.children:
        if name.startswith("gateway"):
            proc.kill()
            proc.wait()
    with httpx.Client(base_url=stack.http_url, timeout=40) as http:
        response = http.get("/listcells", headers={"x-request-id": "no-gateway-17"})
    body = assert_local_reply(response, 503, 14)
    assert "upstream" in json.dumps(body)
    line = access_log_line(stack, "no-gateway-17")  # the code of the body the client got
    assert (line["status"], line["grpc_status"]) == (503, 14)
    # A grpc-web client gets what a gRPC client gets: HTTP 200, UNAVAILABLE and the message.
    url = stack.http_url + "/saxgateway.v1.SaxGateway/ListCells"
    headers = {"x-request-id": "no-gateway-web-17"}
    web = grpc_web_call(url, ListCellsRequest(), headers)
    assert "upstream" in trailers_only_message(web, 14)
    native = native_headers(url, ListCellsRequest(), headers)
    assert (native["grpc-status"], native["grpc-message"]) == (
        web.headers["grpc-status"],
        web.headers["grpc-message"],
    )
    line = access_log_line(stack, "no-gateway-web-17")
    assert (line["status"], line["grpc_status"]) == (200, 14)
    # The OpenAI SDK gets its envelope, and raises the class it retries (5xx).
    url = stack.http_url + "/v1"
    with (
        openai.OpenAI(base_url=url, api_key="x", max_retries=0) as client,
        pytest.raises(openai.InternalServerError) as failure,
    ):
        client.models.list()
    assert failure.value.status_code == 503
    sdk_body = failure.value.body
    assert isinstance(sdk_body, dict)
    assert sdk_body == {
        "message": sdk_body["message"],
        "type": "service_unavailable_error",
        "param": None,
        "code": None,
    }
    assert "upstream" in failure.value.message


def test_memory_envoy_freed_after_large_bodies_goes_back_to_the_system(
    stack: Stack, http: httpx.Client
) -> None:
    # A body of many small numbers is about 5.5 times its size once transcoded: two of 8 MiB
    # (413 each) took Envoy's heap to ~300 MB, and tcmalloc kept the freed pages mapped for
    # good (RSS 452 MB in a 512Mi container, 14 MB in use), which Envoy's heap monitor does
    # not count. They go back to the system now, some MB a second.
    head, tail = b'{"model": "/sax/test/x", "query": "q", "extra_inputs": {"bias": [', b"1]}}"
    body = head + b"1," * ((8 << 20) // 2) + tail
    for _ in range(2):
        response = http.post(
            "/generate", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 413, response.text
    admin = f"http://{stack.envoy.admin_address}:{stack.envoy.admin_port}/memory"

    def free_mib() -> float:
        return int(httpx.get(admin, timeout=10).json()["pageheap_free"]) / 2**20

    deadline = time.monotonic() + 60
    while free_mib() > 64:
        assert time.monotonic() < deadline, f"{free_mib():.0f} MiB still free in Envoy's heap"
        time.sleep(0.5)
