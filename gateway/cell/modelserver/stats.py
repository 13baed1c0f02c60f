"""Per-method request statistics, reported in GetStatus like upstream's model server."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from saxml.protobuf import modelet_pb2

#: Rates and latencies cover this many recent seconds.
WINDOW_SECONDS = 60.0
_MAX_SAMPLES = 4096


@dataclass
class _Sample:
    at: float
    latency: float
    ok: bool


class MethodStats:
    def __init__(self, method: str) -> None:
        self.method = method
        self.pending = 0
        self._samples: deque[_Sample] = deque(maxlen=_MAX_SAMPLES)

    def started(self) -> float:
        self.pending += 1
        return time.monotonic()

    def finished(self, started: float, *, ok: bool) -> None:
        self.pending -= 1
        now = time.monotonic()
        self._samples.append(_Sample(at=now, latency=now - started, ok=ok))

    def to_proto(self) -> modelet_pb2.GetStatusResponse.MethodStats:
        now = time.monotonic()
        while self._samples and now - self._samples[0].at > WINDOW_SECONDS:
            self._samples.popleft()
        span = min(WINDOW_SECONDS, max(1.0, now - self._samples[0].at)) if self._samples else 1.0
        latencies = sorted(s.latency for s in self._samples if s.ok)
        errors = sum(1 for s in self._samples if not s.ok)
        stats = modelet_pb2.GetStatusResponse.MethodStats(
            method=self.method,
            pending_reqs=self.pending,
            errors_per_second=errors / span,
            successes_per_second=len(latencies) / span,
        )
        if latencies:
            stats.mean_latency_on_success_per_second = sum(latencies) / len(latencies)
            stats.p50_latency_on_success_per_second = _percentile(latencies, 0.50)
            stats.p95_latency_on_success_per_second = _percentile(latencies, 0.95)
            stats.p99_latency_on_success_per_second = _percentile(latencies, 0.99)
        return stats


def _percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
