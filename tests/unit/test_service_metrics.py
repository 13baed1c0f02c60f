"""The gateway's metric families: batched writes equal direct ones, and model labels stay
bounded."""

from __future__ import annotations

from prometheus_client import generate_latest

from gateway.service._metrics import MAX_MODELS, UNKNOWN_MODEL, GatewayMetrics

VALUES = [0.0, 0.0004, 0.001, 0.003, 0.02, 0.5, 1.28, 3.0, 99.0, 1e6]


def test_flushed_observations_equal_direct_ones() -> None:
    batched, direct = GatewayMetrics(), GatewayMetrics()
    labels = ("lm.generate", "/sax/test/lm", "")
    for value in VALUES:
        batched.observe(batched.request_duration.labels(*labels), value)
        direct.request_duration.labels(*labels).observe(value)
        batched.count(batched.requests.labels("Generate", "OK", "team-a"), 2)
        direct.requests.labels("Generate", "OK", "team-a").inc(2)
    batched.add_level(batched.in_flight.labels("Generate"), 3)
    batched.add_level(batched.in_flight.labels("Generate"), -1)
    direct.in_flight.labels("Generate").set(2)
    batched.flush()
    batched.flush()  # nothing new: nothing changes
    assert _without_created(batched) == _without_created(direct)


def _without_created(metrics: GatewayMetrics) -> list[str]:
    lines = generate_latest(metrics.registry).decode().splitlines()
    return [line for line in lines if "_created" not in line]


def test_unknown_or_too_many_models_share_one_label() -> None:
    metrics = GatewayMetrics()
    assert metrics.model_label("/sax/test/typo", known=False) == UNKNOWN_MODEL
    assert metrics.model_label("/sax/test/lm", known=True) == "/sax/test/lm"
    assert metrics.model_label("/sax/test/lm", known=False) == "/sax/test/lm"  # seen before
    for i in range(MAX_MODELS):
        metrics.model_label(f"/sax/test/m{i}", known=True)
    assert metrics.model_label("/sax/test/one-too-many", known=True) == UNKNOWN_MODEL


def test_replicas_of_an_unknown_model_make_no_series() -> None:
    metrics = GatewayMetrics()
    metrics.set_replicas("/sax/test/never", ())
    metrics.set_replicas("/sax/test/lm", ("10.0.0.1:1", "10.0.0.2:1"))
    metrics.set_replicas("/sax/test/lm", ())
    text = generate_latest(metrics.registry).decode()
    assert "/sax/test/never" not in text
    assert 'saxgw_model_replicas{gen_ai_request_model="/sax/test/lm"} 0.0' in text
    assert 'saxgw_address_changes_total{gen_ai_request_model="/sax/test/lm"} 2.0' in text
