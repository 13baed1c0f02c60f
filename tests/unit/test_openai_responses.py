"""The Responses API's request parsing and answer objects, checked against the `openai`
SDK's own types (strict validation: every field the type requires, of its type)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import pydantic
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from gateway.client import InvalidArgumentError, UnavailableError
from gateway.service.openai._responses_reply import ResponseReply, usage
from gateway.service.openai._responses_request import responses_request

_EVENTS = pydantic.TypeAdapter(ResponseStreamEvent)
_DOCUMENT = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"
_TOKENS = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def _events(data: bytes) -> list[dict[str, Any]]:
    """The data of Server-Sent Events whose ``event:`` line names their type."""
    events = []
    for block in data.decode().split("\n\n")[:-1]:
        event, line = block.split("\n")
        parsed = json.loads(line.removeprefix("data: "))
        assert event == f"event: {parsed['type']}"
        events.append(parsed)
    return events


def test_a_string_input_is_one_user_message_after_the_instructions() -> None:
    request = responses_request({"model": "m", "input": "hi", "instructions": "be brief"})
    assert request.messages == (
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    )
    assert request.sampling.extra_inputs() == {}  # the model's own defaults
    assert not request.sampling.stream


def test_the_sampling_table_maps_max_output_tokens_as_max_tokens() -> None:
    request = responses_request(
        {"model": "m", "input": "hi", "max_output_tokens": 16, "temperature": 0.2, "top_p": 0.5}
    )
    assert request.sampling.extra_inputs() == {
        "per_example_max_decode_steps": 16.0,
        "temperature": 0.2,
        "per_example_top_p": 0.5,
    }
    assert (request.echo["max_output_tokens"], request.echo["temperature"]) == (16, 0.2)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
        (
            {"input": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]},
            "input[0].content",
        ),
        # output_text is an assistant's text only
        (
            {"input": [{"role": "user", "content": [{"type": "output_text", "text": "x"}]}]},
            "input[0].content",
        ),
        ({"input": "x", "instructions": ["x"]}, "instructions"),
        ({"input": "x", "metadata": {"k": 1}}, "metadata"),
        ({"input": "x", "stream": "yes"}, "stream"),
        ({"input": "x", "store": "no"}, "store"),
        ({"input": "x", "text": {"verbosity": "low"}}, "text.verbosity"),
        ({"input": "x", "include": ["message.output_text.logprobs"]}, "include"),
        ({"input": "x", "top_logprobs": 2}, "top_logprobs"),
        ({"input": "x", "prompt": {"id": "pmpt_1"}}, "prompt"),
        ({}, "input"),
        ({"input": ""}, "input"),
        ({"input": "x", "max_output_tokens": 15}, "max_output_tokens"),  # OpenAI's floor: 16
    ],
)
def test_refusals_name_the_field(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidArgumentError) as failure:
        responses_request({"model": "m", **fields})
    assert failure.value.field_violations[0][0] == param


def test_a_format_or_item_with_no_type_is_said_so() -> None:
    # A format with no type was told it was JSON mode ("None: JSON mode ... not supported"),
    # and an item whose type is null (a message, as one with none) "None items".
    with pytest.raises(InvalidArgumentError) as failure:
        responses_request({"model": "m", "input": "x", "text": {"format": {}}})
    assert failure.value.field_violations[0] == (
        "text.format.type",
        'required: "text", the one format Sax answers in',
    )
    item = {"type": None, "role": "user", "content": "x"}
    assert responses_request({"model": "m", "input": [item]}).messages == (
        {"role": "user", "content": "x"},
    )


def test_unset_values_pass() -> None:
    body = {
        "model": "m",
        "input": "x",
        "tools": [],
        "tool_choice": "none",
        "background": False,
        "reasoning": {},
        "include": [],
        "top_logprobs": 0,
        "truncation": "disabled",
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "previous_response_id": None,
        "service_tier": "auto",  # accepted and ignored
    }
    assert responses_request(body).echo["tool_choice"] == "none"


def test_usage_renames_the_chat_paths_counts() -> None:
    assert usage(_TOKENS) == {
        "input_tokens": 3,
        "output_tokens": 2,
        "total_tokens": 5,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }


def _reply() -> ResponseReply:
    return ResponseReply("m", responses_request({"model": "m", "input": "x"}).echo)


@pytest.mark.parametrize(("finish", "status"), [("stop", "completed"), ("length", "incomplete")])
def test_every_object_is_strictly_the_sdks_type(finish: str, status: str) -> None:
    Response.model_validate(_reply().whole([("ab", finish)], _TOKENS), strict=True)
    reply = _reply()
    chunks = [*reply.opening(0), *reply.delta(0, "a"), *reply.delta(0, "b")]
    chunks += reply.finished(0, finish)
    events = _events(reply.frame(chunks).data) + _events(reply.tail(_TOKENS).data)
    for event in events:
        _EVENTS.validate_python(event, strict=True)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    final = events[-1]
    assert (final["type"], final["response"]["status"]) == (f"response.{status}", status)
    assert final["response"]["output"][0]["content"][0]["text"] == "ab"


def test_a_failure_is_response_failed_with_the_text_so_far() -> None:
    reply = _reply()
    reply.frame([*reply.opening(0), *reply.delta(0, "a")])
    [failed] = _events(reply.failure(UnavailableError("gone")).data)
    _EVENTS.validate_python(failed, strict=True)
    assert failed["response"]["error"] == {
        "code": "server_error",
        "message": "gone",
        "type": "service_unavailable_error",
    }
    assert failed["response"]["output"][0]["status"] == "incomplete"
    assert failed["response"]["output"][0]["content"][0]["text"] == "a"


def test_every_field_of_a_response_is_the_documents() -> None:
    # The document named 9 of a response's 29 fields: the request's settings it echoes
    # (instructions, store, temperature, ...) and background and completed_at were in no
    # schema, so a client generated from it dropped them, and a check of replies against
    # it with no fields beside its own failed on every one.
    components = json.loads(_DOCUMENT.read_text())["components"]
    schema = components["schemas"]["openai.Response"]
    closed = jsonschema_rs.Draft202012Validator(
        {**schema, "unevaluatedProperties": False, "components": components}
    )
    reply = _reply()
    events = _events(reply.frame([*reply.opening(0), *reply.delta(0, "a")]).data)
    events += _events(reply.tail(_TOKENS).data)
    bodies = [e["response"] for e in events if "response" in e]
    bodies.append(_reply().whole([("ab", "length")], _TOKENS))
    for body in bodies:
        assert set(body) == set(schema["properties"])
        assert closed.is_valid(body), next(closed.iter_errors(body)).message


def test_the_request_schema_names_every_field_the_request_echoes() -> None:
    # The document said user, store and metadata were "accepted and ignored" and named neither
    # user, safety_identifier, prompt_cache_key, max_tool_calls nor service_tier: a client
    # generated from it could not send them, and a wrong type is a 400 naming the field.
    components = json.loads(_DOCUMENT.read_text())["components"]
    schema = components["schemas"]["openai.ResponseRequest"]
    closed = jsonschema_rs.Draft202012Validator(
        {**schema, "unevaluatedProperties": False, "components": components}
    )
    body = {
        "model": "m",
        "input": "x",
        "user": "u",
        "safety_identifier": "s",
        "prompt_cache_key": "k",
        "max_tool_calls": 3,
        "metadata": {"a": "b"},
        "store": False,
        "service_tier": "auto",
    }
    echo = responses_request(body).echo
    assert {k: echo[k] for k in body if k in echo and k != "input"} == {
        k: v for k, v in body.items() if k not in ("model", "input", "service_tier")
    }
    assert closed.is_valid(body), next(closed.iter_errors(body)).message
    for field in ("user", "safety_identifier", "prompt_cache_key", "service_tier"):
        assert not closed.is_valid({**body, field: 5})
        with pytest.raises(InvalidArgumentError) as refused:
            responses_request({**body, field: 5})
        assert refused.value.field_violations[0][0] == field
