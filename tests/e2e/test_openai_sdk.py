"""The OpenAI-compatible API through Envoy, driven by the real `openai` Python SDK."""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import openai
import pydantic
import pytest

from gateway.launch.stack import Stack
from tests.e2e._bodies import openai_error
from tests.e2e._openai import ANSWER, BUSY, CHATML, FAILING, PLAIN, TEMPLATED, tokenizer
from tests.e2e._published import TEST_LM, published


@pytest.fixture
def client(stack: Stack, openai_models: None) -> Iterator[openai.OpenAI]:
    # No retries: a test that expects an error wants it at once.
    with openai.OpenAI(base_url=stack.http_url + "/v1", api_key="x", max_retries=0) as sdk:
        yield sdk


def test_models_list_has_published_models_and_aliases(client: openai.OpenAI) -> None:
    ids = {m.id: m for m in client.models.list()}
    assert {CHATML, "oai", TEMPLATED, PLAIN} <= set(ids)
    assert ids["oai"].model_dump()["root"] == CHATML
    assert ids[CHATML].owned_by == "sax" and ids[CHATML].object == "model"
    assert client.models.retrieve("oai").id == "oai"
    # The SDK sends the ID percent-encoded as one segment: /v1/models/%2Fsax%2Ftest%2Foai.
    assert client.models.retrieve(CHATML).id == CHATML


def test_a_model_id_in_the_path_is_percent_decoded_once(
    client: openai.OpenAI, http: httpx.Client
) -> None:
    # Envoy decoded "%25" and left "%2F" encoded, and the gateway decoded again: an ID encoded
    # twice named the model (/v1/models/%252Fsax%252Ftest%252Foai was /sax/test/oai).
    twice = CHATML.replace("/", "%252F")
    response = http.get(f"/v1/models/{twice}")
    message = (
        f"model {CHATML.replace('/', '%2F')!r} does not exist: use a Sax model ID such as "
        "/sax/test/lm2b or a configured alias (GET /v1/models lists them)"
    )
    error = {**openai_error(message, param="model"), "code": "model_not_found"}
    assert (response.status_code, response.json()) == (404, {"error": error})
    # Once, as the SDK sends it, or not at all: the same model.
    assert client.models.retrieve(CHATML).id == CHATML
    for path in (CHATML.replace("/", "%2F"), CHATML.lstrip("/"), "oai"):
        assert http.get(f"/v1/models/{path}").status_code == 200, path


def test_completion_returns_text_and_exact_usage(client: openai.OpenAI, stack: Stack) -> None:
    spm = tokenizer(Path(str(stack.settings.gateway.config_file)))
    completion = client.completions.create(model="oai", prompt="hello world", max_tokens=8)
    assert completion.object == "text_completion" and completion.model == "oai"
    assert [(c.index, c.text, c.finish_reason) for c in completion.choices] == [(0, ANSWER, "stop")]
    assert completion.usage is not None
    assert completion.usage.model_dump() == {
        "prompt_tokens": len(spm.encode("hello world")),
        "completion_tokens": len(spm.encode(ANSWER)),
        "total_tokens": len(spm.encode("hello world")) + len(spm.encode(ANSWER)),
        "completion_tokens_details": None,
        "prompt_tokens_details": None,
    }
    assert completion.usage.completion_tokens == 6


def test_completion_max_tokens_list_prompts_and_stop(client: openai.OpenAI) -> None:
    short = client.completions.create(model=CHATML, prompt=["a", "b"], max_tokens=3)
    assert [(c.index, c.text, c.finish_reason) for c in short.choices] == [
        (0, "Paris is the", "length"),
        (1, "Paris is the", "length"),
    ]
    stopped = client.completions.create(model="oai", prompt="q", stop=["capital", "zzz"])
    assert [(c.text, c.finish_reason) for c in stopped.choices] == [("Paris is the ", "stop")]


def test_a_stream_cut_at_a_stop_string_is_the_text_a_call_without_stream_gets(
    client: openai.OpenAI,
) -> None:
    # "the capital of" begins before "capital" ends: the whole text is cut before it, and a
    # stream must not send "the " on seeing "capital", before it knows whether "the
    # capital of" follows. Without the text past a stop, and the same finish_reason and usage.
    for stop, include in ((["the capital of", "capital"], False), (["the", "th"], True)):
        asked = {"include_stop_str_in_output": include}
        whole = client.completions.create(model="oai", prompt="q", stop=stop, extra_body=asked)
        chunks = list(
            client.completions.create(
                model="oai",
                prompt="q",
                stop=stop,
                extra_body=asked,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        streamed = "".join(c.choices[0].text for c in chunks if c.choices)
        reasons = [c.choices[0].finish_reason for c in chunks if c.choices]
        assert [(streamed, reasons[-1])] == [(c.text, c.finish_reason) for c in whole.choices]
        assert chunks[-1].usage == whole.usage
    assert whole.choices[0].text == "Paris is th"  # "th" ends first: the shorter one is kept


def test_vllms_include_stop_str_in_output_keeps_the_stop_string(client: openai.OpenAI) -> None:
    # vLLM's extension: code written for it finds the stop string that ended the text.
    asked = {"include_stop_str_in_output": True}
    whole = client.completions.create(
        model="oai", prompt="q", stop=["zzz", "capital"], extra_body=asked
    )
    assert [(c.text, c.finish_reason) for c in whole.choices] == [("Paris is the capital", "stop")]
    streamed = client.chat.completions.create(
        model="oai",
        messages=[{"role": "user", "content": "q"}],
        stop=["of"],
        stream=True,
        extra_body=asked,
    )
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text == "Paris is the capital of"


def test_completion_without_tokenizer_counts_characters(client: openai.OpenAI) -> None:
    completion = client.completions.create(
        model=PLAIN, prompt="hi", n=2, top_p=0.9, extra_body={"top_k": 5}
    )
    assert [c.text for c in completion.choices] == [ANSWER, ANSWER]
    assert completion.usage is not None
    assert completion.usage.model_dump() == {
        "prompt_tokens": None,
        "completion_tokens": None,
        "total_tokens": None,
        "completion_tokens_details": None,
        "prompt_tokens_details": None,
        "basis": "characters",
        "prompt_characters": 2,
        "completion_characters": 2 * len(ANSWER),
        "total_characters": 2 + 2 * len(ANSWER),
    }


def test_streamed_completion_ends_cleanly_with_usage(client: openai.OpenAI) -> None:
    chunks = list(
        client.completions.create(
            model="oai",
            prompt="q",
            stream=True,
            stop="France",
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Paris is the capital of "
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert sum(1 for c in chunks if c.choices and c.choices[0].finish_reason) == 1
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5
    assert len({c.id for c in chunks}) == 1
    # OpenAI's reference: with include_usage, every other chunk has "usage": null.
    assert all("usage" in c.model_fields_set and c.usage is None for c in chunks[:-1])


def test_chat_with_builtin_template_and_stop(client: openai.OpenAI) -> None:
    chat = client.chat.completions.create(
        model="oai", messages=[{"role": "user", "content": "hi"}], max_completion_tokens=20
    )
    assert chat.object == "chat.completion"
    assert [(c.message.role, c.message.content, c.finish_reason) for c in chat.choices] == [
        ("assistant", ANSWER, "stop")
    ]


def test_chat_renders_the_configured_template(client: openai.OpenAI) -> None:
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hello"}]},
    ]
    chat = client.chat.completions.create(model=TEMPLATED, messages=messages)
    assert chat.choices[0].message.content == "[system] be brief [user] hello [assistant]"
    stream = client.chat.completions.create(model=TEMPLATED, messages=messages, stream=True)
    chunks = list(stream)
    # The role alone first, as OpenAI streams it; then content without a role.
    assert (chunks[0].choices[0].delta.role, chunks[0].choices[0].delta.content) == (
        "assistant",
        "",
    )
    assert all(c.choices[0].delta.role is None for c in chunks[1:])
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "[system] be brief [user] hello [assistant]"
    assert [c.choices[0].finish_reason for c in chunks][-1] == "stop"


def test_vllms_chat_template_kwargs_reach_the_template(client: openai.OpenAI) -> None:
    # vLLM's way to switch a template's options, e.g. Qwen3's thinking off.
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "user", "content": "hello"}
    ]
    off = {"chat_template_kwargs": {"enable_thinking": False, "messages": []}}
    chat = client.chat.completions.create(model=TEMPLATED, messages=messages, extra_body=off)
    assert chat.choices[0].message.content == "[user] hello /no_think [assistant]"
    on = {"chat_template_kwargs": {"enable_thinking": True}}
    chat = client.chat.completions.create(model=TEMPLATED, messages=messages, extra_body=on)
    assert chat.choices[0].message.content == "[user] hello [assistant]"
    with pytest.raises(openai.BadRequestError) as failure:
        client.chat.completions.create(
            model=TEMPLATED, messages=messages, extra_body={"chat_template_kwargs": "x"}
        )
    assert failure.value.param == "chat_template_kwargs"


def test_vllms_generation_prompt_fields_continue_a_prefilled_answer(
    client: openai.OpenAI,
) -> None:
    # TEMPLATED echoes its prompt; the template writes "[assistant]" if add_generation_prompt.
    user: openai.types.chat.ChatCompletionMessageParam = {"role": "user", "content": "hello"}
    prefill: openai.types.chat.ChatCompletionMessageParam = {
        "role": "assistant",
        "content": "Paris is ",
    }
    chat = partial(client.chat.completions.create, model=TEMPLATED)
    bare = chat(messages=[user], extra_body={"add_generation_prompt": False})
    assert bare.choices[0].message.content == "[user] hello"
    continued = chat(
        messages=[user, prefill],
        extra_body={"add_generation_prompt": False, "continue_final_message": True},
    )
    # Without continue_final_message the prompt would end "Paris is [assistant]".
    assert continued.choices[0].message.content == "[user] hello [assistant] Paris is"
    with pytest.raises(openai.BadRequestError) as failure:
        chat(messages=[user, prefill], extra_body={"continue_final_message": True})
    assert failure.value.param == "continue_final_message"


def test_chat_without_template_is_a_400_that_says_how(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as failure:
        client.chat.completions.create(model=PLAIN, messages=[{"role": "user", "content": "x"}])
    assert failure.value.status_code == 400
    assert failure.value.param == "model"
    assert "chat_template_name: chatml" in failure.value.message


def test_embeddings_base64_by_default_and_floats(client: openai.OpenAI, stack: Stack) -> None:
    native = httpx.post(stack.http_url + "/embed", json={"model": CHATML, "text": "hello"})
    expected = native.json()["embedding"]
    default = client.embeddings.create(model="oai", input="hello")  # the SDK asks for base64
    assert default.data[0].embedding == pytest.approx(expected, rel=1e-6)
    floats = client.embeddings.create(
        model=CHATML, input=["hello", "world"], encoding_format="float"
    )
    assert [d.index for d in floats.data] == [0, 1]
    assert floats.data[0].embedding == pytest.approx(expected, rel=1e-12)
    assert len(floats.data[1].embedding) == len(expected) == 8
    assert floats.usage.prompt_tokens == 2 and floats.usage.total_tokens == 2


def test_embeddings_base64_is_little_endian_float32(stack: Stack, openai_models: None) -> None:
    body = {"model": CHATML, "input": "hello", "encoding_format": "base64"}
    response = httpx.post(stack.http_url + "/v1/embeddings", json=body)
    raw = base64.b64decode(response.json()["data"][0]["embedding"])
    native = httpx.post(stack.http_url + "/embed", json={"model": CHATML, "text": "hello"})
    assert list(struct.unpack("<8f", raw)) == pytest.approx(native.json()["embedding"], rel=1e-6)


def test_unknown_model_raises_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as failure:
        client.completions.create(model="gpt-4", prompt="x")
    assert failure.value.code == "model_not_found" and failure.value.param == "model"
    with pytest.raises(openai.NotFoundError) as unpublished:
        client.embeddings.create(model="/sax/test/nothing-here", input="x")
    assert unpublished.value.body == {
        "message": "model /sax/test/nothing-here is not published: NotFound",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }


def test_chat_with_an_unpublished_model_is_not_found(client: openai.OpenAI, stack: Stack) -> None:
    # Not told to configure a chat template for a model that is not there (a misspelt name).
    error = {
        "message": "model /sax/test/nothing-here is not published: NotFound",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }
    model = "sax/test/nothing-here"
    body = {"model": model, "messages": [{"role": "user", "content": "x"}]}
    response = httpx.post(stack.http_url + "/v1/chat/completions", json=body)
    assert (response.status_code, response.json()) == (404, {"error": error})
    for stream in (False, True):
        with pytest.raises(openai.NotFoundError) as failure:
            client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "x"}], stream=stream
            )
        assert failure.value.status_code == 404 and failure.value.body == error


def test_unknown_cell_is_model_not_found_without_server_paths(
    client: openai.OpenAI, stack: Stack
) -> None:
    with pytest.raises(openai.NotFoundError) as failure:
        client.completions.create(model="/sax/nocell/x", prompt="x")
    assert failure.value.body == {
        "message": "cell /sax/nocell not found",  # where SAX_ROOT is stays in the log
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }
    native = httpx.post(stack.http_url + "/generate", json={"model": "/sax/nocell/x", "query": "x"})
    assert native.status_code == 404 and native.json()["message"] == "cell /sax/nocell not found"


def test_unsupported_parameters_are_400s_that_say_so(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as logprobs:
        client.completions.create(model="oai", prompt="x", logprobs=2)
    assert logprobs.value.param == "logprobs" and "not supported" in logprobs.value.message
    # 0 too: it asks for the chosen tokens' log-probabilities (once answered, logprobs null).
    with pytest.raises(openai.BadRequestError) as chosen:
        client.completions.create(model="oai", prompt="x", logprobs=0)
    message = "logprobs: not supported: Sax cannot honour logprobs (remove it or set null)"
    assert chosen.value.body == openai_error(message, param="logprobs")
    with pytest.raises(openai.BadRequestError) as tokens:
        client.completions.create(model="oai", prompt=[1, 2, 3])
    assert tokens.value.param == "prompt" and "token-id" in tokens.value.message
    # Structured outputs: the SDK's own parse() raises a 400, not its JSON validation error.
    with pytest.raises(openai.BadRequestError) as structured:
        client.chat.completions.parse(
            model="oai", messages=[{"role": "user", "content": "x"}], response_format=_City
        )
    assert structured.value.param == "response_format"
    # Outputs other than text, and web search: ignored, the answer was silently another.
    asks: list[tuple[str, dict[str, object], str]] = [
        ("modalities", {"modalities": ["text", "audio"]}, '["text"]'),
        ("audio", {"audio": {"voice": "alloy", "format": "wav"}}, "null"),
        ("web_search_options", {"web_search_options": {}}, "null"),
    ]
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "user", "content": "x"}
    ]
    for param, extra, unset in asks:
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="oai", messages=messages, extra_body=extra)
        message = f"{param}: not supported: Sax cannot honour {param} (remove it or set {unset})"
        assert refused.value.body == openai_error(message, param=param)
    text_only = client.chat.completions.create(model="oai", messages=messages, modalities=["text"])
    assert text_only.choices[0].message.content


def test_vllms_sampling_fields_sax_cannot_honour_are_400s(client: openai.OpenAI) -> None:
    # Unknown fields are ignored, and these were: code written for vLLM got text made without
    # its penalty, minimum length or token bans, and no word of it.
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "user", "content": "x"}
    ]
    asks: list[tuple[str, object, str]] = [
        ("repetition_penalty", 1.2, "1"),
        ("min_p", 0.05, "0"),
        ("min_tokens", 8, "0"),
        ("ignore_eos", True, "false"),
        ("stop_token_ids", [2], "[]"),
        ("bad_words", ["no"], "[]"),
        ("use_beam_search", True, "false"),
        ("skip_special_tokens", False, "true"),
    ]
    for param, value, unset in asks:
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(
                model="oai", messages=messages, extra_body={param: value}
            )
        message = f"{param}: not supported: Sax cannot honour {param} (remove it or set {unset})"
        assert refused.value.body == openai_error(message, param=param)
        with pytest.raises(openai.BadRequestError) as on_completions:
            client.completions.create(model="oai", prompt="x", extra_body={param: value})
        assert on_completions.value.body == openai_error(message, param=param)
    # vLLM's defaults, as some clients send every field, change nothing and pass.
    defaults = {
        "repetition_penalty": 1.0,
        "min_p": 0.0,
        "min_tokens": 0,
        "ignore_eos": False,
        "stop_token_ids": [],
        "skip_special_tokens": True,
        "length_penalty": 1.0,
    }
    sent = client.chat.completions.create(model="oai", messages=messages, extra_body=defaults)
    assert sent.choices[0].message.content


class _City(pydantic.BaseModel):
    name: str


def test_overloaded_model_is_a_429_with_retry_after(client: openai.OpenAI) -> None:
    # The Sax client retries an overloaded replica until its overload window ends (1 s) or
    # the deadline is near, whichever is first (grpc-timeout passes through Envoy).
    with pytest.raises(openai.RateLimitError) as failure:
        client.completions.create(
            model=BUSY, prompt="x", stream=True, extra_headers={"grpc-timeout": "1S"}
        )
    assert failure.value.status_code == 429
    assert failure.value.response.headers["retry-after"] == "1"
    assert failure.value.code == "rate_limit_exceeded"


def test_an_overloaded_model_is_a_429_long_before_a_unary_call_would_end(
    client: openai.OpenAI, stack: Stack
) -> None:
    # The SDKs send no deadline. A generation may decode for the stream timeout (600 s);
    # retrying the overloaded replicas stopped at the unary default (the stack's 20 s; 60 s
    # by default, which the SDK's own two retries made three minutes), and now stops after
    # the Sax client's overload window (--overloaded-after, 1 s): tests/e2e/test_overload.py.
    unary = stack.settings.gateway.default_timeout
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as failure:
        client.with_options(timeout=3 * unary).completions.create(
            model=BUSY, prompt="x", stream=True
        )
    assert time.monotonic() - started < unary / 2
    assert failure.value.response.headers["retry-after"] == "1"
    assert failure.value.body == {
        "message": f"{BUSY} is overloaded; retry later "
        "(TestLM failed after 0 tokens (fail_after_tokens): ResourceExhausted)",
        "type": "rate_limit_error",
        "param": None,
        "code": "rate_limit_exceeded",
    }


@pytest.fixture(scope="module")
def unimplemented(stack: Stack) -> Iterator[str]:
    """A model whose server answers every stream UNIMPLEMENTED (a server without the RPC)."""
    overrides = {"fail_after_tokens": "0", "fail_code": "UNIMPLEMENTED"}
    with published(stack, "/sax/test/oai-unimplemented", TEST_LM, overrides) as name:
        yield name


def test_a_501_is_not_retried_by_the_sdk(stack: Stack, unimplemented: str) -> None:
    # The SDKs retry every 5xx unless told not to: three calls (and 1.5 s of backoff) for
    # an answer no retry can change, before x-should-retry: false.
    sent: list[httpx.Request] = []
    with (
        openai.OpenAI(
            base_url=stack.http_url + "/v1",
            api_key="x",
            max_retries=2,
            http_client=openai.DefaultHttpxClient(event_hooks={"request": [sent.append]}),
        ) as sdk,
        pytest.raises(openai.InternalServerError) as failure,
    ):
        sdk.completions.create(model=unimplemented, prompt="x", stream=True)
    assert len(sent) == 1
    assert failure.value.status_code == 501
    assert failure.value.response.headers["x-should-retry"] == "false"
    assert failure.value.body == {
        "message": "TestLM failed after 0 tokens (fail_after_tokens): Unimplemented",
        "type": "invalid_request_error",
        "param": None,
        "code": "unsupported",
    }


def test_error_after_the_stream_started_arrives_in_band(client: openai.OpenAI) -> None:
    received = []
    with pytest.raises(openai.APIError) as failure:
        for chunk in client.completions.create(model=FAILING, prompt="x", stream=True):
            received.append(chunk.choices[0].text)
    assert received == ["Paris", " is"]
    assert failure.value.message == "TestLM failed after 2 tokens (fail_after_tokens): Unavailable"
    assert failure.value.body == {
        "message": failure.value.message,
        "type": "service_unavailable_error",
        "param": None,
        "code": None,
    }


async def test_async_client_completes_and_streams(stack: Stack, openai_models: None) -> None:
    async with openai.AsyncOpenAI(
        base_url=stack.http_url + "/v1", api_key="x", max_retries=0
    ) as sdk:
        completion = await sdk.completions.create(model="oai", prompt="q", max_tokens=2)
        assert completion.choices[0].text == "Paris is"
        stream = await sdk.chat.completions.create(
            model="oai", messages=[{"role": "user", "content": "q"}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream])
        assert text == ANSWER


def test_streamed_choices_each_finish_once(client: openai.OpenAI) -> None:
    texts = {0: "", 1: "", 2: "", 3: ""}
    finishes: list[tuple[int, str]] = []
    for chunk in client.completions.create(model=PLAIN, prompt=["a", "b"], n=2, stream=True):
        for choice in chunk.choices:
            texts[choice.index] += choice.text
            if choice.finish_reason:
                finishes.append((choice.index, choice.finish_reason))
    assert texts == dict.fromkeys(range(4), ANSWER)
    assert sorted(finishes) == [(0, "stop"), (1, "stop"), (2, "stop"), (3, "stop")]


def test_n_over_the_models_samples_is_a_400_streamed_or_not(client: openai.OpenAI) -> None:
    # CHATML returns one sample per prompt: a stream must not quietly answer one choice.
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as failure:
            client.completions.create(model=CHATML, prompt="q", n=2, stream=stream)
        message = "n: /sax/test/oai returns 1 sample(s) per prompt"
        assert failure.value.body == openai_error(message, param="n"), stream
