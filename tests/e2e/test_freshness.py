"""A publish is usable at once, through Envoy and its gateways, round after round (issue #11).

The session stack runs two gateway processes behind Envoy, which alternates between them: a
publish answered by one is followed by a generate on the other. Before the fix, a gateway kept
a NOT_FOUND for 5 s and the generate came back 404 "is not published".
"""

from __future__ import annotations

import grpc
import httpx
import pytest
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc

from gateway.launch.stack import Stack
from tests._grpc import sync_channel
from tests.e2e._published import TEST_LM, published

ROUNDS = 50


def test_publish_generate_unpublish_loop_through_envoy(stack: Stack, http: httpx.Client) -> None:
    assert len(stack.gateway_addresses) == 2  # Envoy spreads the calls over both
    model = "/sax/test/loop-http"
    for round_ in range(ROUNDS):
        publish = http.post(
            "/publish",
            json={"model": model, "model_path": TEST_LM, "checkpoint": "None", "replicas": 1},
        )
        assert publish.status_code == 200, (round_, publish.text)
        generate = http.post("/generate", json={"model": model, "query": "again"})
        assert generate.status_code == 200, (round_, generate.text)
        assert generate.json() == {"texts": [{"text": "again", "score": -0.1}]}
        unpublish = http.post("/unpublish", json={"model": model})
        assert unpublish.status_code == 200, (round_, unpublish.text)


def test_publish_generate_unpublish_loop_through_one_gateway(stack: Stack) -> None:
    model = "/sax/test/loop-grpc"
    with sync_channel(stack.gateway_addresses[0]) as channel:
        gateway = gateway_pb2_grpc.SaxGatewayStub(channel)
        for _ in range(ROUNDS):
            gateway.PublishModel(
                pb.PublishModelRequest(
                    model=model, model_path=TEST_LM, checkpoint="None", replicas=1
                ),
                timeout=30,
            )
            reply = gateway.Generate(pb.GenerateRequest(model=model, query="once"), timeout=30)
            assert [(t.text, round(t.score, 6)) for t in reply.texts] == [("once", -0.1)]
            gateway.UnpublishModel(pb.UnpublishModelRequest(model=model), timeout=30)


def test_a_model_published_on_the_other_gateway_is_found(stack: Stack) -> None:
    model = "/sax/test/other-gateway"
    one, two = (sync_channel(a) for a in stack.gateway_addresses)
    first, second = gateway_pb2_grpc.SaxGatewayStub(one), gateway_pb2_grpc.SaxGatewayStub(two)
    try:
        for _ in range(5):
            try:
                second.Generate(pb.GenerateRequest(model=model, query="x"), timeout=30)
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.NOT_FOUND
            else:
                raise AssertionError("an unpublished model answered")
            first.PublishModel(
                pb.PublishModelRequest(
                    model=model, model_path=TEST_LM, checkpoint="None", replicas=1
                ),
                timeout=30,
            )
            reply = second.Generate(pb.GenerateRequest(model=model, query="seen"), timeout=30)
            assert [t.text for t in reply.texts] == ["seen"]
            first.UnpublishModel(pb.UnpublishModelRequest(model=model), timeout=30)
    finally:
        try:
            first.UnpublishModel(pb.UnpublishModelRequest(model=model), timeout=30)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.NOT_FOUND
        one.close()
        two.close()


def test_update_takes_effect_at_once_and_an_override_can_be_removed(
    stack: Stack, http: httpx.Client
) -> None:
    with published(stack, "/sax/test/updated", TEST_LM, {"text": "old words"}) as model:

        def generate() -> object:
            response = http.post("/generate", json={"model": model, "query": "echo me"})
            assert response.status_code == 200, response.text
            return response.json()

        assert generate() == {"texts": [{"text": "old words", "score": -0.2}]}
        changed = http.put("/update", json={"model": model, "overrides": {"text": "new ones"}})
        assert changed.status_code == 200, changed.text
        assert changed.json()["overrides"] == {"text": "new ones"}
        assert generate() == {"texts": [{"text": "new ones", "score": -0.2}]}
        cleared = http.put("/update", json={"model": model, "clear_overrides": True})
        assert cleared.status_code == 200, cleared.text
        assert cleared.json()["overrides"] == {}
        assert generate() == {"texts": [{"text": "echo me", "score": -0.2}]}
        assert http.get("/v1/sax/test/updated").json()["model"]["overrides"] == {}


def test_an_acl_set_through_one_gateway_holds_at_once_on_the_other(stack: Stack) -> None:
    # `saxgw up --workers 2`: Envoy sends the call after a SetAcl to either process. The
    # other one kept the ACLs it had read for up to two seconds (`auth.acl_cache_seconds`,
    # then as long again while renewing), so a revoked ACL still let every other call in.
    with published(stack, "/sax/test/acl-other-gateway", TEST_LM) as model:
        one, two = (sync_channel(a) for a in stack.gateway_addresses)
        first, second = gateway_pb2_grpc.SaxGatewayStub(one), gateway_pb2_grpc.SaxGatewayStub(two)
        try:
            query = pb.GenerateRequest(model=model, query="q")
            second.Generate(query, timeout=30)  # the second process reads the ACLs: none
            for acl in ("acl/nobody", "", "acl/nobody"):
                first.SetAcl(
                    pb.SetAclRequest(name=model, method="lm.generate", acl=acl), timeout=30
                )
                if not acl:
                    assert [t.text for t in second.Generate(query, timeout=30).texts] == ["q"]
                    continue
                with pytest.raises(grpc.RpcError) as refused:
                    second.Generate(query, timeout=30)
                assert (refused.value.code(), refused.value.details()) == (
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"lm.generate on {model} is limited to {acl}; client anonymous is not in it",
                )
            # Published anew under the name, without the ACL: no stale 403 on the other.
            first.UnpublishModel(pb.UnpublishModelRequest(model=model), timeout=30)
            first.PublishModel(
                pb.PublishModelRequest(
                    model=model, model_path=TEST_LM, checkpoint="None", replicas=1
                ),
                timeout=30,
            )
            assert [t.text for t in second.Generate(query, timeout=30).texts] == ["q"]
        finally:
            one.close()
            two.close()
