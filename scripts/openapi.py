#!/usr/bin/env python3
"""OpenAPI 3.2 for the HTTP/JSON surface Envoy's transcoder serves, made from the proto.

Reads ``proto/saxgateway/v1/gateway.proto`` (compiled with comments), its ``google.api.http``
bindings and field comments, and the example request and response of every RPC
(``proto/saxgateway/v1/examples.json``, recorded from a running stack), and writes
``openapi/openapi.json`` and its rendered view ``docs/api.md``. JSON is described as Envoy
prints it: proto field names
(``preserve_proto_field_names``), 64-bit integers as strings, bytes as base64, well-known
types in their proto3 JSON form, errors as ``{"code", "message", "details"}``, and
server-streaming RPCs as Server-Sent Events.

    scripts/openapi.py            # regenerate
    scripts/openapi.py --check    # fail if the committed files are stale
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import apidocs
import openapi_edge
import openapi_openai
import openapi_sse
from google.api import annotations_pb2, field_behavior_pb2, http_pb2
from google.protobuf import descriptor_pb2
from grpc_tools import protoc  # type: ignore[import-untyped]

from gateway.common.limits import MAX_REPLICAS
from gateway.common.logs import LOGGED_ID_CHARS
from gateway.common.names import NAME_PATTERN

ROOT = Path(__file__).resolve().parent.parent
PROTO = "saxgateway/v1/gateway.proto"
EXAMPLES = "saxgateway/v1/examples.json"
OPENAI_PROTO = "saxgateway/v1/openai.proto"  # HttpBody RPCs: JSON schemas in openapi_openai
OPENAPI = Path("openapi/openapi.json")
MARKDOWN = Path("docs/api.md")

Schema = dict[str, Any]
FDP = descriptor_pb2.FieldDescriptorProto

# Path-template variables bind Sax IDs: "sax/<cell>/<name>". OpenAPI path parameters cannot
# contain "/", so each wildcard segment after "sax" becomes a parameter of its own.
SEGMENT_NAMES = ("cell", "name")
DURATION = r"^-?[0-9]+(\.[0-9]{1,9})?s$"
# A timeout: a Duration above zero (gateway/service/_fields.py refuses 0s and less: 400
# "timeout: must be positive"), seconds with up to 9 fractional digits, one of them not 0.
_SOME_FRACTION = "|".join(f"{'0' * i}[1-9][0-9]{{0,{8 - i}}}" for i in range(8)) + "|0{8}[1-9]"
POSITIVE_DURATION = rf"^(?:[0-9]*[1-9][0-9]*(?:\.[0-9]{{1,9}})?|[0-9]+\.(?:{_SOME_FRACTION}))s$"
BASE64 = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
"""Bytes as replies print them (proto3 JSON): standard base64 with padding."""
_ALPHABETS = ("A-Za-z0-9+/", "A-Za-z0-9_-")
BASE64_TAKEN = (
    "^(?:"
    + "|".join(f"(?:[{a}]{{4}})*(?:[{a}]{{2}}(?:==)?|[{a}]{{3}}=?)?" for a in _ALPHABETS)
    + ")$"
)
"""Bytes as requests may spell them: proto3 JSON parsers, Envoy's transcoder too, take
standard or URL-safe base64, with or without padding (not the two alphabets mixed)."""
INT64 = r"^-?[0-9]+$"
# One alternative with a type, not three bare `const`s: openapi-python-client (0.29) turns a
# oneOf of typeless consts into a parser that accepts nothing but "NaN", so every number
# reply (a score, an embedding) failed to parse in the client it generated.
NON_FINITE: list[Schema] = [{"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]}]

_SCALARS: dict[int, Schema] = {
    FDP.TYPE_STRING: {"type": "string"},
    FDP.TYPE_BOOL: {"type": "boolean"},
    # proto3 JSON spells the values JSON has no number for as strings: a model's score may be
    # "-Infinity" (a suffix it rules out) or "NaN", and the transcoder prints it so.
    FDP.TYPE_DOUBLE: {"oneOf": [{"type": "number", "format": "double"}, *NON_FINITE]},
    FDP.TYPE_FLOAT: {"oneOf": [{"type": "number", "format": "float"}, *NON_FINITE]},
    FDP.TYPE_INT32: {"type": "integer", "format": "int32"},
    FDP.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FDP.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    FDP.TYPE_UINT32: {"type": "integer", "format": "uint32", "minimum": 0},
    FDP.TYPE_FIXED32: {"type": "integer", "format": "uint32", "minimum": 0},
    FDP.TYPE_INT64: {"type": "string", "format": "int64", "pattern": INT64},
    FDP.TYPE_SINT64: {"type": "string", "format": "int64", "pattern": INT64},
    FDP.TYPE_SFIXED64: {"type": "string", "format": "int64", "pattern": INT64},
    FDP.TYPE_UINT64: {"type": "string", "format": "uint64", "pattern": r"^[0-9]+$"},
    FDP.TYPE_FIXED64: {"type": "string", "format": "uint64", "pattern": r"^[0-9]+$"},
    FDP.TYPE_BYTES: {"type": "string", "contentEncoding": "base64", "pattern": BASE64_TAKEN},
}
_INT32_RANGE = {"minimum": -(2**31), "maximum": 2**31 - 1}
# The bounds the gateway checks of fields a request sends (gateway/service/_fields.py,
# _pages.py), where int32's own range would let a generated client send what is a 400.
_REQUEST_BOUNDS: dict[tuple[str, str], Schema] = {
    **{
        (f"saxgateway.v1.{message}", "replicas"): {"minimum": 0, "maximum": MAX_REPLICAS}
        for message in ("PublishModelRequest", "UpdateModelRequest", "WaitForReadyRequest")
    },
    ("saxgateway.v1.ListModelsRequest", "page_size"): {"minimum": 0},
}


def _not_empty(field: descriptor_pb2.FieldDescriptorProto) -> Schema:
    """What a required field must hold besides being there: proto3 JSON cannot tell an empty
    string, bytes or list from one not sent, and the gateway refuses each as missing (400
    "query: required")."""
    if field.label == FDP.LABEL_REPEATED:
        return {"minItems": 1}
    if field.type in (FDP.TYPE_STRING, FDP.TYPE_BYTES):
        return {"minLength": 1}
    return {}


# Well-known types have their own JSON forms (protobuf.dev/programming-guides/json).
_WELL_KNOWN: dict[str, Schema] = {
    # Any JSON value in general; this API takes one only as an extra input, where the gateway
    # refuses all but these (INVALID_ARGUMENT naming extra_inputs[key]).
    "google.protobuf.Value": {
        "oneOf": [
            {"type": "number"},
            {"type": "string"},
            {"type": "array", "items": {"type": "number"}},
        ],
        "description": "A number, a string, or a list of numbers (a tensor).",
    },
    "google.protobuf.Struct": {"type": "object", "description": "Any JSON object."},
    "google.protobuf.ListValue": {"type": "array", "description": "Any JSON array."},
    "google.protobuf.Duration": {
        "type": "string",
        "pattern": DURATION,
        "description": 'Seconds with up to 9 fractional digits and an "s" suffix, e.g. "1.5s".',
    },
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string", "description": "The type URL."}},
        "required": ["@type"],
        "description": "A message with its type URL, e.g. a google.rpc.BadRequest.",
    },
}

_STATUS_TEXT = (
    "Errors are JSON (`Error`) with the HTTP status Envoy maps the gRPC code to: "
    "INVALID_ARGUMENT 400, UNAUTHENTICATED 401, PERMISSION_DENIED 403, NOT_FOUND 404, "
    "ALREADY_EXISTS 409, FAILED_PRECONDITION 400, RESOURCE_EXHAUSTED 429, CANCELLED 499, "
    "UNIMPLEMENTED 501, UNAVAILABLE 503, DEADLINE_EXCEEDED 504. A method a path does not take "
    "(`GET /generate`) is a 405 with code UNIMPLEMENTED and an `Allow` header naming those it "
    "takes (every path that takes GET takes HEAD too, answered as the GET without its body); "
    "a path the API lacks is a 404; a compressed body (`content-encoding` other than "
    "identity), a `grpc-encoding` other than identity, deflate or gzip, or a gRPC or grpc-web "
    "codec other than protobuf (`application/grpc-web+json`), is a 415 with code "
    "UNIMPLEMENTED; that for a compressed body carries `Accept-Encoding: identity`, the one "
    "coding a body may have here (RFC 9110 15.5.16). A Connect protocol unary call "
    "(`Connect-Protocol-Version`: `buf curl`'s default) is a 415 too, its body Connect's "
    'error JSON (`{"code": "unimplemented", "message": ...}`), and a Connect stream '
    "(`application/connect+...`) a 200 whose one message ends it with that error: the port "
    "serves HTTP/JSON, gRPC and grpc-web. A method's gRPC path called as plain HTTP (a JSON "
    "`POST /saxgateway.v1.SaxGateway/Generate`) is a 415 too, naming the protocols it is "
    "served over, and so is one whose content-type is `application/grpc` or a grpc-web type "
    "with parameters (`application/grpc; charset=utf-8`), which Envoy takes for neither "
    "(`application/grpc+proto; charset=utf-8` is gRPC to Envoy, and served). A header whose "
    "name ends in `-bin` "
    "(gRPC binary metadata, in base64) with "
    "a value that is not base64 is a 400 with code INVALID_ARGUMENT naming the header. "
    "A protocol upgrade (a WebSocket `Upgrade`, or `CONNECT` from a client that "
    "takes the port for a proxy) is a 501 with code UNIMPLEMENTED: streams are server-sent "
    "events or gRPC. HTTP/1.0 requests are served (ApacheBench, nginx's default proxy_pass); "
    "a reply of unknown length, a stream, ends when the connection closes. A score or other "
    "number a model returns that JSON has no number for is a string, as in proto3 JSON: "
    '`"NaN"`, `"Infinity"` or `"-Infinity"` (`{"logp": ["-Infinity", -0.1]}`).'
)

# How Envoy's transcoder reads a SaxGateway body (measured on Envoy 1.40): proto3 JSON, more
# leniently than its spec, and it has no option to refuse a field the message lacks
# (envoyproxy/envoy#46623). The OpenAI routes read their bodies as strict JSON.
_JSON_TEXT = (
    "Request bodies are proto3 JSON, read by Envoy's transcoder. A field may be named as in "
    "the proto (`extra_inputs`) or in lowerCamelCase (`extraInputs`); replies use the proto's "
    'names and print every field, defaults too (`0`, `""`, `false`, `[]`, `{}`), but for '
    "those said to be absent otherwise. `null` is a field's default, in a map too "
    '(`"overrides": {"text": null}` sets `text` to `""`). An int32 may be a string '
    '(`"replicas": "2"`), a bool a string such as `"true"` or `"no"`; bytes are standard or '
    "URL-safe base64, padded or not (replies: standard, padded); a duration is seconds with "
    'an `s` (`"1.5s"`). **A field the method does not have is ignored, not refused**: a '
    'misspelt `"replica": 2` publishes one replica, so read the reply, which says what was '
    "done. The transcoder's parser also takes some text that is not JSON (single-quoted "
    "strings, unquoted keys, a trailing comma); what it cannot read is a 400, naming the "
    "field in its message (of a repeated field, always its first element: `image_frames[0]`) "
    "for a body of 64 KiB or less, and no field for a larger one, whose message would repeat "
    "the value. An image, audio clip, video frame, multimodal item or custom request may be "
    "10 MiB each (a 400 naming the field past it), however large `limits.max_request_bytes` "
    "lets the body be. The OpenAI "
    "routes read strict JSON (docs/openai.md). A body is read as UTF-8 JSON whatever its "
    "`Content-Type` says (none, curl's default `application/x-www-form-urlencoded`, "
    "`text/plain`; a `charset` is not read, JSON having one encoding, RFC 8259), but for a "
    "gRPC or grpc-web type, which makes it a gRPC call. Replies are JSON, or "
    "`text/event-stream` on the streaming routes, whatever `Accept` asks: one the route "
    "cannot give (`application/xml`) is disregarded, as RFC 9110 12.5.1 allows, not a 406. "
    "They are not compressed whatever `Accept-Encoding` asks (the OpenAPI document and the "
    "/docs page's files are gzipped): unary replies are small, and a compressor would hold "
    "a stream's events back."
)


# Headers every SaxGateway route takes and answers with (README, "The deadline of any call";
# Envoy checks grpc-timeout's form and sets x-request-id on every response, its own included,
# but for those to requests it refused before it read them: README, "Errors are JSON").
_GRPC_TIMEOUT: Schema = {
    "name": "grpc-timeout",
    "in": "header",
    "required": False,
    "description": "Deadline of the call: a positive number of up to 8 digits and a unit (H, M, "
    "S, m, u or n), such as 30S or 500m; anything else is a 400. The shorter of this and a body "
    "`timeout` wins, up to the gateway's default timeout (`--default-timeout`, 60 s; a "
    "stream's: 600 s), which also applies without either. Either counts from the request's "
    "first byte: time spent sending the body is part of it. On the HTTP streams and the OpenAI "
    "routes the gateway alone keeps it (grpc is not told), so a stream always ends with its "
    "last event.",
    "schema": {"type": "string", "pattern": "^0*[1-9][0-9]{0,7}[HMSmun]$"},
}
_REQUEST_ID: Schema = {
    "description": "The request's ID: the caller's own x-request-id if it sent one. Error "
    "bodies name it too (a google.rpc.RequestInfo detail).",
    "required": True,
    "schema": {"type": "string"},
}
_HEADERS = {"x-request-id": {"$ref": "#/components/headers/x-request-id"}}
# A unary call's cost as the model servers reported it (docs/operations.md, "Cost per request"):
# the gateway's trailer, which Envoy's cost_header filter copies into the reply's headers.
_QUERY_COST: Schema = {
    "description": "On a unary call's reply: what the call cost, in accelerator (TPU) "
    "milliseconds, as the model servers that answered it reported it (Sax's `query_cost_v0`), "
    "summed over every attempt. Absent when none reported one (calls that reach no model "
    "server, such as publish or the listings). Streams carry it only as a trailer.",
    "required": False,
    "schema": {"type": "integer", "minimum": 0},
}
_UNARY_HEADERS = {
    **_HEADERS,
    "x-sax-query-cost-ms": {"$ref": "#/components/headers/x-sax-query-cost-ms"},
}


@dataclass(frozen=True)
class Message:
    proto: descriptor_pb2.DescriptorProto
    comments: dict[tuple[int, ...], str]
    path: tuple[int, ...]

    def comment(self, *sub: int) -> str:
        return self.comments.get(self.path + sub, "")


def compile_descriptor(proto_root: Path) -> descriptor_pb2.FileDescriptorSet:
    """gateway.proto and its imports, with comments, compiled by grpcio-tools' protoc."""
    import google.api

    gapis = Path(google.api.__path__[0]).parent.parent
    wkt = resources.files("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.binpb"
        args = ["protoc", f"-I{proto_root}", f"-I{gapis}", f"-I{wkt}", "--include_imports"]
        args += ["--include_source_info", f"--descriptor_set_out={out}", PROTO, OPENAI_PROTO]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _comments(file: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    result = {}
    for loc in file.source_code_info.location:
        paragraphs = loc.leading_comments.strip().split("\n\n")
        text = "\n\n".join(" ".join(p.split()) for p in paragraphs)
        if text:
            result[tuple(loc.path)] = text
    return result


def _messages(fds: descriptor_pb2.FileDescriptorSet) -> dict[str, Message]:
    found: dict[str, Message] = {}

    def walk(
        prefix: str,
        msgs: Any,
        comments: dict[tuple[int, ...], str],
        path: tuple[int, ...],
        tag: int,
    ) -> None:
        for i, msg in enumerate(msgs):
            name = f"{prefix}.{msg.name}"
            found[name] = Message(msg, comments, (*path, tag, i))
            walk(name, msg.nested_type, comments, (*path, tag, i), 3)

    for file in fds.file:
        walk(file.package, file.message_type, _comments(file), (), 4)
    return found


def _always_printed(field: descriptor_pb2.FieldDescriptorProto) -> bool:
    """Whether the transcoder prints ``field`` in every reply (always_print_primitive_fields):
    a scalar, a list or a map, defaults too; not one with presence (proto3 optional, of a
    oneof, or a message), which is absent when unset."""
    has_presence = field.HasField("oneof_index") or field.type == FDP.TYPE_MESSAGE
    return field.label == FDP.LABEL_REPEATED or not has_presence


def _as_printed(schema: Schema) -> Schema:
    """A bytes field's schema (or a repeated one's) with the base64 replies print, where
    only replies carry it (an output-only field)."""
    if "items" in schema:
        return {**schema, "items": _as_printed(schema["items"])}
    return {**schema, "pattern": BASE64}


class Generator:
    def __init__(self, fds: descriptor_pb2.FileDescriptorSet, examples: Schema) -> None:
        self.examples = examples
        self.messages = _messages(fds)
        self.file = next(f for f in fds.file if f.name == PROTO)
        self.openai = next(f for f in fds.file if f.name == OPENAI_PROTO)
        self.comments = _comments(self.file)
        self.schemas: dict[str, Schema] = {}
        methods = self.file.service[0].method
        replies = self._reachable(m.output_type for m in methods)
        self.replies_only = {
            name
            for name in replies - self._reachable(m.input_type for m in methods)
            if name.startswith(f"{self.file.package}.")
        }
        """The API's messages only replies carry, whose printed fields a reply always has
        (not google.rpc.Status: `Error` says what an error always has)."""

    def _reachable(self, roots: Iterable[str]) -> set[str]:
        """The messages ``roots`` name, and those their fields name, transitively."""
        found: set[str] = set()
        todo = [r.lstrip(".") for r in roots]
        while todo:
            name = todo.pop()
            if name in found or name not in self.messages:
                continue
            found.add(name)
            fields = self.messages[name].proto.field
            todo += [f.type_name.lstrip(".") for f in fields if f.type == FDP.TYPE_MESSAGE]
        return found

    # --- schemas -------------------------------------------------------------------------

    def ref(self, type_name: str) -> Schema:
        name = type_name.lstrip(".")
        if name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[name])
        if name not in self.schemas:
            self.schemas[name] = {}  # placeholder: recursion-safe
            self.schemas[name] = self.message_schema(name)
        return {"$ref": f"#/components/schemas/{name}"}

    def field_schema(self, field: descriptor_pb2.FieldDescriptorProto) -> Schema:
        if field.type in (FDP.TYPE_MESSAGE, FDP.TYPE_GROUP):
            entry = self.messages.get(field.type_name.lstrip("."))
            if entry and entry.proto.options.map_entry:
                key, value = entry.proto.field
                keys = dict(_SCALARS[key.type])
                keys.pop("type", None)
                keys.pop("format", None)
                schema: Schema = {"type": "object", "additionalProperties": self.value(value)}
                if keys.get("pattern"):
                    schema["propertyNames"] = {"pattern": keys["pattern"]}
                return schema
        item = self.value(field)
        if field.label == FDP.LABEL_REPEATED:
            return {"type": "array", "items": item}
        return item

    def value(self, field: descriptor_pb2.FieldDescriptorProto) -> Schema:
        if field.type in (FDP.TYPE_MESSAGE, FDP.TYPE_GROUP):
            return self.ref(field.type_name)
        if field.type == FDP.TYPE_ENUM:
            return {"type": "string", "x-proto-enum": field.type_name.lstrip(".")}
        schema = dict(_SCALARS[field.type])
        if schema.get("format") == "int32":
            schema.update(_INT32_RANGE)
        return schema

    def message_schema(self, name: str, *, skip: frozenset[str] = frozenset()) -> Schema:
        msg = self.messages[name]
        props: dict[str, Schema] = {}
        required = []
        for i, field in enumerate(msg.proto.field):
            if field.name in skip:
                continue
            schema = self.field_schema(field)
            doc = msg.comment(2, i)
            if field.type == FDP.TYPE_BYTES and doc.startswith("Output only."):
                schema = _as_printed(schema)
            schema = {**schema, **_REQUEST_BOUNDS.get((name, field.name), {})}
            if field.type_name == ".google.protobuf.Duration":  # every one is a timeout
                schema["pattern"] = POSITIVE_DURATION
            if field_behavior_pb2.REQUIRED in _behaviors(field):
                schema = {**schema, **_not_empty(field)}
            if doc:
                schema = {**schema, "description": doc}  # 3.1 allows siblings of $ref
            props[field.name] = schema
            if field_behavior_pb2.REQUIRED in _behaviors(field) or (
                name in self.replies_only and _always_printed(field)
            ):
                required.append(field.name)
        result: Schema = {"type": "object"}
        if msg.comment():
            result["description"] = msg.comment()
        result["properties"] = props
        if required:
            result["required"] = required
        return result

    # --- paths ---------------------------------------------------------------------------

    def document(self) -> Schema:
        service = self.file.service[0]
        paths: dict[str, dict[str, Schema]] = {}
        for m, method in enumerate(service.method):
            rule = _http_rule(method)
            rules = [rule, *rule.additional_bindings]
            n = 0
            for binding in rules:
                verb, template = _verb(binding)
                for path, params in _expand(template):
                    n += 1
                    op_id = method.name if n == 1 else f"{method.name}_{n}"
                    op = self.operation(method, (6, 0, 2, m), binding, params, op_id)
                    paths.setdefault(path, {})[verb] = op
        self.schemas["Error"] = self.error_schema()
        self.openai_paths(paths)
        paths.update(openapi_edge.paths())
        return {
            # 3.2: its itemSchema describes each event of a stream (openapi_sse).
            "openapi": "3.2.0",
            "info": {
                "title": f"{service.name} HTTP/JSON API",
                "version": self.file.package.rsplit(".", 1)[-1],
                "description": self.comments.get((6, 0), "")
                + "\n\n"
                + _STATUS_TEXT
                + "\n\n"
                + _JSON_TEXT,
                "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
            },
            # Relative: the gateway that serves this document (and its /docs page) is the server.
            "servers": [{"url": "/", "description": "the gateway serving this document"}],
            "tags": [
                {"name": service.name},
                {"name": openapi_openai.TAG},
                {"name": openapi_edge.TAG, "description": openapi_edge.TAG_DESCRIPTION},
            ],
            # Credentials, where the stack asks for them (open routes say `security: []`).
            "security": openapi_edge.CREDENTIALS,
            "paths": paths,
            "components": {
                "schemas": dict(sorted(self.schemas.items())),
                "parameters": {"grpc-timeout": _GRPC_TIMEOUT},
                "headers": {
                    "x-request-id": _REQUEST_ID,
                    "x-sax-query-cost-ms": _QUERY_COST,
                    **openapi_edge.headers(),
                },
                "responses": openapi_edge.responses(self.examples["errors"]),
                "securitySchemes": openapi_edge.SCHEMES,
            },
        }

    def openai_paths(self, paths: dict[str, dict[str, Schema]]) -> None:
        """The OpenAI-compatible routes (HttpBody RPCs), with hand-written JSON schemas."""
        comments = _comments(self.openai)
        service = self.openai.service[0]
        for m, method in enumerate(service.method):
            verb, template = _verb(_http_rule(method))
            doc = comments.get((6, 0, 2, m), "")
            for path, v, op in openapi_openai.operations(
                self.openai.package, method.name, verb, template, doc
            ):
                ok, error = op["responses"]["200"], op["responses"]["default"]
                refusals = openapi_edge.refusals(op["x-grpc-method"], openai=True)
                op["responses"] = {"200": ok, **refusals, "default": error}
                paths.setdefault(path, {})[v] = op
        self.schemas.update(openapi_openai.schemas())

    def operation(
        self,
        method: descriptor_pb2.MethodDescriptorProto,
        path: tuple[int, ...],
        binding: http_pb2.HttpRule,
        params: list[tuple[str, str, str]],
        op_id: str,
    ) -> Schema:
        doc = self.comments.get(path, "")
        request = method.input_type.lstrip(".")
        bound = frozenset(field for _, field, _ in params)
        if method.name not in self.examples:
            raise SystemExit(f"{method.name} has no example in proto/{EXAMPLES}")
        example = _binding_example(self.examples[method.name], method.name, params)
        op: Schema = {
            "tags": [self.file.service[0].name],
            "operationId": op_id,
            "summary": doc.split(". ")[0].rstrip("."),
            "description": doc,
            "x-grpc-method": f"/{self.file.package}.{self.file.service[0].name}/{method.name}",
        }
        parameters = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "description": f"Part of `{field}`: {template}.",
                # The names Sax allows, which the gateway checks (400 "must match ...").
                "schema": {"type": "string", "pattern": NAME_PATTERN},
                **_segment_example(example["request"], field, i),
            }
            for i, (name, field, template) in enumerate(params)
        ]
        if binding.body != "*":
            for query in self.query_parameters(request, bound):
                if query["name"] in example["request"]:
                    query["example"] = example["request"][query["name"]]
                parameters.append(query)
        op["parameters"] = [*parameters, {"$ref": "#/components/parameters/grpc-timeout"}]
        if binding.body == "*":
            op["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": self.body_schema(request, bound),
                        "example": {k: v for k, v in example["request"].items() if k not in bound},
                    },
                },
            }
        response = self.ref(method.output_type)
        if method.server_streaming:
            content = {
                openapi_sse.MEDIA_TYPE: openapi_sse.event_stream(
                    response,
                    "One Server-Sent Event per message: `data: <JSON>`, a "
                    f"{method.output_type.lstrip('.')} (no `event:` names).",
                    example="".join(f"data: {_compact(e)}\n\n" for e in example["events"]),
                ),
            }
            ok = (
                "A stream of messages as Server-Sent Events, `data: <JSON>` each, a "
                f"{method.output_type.lstrip('.')}; the last says how the stream ended."
            )
            headers = _HEADERS
        else:
            content = {"application/json": {"schema": response, "example": example["response"]}}
            ok = "OK"
            headers = _UNARY_HEADERS
        if openapi_edge.is_open(op["x-grpc-method"]):
            op["security"] = []
        op["responses"] = {
            "200": {"description": ok, "headers": headers, "content": content},
            **openapi_edge.refusals(op["x-grpc-method"]),
            "default": {
                "description": "An error: the gRPC status, with its mapped HTTP status.",
                "headers": _HEADERS,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        }
        return op

    def body_schema(self, request: str, bound: frozenset[str]) -> Schema:
        if not bound:
            return self.ref(request)
        schema = self.message_schema(request, skip=bound)
        if "required" in schema:
            schema["required"] = [f for f in schema["required"] if f not in bound]
            schema["required"] = schema["required"] or schema.pop("required")
        return schema

    def query_parameters(self, request: str, bound: frozenset[str]) -> list[Schema]:
        schema = self.message_schema(request, skip=bound)
        return [
            {
                "name": name,
                "in": "query",
                "required": name in schema.get("required", []),
                "description": prop.pop("description", ""),
                "schema": prop,
            }
            for name, prop in schema["properties"].items()
            if prop.get("type") in ("string", "integer", "number", "boolean", "array")
        ]

    def error_schema(self) -> Schema:
        self.ref("google.rpc.Status")
        schema = dict(self.schemas["google.rpc.Status"])
        schema["description"] = (
            'An error as Envoy prints it (`convert_grpc_status`): {"code", "message", '
            '"details"}. `code` is the google.rpc.Code (5 is NOT_FOUND).'
        )
        # Envoy's own replies (bad JSON, unknown paths, limits) also name the request at the top;
        # those it makes before it has read the request have no ID to give: null, there and in
        # their RequestInfo detail (README, "Errors are JSON"; gateway/launch/_replies.py).
        schema["properties"] = {
            **schema["properties"],
            "request_id": {
                "type": ["string", "null"],
                "description": "Only in the errors Envoy answers itself: the x-request-id "
                f"(its first {LOGGED_ID_CHARS} bytes, the prefix Envoy's access log keeps). "
                "null (and null in the RequestInfo detail, with no x-request-id header) in "
                "those Envoy sends before it has read the request, and so before there is an "
                "ID: headers too large (431), a request it cannot parse (400: a malformed "
                "request line or header, an unknown method, a bad Content-Length or "
                "Transfer-Encoding), no Host header, a path that cannot be normalized, a QUERY "
                "without a Content-Type or an https:// target on the plaintext port (400), and "
                "`OPTIONS *` (404).",
            },
        }
        schema["required"] = ["code", "message"]
        schema["examples"] = [self.examples["errors"][name] for name in ("NOT_FOUND", "BadRequest")]
        return schema


def _compact(value: object) -> str:
    """JSON as Envoy prints it: no whitespace."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _binding_example(example: Schema, method: str, params: list[tuple[str, str, str]]) -> Schema:
    """The example of one binding. A path that names a cell where the RPC's example names a
    model (``/v1/sax/{cell}:getAcl``), or the reverse, shows the example's ``"cell"`` (or
    ``"model"``) variant: the request that path sends and the answer it gets."""
    if not params:
        return example
    named = str(example["request"].get(params[0][1], "")).strip("/").split("/")[1:]
    if len(named) == len(params):
        return example
    kind = "cell" if len(params) == 1 else "model"
    if kind not in example:
        raise SystemExit(f'{method} needs a "{kind}" example in proto/{EXAMPLES}')
    variant: Schema = example[kind]
    return variant


def _segment_example(request: Schema, field: str, index: int) -> Schema:
    """The example of the ``index``-th path segment after "sax" of ``request[field]``."""
    segments = str(request[field]).strip("/").split("/")[1:]
    return {"example": segments[index]}


# googleapis-common-protos' stubs type its extensions as plain FieldDescriptors, which
# types-protobuf's Extensions[...] does not take; these two read them, typed.
def _http_rule(method: descriptor_pb2.MethodDescriptorProto) -> http_pb2.HttpRule:
    rule: http_pb2.HttpRule = method.options.Extensions[annotations_pb2.http]  # type: ignore[index]
    return rule


def _behaviors(field: descriptor_pb2.FieldDescriptorProto) -> list[int]:
    return list(field.options.Extensions[field_behavior_pb2.field_behavior])  # type: ignore[index]


def _verb(rule: http_pb2.HttpRule) -> tuple[str, str]:
    kind = rule.WhichOneof("pattern")
    if kind == "custom" or kind is None:
        raise SystemExit(f"unsupported HTTP rule: {rule}")
    return kind, str(getattr(rule, kind))


def _expand(template: str) -> Iterator[tuple[str, list[tuple[str, str, str]]]]:
    """OpenAPI paths for one path template, with (parameter, field, template) per parameter.

    ``/v1/{model=sax/*/*}:publish`` -> ``/v1/sax/{cell}/{name}:publish``; ``sax/**`` expands
    to a cell and a model path.
    """
    variables = list(re.finditer(r"\{([a-z_.]+)=([^}]*)\}", template))
    if not variables:
        yield template, []
        return
    if len(variables) > 1:
        raise SystemExit(f"one variable per path is supported: {template}")
    var = variables[0]
    field, pattern = var.group(1), var.group(2)
    head, *rest = pattern.split("/")
    if head != "sax" or not rest:
        raise SystemExit(f"unsupported variable {var.group(0)} in {template}")
    counts = [2 if rest == ["*", "*"] else 1] if rest != ["**"] else [1, 2]
    if rest not in (["*"], ["*", "*"], ["**"]):
        raise SystemExit(f"unsupported variable {var.group(0)} in {template}")
    for count in counts:
        names = SEGMENT_NAMES[:count]
        segments = "/".join(f"{{{n}}}" for n in names)
        path = template[: var.start()] + f"sax/{segments}" + template[var.end() :]
        meaning = f'`{field}` is "sax/' + "/".join(f"{{{n}}}" for n in names) + '"'
        yield path, [(n, field, meaning) for n in names]


def generate(proto_root: Path) -> tuple[str, str]:
    """The OpenAPI document (JSON) and its Markdown view."""
    examples = json.loads((proto_root / EXAMPLES).read_text())
    doc = Generator(compile_descriptor(proto_root), examples).document()
    return json.dumps(doc, indent=2) + "\n", apidocs.render(doc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if the files are stale")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root")
    args = parser.parse_args(argv)
    outputs = dict(zip((OPENAPI, MARKDOWN), generate(args.root / "proto"), strict=True))
    stale = []
    for rel, text in outputs.items():
        path = args.root / rel
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(rel))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"stale: {', '.join(stale)}; run `make openapi` and commit.", file=sys.stderr)
        return 1
    print("OpenAPI is up to date." if args.check else f"wrote {', '.join(map(str, outputs))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
