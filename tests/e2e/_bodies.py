"""The whole JSON error bodies HTTP clients get, for exact assertions.

Every error carries the call's request ID (the ``x-request-id`` response header): the gateway's
as a ``google.rpc.RequestInfo`` detail, Envoy's own replies also as a top-level field. Envoy's
replies to requests it refused before it read them have none (null, and no header).
"""

from __future__ import annotations

import httpx

REQUEST_INFO = "type.googleapis.com/google.rpc.RequestInfo"


def gateway_error(response: httpx.Response, code: int, message: str) -> dict[str, object]:
    """The body of an error the gateway raised (transcoded by Envoy)."""
    request_id = response.headers["x-request-id"]
    info = {"@type": REQUEST_INFO, "request_id": request_id, "serving_data": ""}
    return {"code": code, "message": message, "details": [info]}


def envoy_error(response: httpx.Response, code: int, message: str) -> dict[str, object]:
    """The body of a reply Envoy made itself (no request ID before the headers were read)."""
    request_id = response.headers.get("x-request-id")
    return {
        "code": code,
        "message": message,
        "details": [{"@type": REQUEST_INFO, "request_id": request_id}],
        "request_id": request_id,
    }


def openai_error(
    message: str, kind: str = "invalid_request_error", param: str | None = None
) -> dict[str, object]:
    """The ``error`` object of OpenAI's envelope with no OpenAI code (what the SDKs'
    ``e.body`` holds); the whole body is ``{"error": openai_error(...)}``."""
    return {"message": message, "type": kind, "param": param, "code": None}
