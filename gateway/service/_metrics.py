"""The gateway's Prometheus metrics: one table of families, and the label rules.

Names follow the OpenTelemetry GenAI semantic conventions where one fits
(``gen_ai.server.request.duration`` becomes ``gen_ai_server_request_duration_seconds``; the
attributes ``gen_ai.operation.name``, ``gen_ai.request.model`` and ``error.type`` become
labels with underscores); the rest are ``saxgw_*``. docs/operations.md lists them all.

Label values are bounded: methods and status codes are finite, and a model name becomes a
label only once the Sax admin has confirmed the model is published (``Client.is_serving``),
up to ``MAX_MODELS`` of them; anything else is counted under ``"unknown"``. A model gives its
label back (``forget_model``) once the admin says it is no longer published (its watch ended
with NOT_FOUND, or this gateway unpublished it), or, when the cap is reached, once it has had
no replicas and no calls for ``IDLE_S``: versioned model IDs published and unpublished over
weeks would otherwise fill the cap, and every later model would be counted as unknown.

With ``TelemetrySettings.metrics_dir`` set, prometheus_client's multiprocess mode keeps every
value in a per-process file there; the ops server (gateway.ops) adds the files of all gateway
processes up into one scrape.
"""

from __future__ import annotations

import bisect
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.metrics import MetricWrapperBase

from gateway.common import metricsfiles
from gateway.service import _metricstore
from gateway.service._gates import WaitCount

#: How often calls' counts reach the exported values (seconds); see ``GatewayMetrics.flush``.
FLUSH_INTERVAL_S = 1.0
#: Distinct model labels at most; more models than this are counted as "unknown".
MAX_MODELS = 200
UNKNOWN_MODEL = "unknown"
#: A labelled model without replicas and without calls this long (seconds) gives its label up
#: to a new model when the cap is reached.
IDLE_S = 600.0
#: Labels the cells' listings may take for models no call has brought into this process
#: (`GatewayMetrics.note_listing`): half the cap, so that calls always find room.
LISTED_MAX = MAX_MODELS // 2

_OP = "gen_ai_operation_name"
_MODEL = "gen_ai_request_model"
_ERROR = "error_type"
_TOKEN_TYPE = "gen_ai_token_type"
#: The caller Envoy authenticated (#14's identity header): a client id the config file names,
#: "other" for any other id (say a JWT subject), "anonymous" without authentication.
_CLIENT = "client"

# Buckets: the conventions' advice, with finer steps below 10 ms for CPU stand-in models.
_DURATION_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24,
    20.48, 40.96, 81.92,
)  # fmt: skip
_TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
# The conventions' advice for gen_ai.client.token.usage.
_TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
_TPOT_BUCKETS = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
)  # fmt: skip


def _nothing_serves(model_id: str) -> bool:
    return False


def use_directory(path: str) -> None:
    """Keeps this process's metrics in files under ``path`` (prometheus_client's multiprocess
    mode), to be added up with the other gateway processes' by the ops server.

    Must run before the first metric is made. prometheus_client finds the directory through
    its documented environment variable, so this sets it (it reads nothing back from it). Files
    are named by `metricsfiles.process_id`, not the bare pid: gateways in several containers
    may share the directory. A full or read-only directory costs this process its metrics,
    not its calls (`_metricstore`)."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    _metricstore.install()
    metricsfiles.join(path)
    values.ValueClass = values.MultiProcessValue(metricsfiles.process_id)  # type: ignore[no-untyped-call]


class GatewayMetrics:
    """Every metric family the gateway exports, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.request_duration = Histogram(
            "gen_ai_server_request_duration",
            "Time from the gateway receiving a model call to its last byte (GenAI semconv).",
            [_OP, _MODEL, _ERROR],
            unit="seconds",
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.time_to_first_token = Histogram(
            "gen_ai_server_time_to_first_token",
            "Time from the gateway receiving a stream call to its first text chunk.",
            [_OP, _MODEL],
            unit="seconds",
            buckets=_TTFT_BUCKETS,
            registry=r,
        )
        self.time_per_output_token = Histogram(
            "gen_ai_server_time_per_output_token",
            "Per stream: time between text chunks after the first (Sax streams chunks, not "
            "tokens).",
            [_OP, _MODEL],
            unit="seconds",
            buckets=_TPOT_BUCKETS,
            registry=r,
        )
        self.token_usage = Histogram(
            "gen_ai_client_token_usage",
            "Tokens per model call, input and output (GenAI semconv), counted with the model's "
            "configured SentencePiece tokenizer; models without one have no samples.",
            [_OP, _MODEL, _TOKEN_TYPE, _CLIENT],
            buckets=_TOKEN_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "saxgw_requests",
            "gRPC calls the gateway finished, by method, status code and client.",
            ["grpc_method", "grpc_code", _CLIENT],
            registry=r,
        )
        self.in_flight = Gauge(
            "saxgw_requests_in_flight",
            "Unary gRPC calls being served now.",
            ["grpc_method"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.streams_open = Gauge(
            "saxgw_streams_open",
            "Server-streaming gRPC calls open now.",
            ["grpc_method"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.text_characters = Counter(
            "saxgw_text_characters",
            "Characters of text in model calls' inputs and outputs.",
            [_OP, _MODEL, "direction"],
            registry=r,
        )
        self.query_cost = Counter(
            "saxgw_query_cost_tpu_milliseconds",
            "Accelerator time model servers reported for the gateway's calls (query_cost_v0).",
            [_OP, _MODEL, _CLIENT],
            registry=r,
        )
        self.queued = Gauge(
            "saxgw_model_calls_queued",
            "Model calls waiting in the gateway's queue for a slot of the model "
            "(quotas.model), summed over the stack's gateway processes.",
            [_MODEL],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.replicas = Gauge(
            "saxgw_model_replicas",
            "Serving replicas of a published model, as the gateway's address table (or, for a "
            "model it has not served, its cell's listing) last saw them.",
            [_MODEL],
            multiprocess_mode="livemostrecent",
            registry=r,
        )
        self.address_changes = Counter(
            "saxgw_address_changes",
            "Changes of a model's serving address set reported by the Sax admin to this "
            "process (each process watching the model counts each change).",
            [_MODEL],
            registry=r,
        )
        self.admin_rpcs = Counter(
            "saxgw_sax_admin_rpcs",
            "RPCs sent to Sax admin servers (every attempt, WatchLoc long polls included).",
            ["sax_method"],
            registry=r,
        )
        self.admin_up = Gauge(
            "saxgw_sax_admin_up",
            "Whether a cell's Sax admin answered the gateway's last health probe (1) or not "
            "(0), by cell.",
            ["sax_cell"],
            multiprocess_mode="livemostrecent",
            registry=r,
        )
        self.failovers = Counter(
            "saxgw_sax_failovers",
            "Sax data calls that failed on one replica and went on to another.",
            [_MODEL, "grpc_code"],
            registry=r,
        )
        self.retries = Counter(
            "saxgw_sax_retries",
            "Rounds in which every replica tried failed, so the call backed off and retried.",
            [_MODEL],
            registry=r,
        )
        self.starts = Counter(
            "saxgw_gateway_starts",
            "Gateway processes started, each counting its own start: one per process at first, "
            "then one more for each restart.",
            registry=r,
        )
        # Labelled models with replicas (or calls since they had none): the hot path's one
        # lookup. Those without, by when they last had replicas or calls: still labelled,
        # given up to a new model once idle for IDLE_S and the cap is reached.
        self._models: set[str] = set()
        self._idle: dict[str, float] = {}
        # Models labelled from a cell's listing alone (no call yet), by the replicas written.
        self._listed: dict[str, int] = {}
        # Each labelled model's address set as last reported: a change is counted once.
        self._addresses: dict[str, frozenset[str]] = {}
        # How many models `forget_model` has dropped: callers that keep children of their
        # own (`Recorder`) drop them when it changes, or a forgotten model's would stay.
        self.forgotten = 0
        # Every family labelled by model (forget_model drops their series), found rather than
        # listed: a family added later cannot be missed.
        self._by_model: list[Any] = [
            f
            for f in vars(self).values()
            if isinstance(f, MetricWrapperBase) and _MODEL in f._labelnames
        ]
        # Calls are added up here and written out by flush(): one write per label set and
        # second instead of several per call (in multiprocess mode each write is a locked
        # mmap store, which would otherwise cost several percent of the gateway's CPU).
        self._counts: dict[Any, float] = {}
        self._histograms: dict[Any, list[float]] = {}
        self._levels: dict[Any, int] = {}
        self._written_levels: dict[Any, int] = {}
        # Calls waiting for a slot, by model ID (`queues`): labelled at each flush, as the
        # model is then (its first call here may wait before the process watches it, and
        # one may still wait once it is unpublished). A model without any goes at the flush.
        self._waiting: dict[str, WaitCount] = {}
        self._serving: Callable[[str], bool] = _nothing_serves
        # Each label's calls waiting as last written.
        self._queued_written: dict[str, int] = {}

    def count(self, child: Any, amount: float = 1.0) -> None:
        """Adds ``amount`` to a counter child (``family.labels(...)``) at the next flush."""
        self._counts[child] = self._counts.get(child, 0.0) + amount

    def observe(self, child: Any, value: float) -> None:
        """Observes ``value`` in a histogram child at the next flush."""
        acc = self._histograms.get(child)
        if acc is None:
            # [sum, count in bucket 0, bucket 1, ...], buckets as the child keeps them.
            acc = self._histograms[child] = [0.0] * (len(child._upper_bounds) + 1)
        acc[0] += value
        acc[1 + bisect.bisect_left(child._upper_bounds, value)] += 1

    def add_level(self, child: Any, delta: int) -> None:
        """Moves a gauge child (calls in flight) by ``delta``; written at the next flush."""
        self._levels[child] = self._levels.get(child, 0) + delta

    def flush(self) -> None:
        """Writes what calls added up since the last flush into the exported values."""
        counts, self._counts = self._counts, {}
        for child, amount in counts.items():
            child.inc(amount)
        histograms, self._histograms = self._histograms, {}
        for child, acc in histograms.items():
            # What Histogram.observe does for each value, once per bucket: the per-bucket
            # (non-cumulative) counts and the sum (prometheus_client 0.26's internals).
            child._sum.inc(acc[0])
            for bucket, n in zip(child._buckets, acc[1:], strict=True):
                if n:
                    bucket.inc(n)
        for child, level in self._levels.items():
            if self._written_levels.get(child) != level:
                child.set(level)
                self._written_levels[child] = level
        if self._waiting or self._queued_written:
            self._flush_queues()

    def _flush_queues(self) -> None:
        waiting: dict[str, int] = {}
        for model_id, level in list(self._waiting.items()):
            if not level.calls:  # no call holds it (each holds one of its calls)
                del self._waiting[model_id]
                continue
            label = self.model_label(model_id, self._serving(model_id))
            waiting[label] = waiting.get(label, 0) + level.calls
        # After the labelling, which may have forgotten a model (the cap): its series stays out.
        totals = dict.fromkeys(self._queued_written, 0) | waiting
        for label, total in totals.items():
            if self._queued_written.get(label) != total:
                self.queued.labels(label).set(total)
                self._queued_written[label] = total

    def queues(self, serving: Callable[[str], bool]) -> Callable[[str], WaitCount]:
        """The model gates' count of their waiting calls (`_gates.WaitCounts`): a call asks
        for its model's as it begins to wait (never one that finds a free slot). ``serving``
        tells a published model (``Client.is_serving``): the calls are labelled as every
        per-model family's, at each flush. A model's series appears at its first wait that
        outlasts a flush."""
        self._serving = serving
        return self._level

    def _level(self, model_id: str) -> WaitCount:
        level = self._waiting.get(model_id)
        if level is None:
            level = self._waiting[model_id] = WaitCount()
        return level

    def model_label(self, model_id: str, known: bool) -> str:
        """``model_id`` if it may be a label (published, and within the cap), else unknown."""
        if model_id in self._models:
            return model_id
        return self._label_slow(model_id, known)

    def _label_slow(self, model_id: str, known: bool) -> str:
        if model_id in self._idle:
            self._idle[model_id] = time.monotonic()  # a call: not idle
            return model_id
        if model_id in self._listed:
            if known:  # this process watches it now: its watch takes over
                del self._listed[model_id]
                self._models.add(model_id)
            # Else a call that never reached the model (refused, or cancelled while queued):
            # no watch would tell this process it is gone, the listing still does.
            return model_id
        if not known:
            return UNKNOWN_MODEL
        if self._labelled() >= MAX_MODELS:
            self._forget_idle()
            if self._labelled() >= MAX_MODELS and self._listed:
                self.forget_model(next(iter(self._listed)))  # a call comes first
            if self._labelled() >= MAX_MODELS:
                return UNKNOWN_MODEL
        self._models.add(model_id)
        return model_id

    def _labelled(self) -> int:
        return len(self._models) + len(self._idle) + len(self._listed)

    def _forget_idle(self) -> None:
        """Gives up the labels of models idle for ``IDLE_S`` (no replicas, no calls)."""
        oldest = time.monotonic() - IDLE_S
        for model_id in [m for m, since in self._idle.items() if since <= oldest]:
            self.forget_model(model_id)

    def set_replicas(self, model_id: str, addresses: Sequence[str]) -> None:
        """Records a model's new address set (only models already labelled, or serving)."""
        label = self.model_label(model_id, known=bool(addresses))
        if label == UNKNOWN_MODEL:
            return
        if addresses:
            self._idle.pop(label, None)
            self._models.add(label)
        elif label in self._models:
            self._models.discard(label)
            self._idle[label] = time.monotonic()
        self.replicas.labels(label).set(len(addresses))
        # A report of the set it had (a new watch of it: after a change made through this
        # gateway, or a watch that was cut short and renewed) changes nothing; nor does the
        # first report this process has of the model (its first call, or its first since a
        # restart, in each process), the set it starts from.
        reported = frozenset(addresses)
        known = self._addresses.get(label)
        if known != reported:
            self._addresses[label] = reported
            if known is not None:
                self.address_changes.labels(label).inc()

    def note_listing(self, cell: str, replicas: Mapping[str, int]) -> None:
        """Each model published in ``cell`` and its replicas, as the cell's listing says (the
        health probe's, every few seconds): the series of a model no call has brought into
        this process's address table, which had none (a model never called here, and every
        model after a restart until its first call). A model the process watches keeps what
        its watch reports; listed models take at most `LISTED_MAX` labels, and give theirs up
        to a call at the cap."""
        prefix = cell + "/"
        for model_id in [m for m in self._listed if m.startswith(prefix) and m not in replicas]:
            self.forget_model(model_id)  # unpublished
        for model_id, count in replicas.items():
            if model_id in self._models or model_id in self._idle:
                continue  # a call labelled it: its watch reports its replicas
            if model_id not in self._listed and (
                len(self._listed) >= LISTED_MAX or self._labelled() >= MAX_MODELS
            ):
                continue
            if self._listed.get(model_id) != count:
                self._listed[model_id] = count
                self.replicas.labels(model_id).set(count)

    def set_admin_up(self, cell: str, up: bool) -> None:
        """Records whether ``cell``'s admin answered the health probe."""
        self.admin_up.labels(cell).set(1 if up else 0)

    def forget_cell(self, cell: str) -> None:
        """``cell`` is gone from SAX_ROOT: its series leaves the scrape (with a metrics
        directory, through the NaN tombstone, as `forget_model`'s replicas gauge)."""
        gauge: Any = self.admin_up._metrics.get((cell,))
        if gauge is not None:
            gauge.set(math.nan)
            with self.admin_up._lock:
                _metricstore.release([self.admin_up._metrics.pop((cell,))])

    def forget_model(self, model_id: str) -> None:
        """The model is gone (no longer published): frees its label for another model and
        drops its series from this process's registry, so that a model published anew is
        not counted as unknown once ``MAX_MODELS`` models have come and gone.

        Single-process, its series leave the exposition (a deleted entity's counters may go;
        a model published again under the name starts them from 0, which ``rate`` takes as a
        reset). With a metrics directory, prometheus_client cannot delete a value from a
        process's file: its gauges (replicas, calls queued) are set to NaN first, which the
        ops server drops from the scrape (``gateway.ops``), while counters and histograms
        keep their totals there (they must never go backwards), frozen. Calls still waiting
        in the model's queue count on, from the next flush, under the label it has then."""
        self._addresses.pop(model_id, None)
        self._queued_written.pop(model_id, None)
        if model_id in self._models:
            self._models.discard(model_id)
        elif self._idle.pop(model_id, None) is None and self._listed.pop(model_id, None) is None:
            return  # never labelled (a name that was never published): no series to drop
        self.forgotten += 1
        dropped = []
        for family in self._by_model:
            position = family._labelnames.index(_MODEL)
            with family._lock:
                for key in [k for k in family._metrics if k[position] == model_id]:
                    child = family._metrics.pop(key)
                    if family._type == "gauge":
                        child.set(math.nan)  # the tombstone a multiprocess scrape leaves out
                    dropped.append(child)
        _metricstore.release(dropped)
