"""Operating the gateway: one scrape URL over two gateway processes and Envoy, the trace of
one HTTP request in a real OTLP receiver, and Envoy's JSON access log.

A second, small stack (two gateway processes, Envoy, the ops server, tracing on) runs in front
of the session stack's cell, so the rest of the suite runs without tracing.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from opentelemetry.proto.trace.v1 import trace_pb2
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import TelemetrySettings
from gateway.launch.envoy import EnvoySettings
from gateway.launch.processes import free_port
from gateway.launch.stack import Stack, StackSettings
from gateway.service._metrics import GatewayMetrics
from tests._otlp import Receiver, attributes
from tests.e2e._published import TEST_LM, published

MODEL = "/sax/test/operate"
SERVER = trace_pb2.Span.SPAN_KIND_SERVER
CLIENT = trace_pb2.Span.SPAN_KIND_CLIENT


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def model(stack: Stack) -> Iterator[str]:
    with published(stack, MODEL, TEST_LM, {"text": "one two three"}) as name:
        yield name


@pytest.fixture(scope="module")
def ops_stack(
    stack: Stack, receiver: Receiver, model: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("ops-stack-logs")
    telemetry = TelemetrySettings(otlp_endpoint=receiver.endpoint)
    settings = StackSettings(
        gateway=dataclasses.replace(stack.settings.gateway, telemetry=telemetry),
        gateway_ports=(free_port(), free_port()),
        envoy=EnvoySettings(
            gateway_endpoints=(),
            listen_address="127.0.0.1",
            listen_port=free_port(),
            admin_port=free_port(),
        ),
        ops_port=free_port(),
        log_dir=str(logs),
    )
    with Stack(settings) as running:
        assert running.wait_healthy(timeout=60), "the ops stack never became healthy"
        yield running


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _samples(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _scrape_until(stack: Stack, ready: Callable[[Samples], bool], timeout: float = 20.0) -> Samples:
    """Scrapes the ops server until ``ready`` holds (or the timeout passes); the last scrape."""
    assert stack.metrics_url is not None
    deadline = time.monotonic() + timeout
    while True:
        scrape = httpx.get(stack.metrics_url, timeout=30)
        assert scrape.status_code == 200
        assert scrape.headers["content-type"].startswith("text/plain; version=0.0.4")
        samples = _samples(scrape.text)
        if ready(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.3)


def _value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_one_scrape_covers_every_gateway_process_and_envoy(ops_stack: Stack, model: str) -> None:
    with httpx.Client(base_url=ops_stack.http_url, timeout=30) as http:
        for _ in range(8):
            reply = http.post("/generate", json={"model": model, "query": "hello"})
            assert reply.status_code == 200, reply.text
            assert int(reply.headers["x-sax-query-cost-ms"]) >= 1
        for _ in range(2):
            events = http.post("/generate_stream", json={"model": model, "query": "hello"})
            assert events.status_code == 200
        assert (
            http.post("/generate", json={"model": "/sax/test/nope", "query": "x"}).status_code
            == 404
        )
        assert http.post("/generate", json={"model": model}).status_code == 400

    generate = {"gen_ai_operation_name": "lm.generate", "gen_ai_request_model": model}
    stream = {"gen_ai_operation_name": "lm.generate_stream", "gen_ai_request_model": model}
    duration = "gen_ai_server_request_duration_seconds_count"
    # Gateways write their counts out once a second: scrape until the last call shows.
    samples = _scrape_until(ops_stack, lambda s: _value(s, duration, **stream, error_type="") == 2)
    # Envoy spread the calls over both processes; the scrape adds them up.
    assert len(list(ops_stack.metrics_dir.glob("histogram_*.db"))) == 2
    assert _value(samples, duration, **generate, error_type="") == 8
    assert _value(samples, duration, **stream, error_type="") == 2
    assert _value(samples, "gen_ai_server_time_to_first_token_seconds_count", **stream) == 2
    requests = "saxgw_requests_total"
    assert _value(samples, requests, grpc_method="Generate", grpc_code="OK") == 8
    assert _value(samples, requests, grpc_method="Generate", grpc_code="NOT_FOUND") == 1
    assert _value(samples, requests, grpc_method="Generate", grpc_code="INVALID_ARGUMENT") == 1
    assert _value(samples, "saxgw_model_replicas", gen_ai_request_model=model) == 1
    assert _value(samples, "saxgw_query_cost_tpu_milliseconds_total", **generate) >= 8
    assert not any("/sax/test/nope" in dict(labels).values() for _, labels in samples)
    # Envoy's own families come with them, and the ops server says it reached Envoy.
    assert _value(samples, "saxgw_envoy_up") == 1
    assert any(name.startswith("envoy_cluster_upstream_rq") for name, _ in samples)


def test_the_public_port_exposes_neither_metrics_nor_envoy_admin(ops_stack: Stack) -> None:
    with httpx.Client(base_url=ops_stack.http_url, timeout=30) as http:
        for path in ("/metrics", "/stats/prometheus", "/server_info", "/config_dump"):
            assert http.get(path).status_code == 404, path
        # /stats is the gateway's own GetStats route (a Sax cell's stats), not Envoy's.
        stats = http.get("/stats")
        assert stats.status_code == 400
        assert stats.json()["code"] == 3
        assert "envoy" not in stats.text.lower()


def test_one_http_request_is_one_trace_from_client_to_sax(
    ops_stack: Stack, receiver: Receiver, model: str
) -> None:
    trace_id, client_span = secrets.token_bytes(16), secrets.token_bytes(8)
    traceparent = f"00-{trace_id.hex()}-{client_span.hex()}-01"
    with httpx.Client(base_url=ops_stack.http_url, timeout=30) as http:
        reply = http.post(
            "/generate",
            json={"model": model, "query": "hello"},
            headers={"traceparent": traceparent},
        )
    assert reply.status_code == 200, reply.text

    # client -> Envoy -> gateway -> Sax model server, all in the caller's trace.
    spans = receiver.wait_for(trace_id, count=3)
    [envoy] = [s for s in spans if receiver.service(s) == "sax-gateway-envoy"]
    [server] = [s for s in spans if s.kind == SERVER and receiver.service(s) == "sax-gateway"]
    [sax] = [s for s in spans if s.kind == CLIENT]
    assert envoy.parent_span_id == client_span
    assert server.name == "saxgateway.v1.SaxGateway/Generate"
    assert server.parent_span_id == envoy.span_id
    assert sax.name == "sax lm.Generate"
    assert sax.parent_span_id == server.span_id
    assert receiver.service(sax) == "sax-gateway"
    server_attributes, sax_attributes = attributes(server), attributes(sax)
    assert server_attributes["gen_ai.request.model"] == model
    assert server_attributes["rpc.grpc.status_code"] == 0
    assert sax_attributes["server.address"] == "127.0.0.1"
    assert sax_attributes["sax.attempt"] == 1
    assert sax_attributes["sax.query_cost_ms"] == int(reply.headers["x-sax-query-cost-ms"])

    # Envoy's access log line of that request carries the same request ID as the span.
    request_id = server_attributes["saxgw.request_id"]
    # Envoy logs the traceparent it sent on (its own span's), so look for the trace ID.
    line = _access_log_line(Path(ops_stack.settings.log_dir or "") / "envoy.log", trace_id.hex())
    assert line["request_id"] == request_id
    assert line["method"] == "POST"
    assert line["path"] == "/generate"
    assert line["grpc_method"] == "/saxgateway.v1.SaxGateway/Generate"
    assert line["status"] == 200
    assert line["grpc_status"] == 0
    assert line["query_cost_ms"] == reply.headers["x-sax-query-cost-ms"]
    assert line["bytes_sent"] == len(reply.content)
    assert isinstance(line["duration_ms"], int)


def _access_log_line(log: Path, trace_id: str, timeout: float = 20.0) -> dict[str, object]:
    """The access log line of the request in trace ``trace_id`` (Envoy flushes every 1 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for text in log.read_text().splitlines():
            if text.startswith("{") and trace_id in text:
                line: dict[str, object] = json.loads(text)
                return line
        time.sleep(0.2)
    pytest.fail(f"no access log line of trace {trace_id} in {log}")


ROOT = Path(__file__).resolve().parents[2]
# PromQL words that are not metric names.
_PROMQL = {
    "sum", "max", "min", "avg", "count", "rate", "irate", "increase", "histogram_quantile",
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    expr = re.sub(r'"[^"]*"', "", expr)  # label values
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)  # matchers and ranges
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    words = re.findall(r"(?<![\w$.:])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()", expr)
    return {w for w in words if w not in _PROMQL}


def test_every_dashboard_query_reads_an_exported_metric(ops_stack: Stack, model: str) -> None:
    with httpx.Client(base_url=ops_stack.http_url, timeout=30) as http:
        assert http.post("/generate", json={"model": model, "query": "hi"}).status_code == 200
        assert (
            http.post("/generate_stream", json={"model": model, "query": "hi"}).status_code == 200
        )
    stream = {"gen_ai_operation_name": "lm.generate_stream", "gen_ai_request_model": model}
    ttft = "gen_ai_server_time_to_first_token_seconds_count"
    _scrape_until(ops_stack, lambda s: _value(s, ttft, **stream) > 0)  # the stream shows
    assert ops_stack.metrics_url is not None
    scrape = httpx.get(ops_stack.metrics_url, timeout=30).text
    # Names as on the wire (prometheus_client's parser would add _total to Envoy's counters).
    exported = {re.split(r"[{ ]", line)[0] for line in scrape.splitlines() if line[:1].isalpha()}
    # Counters that only appear once something happens (a failover, a retry) count as
    # exported when the gateway defines them.
    defined = {
        f"{family.name}{suffix}"
        for family in GatewayMetrics().registry.collect()
        for suffix in _SUFFIXES[family.type]
    }
    dashboard = json.loads((ROOT / "deploy/grafana/sax-gateway.json").read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(queries) > 15
    # The model picker: label_values(metric, label) reads a label the metric has.
    template = dashboard["templating"]["list"][1]["definition"]
    metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", template).groups()  # type: ignore[union-attr]
    assert any(
        line.startswith(metric + "{") and f'{label}="' in line for line in scrape.splitlines()
    )
    for query in queries:
        names = metric_names(query)
        assert names, query
        assert names <= exported | defined, (query, names - exported - defined)
    panels = {p["title"] for p in dashboard["panels"]}
    assert {"Error ratio", "Replicas per model", "In flight"} <= panels


_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
}


def test_prometheus_example_scrapes_the_ops_port() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:8889"]
