"""The documented examples (proto/saxgateway/v1/examples.json, in openapi.json and api.md) are
what the stack does: each seed-style route, sent its example request (under model names of
this test), answers 200 with a body of the example's fields that fits the route's schema."""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs

from gateway.cell.models import random_lm
from gateway.cell.models.multimodal import MULTIMODAL_PATH
from gateway.launch.stack import Stack
from tests.e2e._published import TEST_AUDIO, TEST_CUSTOM, TEST_VISION, published

ROOT = Path(__file__).resolve().parents[2]
DOC: dict[str, Any] = json.loads((ROOT / "openapi" / "openapi.json").read_text())
EXAMPLES: dict[str, Any] = json.loads((ROOT / "proto/saxgateway/v1/examples.json").read_text())
RENAMED = {
    "/sax/test/lm2b": "/sax/test/examples-lm",
    "/sax/test/vision": "/sax/test/examples-vision",
    "/sax/test/speech": "/sax/test/examples-speech",
    "/sax/test/mm": "/sax/test/examples-mm",
    "/sax/test/custom": "/sax/test/examples-custom",
}
# Publish first, data calls next, the ACL (which may close the model) and unpublish last.
ORDER = ["PublishModel", "WaitForReady", "UpdateModel"]
LAST = ["SetAcl", "GetAcl", "UnpublishModel"]


def _route(method: str) -> tuple[str, str, dict[str, Any]]:
    """The seed-style route of an RPC: its first binding (operationId == the RPC name)."""
    for path, ops in DOC["paths"].items():
        for verb, op in ops.items():
            if op["operationId"] == method:
                return path, verb, op
    raise AssertionError(f"no route for {method}")


def _bound(path: str, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A resource path (GetModel has no seed route) with its {cell} and {name} filled from the
    request's model, which then leaves the request: a query parameter may not name it again."""
    if "{cell}" not in path:
        return path, request
    _, _, cell, name = request["model"].split("/")
    rest = {key: value for key, value in request.items() if key != "model"}
    return path.replace("{cell}", cell).replace("{name}", name), rest


def _renamed(value: Any) -> Any:
    text = json.dumps(value)
    for old, new in RENAMED.items():
        text = text.replace(f'"{old}"', f'"{new}"')
    return json.loads(text)


def _fits(instance: object, schema: dict[str, Any]) -> None:
    jsonschema_rs.Draft202012Validator({**schema, "components": DOC["components"]}).validate(
        instance
    )


def test_every_example_request_gets_a_response_shaped_like_its_example(stack: Stack) -> None:
    streams = {"GenerateStream", "WatchAddresses"}
    middle = [m for m in EXAMPLES if m not in {*ORDER, *LAST, *streams, "errors"}]
    with (
        published(stack, RENAMED["/sax/test/vision"], TEST_VISION),
        published(stack, RENAMED["/sax/test/speech"], TEST_AUDIO),
        published(stack, RENAMED["/sax/test/mm"], MULTIMODAL_PATH),
        published(stack, RENAMED["/sax/test/custom"], TEST_CUSTOM),
        httpx.Client(base_url=stack.http_url, timeout=60) as http,
    ):
        for method in [*ORDER, *middle, "GenerateStream", *LAST]:
            path, verb, op = _route(method)
            path, request = _bound(path, _renamed(EXAMPLES[method]["request"]))
            if verb == "get":
                response = http.get(path, params=request)
            else:
                response = http.request(verb.upper(), path, json=request)
            assert response.status_code == 200, (method, response.text)
            ok = op["responses"]["200"]["content"]
            if method in streams:
                events = [
                    json.loads(line.removeprefix("data: "))
                    for line in response.text.splitlines()
                    if line.startswith("data: ")
                ]
                assert len(events) == len(EXAMPLES[method]["events"]), method
                for event, example in zip(events, EXAMPLES[method]["events"], strict=True):
                    assert event.keys() == example.keys(), method
                    data = ok["text/event-stream"]["itemSchema"]["properties"]["data"]
                    _fits(event, data["contentSchema"])
            else:
                body = response.json()
                assert body.keys() == EXAMPLES[method]["response"].keys(), method
                _fits(body, ok["application/json"]["schema"])


# The other test's names are unpublished moments before: Sax refuses to republish them soon.
BINDING_MODELS = {
    "lm2b": ("bindings-lm", random_lm.MODEL_PATH),
    "vision": ("bindings-vision", TEST_VISION),
    "speech": ("bindings-speech", TEST_AUDIO),
    "mm": ("bindings-mm", MULTIMODAL_PATH),
    "custom": ("bindings-custom", TEST_CUSTOM),
}
# Publishing and unpublishing change what the other examples need; an ACL may close a model.
BINDINGS_SKIPPED = {"PublishModel", "UnpublishModel"}
BINDINGS_LAST = ["GetAcl", "SetAcl"]


def _binding_renamed(value: Any) -> Any:
    text = json.dumps(value)
    for old, (new, _) in BINDING_MODELS.items():
        text = text.replace(f'"/sax/test/{old}"', f'"/sax/test/{new}"')
    return json.loads(text)


def _documented_request(path: str, op: dict[str, Any]) -> tuple[str, dict[str, Any], Any]:
    """The request api.md shows for one route: the path with its parameters' examples, the
    query parameters that have one, and the body's example."""
    query: dict[str, Any] = {}
    for param in op["parameters"]:
        if "example" not in param:
            continue
        if param["in"] == "path":
            value = BINDING_MODELS.get(param["example"], (param["example"],))[0]
            path = path.replace("{" + param["name"] + "}", value)
        else:
            query[param["name"]] = param["example"]
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("example")
    return path, _binding_renamed(query), _binding_renamed(body)


def test_every_route_answers_the_example_request_it_documents(stack: Stack) -> None:
    """Every binding of every RPC, not only the seed-style one: a `/v1/sax/{cell}:...` route
    shows a cell's request and answer, a `/v1/sax/{cell}/{name}:...` one a model's, and the
    resources its example answer names are the ones the request names."""
    routes = [
        (method, path, verb, op)
        for path, ops in DOC["paths"].items()
        for verb, op in ops.items()
        if "SaxGateway" in op["tags"]
        and (method := op["x-grpc-method"].rsplit("/", 1)[-1]) not in BINDINGS_SKIPPED
    ]
    routes.sort(key=lambda r: BINDINGS_LAST.index(r[0]) + 1 if r[0] in BINDINGS_LAST else 0)
    with ExitStack() as models, httpx.Client(base_url=stack.http_url, timeout=60) as http:
        for name, model_path in BINDING_MODELS.values():
            models.enter_context(published(stack, f"/sax/test/{name}", model_path))
        try:
            for _, path, verb, op in routes:
                url, query, body = _documented_request(path, op)
                with http.stream(verb.upper(), url, params=query, json=body) as response:
                    # A stream's first event is enough (WatchAddresses never ends by itself).
                    text = next(response.iter_lines()) if response.status_code == 200 else ""
                    text = text or response.read().decode()
                assert response.status_code == 200, (verb, url, text)
                content = op["responses"]["200"]["content"]
                if "application/json" not in content:
                    continue
                example = _binding_renamed(content["application/json"]["example"])
                answer = json.loads(text)
                named = {k: v for k, v in example.items() if str(v).startswith("/sax/")}
                assert {k: answer[k] for k in named} == named, (verb, url)
        finally:
            http.post("/v1/sax/test:setAcl", json={"acl": ""})


# The request each documented error example answers: the example's own model, and a model
# ID that is not one; sent with the x-request-id the examples show.
ERROR_REQUESTS = {
    "NOT_FOUND": {"model": "/sax/test/nosuch", "query": "q"},
    "BadRequest": {"model": "lm2b", "query": "q"},
}
ERROR_REQUEST_ID = "3f0c2b9e-5d1a-4c7e-9b8f-2a6d4e1c0b57"


def test_documented_error_examples_are_the_whole_bodies_the_gateway_answers(
    http: httpx.Client,
) -> None:
    # The examples left out the RequestInfo detail every error carries, so Swagger UI and
    # api.md showed clients a body the gateway never sends.
    assert DOC["components"]["schemas"]["Error"]["examples"] == [
        EXAMPLES["errors"][name] for name in ERROR_REQUESTS
    ]
    for name, request in ERROR_REQUESTS.items():
        headers = {"x-request-id": ERROR_REQUEST_ID}
        response = http.post("/generate", json=request, headers=headers)
        assert response.json() == EXAMPLES["errors"][name], name
