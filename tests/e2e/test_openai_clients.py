"""The OpenAI-compatible API through Envoy with other real clients: the `openai` npm package
(Node, and in Chromium), LangChain's OpenAI integration and curl; and a disconnect cancelling
Sax's decoding."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import openai
import pytest
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from pydantic import SecretStr

from gateway.launch.stack import Stack
from tests.e2e._browser import run_in_chromium
from tests.e2e._openai import ANSWER, BUSY, CHATML, SLOW, tokenizer

ROOT = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")
CURL = shutil.which("curl")


def test_node_openai_package_streams_a_chat(stack: Stack, openai_models: None) -> None:
    if NODE is None or not (ROOT / "node_modules" / "openai").exists():
        pytest.fail("node and `npm ci` (make contract) are needed")
    result = subprocess.run(
        [NODE, ROOT / "examples" / "openai" / "stream.mjs", stack.http_url + "/v1", "oai", "hi"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    spm = tokenizer(Path(str(stack.settings.gateway.config_file)))
    prompt = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    words = ANSWER.split()
    assert (
        [json.loads(line) for line in result.stdout.splitlines()]
        == [
            {"delta": "", "finish": None},  # the role alone, as OpenAI opens a chat stream
            *({"delta": d, "finish": None} for d in [words[0], *(" " + w for w in words[1:])]),
            {"delta": None, "finish": "stop"},
            {
                "usage": {
                    "prompt_tokens": len(spm.encode(prompt)),
                    "completion_tokens": 6,
                    "total_tokens": len(spm.encode(prompt)) + 6,
                }
            },
            {"text": ANSWER},
        ]
    )


def test_openai_npm_package_in_a_browser_passes_cors(
    stack: Stack, openai_models: None, tmp_path: Path
) -> None:
    # A page of an allowed origin runs the SDK (dangerouslyAllowBrowser): every call is
    # preflighted with the SDK's own x-stainless-* headers, which CORS must allow.
    origin = "http://allowed.example"  # the session stack's --cors-origin
    page = run_in_chromium(
        "openai_sdk.mjs", [stack.http_url + "/v1", origin, "oai", BUSY], tmp_path
    )
    assert "failed" not in page, page  # a CORS refusal is an APIConnectionError
    assert "oai" in page["models"] and page["text"] == ANSWER
    not_found, busy = page["notFound"], page["busy"]
    assert (not_found["name"], not_found["status"]) == ("NotFoundError", 404)
    assert not_found["error"]["code"] == "model_not_found" and not_found["requestID"]
    # The SDK waits as long as Retry-After says, if the page may read it.
    assert (busy["name"], busy["status"], busy["retryAfter"]) == ("RateLimitError", 429, "1")
    # Chromium logs the two refusals (every 4xx); nothing else, such as a CORS error.
    assert all("status of 4" in e for e in page["errors"]), page


def test_langchain_chat_model_invokes_and_streams(stack: Stack, openai_models: None) -> None:
    chat = ChatOpenAI(
        base_url=stack.http_url + "/v1", api_key=SecretStr("x"), model="oai", max_retries=0
    )
    reply = chat.invoke("What is the capital of France?")
    assert reply.content == ANSWER
    assert reply.usage_metadata is not None and reply.usage_metadata["output_tokens"] == 6
    assert "".join(str(c.content) for c in chat.stream("again?")) == ANSWER


def test_langchain_embeddings(stack: Stack, openai_models: None) -> None:
    native = httpx.post(stack.http_url + "/embed", json={"model": CHATML, "text": "hello"})
    embeddings = OpenAIEmbeddings(
        base_url=stack.http_url + "/v1",
        api_key=SecretStr("x"),
        model="oai",
        check_embedding_ctx_length=False,
        max_retries=0,
    )
    assert embeddings.embed_query("hello") == pytest.approx(native.json()["embedding"], rel=1e-6)
    assert len(embeddings.embed_documents(["hello", "world"])) == 2


def test_langchains_default_token_ids_get_a_400_that_says_what_to_set(
    stack: Stack, openai_models: None
) -> None:
    # OpenAIEmbeddings' default (check_embedding_ctx_length=True) tokenizes each input with
    # tiktoken and sends the token IDs, as here; its user never wrote a token.
    client = openai.OpenAI(base_url=stack.http_url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as failure:
        client.embeddings.create(model="oai", input=[[15339, 1917]])
    assert failure.value.param == "input"
    assert "check_embedding_ctx_length=False" in failure.value.message


def test_curl_streams_server_sent_events_ending_in_done(stack: Stack, openai_models: None) -> None:
    assert CURL is not None, "curl is needed"
    body = {"model": "oai", "prompt": "q", "stream": True, "max_tokens": 2}
    result = subprocess.run(
        [CURL, "-sS", "-N", "-i", stack.http_url + "/v1/completions", "-d", json.dumps(body)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    head, _, stream = result.stdout.partition("\n\n")  # text mode turned \r\n into \n
    assert head.startswith("HTTP/1.1 200") and "content-type: text/event-stream" in head
    events = stream.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert [(c["choices"][0]["text"], c["choices"][0]["finish_reason"]) for c in chunks] == [
        ("Paris", None),
        (" is", None),
        ("", "length"),
    ]
    assert chunks[0]["object"] == "text_completion" and chunks[0]["model"] == "oai"


def test_curl_error_is_openai_envelope(stack: Stack, openai_models: None) -> None:
    assert CURL is not None, "curl is needed"
    result = subprocess.run(
        [CURL, "-sS", "-i", stack.http_url + "/v1/chat/completions", "-d", '{"model": 1}'],
        capture_output=True,
        text=True,
        timeout=60,
    )
    head, _, body = result.stdout.partition("\n\n")
    assert head.startswith("HTTP/1.1 400") and "content-type: application/json" in head
    assert "x-openai-error" not in head
    assert json.loads(body) == {
        "error": {
            "message": "messages: required: a non-empty list of {role, content} objects",
            "type": "invalid_request_error",
            "param": "messages",
            "code": None,
        }
    }


def _cancellations(stack: Stack, model: str) -> list[float]:
    log = Path(str(stack.settings.log_dir)) / "cell.log"
    pattern = re.compile(rf"cancelled model={re.escape(model)} \S+ at=([0-9.]+)")
    return [float(m.group(1)) for m in pattern.finditer(log.read_text(errors="replace"))]


def test_disconnect_cancels_the_sax_call(stack: Stack, openai_models: None) -> None:
    body = {"model": SLOW, "prompt": "q", "stream": True}
    with (
        httpx.Client(base_url=stack.http_url, timeout=30) as http,
        http.stream("POST", "/v1/completions", json=body) as response,
    ):
        first = next(response.iter_lines())
        assert json.loads(first.removeprefix("data: "))["choices"][0]["text"] == "tok"
    disconnected = time.time()
    deadline = time.monotonic() + 10
    while not _cancellations(stack, SLOW) and time.monotonic() < deadline:
        time.sleep(0.02)
    [cancelled_at] = _cancellations(stack, SLOW)
    assert cancelled_at >= disconnected - 0.05
