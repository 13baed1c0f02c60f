"""The whole JSON error bodies HTTP clients get, for exact assertions.

Every error carries the call's request ID (the ``x-request-id`` response header): the gateway's
as a ``google.rpc.RequestInfo`` detail, Envoy's own replies also as a top-level field. Envoy's
replies to requests it refused before it read them have none (null, and no header).

The bodies these build are compared whole with real replies, so each is also checked here
against its schema in the OpenAPI document (`documented_error`): every test that uses them
shows that the document describes what the edge sends.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs

REQUEST_INFO = "type.googleapis.com/google.rpc.RequestInfo"
_DOC: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[2] / "openapi" / "openapi.json").read_text()
)


def documented_error(body: Any) -> Any:
    """``body``, once it validates against the document's error schema: `Error`, or OpenAI's
    envelope (`openai.Error`) for a body with an ``error`` object."""
    name = "openai.Error" if isinstance(body, dict) and "error" in body else "Error"
    schema = {**_DOC["components"]["schemas"][name], "components": _DOC["components"]}
    jsonschema_rs.Draft202012Validator(schema).validate(body)
    return body


def gateway_error(response: httpx.Response, code: int, message: str) -> dict[str, object]:
    """The body of an error the gateway raised (transcoded by Envoy)."""
    request_id = response.headers["x-request-id"]
    info = {"@type": REQUEST_INFO, "request_id": request_id, "serving_data": ""}
    return dict(documented_error({"code": code, "message": message, "details": [info]}))


def envoy_error(response: httpx.Response, code: int, message: str) -> dict[str, object]:
    """The body of a reply Envoy made itself (no request ID before the headers were read)."""
    request_id = response.headers.get("x-request-id")
    body = {
        "code": code,
        "message": message,
        "details": [{"@type": REQUEST_INFO, "request_id": request_id}],
        "request_id": request_id,
    }
    return dict(documented_error(body))


def openai_error(
    message: str, kind: str = "invalid_request_error", param: str | None = None
) -> dict[str, object]:
    """The ``error`` object of OpenAI's envelope with no OpenAI code (what the SDKs'
    ``e.body`` holds); the whole body is ``{"error": openai_error(...)}``."""
    error = {"message": message, "type": kind, "param": param, "code": None}
    return dict(documented_error({"error": error})["error"])
