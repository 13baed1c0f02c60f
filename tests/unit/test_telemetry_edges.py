"""Telemetry at the edges, without sockets: the CLI flags, JSON log lines carrying the
request ID (and never reading a finished call's), and the W3C trace context a gateway span
hands on to Sax calls."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from saxgateway.v1 import openai_pb2

from gateway.cli.main import main, parser
from gateway.common.closing import aclose
from gateway.common.flags import otlp_target
from gateway.common.logs import (
    LOGGED_ID_CHARS,
    TEXT,
    JsonFormatter,
    TextFormatter,
    UndecodableMetadata,
    current_call,
    name_process,
)
from gateway.launch.envoy import EnvoySettings, render
from gateway.service._metrics import GatewayMetrics
from gateway.service._observe import GatewayObserver, TelemetryInterceptor, _code
from gateway.service._tracing import Tracing
from gateway.service._usage import CallRecord, note_answered
from gateway.service.telemetry_args import (
    HEADERS_VARIABLE,
    headers_variable,
    otlp_headers,
    telemetry_from_args,
)
from tests._envoy_routes import envoy_yaml

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


def test_up_has_an_ops_port_and_telemetry_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    # The ops port has no authentication: loopback, even when the public port is exposed.
    args = parser().parse_args(["up", "--listen", "0.0.0.0"])
    assert (args.ops_port, args.ops_listen, args.metrics, args.otlp_endpoint) == (
        8889,
        "127.0.0.1",
        True,
        None,
    )
    assert args.log_format == "auto"
    args = parser().parse_args(
        ["serve", "--sax-root", "/r", "--ops-port", "9999", "--no-metrics", "--log-format", "json"]
    )
    assert (args.ops_port, args.metrics, args.log_format) == (9999, False, "json")


def test_the_otlp_endpoint_defaults_to_the_standard_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    args = parser().parse_args(["gateway", "--sax-root", "/r", "--metrics-dir", "/m"])
    assert (args.otlp_endpoint, args.metrics_dir) == ("http://127.0.0.1:4317", "/m")
    args = parser().parse_args(["up", "--otlp-endpoint", "http://collector:4317"])
    assert args.otlp_endpoint == "http://collector:4317"


class _Call:
    request_id = "req-123"
    client = "team-a"
    trace = None


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("gateway.test", logging.WARNING, __file__, 1, message, None, None)


def _formatted(call: object, message: str) -> tuple[dict[str, Any], str]:
    """``message``'s JSON line and text line, logged while serving ``call``."""
    token = current_call.set(call)  # type: ignore[arg-type]  # a stand-in with its fields
    try:
        line = json.loads(JsonFormatter().format(_record(message)))
        return line, TextFormatter(TEXT).format(_record(message))
    finally:
        current_call.reset(token)


def test_a_named_process_says_its_name_in_every_line() -> None:
    name_process("gateway-1")  # as `saxgw gateway --shared-slots F --worker 1` does
    try:
        line, text = _formatted(_Call(), "cell unreachable")
        assert (line["logger"], line["process"], line["message"]) == (
            "gateway.test",
            "gateway-1",
            "cell unreachable",
        )
        assert text.endswith("cell unreachable process=gateway-1 request_id=req-123 client=team-a")
    finally:
        name_process(None)
    alone, text = _formatted(_Call(), "x")
    assert "process" not in alone and "process=" not in text


def test_json_log_lines_carry_the_request_id_and_client_of_the_call_served() -> None:
    line, _ = _formatted(_Call(), "cell unreachable")
    assert (line["request_id"], line["client"]) == ("req-123", "team-a")
    assert (line["level"], line["logger"], line["message"]) == (
        "WARNING",
        "gateway.test",
        "cell unreachable",
    )
    assert line["time"].endswith("Z")
    idle = json.loads(JsonFormatter().format(_record("idle")))
    assert "request_id" not in idle and "client" not in idle


class _Traced:
    request_id = "req-123"
    client = None
    trace = (TRACE_ID, "b7ad6b7169203331")


def test_log_lines_of_a_traced_call_name_its_trace_and_span() -> None:
    line, text = _formatted(_Traced(), "cell unreachable")
    assert (line["request_id"], line["trace_id"], line["span_id"]) == (
        "req-123",
        TRACE_ID,
        "b7ad6b7169203331",
    )
    assert "client" not in line
    assert text.endswith(
        f" cell unreachable request_id=req-123 trace_id={TRACE_ID} span_id=b7ad6b7169203331"
    )


class _Long:
    request_id = "r" * 20_000  # as long as a header limit of 8 MiB lets a caller make it
    client = "c" * 300
    trace = None


def test_a_long_request_id_is_logged_as_its_prefix() -> None:
    line, text = _formatted(_Long(), "refused")
    assert (
        (line["request_id"], line["client"])
        == ("r" * 128, "c" * 128)
        == (
            _Long.request_id[:LOGGED_ID_CHARS],
            _Long.client[:LOGGED_ID_CHARS],
        )
    )
    assert text.endswith(f" refused request_id={'r' * 128} client={'c' * 128}")


class _Forged:
    request_id = 'x client=admin "y"'
    client = "team a"
    trace = None


def test_text_log_lines_quote_a_request_id_that_could_write_fields_of_its_own() -> None:
    # A caller picks its own x-request-id: in plain text it must stay one field.
    _, line = _formatted(_Forged(), "refused")
    assert line.endswith(' refused request_id="x client=admin \\"y\\"" client="team a"')
    assert _formatted(_Call(), "ok")[1].endswith(" request_id=req-123 client=team-a")


class _Separated:
    # What grpc reads of Latin-1 byte 0x85 is NEL; a UTF-8 ID may carry U+2028 and U+2029.
    request_id = "a\x85b\u2028c\u2029d"
    client = None
    trace = None


def test_a_text_log_line_stays_one_line_whatever_the_request_id() -> None:
    # Quoted with JSON's escapes, which leave these three line breaks of Unicode as they
    # are (str.splitlines and Unicode-aware log viewers split on them): the line ended in
    # a second, forged one, where the message escapes every character that is not printable.
    _, line = _formatted(_Separated(), "refused")
    assert line.endswith(' refused request_id="a\\u0085b\\u2028c\\u2029d"'), line
    assert len(line.splitlines()) == 1


def test_a_text_log_line_stays_one_line_whatever_the_message_quotes() -> None:
    # A refusal quotes the model a caller named, before anything checked it: a line break in
    # it wrote a second, forged line of the caller's making.
    record = _record("client=other refused model=/sax/test/x\n2026-12-01 gateway INFO all fine")
    line = TextFormatter(TEXT).format(record)
    assert line.endswith("refused model=/sax/test/x\\n2026-12-01 gateway INFO all fine")
    assert "\n" not in line
    try:
        raise ValueError("boom")
    except ValueError:
        failed = _record("failed\r")
        failed.exc_info = sys.exc_info()
    text = TextFormatter(TEXT).format(failed)
    assert text.splitlines()[0].endswith("failed\\r")
    assert text.splitlines()[-1] == "ValueError: boom"  # a traceback keeps its lines


def test_grpcs_undecodable_metadata_errors_become_one_warning_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [1000.0]
    # grpc's records, on a logger of the test's own (configure() puts one on grpc's).
    grpc_logger = logging.getLogger("tests.grpc._cython.cygrpc")
    undecodable = UndecodableMetadata(clock=lambda: now[0])
    grpc_logger.addFilter(undecodable)
    try:
        with caplog.at_level(logging.INFO):
            for _ in range(20):  # grpc's own line, once per reading of the value
                grpc_logger.error("Invalid encoding on %s", b"\xffsecret")
            now[0] += 61
            grpc_logger.error("Invalid encoding on %s", b"\xffsecret")
            grpc_logger.error("another grpc error")
    finally:
        grpc_logger.removeFilter(undecodable)
    lines = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert [line[:2] for line in lines] == [
        ("gateway.common.logs", "WARNING"),
        ("gateway.common.logs", "WARNING"),
        ("tests.grpc._cython.cygrpc", "ERROR"),
    ]
    assert "(seen 1 times since the last" in lines[0][2]
    assert "(seen 20 times since the last" in lines[1][2]
    assert "secret" not in caplog.text


def test_a_sax_call_continues_the_callers_trace() -> None:
    # Nothing is exported: spans are never ended, and the exporter connects lazily.
    tracing = Tracing("http://127.0.0.1:4317", "sax-gateway")
    server = tracing.server_span(
        "/saxgateway.v1.SaxGateway/Generate", (("traceparent", TRACEPARENT),)
    )
    span, metadata = tracing.client_span(server, "lm.Generate", "10.0.0.7:14001", 2)
    server_context, sax_context = server.get_span_context(), span.get_span_context()
    tracing.shutdown()

    # `parent` is on the SDK's spans, not the API's `Span` that `Tracing` is typed with.
    assert isinstance(server, ReadableSpan) and isinstance(span, ReadableSpan)
    assert f"{server_context.trace_id:032x}" == TRACE_ID
    assert server.parent is not None and f"{server.parent.span_id:016x}" == "b7ad6b7169203331"
    assert span.parent is not None and span.parent.span_id == server_context.span_id
    assert dict(metadata)["traceparent"] == f"00-{TRACE_ID}-{sax_context.span_id:016x}-01"


def test_a_step_of_the_wall_clock_during_a_call_leaves_its_spans_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each span read the wall clock at its start and end: stepped back an hour (NTP, a VM's
    # resume) during a call, its Sax RPC's span began an hour before the call's, and the
    # call's span ended an hour before it began. Spans kept in memory, not exported.
    import grpc
    from opentelemetry.sdk import trace as sdk_trace
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from gateway.service import _tracing

    exporter = InMemorySpanExporter()
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing("http://127.0.0.1:4317", "sax-gateway")
    tracing._tracer = provider.get_tracer("test")
    step, real = [0], time.time_ns

    def wall() -> int:
        return real() + step[0]

    monkeypatch.setattr(sdk_trace, "time_ns", wall)
    monkeypatch.setattr(time, "time_ns", wall)  # as _tracing reads it
    server = tracing.server_span("/saxgateway.v1.SaxGateway/Generate", ())
    step[0] = -3600 * 10**9
    sax, _ = tracing.client_span(server, "lm.Generate", "10.0.0.7:14001", 1)
    _tracing.end_span(sax, grpc.StatusCode.OK)
    _tracing.end_span(server, grpc.StatusCode.OK, server=True)
    monkeypatch.undo()
    tracing.shutdown()

    spans = {span.name: span for span in exporter.get_finished_spans()}
    call, rpc = spans["saxgateway.v1.SaxGateway/Generate"], spans["sax lm.Generate"]
    times = [call.start_time, rpc.start_time, rpc.end_time, call.end_time]
    ints = [t for t in times if isinstance(t, int)]
    assert ints == sorted(ints) and len(ints) == 4, times
    assert ints[3] - ints[0] < 10**9  # ns: well under a second, not an hour


@pytest.mark.parametrize(
    "tracestate",
    [
        pytest.param("vendor=ok,bad member", id="malformed"),
        pytest.param(",".join(f"k{i}=v" for i in range(33)), id="33-members"),
        pytest.param(f"k={'v' * 600}", id="over-512"),
        pytest.param(("a=1", "b=2,=3"), id="second-header-malformed"),
    ],
)
def test_a_callers_tracestate_that_does_not_parse_is_dropped_without_a_log_line(
    caplog: pytest.LogCaptureFixture, tracestate: str | tuple[str, ...]
) -> None:
    # OpenTelemetry's parser logged a WARNING for each such header, with the caller's text
    # in it: any caller could put a line (of up to 512 characters of its own) into the
    # gateway's log with every call. W3C Trace Context: the tracestate is dropped, and the
    # trace goes on.
    caplog.set_level(logging.DEBUG)
    tracing = Tracing("http://127.0.0.1:4317", "sax-gateway")
    states = (tracestate,) if isinstance(tracestate, str) else tracestate
    metadata = (("traceparent", TRACEPARENT), *(("tracestate", s) for s in states))
    server = tracing.server_span("/saxgateway.v1.SaxGateway/Generate", metadata)
    tracing.shutdown()
    context = server.get_span_context()
    assert f"{context.trace_id:032x}" == TRACE_ID
    assert context.trace_state.to_header() == ""
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_callers_tracestate_in_several_headers_is_one_list() -> None:
    # W3C Trace Context: several tracestate headers are one list, in order (RFC 9110); the
    # gateway kept the last header only, so its span and its calls to Sax lost the others.
    tracing = Tracing("http://127.0.0.1:4317", "sax-gateway")
    metadata = (("traceparent", TRACEPARENT), ("tracestate", "a=1"), ("tracestate", "b=2,c=3"))
    server = tracing.server_span("/saxgateway.v1.SaxGateway/Generate", metadata)
    _, sent = tracing.client_span(server, "lm.Generate", "10.0.0.7:14001", 1)
    tracing.shutdown()
    assert server.get_span_context().trace_state.to_header() == "a=1,b=2,c=3"
    assert dict(sent)["tracestate"] == "a=1,b=2,c=3"


def _connection_manager(settings: EnvoySettings) -> dict[str, Any]:
    config = envoy_yaml(render(settings))
    [listener] = config["static_resources"]["listeners"]
    hcm: dict[str, Any] = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return hcm


def test_envoy_traces_only_with_an_endpoint() -> None:
    off = _connection_manager(EnvoySettings(gateway_endpoints=["127.0.0.1:1"]))
    assert off["tracing"] is None
    on = _connection_manager(
        EnvoySettings(
            gateway_endpoints=["127.0.0.1:1"],
            otlp_endpoint="http://collector:4317",
            trace_sample_ratio=0.25,
        )
    )
    provider = on["tracing"]["provider"]["typed_config"]
    assert provider["grpc_service"]["google_grpc"]["target_uri"] == "collector:4317"
    for endpoint in ("collector:4317/v1/traces", "https://u@collector:4317/v1/traces"):
        assert otlp_target(endpoint) == "collector:4317"  # both exporters' gRPC target
    # The ratio is the OpenTelemetry sampler's, behind the caller's sampled flag: Envoy's own
    # random_sampling reads the x-request-id, so it never followed a caller's traceparent
    # when the caller also sent an x-request-id of its own (tests/e2e/test_operate.py).
    assert "random_sampling" not in on["tracing"]
    sampler = provider["sampler"]
    assert sampler["name"] == "envoy.tracers.opentelemetry.samplers.parent_based"
    ratio = sampler["typed_config"]["wrapped_sampler"]
    assert ratio["name"] == "envoy.tracers.opentelemetry.samplers.trace_id_ratio_based"
    percentage = ratio["typed_config"]["sampling_percentage"]
    assert percentage == {"numerator": 250_000, "denominator": "MILLION"}
    # Request IDs are the caller's, unchanged, and play no part in sampling.
    uuid = on["request_id_extension"]["typed_config"]
    assert (uuid["pack_trace_reason"], uuid["use_request_id_for_trace_sampling"]) == (False, False)
    [log] = on["access_log"]
    fields = log["typed_config"]["log_format"]["json_format"]
    assert {"request_id", "method", "path", "status", "grpc_status", "duration_ms"} <= set(fields)
    # The identity the auth filters set (a client's own header of that name is removed first).
    # Cut to the prefix the gateway's own log lines keep of a request ID or client.
    assert fields["client_id"] == f"%REQ(x-saxgw-client):{LOGGED_ID_CHARS}%"
    assert fields["request_id"] == f"%REQ(X-REQUEST-ID):{LOGGED_ID_CHARS}%"


class _FinishingContext:
    """A gRPC call's context whose metadata may not be read once the call is over: grpc
    frees it, and a read then returns garbage or crashes the process."""

    over = False

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        assert not self.over, "read the metadata of a finished call"
        return (("x-request-id", "req-9"),)


async def test_work_a_call_started_may_log_after_the_call_is_over() -> None:
    # A shielded ACL read outlives its call when the admin hangs; it logged its failure in
    # the call's context 10 s later, reading freed metadata: gateways crashed (SIGSEGV).
    context = _FinishingContext()
    lines: list[dict[str, Any]] = []
    left_behind: list[asyncio.Task[None]] = []

    async def later() -> None:
        await asyncio.sleep(0)
        lines.append(json.loads(JsonFormatter().format(_record("admin unreachable"))))

    async def behavior(request: Any, context: Any) -> str:
        lines.append(json.loads(JsonFormatter().format(_record("during"))))
        left_behind.append(asyncio.create_task(later()))  # inherits the call's context
        return "done"

    interceptor = TelemetryInterceptor(None, None, client=None)  # type: ignore[arg-type]
    call = interceptor.wrap_unary("/saxgateway.v1.SaxGateway/Generate", behavior)
    assert await call(object(), context) == "done"
    context.over = True
    await left_behind[0]
    assert [line.get("request_id") for line in lines] == ["req-9", None]
    assert lines[1]["message"] == "admin unreachable"


def test_a_tls_collectors_ca_comes_from_the_flag_or_the_standard_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pem = tmp_path / "ca.pem"
    pem_text = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    pem.write_text(pem_text)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(pem))
    https = ["up", "--otlp-endpoint", "https://collector:4317"]
    assert telemetry_from_args(parser().parse_args(https)).otlp_certificate == str(pem)
    # Read only for an https:// collector: a stale variable stops no plaintext gateway.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(tmp_path / "gone.pem"))
    plain = parser().parse_args(["up", "--otlp-endpoint", "http://collector:4317"])
    assert telemetry_from_args(plain).otlp_certificate is None
    with pytest.raises(SystemExit, match=r"OTEL_EXPORTER_OTLP_CERTIFICATE: cannot read .*gone"):
        telemetry_from_args(parser().parse_args(https))
    # The flag wins, and is checked as it is parsed.
    args = parser().parse_args([*https, "--otlp-certificate", str(pem)])
    assert telemetry_from_args(args).otlp_certificate == str(pem)
    (tmp_path / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    for bad, why in (("gone.pem", "cannot read"), ("key.pem", "holds no PEM certificate")):
        with pytest.raises(SystemExit):
            parser().parse_args([*https, "--otlp-certificate", str(tmp_path / bad)])
        assert why in capsys.readouterr().err


def test_export_headers_come_from_opentelemetrys_variables_and_stay_out_of_repr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv(HEADERS_VARIABLE, raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-key=s%3Dcret,team = a b")
    args = parser().parse_args(["up", "--otlp-endpoint", "https://collector:4317"])
    settings = telemetry_from_args(args)
    assert settings.otlp_headers == (("x-key", "s=cret"), ("team", "a b"))
    assert "cret" not in repr(settings)
    # What a stack hands its gateways reads back the same; the traces' own variable wins.
    monkeypatch.setenv(HEADERS_VARIABLE, headers_variable(settings.otlp_headers))
    assert otlp_headers("https://collector:4317") == settings.otlp_headers
    monkeypatch.setenv(HEADERS_VARIABLE, "only=this")
    assert telemetry_from_args(args).otlp_headers == (("only", "this"),)
    # No collector, no headers.
    assert telemetry_from_args(parser().parse_args(["up"])).otlp_headers == ()


def _tracer(config: object) -> dict[str, Any]:
    """The OpenTelemetry tracer's config, wherever it is in Envoy's config."""
    if isinstance(config, dict):
        if config.get("name") == "envoy.tracers.opentelemetry":
            return dict(config["typed_config"])
        found = [_tracer(v) for v in config.values()]
    elif isinstance(config, list):
        found = [_tracer(v) for v in config]
    else:
        return {}
    return next((f for f in found if f), {})


def test_envoy_config_for_containers_traces_as_the_pods_variables_say(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # One set of OpenTelemetry variables on the pod traces both of its containers: the
    # gateway's flags default to them, and envoy-config's --otlp-endpoint did not.
    pem = tmp_path / "ca.pem"
    pem_text = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    pem.write_text(pem_text)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector.test:4317")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(pem))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-key=s3cret")
    monkeypatch.delenv(HEADERS_VARIABLE, raising=False)
    out = tmp_path / "out"
    assert main(["envoy-config", "--gateway", "gateway:50051", "--out", str(out)]) == 0
    service = _tracer(envoy_yaml((out / "envoy.yaml").read_text()))["grpc_service"]
    # Each export's deadline (tests/e2e/test_traces.py: a collector that never answers).
    [method] = json.loads(
        service["google_grpc"].pop("channel_args")["args"]["grpc.service_config"]["string_value"]
    )["methodConfig"]
    assert method == {
        "name": [{"service": "opentelemetry.proto.collector.trace.v1.TraceService"}],
        "timeout": "10s",  # OpenTelemetry's default export timeout, the gateways' too
    }
    assert service["google_grpc"] == {
        "target_uri": "collector.test:4317",
        "stat_prefix": "otlp",
        # The CA as the pod's file held it (Envoy's container need not mount it).
        "channel_credentials": {"ssl_credentials": {"root_certs": {"inline_string": pem_text}}},
    }
    assert service["initial_metadata"] == [{"key": "x-key", "value": "s3cret"}]
    assert (out / "envoy.yaml").stat().st_mode & 0o077 == 0  # it holds the collector's key


async def test_a_client_that_leaves_after_a_streams_last_message_did_not_cancel_it() -> None:
    # The OpenAI SDKs close the connection at `data: [DONE]`, before the stream's status
    # reaches Envoy (1 stream in 20 through a stack): Envoy reset the call and the gateway
    # counted a stream answered in full as CANCELLED. A client gone before the end did cancel.
    metrics = GatewayMetrics()
    serving = _Serving()
    interceptor = TelemetryInterceptor(metrics, None, client=serving)  # type: ignore[arg-type]
    call = interceptor.wrap_streaming("/saxgateway.v1.OpenAIGateway/CreateCompletion", _answers)
    request = openai_pb2.CreateCompletionRequest()
    for taken in (2, 1):  # grpc closes the handler when the call is reset during a send
        stream = call(request, _FinishingContext())
        assert [await anext(stream) for _ in range(taken)] == ["chunk", "[DONE]"][:taken]
        await aclose(stream)
    metrics.flush()
    counts = {
        code: metrics.registry.get_sample_value(
            "saxgw_requests_total",
            {"grpc_method": "CreateCompletion", "grpc_code": code, "client": "anonymous"},
        )
        for code in ("OK", "CANCELLED")
    }
    assert counts == {"OK": 1.0, "CANCELLED": 1.0}


class _Serving:
    """The Sax client as the metrics ask it: whether a model is served (for its label)."""

    def is_serving(self, model_id: str) -> bool:
        return True


async def _answers(request: Any, context: Any) -> AsyncIterator[str]:
    """A stream as the servicers end one: its last message marked a whole answer."""
    yield "chunk"
    note_answered()
    yield "[DONE]"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_cell_process_logs_no_error_for_a_reply_to_a_caller_gone(fmt: str) -> None:
    # A model server whose stream's caller stopped reading and left (the gateway cancels its
    # Sax call when its own client does): grpc's ERROR and traceback for the reply it could
    # not send is no fault of the server. Only the gateway's (JSON) logging dropped it: in
    # text (`saxgw up` on a terminal, `--log-format text`) each stalled SSE client that left
    # put a traceback in the cell's log (169 in one run of slow readers).
    script = (
        "import logging\n"
        "from gateway.cell._args import configure_logging\n"
        f"configure_logging('INFO', name='modelserver', fmt={fmt!r})\n"
        "grpc = logging.getLogger('grpc._cython.cygrpc')\n"
        "grpc.error('ExecuteBatchError raised in core by servicer method [/sax.x/Y]')\n"
        "grpc.error('another grpc error')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert "ExecuteBatchError" not in done.stderr
    assert "another grpc error" in done.stderr


class _Metadata:
    """A servicer context as a call's record reads its request ID from it."""

    def __init__(self, *metadata: tuple[str, str]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


def test_every_rpc_a_call_makes_carries_its_request_id() -> None:
    # Envoy's x-request-id is what each hop logs a call by (a sidecar in front of a model
    # server, as a mesh puts there, too); the gateway sent Sax only traceparent, and only
    # when tracing, so a model server's side of a call could not be found by its ID.
    observer = GatewayObserver(None, None)
    calls = [
        (_Metadata(("x-request-id", "req-17")), (("x-request-id", "req-17"),)),
        (_Metadata(("x-request-id", "r" * 300)), (("x-request-id", "r" * LOGGED_ID_CHARS),)),
        (_Metadata(), None),  # a call Envoy did not name (straight to the gateway's port)
        # grpc refuses to send what is not printable ASCII: the RPC failed for it.
        (_Metadata(("x-request-id", "caf\u00e9")), None),
    ]
    for context, sent in calls:
        token = current_call.set(CallRecord(context, None, "anonymous"))  # type: ignore[arg-type]
        try:
            attempt = observer.attempt("/sax/test/lm", "lm.Generate", "127.0.0.1:1", 1)
        finally:
            current_call.reset(token)
        assert attempt.metadata == sent
    # An RPC that belongs to no call (an address watch) carries none.
    assert observer.attempt("/sax/test/lm", "admin.WatchLoc", "127.0.0.1:1", 1).metadata is None


class ExecuteBatchError(Exception):
    """Named as grpc's Cython class is: what sending a status raises once grpc ended the call
    with one of its own (`gateway.common.rpc.status_refused`)."""


class _Remaining:
    def __init__(self, seconds: float | None) -> None:
        self._seconds = seconds

    def time_remaining(self) -> float | None:
        return self._seconds


def test_a_call_grpc_ended_past_its_deadline_is_counted_deadline_exceeded() -> None:
    # An admin change that outlived a deadline of a few milliseconds (made, answered late):
    # its caller got grpc's 504, and saxgw_requests_total did not count it (27 of 30).
    assert _code(ExecuteBatchError(), _Remaining(-0.002)) == grpc.StatusCode.DEADLINE_EXCEEDED
    # Before its deadline, or with none, grpc's status is one the gateway never learns (a
    # message it could not take): counted nowhere, as docs/operations.md says.
    assert _code(ExecuteBatchError(), _Remaining(3.0)) is None
    assert _code(ExecuteBatchError(), _Remaining(None)) is None
