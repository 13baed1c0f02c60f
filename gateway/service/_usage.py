"""What one call used, and how a finished call is counted: text in and out (characters, and
tokens where the model's SentencePiece tokenizer is configured), query cost, caller.

Sax answers with text, never token counts. The gateway therefore counts characters for every
model, and tokens (``gen_ai_client_token_usage``) only for models whose tokenizer the config
file names (``models: {ID: {tokenizer: FILE}}``), by encoding the text it sent and received,
as the OpenAI face's ``usage`` does. Models without one have no token series at all: a
character count in a token metric would mislead.

SaxGateway calls find their texts through ``DATA_METHODS``; OpenAIGateway calls report theirs
with `note_usage` (the servicer knows the model and texts only once the JSON is parsed).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from opentelemetry.trace import Span

from gateway.client import Client
from gateway.common.logs import current_call
from gateway.common.rpc import Context
from gateway.service._access import NAMED_METHODS, SAX_METHODS
from gateway.service._errors import request_id
from gateway.service._fields import with_slash
from gateway.service._metrics import GatewayMetrics
from gateway.service._stream import TextSoFar

if TYPE_CHECKING:  # the OpenAI package imports note_usage from here
    from gateway.service.openai._tokens import TokenCounter

_OK = grpc.StatusCode.OK
Texts = Callable[[Any], Sequence[str]]


def request_model(request: Any) -> str:
    """The model ID a SaxGateway request names, as the Sax client knows it: resource paths
    (``/v1/sax/test/lm:generate``) bind ``sax/test/lm``, bodies carry ``/sax/test/lm``, and
    both must count under one label (the router and the config file know the second)."""
    model = str(getattr(request, "model", ""))
    return with_slash(model) if model else model


def _none(_: Any) -> Sequence[str]:
    return ()


def _texts(response: Any) -> Sequence[str]:
    return [t.text for t in response.texts]


#: Model calls: gRPC method -> (input texts, output texts). A stream's output is its chunks.
_TEXTS: dict[str, tuple[Texts, Texts]] = {
    "Generate": (lambda r: (r.query,), _texts),
    "GenerateStream": (lambda r: (r.query,), _none),
    "Score": (lambda r: (r.prefix, *r.suffix), _none),
    "Embed": (lambda r: (r.text,), _none),
    "Gradient": (lambda r: (r.prefix, r.suffix), _none),
    "Classify": (_none, _texts),
    "TextToImage": (lambda r: (r.text,), _none),
    "EmbedImage": (_none, _none),
    "Detect": (lambda r: tuple(r.text), _none),
    "ImageToText": (lambda r: (r.text,), _texts),
    "Recognize": (_none, _texts),
    "MultimodalGenerate": (_none, _none),
    "MultimodalScore": (_none, _none),
    "MultimodalEmbed": (_none, _none),
    "ImageToImage": (_none, _none),
    "TextAndImageToImage": (lambda r: (r.text,), _none),
    "VideoToText": (lambda r: (r.text,), _texts),
    "VideoToToken": (_none, _none),
    "TokenToVideo": (_none, _none),
    "Custom": (_none, _none),
}
#: Model calls: gRPC method -> (gen_ai.operation.name, input texts, output texts). Operation
#: names are Sax's method names, as saxutil spells them and model ACLs name them
#: (`_access.SAX_METHODS`, the one table of them); a custom method's is Sax's service,
#: ``custom``, not the model's own method name: each model names its methods, and a label
#: must be one of a bounded set.
DATA_METHODS: dict[str, tuple[str, Texts, Texts]] = {
    method: ("custom" if method in NAMED_METHODS else SAX_METHODS[method], *texts)
    for method, texts in _TEXTS.items()
}
#: OpenAIGateway model calls -> gen_ai.operation.name, as the GenAI conventions name them.
#: The OpenAI operations that answer with text (embeddings answer with vectors).
_WRITING = frozenset({"text_completion", "chat"})
OPENAI_OPERATIONS = {
    "CreateCompletion": "text_completion",
    "CreateChatCompletion": "chat",
    "CreateResponse": "chat",  # a conversation in, a message out: a chat, as GenAI names it
    "CreateEmbedding": "embeddings",
}


@dataclass(frozen=True)
class Usage:
    """A call's model (its Sax ID) and texts, as its servicer saw them."""

    model_id: str
    inputs: Sequence[str]
    outputs: Sequence[str | TextSoFar]  # a stream's as it grows (read when the call ends)


_NO_MODEL = Usage("", (), ())


class CallRecord:
    """The call a task serves: caller, span, cost and usage so far; request ID on demand."""

    __slots__ = (
        "_context",
        "answered",
        "client",
        "client_label",
        "cost_ms",
        "span",
        "stream",
        "usage",
    )

    def __init__(self, context: Context, client: str | None, client_label: str) -> None:
        self._context: Context | None = context
        self.client = client
        """The client id Envoy authenticated (None: anonymous)."""
        self.client_label = client_label
        """``client`` as a metric label: a client the config names, "other" or "anonymous"."""
        self.cost_ms = 0
        self.span: Span | None = None
        self.usage: Usage | None = None
        self.stream: StreamText | None = None
        """A stream's chunk timing (server-streaming methods)."""
        self.answered = False
        """A stream's last message, a whole answer, went out (`note_answered`)."""

    @property
    def request_id(self) -> str | None:
        context = self._context
        return None if context is None else request_id(context) or None

    @property
    def trace(self) -> tuple[str, str] | None:
        span = self.span
        if span is None:
            return None
        ids = span.get_span_context()
        return (f"{ids.trace_id:032x}", f"{ids.span_id:016x}") if ids.is_valid else None

    def end(self) -> None:
        """The call is over: forget its context. Work the call started may outlive it (a
        shielded admin fetch, its done callbacks) and log in its context; grpc frees a
        finished call's metadata, and reading it then returns garbage or crashes the process
        (a SIGSEGV seen when a hung admin failed an ACL fetch after the call had ended)."""
        self._context = None


def note_usage(model_id: str, inputs: Sequence[str], outputs: Sequence[str | TextSoFar]) -> None:
    """Tells the telemetry what the current call sent to and got from ``model_id``. They are
    read when the call ends: ``outputs`` may be a list the servicer goes on filling as it
    streams (what a stream sent is counted however the stream ends)."""
    call = current_call.get()
    if isinstance(call, CallRecord):
        call.usage = Usage(model_id, inputs, outputs)


def note_answered() -> None:
    """Tells the telemetry the current stream's next message is its last and ends a whole
    answer. A client that leaves once it has it did not give up: the OpenAI SDKs close the
    connection at `data: [DONE]`, often before the stream's status reaches Envoy, which then
    resets the call; counted CANCELLED, a stream answered in full was a 499 in the metrics."""
    call = current_call.get()
    if isinstance(call, CallRecord):
        call.answered = True


def note_samples(texts: Sequence[TextSoFar]) -> None:
    """Tells the telemetry where the current stream (GenerateStream) keeps its samples' text,
    read when the call ends (the output tokens), which a copy of its own held twice."""
    call = current_call.get()
    if isinstance(call, CallRecord) and call.stream is not None:
        call.stream.samples = texts


def note_chunk() -> None:
    """Tells the telemetry the current stream sent a message with text now (the OpenAI face's
    streams, whose messages are already-encoded events)."""
    call = current_call.get()
    if isinstance(call, CallRecord) and call.stream is not None:
        call.stream.mark(time.perf_counter())


class StreamText:
    """A stream's output as it goes: chunk timing; for GenerateStream also characters and
    the samples' text, the servicer's own (`note_samples`)."""

    __slots__ = ("chars", "chunks", "first", "last", "samples")

    def __init__(self) -> None:
        self.first = self.last = 0.0
        self.chunks = self.chars = 0
        self.samples: Sequence[TextSoFar] = ()

    def mark(self, now: float) -> None:
        """A message with text was sent ``now``."""
        self.last = now
        self.first = self.first or now
        self.chunks += 1

    def add(self, now: float, deltas: Iterable[Any]) -> None:
        self.mark(now)
        for delta in deltas:
            self.chars += len(delta.text)


class Recorder:
    """Records finished calls of one method; label children are looked up once, then cached."""

    def __init__(
        self,
        method: str,
        metrics: GatewayMetrics | None,
        client: Client,
        tokens: TokenCounter | None,
    ) -> None:
        self.method = method
        self._metrics = metrics
        self._client = client
        self._tokens = tokens
        data = DATA_METHODS.get(method)
        self.data = data
        self.operation = data[0] if data else OPENAI_OPERATIONS.get(method)
        # Whether the method answers with text: embeddings and scores have no output tokens,
        # which an observed 0 would have passed off as a call that wrote nothing.
        self._writes = method == "GenerateStream" or (
            data[2] is not _none if data else self.operation in _WRITING
        )
        self._requests: dict[tuple[grpc.StatusCode, str], Any] = {}
        # (model label, error type) -> duration child.
        self._by_model: dict[tuple[str, str], Any] = {}
        # (model label, direction) -> characters child, made at the first characters counted:
        # a series at 0 for a model only ever refused (or "unknown") told of text it never had.
        self._chars: dict[tuple[str, str], Any] = {}
        # (model label, client label) -> cost child; input and output token children.
        self._costs: dict[tuple[str, str], Any] = {}
        self._token_children: dict[tuple[str, str], tuple[Any, Any | None]] = {}
        # `GatewayMetrics.forgotten` when the four above were last emptied: kept past a
        # model's `forget_model`, its children stayed in memory for good (~29 KB a model
        # published and unpublished, in a gateway that runs for weeks).
        self._forgotten = 0

    def _label(self, model_id: str) -> str:
        assert self._metrics is not None
        return self._metrics.model_label(model_id, self._client.is_serving(model_id))

    def _usage(self, request: Any, response: Any, stream: StreamText | None) -> Usage | None:
        if self.data is None:
            # An OpenAI call whose servicer noted no model (its body or model name was at
            # fault) is still timed, under "unknown"; other methods are no model calls.
            return _NO_MODEL if self.operation is not None else None
        _, inputs, outputs = self.data
        model_id = request_model(request)
        if type(request).__name__ == "_Malformed":
            return Usage(model_id, (), ())
        out: Sequence[str | TextSoFar]
        if stream is not None:
            out = stream.samples  # joined only if its tokens are counted
        else:
            out = outputs(response) if response is not None else ()
        return Usage(model_id, inputs(request), out)

    def finish(
        self,
        request: Any,
        response: Any,
        code: grpc.StatusCode,
        elapsed: float,
        call: CallRecord,
        stream: StreamText | None = None,
    ) -> None:
        m = self._metrics
        if m is None:
            return
        child = self._requests.get((code, call.client_label))
        if child is None:
            child = self._requests[(code, call.client_label)] = m.requests.labels(
                self.method, code.name, call.client_label
            )
        m.count(child)
        usage = call.usage or self._usage(request, response, stream)
        if usage is None or self.operation is None:
            return
        op, model = self.operation, self._label(usage.model_id)
        if self._forgotten != m.forgotten:
            self._forgotten = m.forgotten
            self._by_model.clear()
            self._chars.clear()
            self._costs.clear()
            self._token_children.clear()
        error = "" if code is _OK else code.name
        duration = self._by_model.get((model, error))
        if duration is None:
            duration = self._by_model[(model, error)] = m.request_duration.labels(op, model, error)
        m.observe(duration, elapsed)
        # A stream that failed or whose client left counts what it sent, as one that ended
        # well does (under the same labels: the failure is in requests and error_type).
        out_chars = stream.chars if stream is not None else sum(map(len, usage.outputs))
        # Input, as tokens below, of the calls a model answered: a call refused before any
        # model saw it (not its client's model, over a quota, unpublished, overloaded) counted
        # its text as sent to the model, so a flood of 429s inflated the characters in.
        answered = code is _OK or out_chars > 0
        if answered and (chars := sum(map(len, usage.inputs))):
            self._count_chars(model, "input", chars)
        if out_chars:
            self._count_chars(model, "output", out_chars)
        key = (model, call.client_label)
        if call.cost_ms:
            cost = self._costs.get(key)
            if cost is None:
                cost = self._costs[key] = m.query_cost.labels(op, model, call.client_label)
            m.count(cost, call.cost_ms)
        # Tokens of the calls whose model answered: every successful one, and every stream
        # that sent text before it failed or was cancelled (the client used those tokens).
        if answered and self._tokens is not None and self._tokens.exact(usage.model_id):
            tokens = self._token_children.get(key)
            if tokens is None:
                output = (
                    m.token_usage.labels(op, model, "output", call.client_label)
                    if self._writes
                    else None
                )
                tokens = self._token_children[key] = (
                    m.token_usage.labels(op, model, "input", call.client_label),
                    output,
                )

            def observed(tokens_in: int, tokens_out: int) -> None:
                m.observe(tokens[0], tokens_in)
                if tokens[1] is not None:
                    m.observe(tokens[1], tokens_out)

            # A long text is counted in a worker thread, observed when counted.
            outputs = [str(text) for text in usage.outputs]
            self._tokens.counted(usage.model_id, usage.inputs, outputs, observed)

    def _count_chars(self, model: str, direction: str, chars: int) -> None:
        assert self._metrics is not None and self.operation is not None
        child = self._chars.get((model, direction))
        if child is None:
            child = self._chars[(model, direction)] = self._metrics.text_characters.labels(
                self.operation, model, direction
            )
        self._metrics.count(child, chars)

    def stream_timing(
        self, request: Any, stream: StreamText, started: float, call: CallRecord
    ) -> None:
        if self._metrics is None or self.operation is None or not stream.chunks:
            return
        model_id = call.usage.model_id if call.usage is not None else request_model(request)
        m, op, model = self._metrics, self.operation, self._label(model_id)
        m.observe(m.time_to_first_token.labels(op, model), stream.first - started)
        if stream.chunks > 1:
            per_chunk = (stream.last - stream.first) / (stream.chunks - 1)
            m.observe(m.time_per_output_token.labels(op, model), per_chunk)
