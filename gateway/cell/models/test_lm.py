"""`sax_gateway.testing.TestLM`: a deterministic language model for tests and benchmarks.

Its output is set by publish overrides (all optional):

    text                 the output; default: echo the request's text
    length               tokens to produce (cycling through the text's words); default: all
    delay_ms             sleep before each token, imitating accelerator decoding; default 0
    num_samples          identical samples per request, scores -0.1 * tokens - index; default 1
    fail_after_tokens    GenerateStream fails after this many tokens (error-path tests)
    fail_code            the status it fails with: UNAVAILABLE (default) or INTERNAL, ...
    embedding_dim        length of lm.embed vectors; default 8
    fail_load            loading fails with this text (load-failure tests)
    max_in_flight        calls one server runs at once; more are refused RESOURCE_EXHAUSTED, as
                         an overloaded upstream model server refuses them (0: every call)
    score                the log-probability Score gives every suffix, "-inf" and "nan" too
                         (what a real model may return); default -0.1 per word

A token is a word with its leading space ("hello world" -> "hello", " world"). The
`per_example_max_decode_steps` extra input caps the number of tokens. Every method takes the
extra inputs in `EXTRA_INPUTS`, and a call that sets any other is refused, as a real cell's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager

import grpc

from gateway.cell._errors import cell_error, invalid_argument
from gateway.cell.models._hashing import unit_floats
from gateway.cell.models.base import (
    LM_METHODS,
    ExtraDefaults,
    ExtraInputs,
    Hypothesis,
    ServableModel,
    StreamStep,
    check_known_overrides,
    float_override,
    int_override,
)
from gateway.common.limits import quote

MODEL_PATH = "sax_gateway.testing.TestLM"
TOKEN_LOGP = -0.1
#: Bounds of the overrides, checked at publish: a model server must not be talked into
#: producing ten million tokens or sleeping for an hour per token.
MAX_TOKENS = 8192
MAX_DELAY_MS = 10_000.0
MAX_IN_FLIGHT = 1024


#: The extra inputs each method takes: the sampling ones an upstream LM declares (the output
#: is set, so only per_example_max_decode_steps acts), a string one (`stop`: upstream declares
#: a string input with a number default too) and a tensor of two numbers (`bias`), so that a
#: client can try each kind of extra input against it. All but the first act on nothing.
EXTRA_INPUTS: ExtraDefaults = {
    "per_example_max_decode_steps": float(MAX_TOKENS),
    "temperature": 0.5,
    "per_example_top_k": 40.0,
    "per_example_top_p": 0.95,
    "stop": 0.0,
    "bias": (0.0, 0.0),
}


#: The overrides it takes (the module docstring says what each does).
OVERRIDES = frozenset(
    {
        "text",
        "length",
        "delay_ms",
        "num_samples",
        "fail_after_tokens",
        "fail_code",
        "embedding_dim",
        "fail_load",
        "max_in_flight",
        "score",
    }
)


def check_overrides(overrides: Mapping[str, str]) -> None:
    """INVALID_ARGUMENT (naming the override, and its range or the known ones) unless the
    overrides are known and load. Only at publish: a model published before the check
    (state.proto) still loads, its unknown overrides ignored."""
    check_known_overrides(overrides, MODEL_PATH, OVERRIDES)
    TestLM(overrides=overrides)


def load(overrides: Mapping[str, str]) -> TestLM:
    """Loads the model; the ``fail_load`` override makes loading fail with its text, for
    tests of what a failed load looks like."""
    reason = overrides.get("fail_load")
    if reason is not None:
        raise cell_error(grpc.StatusCode.FAILED_PRECONDITION, f"TestLM failed to load: {reason}")
    return TestLM(overrides=overrides)


def split_tokens(text: str) -> list[str]:
    """Words, each but the first with the space before it."""
    words = text.split()
    return [word if i == 0 else " " + word for i, word in enumerate(words)]


class TestLM(ServableModel):
    method_names = LM_METHODS
    extra_inputs = dict.fromkeys(LM_METHODS, EXTRA_INPUTS)

    def __init__(self, *, overrides: Mapping[str, str]) -> None:
        self._text = overrides.get("text")
        self._length = (
            int_override(overrides, "length", 0, maximum=MAX_TOKENS)
            if "length" in overrides
            else None
        )
        self._delay = float_override(overrides, "delay_ms", 0.0, maximum=MAX_DELAY_MS) / 1000.0
        self._num_samples = int_override(overrides, "num_samples", 1, minimum=1, maximum=16)
        self._fail_after = (
            int_override(overrides, "fail_after_tokens", 0, maximum=MAX_TOKENS)
            if "fail_after_tokens" in overrides
            else None
        )
        fail_code = overrides.get("fail_code", "UNAVAILABLE").upper()
        code = grpc.StatusCode.__members__.get(fail_code)
        if code is None or code == grpc.StatusCode.OK:
            raise invalid_argument(f"override fail_code={quote(fail_code)} is not an error code")
        self._fail_code = code
        self._dim = int_override(overrides, "embedding_dim", 8, minimum=1, maximum=4096)
        self._max_in_flight = (
            int_override(overrides, "max_in_flight", 0, maximum=MAX_IN_FLIGHT)
            if "max_in_flight" in overrides
            else None
        )
        self._in_flight = 0
        self._score: float | None = None
        if "score" in overrides:
            try:
                self._score = float(overrides["score"])
            except ValueError:
                raise invalid_argument(
                    f"override score={quote(overrides['score'])} is not a number "
                    "(-inf, inf and nan are)"
                ) from None

    @contextmanager
    def _admitted(self) -> Iterator[None]:
        """Counts a call while it runs; RESOURCE_EXHAUSTED if ``max_in_flight`` already run."""
        limit = self._max_in_flight
        if limit is not None and self._in_flight >= limit:
            raise cell_error(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"TestLM is at its max_in_flight ({limit} calls at once)",
            )
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1

    def _plan(self, prompt: str, extra: ExtraInputs) -> tuple[list[str], int]:
        """The words the tokens cycle through, and how many tokens to produce."""
        base = split_tokens(prompt if self._text is None else self._text)
        count = len(base) if self._length is None else self._length
        count = min(count, int(extra.number("per_example_max_decode_steps", count)))
        return base, max(count, 0) if base else 0  # a negative cap: no token

    @staticmethod
    def _token(base: list[str], i: int) -> str:
        return base[i] if i < len(base) else " " + base[i % len(base)].strip()

    def _tokens(self, prompt: str, extra: ExtraInputs) -> list[str]:
        base, count = self._plan(prompt, extra)
        return [self._token(base, i) for i in range(count)]

    def _scores(self, tokens: int) -> tuple[float, ...]:
        return tuple(TOKEN_LOGP * tokens - i for i in range(self._num_samples))

    async def generate(self, text: str, extra: ExtraInputs) -> list[Hypothesis]:
        with self._admitted():
            tokens = self._tokens(text, extra)
            if self._delay and tokens:
                await asyncio.sleep(self._delay * len(tokens))
            output = "".join(tokens)
            return [Hypothesis(output, score) for score in self._scores(len(tokens))]

    async def generate_stream(self, text: str, extra: ExtraInputs) -> AsyncIterator[StreamStep]:
        with self._admitted():
            # Each token as it is sent: the whole answer at once held 50 streams of 8,192
            # tokens of 4 KB (32 MB each) in the model server, 1.6 GB, while clients read.
            base, count = self._plan(text, extra)
            if not count:  # upstream's last message has an item of every sample, empty or not
                yield StreamStep(pieces=("",) * self._num_samples, scores=self._scores(0))
            for produced in range(count):
                token = self._token(base, produced)
                if self._fail_after is not None and produced >= self._fail_after:
                    raise cell_error(
                        self._fail_code,
                        f"TestLM failed after {produced} tokens (fail_after_tokens)",
                    )
                if self._delay:
                    await asyncio.sleep(self._delay)
                yield StreamStep(
                    pieces=(token,) * self._num_samples, scores=self._scores(produced + 1)
                )

    async def score(self, prefix: str, suffixes: list[str], extra: ExtraInputs) -> list[float]:
        with self._admitted():
            if self._score is not None:
                return [self._score for _ in suffixes]
            return [TOKEN_LOGP * len(split_tokens(suffix)) for suffix in suffixes]

    async def embed_text(self, text: str, extra: ExtraInputs) -> list[float]:
        with self._admitted():
            return unit_floats(self._dim, MODEL_PATH, text)

    async def gradient(
        self, prefix: str, suffix: str, extra: ExtraInputs
    ) -> tuple[list[float], dict[str, list[float]]]:
        (score,) = await self.score(prefix, [suffix], extra)
        return [score], {"embedding": [score * v for v in unit_floats(self._dim, prefix, suffix)]}
