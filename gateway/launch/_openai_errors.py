"""Every error reply on an OpenAI route is OpenAI's envelope, the one the SDKs parse: the
tables of the template's ``openai_errors`` Lua, rendered from the gateway's own.

The gateway sends its OpenAI errors' envelope in ``x-openai-error``, which the Lua makes the
body. A failure grpc reports itself, before or around the gateway's code (a ``-bin`` header
that is not base64; never a ``grpc-timeout``, which these routes hand the gateway under
another name), has none: the transcoder writes
its ``{"code","message","details"}``, and the Lua turns that into the envelope with these
tables, the ``type``, ``param`` and ``code`` the gateway gives each gRPC code, and the headers
the SDKs act on (``retry-after``, ``x-should-retry``): gateway/service/openai/_errors.py,
the one place that says what each code is to an OpenAI client.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import grpc

from gateway.service.openai import error_fields, reply_headers


def _lua_string(text: str) -> str:
    """A Lua long string: its text as is, no escapes to get wrong."""
    if "]]" in text or "\n" in text:
        raise ValueError(f"not one line of a Lua long string: {text!r}")
    return f"[[{text}]]"


def _lua_table(entries: Mapping[int, str]) -> str:
    """A one-line Lua table of gRPC code -> Lua expression."""
    return "{" + ", ".join(f"[{code}] = {value}" for code, value in entries.items()) + "}"


def error_fields_table() -> str:
    """``FIELDS``: for each gRPC code, the envelope's members after its message, as JSON text
    (``"type": "timeout_error", "param": null, "code": "timeout"``)."""
    return _lua_table(
        {
            code.value[0]: _lua_string(json.dumps(error_fields(code))[1:-1])
            for code in grpc.StatusCode
        }
    )


def error_headers_table() -> str:
    """``HEADERS``: for each gRPC code that has any, the reply headers the SDKs act on."""
    return _lua_table(
        {
            code.value[0]: "{"
            + ", ".join(f"{{{_lua_string(k)}, {_lua_string(v)}}}" for k, v in headers)
            + "}"
            for code in grpc.StatusCode
            if (headers := reply_headers(code))
        }
    )
