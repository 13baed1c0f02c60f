"""A Markdown view of the OpenAPI document scripts/openapi.py makes (docs/api.md)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

Schema = dict[str, Any]
PREFIX = "#/components/schemas/"


def _anchor(name: str) -> str:
    return name.lower().replace(".", "")


def _type(schema: Schema) -> str:
    if "$ref" in schema:
        name = schema["$ref"].removeprefix(PREFIX)
        return f"[{name.rsplit('.', 1)[-1]}](#{_anchor(name)})"
    if "oneOf" in schema:
        # A member that is a few set strings (a double's "NaN", "Infinity", "-Infinity")
        # reads best as those strings.
        return " or ".join(
            " or ".join(f"`{value}`" for value in s["enum"]) if "enum" in s else _type(s)
            for s in schema["oneOf"]
        )
    if "const" in schema:
        return f"`{schema['const']}`"
    kind = schema.get("type")
    if isinstance(kind, list):
        return " or ".join(map(str, kind))
    if kind == "array":
        return f"array of {_type(schema['items'])}"
    if kind == "object" and "additionalProperties" in schema:
        return f"map of string to {_type(schema['additionalProperties'])}"
    if kind is None:
        return "any JSON"
    detail = schema.get("format") or schema.get("contentEncoding")
    return f"{kind} ({detail})" if detail else str(kind)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _fields(schema: Schema) -> list[str]:
    props = schema.get("properties", {})
    if not props:
        return ["No fields.", ""]
    required = set(schema.get("required", ()))
    lines = ["| Field | Type | Description |", "|---|---|---|"]
    for name, prop in props.items():
        mark = " (required)" if name in required else ""
        lines.append(f"| `{name}`{mark} | {_type(prop)} | {_cell(prop.get('description', ''))} |")
    return [*lines, ""]


def _edge_operation(path: str, verb: str, op: Schema) -> list[str]:
    """A route Envoy answers itself: what it is, and its responses."""
    lines = [f"### `{verb.upper()} {path}`", "", op["description"], ""]
    lines += ["Answered by Envoy; open: no credentials needed, whatever the config.", ""]
    lines += ["| Status | Content | Description |", "|---|---|---|"]
    for status, response in op["responses"].items():
        if "$ref" in response:
            name = response["$ref"].rsplit("/", 1)[-1]
            lines.append(f"| {status} | `{name}` (see Credentials) | |")
            continue
        kinds = ", ".join(f"`{kind}`" for kind in response.get("content", {})) or "empty"
        lines.append(f"| {status} | {kinds} | {_cell(response['description'])} |")
    return [*lines, ""]


def _operation(path: str, verb: str, op: Schema) -> list[str]:
    if "x-grpc-method" not in op:
        return _edge_operation(path, verb, op)
    lines = [f"### `{verb.upper()} {path}`", "", op["description"], ""]
    lines.append(f"gRPC: `{op['x-grpc-method']}`")
    lines.append("")
    if op.get("security") == []:
        lines += ["Open: no credentials needed, whatever the config.", ""]
    params = _own(op)
    if params:
        lines += ["| Parameter | In | Type | Description |", "|---|---|---|---|"]
        for p in params:
            mark = " (required)" if p["required"] else ""
            desc = _cell(p.get("description", ""))
            lines.append(f"| `{p['name']}`{mark} | {p['in']} | {_type(p['schema'])} | {desc} |")
        lines.append("")
    if "requestBody" in op:
        body = op["requestBody"]["content"]["application/json"]["schema"]
        if "$ref" in body:
            lines += [f"Request body (JSON): {_type(body)}", ""]
        else:
            lines += ["Request body (JSON):", "", *_fields(body)]
    ok = op["responses"]["200"]["content"]
    if "application/json" in ok:
        lines += [f"Response (JSON): {_type(ok['application/json']['schema'])}", ""]
    if "text/event-stream" in ok:
        item = ok["text/event-stream"]["itemSchema"]
        data = item["properties"]["data"]
        json_data = next(d for d in data.get("anyOf", [data]) if "contentSchema" in d)
        named = "event" in item["required"]
        framing = "`event: <type>` and `data: <JSON>`" if named else "`data: <JSON>`"
        kind = _type(json_data["contentSchema"])
        end = [f" (or `{d['const']}`)" for d in data.get("anyOf", []) if "const" in d]
        lines += [
            f"Response: `text/event-stream`, each event {framing}, a {kind}{''.join(end)}.",
            "",
        ]
    return lines + _example(path, verb, op)


def _own(op: Schema) -> list[Schema]:
    """An operation's own parameters; those every route shares ($ref) are listed once."""
    return [p for p in op.get("parameters", []) if "$ref" not in p]


def _shared(components: Schema) -> list[str]:
    """The headers every SaxGateway route takes and answers with, listed once."""
    lines = ["Every SaxGateway route below takes and answers these headers:", ""]
    lines += ["| Header | In | Type | Description |", "|---|---|---|---|"]
    for p in components.get("parameters", {}).values():
        lines.append(
            f"| `{p['name']}` | request | {_type(p['schema'])} | {_cell(p['description'])} |"
        )
    for name, h in components.get("headers", {}).items():
        lines.append(f"| `{name}` | response | {_type(h['schema'])} | {_cell(h['description'])} |")
    return [*lines, ""]


def _refusals(doc: Schema) -> dict[str, str]:
    """The shared responses (``components.responses``) by name, with the status the
    operations answer each with."""
    found = {}
    for ops in doc["paths"].values():
        for op in ops.values():
            for status, response in op["responses"].items():
                if "$ref" in response:
                    found[response["$ref"].rsplit("/", 1)[-1]] = status
    return found


def _credentials(doc: Schema) -> list[str]:
    """The credentials the routes take, and the edge's refusals, listed once."""
    components = doc["components"]
    schemes = components.get("securitySchemes", {})
    if not schemes:
        return []
    lines = ["## Credentials", "", "| Scheme | Sent as | Description |", "|---|---|---|"]
    for name, scheme in schemes.items():
        sent = (
            f"`Authorization: {scheme['scheme'].capitalize()} <credential>`"
            if scheme["type"] == "http"
            else f"`{scheme['name']}: <credential>` ({scheme['in']})"
        )
        lines.append(f"| `{name}` | {sent} | {_cell(scheme['description'])} |")
    lines += ["", "Every route takes either, but those marked open. The edge's refusals (on the"]
    lines += ["OpenAI routes, `openai.<name>`: the same in OpenAI's envelope):", ""]
    lines += ["| Status | Response | Description | Example |", "|---|---|---|---|"]
    statuses = _refusals(doc)
    for name, response in components.get("responses", {}).items():
        if name.startswith("openai."):
            continue
        examples = response["content"]["application/json"]["examples"].values()
        shown = "<br>".join(f"`{json.dumps(e['value'])}`" for e in examples)
        lines.append(
            f"| {statuses[name]} | `{name}` | {_cell(response['description'])} | {shown} |"
        )
    return [*lines, ""]


def _example(path: str, verb: str, op: Schema) -> list[str]:
    """The operation's example as an HTTP exchange: request line, body, response."""
    if "x-grpc-method" in op and op["x-grpc-method"].startswith("/saxgateway.v1.OpenAIGateway/"):
        return []  # the OpenAI routes: examples in docs/openai.md
    params = _own(op)
    for p in params:
        if p["in"] == "path":
            path = path.replace("{" + p["name"] + "}", str(p["example"]))
    query = "&".join(
        f"{p['name']}={quote(str(p['example']), safe='/')}"
        for p in params
        if p["in"] == "query" and "example" in p
    )
    request = [f"{verb.upper()} {path}{'?' + query if query else ''}"]
    if "requestBody" in op:
        body = op["requestBody"]["content"]["application/json"]["example"]
        request += ["Content-Type: application/json", "", json.dumps(body, indent=2)]
    ok = op["responses"]["200"]["content"]
    if "text/event-stream" in ok:
        response = ["Content-Type: text/event-stream", "", ok["text/event-stream"]["example"]]
    else:
        body = json.dumps(ok["application/json"]["example"], indent=2)
        response = ["Content-Type: application/json", "", body]
    return [
        "Example request:",
        "",
        "```http",
        *request,
        "```",
        "",
        "Example response:",
        "",
        "```http",
        "HTTP/1.1 200 OK",
        *"\n".join(response).rstrip("\n").split("\n"),
        "```",
        "",
    ]


def render(doc: Schema) -> str:
    """The whole document as Markdown: operations by path, then every schema."""
    info = doc["info"]
    lines = [
        f"# {info['title']}",
        "",
        "<!-- Generated by scripts/openapi.py from proto/; do not edit. -->",
        "",
        "OpenAPI document: [`openapi/openapi.json`](../openapi/openapi.json) (also served by "
        "Envoy at `GET /openapi.json`).",
        "",
        info["description"],
        "",
        *_credentials(doc),
        "## Operations",
        "",
        *_shared(doc["components"]),
    ]
    for path, ops in doc["paths"].items():
        for verb, op in ops.items():
            lines += _operation(path, verb, op)
    lines += ["## Schemas", ""]
    for name, schema in doc["components"]["schemas"].items():
        lines += [f'<a id="{_anchor(name)}"></a>', "", f"### {name}", ""]
        if schema.get("description"):
            lines += [schema["description"], ""]
        lines += _fields(schema)
        for example in schema.get("examples", []):
            lines += ["Example:", "", "```json", json.dumps(example, indent=2), "```", ""]
    return "\n".join(lines).rstrip() + "\n"
