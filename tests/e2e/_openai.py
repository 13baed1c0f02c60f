"""The config file the e2e stack runs with: the OpenAI face's per-model settings, and a
SentencePiece model trained here (offline, in milliseconds) for exact token counts."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import sentencepiece

from gateway.launch.stack import Stack
from tests.e2e._node import node_program
from tests.e2e._published import TEST_LM, published

ROOT = Path(__file__).resolve().parents[2]

# Configured models (published by the OpenAI tests themselves).
CHATML = "/sax/test/oai"  # alias "oai", built-in chatml template, SentencePiece tokenizer
TEMPLATED = "/sax/test/oai-tmpl"  # a Jinja template of its own, no tokenizer
PLAIN = "/sax/test/oai-plain"  # nothing configured
TEMPLATE = (
    "{% for m in messages %}[{{ m.role }}] {{ m.content }} {% endfor %}"
    "{% if enable_thinking is false %}/no_think {% endif %}"  # as Qwen3's switch
    "{% if add_generation_prompt %}[assistant]{% endif %}"
)
DIVIDING = "/sax/test/oai-divides"  # configured, never published: its template fails first
DIVIDE = "{{ 1 / (messages|length - 1) }}"  # ZeroDivisionError for a single message
FAILING = "/sax/test/oai-fails"  # fails after two tokens; built-in chatml template
BUSY = "/sax/test/oai-busy"  # always overloaded
SLOW = "/sax/test/oai-slow"  # 50 tokens, 100 ms each
LONG = "/sax/test/oai-long"  # as CHATML, but 20 tokens (ANSWER again and again)
VISION = "/sax/test/oai-vision"  # configured as CHATML; published by its tests as a vision model
ANSWER = "Paris is the capital of France"
WORDS = ["Paris", "is", "the", "capital", "of", "France", "hello", "world", "tok", "be", "brief"]


def write_config(folder: Path) -> Path:
    """Writes ``config.yaml`` and the ``spm.model`` it names into ``folder``."""
    model = io.BytesIO()
    # A word-level model: its tokens are TestLM's tokens (words), so counts are checkable.
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))),
        model_writer=model,
        model_type="word",
        vocab_size=len(WORDS) + 4,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    (folder / "spm.model").write_bytes(model.getvalue())
    config = folder / "config.yaml"
    config.write_text(
        "models:\n"
        f"  {CHATML}:\n"
        "    aliases: [oai]\n"
        "    chat_template_name: chatml\n"
        "    tokenizer: spm.model\n"
        f"  {TEMPLATED}:\n"
        f"    chat_template: {TEMPLATE!r}\n"
        f"  {DIVIDING}:\n"
        f"    chat_template: {DIVIDE!r}\n"
        f"  {FAILING}:\n"
        "    chat_template_name: chatml\n"
        f"  {LONG}:\n"
        "    chat_template_name: chatml\n"
        "    tokenizer: spm.model\n"
        f"  {VISION}:\n"
        "    chat_template_name: chatml\n"
    )
    return config


def tokenizer(config: Path) -> sentencepiece.SentencePieceProcessor:
    """The SentencePiece model ``write_config`` trained."""
    return sentencepiece.SentencePieceProcessor(model_file=str(config.parent / "spm.model"))


@contextmanager
def openai_models(stack: Stack) -> Iterator[None]:
    """Publishes the models the OpenAI tests use (once per session: a model cannot be
    republished right after it was unpublished)."""
    with ExitStack() as models:
        for model, overrides in (
            (CHATML, {"text": ANSWER}),
            (TEMPLATED, {}),  # echoes its prompt: shows what the template rendered
            (PLAIN, {"text": ANSWER, "num_samples": "2"}),
            (FAILING, {"text": ANSWER, "fail_after_tokens": "2", "fail_code": "UNAVAILABLE"}),
            (BUSY, {"fail_after_tokens": "0", "fail_code": "RESOURCE_EXHAUSTED"}),
            (SLOW, {"text": " ".join(["tok"] * 50), "delay_ms": "100"}),
            (LONG, {"text": ANSWER, "length": "20"}),
        ):
            models.enter_context(published(stack, model, TEST_LM, overrides))
        yield


def node_sdk(script: str, base_url: str) -> Any:
    """Runs ``script``, an ES module that uses the real `openai` npm package with the API's
    base URL in ``process.argv[1]``, and returns the JSON it printed."""
    return node_program(script, base_url, package="openai", module=True)
