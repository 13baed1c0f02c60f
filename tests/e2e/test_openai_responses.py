"""OpenAI's Responses API (``POST /v1/responses``) through Envoy, driven by the real `openai`
Python SDK, its npm package and LangChain: whole responses, their stream events, and the
parameters Sax cannot honour refused with 400s naming them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pydantic
import pytest
from langchain_openai import ChatOpenAI
from openai.types.responses import Response, ResponseOutputMessage, ResponseStreamEvent
from pydantic import SecretStr

from gateway.launch.stack import Stack
from tests.e2e._bodies import openai_error
from tests.e2e._openai import ANSWER, FAILING, LONG, TEMPLATED, node_sdk, tokenizer

_EVENTS = pydantic.TypeAdapter(ResponseStreamEvent)
_STREAM = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    *["response.output_text.delta"] * 6,  # TestLM streams a word per step
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]
_WORDS = [ANSWER.split()[0], *(" " + w for w in ANSWER.split()[1:])]


def _long(tokens: int) -> str:
    """The first ``tokens`` tokens of LONG's answer (ANSWER again and again)."""
    return " ".join((ANSWER.split() * 4)[:tokens])


@pytest.fixture
def client(stack: Stack, openai_models: None) -> Iterator[openai.OpenAI]:
    # No retries: a test that expects an error wants it at once.
    with openai.OpenAI(base_url=stack.http_url + "/v1", api_key="x", max_retries=0) as sdk:
        yield sdk


def _chatml(*turns: tuple[str, str]) -> str:
    """The prompt the built-in chatml template renders for ``turns`` (role, text)."""
    rendered = "".join(f"<|im_start|>{r}\n{t}<|im_end|>\n" for r, t in turns)
    return rendered + "<|im_start|>assistant\n"


def _tokens(stack: Stack, text: str) -> int:
    return len(tokenizer(Path(str(stack.settings.gateway.config_file))).encode(text))


def _usage(stack: Stack, prompt: str, answer: str) -> dict[str, Any]:
    input_tokens, output_tokens = _tokens(stack, prompt), _tokens(stack, answer)
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def _message(response: Response) -> ResponseOutputMessage:
    """The response's one output item, the assistant's message."""
    [item] = response.output
    assert isinstance(item, ResponseOutputMessage)
    return item


def _sse(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """The (event, data) pairs of a Server-Sent Events body."""
    pairs = []
    for block in response.text.split("\n\n")[:-1]:
        event, data = block.split("\n")
        pairs.append((event.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    assert response.text.endswith("\n\n")
    return pairs


def test_a_string_input_is_a_whole_response(
    http: httpx.Client, client: openai.OpenAI, stack: Stack
) -> None:
    body = {"model": "oai", "input": "hi", "metadata": {"k": "v"}, "user": "u", "store": True}
    raw = http.post("/v1/responses", json=body)
    assert raw.status_code == 200 and raw.headers["content-type"] == "application/json"
    data = raw.json()
    Response.model_validate(data, strict=True)  # every field as the SDK's types have it
    assert data["id"].startswith("resp_") and data["output"][0]["id"].startswith("msg_")
    assert isinstance(data["created_at"], int) and data["completed_at"] >= data["created_at"]
    assert data == {
        "id": data["id"],
        "object": "response",
        "created_at": data["created_at"],
        "status": "completed",
        "background": False,
        "completed_at": data["completed_at"],
        "error": None,
        "incomplete_details": None,
        "model": "oai",
        "output": [
            {
                "id": data["output"][0]["id"],
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": ANSWER, "annotations": [], "logprobs": []}
                ],
            }
        ],
        "usage": _usage(stack, _chatml(("user", "hi")), ANSWER),
        "instructions": None,
        "max_output_tokens": None,
        "max_tool_calls": None,
        "metadata": {"k": "v"},
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "prompt_cache_key": None,
        "reasoning": None,
        "safety_identifier": None,
        "store": True,
        "temperature": None,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_logprobs": 0,
        "top_p": None,
        "truncation": "disabled",
        "user": "u",
    }
    response = client.responses.create(model="oai", input="hi", temperature=0.5, top_p=0.9)
    assert response.output_text == ANSWER
    assert (response.status, response.temperature, response.top_p) == ("completed", 0.5, 0.9)
    assert response.usage is not None and response.usage.output_tokens == 6


def test_message_lists_and_instructions_reach_the_template(client: openai.OpenAI) -> None:
    # TEMPLATED echoes its prompt: what the template rendered from the conversation.
    conversation: list[Any] = [  # the SDK's own types, unions of TypedDicts, would not say more
        {"role": "user", "content": "hello"},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "world", "annotations": []}],
        },
        {"role": "developer", "content": [{"type": "input_text", "text": "tok"}]},
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "a"},
                {"type": "input_text", "text": "b"},
            ],
        },
    ]
    response = client.responses.create(model=TEMPLATED, instructions="be brief", input=conversation)
    prompt = (
        "[system] be brief [user] hello [assistant] world [developer] tok [user] a\nb [assistant]"
    )
    # TestLM echoes the prompt's words, so the parts' newline comes back as a space.
    assert response.output_text == prompt.replace("\n", " ")
    assert response.instructions == "be brief"
    # No tokenizer: counted in characters (of the rendered prompt), as the chat path counts.
    assert response.usage is not None
    assert response.usage.to_dict() == {  # as sent
        "input_tokens": None,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": None,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": None,
        "basis": "characters",
        "input_characters": len(prompt),
        "output_characters": len(prompt),
        "total_characters": 2 * len(prompt),
    }


def test_max_output_tokens_makes_an_incomplete_response(client: openai.OpenAI) -> None:
    # The tokenizer counts 16 tokens (OpenAI's least max_output_tokens): the answer was cut,
    # as OpenAI reports it.
    response = client.responses.create(model=LONG, input="q", max_output_tokens=16)
    assert (response.output_text, response.status, response.max_output_tokens) == (
        _long(16),
        "incomplete",
        16,
    )
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert _message(response).status == "incomplete"
    # OpenAI's completed_at: "only present when the status is completed".
    assert response.completed_at is None
    # Without the limit reached, it is complete.
    whole = client.responses.create(model=LONG, input="q", max_output_tokens=32)
    assert (whole.output_text, whole.status, whole.incomplete_details) == (
        _long(20),
        "completed",
        None,
    )


def test_a_stream_is_openais_event_sequence(http: httpx.Client, stack: Stack) -> None:
    body = {"model": "oai", "input": [{"role": "user", "content": "hi"}], "stream": True}
    raw = http.post("/v1/responses", json=body)
    assert raw.status_code == 200 and raw.headers["content-type"] == "text/event-stream"
    pairs = _sse(raw)
    assert [event for event, _ in pairs] == _STREAM
    assert all(event == data["type"] for event, data in pairs)
    events = [_EVENTS.validate_python(data, strict=True) for _, data in pairs]
    assert [e.sequence_number for e in events] == list(range(len(_STREAM)))
    created, in_progress, added, part, *deltas = (data for _, data in pairs[:10])
    ids = created["response"]["id"], added["item"]["id"]
    assert created["response"] == in_progress["response"]
    assert created["response"]["status"] == "in_progress" and created["response"]["output"] == []
    assert added == {
        "type": "response.output_item.added",
        "sequence_number": 2,
        "output_index": 0,
        "item": {
            "id": ids[1],
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        },
    }
    where = {"item_id": ids[1], "output_index": 0, "content_index": 0}
    empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    assert part == {
        "type": "response.content_part.added",
        "sequence_number": 3,
        **where,
        "part": empty,
    }
    assert [d["delta"] for d in deltas] == _WORDS
    assert deltas[0] == {
        "type": "response.output_text.delta",
        "sequence_number": 4,
        **where,
        "delta": "Paris",
        "logprobs": [],
    }
    text_done, part_done, item_done, completed = (data for _, data in pairs[10:])
    whole = {**empty, "text": ANSWER}
    assert text_done == {
        "type": "response.output_text.done",
        "sequence_number": 10,
        **where,
        "text": ANSWER,
        "logprobs": [],
    }
    assert part_done == {
        "type": "response.content_part.done",
        "sequence_number": 11,
        **where,
        "part": whole,
    }
    message = {**added["item"], "status": "completed", "content": [whole]}
    assert item_done == {
        "type": "response.output_item.done",
        "sequence_number": 12,
        "output_index": 0,
        "item": message,
    }
    final = completed["response"]
    assert (final["id"], final["status"], final["output"]) == (ids[0], "completed", [message])
    assert final["usage"] == _usage(stack, _chatml(("user", "hi")), ANSWER)


def test_sdk_streams_and_its_helper_gives_the_final_response(
    client: openai.OpenAI, stack: Stack
) -> None:
    stream = client.responses.create(model="oai", input="hi", stream=True)
    events = list(stream)
    assert [e.type for e in events] == _STREAM
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == ANSWER
    with client.responses.stream(model="oai", input="hi", instructions="be brief") as helper:
        deltas = [e.delta for e in helper if e.type == "response.output_text.delta"]
        final = helper.get_final_response()
    assert deltas == _WORDS
    assert (final.output_text, final.status, final.instructions) == (
        ANSWER,
        "completed",
        "be brief",
    )
    prompt = _chatml(("system", "be brief"), ("user", "hi"))
    assert final.usage is not None and final.usage.to_dict() == _usage(stack, prompt, ANSWER)


def test_incomplete_only_where_the_limit_is_known_to_be_reached(client: openai.OpenAI) -> None:
    # No tokenizer: a stream counts decoding steps and knows the limit was reached...
    question = " ".join(["q"] * 20)  # TEMPLATED echoes "[user] q q ...": over 16 tokens
    events = list(
        client.responses.create(model=TEMPLATED, input=question, max_output_tokens=16, stream=True)
    )
    assert [e.type for e in events][-2:] == ["response.output_item.done", "response.incomplete"]
    last = events[-1]
    assert last.type == "response.incomplete"
    assert last.response.incomplete_details is not None
    assert last.response.incomplete_details.reason == "max_output_tokens"
    sixteen = "[user] " + " ".join(["q"] * 15)
    assert (last.response.output_text, _message(last.response).status) == (
        sixteen,
        "incomplete",
    )
    # ... a whole answer is text alone, which says nothing of its tokens: "completed".
    whole = client.responses.create(model=TEMPLATED, input=question, max_output_tokens=16)
    assert (whole.output_text, whole.status, whole.incomplete_details) == (
        sixteen,
        "completed",
        None,
    )


async def test_async_client_creates_and_streams(stack: Stack, openai_models: None) -> None:
    async with openai.AsyncOpenAI(
        base_url=stack.http_url + "/v1", api_key="x", max_retries=0
    ) as sdk:
        response = await sdk.responses.create(model=LONG, input="q", max_output_tokens=16)
        assert response.output_text == _long(16)
        async with sdk.responses.stream(model="oai", input="q") as stream:
            final = await stream.get_final_response()
        assert final.output_text == ANSWER


def test_an_error_after_the_stream_began_is_response_failed(client: openai.OpenAI) -> None:
    events = list(client.responses.create(model=FAILING, input="x", stream=True))
    assert [e.type for e in events] == [*_STREAM[:4], *_STREAM[4:6], "response.failed"]
    last = events[-1]
    assert last.type == "response.failed"
    failed = last.response
    assert failed.status == "failed" and failed.usage is None
    assert failed.error is not None
    assert failed.error.to_dict() == {
        "code": "server_error",
        "message": "TestLM failed after 2 tokens (fail_after_tokens): Unavailable",
        "type": "service_unavailable_error",
    }
    assert _message(failed).to_dict()["status"] == "incomplete"
    assert failed.output_text == "Paris is"
    # The helper has no response to give: OpenAI's SDK says so.
    with client.responses.stream(model=FAILING, input="x") as helper:
        assert [e.type for e in helper][-1] == "response.failed"
        with pytest.raises(RuntimeError, match=r"response\.completed"):
            helper.get_final_response()


def test_unknown_model_is_not_found_streamed_or_not(client: openai.OpenAI) -> None:
    error = {
        "message": "model /sax/test/nothing-here is not published: NotFound",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }
    for stream in (False, True):
        with pytest.raises(openai.NotFoundError) as failure:
            client.responses.create(model="sax/test/nothing-here", input="x", stream=stream)
        assert failure.value.status_code == 404 and failure.value.body == error
    with pytest.raises(openai.NotFoundError) as unknown:
        client.responses.create(model="gpt-4o", input="x")
    assert unknown.value.code == "model_not_found" and unknown.value.param == "model"


_TOOL = {"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}
_REMOVE = "(remove it)"


@pytest.mark.parametrize(
    ("fields", "param", "message"),
    [
        ({"tools": [_TOOL]}, "tools", f"not supported: Sax models have no tool calling {_REMOVE}"),
        (
            {"tool_choice": "required"},
            "tool_choice",
            'not supported: Sax models have no tool calling (use "none")',
        ),
        (
            {"previous_response_id": "resp_1"},
            "previous_response_id",
            "not supported: this gateway stores no responses (send the whole conversation as "
            f"input) {_REMOVE}",
        ),
        (
            {"conversation": "conv_1"},
            "conversation",
            "not supported: this gateway stores no conversations (send the whole conversation "
            f"as input) {_REMOVE}",
        ),
        (
            {"background": True},
            "background",
            "not supported: responses are not stored, so there is nothing to poll (stream "
            f"instead) {_REMOVE}",
        ),
        (
            {"text": {"format": {"type": "json_object"}}},
            "text.format",
            "'json_object': JSON mode and structured outputs are not supported: Sax cannot "
            'constrain decoding (remove it or use {"type": "text"})',
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            "input[0].content",
            "'input_image' parts are not supported: only text reaches Sax",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input[0].content",
            "'input_file' parts are not supported: only text reaches Sax",
        ),
        (
            {"input": [{"type": "function_call_output", "call_id": "c", "output": "x"}]},
            "input[0]",
            "'function_call_output' items are not supported: only messages reach Sax",
        ),
        (
            {"truncation": "auto"},
            "truncation",
            "'auto' is not supported: the gateway cannot shorten a conversation to fit the "
            'model (remove it or set "disabled")',
        ),
        (
            {"reasoning": {"effort": "high"}},
            "reasoning",
            f"not supported: Sax models have no reasoning settings {_REMOVE}",
        ),
    ],
)
def test_what_sax_cannot_do_is_a_400_naming_the_parameter(
    http: httpx.Client, client: openai.OpenAI, fields: dict[str, Any], param: str, message: str
) -> None:
    _assert_refused(http, client, {"model": "oai", "input": "hi", **fields}, param, message)


_NO_INPUT = "required: a non-empty string or a non-empty list of messages"


@pytest.mark.parametrize(
    ("fields", "param", "message"),
    [
        # OpenAI: "Invalid 'max_output_tokens': integer below minimum value. Expected a value
        # >= 16, but got 15 instead." (its code integer_below_min_value; ours has none).
        ({"max_output_tokens": 15}, "max_output_tokens", "must be between 16 and 1048576, got 15"),
        ({"max_output_tokens": 0}, "max_output_tokens", "must be between 16 and 1048576, got 0"),
        # OpenAI answers an empty input list as a missing input: a 400 ('One of "input" or
        # "previous_response_id" ... must be provided'). An empty string is no more input.
        ({"input": ""}, "input", _NO_INPUT),
        ({"input": []}, "input", _NO_INPUT),
    ],
)
def test_what_openai_refuses_is_refused_in_its_shape(
    http: httpx.Client, client: openai.OpenAI, fields: dict[str, Any], param: str, message: str
) -> None:
    _assert_refused(http, client, {"model": "oai", "input": "hi", **fields}, param, message)


def _assert_refused(
    http: httpx.Client, client: openai.OpenAI, body: dict[str, Any], param: str, message: str
) -> None:
    """``body`` is a 400 in OpenAI's envelope naming ``param``, streamed or not, as the raw
    HTTP body and as the SDK's BadRequestError."""
    error = openai_error(f"{param}: {message}", param=param)
    response = http.post("/v1/responses", json=body)
    assert (response.status_code, response.json()) == (400, {"error": error})
    for stream in (False, True):  # before the stream begins: a plain 400 either way
        with pytest.raises(openai.BadRequestError) as failure:
            client.responses.create(**body, stream=stream)
        refused = failure.value
        assert (refused.status_code, refused.type, refused.param, refused.code) == (
            400,
            "invalid_request_error",
            param,
            None,
        )
        assert refused.body == error


@pytest.mark.parametrize(
    ("fields", "param", "message"),
    [
        ({"max_tool_calls": "3"}, "max_tool_calls", "must be an integer"),
        ({"safety_identifier": 7}, "safety_identifier", "must be a string"),
        ({"prompt_cache_key": ["k"]}, "prompt_cache_key", "must be a string"),
        ({"service_tier": 1}, "service_tier", "must be a string"),
        ({"text": {"format": "text"}}, "text.format", 'must be an object such as {"type": "text"}'),
        (
            {"input": [{"role": "", "content": "hi"}]},
            "input[0].role",
            "required: such as user, system, developer, assistant",  # the Responses API's
        ),
    ],
)
def test_a_field_of_the_wrong_type_is_a_400_naming_it(
    http: httpx.Client, fields: dict[str, Any], param: str, message: str
) -> None:
    # Not echoed into a response object that the SDK's types would then refuse.
    response = http.post("/v1/responses", json={"model": "oai", "input": "hi", **fields})
    error = openai_error(f"{param}: {message}", param=param)
    assert (response.status_code, response.json()) == (400, {"error": error})


def test_settings_the_response_object_has_are_echoed(http: httpx.Client) -> None:
    fields = {
        "max_tool_calls": 3,
        "safety_identifier": "user-1",
        "prompt_cache_key": "k",
        "service_tier": "auto",
    }
    response = http.post("/v1/responses", json={"model": "oai", "input": "hi", **fields})
    data = response.json()
    Response.model_validate(data, strict=True)
    assert response.status_code == 200 and data["status"] == "completed"
    echoed = ("max_tool_calls", "safety_identifier", "prompt_cache_key", "service_tier")
    assert {k: data.get(k) for k in echoed} == {
        "max_tool_calls": 3,
        "safety_identifier": "user-1",
        "prompt_cache_key": "k",
        "service_tier": None,  # the tier that served it is OpenAI's to say; not echoed
    }


def test_a_reasoning_object_of_nulls_asks_for_nothing(client: openai.OpenAI) -> None:
    # As chat takes `reasoning_effort: null`; it was a 400 "no reasoning settings".
    response = client.responses.create(
        model="oai", input="hi", reasoning={"effort": None, "summary": None}
    )
    assert response.status == "completed" and response.output_text


def test_store_is_accepted_and_nothing_can_be_retrieved(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="oai", input="hi", store=True, tools=[], tool_choice="none"
    )
    # The SDK's Response has no `store` field, though OpenAI's JSON has it.
    assert (response.to_dict()["store"], response.tool_choice, response.tools) == (True, "none", [])
    # Nothing is stored: GET /v1/responses/{id} is a path this API does not have.
    with pytest.raises(openai.NotFoundError) as failure:
        client.responses.retrieve(response.id)
    assert failure.value.body == openai_error(
        f"Could not resolve /v1/responses/{response.id} to a method."
    )


def test_langchain_chat_model_on_the_responses_api(stack: Stack, openai_models: None) -> None:
    chat = ChatOpenAI(
        base_url=stack.http_url + "/v1",
        api_key=SecretStr("x"),
        model="oai",
        max_retries=0,
        use_responses_api=True,
    )
    reply = chat.invoke("What is the capital of France?")
    assert reply.text == ANSWER
    assert reply.usage_metadata is not None and reply.usage_metadata["output_tokens"] == 6
    assert "".join(c.text for c in chat.stream("again?")) == ANSWER


def test_node_openai_package_creates_and_streams(stack: Stack, openai_models: None) -> None:
    script = (
        'import OpenAI from "openai";'
        "const client = new OpenAI({baseURL: process.argv[1], apiKey: 'x', maxRetries: 0});"
        "const whole = await client.responses.create({model: 'oai', input: 'hi'});"
        "const stream = client.responses.stream({model: 'oai', input: 'hi'});"
        "const types = []; for await (const e of stream) types.push(e.type);"
        "const final = await stream.finalResponse();"
        "let refused; try { await client.responses.create({model: 'oai', input: 'hi',"
        " previous_response_id: 'resp_1'}); } catch (e) {"
        " refused = {name: e.constructor.name, status: e.status, param: e.param}; }"
        "console.log(JSON.stringify({text: whole.output_text, status: whole.status,"
        " types, final: final.output_text, usage: final.usage, refused}));"
    )
    result = node_sdk(script, stack.http_url + "/v1")
    assert result == {
        "text": ANSWER,
        "status": "completed",
        "types": _STREAM,
        "final": ANSWER,
        "usage": _usage(stack, _chatml(("user", "hi")), ANSWER),
        "refused": {"name": "BadRequestError", "status": 400, "param": "previous_response_id"},
    }


@pytest.mark.parametrize("stream", [False, True])
def test_vllms_stop_strings_end_the_text(client: openai.OpenAI, stream: bool) -> None:
    # vLLM's Responses API takes `stop` and `include_stop_str_in_output` (in `extra_body`);
    # they were ignored as unknown fields, and the text ran on past the stop string. Beside
    # them, the values of fields refused below that ask for nothing pass, as some clients
    # send every field.
    unset = {
        "repetition_penalty": 1.0,
        "ignore_eos": False,
        "logit_bias": {},
        "response_format": {"type": "text"},
        "n": 1,
        "max_tokens": None,
        "moderation": None,
        "context_management": [],
    }
    for include, text in ((False, "Paris is the"), (True, "Paris is the capital")):
        extra = {**unset, "stop": [" capital"], "include_stop_str_in_output": include}
        response: Response
        if stream:
            with client.responses.stream(model="oai", input="hi", extra_body=extra) as events:
                deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
                response = events.get_final_response()
            assert "".join(deltas) == text
        else:
            response = client.responses.create(model="oai", input="hi", extra_body=extra)
        assert (response.output_text, response.status) == (text, "completed")


_CONSTRAINED = "JSON mode and structured outputs are not supported: Sax cannot constrain decoding"


@pytest.mark.parametrize(
    ("fields", "param", "message"),
    [
        # vLLM's Responses API honours these; as unknown fields they were ignored.
        (
            {"repetition_penalty": 1.3},
            "repetition_penalty",
            "not supported: Sax cannot honour repetition_penalty (remove it or set 1)",
        ),
        (
            {"ignore_eos": True},
            "ignore_eos",
            "not supported: Sax cannot honour ignore_eos (remove it or set false)",
        ),
        (
            {"logit_bias": {"1": 5}},
            "logit_bias",
            "not supported: Sax cannot honour logit_bias (remove it or set {})",
        ),
        (
            {"structured_outputs": {"json": {"type": "object"}}},
            "structured_outputs",
            "not supported: Sax cannot constrain decoding (remove it)",
        ),
        # Chat's spelling of what the Responses API names otherwise: ignored, and the answer
        # was unlimited, unconstrained or one where several were asked for.
        (
            {"response_format": {"type": "json_object"}},
            "response_format",
            f'\'json_object\': {_CONSTRAINED} (remove it or use {{"type": "text"}})',
        ),
        ({"max_tokens": 20}, "max_tokens", "not a Responses API field: use max_output_tokens"),
        (
            {"max_completion_tokens": 20},
            "max_completion_tokens",
            "not a Responses API field: use max_output_tokens",
        ),
        ({"n": 2}, "n", "not supported: a response has one answer (remove it)"),
        (
            {"reasoning_effort": "high"},
            "reasoning_effort",
            "not supported: Sax models have no reasoning settings (remove it)",
        ),
        # OpenAI's moderation and compaction: ignored, the answer was unscreened, or made
        # from a conversation OpenAI would have compacted.
        (
            {"moderation": {"model": "omni-moderation-latest"}},
            "moderation",
            "not supported: Sax cannot honour moderation (remove it or set null)",
        ),
        (
            {"context_management": [{"type": "compaction", "compact_threshold": 1000}]},
            "context_management",
            f"not supported: the gateway cannot compact a conversation to fit the model {_REMOVE}",
        ),
    ],
)
def test_what_chat_refuses_is_refused_here_too(
    http: httpx.Client, client: openai.OpenAI, fields: dict[str, Any], param: str, message: str
) -> None:
    error = openai_error(f"{param}: {message}", param=param)
    response = http.post("/v1/responses", json={"model": "oai", "input": "hi", **fields})
    assert (response.status_code, response.json()) == (400, {"error": error})
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as failure:
            client.responses.create(model="oai", input="hi", stream=stream, extra_body=fields)
        assert (failure.value.param, failure.value.body) == (param, error)
