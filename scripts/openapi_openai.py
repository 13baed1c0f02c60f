"""The OpenAI-compatible routes of the OpenAPI document (scripts/openapi.py).

Their RPCs (proto/saxgateway/v1/openai.proto) carry OpenAI's JSON as raw `google.api.HttpBody`,
so the proto cannot describe it: the JSON schemas are written here, from OpenAI's API
reference, restricted to what the gateway accepts and returns (docs/openai.md). Paths, verbs,
summaries and gRPC methods still come from the proto.
"""

from __future__ import annotations

import json
from typing import Any

import openapi_sse

from gateway.common.limits import MAX_TEXT_CHARS
from gateway.service.openai._requests import (
    MAX_COUNT,
    MAX_INPUTS,
    MAX_N,
    MAX_STOP_CHARS,
    MAX_STOPS,
    ROLES,
)
from gateway.service.openai._responses_reply import _USAGE_NAMES as USAGE_NAMES
from gateway.service.openai._responses_request import MIN_OUTPUT_TOKENS
from gateway.service.openai._responses_request import ROLES as RESPONSE_ROLES
from gateway.service.openai._responses_request import UNSUPPORTED as RESPONSES_UNSUPPORTED

Schema = dict[str, Any]
TAG = "OpenAIGateway"
PREFIX = "openai."


# A value JSON has no number for (a model's NaN) is spelt as proto3 JSON spells it, as /embed
# answers it (openapi.NON_FINITE; that module imports this one).
_EMBEDDING_VALUE = {
    "oneOf": [{"type": "number"}, {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]}]
}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{PREFIX}{name}"}


def _obj(description: str, props: dict[str, Schema], required: list[str]) -> Schema:
    return {"type": "object", "description": description, "properties": props, "required": required}


def _texts(text: Schema) -> Schema:
    """A text or a list of 1 to MAX_INPUTS of them, each as ``text``."""
    return {
        "oneOf": [text, {"type": "array", "items": text, "minItems": 1, "maxItems": MAX_INPUTS}]
    }


_TEXT = {"type": "string", "maxLength": MAX_TEXT_CHARS}
_TEXTS = _texts(_TEXT)
_NULL = {"type": "null"}
_STOP = {"type": "string", "minLength": 1, "maxLength": MAX_STOP_CHARS}
_SAMPLING: dict[str, Schema] = {
    "temperature": {
        "type": "number",
        "minimum": 0,
        "maximum": 2,
        "description": "Sax `temperature`.",
    },
    "top_p": {
        "type": "number",
        "minimum": 0,
        "maximum": 1,
        "description": "Sax `per_example_top_p`.",
    },
    "top_k": {
        "type": "integer",
        "minimum": -1,
        "maximum": MAX_COUNT,
        "description": "Extension (as vLLM): Sax `per_example_top_k`; -1 or 0: the default.",
    },
    "n": {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_N,
        "description": "Choices per prompt: the model's best `n` samples; more than the "
        "model returns per prompt is a 400.",
    },
    "stop": {
        "oneOf": [
            _STOP,
            {"type": "array", "items": _STOP, "maxItems": MAX_STOPS},
        ],
        "description": f"Up to {MAX_STOPS} stop strings of up to {MAX_STOP_CHARS} characters, "
        "applied by the gateway (streams included).",
    },
    "include_stop_str_in_output": {
        "type": "boolean",
        "description": "Extension (as vLLM): the text ends with the stop string that ended it.",
    },
    "stream": {"type": "boolean", "description": "Server-Sent Events, ending with `data: [DONE]`."},
    "stream_options": {
        "type": "object",
        "description": "Only with `stream: true`: a set option without it is a 400 (an empty "
        "object or null options pass).",
        "properties": {
            "include_usage": {
                "type": ["boolean", "null"],
                "description": "A last chunk with `usage` and no choices (null: unset).",
            }
        },
    },
    # Any type, as vLLM takes it: a schema with a type would refuse what the gateway serves.
    "user": {"description": "Accepted and ignored, whatever its type."},
}
_MODEL = {
    "type": "string",
    "minLength": 1,
    "description": "A Sax model ID (`/sax/test/lm2b`, the `/` optional) or a configured alias.",
}
_MAX = {
    "type": "integer",
    "minimum": 1,
    "maximum": MAX_COUNT,
    "description": "Sax `per_example_max_decode_steps`.",
}

_ECHOES: list[tuple[str, Schema, str]] = [
    ("instructions", {"type": ["string", "null"]}, ""),
    ("max_output_tokens", {"type": ["integer", "null"]}, ""),
    ("max_tool_calls", {"type": ["integer", "null"]}, "; no tool is called"),
    ("metadata", {"type": "object", "additionalProperties": {"type": "string"}}, ""),
    ("parallel_tool_calls", {"type": "boolean"}, "; true unless set"),
    ("previous_response_id", _NULL, ": null, as none is taken"),
    ("prompt_cache_key", {"type": ["string", "null"]}, ""),
    ("reasoning", _NULL, ": null, as none is taken"),
    ("safety_identifier", {"type": ["string", "null"]}, ""),
    ("store", {"type": "boolean"}, "; true unless set, and nothing is stored"),
    ("temperature", {"type": ["number", "null"]}, ""),
    (
        "text",
        {
            "type": "object",
            "properties": {
                "format": {
                    "type": "object",
                    "properties": {"type": {"const": "text"}},
                    "required": ["type"],
                },
                "verbosity": {"const": "medium"},
            },
            "required": ["format", "verbosity"],
        },
        ": plain text",
    ),
    ("tool_choice", {"enum": ["none", "auto"]}, '; "auto" unless set'),
    ("tools", {"type": "array", "maxItems": 0, "items": {}}, ": none"),
    ("top_logprobs", {"const": 0}, ": 0, as none are returned"),
    ("top_p", {"type": ["number", "null"]}, ""),
    ("truncation", {"const": "disabled"}, ""),
    ("user", {"type": ["string", "null"]}, ""),
]
_ECHOED: dict[str, Schema] = {
    key: {**schema, "description": f"Echoed from the request{why}."} for key, schema, why in _ECHOES
}
"""The request's settings a response reports (`_responses_request.responses_request`'s echo)."""
_RESPONSE_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
    "response.incomplete",
    "response.failed",
]


def _response_usage(usage: Schema) -> Schema:
    """The Responses API's ``usage``: chat's, its fields renamed as the gateway renames them
    (input_/output_ for prompt_/completion_), and the details, zeros."""

    def zeros(*names: str) -> Schema:
        return _obj("Zeros.", {n: {"const": 0} for n in names}, list(names))

    return _obj(
        "As for chat (`Usage`), with input_/output_ for prompt_/completion_; Sax has no "
        "prompt cache and no reasoning tokens, so their details are zeros.",
        {
            **{USAGE_NAMES[k]: v for k, v in usage["properties"].items()},
            "input_tokens_details": zeros("cached_tokens", "cache_write_tokens"),
            "output_tokens_details": zeros("reasoning_tokens"),
        },
        [
            *(USAGE_NAMES[k] for k in usage["required"]),
            "input_tokens_details",
            "output_tokens_details",
        ],
    )


def _response_schemas(usage: Schema) -> dict[str, Schema]:
    """The Responses API's request, response object and stream event."""
    text_part = _obj(
        "Text (`output_text` only in an assistant message).",
        {"type": {"enum": ["input_text", "output_text"]}, "text": {"type": "string"}},
        ["type", "text"],
    )
    message = _obj(
        "An input message (`type` optional).",
        {
            "type": {"const": "message"},
            "role": {"enum": list(RESPONSE_ROLES)},
            "content": {
                "oneOf": [
                    {"type": "string"},
                    {"type": "array", "minItems": 1, "items": text_part},
                ]
            },
        },
        ["role", "content"],
    )
    output_text = _obj(
        "The answer's text.",
        {
            "type": {"const": "output_text"},
            "text": {"type": "string"},
            "annotations": {"type": "array", "maxItems": 0, "items": {}},
            "logprobs": {"type": "array", "maxItems": 0, "items": {}},
        },
        ["type", "text", "annotations"],
    )
    item = _obj(
        "The assistant's message.",
        {
            "id": {"type": "string", "description": "`msg_...`"},
            "type": {"const": "message"},
            "status": {"enum": ["in_progress", "completed", "incomplete"]},
            "role": {"const": "assistant"},
            "content": {"type": "array", "items": output_text},
        },
        ["id", "type", "status", "role", "content"],
    )
    return {
        PREFIX + "ResponseRequest": _obj(
            "A Responses API request: the conversation is rendered to a prompt by the "
            "model's chat template, as for chat. The settings below are checked (a wrong "
            "type is a 400 naming the field) and echoed, nothing is stored; `service_tier`, "
            "`stream_options` and unknown fields are accepted and ignored, except those Sax "
            "cannot honour, which are 400s naming the field.",
            {
                "model": _MODEL,
                "input": {
                    "oneOf": [
                        {"type": "string", "minLength": 1, "description": "One user message."},
                        {"type": "array", "minItems": 1, "items": message},
                    ]
                },
                "instructions": {"type": "string", "description": "A first system message."},
                "max_output_tokens": {**_MAX, "minimum": MIN_OUTPUT_TOKENS},
                "temperature": _SAMPLING["temperature"],
                "top_p": _SAMPLING["top_p"],
                "top_k": _SAMPLING["top_k"],
                "stop": _SAMPLING["stop"],
                "include_stop_str_in_output": _SAMPLING["include_stop_str_in_output"],
                "stream": {"type": "boolean", "description": "Server-Sent Events."},
                "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                "store": {"type": "boolean", "description": "Echoed; nothing is stored."},
                "user": {"type": "string", "description": "Echoed."},
                "safety_identifier": {"type": "string", "description": "Echoed."},
                "prompt_cache_key": {"type": "string", "description": "Echoed."},
                "max_tool_calls": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": MAX_COUNT,
                    "description": "Echoed; no tool is called.",
                },
                "service_tier": {"type": "string", "description": "Checked, not echoed."},
                "parallel_tool_calls": {"type": "boolean", "description": "Echoed."},
                "tool_choice": {"enum": ["none", "auto"], "description": "No tool is called."},
                "truncation": {"const": "disabled"},
                "text": {
                    "type": "object",
                    "properties": {
                        "format": _obj("Text only.", {"type": {"const": "text"}}, ["type"]),
                        "verbosity": {"const": "medium"},
                    },
                },
                **{
                    key: {"description": _refused(values, why)}
                    for key, (values, why) in RESPONSES_UNSUPPORTED.items()
                },
            },
            ["model", "input"],
        ),
        PREFIX + "Response": _obj(
            "A response object: the request's settings echoed, one message of output. "
            '`status` is "incomplete" (`incomplete_details.reason` "max_output_tokens") only '
            "when the answer is known to have max_output_tokens tokens.",
            {
                "id": {"type": "string", "description": "`resp_...`"},
                "object": {"const": "response"},
                "created_at": {"type": "integer", "description": "Unix seconds."},
                "status": {"enum": ["in_progress", "completed", "incomplete", "failed"]},
                "model": {"type": "string", "description": "The model as the request named it."},
                "output": {"type": "array", "items": item},
                "error": {
                    "oneOf": [
                        _NULL,
                        _obj(
                            "Why a streamed response failed.",
                            {
                                "code": {"enum": ["server_error", "rate_limit_exceeded"]},
                                "message": {"type": "string"},
                                "type": {"type": "string"},
                            },
                            ["code", "message"],
                        ),
                    ]
                },
                "incomplete_details": {"type": ["object", "null"]},
                "usage": {"oneOf": [_NULL, _response_usage(usage)]},
                # A boolean, not a const: openapi-python-client wrote `Falseand` for `const: false`.
                "background": {
                    "type": "boolean",
                    "description": "False: nothing runs in the background.",
                },
                "completed_at": {
                    "type": ["integer", "null"],
                    "description": "Unix seconds; null until the response is complete.",
                },
                **_ECHOED,
            },
            ["id", "object", "created_at", "status", "model", "output"],
        ),
        PREFIX + "ResponseStreamEvent": _obj(
            "One event of a streamed response; its SSE `event:` line is its `type`.",
            {
                "type": {"enum": _RESPONSE_EVENTS},
                "sequence_number": {"type": "integer"},
                "response": _ref("Response"),
                "output_index": {"type": "integer"},
                "item_id": {"type": "string"},
                "content_index": {"type": "integer"},
                "item": item,
                "part": output_text,
                "delta": {"type": "string"},
                "logprobs": {
                    "type": "array",
                    "maxItems": 0,
                    "items": {},
                    "description": "Of `response.output_text.delta`: none are returned.",
                },
                "text": {"type": "string"},
            },
            ["type", "sequence_number"],
        ),
    }


def schemas() -> dict[str, Schema]:
    """The OpenAI request, response and error schemas, by component name."""
    usage = {
        "type": "object",
        "description": "Exact token counts with the model's SentencePiece tokenizer configured; "
        'otherwise the token fields are null, `basis` is "characters" and the '
        "`*_characters` fields count characters.",
        "properties": {
            **{
                k: {"type": ["integer", "null"]}
                for k in ("prompt_tokens", "completion_tokens", "total_tokens")
            },
            "basis": {"type": "string", "enum": ["characters"]},
            **{
                k: {"type": "integer"}
                for k in ("prompt_characters", "completion_characters", "total_characters")
            },
        },
        "required": ["prompt_tokens", "total_tokens"],
    }
    finish = {"type": ["string", "null"], "enum": ["stop", "length", None]}
    # A stream's chunks with include_usage say "usage": null but the last, as OpenAI's do.
    chunk_usage = {
        "oneOf": [_NULL, _ref("Usage")],
        "description": "In a stream with include_usage, null in every chunk but the last.",
    }
    head = {
        "id": {"type": "string"},
        "created": {"type": "integer", "description": "Unix seconds."},
        "model": {"type": "string", "description": "The model as the request named it."},
        "system_fingerprint": _NULL,
    }
    text_choice = _obj(
        "One choice.",
        {
            "index": {"type": "integer"},
            "text": {"type": "string"},
            "logprobs": _NULL,
            "finish_reason": finish,
        },
        ["index", "text", "finish_reason"],
    )
    message = {
        "type": "object",
        "properties": {
            "role": {
                "type": "string",
                "minLength": 1,
                "examples": list(ROLES),
                "description": "OpenAI's roles, or another that the model's own chat template "
                "knows (with a built-in template, such as chatml, another is a 400).",
            },
            "content": {
                "description": "Required, and not null, but for assistant and function "
                "messages (a 400 naming the message).",
                "oneOf": [
                    {"type": "string"},
                    {"type": "null"},
                    {
                        "type": "array",
                        "minItems": 1,
                        "items": _obj(
                            "A text part (the only kind Sax takes).",
                            {"type": {"const": "text"}, "text": {"type": "string"}},
                            ["type", "text"],
                        ),
                    },
                ],
            },
            "name": {"type": "string"},
        },
        "required": ["role"],
    }
    return {
        **_response_schemas(usage),
        PREFIX + "CompletionRequest": _obj(
            "A completion request; other OpenAI fields are accepted and ignored, except those "
            "Sax cannot honour (logprobs, echo, best_of > 1, suffix, penalties, logit_bias, "
            "vLLM's sampling fields such as min_tokens), which are 400s.",
            {
                "model": _MODEL,
                "prompt": {**_TEXTS, "description": "Text prompts (token IDs are a 400)."},
                "max_tokens": _MAX,
                "max_completion_tokens": {
                    **_MAX,
                    "description": "As max_tokens, which it wins over.",
                },
                **_SAMPLING,
            },
            ["model", "prompt"],
        ),
        PREFIX + "ChatCompletionRequest": _obj(
            "A chat request, rendered to a prompt by the model's configured chat template; "
            "other OpenAI fields are accepted and ignored, except those Sax cannot honour (as "
            "on completions, and verbosity but medium, reasoning_effort, a message's "
            "tool_calls or tool_call_id), which are 400s.",
            {
                "model": _MODEL,
                "messages": {"type": "array", "minItems": 1, "items": message},
                "max_completion_tokens": _MAX,
                "max_tokens": _MAX,
                **_SAMPLING,
                "chat_template_kwargs": {
                    "type": "object",
                    "description": "Extension (as vLLM): more variables for the chat template, "
                    "such as enable_thinking.",
                },
                "add_generation_prompt": {
                    "type": "boolean",
                    "description": "Extension (as vLLM): the template's variable (true).",
                },
                "continue_final_message": {
                    "type": "boolean",
                    "description": "Extension (as vLLM): the prompt ends with the last "
                    "message's text (needs add_generation_prompt false).",
                },
            },
            ["model", "messages"],
        ),
        PREFIX + "EmbeddingRequest": _obj(
            "An embedding request: one Sax `lm.embed` call per input.",
            {
                "model": _MODEL,
                "input": {
                    **_texts({**_TEXT, "minLength": 1}),
                    "description": "Texts, none empty (token IDs are a 400).",
                },
                "encoding_format": {
                    "type": "string",
                    "enum": ["float", "base64"],
                    "description": "base64: little-endian float32 bytes.",
                },
                "dimensions": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_COUNT,
                    "description": "Must equal the model's size if given.",
                },
                "user": {"type": "string"},
            },
            ["model", "input"],
        ),
        PREFIX + "Usage": usage,
        PREFIX + "Completion": _obj(
            "A completion, or (streamed) one chunk of it: `object` is text_completion in both.",
            {
                **head,
                "object": {"const": "text_completion"},
                "choices": {"type": "array", "items": text_choice},
                "usage": chunk_usage,
            },
            ["id", "object", "created", "model", "choices"],
        ),
        PREFIX + "ChatCompletion": _obj(
            "A chat completion.",
            {
                **head,
                "object": {"const": "chat.completion"},
                "choices": {
                    "type": "array",
                    "items": _obj(
                        "One choice.",
                        {
                            "index": {"type": "integer"},
                            "message": _obj(
                                "The answer.",
                                {
                                    "role": {"const": "assistant"},
                                    "content": {"type": "string"},
                                    "refusal": _NULL,
                                },
                                ["role", "content"],
                            ),
                            "logprobs": _NULL,
                            "finish_reason": finish,
                        },
                        ["index", "message", "finish_reason"],
                    ),
                },
                "usage": _ref("Usage"),
            },
            ["id", "object", "created", "model", "choices", "usage"],
        ),
        PREFIX + "ChatCompletionChunk": _obj(
            "One streamed chunk: new text of one choice, its finish reason, or (last, with "
            "include_usage) no choices and the usage.",
            {
                **head,
                "object": {"const": "chat.completion.chunk"},
                "choices": {
                    "type": "array",
                    "items": _obj(
                        "One choice's delta.",
                        {
                            "index": {"type": "integer"},
                            "delta": {
                                "type": "object",
                                "properties": {
                                    "role": {"const": "assistant"},
                                    "content": {"type": "string"},
                                },
                            },
                            "logprobs": _NULL,
                            "finish_reason": finish,
                        },
                        ["index", "delta", "finish_reason"],
                    ),
                },
                "usage": chunk_usage,
            },
            ["id", "object", "created", "model", "choices"],
        ),
        PREFIX + "EmbeddingList": _obj(
            "Embeddings, in input order.",
            {
                "object": {"const": "list"},
                "data": {
                    "type": "array",
                    "items": _obj(
                        "One embedding.",
                        {
                            "object": {"const": "embedding"},
                            "index": {"type": "integer"},
                            "embedding": {
                                "oneOf": [
                                    {"type": "array", "items": _EMBEDDING_VALUE},
                                    {"type": "string", "contentEncoding": "base64"},
                                ]
                            },
                        },
                        ["object", "index", "embedding"],
                    ),
                },
                "model": {"type": "string"},
                "usage": _ref("Usage"),
            },
            ["object", "data", "model", "usage"],
        ),
        PREFIX + "Model": _obj(
            "A published language model, or an alias of one (`root` names the Sax model).",
            {
                "id": {"type": "string"},
                "object": {"const": "model"},
                "created": {"type": "integer"},
                "owned_by": {"const": "sax"},
                "root": {"type": "string"},
                "parent": _NULL,
            },
            ["id", "object", "created", "owned_by"],
        ),
        PREFIX + "ModelList": _obj(
            "The published language models and their aliases.",
            {"object": {"const": "list"}, "data": {"type": "array", "items": _ref("Model")}},
            ["object", "data"],
        ),
        PREFIX + "Error": _obj(
            "OpenAI's error envelope. The HTTP status is Envoy's mapping of the gRPC code "
            "(400, 401, 403, 404, 409, 429 with Retry-After, 500, 503, 504).",
            {
                "error": _obj(
                    "The error.",
                    {
                        "message": {"type": "string"},
                        "type": {"type": "string"},
                        "param": {"type": ["string", "null"]},
                        "code": {"type": ["string", "null"]},
                    },
                    ["message", "type", "param", "code"],
                )
            },
            ["error"],
        ),
    }


# Per RPC: (request schema, JSON response schema, SSE data schema or None).
_SHAPES: dict[str, tuple[str | None, str, str | None]] = {
    "ListOpenAIModels": (None, "ModelList", None),
    "GetOpenAIModel": (None, "Model", None),
    "CreateCompletion": ("CompletionRequest", "Completion", "Completion"),
    "CreateChatCompletion": ("ChatCompletionRequest", "ChatCompletion", "ChatCompletionChunk"),
    "CreateResponse": ("ResponseRequest", "Response", "ResponseStreamEvent"),
    "CreateEmbedding": ("EmbeddingRequest", "EmbeddingList", None),
}


def _ok(response: str, events: str | None) -> str:
    """What a 200 holds: JSON, or (`"stream": true`) events, named for readers of the page."""
    if events is None:
        return f"OK: a {PREFIX}{response}."
    return (
        f'OK: a {PREFIX}{response}; with `"stream": true`, Server-Sent Events, each a '
        f"{PREFIX}{events}."
    )


def _paths(template: str) -> list[tuple[str, list[Schema]]]:
    if template != "/v1/models/{model=**}":
        return [(template, [])]
    param = {"in": "path", "required": True, "schema": {"type": "string", "pattern": "^[^/]+$"}}
    alias = {**param, "name": "model", "description": "A configured alias."}
    cell = {**param, "name": "cell", "description": "The model ID's cell."}
    name = {**param, "name": "name", "description": "The model ID's name."}
    return [("/v1/models/{model}", [alias]), ("/v1/models/sax/{cell}/{name}", [cell, name])]


_REQUEST_ID = {"headers": {"x-request-id": {"$ref": "#/components/headers/x-request-id"}}}


def operations(
    package: str, method: str, verb: str, template: str, doc: str
) -> list[tuple[str, str, Schema]]:
    """(path, verb, operation) for one binding of an OpenAIGateway RPC."""
    request, response, events = _SHAPES[method]
    content: Schema = {"application/json": {"schema": _ref(response)}}
    if events == "ResponseStreamEvent":
        content[openapi_sse.MEDIA_TYPE] = openapi_sse.event_stream(
            _ref(events),
            'With `"stream": true`: `event: <type>` and `data: <JSON>` events, each a '
            f"{events}: {', '.join(_RESPONSE_EVENTS[:9])} (or response.incomplete); an error "
            "after the first event ends it with response.failed.",
            events=_RESPONSE_EVENTS,
        )
    elif events is not None:
        content[openapi_sse.MEDIA_TYPE] = openapi_sse.event_stream(
            {"oneOf": [_ref(events), _ref("Error")]},
            f'With `"stream": true`: `data: <JSON>` events, each a {events}, then '
            '`data: [DONE]`; an error after the first event is a last `data: {"error": {...}}`.',
            end="[DONE]",
        )
    result = []
    for n, (path, parameters) in enumerate(_paths(template), start=1):
        op: Schema = {
            "tags": [TAG],
            "operationId": method if n == 1 else f"{method}_{n}",
            "summary": doc.split(". ")[0].rstrip("."),
            "description": doc,
            "x-grpc-method": f"/{package}.{TAG}/{method}",
        }
        # The caller's deadline, which the gateway keeps on these routes too (docs/api.md).
        op["parameters"] = [*parameters, {"$ref": "#/components/parameters/grpc-timeout"}]
        if request is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _ref(request)}},
            }
        op["responses"] = {
            "200": {"description": _ok(response, events), **_REQUEST_ID, "content": content},
            "default": {
                "description": "An error in OpenAI's envelope, with its mapped HTTP status.",
                **_REQUEST_ID,
                "content": {"application/json": {"schema": _ref("Error")}},
            },
        }
        result.append((path, verb, op))
    return result


def _refused(values: tuple[object, ...], why: str) -> str:
    """The description of a Responses API field Sax cannot honour: which values ask for
    nothing (the request's own, `_responses_request.UNSUPPORTED`) and why others are 400s."""
    allowed = ["absent", "null", *(f"`{json.dumps(v)}`" for v in values)]
    return f"Refused (400) unless {', '.join(allowed[:-1])} or {allowed[-1]}: {why}."
