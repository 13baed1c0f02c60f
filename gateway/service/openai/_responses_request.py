"""OpenAI's Responses API request (``POST /v1/responses``) parsed into a conversation, the
chat path's `Sampling`, and the fields a response object echoes.

| Responses field                       | how                                                  |
|---------------------------------------|------------------------------------------------------|
| ``input`` (a string or messages)      | the conversation, rendered by the model's template   |
| ``instructions``                      | a ``system`` message before the input                |
| ``max_output_tokens``                 | ``max_tokens`` of the chat path (`_requests` table)  |
| ``temperature``, ``top_p``, ``top_k`` | as on the chat path                                  |
| ``stop``, vLLM's ``include_stop_str_in_output`` | as on the chat path (vLLM's too)     |
| ``stream``                            | the Responses API's stream events                    |
| ``metadata``, ``user``, ``store``, ... | accepted and echoed; nothing is stored              |

What Sax cannot do (tools, stored state, non-text input, JSON output, reasoning, background
runs, truncation, compaction, and every field the chat path refuses) is INVALID_ARGUMENT
naming the field, as on the chat path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.common.limits import shown
from gateway.service._fields import invalid
from gateway.service.openai import _requests as rq

ROLES = ("user", "system", "developer", "assistant")
"""The roles of the Responses API's input messages."""
_INPUT_TEXT = ("input_text",)
_ASSISTANT_TEXT = ("input_text", "output_text")
"""An assistant turn given back as input is the ``output_text`` of an earlier response."""

# Fields Sax cannot honour, and the values that mean "not asked for" (None always does).
#: The fields Sax cannot honour, the values of each that ask for nothing (beside null), and
#: why any other is refused (the OpenAPI document's descriptions are made of these).
UNSUPPORTED: dict[str, tuple[tuple[object, ...], str]] = {
    "tools": (([],), "Sax models have no tool calling"),
    "previous_response_id": (
        (),
        "this gateway stores no responses (send the whole conversation as input)",
    ),
    "conversation": (
        (),
        "this gateway stores no conversations (send the whole conversation as input)",
    ),
    "prompt": ((), "this gateway stores no prompt templates"),
    "background": (
        (False,),
        "responses are not stored, so there is nothing to poll (stream instead)",
    ),
    "reasoning": (({},), "Sax models have no reasoning settings"),
    "include": (([],), "Sax returns text only"),
    "top_logprobs": ((0,), "Sax returns no log-probabilities"),
    "context_management": (([],), "the gateway cannot compact a conversation to fit the model"),
}
_MOVED = {"max_tokens": "max_output_tokens", "max_completion_tokens": "max_output_tokens"}
"""Chat's fields that the Responses API names otherwise (vLLM ignores them here, and the
answer was as long as the model's default)."""
MIN_OUTPUT_TOKENS = 16
"""OpenAI's floor for ``max_output_tokens`` (below it, its 400 names the field): a request
this gateway answers is one OpenAI answers too."""


@dataclass(frozen=True, kw_only=True)
class ResponsesRequest:
    model: str
    messages: tuple[Mapping[str, str], ...]
    """``instructions`` first, as a system message, then each input message's role and text."""
    sampling: rq.Sampling
    echo: dict[str, Any]
    """The request's settings as a response object reports them."""


def responses_request(body: Mapping[str, Any]) -> ResponsesRequest:
    """A ``/v1/responses`` request."""
    _reject_unsupported(body)
    text = _text(body)
    instructions = _string(body, "instructions")
    messages = _input(body.get("input"))
    if instructions:
        messages = ({"role": "system", "content": instructions}, *messages)
    truncation = body.get("truncation")
    if truncation not in (None, "disabled"):
        raise invalid(
            "truncation",
            f"{shown(truncation)} is not supported: the gateway cannot shorten a conversation to "
            'fit the model (remove it or set "disabled")',
        )
    metadata = body.get("metadata")
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
    ):
        raise invalid("metadata", "must be an object of strings")
    max_tokens = rq.integer(body, "max_output_tokens", MIN_OUTPUT_TOKENS, rq.MAX_COUNT)
    sampling = rq.Sampling(
        **rq.sampled(body),
        **rq.stopping(body),
        max_tokens=max_tokens,
        stream=bool(rq.flag(body, "stream")),
    )
    parallel = rq.flag(body, "parallel_tool_calls")
    store = rq.flag(body, "store")
    echo: dict[str, Any] = {
        "instructions": instructions,
        "max_output_tokens": max_tokens,
        # Sax calls no tools, so no limit on them is reached; echoed as the reference has it.
        "max_tool_calls": rq.integer(body, "max_tool_calls", 0, rq.MAX_COUNT),
        "metadata": metadata or {},
        "parallel_tool_calls": True if parallel is None else parallel,
        "previous_response_id": None,
        "prompt_cache_key": _string(body, "prompt_cache_key"),
        "reasoning": None,
        "safety_identifier": _string(body, "safety_identifier"),
        "store": True if store is None else store,
        "temperature": sampling.temperature,
        "text": text,
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": [],
        "top_logprobs": 0,
        "top_p": sampling.top_p,
        "truncation": "disabled",
        "user": _string(body, "user"),
    }
    _string(body, "service_tier")  # the tier used is OpenAI's to report: checked, not echoed
    return ResponsesRequest(
        model=rq.model_name(body), messages=messages, sampling=sampling, echo=echo
    )


def _string(body: Mapping[str, Any], key: str) -> str | None:
    """A string field, or None if it is absent or null."""
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise invalid(key, "must be a string")
    return value


def _reject_unsupported(body: Mapping[str, Any]) -> None:
    for key, (values, why) in UNSUPPORTED.items():
        value = body.get(key)
        if isinstance(value, dict):  # `reasoning: {"effort": null}` asks for nothing either
            value = {k: v for k, v in value.items() if v is not None}
        if not rq.unset(value, values):
            raise invalid(key, f"not supported: {why} (remove it)")
    rq.reject_tool_choice(body)
    # What the chat path refuses is refused here too: vLLM's Responses API takes its
    # sampling fields (repetition_penalty, ignore_eos, structured_outputs, ...), and, as
    # unknown fields, they were ignored, so code written for it got other text without a word.
    rq.reject_unsupported(body, {})
    rq.reject_constrained_output(body)
    rq.reject_chat_only(body)
    for key, name in _MOVED.items():
        if body.get(key) is not None:
            raise invalid(key, f"not a Responses API field: use {name}")
    if not rq.unset(body.get("n"), (1,)):
        raise invalid("n", "not supported: a response has one answer (remove it)")


def _text(body: Mapping[str, Any]) -> dict[str, Any]:
    """``text``, checked: plain text only (as ``response_format`` on the chat path)."""
    text = body.get("text")
    if text is None:
        return {"format": {"type": "text"}, "verbosity": "medium"}
    if not isinstance(text, dict):
        raise invalid("text", 'must be an object such as {"format": {"type": "text"}}')
    shape = text.get("format")
    if shape is not None and not isinstance(shape, dict):
        raise invalid("text.format", 'must be an object such as {"type": "text"}')
    if shape is not None and shape.get("type") is None:
        # Its message read "None: JSON mode and structured outputs are not supported".
        raise invalid("text.format.type", 'required: "text", the one format Sax answers in')
    if shape is not None and shape.get("type") != "text":
        kind = shown(shape.get("type"))
        raise invalid(
            "text.format",
            f"{kind}: JSON mode and structured outputs are not supported: Sax cannot "
            'constrain decoding (remove it or use {"type": "text"})',
        )
    verbosity = text.get("verbosity")
    if verbosity not in (None, "medium"):
        raise invalid("text.verbosity", f"{shown(verbosity)} is not supported: remove it")
    return {"format": {"type": "text"}, "verbosity": "medium"}


def _input(value: object) -> tuple[Mapping[str, str], ...]:
    """The input messages: a string is one user message. An empty string is refused as an
    empty list is (OpenAI's 400 when no input is given): there is nothing to answer."""
    if isinstance(value, str) and value:
        return ({"role": "user", "content": value},)
    if not isinstance(value, list) or not value:
        raise invalid("input", "required: a non-empty string or a non-empty list of messages")
    messages = []
    for i, item in enumerate(value):
        where = f"input[{i}]"
        # A null type is one left out (a message), as OpenAI's easy input messages have none;
        # it was refused as "None items are not supported".
        kind = item.get("type") if isinstance(item, dict) else None
        kind = "message" if kind is None else kind
        if kind != "message":
            raise invalid(where, f"{shown(kind)} items are not supported: only messages reach Sax")
        role = rq.role(item, where, ROLES)
        if role not in ROLES:
            raise invalid(f"{where}.role", f"must be one of {', '.join(ROLES)}")
        kinds = _ASSISTANT_TEXT if role == "assistant" else _INPUT_TEXT
        messages.append({"role": role, "content": rq.content(item, f"{where}.content", kinds)})
    return tuple(messages)
