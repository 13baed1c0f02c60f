"""The gateway's metric families: batched writes equal direct ones, and model labels stay
bounded."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.metrics import MetricWrapperBase

from gateway.service import _metrics
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
    # One change: the two replicas first reported are where the process starts from.
    assert 'saxgw_address_changes_total{gen_ai_request_model="/sax/test/lm"} 1.0' in text


def test_a_processs_first_report_of_a_models_addresses_is_no_change() -> None:
    # Each gateway process counted the set its watch first reported as a change, which none
    # was: after a restart of two gateway processes, 3 models called counted 6 address changes
    # with none at all, and a dashboard's address changes rose at every deploy.
    metrics = GatewayMetrics()
    metrics.set_replicas("/sax/test/lm", ("10.0.0.1:1",))
    metrics.set_replicas("/sax/test/lm", ("10.0.0.1:1",))
    lines = generate_latest(metrics.registry).decode().splitlines()
    assert [line for line in lines if line.startswith("saxgw_address_changes_total")] == []
    assert 'saxgw_model_replicas{gen_ai_request_model="/sax/test/lm"} 1.0' in lines
    # What it reports next is a change from that set: a replica lost, then back.
    metrics.set_replicas("/sax/test/lm", ())
    metrics.set_replicas("/sax/test/lm", ("10.0.0.1:1",))
    text = generate_latest(metrics.registry).decode()
    assert 'saxgw_address_changes_total{gen_ai_request_model="/sax/test/lm"} 2.0' in text


def test_listed_models_have_replicas_series_and_leave_room_for_called_ones() -> None:
    # A cell's listing gives its models their replicas series before any call; it takes at
    # most half the labels, and a call at the cap takes one of those back.
    metrics = GatewayMetrics()
    listing = {f"/sax/test/m{i:03}": 1 for i in range(MAX_MODELS)}
    metrics.note_listing("/sax/test", listing)
    lines = generate_latest(metrics.registry).decode().splitlines()
    listed = [line for line in lines if line.startswith("saxgw_model_replicas{")]
    assert len(listed) == _metrics.LISTED_MAX
    assert 'saxgw_model_replicas{gen_ai_request_model="/sax/test/m000"} 1.0' in listed
    # A call of a listed model: labelled as any; its watch's first report is no change.
    metrics.set_replicas("/sax/test/m000", ("10.0.0.1:1",))
    assert metrics.model_label("/sax/test/m000", known=False) == "/sax/test/m000"
    for i in range(MAX_MODELS - _metrics.LISTED_MAX):
        assert metrics.model_label(f"/sax/test/called{i}", known=True) != UNKNOWN_MODEL
    assert metrics.model_label("/sax/test/one-more", known=True) == "/sax/test/one-more"
    # Unpublished: gone from the listing, its series goes (m000 is watched: its watch says).
    metrics.note_listing("/sax/test", {"/sax/test/m000": 1})
    lines = generate_latest(metrics.registry).decode().splitlines()
    assert [line for line in lines if line.startswith("saxgw_model_replicas{")] == [
        'saxgw_model_replicas{gen_ai_request_model="/sax/test/m000"} 1.0'
    ]
    assert not any(line.startswith("saxgw_address_changes_total{") for line in lines)


def test_a_gone_model_frees_its_label_for_a_new_one_at_the_cap() -> None:
    # Versioned models published and unpublished over weeks filled the cap for good: every
    # later model was counted as unknown until the gateway restarted.
    metrics = GatewayMetrics()
    for i in range(MAX_MODELS):
        metrics.set_replicas(f"/sax/test/lm-v{i}", ("10.0.0.1:1",))
    assert metrics.model_label("/sax/test/lm-new", known=True) == UNKNOWN_MODEL
    metrics.forget_model("/sax/test/lm-v0")
    assert metrics.model_label("/sax/test/lm-new", known=True) == "/sax/test/lm-new"
    assert metrics.model_label("/sax/test/lm-newer", known=True) == UNKNOWN_MODEL


def test_idle_models_give_their_labels_up_at_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    metrics = GatewayMetrics()
    for i in range(MAX_MODELS):
        metrics.set_replicas(f"/sax/test/lm-v{i}", ("10.0.0.1:1",))
    metrics.set_replicas("/sax/test/lm-v0", ())  # no replicas from now on
    metrics.set_replicas("/sax/test/lm-v1", ())
    clock[0] += _metrics.IDLE_S
    assert metrics.model_label("/sax/test/lm-v1", known=False) == "/sax/test/lm-v1"  # a call
    clock[0] += 1
    assert metrics.model_label("/sax/test/lm-new", known=True) == "/sax/test/lm-new"
    assert metrics.model_label("/sax/test/lm-newer", known=True) == UNKNOWN_MODEL
    text = generate_latest(metrics.registry).decode().splitlines()
    assert [line for line in text if "/sax/test/lm-v0" in line] == []
    assert 'saxgw_model_replicas{gen_ai_request_model="/sax/test/lm-v1"} 0.0' in text


def test_a_gone_models_series_leave_the_registry() -> None:
    metrics = GatewayMetrics()
    label = metrics.model_label("/sax/test/lm", known=True)
    metrics.set_replicas(label, ("10.0.0.1:1",))
    metrics.count(metrics.text_characters.labels("lm.generate", label, "input"), 5)
    metrics.count(metrics.text_characters.labels("lm.generate", "/sax/test/kept", "input"), 1)
    metrics.flush()
    metrics.set_replicas(label, ())
    metrics.forget_model(label)
    lines = generate_latest(metrics.registry).decode().splitlines()
    assert [line for line in lines if "/sax/test/lm" in line and "kept" not in line] == []
    kept = 'saxgw_text_characters_total{direction="input",gen_ai_operation_name="lm.generate",'
    assert kept + 'gen_ai_request_model="/sax/test/kept"} 1.0' in lines


def _queued(metrics: GatewayMetrics, model: str) -> float | None:
    return metrics.registry.get_sample_value(
        "saxgw_model_calls_queued", {"gen_ai_request_model": model}
    )


def test_calls_waiting_for_a_slot_are_written_at_the_flush_under_the_models_label() -> None:
    published = {"/sax/test/lm"}
    metrics = GatewayMetrics()
    waits = metrics.queues(published.__contains__)
    queue = waits("/sax/test/lm")
    queue.calls += 2  # two calls begin to wait: no write yet
    assert _queued(metrics, "/sax/test/lm") is None
    metrics.flush()
    assert _queued(metrics, "/sax/test/lm") == 2
    queue.calls -= 1
    assert waits("/sax/test/lm") is queue  # one count per model while calls wait
    waits("/sax/test/typo").calls += 1  # no model the admin reported: unknown
    metrics.flush()
    assert _queued(metrics, "/sax/test/lm") == 1
    assert _queued(metrics, UNKNOWN_MODEL) == 1
    assert "/sax/test/typo" not in generate_latest(metrics.registry).decode()
    # Unpublished while a call still waits: its series goes, and the call counts as unknown
    # until it ends (the series would otherwise be back at 0, or -1 in a metrics directory).
    published.clear()
    metrics.forget_model("/sax/test/lm")
    metrics.flush()
    assert _queued(metrics, "/sax/test/lm") is None
    assert _queued(metrics, UNKNOWN_MODEL) == 2
    queue.calls -= 1
    waits("/sax/test/typo").calls -= 1
    metrics.flush()
    assert _queued(metrics, "/sax/test/lm") is None
    assert _queued(metrics, UNKNOWN_MODEL) == 0
    assert metrics._waiting == {}  # models with no call waiting are not kept
    # Published anew: its series is back, from its calls waiting now.
    published.add("/sax/test/lm")
    renewed = waits("/sax/test/lm")
    assert renewed is not queue and renewed.calls == 0
    renewed.calls += 1
    metrics.flush()
    assert _queued(metrics, "/sax/test/lm") == 1


def test_a_models_first_calls_wait_as_unknown_until_the_process_knows_it() -> None:
    # A process may queue a model's calls before it has served one (the stack's other process
    # runs them): they count as unknown, then under the model once its watch has reported it.
    published: set[str] = set()
    metrics = GatewayMetrics()
    metrics.queues(published.__contains__)("/sax/test/lm").calls += 1
    metrics.flush()
    assert (_queued(metrics, UNKNOWN_MODEL), _queued(metrics, "/sax/test/lm")) == (1, None)
    published.add("/sax/test/lm")
    metrics.flush()
    assert (_queued(metrics, UNKNOWN_MODEL), _queued(metrics, "/sax/test/lm")) == (0, 1)


def test_a_listed_model_called_but_never_watched_leaves_with_the_listing() -> None:
    # A process may have a model's calls queued (or refused) without ever serving one, so
    # without a watch of its own: labelled through its cell's listing, the model kept its
    # label and its series (its queue at 0) for good once unpublished, as only a watch, which
    # this process never had, would have told it.
    metrics = GatewayMetrics()
    metrics.note_listing("/sax/test", {"/sax/test/lm": 1})
    metrics.queues(lambda model: False)("/sax/test/lm").calls += 1
    metrics.flush()
    assert _queued(metrics, "/sax/test/lm") == 1
    metrics.note_listing("/sax/test", {})  # unpublished
    metrics.flush()
    assert "/sax/test/lm" not in generate_latest(metrics.registry).decode()


def _documented_metrics() -> dict[str, tuple[str, frozenset[str]]]:
    """docs/operations.md's metrics table: name -> (type, labels); "same" repeats the labels
    of the row above, and a parenthesis after a label lists its values."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    page = page.split("\n## Metrics\n")[1].split("\n## ")[0]
    rows: dict[str, tuple[str, frozenset[str]]] = {}
    labels: frozenset[str] = frozenset()
    for name, kind, cell in re.findall(r"^\| `(\w+)` \| (\w*) \|([^|]*)\|", page, re.M):
        if cell.strip() != "same":
            labels = frozenset(re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", cell)))
        rows[name] = (kind, labels)
    return rows


def test_every_metric_family_is_a_row_of_the_operations_page() -> None:
    # Dashboards and alerts are written from that table: a family added, renamed or
    # relabelled without its row was unknown to them, and a row without a family misled.
    metrics = GatewayMetrics()
    exported = {}
    for family in vars(metrics).values():
        if isinstance(family, MetricWrapperBase):
            (described,) = family.describe()
            name = described.name + ("_total" if described.type == "counter" else "")
            exported[name] = (described.type, frozenset(family._labelnames))
    # The ops server's own two gauges (gateway/ops/_server.py), unlabelled.
    ops = ("saxgw_envoy_up", "saxgw_metrics_dir_writable")
    exported |= {name: ("gauge", frozenset()) for name in ops}
    assert exported == _documented_metrics()  # (Envoy's own `envoy_*` row is no metric name)
