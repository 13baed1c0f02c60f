"""OpenAI request JSON -> typed requests and Sax extra inputs; stop strings; embeddings."""

from __future__ import annotations

import base64
import json
import math
import re
import struct
from collections.abc import AsyncIterator

import pytest

from gateway.client import CallOptions, InvalidArgumentError, StreamItem
from gateway.service._errors import GRPC_FRAME_BYTES
from gateway.service._stream import TextSoFar
from gateway.service.openai import _requests as rq
from gateway.service.openai import _responses as rs
from gateway.service.openai._body import parse_body
from gateway.service.openai._embeddings import EmbeddingList
from gateway.service.openai._generate import Job, stream_prompt
from gateway.service.openai._stops import StopScanner, cut
from gateway.service.openai._tokens import TokenCounter


def test_mapping_table_sets_sax_extra_inputs() -> None:
    sampling = rq.sampling(
        {"max_tokens": 5, "temperature": 0.2, "top_p": 0.5, "top_k": 7, "user": "u", "seed": 1}
    )
    assert sampling.extra_inputs() == {
        "per_example_max_decode_steps": 5.0,
        "temperature": 0.2,
        "per_example_top_p": 0.5,
        "per_example_top_k": 7.0,
    }
    assert rq.sampling({}).extra_inputs() == {}  # the model's own defaults
    assert rq.sampling({"max_tokens": 5, "max_completion_tokens": 9}).max_tokens == 9
    assert rq.sampling({"top_k": -1}).top_k is None


def test_prompt_and_stop_take_a_string_or_a_list() -> None:
    request = rq.completion_request({"model": "m", "prompt": "a", "stop": "x", "unknown": 1})
    assert request.prompts == ("a",) and request.sampling.stop == ("x",)
    request = rq.completion_request({"model": "m", "prompt": ["a", "b"], "stop": ["x", "y"]})
    assert request.prompts == ("a", "b") and request.sampling.stop == ("x", "y")


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"model": "m", "prompt": [1, 2]}, "prompt", "token-id"),
        ({"model": "m", "prompt": [[1, 2]]}, "prompt", "token-id"),
        ({"model": "m", "prompt": "a", "logprobs": 1}, "logprobs", "not supported"),
        ({"model": "m", "prompt": "a", "echo": True}, "echo", "not supported"),
        ({"model": "m", "prompt": "a", "presence_penalty": 0.5}, "presence_penalty", "not supp"),
        ({"model": "m", "prompt": "a", "temperature": 3}, "temperature", "between 0 and 2"),
        ({"model": "m", "prompt": "a", "n": 0}, "n", "between 1"),
        ({"model": "m", "prompt": "a", "max_tokens": "5"}, "max_tokens", "integer"),
        ({"model": "m", "prompt": "a", "stop": [""]}, "stop", "an empty stop string"),
        # No API takes token-ID stops ("token-id stops are not supported" misled).
        ({"model": "m", "prompt": "a", "stop": [1, 2]}, "stop", "must be a string or a list"),
        ({"model": "m", "prompt": "a", "stream": "yes"}, "stream", "true or false"),
        (
            {"model": "m", "prompt": "a", "response_format": {"type": "json_object"}},
            "response_format",
            "JSON mode and structured outputs are not supported",
        ),
        ({"model": "m", "prompt": "a", "response_format": "json"}, "response_format", "object"),
        # A format with no type, or a null one (it read "None: JSON mode ... not supported").
        ({"model": "m", "prompt": "a", "response_format": {}}, "response_format.type", "required"),
        (
            {"model": "m", "prompt": "a", "response_format": {"type": None}},
            "response_format.type",
            "required",
        ),
        # vLLM's own ways to the same (extra_body of code written for vLLM).
        ({"model": "m", "prompt": "a", "guided_json": {}}, "guided_json", "constrain"),
        ({"model": "m", "prompt": "a", "guided_choice": ["y"]}, "guided_choice", "constrain"),
        ({"model": "m", "prompt": "a", "structured_outputs": {}}, "structured_outputs", "constr"),
        ({"prompt": "a"}, "model", "required"),
        ({"model": "m"}, "prompt", "required"),
    ],
)
def test_what_sax_cannot_do_is_invalid_argument_naming_the_field(
    body: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(InvalidArgumentError) as failure:
        rq.completion_request(body)
    assert failure.value.field_violations[0][0] == field
    assert words in failure.value.message


def test_unset_values_of_unsupported_fields_are_accepted() -> None:
    body: dict[str, object] = {
        "model": "m",
        "prompt": "a",
        "logprobs": None,
        "echo": False,
        "tools": [],
    }
    assert rq.completion_request(body | {"presence_penalty": 0, "best_of": 1}).prompts == ("a",)
    # Plain text is what Sax returns anyway.
    assert rq.completion_request(body | {"response_format": {"type": "text"}}).prompts == ("a",)


def test_chat_messages_join_text_parts_and_refuse_images() -> None:
    # One line each, as vLLM joins them: a context part and a question part stay two texts.
    parts = [{"type": "text", "text": "Some context."}, {"type": "text", "text": "A question?"}]
    request = rq.chat_request({"model": "m", "messages": [{"role": "user", "content": parts}]})
    assert request.messages == ({"role": "user", "content": "Some context.\nA question?"},)
    image = [{"type": "image_url", "image_url": {"url": "x"}}]
    with pytest.raises(InvalidArgumentError) as failure:
        rq.chat_request({"model": "m", "messages": [{"role": "user", "content": image}]})
    assert failure.value.field_violations[0][0] == "messages[0].content"
    # A part whose type is null has none ("None parts are not supported").
    untyped = [{"type": None, "text": "hi"}]
    with pytest.raises(InvalidArgumentError) as failure:
        rq.chat_request({"model": "m", "messages": [{"role": "user", "content": untyped}]})
    no_type = "part 0 has no \"type\": 'text'"
    assert failure.value.field_violations[0] == ("messages[0].content", no_type)


_USER = {"role": "user", "content": "hi"}


@pytest.mark.parametrize(
    ("messages", "field", "message"),
    [
        (
            [_USER, {"content": "hi"}],
            "messages[1].role",
            "required: such as system, developer, user, assistant, tool, function",
        ),
        (
            [{"role": "", "content": "hi"}],
            "messages[0].role",
            "required: such as system, developer, user, assistant, tool, function",
        ),
        (
            [{"role": 1, "content": "hi"}],
            "messages[0].role",
            "must be a string: such as system, developer, user, assistant, tool, function",
        ),
        (["hi"], "messages[0]", "must be an object with a role and content"),
        (
            [{"role": "user"}],
            "messages[0].content",
            "required for a user message: a string or text parts",
        ),
        (
            [{"role": "system", "content": None}, _USER],
            "messages[0].content",
            "required for a system message: a string or text parts",
        ),
        (
            [{"role": "user", "content": []}],
            "messages[0].content",
            "an empty list: give at least one text part",
        ),
        ([{"role": "user", "content": "hi", "name": 7}], "messages[0].name", "must be a string"),
        ([], "messages", "required: a non-empty list of {role, content} objects"),
    ],
)
def test_a_malformed_message_is_invalid_argument_naming_the_field(
    messages: list[object], field: str, message: str
) -> None:
    with pytest.raises(InvalidArgumentError) as failure:
        rq.chat_request({"model": "m", "messages": messages})
    assert failure.value.field_violations == ((field, message),)
    assert failure.value.message == f"{field}: {message}"


def test_every_role_is_accepted_and_reaches_the_template_as_sent() -> None:
    # OpenAI's, and one a model's own template may know (Llama 3.1's tool results).
    messages = [{"role": role, "content": role} for role in (*rq.ROLES, "ipython")]
    request = rq.chat_request({"model": "m", "messages": messages})
    assert request.messages == tuple(messages)
    # An assistant's tool call and a function's result may have no content.
    quiet = [{"role": "assistant", "content": None, "tool_calls": []}, {"role": "function"}]
    request = rq.chat_request({"model": "m", "messages": quiet})
    assert request.messages == (
        {"role": "assistant", "content": ""},
        {"role": "function", "content": ""},
    )


def test_stop_takes_up_to_sixteen_strings() -> None:
    # OpenAI takes 4, vLLM any number: 16 keeps code written for vLLM working.
    sixteen = [chr(ord("a") + i) for i in range(16)]
    assert rq.sampling({"stop": sixteen}).stop == tuple(sixteen)
    with pytest.raises(InvalidArgumentError) as failure:
        rq.sampling({"stop": [*sixteen, "q"]})
    assert failure.value.field_violations == (("stop", "at most 16 strings, got 17"),)
    for empty in ("", ["a", ""]):
        with pytest.raises(InvalidArgumentError) as failure:
            rq.sampling({"stop": empty})
        assert failure.value.field_violations == (
            ("stop", "an empty stop string is not allowed: it would end every text"),
        )


def test_a_whole_float_is_an_integer() -> None:
    # JSON has one kind of number; OpenAI takes 1.0 for an integer field.
    request = rq.completion_request(
        {"model": "m", "prompt": "a", "n": 2.0, "max_tokens": 5.0, "best_of": 1.0, "top_k": 3.0}
    )
    assert (request.sampling.n, request.sampling.max_tokens, request.sampling.top_k) == (2, 5, 3)
    assert rq.chat_request({"model": "m", "messages": [_USER], "top_logprobs": 0.0})
    for body, field, message in (
        ({"n": 1.5}, "n", "must be an integer"),
        ({"n": 1e300}, "n", "must be between 1 and 16, got 1e+300"),
        (
            {"best_of": 2.0},
            "best_of",
            "not supported: Sax cannot honour best_of (remove it or set 1)",
        ),
    ):
        with pytest.raises(InvalidArgumentError) as failure:
            rq.completion_request({"model": "m", "prompt": "a", **body})
        assert failure.value.field_violations == ((field, message),)


def test_logprobs_say_what_unsets_them_on_each_api() -> None:
    # On /v1/completions logprobs is a count, and 0 asks for the chosen tokens' ones.
    unset = "not supported: Sax cannot honour logprobs (remove it or set {})"
    for value in (0, 0.0, 2):
        with pytest.raises(InvalidArgumentError) as failure:
            rq.completion_request({"model": "m", "prompt": "a", "logprobs": value})
        assert failure.value.field_violations == (("logprobs", unset.format("null")),)
    with pytest.raises(InvalidArgumentError) as failure:
        rq.chat_request({"model": "m", "messages": [_USER], "logprobs": True})
    assert failure.value.field_violations == (("logprobs", unset.format("false")),)
    for none in (None, False):
        assert rq.completion_request({"model": "m", "prompt": "a", "logprobs": none})
        assert rq.chat_request({"model": "m", "messages": [_USER], "logprobs": none})


def test_a_null_stream_option_is_an_absent_one() -> None:
    assert not rq.sampling({"stream_options": {"include_usage": None}}).include_usage
    streamed = rq.sampling({"stream": True, "stream_options": {"include_usage": None}})
    assert streamed.stream and not streamed.include_usage
    with pytest.raises(InvalidArgumentError) as failure:
        rq.sampling({"stream_options": {"include_usage": False}})
    assert failure.value.field_violations == (
        ("stream_options", "only allowed when stream is true"),
    )


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"verbosity": "low"}, "verbosity", "'low' is not supported: remove it"),
        (
            {"reasoning_effort": "minimal"},
            "reasoning_effort",
            "not supported: Sax models have no reasoning settings (remove it)",
        ),
        (
            {"messages": [_USER, {"role": "assistant", "content": None, "tool_calls": [{}]}]},
            "messages[1].tool_calls",
            "not supported: Sax models have no tool calling (remove it)",
        ),
        (
            {"messages": [{"role": "tool", "content": "42", "tool_call_id": "c1"}]},
            "messages[0].tool_call_id",
            "not supported: Sax models have no tool calling (remove it)",
        ),
        (
            {"messages": [{"role": "assistant", "function_call": {"name": "f"}}]},
            "messages[0].function_call",
            "not supported: Sax models have no tool calling (remove it)",
        ),
    ],
)
def test_chat_refuses_what_the_responses_api_refuses(
    fields: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(InvalidArgumentError) as failure:
        rq.chat_request({"model": "m", "messages": [_USER], **fields})
    assert failure.value.field_violations == ((field, message),)


def test_chat_accepts_the_defaults_of_what_it_refuses() -> None:
    quiet = [
        {"role": "assistant", "content": "a", "tool_calls": None, "function_call": None},
        {"role": "tool", "content": "b", "tool_call_id": None},
    ]
    request = rq.chat_request(
        {
            "model": "m",
            "messages": [_USER, *quiet],
            "verbosity": "medium",
            "reasoning_effort": None,
            "prediction": {"type": "content", "content": "a"},  # a hint: the answer is the same
        }
    )
    assert [m["content"] for m in request.messages] == ["hi", "a", "b"]


def test_embedding_request_formats() -> None:
    assert rq.embedding_request({"model": "m", "input": "a"}).base64 is False
    assert rq.embedding_request({"model": "m", "input": ["a"], "encoding_format": "base64"}).base64
    with pytest.raises(InvalidArgumentError):
        rq.embedding_request({"model": "m", "input": "a", "encoding_format": "hex"})


def _not_json(name: str) -> None:
    raise AssertionError(f"{name} is not JSON: no client's parser reads it")


def _embedding_list(vectors: list[list[float]], as_base64: bool) -> EmbeddingList:
    reply = EmbeddingList(len(vectors), as_base64, 1 << 30, "ask for less")
    for index, vector in enumerate(vectors):
        reply.add(index, vector)
    return reply


_USAGE = {"prompt_tokens": 1, "completion_tokens": 0, "total_tokens": 1}


def test_an_embedding_value_json_has_no_number_for_is_a_string_as_on_embed() -> None:
    # A model's NaN or infinity went out as Python's NaN and Infinity: a body no JSON parser
    # reads (the SDKs raise on it), where /embed answers proto3 JSON's "NaN" strings.
    vector = [math.nan, math.inf, -math.inf, -0.5, 1e39]
    reply = _embedding_list([vector, [0.25]], False).body("m", _USAGE)
    data = json.loads(reply.data, parse_constant=_not_json)["data"]
    assert [d["embedding"] for d in data] == [["NaN", "Infinity", "-Infinity", -0.5, 1e39], [0.25]]
    # As float32 bytes, each is the float32 nearest it: 1e39 is beyond float32 (a 500 before).
    packed = json.loads(_embedding_list([vector], True).body("m", _USAGE).data)
    floats = struct.unpack("<5f", base64.b64decode(packed["data"][0]["embedding"]))
    assert math.isnan(floats[0])
    assert floats[1:] == (math.inf, -math.inf, -0.5, math.inf)


def test_an_embedding_list_is_openais() -> None:
    usage = {**_USAGE, "prompt_characters": 2, "total_characters": 2}
    reply = _embedding_list([[0.5, -1.0], [0.25, 2.0]], False).body("m", usage)
    assert reply.content_type == "application/json"
    assert json.loads(reply.data) == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.5, -1.0]},
            {"object": "embedding", "index": 1, "embedding": [0.25, 2.0]},
        ],
        "model": "m",
        "usage": {
            "prompt_tokens": 1,
            "total_tokens": 1,
            "prompt_characters": 2,
            "total_characters": 2,
        },
    }


@pytest.mark.parametrize("as_base64", [False, True], ids=["float", "base64"])
def test_an_embedding_list_is_refused_early_but_never_when_it_fits(as_base64: bool) -> None:
    # The vectors still to come count at their least: the shortest numbers ("0") where the
    # others are long; so a reply that fits exactly is never refused.
    vectors = [[0.0] * 50 if i % 2 else [0.123456789012345] * 50 for i in range(40)]
    whole = _embedding_list(vectors, as_base64).body("m", _USAGE)
    fits = whole.ByteSize() + GRPC_FRAME_BYTES
    for limit, refused in ((fits, False), (fits // 2, True)):
        reply = EmbeddingList(len(vectors), as_base64, limit, "ask for less")
        added = 0
        try:
            for index, vector in enumerate(vectors):
                reply.add(index, vector)
                added += 1
        except InvalidArgumentError as exc:
            assert refused, exc
            assert re.fullmatch(
                rf"the response would be at least \d+ bytes, over this gateway's limit of "
                rf"{limit} bytes: ask for less",
                str(exc),
            )
        else:
            assert not refused
            assert rs.fitted(reply.body("m", _USAGE), limit, "ask for less").ByteSize() < fits
    # base64's size is known from the first vector: refused before the second is embedded.
    if as_base64:
        assert added == 0


def test_body_must_be_a_json_object() -> None:
    with pytest.raises(InvalidArgumentError, match="not valid JSON"):
        parse_body(b"{")
    with pytest.raises(InvalidArgumentError, match="JSON object"):
        parse_body(b"[]")


def test_body_must_be_utf8() -> None:
    # json.loads(bytes) guesses UTF-16 and -32, and keeps surrogates encoded in UTF-8.
    half = '{"prompt": "a \ud83d b"}'.encode("utf-8", "surrogatepass")
    with pytest.raises(InvalidArgumentError) as failure:
        parse_body(half)
    assert failure.value.message == (
        "the request body is not UTF-8: invalid continuation byte at byte 14"
    )
    with pytest.raises(InvalidArgumentError, match="not UTF-8: invalid start byte at byte 0"):
        parse_body('{"prompt": "a"}'.encode("utf-16"))
    assert parse_body(b'\xef\xbb\xbf{"prompt": "a"}') == {"prompt": "a"}  # a UTF-8 BOM


@pytest.mark.parametrize(
    ("body", "message"),
    [
        # Python's json takes JavaScript's NaN and Infinity, which JSON has not (RFC 8259 6):
        # a body with one was served, the value ignored or refused as "must be a number",
        # where the native routes' parser answers that the body is not JSON.
        (b'{"model": "m", "prompt": "p", "seed": NaN}', "NaN is not a JSON value"),
        (b'{"model": "m", "prompt": "p", "temperature": Infinity}', "Infinity is not a JSON value"),
        (b'{"model": "m", "x": [1, -Infinity]}', "-Infinity is not a JSON value"),
        # A number JSON spells but no double holds: the native routes refuse it too.
        (b'{"model": "m", "prompt": "p", "seed": 1e400}', "1e400 is out of a double's range"),
        (b'{"model": "m", "x": {"y": -2E+999}}', "-2E+999 is out of a double's range"),
    ],
)
def test_what_json_cannot_spell_is_not_valid_json(body: bytes, message: str) -> None:
    with pytest.raises(InvalidArgumentError) as failure:
        parse_body(body)
    assert failure.value.message == f"the request body is not valid JSON: {message}"
    assert failure.value.field_violations == ()


def test_finite_numbers_of_any_spelling_parse() -> None:
    body = b'{"a": 1e308, "b": -0.0, "c": 2E-400, "d": 12345678901234567890, "e": "NaN"}'
    parsed = {"a": 1e308, "b": 0.0, "c": 0.0, "d": 12345678901234567890, "e": "NaN"}
    assert parse_body(body) == parsed


def test_body_nested_too_deeply_is_not_valid_json() -> None:
    # json.loads raises RecursionError (not a JSONDecodeError) about 1000 levels down.
    deep = b'{"model": "m", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(InvalidArgumentError) as failure:
        parse_body(deep)
    assert failure.value.message == "the request body is not valid JSON: nested too deeply"


@pytest.mark.parametrize(
    ("body", "field", "lone"),
    [
        (rb'{"prompt": "a\ud800b"}', "prompt", r"\ud800"),
        (rb'{"prompt": ["ok", "\uD83C"]}', "prompt[1]", r"\ud83c"),
        (rb'{"input": "\udc00"}', "input", r"\udc00"),
        (
            rb'{"messages": [{"role": "user", "content": "\udbff"}]}',
            "messages[0].content",
            r"\udbff",
        ),
        (
            rb'{"messages": [{"content": [{"type": "text", "text": "\ud83c"}]}]}',
            "messages[0].content[0].text",
            r"\ud83c",
        ),
        (rb'{"stop": ["\ud83c\udf89", "\ud83c"]}', "stop[1]", r"\ud83c"),
    ],
)
def test_a_lone_surrogate_is_invalid_argument_naming_the_field(
    body: bytes, field: str, lone: str
) -> None:
    with pytest.raises(InvalidArgumentError) as failure:
        parse_body(body)
    description = f"not valid Unicode: a lone surrogate ({lone})"
    assert failure.value.field_violations == ((field, description),)
    assert failure.value.message == f"{field}: {description}"


def test_surrogate_pairs_and_escaped_backslashes_are_valid_text() -> None:
    body = rb'{"prompt": "\ud83c\udf89 \\ud800", "\ud83c\udf89": 1}'
    assert parse_body(body) == {"prompt": "\U0001f389 \\ud800", "\U0001f389": 1}
    with pytest.raises(InvalidArgumentError) as failure:
        parse_body(rb'{"x": {"\ud800": 1}}')
    assert failure.value.message == "a key in x is not valid Unicode: a lone surrogate (\\ud800)"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"stream": False, "stream_options": {"include_usage": True}}, "stream_options"),
        (
            {"stream": True, "stream_options": {"include_usage": "yes"}},
            "stream_options.include_usage",
        ),
    ],
)
def test_stream_options_belong_to_a_stream_and_hold_a_boolean(
    body: dict[str, object], field: str
) -> None:
    # As OpenAI and vLLM answer them: usage would never come as a chunk of a call that does
    # not stream, and "yes" is no boolean.
    with pytest.raises(InvalidArgumentError) as failure:
        rq.sampling(body)
    assert failure.value.field_violations[0][0] == field


def test_stream_options_of_a_stream() -> None:
    assert rq.sampling({"stream": True, "stream_options": {"include_usage": True}}).include_usage
    assert not rq.sampling({"stream": True, "stream_options": {}}).include_usage
    assert not rq.sampling({"stream": True, "stream_options": None}).include_usage
    assert not rq.sampling({"stream": False, "stream_options": {}}).include_usage  # says nothing


def test_cut_stops_at_the_first_stop_string() -> None:
    assert cut("hello world", ["wor", "lo"]) == ("hel", True)
    assert cut("hello", ["x"]) == ("hello", False)


def test_stream_scanner_holds_back_a_possible_stop_string() -> None:
    scanner = StopScanner(["END"])
    assert [scanner.feed(t) for t in ["ab", "cE", "N", "x"]] == ["ab", "c", "", "ENx"]
    assert scanner.flush() == ""
    scanner = StopScanner(["END"])
    assert [scanner.feed(t) for t in ["a E", "ND b"]] == ["a ", ""]
    assert scanner.stopped and scanner.feed("more") == "" and scanner.flush() == ""
    scanner = StopScanner(["<|im_end|>"])
    assert scanner.feed("hi <|im") == "hi " and scanner.flush() == "<|im"


def test_stream_scanner_drops_held_back_text_the_model_took_back() -> None:
    # A Sax stream may take back text (a prefix_len shorter than its text so far): what the
    # scanner still held back was sent anyway ("foo ST" held "ST" as a start of "STOP"; the
    # model then kept "foo " and went on "bar": "STbar" went out, a text the model never
    # had). What went out already stays out.
    scanner = StopScanner(["STOP"])
    assert scanner.feed("foo ST") == "foo "
    assert scanner.feed("bar", backtrack=2) == "bar"
    assert scanner.feed(" ST") == " "
    assert scanner.feed("x", backtrack=5) == "x"  # 2 held back dropped, 3 sent kept
    assert scanner.flush() == "" and not scanner.stopped
    # What a take-back leaves may end a stop string with the next text.
    scanner = StopScanner(["STOP"])
    assert scanner.feed("a STO") == "a "
    assert scanner.feed("OP more", backtrack=1) == "" and scanner.stopped


def test_stream_scanner_cuts_where_the_whole_text_is_cut() -> None:
    # A stop string that appears inside the start of a longer one is not the first until
    # the longer one cannot follow: then the text is cut before it, not before the longer.
    stops = ["<|im_end|>", "end"]
    for pieces, sent, stopped in (
        (["hi <|im_", "end|", ">", " more"], ["hi ", "", "", ""], True),
        (["hi <|im_", "end", " more"], ["hi ", "", "<|im_"], True),
        (["hi <|im_", "end"], ["hi ", ""], False),  # the sample ends: flush cuts its text
    ):
        scanner = StopScanner(stops)
        assert [scanner.feed(t) for t in pieces] == sent
        assert scanner.stopped is stopped
        streamed = "".join(sent) + scanner.flush()
        assert (streamed, scanner.stopped) == cut("".join(pieces), stops)
    # Two that begin at one place: the shorter ends first, streamed or not.
    assert cut("a the", ["the", "th"], kept=("the", "th")) == ("a th", True)
    scanner = StopScanner(["the", "th"], kept=("the", "th"))
    assert scanner.feed("a t") == "a " and scanner.feed("he") == "th"


async def test_a_streamed_completion_sends_no_text_the_model_took_back() -> None:
    # What the model streams, as Sax sends it: "foo ST", then "bar" after its first 4
    # characters, then "OP more" after 7. Its text is "foo barOP more"; "ST" was held back
    # (a start of "STOP") and then taken back, so it is never sent.
    class Sax:
        def lm_generate_stream(
            self, model: str, prompt: str, options: CallOptions
        ) -> AsyncIterator[list[StreamItem]]:
            async def items() -> AsyncIterator[list[StreamItem]]:
                for text, prefix_len in (("foo ST", 0), ("bar", 4), ("OP more", 7)):
                    yield [StreamItem(text, prefix_len, [-0.1])]

            return items()

    sampling = rq.sampling({"stop": "STOP"})
    job = Job(rs.Shape(chat=False, model="m"), "/sax/test/m", ["p"], sampling, sampling.stop)
    texts: list[TextSoFar] = []
    streamed = stream_prompt(Sax(), TokenCounter({}), job, "p", 0, CallOptions(), texts)  # type: ignore[arg-type]
    sent = [chunk["choices"][0] async for chunks in streamed for chunk in chunks]
    assert [(c["text"], c["finish_reason"]) for c in sent] == [
        ("foo ", None),
        ("bar", None),
        ("OP more", None),
        ("", "stop"),
    ]
    assert str(texts[0]) == "foo barOP more"
