"""Token counts for ``usage``: exact with the model's SentencePiece model, else none.

Sax answers with text only, so without the model's tokenizer the gateway cannot know how many
tokens a text is. It then says so rather than guess: the ``*_tokens`` fields are null and
``usage`` counts characters instead, under names that say so (see docs/openai.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sentencepiece

from gateway.config import ConfigError
from gateway.modelconfig import ModelConfig

INLINE_CHARS = 65_536
"""Texts up to this many characters in all are counted on the event loop (at most ~7 ms of
SentencePiece on the bench host); longer ones in a worker thread, since SentencePiece lets go
of the GIL while it encodes. On the loop, one 4 M-character prompt (the most a request may
send) held its gateway process for 0.46 s, in which it answered no other call."""


class TokenCounter:
    """Loads each configured model's SentencePiece model once, at start."""

    def __init__(self, models: Mapping[str, ModelConfig]) -> None:
        self._processors: dict[str, Any] = {}
        for model_id, config in models.items():
            if config.tokenizer is None:
                continue
            processor = sentencepiece.SentencePieceProcessor()
            try:
                processor.Load(config.tokenizer)
            except (OSError, RuntimeError) as exc:
                raise ConfigError(f"models.{model_id}.tokenizer: {exc}") from exc
            self._processors[model_id] = processor

    def exact(self, model_id: str) -> bool:
        """Whether counts for this model are exact token counts."""
        return model_id in self._processors

    def count(self, model_id: str, text: str) -> int | None:
        """Tokens in ``text``, or None without the model's tokenizer."""
        processor = self._processors.get(model_id)
        return None if processor is None else len(processor.EncodeAsIds(text))

    def usage(
        self, model_id: str, prompts: Sequence[str], completions: Sequence[str] = ()
    ) -> dict[str, Any]:
        """OpenAI's ``usage`` object for these prompts and completions."""
        if self.exact(model_id):
            prompt = sum(self.count(model_id, p) or 0 for p in prompts)
            completion = sum(self.count(model_id, c) or 0 for c in completions)
            return {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
        prompt_chars = sum(len(p) for p in prompts)
        completion_chars = sum(len(c) for c in completions)
        return {
            "prompt_tokens": None,
            "completion_tokens": None,
            "total_tokens": None,
            "basis": "characters",
            "prompt_characters": prompt_chars,
            "completion_characters": completion_chars,
            "total_characters": prompt_chars + completion_chars,
        }

    async def usage_off_loop(
        self, model_id: str, prompts: Sequence[str], completions: Sequence[str] = ()
    ) -> dict[str, Any]:
        """`usage`, in a worker thread if the texts are long enough to hold the loop."""
        if self.exact(model_id) and _long(prompts, completions):
            return await asyncio.to_thread(self.usage, model_id, tuple(prompts), tuple(completions))
        return self.usage(model_id, prompts, completions)

    def counted(
        self,
        model_id: str,
        inputs: Sequence[str],
        outputs: Sequence[str],
        then: Callable[[int, int], None],
    ) -> None:
        """Calls ``then`` with the tokens in ``inputs`` and in ``outputs`` (the model's
        tokenizer must be known): at once if the texts are short, else on the event loop's
        thread once a worker thread has counted them (the metrics' tallies are the loop's)."""

        def total(texts: Sequence[str]) -> int:
            return sum(self.count(model_id, t) or 0 for t in texts)

        if not _long(inputs, outputs):
            then(total(inputs), total(outputs))
            return
        inputs, outputs = tuple(inputs), tuple(outputs)
        loop = asyncio.get_running_loop()
        counts = loop.run_in_executor(None, lambda: (total(inputs), total(outputs)))

        def done(counted: asyncio.Future[tuple[int, int]]) -> None:
            if not counted.cancelled() and counted.exception() is None:
                then(*counted.result())

        counts.add_done_callback(done)


def _long(*texts: Sequence[str]) -> bool:
    """Whether ``texts`` are too long to count on the event loop (`INLINE_CHARS`)."""
    return sum(len(t) for group in texts for t in group) > INLINE_CHARS
