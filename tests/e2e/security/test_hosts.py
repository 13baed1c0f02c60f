"""DNS rebinding: a loopback listener answers loopback host names and those the config adds,
and refuses every other Host (gateway/edge/_hosts.py), before anything reaches the cell.

The attack: a page at http://evil.example:8888 whose name its owner then points at 127.0.0.1
is, to the browser, same-origin with a local `saxgw up` stack: its requests carry
`Host: evil.example:8888` and a matching `Origin`, which the Origin check lets through."""

from __future__ import annotations

import json
from http.client import HTTPConnection

import grpc
import httpx
import pytest
from google.rpc import status_pb2
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc

from gateway.edge._hosts import REFUSAL, SEVERAL_HOSTS
from gateway.launch.stack import Stack
from tests._grpc import sync_channel
from tests.e2e._bodies import envoy_error, openai_error
from tests.e2e._browser import ROOT, run_in_chromium
from tests.e2e._grpc_replies import (
    envoy_status,
    grpc_web_call,
    status_details,
    trailers_only_message,
)
from tests.e2e._published import TEST_LM
from tests.e2e.security.conftest import ALLOWED_HOST, TEAM_A_KEY, SecureStack

pytestmark = pytest.mark.e2e

EVIL = "evil.example:8888"
ARTIFACTS = ROOT / ".artifacts"


def _port(stack: Stack) -> int:
    return stack.envoy.listen_port


def test_a_rebound_page_cannot_drive_a_local_stack(stack: Stack, http: httpx.Client) -> None:
    name = "/sax/test/rebound"
    page = {"Host": EVIL, "Origin": f"http://{EVIL}", "Content-Type": "text/plain"}
    body = f'{{"model":"{name}","model_path":"{TEST_LM}","checkpoint":"None","replicas":0}}'
    refused = http.post("/publish", content=body, headers=page)
    assert refused.status_code == 421, refused.text
    assert refused.json() == envoy_error(refused, 7, REFUSAL)
    # Nothing was published; reads, the page's preflights and gRPC paths are refused too.
    assert http.get("/listcell", params={"model": name}).status_code == 404
    for method, path in (("GET", "/"), ("OPTIONS", "/publish"), ("GET", "/openapi.json")):
        response = http.request(method, path, headers=page)
        assert (response.status_code, response.json()) == (
            421,
            envoy_error(response, 7, REFUSAL),
        ), path
    # The OpenAI-compatible paths answer in OpenAI's envelope, as for their other refusals.
    openai = http.post("/v1/completions", json={"model": "m", "prompt": "p"}, headers=page)
    assert openai.status_code == 421, openai.text
    assert openai.json() == {"error": openai_error(REFUSAL, "permission_error")}
    # Health checks are answered whatever the Host.
    assert http.get("/healthz", headers={"Host": EVIL}).status_code == 200


def test_loopback_names_are_answered_with_any_port(stack: Stack, http: httpx.Client) -> None:
    port = _port(stack)
    hosts = [
        f"127.0.0.1:{port}",
        f"localhost:{port}",
        "localhost",
        f"LocalHost:{port}",
        f"saxgw.localhost:{port}",
        f"[::1]:{port}",
        "localhost:18888",  # a port forward (ssh -L, kubectl port-forward) keeps the name
        # A name with the root's dot (`curl http://localhost.:8888`) is the same name.
        "localhost.",
        f"localhost.:{port}",
        f"saxgw.localhost.:{port}",
    ]
    for host in hosts:
        response = http.get("/", headers={"Host": host})
        assert response.status_code == 200, (host, response.text)
    assert http.get("/healthz", headers={"Host": f"localhost:{port}"}).status_code == 200
    # A DNS name that merely starts like a loopback address is no loopback name.
    for host in ("127.evil.example", "localhost.evil.example", f"evil.localhost.example:{port}"):
        assert http.get("/", headers={"Host": host}).status_code == 421, host


def _get_info(address: str, authority: str) -> grpc.RpcError | pb.GetInfoResponse:
    with sync_channel(address, [("grpc.default_authority", authority)]) as channel:
        stub = gateway_pb2_grpc.SaxGatewayStub(channel)
        try:
            reply: pb.GetInfoResponse = stub.GetInfo(pb.GetInfoRequest(), timeout=20)
            return reply
        except grpc.RpcError as exc:
            return exc


def test_grpc_clients_name_the_stack_by_loopback_authority(stack: Stack) -> None:
    port = _port(stack)
    for authority in (f"127.0.0.1:{port}", f"localhost:{port}"):
        reply = _get_info(stack.grpc_address, authority)
        assert isinstance(reply, pb.GetInfoResponse), (authority, reply)
    refused = _get_info(stack.grpc_address, EVIL)
    assert isinstance(refused, grpc.RpcError)
    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
    assert REFUSAL in (refused.details() or "")
    # Its status details name the request, as those of Envoy's other refusals do (and the
    # 421's JSON body): it had none, the refusing virtual host not copying the request's ID
    # into the reply before `grpc_failures` read it there.
    trailers = {m.key: m.value for m in refused.trailing_metadata() or ()}
    details = status_pb2.Status.FromString(bytes(trailers["grpc-status-details-bin"]))
    assert details == envoy_status(7, REFUSAL, str(trailers["x-request-id"]))
    web = grpc_web_call(
        stack.http_url + "/saxgateway.v1.SaxGateway/GetInfo", pb.GetInfoRequest(), {"Host": EVIL}
    )
    assert trailers_only_message(web, 7) == REFUSAL
    assert status_details(web.headers["grpc-status-details-bin"]) == envoy_status(
        7, REFUSAL, web.headers["x-request-id"]
    )


def test_a_host_the_config_allows_is_answered(secure: SecureStack) -> None:
    key = {"x-api-key": TEAM_A_KEY}
    with httpx.Client(base_url=secure.stack.http_url, timeout=30) as http:
        port = _port(secure.stack)
        for host in (ALLOWED_HOST, f"{ALLOWED_HOST}:{port}", f"{ALLOWED_HOST}.:{port}"):
            response = http.get("/", headers={"Host": host, **key})
            assert response.status_code == 200, (host, response.text)
            assert response.json()["message"] == "HTTP Server for SAX Client"
        other = http.get("/", headers={"Host": "other.saxgw.test", **key})
        assert other.status_code == 421, other.text
        assert other.json() == envoy_error(other, 7, REFUSAL)
        # Without a credential, that is what the caller hears first.
        anonymous = http.post("/publish", json={}, headers={"Host": "other.saxgw.test"})
        assert anonymous.status_code == 401, anonymous.text


def test_chromium_on_a_rebound_name_gets_421(stack: Stack, http: httpx.Client) -> None:
    # The whole attack in a real browser: its Host and Origin headers are its own.
    page = run_in_chromium("rebinding.mjs", [str(_port(stack)), TEST_LM], ARTIFACTS)
    assert page["landing"]["status"] == 421
    for call in ("publish", "list"):
        assert page[call]["status"] == 421, page
        assert json.loads(page[call]["body"])["message"] == REFUSAL
    assert (
        http.get("/listcell", params={"model": "/sax/test/rebound-in-chromium"}).status_code == 404
    )


@pytest.mark.parametrize(
    "hosts",
    [("localhost", "localhost"), (EVIL, "localhost"), ("localhost", EVIL), ("localhost,b",)],
)
def test_more_than_one_host_is_a_400(stack: Stack, hosts: tuple[str, ...]) -> None:
    # RFC 9112 3.2 wants a 400 for a request with two Host lines, or one that is not a host.
    # Envoy joined them (`localhost,evil.example:8888`): a 421 on loopback, and served where
    # every Host is answered, while a proxy in front may have read only the first.
    connection = HTTPConnection("127.0.0.1", _port(stack), timeout=30)
    try:
        connection.putrequest("GET", "/listcells", skip_host=True)
        for host in hosts:
            connection.putheader("Host", host)
        connection.endheaders()
        response = connection.getresponse()
        body = json.loads(response.read())
    finally:
        connection.close()
    assert response.status == 400, body
    assert body["code"] == 3 and body["message"] == SEVERAL_HOSTS
