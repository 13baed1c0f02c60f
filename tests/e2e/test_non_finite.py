"""A score a model returns that JSON has no number for reaches HTTP/JSON clients as proto3
JSON spells it, a string ("-Infinity", "NaN"), and the OpenAPI document says so.

The transcoder always printed them so, but the document typed every double as a number: a
client checking replies against it (or generated from it) failed on `{"logp": ["-Infinity"]}`,
a reply a real model gives for a suffix it rules out. gRPC clients get the double itself.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc

from gateway.launch.stack import Stack
from tests._grpc import sync_channel
from tests.e2e._published import TEST_LM, published

ROOT = Path(__file__).resolve().parents[2]
DOC: dict[str, Any] = json.loads((ROOT / "openapi" / "openapi.json").read_text())


def _fits(instance: object, name: str) -> None:
    schema = {"$ref": f"#/components/schemas/{name}", "components": DOC["components"]}
    jsonschema_rs.Draft202012Validator(schema).validate(instance)


@pytest.mark.parametrize(("score", "spelt"), [("-inf", "-Infinity"), ("nan", "NaN")])
def test_a_non_finite_score_is_a_string_the_document_allows(
    stack: Stack, http: httpx.Client, score: str, spelt: str
) -> None:
    model = f"/sax/test/non-finite-{score.strip('-')}"
    with published(stack, model, TEST_LM, {"score": score}):
        response = http.post(f"/v1{model}:score", json={"suffix": ["a", "b"]})
        assert response.status_code == 200, response.text
        assert response.json() == {"logp": [spelt, spelt]}
        _fits(response.json(), "saxgateway.v1.ScoreResponse")
        gradient = http.post(f"/v1{model}:gradient", json={"suffix": "a"})
        assert gradient.status_code == 200, gradient.text
        assert gradient.json()["score"] == [spelt]
        _fits(gradient.json(), "saxgateway.v1.GradientResponse")
        with sync_channel(stack.grpc_address) as channel:
            stub = gateway_pb2_grpc.SaxGatewayStub(channel)
            reply = stub.Score(pb.ScoreRequest(model=model, suffix=["a"]), timeout=30)
        [logp] = reply.logp
        assert math.isnan(logp) if score == "nan" else logp == -math.inf


def test_a_finite_score_is_still_a_number(http: httpx.Client, stack: Stack) -> None:
    with published(stack, "/sax/test/non-finite-not", TEST_LM):
        response = http.post("/v1/sax/test/non-finite-not:score", json={"suffix": ["a b"]})
    assert response.json() == {"logp": [-0.2]}
    _fits(response.json(), "saxgateway.v1.ScoreResponse")
    with pytest.raises(ValueError):
        _fits({"logp": ["-inf"]}, "saxgateway.v1.ScoreResponse")  # only proto3 JSON's spelling


def test_an_override_score_that_is_not_a_number_is_refused(http: httpx.Client) -> None:
    body = {
        "model": "/sax/test/non-finite-bad",
        "model_path": TEST_LM,
        "checkpoint": "None",
        "overrides": {"score": "low"},
    }
    response = http.post("/publish", json=body)
    assert response.status_code == 400, response.text
    assert "override score='low' is not a number" in response.json()["message"]
