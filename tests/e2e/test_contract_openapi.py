"""Envoy serves the committed OpenAPI document, and it describes what Envoy really answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
import schemathesis

from gateway.launch.stack import Stack
from tests.e2e._openai import CHATML
from tests.e2e._published import TEST_LM, published

ROOT = Path(__file__).resolve().parents[2]


def test_envoy_serves_the_openapi_document(http: httpx.Client) -> None:
    response = http.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == json.loads((ROOT / "openapi" / "openapi.json").read_text())


def test_documented_error_shape_is_what_envoy_prints(http: httpx.Client) -> None:
    response = http.get("/v1/sax/test/no-such-model")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    doc = http.get("/openapi.json").json()
    error = doc["components"]["schemas"]["Error"]
    body = response.json()
    assert set(error["required"]) <= body.keys() <= set(error["properties"])
    assert body["code"] == 5


def test_documented_error_shape_holds_for_envoys_own_replies(http: httpx.Client) -> None:
    # Envoy's local replies (here: an unknown path) add a top-level request_id, which the
    # Error schema did not list.
    response = http.get("/no/such/route")
    assert response.status_code == 404
    error = http.get("/openapi.json").json()["components"]["schemas"]["Error"]
    body = response.json()
    assert set(error["required"]) <= body.keys() <= set(error["properties"])
    assert body["request_id"] == response.headers["x-request-id"]


EXTRA_INPUTS = [0.5, "x", [0.5, -1], [], True, None, {"a": 1}, ["a"], [True], [[1]]]


def test_documented_extra_inputs_are_the_ones_the_gateway_takes(
    stack: Stack, http: httpx.Client
) -> None:
    # The schema said "Any JSON value" while the gateway refuses true, null, objects and
    # lists of anything but numbers: generated clients offered what could only fail.
    doc: dict[str, Any] = http.get("/openapi.json").json()
    schema = doc["components"]["schemas"]["saxgateway.v1.GenerateRequest"]
    validator = jsonschema_rs.Draft202012Validator({**schema, "components": doc["components"]})
    with published(stack, "/sax/test/contract-extra", TEST_LM) as model:
        for value in EXTRA_INPUTS:
            # bias: an extra input TestLM declares, a tensor of two numbers. The model
            # refuses a list of another length (as a real cell's would): a 400 that is not
            # the gateway's, which alone names the field.
            body = {"model": model, "query": "q", "extra_inputs": {"bias": value}}
            response = http.post("/generate", json=body)
            refused = response.status_code == 400 and "extra_inputs[bias]" in response.text
            assert response.status_code in {200, 400}, response.text
            assert validator.is_valid(body) != refused, value
            assert response.status_code == 200 or refused or value == [], value


def test_the_routes_envoy_answers_itself_are_documented_as_they_answer(
    http: httpx.Client,
) -> None:
    # /healthz, /openapi.json and /docs were in no operation of the document.
    doc = http.get("/openapi.json").json()
    edge = {
        path: op
        for path, ops in doc["paths"].items()
        for verb, op in ops.items()
        if op["tags"] == ["Edge"] and verb == "get"
    }
    assert set(edge) == {"/healthz", "/openapi.json", "/docs"}
    for path, op in edge.items():
        response = http.get(path)
        assert response.status_code == 200, path
        assert op["security"] == []
        documented = op["responses"]["200"]
        assert response.headers["x-request-id"] and "x-request-id" in documented["headers"]
        kinds = list(documented.get("content", {}))
        if not kinds:
            assert response.content == b"", path
        else:
            assert response.headers["content-type"].split(";")[0] == kinds[0], path
        if path == "/healthz":
            continue
        # The files' ETag and Cache-Control, and the 304 their If-None-Match gets, were in the
        # description alone: a client generated from the document took a 304 for an error.
        assert {"etag", "cache-control"} <= set(documented["headers"]), path
        parameters = {(p["in"], p["name"]) for p in op["parameters"]}
        assert parameters == {("header", "If-None-Match")}, path
        again = http.get(path, headers={"if-none-match": response.headers["etag"]})
        assert again.status_code == 304, path
        not_modified = op["responses"]["304"]
        assert "content" not in not_modified and again.content == b"", path
        assert set(not_modified["headers"]) <= set(again.headers), path
        # Envoy gives a 3xx direct response the request's URL as a Location: no redirect.
        assert "location" not in again.headers, path
    assert http.get("/openapi.json").json() == doc


_WITH_USAGE = {"stream": True, "stream_options": {"include_usage": True}}


@pytest.mark.usefixtures("openai_models")
def test_every_event_of_every_stream_is_what_the_document_says(
    stack: Stack, http: httpx.Client
) -> None:
    # schemathesis checks each event of a text/event-stream against the schema the document
    # gives one (ST108): a `type: string` schema beside an `x-sse-data` extension failed every
    # event, which it reads as an object of the event's fields.
    schema = schemathesis.openapi.from_dict(http.get("/openapi.json").json())
    conformance = [schemathesis.checks.response_schema_conformance]
    chat = {"messages": [{"role": "user", "content": "q"}]}
    with published(stack, "/sax/test/contract-sse", TEST_LM, {"text": "a b"}) as model:
        calls: list[tuple[str, dict[str, str], dict[str, Any]]] = [
            ("/generate_stream", {}, {"model": model, "query": "q"}),
            (
                "/v1/sax/{cell}/{name}:streamGenerate",
                {"cell": "test", "name": "contract-sse"},
                {"query": "q"},
            ),
            ("/v1/completions", {}, {"model": CHATML, "prompt": "q", "stream": True}),
            ("/v1/chat/completions", {}, {"model": CHATML, **chat, "stream": True}),
            # With include_usage every chunk but the last says "usage": null, as OpenAI's do;
            # the document gave usage as an object alone, so each of them failed ST108.
            ("/v1/completions", {}, {"model": CHATML, "prompt": "q", **_WITH_USAGE}),
            ("/v1/chat/completions", {}, {"model": CHATML, **chat, **_WITH_USAGE}),
            ("/v1/responses", {}, {"model": CHATML, "input": "q", "stream": True}),
        ]
        for template, parameters, body in calls:
            case = schema[template]["POST"].Case(path_parameters=parameters or None, body=body)
            response = case.call(base_url=stack.http_url, timeout=30)
            assert response.status_code == 200, (template, response.text)
            content_type = response.headers["content-type"][0]
            assert content_type.startswith("text/event-stream"), template
            assert response.text.count("data: ") > 1, template
            case.validate_response(response, checks=conformance)


_WAIT = {"model": CHATML, "timeout": "0.2s"}
_COMPLETION = {"model": CHATML, "prompt": "q"}
_GENERATE = {"model": CHATML, "query": "q"}
_EMBEDDING = {"model": CHATML, "input": "q"}
# (path, schema, body, the field a 400 names if the gateway refuses the body): at each bound
# the gateway enforces and one past it.
_BOUNDS: list[tuple[str, str, dict[str, Any], str]] = [
    ("/wait_for_ready", "saxgateway.v1.WaitForReadyRequest", {**_WAIT, "replicas": 1024}, ""),
    (
        "/wait_for_ready",
        "saxgateway.v1.WaitForReadyRequest",
        {**_WAIT, "replicas": 1025},
        "replicas",
    ),
    ("/wait_for_ready", "saxgateway.v1.WaitForReadyRequest", {**_WAIT, "replicas": -1}, "replicas"),
    ("/wait_for_ready", "saxgateway.v1.WaitForReadyRequest", {**_WAIT, "timeout": "0s"}, "timeout"),
    (
        "/wait_for_ready",
        "saxgateway.v1.WaitForReadyRequest",
        {**_WAIT, "timeout": "-1.5s"},
        "timeout",
    ),
    ("/generate", "saxgateway.v1.GenerateRequest", {**_GENERATE, "timeout": "0.0s"}, "timeout"),
    # A required field sent empty is refused as missing: proto3 JSON cannot tell them apart.
    ("/generate", "saxgateway.v1.GenerateRequest", {**_GENERATE, "query": ""}, "query"),
    ("/embed", "saxgateway.v1.EmbedRequest", {"model": CHATML, "text": ""}, "text"),
    (
        "/score",
        "saxgateway.v1.ScoreRequest",
        {"model": CHATML, "prefix": "q", "suffix": []},
        "suffix",
    ),
    (
        "/classify",
        "saxgateway.v1.ClassifyRequest",
        {"model": CHATML, "image_bytes": ""},
        "image_bytes",
    ),
    (
        "/publish",
        "saxgateway.v1.PublishModelRequest",
        {"model": "/sax/test/contract-empty", "model_path": TEST_LM, "checkpoint": ""},
        "checkpoint",
    ),
    ("/v1/completions", "openai.CompletionRequest", {**_COMPLETION, "max_tokens": 1 << 20}, ""),
    (
        "/v1/completions",
        "openai.CompletionRequest",
        {**_COMPLETION, "max_tokens": (1 << 20) + 1},
        "max_tokens",
    ),
    ("/v1/completions", "openai.CompletionRequest", {**_COMPLETION, "top_k": 1 << 20}, ""),
    (
        "/v1/completions",
        "openai.CompletionRequest",
        {**_COMPLETION, "top_k": (1 << 20) + 1},
        "top_k",
    ),
    ("/v1/completions", "openai.CompletionRequest", {**_COMPLETION, "prompt": []}, "prompt"),
    (
        "/v1/completions",
        "openai.CompletionRequest",
        {**_COMPLETION, "prompt": ["q"] * 2049},
        "prompt",
    ),
    ("/v1/completions", "openai.CompletionRequest", {**_COMPLETION, "stop": "s" * 256}, ""),
    ("/v1/completions", "openai.CompletionRequest", {**_COMPLETION, "stop": ["s" * 257]}, "stop"),
    (
        "/v1/chat/completions",
        "openai.ChatCompletionRequest",
        {
            "model": CHATML,
            "messages": [{"role": "user", "content": "q"}],
            "max_completion_tokens": (1 << 20) + 1,
        },
        "max_completion_tokens",
    ),
    (
        "/v1/responses",
        "openai.ResponseRequest",
        {"model": CHATML, "input": "q", "max_output_tokens": 1 << 20},
        "",
    ),
    (
        "/v1/responses",
        "openai.ResponseRequest",
        {"model": CHATML, "input": "q", "max_output_tokens": (1 << 20) + 1},
        "max_output_tokens",
    ),
    ("/v1/embeddings", "openai.EmbeddingRequest", {**_EMBEDDING, "input": [""]}, "input"),
    ("/v1/embeddings", "openai.EmbeddingRequest", {**_EMBEDDING, "input": []}, "input"),
    ("/v1/embeddings", "openai.EmbeddingRequest", {**_EMBEDDING, "input": ["q"] * 2049}, "input"),
    (
        "/v1/embeddings",
        "openai.EmbeddingRequest",
        {**_EMBEDDING, "dimensions": (1 << 20) + 1},
        "dimensions",
    ),
]


@pytest.mark.usefixtures("openai_models")
def test_the_document_allows_what_the_gateway_takes_at_its_bounds(http: httpx.Client) -> None:
    # The document gave replicas int32's whole range and the OpenAI counts no maximum, where
    # the gateway refuses more than 1,024 replicas or 2**20 tokens, an empty list of prompts
    # or inputs, an empty input and a stop string over 256 characters: a generated client, or
    # one checking its requests against the document, sent what could only be a 400. So did
    # a timeout of 0s or less, which the document's pattern allowed.
    doc: dict[str, Any] = http.get("/openapi.json").json()
    wrong = []
    for path, name, body, field in _BOUNDS:
        schema = {**doc["components"]["schemas"][name], "components": doc["components"]}
        response = http.post(path, json=body)
        text = response.text
        named = response.status_code == 400 and (
            f'"param": "{field}"' in text or f'"field":"{field}"' in text
        )
        assert named or response.status_code in {200, 504}, (path, body, text[:300])
        if jsonschema_rs.Draft202012Validator(schema).is_valid(body) == named:
            wrong.append((path, field or "at the bound", response.status_code))
    assert wrong == []


@pytest.mark.usefixtures("openai_models")
def test_the_fields_every_reply_prints_are_required_in_the_document(http: httpx.Client) -> None:
    # The transcoder prints every field of a reply, defaults too (0, "", [], {}), but those
    # proto3 optional, of a oneof, or a message; the document marked none required, so a
    # client generated from it made each an optional field to check, however sure its value.
    doc: dict[str, Any] = http.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    calls: list[tuple[str, str, dict[str, Any], str]] = [
        ("POST", "/generate", {"model": CHATML, "query": "q"}, "GenerateResponse"),
        ("GET", "/listcell", {"model": CHATML}, "ListCellResponse"),
        ("POST", "/wait_for_ready", {"model": CHATML}, "WaitForReadyResponse"),
        ("GET", "/getacl", {"name": CHATML}, "GetAclResponse"),
        ("GET", "/v1/sax/test/oai", {}, "GetModelResponse"),
    ]
    for method, path, body, name in calls:
        get = method == "GET"
        response = http.request(
            method, path, params=body if get else None, json=None if get else body
        )
        assert response.status_code == 200, (path, response.text)
        reply = response.json()
        schema = {**schemas[f"saxgateway.v1.{name}"], "components": doc["components"]}
        assert jsonschema_rs.Draft202012Validator(schema).is_valid(reply), (path, reply)
        # GetModelResponse's one field is a message (ModelInfo): printed, but not required.
        messages = {"model"} if name == "GetModelResponse" else set()
        assert set(schema.get("required", [])) == set(reply) - messages, path
    assert schemas["saxgateway.v1.DecodedText"]["required"] == ["text", "score"]
    model_info = schemas["saxgateway.v1.ModelInfo"]
    assert set(model_info["properties"]) - set(model_info["required"]) == {"load_error"}
    # A message used in requests too is left as it is: its fields are a request's to omit.
    assert "required" not in schemas["saxgateway.v1.MultimodalItem"]


def test_the_path_names_the_document_allows_are_the_ones_the_gateway_takes(
    http: httpx.Client,
) -> None:
    # The cell and model names of the /v1/sax/... paths were any segment ("^[^/]+$"), where
    # the gateway refuses a name Sax does not allow (400 "cell name 'Test' must match ..."):
    # schemathesis' schema-valid requests, and a generated client's, could only fail.
    doc: dict[str, Any] = http.get("/openapi.json").json()
    calls = [
        ("GET", "/v1/sax/{cell}/{name}", {"cell": "Test", "name": "lm"}),
        ("POST", "/v1/sax/{cell}/{name}:generate", {"cell": "test", "name": "LM"}),
        ("GET", "/v1/sax/{cell}:listModels", {"cell": "0"}),
    ]
    for method, template, values in calls:
        op = doc["paths"][template][method.lower()]
        schemas = {p["name"]: p["schema"] for p in op["parameters"] if p.get("in") == "path"}
        assert set(schemas) == set(values), template
        body = {"query": "q"} if method == "POST" else None
        response = http.request(method, template.format(**values), json=body)
        assert response.status_code == 400 and "must match" in response.text, response.text
        valid = {
            k: jsonschema_rs.Draft202012Validator(schemas[k]).is_valid(v) for k, v in values.items()
        }
        assert not all(valid.values()), (template, values)
        assert all(
            jsonschema_rs.Draft202012Validator(s).is_valid("lm2b-x_1") for s in schemas.values()
        )


@pytest.mark.usefixtures("openai_models")
def test_the_openai_routes_declare_the_deadline_header_they_honour(http: httpx.Client) -> None:
    # The OpenAI routes keep a caller's grpc-timeout (docs/api.md) and answer x-request-id,
    # but their operations declared neither, so a client generated from the document could
    # set no deadline, and schemathesis never sent one there.
    doc: dict[str, Any] = http.get("/openapi.json").json()
    deadline = {"$ref": "#/components/parameters/grpc-timeout"}
    body = {"model": CHATML, "messages": [{"role": "user", "content": "q"}]}
    for path, ops in doc["paths"].items():
        for op in ops.values():
            if op.get("tags") != ["OpenAIGateway"]:
                continue
            assert deadline in op.get("parameters", []), path
            for status in ("200", "default"):
                assert "x-request-id" in op["responses"][status].get("headers", {}), path
    late = http.post("/v1/chat/completions", json=body, headers={"grpc-timeout": "1n"})
    assert (late.status_code, late.json()["error"]["code"]) == (504, "timeout")
    assert late.headers["x-request-id"]
