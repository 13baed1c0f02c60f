"""openapi/openapi.json: current, complete, and shaped like what Envoy prints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from google.api import annotations_pb2
from saxgateway.v1 import gateway_pb2

from gateway.launch.envoy import EnvoySettings, openapi_document, render

ROOT = Path(__file__).resolve().parents[2]
DOC: dict[str, Any] = json.loads((ROOT / "openapi" / "openapi.json").read_text())
SCHEMAS: dict[str, Any] = DOC["components"]["schemas"]
SERVICE = gateway_pb2.DESCRIPTOR.services_by_name["SaxGateway"]


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, verb, op) for path, ops in DOC["paths"].items() for verb, op in ops.items()]


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
        rule = method.GetOptions().Extensions[annotations_pb2.http]
        verbs = {r.WhichOneof("pattern") for r in [rule, *rule.additional_bindings]}
        assert by_method.pop(method.name) == verbs, method.name
    assert by_method == {}


def test_openapi_expands_sax_ids_into_path_segments() -> None:
    op = DOC["paths"]["/v1/sax/{cell}/{name}:generate"]["post"]
    assert [p["name"] for p in op["parameters"]] == ["cell", "name"]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert "model" not in body["properties"]
    assert body["required"] == ["query"]
    assert {"/v1/sax/{cell}:stats", "/v1/sax/{cell}/{name}:stats"} <= DOC["paths"].keys()


def test_openapi_get_bindings_take_query_parameters() -> None:
    op = DOC["paths"]["/listcell"]["get"]
    assert op["parameters"] == [
        {
            "name": "model",
            "in": "query",
            "required": True,
            "description": "Required. The model ID.",
            "schema": {"type": "string"},
        }
    ]


def test_openapi_fields_are_proto_names_in_proto3_json() -> None:
    publish = _props("PublishModelRequest")
    assert list(publish) == ["model", "model_path", "checkpoint", "replicas", "overrides"]
    assert publish["replicas"]["format"] == "int32"
    assert publish["overrides"]["additionalProperties"] == {"type": "string"}
    generate = _props("GenerateRequest")
    assert generate["timeout"]["pattern"] == r"^-?[0-9]+(\.[0-9]{1,9})?s$"
    assert "type" not in generate["extra_inputs"]["additionalProperties"]  # any JSON value
    image = _props("ClassifyRequest")["image_bytes"]
    assert (image["type"], image["contentEncoding"]) == ("string", "base64")
    assert SCHEMAS["saxgateway.v1.PublishModelRequest"]["required"] == [
        "model",
        "model_path",
        "checkpoint",
    ]
    assert _props("ModelInfo")["model_path"]["description"] == "Output only. The model path."


def test_openapi_streams_are_server_sent_events() -> None:
    streams = {
        op["operationId"]
        for _, _, op in _operations()
        if "text/event-stream" in op["responses"]["200"]["content"]
    }
    assert streams == {"GenerateStream", "GenerateStream_2", "WatchAddresses", "WatchAddresses_2"}
    sse = DOC["paths"]["/generate_stream"]["post"]["responses"]["200"]["content"]
    ref = "#/components/schemas/saxgateway.v1.GenerateStreamResponse"
    assert sse["text/event-stream"]["x-sse-data"] == {"$ref": ref}


def test_openapi_errors_have_code_message_details() -> None:
    error = SCHEMAS["Error"]
    assert list(error["properties"]) == ["code", "message", "details"]
    assert error["required"] == ["code", "message"]
    for _, _, op in _operations():
        schema = op["responses"]["default"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Error"}


def test_envoy_config_serves_the_committed_document() -> None:
    assert openapi_document().read_bytes() == (ROOT / "openapi" / "openapi.json").read_bytes()
    config = render(EnvoySettings(gateway_endpoints=["127.0.0.1:1"]))
    assert f"body: {{filename: {openapi_document()}}}" in config
