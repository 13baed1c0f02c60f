"""Generation shared by completions, chat and the Responses API: a resolved request (`Job`),
one streamed prompt cut at its stop strings and shaped by the request's `Reply`, and
OpenAI's finish reason. The servicer (`_servicer`) admits, deadlines and frames the calls."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, NamedTuple

from gateway.client import CallOptions, Client
from gateway.common.closing import aclose
from gateway.common.errors import InternalError
from gateway.service import _fields as f
from gateway.service._stream import DeltaTracker, TextSoFar
from gateway.service._usage import note_chunk
from gateway.service.openai import _requests as rq
from gateway.service.openai import _responses as rs
from gateway.service.openai._stops import StopScanner
from gateway.service.openai._tokens import TokenCounter


class Job(NamedTuple):
    """A completions, chat or responses request, resolved: what `_complete` and `_stream`
    serve."""

    shape: rs.Reply
    model: str  # the Sax model ID
    prompts: Sequence[str]
    sampling: rq.Sampling
    stops: Sequence[str]


def finish_reason(
    tokens: TokenCounter, model: str, text: str, stopped: bool, steps: int | None, limit: int | None
) -> str:
    """OpenAI's finish_reason: "length" when the text has ``max_tokens`` tokens (counted by
    the tokenizer, else by streamed decoding steps), otherwise "stop"."""
    if stopped or limit is None:
        return "stop"
    count = tokens.count(model, text)
    count = steps if count is None else count
    return "length" if count is not None and count >= limit else "stop"


async def stream_prompt(
    client: Client,
    tokens: TokenCounter,
    job: Job,
    prompt: str,
    first: int,
    options: CallOptions,
    texts: list[TextSoFar],
) -> AsyncIterator[list[dict[str, Any]]]:
    """Streams one prompt of ``job``: lists of events of its choices (numbered from
    ``first``), cut at the stop strings. ``texts`` gets a slot per choice (``texts[first +
    i]``) that holds the choice's text as it is sent, so that however the stream ends (its
    model failed, its client left) the call's usage, read when the call ends, has what went
    out."""
    shape, model, _, sampling, stops = job
    n = sampling.n
    tracker = DeltaTracker(keep_text=False)  # `texts` holds what was sent
    scanners = [StopScanner(stops, kept_stops(sampling)) for _ in range(n)]
    steps = [0] * n
    texts.extend(TextSoFar() for _ in range(n))
    seen: set[int] = set()
    counted = False  # whether a message has said how many samples the model returns
    texted = False  # whether the chunks about to be yielded carry text (telemetry)

    def piece(i: int, text: str) -> list[dict[str, Any]]:
        nonlocal texted
        texted = texted or bool(text)
        # A choice's opening events (a chat's role chunk) go out with its first text.
        opening = shape.opening(first + i) if i not in seen else []
        seen.add(i)
        texts[first + i].add(text)
        return [*opening, *shape.delta(first + i, text)] if text else opening

    stream = client.lm_generate_stream(model, prompt, options)
    try:
        async for items in stream:
            if items and not counted:
                # Sax's messages carry every sample: too few is the caller's n, refused
                # as the whole answer refuses it (before any event of the first prompt).
                # A message without items says nothing about them.
                check_samples(model, len(items), n)
                counted = True
            chunks: list[dict[str, Any]] = []
            for delta in tracker.feed(items):
                i = delta.index
                if i >= n or scanners[i].stopped:
                    continue
                steps[i] += 1
                chunks += piece(i, scanners[i].feed(delta.text, delta.backtrack))
                if scanners[i].stopped:
                    chunks += shape.finished(first + i, "stop")
            if texted:
                texted = False
                note_chunk()
            if chunks:
                yield chunks
            if all(s.stopped for s in scanners):
                break  # every choice hit a stop string: closing the stream cancels Sax
    finally:
        await aclose(stream)  # also on client disconnect: cancels the Sax call
    if not counted:
        # A stream that ended with no sample at all: a 200 with an empty text that "stop"ped,
        # where the same answer unstreamed is this 500 (the model's failure passed for its
        # answer).
        check_samples(model, 0, n)
    chunks = []
    for i in range(n):  # every choice ends once, even a sample that stayed empty
        if not scanners[i].stopped:
            chunks += piece(i, scanners[i].flush())  # which may hold a stop string
            sent, stopped = str(texts[first + i]), scanners[i].stopped
            reason = finish_reason(tokens, model, sent, stopped, steps[i], sampling.max_tokens)
            chunks += shape.finished(first + i, reason)
    if texted:
        note_chunk()
    if chunks:
        yield chunks


def kept_stops(sampling: rq.Sampling) -> tuple[str, ...]:
    """The stop strings a text keeps at its end: the request's own, if it asked for them
    (vLLM's ``include_stop_str_in_output``), never a model's configured ones (vLLM's
    end-of-sequence tokens, which it leaves out)."""
    return sampling.stop if sampling.include_stop else ()


def check_samples(model: str, samples: int, n: int) -> None:
    """INVALID_ARGUMENT on ``n`` if the model returns fewer than ``n`` samples per prompt;
    INTERNAL if it returns none: no ``n`` would do, and a caller that set none was told
    'n: M returns 0 sample(s) per prompt', a 400 to mend a request that had nothing wrong."""
    if not samples:
        raise InternalError(f"{model} answered the prompt with no sample")
    if samples < n:
        raise f.invalid("n", f"{model} returns {samples} sample(s) per prompt")
