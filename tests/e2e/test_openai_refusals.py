"""What the OpenAI face refuses as the caller's to fix: a 400 envelope (never a 5xx or a 429,
which the SDKs retry) for text that is not Unicode, JSON nested too deeply, a chat template
that fails on the request's messages, text for Sax over the limit /generate has, and a
response over the gateway's message limit."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, Literal

import httpx
import openai
import pytest

from gateway.common.limits import MAX_TEXT_CHARS
from gateway.launch.stack import Stack
from tests.e2e._bodies import openai_error
from tests.e2e._openai import CHATML, DIVIDING, PLAIN, TEMPLATED, VISION, node_sdk
from tests.e2e._published import TEST_LM, TEST_VISION, published

WIDE = "/sax/test/oai-wide"  # 4096-dimensional embeddings
LIMIT = 32 << 20  # the gateway's max_message_bytes


@pytest.fixture
def client(stack: Stack, openai_models: None) -> Iterator[openai.OpenAI]:
    # No retries: the point is that these errors are not worth retrying.
    with openai.OpenAI(base_url=stack.http_url + "/v1", api_key="x", max_retries=0) as sdk:
        yield sdk


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/completions", rb'{"model": "oai", "prompt": "hi \ud83c"}', "prompt"),
        (
            "/v1/completions",
            rb'{"model": "oai", "prompt": ["ok", "\uD83C"], "stream": true}',
            "prompt[1]",
        ),
        (
            "/v1/chat/completions",
            rb'{"model": "oai", "messages": [{"role": "user", "content": "\ud83c"}]}',
            "messages[0].content",
        ),
        ("/v1/embeddings", rb'{"model": "oai", "input": "\ud83cx"}', "input"),
    ],
)
def test_a_lone_surrogate_is_a_400_naming_the_field(
    http: httpx.Client, openai_models: None, path: str, body: bytes, param: str
) -> None:
    # The Python SDK refuses to send one; JavaScript's JSON.stringify escapes it (below).
    response = http.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    message = f"{param}: not valid Unicode: a lone surrogate (\\ud83c)"
    assert response.json() == {"error": openai_error(message, param=param)}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/completions", '{"model": "oai", "prompt": "a \ud83d b"}'),
        (
            "/v1/chat/completions",
            '{"model": "oai", "messages": [{"role": "user", "content": "\ud83d"}]}',
        ),
        (
            "/v1/chat/completions",
            '{"model": "oai", "messages": [{"role": "us\ud83der", "content": "x"}]}',
        ),
        ("/v1/embeddings", '{"model": "oai", "input": "x\ud83d"}'),
        ("/v1/responses", '{"model": "oai", "input": "x\ud83d"}'),
        ("/v1/responses", '{"model": "oai", "input": "x", "instructions": "\ud83d"}'),
    ],
)
def test_a_surrogate_encoded_as_utf8_is_a_400(
    http: httpx.Client, openai_models: None, path: str, body: str
) -> None:
    # Half an emoji, written as UTF-8 as if it were a character (bytes ED A0 BD): no UTF-8
    # encoder does that, and json.loads kept it as it was, which protobuf could not encode
    # (a 500 the SDKs retry). Strict UTF-8 refuses it where it is, as /generate does.
    data = body.encode("utf-8", "surrogatepass")
    response = http.post(path, content=data, headers={"content-type": "application/json"})
    at = data.index(b"\xed")
    message = f"the request body is not UTF-8: invalid continuation byte at byte {at}"
    assert (response.status_code, response.json()) == (400, {"error": openai_error(message)})


def test_a_body_in_utf16_is_a_400(http: httpx.Client, openai_models: None) -> None:
    # JSON on a network is UTF-8 (RFC 8259); json.loads(bytes) guessed UTF-16 and served it,
    # and an escaped lone surrogate in it was a 500. A UTF-8 byte order mark is ignored.
    body = '{"model": "oai", "prompt": "hi \\ud83d"}'
    for data, message in (
        (body.encode("utf-16"), "the request body is not UTF-8: invalid start byte at byte 0"),
        (
            body.encode("utf-16-le"),
            "the request body is not valid JSON: Expecting property name enclosed in double "
            "quotes: line 1 column 2 (char 1)",
        ),
    ):
        response = http.post("/v1/completions", content=data)
        assert (response.status_code, response.json()) == (400, {"error": openai_error(message)})
    response = http.post("/v1/completions", content=b'\xef\xbb\xbf{"model": "oai", "prompt": "hi"}')
    assert response.status_code == 200


def test_node_sdk_sends_half_an_emoji_and_gets_bad_request(
    stack: Stack, openai_models: None
) -> None:
    script = (
        'import OpenAI from "openai";'
        "const client = new OpenAI({baseURL: process.argv[1], apiKey: 'x', maxRetries: 0});"
        "const cut = 'hi \\u{1F389}'.slice(0, 4);"  # 'hi ' and the first half of the emoji
        "try { await client.completions.create({model: 'oai', prompt: cut});"
        " console.log('no error'); } catch (e) {"
        " console.log(JSON.stringify({name: e.constructor.name, status: e.status,"
        " error: e.error})); }"
    )
    assert node_sdk(script, stack.http_url + "/v1") == {
        "name": "BadRequestError",
        "status": 400,
        "error": openai_error(
            "prompt: not valid Unicode: a lone surrogate (\\ud83c)", param="prompt"
        ),
    }


_ROLES = "such as system, developer, user, assistant, tool, function"
_HI = [{"role": "user", "content": "hi"}]
_EMPTY_STOP = "an empty stop string is not allowed: it would end every text"
_NO_REASONING = "not supported: Sax models have no reasoning settings (remove it)"
_NO_TOOLS = "not supported: Sax models have no tool calling (remove it)"
_CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
_LOGPROBS = "not supported: Sax cannot honour logprobs (remove it or set {})"


@pytest.mark.parametrize(
    ("fields", "param", "message"),
    [
        ({"messages": [*_HI, {"content": "hi"}]}, "messages[1].role", f"required: {_ROLES}"),
        (
            {"messages": [{"role": 7, "content": "hi"}]},
            "messages[0].role",
            f"must be a string: {_ROLES}",
        ),
        (
            {"messages": [{"role": "user"}]},
            "messages[0].content",
            "required for a user message: a string or text parts",
        ),
        (
            {"messages": [{"role": "user", "content": []}]},
            "messages[0].content",
            "an empty list: give at least one text part",
        ),
        (
            {"messages": _HI, "stop": [str(i) for i in range(17)]},
            "stop",
            "at most 16 strings, got 17",
        ),
        # It read as a count error ("at most 16 non-empty strings").
        ({"messages": _HI, "stop": ""}, "stop", _EMPTY_STOP),
        ({"messages": _HI, "stop": ["a", ""]}, "stop", _EMPTY_STOP),
        # A stream's search for held-back text is quadratic in a stop string's length: one of
        # a million characters held the gateway process for seconds.
        (
            {"messages": _HI, "stop": ["end", "é" * 257]},
            "stop",
            "stop strings are at most 256 characters; stop[1] has 257",
        ),
        # Ignored, where the Responses API refuses text.verbosity and reasoning.
        ({"messages": _HI, "verbosity": "low"}, "verbosity", "'low' is not supported: remove it"),
        ({"messages": _HI, "reasoning_effort": "high"}, "reasoning_effort", _NO_REASONING),
        # Dropped, and the model saw an empty turn and an answer to no call.
        (
            {"messages": [*_HI, {"role": "assistant", "content": None, "tool_calls": [_CALL]}]},
            "messages[1].tool_calls",
            _NO_TOOLS,
        ),
        (
            {"messages": [*_HI, {"role": "tool", "content": "42", "tool_call_id": "c1"}]},
            "messages[1].tool_call_id",
            _NO_TOOLS,
        ),
        # OpenAI's moderation (a policy may block the input or the answer) was ignored: the
        # answer came back unmoderated, as if it had passed.
        (
            {"messages": _HI, "moderation": {"model": "omni-moderation-latest"}},
            "moderation",
            "not supported: Sax cannot honour moderation (remove it or set null)",
        ),
        # An earlier answer's audio (its ID) or refusal, dropped: the model saw an empty turn.
        (
            {"messages": [*_HI, {"role": "assistant", "content": None, "audio": {"id": "a1"}}]},
            "messages[1].audio",
            "not supported: Sax models have no audio, and the turn would reach the model "
            "empty (remove it)",
        ),
        (
            {"messages": [*_HI, {"role": "assistant", "content": None, "refusal": "I can't"}]},
            "messages[1].refusal",
            "not supported: the turn would reach the model without it (give its text as content)",
        ),
        # "remove it or set false" is right here, where logprobs is a boolean.
        ({"messages": _HI, "logprobs": True}, "logprobs", _LOGPROBS.format("false")),
        (
            {"messages": [{"role": "user", "content": [{"text": "a"}]}]},
            "messages[0].content",
            "part 0 has no \"type\": 'text'",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, "b"]}]},
            "messages[0].content",
            "part 1 must be an object such as {\"type\": 'text', ...}",
        ),
        # Refused already (as OpenAI refuses them), kept so the whole list of probes stays.
        ({"messages": []}, "messages", "required: a non-empty list of {role, content} objects"),
        ({"messages": _HI, "max_tokens": "ten"}, "max_tokens", "must be an integer"),
        ({"messages": _HI, "temperature": 5}, "temperature", "must be between 0 and 2, got 5"),
        ({"messages": _HI, "n": 0}, "n", "must be between 1 and 16, got 0"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "a"},
                            {"type": "image_url", "image_url": {"url": "http://x/y.png"}},
                        ],
                    }
                ]
            },
            "messages[0].content",
            "'image_url' parts are not supported: only text reaches Sax",
        ),
    ],
)
def test_a_malformed_chat_request_is_a_400_naming_the_field(
    http: httpx.Client, client: openai.OpenAI, fields: dict[str, Any], param: str, message: str
) -> None:
    body = {"model": "oai", **fields}
    error = openai_error(f"{param}: {message}", param=param)
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert response.json() == {"error": error}
    with pytest.raises(openai.BadRequestError) as failure:
        client.chat.completions.create(**body)
    assert failure.value.status_code == 400 and failure.value.body == error


_KNOWN_ROLES = "one of system, developer, user, assistant, tool, function"


@pytest.mark.parametrize("stream", [False, True])
def test_a_role_the_builtin_template_does_not_know_is_a_400_naming_it(
    http: httpx.Client, client: openai.OpenAI, stream: bool
) -> None:
    # chatml wrote any role as a speaker of its own ("<|im_start|>wizard") and the chat was
    # answered; OpenAI answers 400 naming messages[i].role.
    param = "messages[1].role"
    error = openai_error(
        f"{param}: 'wizard' is not a role the built-in chatml template knows: {_KNOWN_ROLES}",
        param=param,
    )
    body = {"model": "oai", "messages": [*_HI, {"role": "wizard", "content": "hi"}]}
    response = http.post("/v1/chat/completions", json={**body, "stream": stream})
    assert (response.status_code, response.json()) == (400, {"error": error})
    with pytest.raises(openai.BadRequestError) as failure:
        client.chat.completions.create(**body, stream=stream)  # type: ignore[call-overload]
    assert (failure.value.status_code, failure.value.body) == (400, error)
    # OpenAI's roles all reach chatml; a model's own template still sees any role as sent
    # (it may know roles of its own, as Llama 3.1's knows ipython).
    known = [
        {"role": "system", "content": "s"},
        {"role": "developer", "content": "d"},
        {"role": "user", "content": "u"},
        {"role": "assistant", "content": None},
        {"role": "function", "name": "f", "content": None},
        {"role": "tool", "content": "t"},
    ]
    answered = http.post("/v1/chat/completions", json={"model": "oai", "messages": known})
    assert answered.status_code == 200, answered.text
    own = {"model": TEMPLATED, "messages": [{"role": "ipython", "content": "42"}]}
    echoed = http.post("/v1/chat/completions", json=own)
    assert echoed.status_code == 200, echoed.text
    assert echoed.json()["choices"][0]["message"]["content"] == "[ipython] 42 [assistant]"
    # The Responses API's input messages have OpenAI's four roles alone, whatever the template.
    param = "input[1].role"
    error = openai_error(f"{param}: must be one of user, system, developer, assistant", param=param)
    responses = {"model": "oai", "input": [*_HI, {"role": "wizard", "content": "hi"}]}
    response = http.post("/v1/responses", json={**responses, "stream": stream})
    assert (response.status_code, response.json()) == (400, {"error": error})


def test_completion_logprobs_say_to_set_null(http: httpx.Client, client: openai.OpenAI) -> None:
    # logprobs is a count there (0 asks for the chosen tokens' log-probabilities, as OpenAI
    # answers it): "remove it or set false" named a value of the wrong type.
    error = openai_error(f"logprobs: {_LOGPROBS.format('null')}", param="logprobs")
    for logprobs in (0, 0.0, 3):
        response = http.post(
            "/v1/completions", json={"model": "oai", "prompt": "hi", "logprobs": logprobs}
        )
        assert (response.status_code, response.json()) == (400, {"error": error})
    with pytest.raises(openai.BadRequestError) as failure:
        client.completions.create(model="oai", prompt="hi", logprobs=0)
    assert failure.value.body == error


def test_what_openai_takes_for_unset_or_whole_is_answered(
    http: httpx.Client, client: openai.OpenAI
) -> None:
    # Each was a 400: a whole float for an integer (JSON has one kind of number), a null
    # stream option (OpenAI takes null for absent), the defaults of what chat refuses.
    answers = [
        http.post(path, json={"model": "oai", **fields})
        for path, fields in (
            ("/v1/completions", {"prompt": "hi", "n": 1.0, "best_of": 1.0, "max_tokens": 1.0}),
            ("/v1/chat/completions", {"messages": _HI, "n": 1.0, "top_logprobs": 0.0}),
            ("/v1/completions", {"prompt": "hi", "stream_options": {"include_usage": None}}),
            ("/v1/responses", {"input": "hi", "max_output_tokens": 16.0, "top_logprobs": 0.0}),
        )
    ]
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    assert [c["text"] for c in answers[0].json()["choices"]] == ["Paris"]
    stream = client.chat.completions.create(  # type: ignore[call-overload]
        model="oai",
        messages=[
            *_HI,
            {"role": "assistant", "content": "Paris", "tool_calls": []},
            {"role": "user", "content": "and?"},
        ],
        stream=True,
        stream_options={"include_usage": None},
        verbosity="medium",
        reasoning_effort=None,
        prediction={"type": "content", "content": "Paris"},  # only a hint: accepted, ignored
        max_tokens=1,
    )
    assert [c.choices[0].delta.content for c in stream if c.choices] == ["", "Paris", None]


_TOOL_CALLS = 'not supported: Sax models have no tool calling (use "none")'


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tool_choice": {"type": "function", "function": {"name": "f"}}}, "tool_choice"),
        ({"function_call": {"name": "f"}}, "function_call"),
    ],
)
def test_a_chat_that_asks_for_a_tool_call_is_a_400(
    client: openai.OpenAI, fields: dict[str, Any], param: str, stream: bool
) -> None:
    # It was answered with text, where the caller's code waits for a tool call (the
    # Responses API refused it already, as OpenAI and vLLM refuse it without tools).
    with pytest.raises(openai.BadRequestError) as failure:
        client.chat.completions.create(
            model="oai", messages=[{"role": "user", "content": "hi"}], stream=stream, **fields
        )
    assert failure.value.body == openai_error(f"{param}: {_TOOL_CALLS}", param=param)


def test_a_chat_whose_tool_choice_calls_no_tool_is_answered(client: openai.OpenAI) -> None:
    choices: tuple[Literal["none", "auto"], ...] = ("none", "auto")
    for choice in choices:
        answer = client.chat.completions.create(
            model="oai",
            messages=[{"role": "user", "content": "hi"}],
            tool_choice=choice,
            function_call=choice,
            max_tokens=1,
        )
        assert [c.message.content for c in answer.choices] == ["Paris"], choice


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/v1/completions", {"prompt": "hi"}),
        ("/v1/chat/completions", {"messages": _HI}),
        ("/v1/embeddings", {"input": "hi"}),
        ("/v1/responses", {"input": "hi"}),
    ],
)
def test_a_model_that_is_not_a_string_is_a_400_saying_so(
    http: httpx.Client, openai_models: None, path: str, fields: dict[str, Any]
) -> None:
    # It was "model: required: ...", though the caller had sent one.
    message = "model: must be a string: a Sax model ID such as /sax/test/lm2b, or an alias"
    response = http.post(path, json={"model": 7, **fields})
    assert response.status_code == 400
    assert response.json() == {"error": openai_error(message, param="model")}


def test_a_prompt_is_required(http: httpx.Client, client: openai.OpenAI) -> None:
    error = openai_error("prompt: required: a string or a list of strings", param="prompt")
    response = http.post("/v1/completions", json={"model": "oai"})
    assert (response.status_code, response.json()) == (400, {"error": error})
    with pytest.raises(openai.BadRequestError) as failure:
        client.completions.create(model="oai", prompt=None)
    assert failure.value.body == error


def test_json_nested_too_deeply_is_a_400(http: httpx.Client, openai_models: None) -> None:
    # Inside a field the gateway ignores: json.loads still has to parse it.
    body = b'{"model": "oai", "prompt": "hi", "x": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    for path in ("/v1/completions", "/v1/embeddings"):
        response = http.post(path, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400, path
        message = "the request body is not valid JSON: nested too deeply"
        assert response.json() == {"error": openai_error(message)}, path


def test_a_number_with_too_many_digits_is_a_400(http: httpx.Client, openai_models: None) -> None:
    # Python refuses to convert an int of over 4300 digits (a ValueError, no JSONDecodeError):
    # it was an INTERNAL 500, which the SDKs retry.
    body = b'{"model": "oai", "prompt": "hi", "n": ' + b"1" * 5000 + b"}"
    message = "the request body is not valid JSON: a number has more than 4300 digits"
    for path in ("/v1/completions", "/v1/chat/completions", "/v1/responses", "/v1/embeddings"):
        response = http.post(path, content=body, headers={"content-type": "application/json"})
        assert (response.status_code, response.json()) == (400, {"error": openai_error(message)})
    assert http.post("/v1/completions", json={"model": "oai", "prompt": "hi"}).status_code == 200


def test_a_request_envoy_transcodes_into_bad_utf8_is_an_openai_400(
    http: httpx.Client, openai_models: None
) -> None:
    # Envoy copies the URL path's bytes and the Content-Type header into proto strings; grpc
    # could not parse them, and the gateway answered in its own shape, not OpenAI's envelope.
    bad_utf8 = "String field had bad UTF-8"
    response = http.get("/v1/models/%ff")
    message = f"Error parsing message with type 'saxgateway.v1.GetOpenAIModelRequest': {bad_utf8}"
    error = openai_error(f"the request does not parse: {message}")
    assert (response.status_code, response.json()) == (400, {"error": error})
    body = b'{"model": "oai", "messages": [{"role": "user", "content": "hi"}]}'
    response = http.post(
        "/v1/chat/completions",
        content=body,
        headers={b"content-type": b"application/json; charset=\xff"},
    )
    message = (
        f"Error parsing message with type 'saxgateway.v1.CreateChatCompletionRequest': {bad_utf8}"
    )
    error = openai_error(f"the request does not parse: {message}")
    assert (response.status_code, response.json()) == (400, {"error": error})
    assert http.post("/v1/chat/completions", content=body).status_code == 200


def test_a_template_that_raises_on_the_messages_is_a_400(client: openai.OpenAI) -> None:
    # {{ 1 / (messages|length - 1) }}: a ZeroDivisionError, not one of Jinja's errors.
    failing = openai_error("the chat template failed: ZeroDivisionError: division by zero")
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as failure:
            client.chat.completions.create(
                model=DIVIDING, messages=[{"role": "user", "content": "hi"}], stream=stream
            )
        assert failure.value.status_code == 400 and failure.value.body == failing


_OVER = "x" * (MAX_TEXT_CHARS + 1)
_TOO_LONG = f"{MAX_TEXT_CHARS + 1} characters is over the limit of {MAX_TEXT_CHARS}"
_RENDERED = (
    f"the prompt rendered by the model's chat template is over the limit of {MAX_TEXT_CHARS} "
    "characters"
)


def _refused(call: Callable[[], object], param: str, message: str) -> None:
    with pytest.raises(openai.BadRequestError) as failure:
        call()
    assert failure.value.status_code == 400
    assert failure.value.body == openai_error(f"{param}: {message}", param=param)


def test_text_for_sax_over_the_limit_of_generate_is_a_400(client: openai.OpenAI) -> None:
    # They were sent to Sax whatever their size (a 30 MiB prompt was a 200), where /generate
    # refuses a query over MAX_TEXT_CHARS. Each prompt and input is a Sax call's text.
    complete, embed = client.completions.create, client.embeddings.create
    for stream in (False, True):
        _refused(partial(complete, model=PLAIN, prompt=_OVER, stream=stream), "prompt", _TOO_LONG)
        prompts = ["hi", _OVER]
        _refused(
            partial(complete, model=PLAIN, prompt=prompts, stream=stream), "prompt[1]", _TOO_LONG
        )
    _refused(partial(embed, model=CHATML, input=_OVER), "input", _TOO_LONG)
    _refused(partial(embed, model=CHATML, input=["hi", _OVER]), "input[1]", _TOO_LONG)
    # A conversation reaches Sax as the prompt its template renders: that is what is bounded.
    messages = [{"role": "user", "content": _OVER}]
    for stream in (False, True):
        chat = partial(client.chat.completions.create, messages=messages, stream=stream)
        _refused(partial(chat, model=TEMPLATED), "messages", _RENDERED)
        respond = partial(client.responses.create, input=_OVER, stream=stream)
        _refused(partial(respond, model=TEMPLATED), "input", _RENDERED)


def test_the_limit_is_on_the_rendered_prompt_not_each_message(client: openai.OpenAI) -> None:
    # A prompt of exactly MAX_TEXT_CHARS is served; a message of that size is not once the
    # template has framed it, nor are two messages that are together over the limit.
    at_limit = "x" * MAX_TEXT_CHARS
    answer = client.completions.create(model=PLAIN, prompt=at_limit, max_tokens=1)
    assert [c.text for c in answer.choices] == ["Paris"]
    half = {"role": "user", "content": "x" * (MAX_TEXT_CHARS // 2)}
    chat = partial(client.chat.completions.create, model=TEMPLATED)
    _refused(partial(chat, messages=[{"role": "user", "content": at_limit}]), "messages", _RENDERED)
    _refused(partial(chat, messages=[half, half]), "messages", _RENDERED)


@pytest.fixture(scope="module")
def wide(stack: Stack) -> Iterator[str]:
    with published(stack, WIDE, TEST_LM, {"embedding_dim": "4096"}) as name:
        yield name


def _too_large(message: str, hint: str) -> int:
    """The size a refused response would have had (at least), checking the rest of the
    message."""
    pattern = r"the response would be (?:at least )?(\d+) bytes, over this gateway's limit of "
    pattern += rf"{LIMIT} bytes: "
    found = re.fullmatch(pattern + re.escape(hint), message)
    assert found, message
    return int(found.group(1))


def test_embeddings_over_the_message_limit_are_a_400(client: openai.OpenAI, wide: str) -> None:
    # About 90 KB of JSON floats per input: 400 inputs are over 32 MiB (not a 429 to retry).
    inputs = [f"w{i}" for i in range(400)]
    with pytest.raises(openai.BadRequestError) as failure:
        client.embeddings.create(model=wide, input=inputs, encoding_format="float")
    body = failure.value.body
    assert isinstance(body, dict)
    hint = "send fewer inputs (or encoding_format=base64)"
    assert _too_large(body["message"], hint) > LIMIT
    assert body == openai_error(body["message"])
    # What the hint says works: base64 (the SDK's default, which it decodes) is a quarter.
    done = client.embeddings.create(model=wide, input=inputs)
    assert len(done.data) == 400 and len(done.data[0].embedding) == 4096
    # Refused as the vectors come, not once all are embedded (2,048 inputs came to 170 MB of
    # JSON, held whole): in base64, whose size the first vector fixes, before the second.
    many = [f"w{i}" for i in range(2048)]
    with pytest.raises(openai.BadRequestError) as failure:
        client.embeddings.create(model=wide, input=many)
    message = failure.value.body["message"]  # type: ignore[index]
    assert message.startswith("the response would be at least ")
    at_least = _too_large(message, "send fewer inputs")
    value = 2 + len(base64.b64encode(bytes(4 * 4096)))  # one vector's JSON string
    assert 2048 * value < at_least < 2048 * (value + 64)  # and each one's object around it


def test_a_body_of_the_limits_size_is_served(stack: Stack, openai_models: None) -> None:
    # Envoy hands an OpenAI body to the gateway whole, with its Content-Type (a
    # google.api.HttpBody). Counted against the body's limit, the 35 bytes below the limit
    # were a 413; past that, the gateway's own limit refused it as a 429, which SDKs retry.
    content_type = "application/json; charset=utf-8; profile=" + "p" * 20_000
    start = {"model": PLAIN, "prompt": "q", "max_tokens": 1, "user": ""}
    url = stack.http_url + "/v1/completions"
    for size, status in ((LIMIT, 200), (LIMIT + 1, 413)):
        padding = "u" * (size - len(json.dumps(start)))
        body = json.dumps({**start, "user": padding}).encode()
        assert len(body) == size
        headers = {"content-type": content_type}
        reply = httpx.post(url, content=body, headers=headers, timeout=60)
        assert reply.status_code == status, reply.text[:300]
    assert reply.json() == {"error": openai_error("Payload Too Large")}


def test_a_completion_over_the_message_limit_is_a_400_or_ends_the_stream(
    client: openai.OpenAI,
) -> None:
    # The model echoes its prompt; JSON spells each 🎉 as \ud83c\udf89: 3 million characters
    # (under MAX_TEXT_CHARS), 12 MB in, 36 MB out.
    word = "\U0001f389" * 3_000_000
    hint = "send fewer or shorter prompts, or a lower n or max_tokens"
    with pytest.raises(openai.BadRequestError) as failure:
        client.completions.create(model=TEMPLATED, prompt=word)
    body = failure.value.body
    assert isinstance(body, dict) and body == openai_error(body["message"])
    assert _too_large(body["message"], hint) > LIMIT
    # Streamed, the event with that word is refused after the first one went out: in-band.
    received = []
    with pytest.raises(openai.APIError) as ended:
        for chunk in client.completions.create(model=TEMPLATED, prompt="a " + word, stream=True):
            received.append(chunk.choices[0].text)
    assert received == ["a"]
    assert ended.value.body == openai_error(ended.value.message)
    assert _too_large(ended.value.message, hint) > LIMIT


def _methods(stack: Stack, model: str) -> list[str]:
    """A published ``model``'s methods, once its server has reported them (after a poll)."""
    with httpx.Client(base_url=stack.http_url, timeout=30) as http:
        deadline = time.monotonic() + 10
        methods: list[str] = []
        while not methods and time.monotonic() < deadline:
            methods = http.get(f"/v1{model}").json()["model"]["methods"]
            time.sleep(0.1)
        return methods


@pytest.fixture(scope="module")
def vision(stack: Stack) -> Iterator[list[str]]:
    """A vision model (with a chat template, as a mistaken config may give one): its methods."""
    with published(stack, VISION, TEST_VISION):
        yield _methods(stack, VISION)


def test_a_model_that_is_no_language_model_is_a_400_naming_the_model(
    client: openai.OpenAI, vision: list[str]
) -> None:
    # It was Sax's own message, ending in Go's ": InvalidArgument", with `param` null.
    served = f"it serves {', '.join(vision)}"
    for stream in (False, True):
        method = "lm.generate_stream" if stream else "lm.generate"
        refused = partial(_refused, param="model", message=f"{VISION} has no {method}: {served}")
        refused(partial(client.completions.create, model=VISION, prompt="hi", stream=stream))
        chat = client.chat.completions.create
        refused(partial(chat, model=VISION, messages=_HI, stream=stream))
        refused(partial(client.responses.create, model=VISION, input="hi", stream=stream))
    embed = partial(client.embeddings.create, model=VISION, input="hi")
    _refused(embed, "model", f"{VISION} has no lm.embed: {served}")


def test_a_model_with_no_template_that_is_no_language_model_is_told_so(
    stack: Stack, client: openai.OpenAI
) -> None:
    # Not told to configure a chat template or to send a prompt to /v1/completions, which
    # refuses it for what it is: a vision model.
    bare = VISION + "-bare"  # no template configured
    with published(stack, bare, TEST_VISION):
        served = f"it serves {', '.join(_methods(stack, bare))}"
        for stream in (False, True):
            method = "lm.generate_stream" if stream else "lm.generate"
            message = f"{bare} has no {method}: {served}"
            chat = partial(client.chat.completions.create, messages=_HI, stream=stream)
            _refused(partial(chat, model=bare), "model", message)
            respond = partial(client.responses.create, input="hi", stream=stream)
            _refused(partial(respond, model=bare), "model", message)
