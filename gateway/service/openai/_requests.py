"""OpenAI request JSON parsed into typed requests, and the one table mapping it onto Sax.

| OpenAI field                                  | Sax                                          |
|-----------------------------------------------|----------------------------------------------|
| ``max_tokens``, ``max_completion_tokens``     | extra input ``per_example_max_decode_steps`` |
| (Responses API: ``max_output_tokens``)        |                                              |
| ``temperature``                               | extra input ``temperature``                  |
| ``top_p``                                     | extra input ``per_example_top_p``            |
| ``top_k`` (extension, as vLLM)                | extra input ``per_example_top_k``            |
| ``n``                                         | the best ``n`` of the model's samples        |
| ``stop``, ``stream``, ``stream_options``      | applied by the gateway                       |
| ``user``, ``seed``, unknown fields            | accepted and ignored                         |
| ``tool_choice``, ``function_call``            | ``"none"`` or ``"auto"``; others are refused |
| ``response_format`` (``text`` only)           | accepted; JSON mode and schemas are refused  |
| vLLM's ``guided_*``, ``structured_outputs``   | refused, as JSON mode is                     |
| vLLM's other sampling fields (``min_tokens``) | refused unless at the value that is no-op    |

What Sax cannot do (log-probabilities, token-id prompts, echo, penalties, tools, audio, ...) is
INVALID_ARGUMENT naming the field, so the caller learns it instead of getting a silent default.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.common.limits import MAX_TEXT_CHARS, shown
from gateway.service._fields import bounded, invalid

MAX_N = 16
MAX_STOPS = 16
"""More than OpenAI's 4, as vLLM takes any number: code written against vLLM keeps working."""
MAX_STOP_CHARS = 256
"""Of each stop string. A stream holds back text that could begin one and looks for the
longest such end at every step, which takes time as the square of its length: one stop string
of a million characters held a gateway process for seconds (its health checks failed, and
every call it served got a 503)."""
MAX_INPUTS = 2048
MAX_COUNT = 1 << 20
"""The largest token count, top_k or dimensions a request may give (more is a 400)."""

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
"""The message roles of OpenAI's chat API. Others pass here, as vLLM passes them, to a model's
own template, which may know roles of its own (Llama 3.1's ``ipython``), or refuse them (a 400
"the chat template failed"); a built-in template knows these alone (`_chat.BUILTIN`)."""
_CONTENT_OPTIONAL = ("assistant", "function")
"""Roles whose ``content`` may be null or absent (an assistant's tool call, a function's
empty result); every other role's message needs one."""

SAX_INPUTS = {
    "max_tokens": "per_example_max_decode_steps",
    "temperature": "temperature",
    "top_p": "per_example_top_p",
    "top_k": "per_example_top_k",
}
"""OpenAI parameter -> Sax extra input (``max_completion_tokens`` counts as ``max_tokens``)."""

# Fields Sax cannot honour, and the value that means "not asked for" (the second one is the
# hint in the 400). Not 0 for logprobs: on /v1/completions it is a count, and 0 asks for the
# chosen tokens' log-probabilities (OpenAI's and vLLM's answers have them), which Sax cannot
# give; there the hint is null (`_COMPLETION_HINTS`), though false passes as on chat.
_UNSUPPORTED: dict[str, tuple[object, ...]] = {
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "echo": (None, False),
    "best_of": (None, 1),
    "suffix": (None, ""),
    "logit_bias": (None, {}),
    "presence_penalty": (None, 0, 0.0),
    "frequency_penalty": (None, 0, 0.0),
    "tools": (None, []),
    "functions": (None, []),
    # Other outputs than text (spoken audio), and answers grounded in a web search: ignored,
    # they would change what the caller gets back without a word.
    "modalities": (None, ["text"]),
    "audio": (None, None),
    "web_search_options": (None, None),
    # OpenAI's moderation of the input and output (a policy may block either): ignored, the
    # answer would be one it would have blocked, without a word.
    "moderation": (None, None),
    # vLLM's own sampling fields (in `extra_body` of code written for vLLM), at the value
    # that changes nothing: as unknown fields they were ignored, and the text was silently
    # another than the one asked for (no penalty, no minimum length, an end at EOS).
    "use_beam_search": (None, False),
    "length_penalty": (None, 1, 1.0),
    "repetition_penalty": (None, 1, 1.0),
    "min_p": (None, 0, 0.0),
    "min_tokens": (None, 0),
    "ignore_eos": (None, False),
    "stop_token_ids": (None, []),
    "bad_words": (None, []),
    "allowed_token_ids": (None, None),
    "prompt_logprobs": (None, None),
    "truncate_prompt_tokens": (None, None),
    "skip_special_tokens": (None, True),
    "spaces_between_special_tokens": (None, True),
}


_COMPLETION_HINTS = {"logprobs": "null"}
"""What to set instead, where /v1/completions differs from chat: its logprobs is a count."""


@dataclass(frozen=True, kw_only=True)
class Sampling:
    """How to sample and what to return, common to completions and chat."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    n: int = 1
    stop: tuple[str, ...] = ()
    include_stop: bool = False  # vLLM's include_stop_str_in_output: text ends with its stop
    stream: bool = False
    include_usage: bool = False

    def extra_inputs(self) -> dict[str, float]:
        """The Sax extra inputs these parameters set (unset ones keep the model's defaults)."""
        values = {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
        }
        return {SAX_INPUTS[k]: float(v) for k, v in values.items() if v is not None}


@dataclass(frozen=True, kw_only=True)
class CompletionRequest:
    model: str
    prompts: tuple[str, ...]
    sampling: Sampling


@dataclass(frozen=True, kw_only=True)
class ChatRequest:
    model: str
    messages: tuple[Mapping[str, str], ...]
    """Each message's ``role``, ``content`` (text parts, one line each) and, if given, ``name``."""
    sampling: Sampling
    template: Templating


@dataclass(frozen=True, kw_only=True)
class Templating:
    """How a chat request asks its conversation to be rendered, in vLLM's fields."""

    variables: Mapping[str, Any] = field(default_factory=dict)
    """More variables for the chat template: ``chat_template_kwargs`` (such as
    ``enable_thinking``) and ``add_generation_prompt``, as vLLM passes them to it."""
    continue_final: bool = False
    """``continue_final_message``: the prompt ends with the last message's text, which the
    model continues (a prefilled answer), instead of a new turn."""


AS_CONFIGURED = Templating()
"""A conversation rendered as the template renders it by default (the Responses API's)."""


@dataclass(frozen=True, kw_only=True)
class EmbeddingRequest:
    model: str
    inputs: tuple[str, ...]
    base64: bool
    dimensions: int | None


def whole(value: object) -> object:
    """``value``, an int if it is a float with a whole value: JSON has one kind of number, so
    ``1.0`` is ``1`` (OpenAI takes it for an integer field, and JavaScript may write it)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def number(body: Mapping[str, Any], key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise invalid(key, "must be a number")
    if not low <= value <= high:
        raise invalid(key, f"must be between {low:g} and {high:g}, got {value}")
    return float(value)


def integer(body: Mapping[str, Any], key: str, low: int, high: int) -> int | None:
    """An integer field (a whole number, `whole`), or None if it is absent or null."""
    given = body.get(key)
    if given is None:
        return None
    value = whole(given)
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(key, "must be an integer")
    if not low <= value <= high:
        raise invalid(key, f"must be between {low} and {high}, got {given}")
    return value


def _strings(
    value: object, key: str, what: str, hint: str = "", *, token_ids: bool = True
) -> tuple[str, ...]:
    """``value``, a string or a list of strings, as a tuple; INVALID_ARGUMENT naming ``key``
    otherwise, which says token IDs are not taken where OpenAI's field takes them
    (``token_ids``: a prompt, an input; never a stop)."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    tokens = isinstance(value, list) and value and all(isinstance(v, int | list) for v in value)
    if token_ids and tokens:
        raise invalid(key, f"token-id {what}s are not supported: Sax takes text{hint}")
    raise invalid(key, "must be a string or a list of strings")


_TOKEN_ID_INPUTS = (
    " (LangChain's OpenAIEmbeddings sends token IDs unless it is given "
    "check_embedding_ctx_length=False)"
)
"""Who sends token IDs without being asked: LangChain tokenizes inputs with OpenAI's
tokenizer by default, so its users see this error without having written a token."""


def _bounded(value: object, texts: tuple[str, ...], key: str) -> None:
    """Each text sent to Sax as it is (a prompt, an input) within MAX_TEXT_CHARS, as
    SaxGateway's ``query`` is; named as `_body.parse_body` names a lone surrogate (``prompt`` for a
    string, ``prompt[1]`` in a list)."""
    for i, text in enumerate(texts):
        bounded(text, key if isinstance(value, str) else f"{key}[{i}]", MAX_TEXT_CHARS)


def model_name(body: Mapping[str, Any]) -> str:
    """The requested model, as the caller spelt it."""
    model = body.get("model")
    what = "a Sax model ID such as /sax/test/lm2b, or an alias"
    if model is None or model == "":
        raise invalid("model", f"required: {what}")
    if not isinstance(model, str):
        raise invalid("model", f"must be a string: {what}")
    return model


def unset(value: object, values: Collection[object]) -> bool:
    """Whether ``value`` is null or one of ``values``, which mean "not asked for": of the
    same type (``false`` is not ``0``), a whole float as an int (`whole`)."""
    value = whole(value)
    return value is None or any(value == u and type(value) is type(u) for u in values)


def reject_unsupported(body: Mapping[str, Any], hints: Mapping[str, str]) -> None:
    """INVALID_ARGUMENT naming the first field of `_UNSUPPORTED` set to a value that asks
    for something (``hints`` say what to set instead, where the API's differs from chat's)."""
    for key, values in _UNSUPPORTED.items():
        if not unset(body.get(key), values):
            hint = hints.get(key, json.dumps(values[1]))
            raise invalid(key, f"not supported: Sax cannot honour {key} (remove it or set {hint})")


_GUIDED = (
    "guided_json",
    "guided_regex",
    "guided_choice",
    "guided_grammar",
    "structured_outputs",
)
"""vLLM's own request fields for constrained decoding (in ``extra_body`` of code written for
vLLM): as unknown fields they would be ignored, like any other."""


def reject_constrained_output(body: Mapping[str, Any]) -> None:
    """JSON mode and structured outputs constrain decoding (OpenAI and vLLM both do it); Sax
    cannot, and text that merely looks right sometimes would fail the caller's JSON parse
    later (the Python SDK's ``parse()`` raises a validation error) instead of here."""
    for key in _GUIDED:
        if body.get(key) is not None:
            raise invalid(key, "not supported: Sax cannot constrain decoding (remove it)")
    value = body.get("response_format")
    if value is None:
        return
    if not isinstance(value, dict):
        raise invalid("response_format", 'must be an object such as {"type": "text"}')
    if value.get("type") is None:
        # As text.format.type on the Responses API: OpenAI requires it. `{}` passed, and a
        # null type was told "None: JSON mode ... not supported".
        raise invalid("response_format.type", 'required: "text", the one format Sax answers in')
    if value["type"] != "text":
        raise invalid(
            "response_format",
            f"{shown(value.get('type'))}: JSON mode and structured outputs are not supported: "
            'Sax cannot constrain decoding (remove it or use {"type": "text"})',
        )


TOOL_CHOICES = ("none", "auto")
"""``tool_choice`` (and the older ``function_call``) values that call no tool when there are
no tools: "none", and "auto" (OpenAI's default with tools, which clients send as it is)."""


def reject_tool_choice(body: Mapping[str, Any], keys: Collection[str] = ("tool_choice",)) -> None:
    """INVALID_ARGUMENT if ``tool_choice`` (or another of ``keys``) asks for a tool call:
    ``"required"`` or a named function. With ``tools`` refused, ignoring it would answer
    text where the caller's code waits for a tool call (OpenAI and vLLM refuse it too)."""
    for key in keys:
        choice = body.get(key)
        if choice is not None and choice not in TOOL_CHOICES:
            raise invalid(key, 'not supported: Sax models have no tool calling (use "none")')


def sampling(body: Mapping[str, Any], hints: Mapping[str, str] | None = None) -> Sampling:
    """The sampling and streaming parameters of a completion or chat request; ``hints`` say
    what to set a field Sax cannot honour to, where the API's differs from chat's."""
    reject_unsupported(body, hints or {})
    reject_tool_choice(body, ("tool_choice", "function_call"))
    reject_constrained_output(body)
    max_tokens = integer(body, "max_completion_tokens", 1, MAX_COUNT)
    if max_tokens is None:
        max_tokens = integer(body, "max_tokens", 1, MAX_COUNT)
    stream = flag(body, "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise invalid("stream_options", "must be an object")
    # A null option is an absent one, as OpenAI takes it.
    options = {k: v for k, v in (options or {}).items() if v is not None}
    if options and stream is not True:
        # As vLLM (and OpenAI): options of a stream on a call that does not stream are a
        # mistake the caller should hear about (usage would never come as a chunk); an empty
        # object says nothing, so vLLM lets it pass.
        raise invalid("stream_options", "only allowed when stream is true")
    include_usage = options.get("include_usage", False)
    if not isinstance(include_usage, bool):
        raise invalid("stream_options.include_usage", "must be true or false")
    return Sampling(
        **sampled(body),
        max_tokens=max_tokens,
        n=integer(body, "n", 1, MAX_N) or 1,
        **stopping(body),
        stream=bool(stream),
        include_usage=include_usage,
    )


def stopping(body: Mapping[str, Any]) -> dict[str, Any]:
    """``stop`` and vLLM's ``include_stop_str_in_output``, as `Sampling` arguments: the
    gateway applies them on every generating API (vLLM takes both on its Responses API too)."""
    stop = body.get("stop")
    # No token IDs here, in any API (vLLM's are `stop_token_ids`, refused apart): a list of
    # numbers was told token-id stops are not supported.
    stops = () if stop is None else _strings(stop, "stop", "stop", token_ids=False)
    if len(stops) > MAX_STOPS:
        raise invalid("stop", f"at most {MAX_STOPS} strings, got {len(stops)}")
    if not all(stops):
        raise invalid("stop", "an empty stop string is not allowed: it would end every text")
    for i, long in enumerate(stops):
        if len(long) > MAX_STOP_CHARS:
            raise invalid(
                "stop",
                f"stop strings are at most {MAX_STOP_CHARS} characters; stop[{i}] has {len(long)}",
            )
    return {"stop": stops, "include_stop": bool(flag(body, "include_stop_str_in_output"))}


def sampled(body: Mapping[str, Any]) -> dict[str, Any]:
    """``temperature``, ``top_p`` and ``top_k``: the sampling fields every generating API
    (completions, chat, responses) takes the same way, as `Sampling` arguments."""
    top_k = integer(body, "top_k", -1, MAX_COUNT)
    return {
        "temperature": number(body, "temperature", 0.0, 2.0),
        "top_p": number(body, "top_p", 0.0, 1.0),
        "top_k": None if top_k in (None, -1, 0) else top_k,  # vLLM: -1 (or 0) means "all"
    }


def flag(body: Mapping[str, Any], key: str) -> bool | None:
    """A boolean field, or None if it is absent or null."""
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise invalid(key, "must be true or false")
    return value


def completion_request(body: Mapping[str, Any]) -> CompletionRequest:
    """A ``/v1/completions`` request."""
    prompt = body.get("prompt")
    if prompt is None:
        raise invalid("prompt", "required: a string or a list of strings")
    prompts = _strings(prompt, "prompt", "prompt")
    if not prompts or len(prompts) > MAX_INPUTS:
        raise invalid("prompt", f"between 1 and {MAX_INPUTS} prompts")
    _bounded(prompt, prompts, "prompt")
    return CompletionRequest(
        model=model_name(body), prompts=prompts, sampling=sampling(body, _COMPLETION_HINTS)
    )


def content(message: Mapping[str, Any], where: str, kinds: Collection[str] = ("text",)) -> str:
    """The text of a message's ``content``: a string, or a list of text parts (whose ``type``
    is one of ``kinds``) joined by newlines."""
    value = message.get("content")
    if value is None:
        if message["role"] in _CONTENT_OPTIONAL:
            return ""
        raise invalid(where, f"required for a {message['role']} message: a string or text parts")
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise invalid(where, "must be a string or a list of content parts")
    if not value:
        raise invalid(where, "an empty list: give at least one text part")
    texts = []
    expected = " or ".join(repr(k) for k in kinds)
    for i, part in enumerate(value):
        # A part that is no object, or has no type, is malformed, not of a kind Sax lacks.
        if not isinstance(part, dict):
            raise invalid(where, f'part {i} must be an object such as {{"type": {expected}, ...}}')
        if part.get("type") is None:  # a null type is none: it read "None parts"
            raise invalid(where, f'part {i} has no "type": {expected}')
        if part["type"] not in kinds:
            kind = shown(part["type"])
            raise invalid(where, f"{kind} parts are not supported: only text reaches Sax")
        if not isinstance(part.get("text"), str):
            raise invalid(where, 'a text part needs a string "text"')
        texts.append(part["text"])
    return "\n".join(texts)  # as vLLM: parts are separate texts, not one word


def role(message: object, where: str, roles: Collection[str] = ROLES) -> str:
    """The role of ``message``: one of ``roles`` (the API's, named when it has none), or
    another the model's template knows."""
    if not isinstance(message, dict):
        raise invalid(where, "must be an object with a role and content")
    name = message.get("role")
    if not isinstance(name, str) or not name:
        given = "required" if name is None or name == "" else "must be a string"
        raise invalid(f"{where}.role", f"{given}: such as {', '.join(roles)}")
    return name


_TOOL_HISTORY = {"tool_calls": (None, []), "tool_call_id": (None, ""), "function_call": (None,)}
"""A message's parts of a tool call (an assistant's calls, a tool's answer to one), and the
values that hold none: with ``tools`` refused, dropping them would show the model a turn
that says nothing and an answer to no question."""


_UNSPOKEN = {
    "audio": ((None,), "Sax models have no audio, and the turn would reach the model empty"),
    "refusal": ((None, ""), "the turn would reach the model without it"),
}
"""An assistant message's other parts than its content (an earlier answer's audio, by ID,
or its refusal), the values that hold none, and why: the template gets a message's content
alone, so dropping them would show the model an empty or another turn."""
_UNSPOKEN_HINTS = {"refusal": "give its text as content"}


def reject_chat_only(body: Mapping[str, Any]) -> None:
    """The chat fields the Responses API has too, refused as it refuses them: ``verbosity``
    (its ``text.verbosity``) other than OpenAI's default, any ``reasoning_effort`` (its
    ``reasoning``). ``prediction`` only speeds up an answer that is the same without it: it
    is accepted and ignored, as ``seed`` is."""
    verbosity = body.get("verbosity")
    if verbosity not in (None, "medium"):
        raise invalid("verbosity", f"{shown(verbosity)} is not supported: remove it")
    if body.get("reasoning_effort") is not None:
        raise invalid(
            "reasoning_effort", "not supported: Sax models have no reasoning settings (remove it)"
        )


def chat_request(body: Mapping[str, Any]) -> ChatRequest:
    """A ``/v1/chat/completions`` request."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages", "required: a non-empty list of {role, content} objects")
    reject_chat_only(body)
    parsed = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        item = {"role": role(message, where)}
        for key, values in _TOOL_HISTORY.items():
            if message.get(key) not in values:
                raise invalid(
                    f"{where}.{key}", "not supported: Sax models have no tool calling (remove it)"
                )
        for key, (values, why) in _UNSPOKEN.items():
            if message.get(key) not in values:
                hint = _UNSPOKEN_HINTS.get(key, "remove it")
                raise invalid(f"{where}.{key}", f"not supported: {why} ({hint})")
        item["content"] = content(message, f"{where}.content")
        name = message.get("name")
        if name is not None and not isinstance(name, str):
            raise invalid(f"{where}.name", "must be a string")
        if name is not None:
            item["name"] = name
        parsed.append(item)
    return ChatRequest(
        model=model_name(body),
        messages=tuple(parsed),
        sampling=sampling(body),
        template=_templating(body),
    )


def _templating(body: Mapping[str, Any]) -> Templating:
    """vLLM's fields for the chat template: ``add_generation_prompt`` (true unless set),
    ``continue_final_message`` and ``chat_template_kwargs`` (which may replace the former,
    as in vLLM)."""
    kwargs = body.get("chat_template_kwargs")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise invalid("chat_template_kwargs", "must be an object of the template's variables")
    generation = flag(body, "add_generation_prompt")
    continue_final = bool(flag(body, "continue_final_message"))
    if continue_final and generation is not False:
        # vLLM refuses the two together; left unset, add_generation_prompt is true.
        raise invalid(
            "continue_final_message",
            "cannot be true unless add_generation_prompt is false: the prompt either opens "
            "a new turn or continues the last message",
        )
    variables = {} if generation is None else {"add_generation_prompt": generation}
    return Templating(variables={**variables, **(kwargs or {})}, continue_final=continue_final)


def embedding_request(body: Mapping[str, Any]) -> EmbeddingRequest:
    """A ``/v1/embeddings`` request."""
    raw = body.get("input")
    if raw is None:
        raise invalid("input", "required: a string or a list of strings")
    inputs = _strings(raw, "input", "input", _TOKEN_ID_INPUTS)
    if not inputs or len(inputs) > MAX_INPUTS or not all(inputs):
        raise invalid("input", f"between 1 and {MAX_INPUTS} non-empty strings")
    _bounded(raw, inputs, "input")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise invalid("encoding_format", 'must be "float" or "base64"')
    return EmbeddingRequest(
        model=model_name(body),
        inputs=inputs,
        base64=encoding == "base64",
        dimensions=integer(body, "dimensions", 1, MAX_COUNT),
    )
