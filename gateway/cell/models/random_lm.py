"""A random-weight bigram language model standing in for Sax's `LmCloudSpmd2BTest`.

Upstream's `*Test` params serve random weights too, so their output is gibberish; ours is
gibberish from a small English word list. The weights (a table of next-word logits) come from
the cell's seed and the checkpoint string ("None": random weights), so every server of a cell
answers alike, and a request's samples are a pure function of the request: the same prompt
and extra inputs give the same output.

Extra inputs honoured by Generate and GenerateStream: `temperature` (0: greedy),
`per_example_max_decode_steps`, `per_example_top_k`, `per_example_top_p`; the other methods
take none (upstream's LM params declare none for Score), and a call that sets another is
refused, as upstream's model servers refuse it. Overrides: `num_samples` (default 4),
`max_decode_steps` (default 32).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from gateway.cell.models._hashing import digest, unit_floats
from gateway.cell.models.base import (
    LM_GENERATE,
    LM_GENERATE_STREAM,
    LM_METHODS,
    ExtraDefaults,
    ExtraInputs,
    Hypothesis,
    ServableModel,
    StreamStep,
    int_override,
)

_log = logging.getLogger(__name__)

MODEL_PATH = "saxml.server.pax.lm.params.lm_cloud.LmCloudSpmd2BTest"
EOS = "."
_WORDS = [
    "the",
    "a",
    "one",
    "some",
    "every",
    "model",
    "cell",
    "server",
    "token",
    "word",
    "light",
    "river",
    "stone",
    "cloud",
    "garden",
    "city",
    "music",
    "story",
    "north",
    "quiet",
    "bright",
    "small",
    "large",
    "old",
    "new",
    "runs",
    "sings",
    "waits",
    "falls",
    "grows",
    "turns",
    "opens",
    "keeps",
    "finds",
    "makes",
    "and",
    "or",
    "but",
    "with",
    "under",
    "over",
    "near",
    "through",
    "after",
    "before",
    "today",
    "tonight",
    "slowly",
    "again",
]
VOCAB = (*_WORDS, EOS)
_EMBED_DIM = 16
_DEFAULTS = {
    "temperature": 0.5,
    "per_example_top_k": 40.0,
    "per_example_top_p": 0.95,
}


#: What Generate and GenerateStream take (with the decoding defaults above).
_GENERATE_EXTRA_INPUTS: ExtraDefaults = {**_DEFAULTS, "per_example_max_decode_steps": 4096.0}

_OVERRIDES = frozenset({"num_samples", "max_decode_steps"})


def _parse_overrides(overrides: Mapping[str, str]) -> tuple[int, int]:
    """(num_samples, max_decode_steps), each within its range."""
    return (
        int_override(overrides, "num_samples", 4, minimum=1, maximum=16),
        int_override(overrides, "max_decode_steps", 32, minimum=1, maximum=4096),
    )


def check_overrides(overrides: Mapping[str, str]) -> None:
    """INVALID_ARGUMENT (naming the override and its range) unless the overrides load."""
    _parse_overrides(overrides)


class RandomBigramLM(ServableModel):
    method_names = LM_METHODS
    extra_inputs = dict.fromkeys((LM_GENERATE, LM_GENERATE_STREAM), _GENERATE_EXTRA_INPUTS)

    def __init__(self, *, checkpoint: str, overrides: Mapping[str, str], seed: int) -> None:
        self._seed = digest(seed, checkpoint)
        rng = random.Random(self._seed)
        size = len(VOCAB)
        self._logits = [[rng.gauss(0.0, 2.0) for _ in range(size)] for _ in range(size)]
        for i in range(size):
            self._logits[i][i] = -8.0  # no "north north north": repeats read as broken
        self._num_samples, self._max_steps = _parse_overrides(overrides)
        # As upstream's params classes do with a key their config lacks: a warning, no more.
        for key in sorted(set(overrides) - _OVERRIDES):
            _log.warning("override %s is not used by %s's stand-in; ignored", key, MODEL_PATH)

    # -- the "network" ---------------------------------------------------------------------

    def _word_id(self, word: str) -> int:
        word = word.lower().strip(".,!?;:\"'")
        if word in VOCAB:
            return VOCAB.index(word)
        return int.from_bytes(digest(word)[:4], "big") % len(_WORDS)

    def _log_probs(self, previous: int, temperature: float) -> list[float]:
        logits = [x / max(temperature, 1e-6) for x in self._logits[previous]]
        top = max(logits)
        norm = top + math.log(sum(math.exp(x - top) for x in logits))
        return [x - norm for x in logits]

    def _start(self, prompt: str) -> int:
        words = prompt.split()
        return self._word_id(words[-1]) if words else len(VOCAB) - 1

    # -- decoding --------------------------------------------------------------------------

    def _decode(self, prompt: str, extra: ExtraInputs, sample: int) -> list[tuple[str, float]]:
        """(word, log-prob) pairs of one sample."""
        temperature = extra.number("temperature", _DEFAULTS["temperature"])
        top_k = int(extra.number("per_example_top_k", _DEFAULTS["per_example_top_k"]))
        top_p = extra.number("per_example_top_p", _DEFAULTS["per_example_top_p"])
        steps = min(self._max_steps, int(extra.number("per_example_max_decode_steps", 1e9)))
        rng = random.Random(digest(self._seed, prompt, sample, repr(sorted(extra.floats.items()))))
        out: list[tuple[str, float]] = []
        previous = self._start(prompt)
        for _ in range(max(0, steps)):
            log_probs = self._log_probs(previous, 1.0)
            if temperature <= 0:
                choice = max(range(len(VOCAB)), key=log_probs.__getitem__)
            else:
                choice = _sample(self._log_probs(previous, temperature), top_k, top_p, rng)
            out.append((VOCAB[choice], log_probs[choice]))
            if VOCAB[choice] == EOS:
                break
            previous = choice
        return out

    def _samples(self, prompt: str, extra: ExtraInputs) -> list[list[tuple[str, float]]]:
        return [self._decode(prompt, extra, i) for i in range(self._num_samples)]

    # The computing below runs in a worker thread, as a real model computes outside the
    # server's RPC loop: in the event loop, a long call (a Score of 100,000 words, seconds on
    # a starved host) kept the server from answering the gateway's status request and the
    # admin's polls, so a live server was taken for hung and dropped by its admin. Threads
    # of its own (`_compute`): in the loop's default ones, long calls would hold up the
    # server's storage reads (its re-join after the admin restarts).

    async def generate(self, text: str, extra: ExtraInputs) -> list[Hypothesis]:
        samples = await _compute(self._samples, text, extra)
        hyps = [
            Hypothesis(_join(word for word, _ in sample), sum(lp for _, lp in sample))
            for sample in samples
        ]
        return sorted(hyps, key=lambda h: -h.score)

    async def generate_stream(self, text: str, extra: ExtraInputs) -> AsyncIterator[StreamStep]:
        samples = await _compute(self._samples, text, extra)
        scores = [0.0] * len(samples)
        # One step at least: upstream's last message has an item of every sample, empty or not.
        for step in range(max((len(s) for s in samples), default=0) or 1):
            pieces: list[str] = []
            for i, sample in enumerate(samples):
                if step < len(sample):
                    word, log_prob = sample[step]
                    scores[i] += log_prob
                    pieces.append(word if step == 0 or word == EOS else " " + word)
                else:
                    pieces.append("")
            yield StreamStep(pieces=tuple(pieces), scores=tuple(scores))

    async def score(self, prefix: str, suffixes: list[str], extra: ExtraInputs) -> list[float]:
        return await _compute(self._score, prefix, suffixes)

    def _score(self, prefix: str, suffixes: list[str]) -> list[float]:
        results = []
        for suffix in suffixes:
            previous, total = self._start(prefix), 0.0
            for word in suffix.split():
                current = self._word_id(word)
                total += self._log_probs(previous, 1.0)[current]
                previous = current
            results.append(total)
        return results

    async def embed_text(self, text: str, extra: ExtraInputs) -> list[float]:
        return await _compute(self._embed, text)

    def _embed(self, text: str) -> list[float]:
        words = text.split() or [EOS]
        vectors = [unit_floats(_EMBED_DIM, self._seed, self._word_id(w)) for w in words]
        return [sum(column) / len(vectors) for column in zip(*vectors, strict=True)]

    async def gradient(
        self, prefix: str, suffix: str, extra: ExtraInputs
    ) -> tuple[list[float], dict[str, list[float]]]:
        (score,) = await self.score(prefix, [suffix], extra)
        embedding = await self.embed_text(prefix + " " + suffix, extra)
        return [score], {"embedding": [score * v for v in embedding]}


_T = TypeVar("_T")

#: The bigram LMs' computing threads, one per core as a model server's accelerators would be.
_COMPUTING = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="lm-compute")


async def _compute(work: Callable[..., _T], *args: Any) -> _T:
    return await asyncio.get_running_loop().run_in_executor(_COMPUTING, work, *args)


def _sample(log_probs: list[float], top_k: int, top_p: float, rng: random.Random) -> int:
    ranked = sorted(range(len(log_probs)), key=lambda i: -log_probs[i])
    if top_k > 0:
        ranked = ranked[:top_k]
    kept, mass = [], 0.0
    for index in ranked:
        kept.append(index)
        mass += math.exp(log_probs[index])
        if mass >= top_p:
            break
    weights = [math.exp(log_probs[i]) for i in kept]
    return rng.choices(kept, weights=weights)[0]


def _join(words: Iterable[str]) -> str:
    text = ""
    for word in words:
        text += word if not text or word == EOS else " " + word
    return text
