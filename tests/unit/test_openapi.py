"""openapi/openapi.json: current, complete, and shaped like what Envoy prints."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from copy import deepcopy
from pathlib import Path
from typing import Any

import jsonschema_rs
from google.api import annotations_pb2, http_pb2
from saxgateway.v1 import gateway_pb2, openai_pb2

from gateway.edge._paths import OPEN, OPEN_HTTP
from gateway.launch._replies import HEALTHZ_DOWN, local_reply_mappers
from gateway.launch.envoy import EnvoySettings, descriptor_set, openapi_document, render
from tests._envoy_routes import envoy_yaml

ROOT = Path(__file__).resolve().parents[2]
DOC: dict[str, Any] = json.loads((ROOT / "openapi" / "openapi.json").read_text())
SCHEMAS: dict[str, Any] = DOC["components"]["schemas"]
SERVICE = gateway_pb2.DESCRIPTOR.services_by_name["SaxGateway"]


def _operations(tag: str = "SaxGateway") -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, verb, op)
        for path, ops in DOC["paths"].items()
        for verb, op in ops.items()
        if op["tags"] == [tag]
    ]


def _props(name: str) -> dict[str, Any]:
    return dict(SCHEMAS[f"saxgateway.v1.{name}"]["properties"])


def test_openapi_is_current() -> None:
    result = subprocess.run(
        [sys.executable, ROOT / "scripts" / "openapi.py", "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_openapi_has_every_binding_of_every_rpc() -> None:
    by_method: dict[str, set[str]] = {}
    for _, verb, op in _operations():
        by_method.setdefault(op["x-grpc-method"].rsplit("/", 1)[1], set()).add(verb)
    for method in SERVICE.methods:
        # googleapis-common-protos types `http` as a plain FieldDescriptor, not an extension.
        options = method.GetOptions()
        rule: http_pb2.HttpRule = options.Extensions[annotations_pb2.http]  # type: ignore[index]
        verbs = {r.WhichOneof("pattern") for r in [rule, *rule.additional_bindings]}
        assert by_method.pop(method.name) == verbs, method.name
    assert by_method == {}


def test_openapi_expands_sax_ids_into_path_segments() -> None:
    op = DOC["paths"]["/v1/sax/{cell}/{name}:generate"]["post"]
    assert [p["name"] for p in op["parameters"][:-1]] == ["cell", "name"]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert "model" not in body["properties"]
    assert body["required"] == ["query"]
    assert {"/v1/sax/{cell}:stats", "/v1/sax/{cell}/{name}:stats"} <= DOC["paths"].keys()


def test_openapi_get_bindings_take_query_parameters() -> None:
    op = DOC["paths"]["/listcell"]["get"]
    assert op["parameters"][:-1] == [
        {
            "name": "model",
            "in": "query",
            "required": True,
            "description": "Required. The model ID.",
            "schema": {"type": "string", "minLength": 1},  # ?model= is a 400, as no model
            "example": "/sax/test/lm2b",
        }
    ]


def test_openapi_fields_are_proto_names_in_proto3_json() -> None:
    publish = _props("PublishModelRequest")
    assert list(publish) == ["model", "model_path", "checkpoint", "replicas", "overrides"]
    assert publish["replicas"]["format"] == "int32"
    assert publish["overrides"]["additionalProperties"] == {"type": "string"}
    generate = _props("GenerateRequest")
    # A proto3 JSON Duration above zero: the gateway refuses a timeout of 0s or less (400).
    timeout = re.compile(generate["timeout"]["pattern"])
    taken = ["1s", "1.5s", "0.5s", "0.000000001s", "30.000000000s"]
    assert [
        t for t in [*taken, "0s", "0.000000000s", "-1s", "1.0000000001s"] if timeout.match(t)
    ] == taken
    assert "type" not in generate["extra_inputs"]["additionalProperties"]  # any JSON value
    image = _props("ClassifyRequest")["image_bytes"]
    assert (image["type"], image["contentEncoding"]) == ("string", "base64")
    assert SCHEMAS["saxgateway.v1.PublishModelRequest"]["required"] == [
        "model",
        "model_path",
        "checkpoint",
    ]
    assert _props("ModelInfo")["model_path"]["description"] == "Output only. The model path."


def _event_data(media: dict[str, Any]) -> Any:
    """The schema of the JSON in each event of a text/event-stream media type."""
    data = media["itemSchema"]["properties"]["data"]
    return next(d["contentSchema"] for d in data.get("anyOf", [data]) if "contentSchema" in d)


def test_openapi_streams_are_server_sent_events() -> None:
    streams = {
        op["operationId"]
        for _, _, op in _operations()
        if "text/event-stream" in op["responses"]["200"]["content"]
    }
    assert streams == {"GenerateStream", "GenerateStream_2", "WatchAddresses", "WatchAddresses_2"}
    sse = DOC["paths"]["/generate_stream"]["post"]["responses"]["200"]["content"]
    ref = "#/components/schemas/saxgateway.v1.GenerateStreamResponse"
    # OpenAPI 3.2's way: itemSchema is one event, whose data is JSON of the message's schema.
    # (A `type: string` schema with an `x-sse-data` extension beside it failed schemathesis'
    # check of every event, ST108: an event is an object of its fields.)
    assert DOC["openapi"] == "3.2.0"
    item = sse["text/event-stream"]["itemSchema"]
    assert "schema" not in sse["text/event-stream"]
    assert (item["type"], item["required"]) == ("object", ["data"])
    assert item["properties"]["data"] == {
        "type": "string",
        "contentMediaType": "application/json",
        "contentSchema": {"$ref": ref},
    }


def test_openapi_errors_have_code_message_details() -> None:
    error = SCHEMAS["Error"]
    assert list(error["properties"]) == ["code", "message", "details", "request_id"]
    assert error["required"] == ["code", "message"]
    for _, _, op in _operations():
        schema = op["responses"]["default"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Error"}


def test_envoy_config_serves_the_committed_document() -> None:
    assert openapi_document().read_bytes() == (ROOT / "openapi" / "openapi.json").read_bytes()
    config = render(EnvoySettings(gateway_endpoints=["127.0.0.1:1"]))
    assert f"body: {{filename: {json.dumps(str(openapi_document()))}}}" in config


def test_the_docs_files_envoy_serves_are_the_open_docs_paths() -> None:
    # Credentials are skipped for the /docs files by name (`OPEN_HTTP`): a file the routes
    # serve but the list lacks asks the page's visitor for a key; one the list names but no
    # route serves goes on to a gateway without a credential.
    config = envoy_yaml(render(EnvoySettings(gateway_endpoints=["127.0.0.1:1"])))
    listener = config["static_resources"]["listeners"][0]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    served = {
        route["match"]["path"]
        for host in manager["route_config"]["virtual_hosts"]
        for route in host["routes"]
        if route["match"].get("path", "").startswith("/docs")
    }
    assert served == {p for p in OPEN_HTTP if p.startswith("/docs")}


def _validate(instance: object, schema: dict[str, Any]) -> None:
    """Validates against a schema whose $refs point into the document's components."""
    jsonschema_rs.Draft202012Validator({**schema, "components": DOC["components"]}).validate(
        instance
    )


def _resolved(node: dict[str, Any]) -> dict[str, Any]:
    """A parameter, response or header, its ``$ref`` into the components followed."""
    if "$ref" not in node:
        return node
    _, _, kind, name = node["$ref"].split("/")
    resolved: dict[str, Any] = DOC["components"][kind][name]
    return resolved


def test_every_sax_route_documents_the_deadline_header_and_the_request_id() -> None:
    # grpc-timeout (README: "the deadline of any call") and x-request-id (on every response)
    # were in no operation: a client generated from the document could set no deadline.
    for path, verb, op in _operations():
        timeout = _resolved(op["parameters"][-1])
        assert (timeout["name"], timeout["in"], timeout["required"]) == (
            "grpc-timeout", "header", False
        ), (path, verb)  # fmt: skip
        for response in op["responses"].values():
            header = _resolved(response)["headers"]["x-request-id"]
            assert DOC["components"]["headers"][header["$ref"].rsplit("/", 1)[-1]]["required"]
    pattern = re.compile(DOC["components"]["parameters"]["grpc-timeout"]["schema"]["pattern"])
    assert [bool(pattern.match(v)) for v in ("30S", "500m", "2.5S", "1s", "123456789S")] == [
        True, True, False, False, False
    ]  # fmt: skip


def test_every_operation_has_an_example_request_and_response() -> None:
    for path, verb, op in _operations():
        for param in op.get("parameters", []):
            param = _resolved(param)
            if param["in"] == "path" or param["required"]:
                assert "example" in param, (path, verb, param["name"])
            if "example" in param:
                _validate(param["example"], param["schema"])
        if "requestBody" in op:
            body = op["requestBody"]["content"]["application/json"]
            _validate(body["example"], body["schema"])
        ok = op["responses"]["200"]["content"]
        if "text/event-stream" in ok:
            events = ok["text/event-stream"]["example"].split("\n\n")
            assert events[-1] == "" and len(events) > 1, (path, verb)
            for event in events[:-1]:
                assert event.startswith("data: "), (path, verb)
                data = event.removeprefix("data: ")
                _validate({"data": data}, ok["text/event-stream"]["itemSchema"])
                _validate(json.loads(data), _event_data(ok["text/event-stream"]))
        else:
            _validate(ok["application/json"]["example"], ok["application/json"]["schema"])


def test_the_seed_routes_show_the_seed_requests() -> None:
    publish = DOC["paths"]["/publish"]["post"]["requestBody"]["content"]["application/json"]
    assert publish["example"] == {
        "model": "/sax/test/lm2b",
        "model_path": "saxml.server.pax.lm.params.lm_cloud.LmCloudSpmd2BTest",
        "checkpoint": "None",
        "replicas": 1,
    }
    generate = DOC["paths"]["/generate"]["post"]["requestBody"]["content"]["application/json"]
    assert generate["example"] == {
        "model": "/sax/test/lm2b",
        "query": "Q: Who is Harry Potter's mom? A: ",
    }
    listcell = DOC["paths"]["/listcell"]["get"]["parameters"][:-1]
    assert [(p["name"], p["example"]) for p in listcell] == [("model", "/sax/test/lm2b")]


def _objects(node: object, path: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every object in the document (its schemas among them), with where it is."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _objects(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _objects(value, f"{path}/{i}")


def test_every_array_says_what_its_items_are() -> None:
    # openapi-python-client refuses an array schema without `items` (valid JSON Schema) and
    # dropped the whole Response and ResponseStreamEvent models it sat in.
    arrays = [(path, node) for path, node in _objects(DOC) if node.get("type") == "array"]
    assert [path for path, schema in arrays if "items" not in schema] == []


def test_error_examples_are_errors() -> None:
    for example in SCHEMAS["Error"]["examples"]:
        _validate(example, SCHEMAS["Error"])
    assert SCHEMAS["Error"]["examples"][1]["details"][0]["@type"].endswith("BadRequest")


def test_openapi_describes_the_openai_routes_with_their_json() -> None:
    ops = {(path, verb): op for path, verb, op in _operations("OpenAIGateway")}
    assert set(ops) == {
        ("/v1/models", "get"),
        ("/v1/models/{model}", "get"),
        ("/v1/models/sax/{cell}/{name}", "get"),
        ("/v1/completions", "post"),
        ("/v1/chat/completions", "post"),
        ("/v1/responses", "post"),
        ("/v1/embeddings", "post"),
    }
    methods = {op["x-grpc-method"].rsplit("/", 1)[1] for op in ops.values()}
    assert methods == set(openai_pb2.DESCRIPTOR.services_by_name["OpenAIGateway"].methods_by_name)
    chat = ops[("/v1/chat/completions", "post")]
    body = chat["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert SCHEMAS[body.rsplit("/", 1)[1]]["required"] == ["model", "messages"]
    ok = chat["responses"]["200"]["content"]["text/event-stream"]
    assert _event_data(ok) == {
        "oneOf": [
            {"$ref": "#/components/schemas/openai.ChatCompletionChunk"},
            {"$ref": "#/components/schemas/openai.Error"},
        ]
    }
    _validate({"data": "[DONE]"}, ok["itemSchema"])  # the last event
    responses = ops[("/v1/responses", "post")]["responses"]["200"]["content"]["text/event-stream"]
    assert responses["itemSchema"]["required"] == ["event", "data"]  # `event: <type>` lines
    _validate({"event": "response.completed", "data": "{}"}, responses["itemSchema"])
    assert _event_data(responses) == {"$ref": "#/components/schemas/openai.ResponseStreamEvent"}
    assert SCHEMAS["openai.ResponseRequest"]["required"] == ["model", "input"]
    for op in ops.values():
        error = op["responses"]["default"]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/openai.Error"}
    assert SCHEMAS["openai.Error"]["properties"]["error"]["required"] == [
        "message",
        "type",
        "param",
        "code",
    ]


def _filled(value: object, request_id: str | None) -> object:
    """A local reply's json_format as Envoy fills it in: a value that is the request ID alone
    becomes it (null when the request has none), any other format string a string."""
    if isinstance(value, dict):
        return {k: _filled(v, request_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_filled(v, request_id) for v in value]
    if value == "%REQ(X-REQUEST-ID)%":
        return request_id
    if isinstance(value, str):
        return re.sub(r"%[^%]+%", "x", value)
    return value


def test_every_error_body_envoy_makes_is_a_documented_error() -> None:
    # A reply Envoy makes before it has read the request (431, an unparsable request, no Host,
    # OPTIONS *) has no ID: "request_id": null, which the Error schema (string) refused.
    # (The replies to gRPC calls are their plain text, a grpc-message: no HTTP body.)
    mappers: list[Any] = local_reply_mappers(descriptor_set())
    formats = [m["body_format_override"] for m in mappers]
    bodies = [f["json_format"] for f in formats if "json_format" in f]
    assert len(bodies) > 20
    texts = [f for f in formats if "json_format" not in f]
    text = {"text_format_source": {"inline_string": "%LOCAL_REPLY_BODY%"}}
    assert texts and all(t == text for t in texts), texts
    # But Connect's error, to a Connect request alone (docs/api.md: not served), whose code
    # is a name: Connect clients read no other.
    connect = [b for b in bodies if isinstance(b.get("code"), str)]
    assert connect == [{"code": "unimplemented", "message": "%LOCAL_REPLY_BODY%"}]
    for body in bodies:
        if body in connect:
            continue
        schema = SCHEMAS["openai.Error" if "error" in body else "Error"]
        for request_id in ("0f6e6c1a-9a3b-4f43-8a48-5d2b7e3c9a10", None):
            _validate(_filled(body, request_id), schema)


def test_routes_take_the_credentials_the_edge_takes_but_the_open_ones() -> None:
    # Without securitySchemes, Swagger UI had no Authorize button and generated clients no
    # way to send a key: every call to a stack with keys was a 401.
    schemes = deepcopy(DOC["components"]["securitySchemes"])
    assert all(scheme.pop("description") for scheme in schemes.values())
    assert schemes == {
        "bearer": {"type": "http", "scheme": "bearer"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
    }
    assert DOC["security"] == [{"bearer": []}, {"apiKey": []}]
    opened = set()
    for path, ops in DOC["paths"].items():
        for verb, op in ops.items():
            if "x-grpc-method" not in op:
                continue
            refusals = {s for s in op["responses"] if s in ("401", "403", "429")}
            if op.get("security") == []:
                opened.add(op["x-grpc-method"])
                assert refusals == {"429"}, (path, verb)
            else:
                assert "security" not in op and refusals == {"401", "403", "429"}, (path, verb)
    assert opened == {m for m in OPEN if m.startswith("/saxgateway.")}


def test_refusal_examples_are_refusals() -> None:
    for name, response in DOC["components"]["responses"].items():
        content = response["content"]["application/json"]
        for example in content["examples"].values():
            _validate(example["value"], content["schema"])
        assert response["headers"]["x-request-id"], name


def test_the_healthz_refusal_example_is_an_error() -> None:
    down = DOC["paths"]["/healthz"]["get"]["responses"]["503"]["content"]["application/json"]
    _validate(down["example"], down["schema"])
    assert down["example"]["message"] == HEALTHZ_DOWN


def _alternatives(document: object) -> list[tuple[str, dict[str, Any]]]:
    """Every member of a oneOf or anyOf in ``document``, with where it is."""
    return [
        (f"{path}/{key}/{i}", alternative)
        for path, node in _objects(document)
        for key in ("oneOf", "anyOf")
        for i, alternative in enumerate(node.get(key, ()))
    ]


def test_every_alternative_of_a_union_says_its_type() -> None:
    # openapi-python-client picks a union's member by its type: given `{"const": "NaN"}`
    # beside a number it made a score parser that raised on every number ("-0.1"), so no
    # reply holding a double (generate, score, embed) parsed in the client it generated.
    untyped = [
        path
        for path, schema in _alternatives(DOC)
        if not {"type", "$ref", "oneOf", "anyOf", "allOf"} & schema.keys()
    ]
    assert untyped == []
