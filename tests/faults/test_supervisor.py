"""Partial failure stays partial: a dead gateway is restarted while the other serves, killing
`saxgw` leaves nothing behind, and a leftover process is reported, not taken for a stack."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import time
import uuid
from pathlib import Path

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc

from gateway.launch.ports import listener_pid
from gateway.launch.processes import free_port
from gateway.ops import OpsSettings, scrape
from tests._grpc import sync_channel
from tests.e2e._access_log import access_log_line
from tests.faults._load import run_load
from tests.faults._saxgw import (
    alive,
    ended,
    start_saxgw,
    up_args,
    wait_banner,
    wait_healthy,
)
from tests.faults.conftest import MAX_STREAMS_PER_CLIENT, Faults, publish, watches


def test_dead_gateway_is_restarted_and_envoy_routes_around_it(
    faults: Faults, http: httpx.Client
) -> None:
    model = "/sax/test/gatewaykill"
    publish(http, model, replicas=2)
    port = faults.stack.settings.gateway_ports[0]
    old_pid = faults.pid(port)
    started = _gateway_starts(faults)
    concurrency = 8

    async def kill_gateway() -> None:
        await asyncio.sleep(1.5)
        faults.kill(port)

    body = {"model": model, "query": "hello"}
    result = asyncio.run(
        run_load(
            faults.url,
            "/generate",
            body,
            seconds=6,
            concurrency=concurrency,
            during=kill_gateway,
            tick=faults.tick,
        )
    )
    # Only calls the dead gateway had already started may fail; Envoy retries the others
    # (before: every call sent its way for 2.4 s failed, 2,111 of them).
    errors = result.errors()
    assert sum(errors.values()) <= concurrency and set(errors) <= {503}, result.error_samples()
    faults.wait_until(lambda: faults.supervisor.restarts("gateway-0") >= 1, 30, "a restart")
    assert faults.pid(port) != old_pid
    faults.healthy()
    # The restart shows in the metrics, as one more start: the counters a gateway keeps
    # carry on across it, so nothing else there told a dashboard or an alert that it died.
    assert _gateway_starts(faults) == started + 1


def test_streams_a_dead_gateway_cut_are_logged_with_the_code_their_clients_got(
    faults: Faults, http: httpx.Client
) -> None:
    # A stream cut mid-reply by its gateway dying: the gRPC client raised INTERNAL (Envoy
    # resets its stream), the HTTP client's body ended early, and the access log said 2
    # (UNKNOWN) for both, Envoy's reading of the 200 it had sent with no trailers after it.
    model = "/sax/test/cutstream"
    publish(http, model, text=" ".join(["tok"] * 100), delay_ms="100")
    body = {"model": model, "query": "q"}
    grpc_id, sse_id = str(uuid.uuid4()), str(uuid.uuid4())
    with (
        sync_channel(faults.stack.grpc_address) as channel,
        httpx.Client(base_url=faults.url, timeout=30) as client,
        client.stream(
            "POST", "/generate_stream", json=body, headers={"x-request-id": sse_id}
        ) as sse,
    ):
        call = gateway_pb2_grpc.SaxGatewayStub(channel).GenerateStream(
            pb.GenerateStreamRequest(model=model, query="q"),
            metadata=(("x-request-id", grpc_id),),
            timeout=30,
        )
        assert next(call).deltas[0].text == "tok"
        lines = sse.iter_lines()
        assert next(line for line in lines if line.startswith("data:"))
        names = [f"gateway-{i}" for i in range(len(faults.stack.settings.gateway_ports))]
        restarts = {name: faults.supervisor.restarts(name) for name in names}
        for port in faults.stack.settings.gateway_ports:
            faults.kill(port)
        with pytest.raises(grpc.RpcError) as raised:
            list(call)
        assert raised.value.code() == grpc.StatusCode.INTERNAL, raised.value
        with pytest.raises(httpx.RemoteProtocolError):
            list(lines)
    for request_id in (grpc_id, sse_id):
        line = access_log_line(faults.stack, request_id)
        assert (line["status"], line["grpc_status"], line["response_flags"]) == (200, 13, "UC")
    faults.wait_until(
        lambda: all(faults.supervisor.restarts(name) > restarts[name] for name in names),
        30,
        "the restarts",
    )
    faults.healthy()


def test_files_removed_from_the_stack_directory_are_written_again_for_a_restart(
    faults: Faults, http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    # A /tmp cleaner (systemd-tmpfiles, 10 days) took the stack directory's files from under
    # a running stack: Envoy exited 1 at each restart ("Invalid path: .../envoy.yaml") and a
    # gateway 2 ("cannot read the config snapshot"), retried for good with no front door.
    directory = faults.stack.metrics_dir.parent
    table = faults.stack.slot_table
    files = [p for p in directory.iterdir() if p.is_file()]
    removed = {p: (p.read_bytes(), p.stat().st_mode) for p in files if table.name not in p.name}
    assert {p.name for p in removed} >= {"envoy.yaml", "owner.json"}
    for path in files:
        path.unlink()
    faults.kill(faults.stack.envoy.admin_port)
    faults.kill(faults.stack.settings.gateway_ports[0])  # gateway-1 runs on
    faults.wait_until(
        lambda: all(faults.supervisor.restarts(n) >= 1 for n in ("envoy", "gateway-0")),
        30,
        "the restarts",
    )
    faults.healthy()
    assert {p: (p.read_bytes(), p.stat().st_mode) for p in removed} == removed
    [warned] = [r.getMessage() for r in caplog.records if r.name == "gateway.launch.stackdir"]
    assert warned.startswith(
        f"files of the stack's directory {directory} were removed while it ran (a cleaner "
        f"of {directory.parent}?); wrote them again: "
    ), warned
    assert http.get("/listcells").status_code == 200
    # The per-client table too is the one both gateways count in: the one that ran on and
    # the one started again. Before, the restarted one counted in a table made anew and the
    # other in the removed one, and a client got 14 streams, 7 from each, where 8 are allowed.
    model = "/sax/test/cleaned"
    publish(http, model)
    faults.routed_to_every_gateway()
    with watches(faults.url, model, MAX_STREAMS_PER_CLIENT + 6) as statuses:
        assert statuses == [200] * MAX_STREAMS_PER_CLIENT + [429] * 6, statuses


def _gateway_starts(faults: Faults) -> float:
    """saxgw_gateway_starts_total as the ops server would serve it (none runs here)."""
    text = scrape(OpsSettings(metrics_dir=str(faults.stack.metrics_dir))).decode()
    samples = [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "saxgw_gateway_starts_total"
    ]
    assert len(samples) == 1, text
    return samples[0]


def test_killing_saxgw_leaves_no_process_behind(tmp_path: Path) -> None:
    args, ports = up_args(tmp_path)
    saxgw = start_saxgw(args, tmp_path)
    try:
        wait_healthy(saxgw, ports["--port"])
        gateway = ports["--gateway-ports"]
        first = listener_pid(gateway)
        assert first is not None
        os.kill(first, signal.SIGKILL)  # saxgw restarts it; the rest keeps running
        deadline = time.monotonic() + 60
        while listener_pid(gateway) in (None, first):
            assert saxgw.poll() is None, saxgw.communicate()
            assert time.monotonic() < deadline, "saxgw did not restart its gateway"
            time.sleep(0.1)
        pids = {port: listener_pid(port) for port in ports.values()}
        assert None not in pids.values(), pids
        os.kill(saxgw.pid, signal.SIGKILL)
        saxgw.wait()
        deadline = time.monotonic() + 30
        while orphans := [pid for pid in pids.values() if pid is not None and alive(pid)]:
            assert time.monotonic() < deadline, f"orphans of saxgw still running: {orphans}"
            time.sleep(0.1)
    finally:
        err = ended(saxgw)
    assert f"saxgw: gateway-0 (pid {first}) exited with status -9; restarting it in" in err


def test_stopping_saxgw_lets_the_calls_in_flight_finish(tmp_path: Path) -> None:
    # SIGTERM (Ctrl-C, systemd, docker stop) while a stream is open. Before, Envoy stopped
    # first and exited at once: the stream was cut after 0.5 s (an HTTP/1.1 body ended
    # without its last chunk), as was every call in flight, the gateways' grace unused.
    # Two children are stopped (SIGSTOP, as a debugger leaves them, before the watchdog finds
    # them hung): they act on SIGTERM only once continued, and the stop waited out their
    # whole grace (the ops server's 15 s, the admin's 5 s inside the cell), then killed them.
    args, ports = up_args(tmp_path)
    saxgw = start_saxgw(args, tmp_path)
    url = f"http://127.0.0.1:{ports['--port']}"
    model, words = "/sax/test/stopping", ["tok"] * 30  # 3 s, within the grace period (10 s)
    try:
        wait_banner(saxgw)  # every child started: the ops server too
        with httpx.Client(base_url=url, timeout=30) as http:
            publish(http, model, text=" ".join(words), delay_ms="100")
            body = {"model": model, "query": "q"}
            with http.stream("POST", "/generate_stream", json=body) as response:
                lines = response.iter_lines()
                first = next(line for line in lines if line.startswith("data: "))
                paused = [listener_pid(ports["--ops-port"]), listener_pid(ports["--admin-port"])]
                for pid in paused:
                    assert pid is not None
                    os.kill(pid, signal.SIGSTOP)
                stopped = time.monotonic()
                saxgw.send_signal(signal.SIGTERM)
                rest = [line for line in lines if line.startswith("data: ")]
        messages = [json.loads(line.removeprefix("data: ")) for line in [first, *rest]]
        assert messages[-1] == {
            "deltas": [],
            "done": True,
            "texts": [{"text": " ".join(words), "score": pytest.approx(-3.0)}],
        }
        assert len(messages) == len(words) + 1
        saxgw.wait(30)
        assert time.monotonic() - stopped < 10
    finally:
        err = ended(saxgw)
    assert saxgw.returncode == 0
    assert [port for port in ports.values() if listener_pid(port) is not None] == []
    assert "did not stop within" not in err + (tmp_path / "cell.log").read_text(), err


@pytest.mark.parametrize(
    "signals", [(signal.SIGINT, signal.SIGINT), (signal.SIGQUIT,)], ids=["ctrl-c twice", "ctrl-\\"]
)
def test_a_second_ctrl_c_or_a_ctrl_backslash_stops_at_once_and_leaves_nothing_behind(
    tmp_path: Path, signals: tuple[signal.Signals, ...]
) -> None:
    # Ctrl-C with a stream open that outlasts the gateways' grace: the stop waits for it
    # (10 s, then 5 s more before the gateway is killed). A second Ctrl-C did nothing: the
    # user's only way out was SIGKILL, which left the private directory (Envoy's config)
    # behind, as Ctrl-\ (SIGQUIT's default: saxgw alone killed) did. Now both kill what
    # still runs, clean up and exit 128 + the signal.
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    args, ports = up_args(tmp_path)
    saxgw = start_saxgw(args, tmp_path / "logs", env={"TMPDIR": str(tmp)})
    url = f"http://127.0.0.1:{ports['--port']}"
    model, words = "/sax/test/draining", ["tok"] * 300  # 30 s: longer than the whole stop
    received: list[str] = []
    try:
        wait_banner(saxgw)
        with httpx.Client(base_url=url, timeout=60) as http:
            publish(http, model, text=" ".join(words), delay_ms="100")
            body = {"model": model, "query": "q"}
            with http.stream("POST", "/generate_stream", json=body) as response:
                lines = response.iter_lines()
                received.append(next(line for line in lines if line.startswith("data: ")))
                for number, sig in enumerate(signals):
                    if number:
                        time.sleep(1)  # the gateways drain: the stream goes on
                    saxgw.send_signal(sig)
                hurried = time.monotonic()
                with contextlib.suppress(httpx.HTTPError):  # cut: the connection closes
                    for line in lines:
                        if line.startswith("data: "):
                            received.append(line)
        status = saxgw.wait(30)
        took = time.monotonic() - hurried
    finally:
        err = ended(saxgw)
    assert status == 128 + signals[-1], err
    assert took < 5, (took, err)  # a drain has 10 s of grace, and the kill 5 s more
    assert "told to stop at once: killing gateway-0 now" in err
    said = "saxgw: stopping at once..." if signals == (signal.SIGQUIT,) else "Ctrl-C again stops"
    assert said in err
    assert len(received) < len(words), len(received)  # it was cut
    # ...after the drain that a first Ctrl-C began had streamed on for a second.
    assert len(received) > 1 or signals == (signal.SIGQUIT,), len(received)
    deadline = time.monotonic() + 10  # the cell's servers die with it (gateway/launch)
    while listening := [port for port in ports.values() if listener_pid(port) is not None]:
        assert time.monotonic() < deadline, listening
        time.sleep(0.1)
    assert list(tmp.iterdir()) == []  # its private directory is gone


def test_sigterm_while_the_cell_starts_stops_saxgw_at_once(tmp_path: Path) -> None:
    # A cell whose storage does not answer takes 10 s to give up (GCS_RETRY_S), and up to
    # its 60 s start timeout with a slower one. SIGTERM (twice) then did nothing until the
    # cell failed: saxgw went on starting, then exited 1 with the cell's failure, as if the
    # signal had never come; a supervisor's stop timeout (Kubernetes' 30 s) would SIGKILL it.
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    args, ports = up_args(tmp_path)
    with socket.socket() as silent:  # a GCS endpoint that takes connections and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        gcs = ["--sax-root=gs://b/root", "--fs-root=gs://b/fs", f"--gcs-endpoint={endpoint}"]
        saxgw = start_saxgw([*args, *gcs], tmp_path / "logs", env={"TMPDIR": str(tmp)})
        assert saxgw.stderr is not None
        try:
            started = next(line for line in saxgw.stderr if " started cell (pid " in line)
            cell = int(started.split(" started cell (pid ", 1)[1].split(")", 1)[0])
            time.sleep(1)  # the cell is starting: its admin waits for the storage
            saxgw.send_signal(signal.SIGTERM)
            stopped = time.monotonic()
            status = saxgw.wait(30)
            took = time.monotonic() - stopped
        finally:
            rest = ended(saxgw)
    last = "saxgw: stopping... (calls in flight get up to 9 s; Ctrl-C again stops at once)"
    assert (status, rest.splitlines()[-1:]) == (0, [last]), rest
    assert took < 5, took  # it took 9.5 s, the rest of the storage's 10 s
    assert not alive(cell)
    assert [port for port in ports.values() if listener_pid(port) is not None] == []
    assert list(tmp.iterdir()) == []  # its private directory is gone


def test_a_leftover_process_on_a_port_is_reported(tmp_path: Path) -> None:
    with socket.socket() as leftover:
        leftover.bind(("127.0.0.1", 0))
        leftover.listen()
        port = leftover.getsockname()[1]
        saxgw = start_saxgw(
            [
                f"--admin-port={port}",
                f"--port={free_port()}",
                f"--envoy-admin-port={free_port()}",
                f"--gateway-ports={free_port()}",
                f"--model-server-ports={free_port()}",
                f"--sax-root={tmp_path / 'root'}",
                f"--fs-root={tmp_path / 'fs'}",
            ],
            tmp_path,
        )
        out, err = saxgw.communicate(timeout=60)
    assert saxgw.returncode == 1, (out, err)
    assert f"port {port} is in use (the Sax admin port, --admin-port) by pid {os.getpid()}" in err
    assert "is another `saxgw up` running?" in err
    assert "Ctrl-C" not in out  # no banner


pytestmark = pytest.mark.timeout(180)
