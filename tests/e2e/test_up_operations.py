"""`saxgw up` while it runs: the config it read at start is the one every process keeps,
a restarted one included; SIGHUP stops it as SIGTERM does; a stream may outlast the default
grace period when `--grace-period` allows it; its own lines, and the embedded cell's, are
JSON when the logs are."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.launch.processes import free_port
from gateway.launch.stack import health_answers
from tests._grpc import sync_channel
from tests.e2e._published import TEST_LM, publish_body
from tests.e2e._up import Up, own_ports_and_dirs, saxgw_up

MODEL = "/sax/test/kept"
OPS_KEY = "sk-ops-3f9c2b7e1d6a4f08"
TEAM_KEY = "sk-team-a-8b1e5c0d2a7f"
OPS = {"Authorization": f"Bearer {OPS_KEY}"}
DRAIN_DELAY_S = 3
TEAM = {"Authorization": f"Bearer {TEAM_KEY}"}


def _config(team_models: str) -> str:
    return (
        "auth:\n"
        "  api_keys:\n"
        f"    - {{key: {OPS_KEY}, client: ops, roles: [admin, data]}}\n"
        f"    - {{key: {TEAM_KEY}, client: team-a, roles: [data]}}\n"
        "clients:\n"
        f"  team-a: {{models: [{team_models}]}}\n"
    )


def _pid_of_child(parent: int, flag: str) -> int:
    """The pid of ``parent``'s child whose command line holds ``flag``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and flag.encode() in argv:
            return int(entry.name)
    raise AssertionError(f"no child of {parent} with {flag}")


def _gateway_hosts(admin_port: int) -> dict[str, dict[str, str]]:
    """Envoy's view of each gateway (its admin's /clusters): health_flags, rq_total, ..."""
    url = f"http://127.0.0.1:{admin_port}/clusters"
    with urllib.request.urlopen(url, timeout=5) as response:
        lines = response.read().decode().splitlines()
    hosts: dict[str, dict[str, str]] = {}
    for line in lines:
        cluster, host, *stat = line.split("::")
        if cluster == "gateway_grpc" and len(stat) == 2:
            hosts.setdefault(host, {})[stat[0]] = stat[1]
    return hosts


def _restart(up: Up, pid: int, address: str, admin_port: int, restarts: int) -> None:
    """Kills the gateway ``pid`` (serving ``address``) with SIGKILL, and waits until the
    supervisor's ``restarts``-th restart answers and Envoy routes to it again."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while sum("saxgw: restarted gateway-1 (pid " in line for line in up.lines) < restarts:
        assert time.monotonic() < deadline, up.lines
        time.sleep(0.1)
    while not health_answers(address):
        assert time.monotonic() < deadline, up.lines
        time.sleep(0.1)
    while _gateway_hosts(admin_port)[address].get("health_flags") != "healthy":
        assert time.monotonic() < deadline, _gateway_hosts(admin_port)
        time.sleep(0.2)


def _team_calls(url: str, admin_port: int, address: str) -> list[int]:
    """Eight team-a calls through Envoy, and how many of them reached ``address``."""
    before = int(_gateway_hosts(admin_port)[address]["rq_total"])
    with httpx.Client(base_url=url, headers=TEAM, timeout=30) as http:
        codes = [
            http.post("/generate", json={"model": MODEL, "query": "q"}).status_code
            for _ in range(8)
        ]
    assert int(_gateway_hosts(admin_port)[address]["rq_total"]) > before  # the restarted one
    return codes


def test_a_restarted_gateway_keeps_the_config_read_at_start(tmp_path: Path) -> None:
    config = tmp_path / "saxgw.yaml"
    config.write_text(_config('"/sax/test/kept*"'))
    port, admin, first, second = free_port(), free_port(), free_port(), free_port()
    argv = [
        *own_ports_and_dirs(port, tmp_path),
        f"--envoy-admin-port={admin}",
        f"--gateway-ports={first},{second}",
        "--workers=2",
        "--ops-port=0",
        f"--config={config}",
        "--log-format=text",  # the supervisor's lines as text, as this test reads them
    ]
    url = f"http://127.0.0.1:{port}"
    address = f"127.0.0.1:{second}"
    with saxgw_up(argv) as up:
        up.wait_for("Ready. Try:")
        with httpx.Client(base_url=url, headers=OPS, timeout=30) as http:
            assert http.post("/publish", json=publish_body(MODEL, TEST_LM)).status_code == 200
            ready = http.post("/wait_for_ready", json={"model": MODEL, "timeout": "30s"})
            assert ready.status_code == 200, ready.text
        assert _team_calls(url, admin, address) == [200] * 8

        # An edit that would refuse team-a the model, then a crash: the restarted gateway
        # decides as its sibling does, with the config read at start.
        config.write_text(_config('"/sax/test/other*"'))
        _restart(up, _pid_of_child(up.proc.pid, f"--port={second}"), address, admin, 1)
        assert _team_calls(url, admin, address) == [200] * 8

        # A file broken on disk does not keep the next restart from starting.
        config.write_text("auth: [\n")
        [line] = [line for line in up.lines if "saxgw: restarted gateway-1 (pid " in line]
        pid = int(line.rsplit("(pid ", 1)[1].rstrip(")"))
        _restart(up, pid, address, admin, 2)
        assert _team_calls(url, admin, address) == [200] * 8
        assert sum(" exited with status " in line for line in up.lines) == 2, up.lines


def test_sighup_stops_saxgw_as_sigterm_does(tmp_path: Path) -> None:
    # SIGHUP (a closed terminal) killed `saxgw up` at once: status 129, its children killed
    # with it, and its private directory (Envoy's config with the API keys) left in /tmp.
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    argv = [*own_ports_and_dirs(free_port(), tmp_path), "--ops-port=0", "--log-format=text"]
    with saxgw_up(argv, env={"TMPDIR": str(tmp)}) as up:
        up.wait_for("Ready. Try:")
        [private] = tmp.iterdir()
        assert (private / "envoy.yaml").is_file()
        up.proc.send_signal(signal.SIGHUP)
        assert up.proc.wait(60) == 0
        up.close()
    assert up.lines[-2:] == [
        "saxgw: SIGHUP: stopping, as on SIGTERM. The config is read once at start: "
        "start saxgw again to apply a change",
        "saxgw: stopping... (calls in flight get up to 9 s; Ctrl-C again stops at once)",
    ]
    assert list(tmp.iterdir()) == []


@contextmanager
def _json_up(
    tmp_path: Path, argv: list[str]
) -> Iterator[tuple[subprocess.Popen[bytes], Path, float]]:
    """`saxgw up ARGV --log-format=json`, its stdout and stderr in files; yields it, its
    stderr and the deadline (60 s from its start) once the banner is out, then stops it with
    SIGTERM (it must exit 0)."""
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    with stdout.open("w") as out, stderr.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "up", *argv, "--log-format=json"],
            stdout=out,
            stderr=err,
        )
    deadline = time.monotonic() + 60
    try:
        # Until the banner, the stack is still starting, and a child that dies then stops
        # saxgw rather than being restarted: the gateway's own health answering was too
        # early on a loaded machine (Envoy not up yet, saxgw exited 1).
        _until_written(proc, stdout, "Ready. Try:", stderr, deadline)
        yield proc, stderr, deadline
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0


def _until_written(
    proc: subprocess.Popen[bytes], path: Path, text: str, stderr: Path, deadline: float
) -> None:
    """Waits until ``path`` holds ``text``; fails with ``stderr`` if ``proc`` exits first or
    ``deadline`` (`time.monotonic`) passes."""
    while text not in path.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, stderr.read_text()
        time.sleep(0.2)


def test_saxgws_own_lines_are_json_when_the_logs_are(tmp_path: Path) -> None:
    port, gateway = free_port(), free_port()
    argv = [*own_ports_and_dirs(port, tmp_path), f"--gateway-ports={gateway}", "--ops-port=0"]
    with _json_up(tmp_path, argv) as (proc, stderr, deadline):
        pid = _pid_of_child(proc.pid, f"--port={gateway}")
        os.kill(pid, signal.SIGKILL)
        _until_written(proc, stderr, "restarted gateway-0", stderr, deadline)
    records = [json.loads(line) for line in stderr.read_text().splitlines()]
    mine = [(r["level"], r["logger"], r["message"]) for r in records if r["logger"] == "saxgw"]
    [(_, _, restarted)] = [m for m in mine if m[2].startswith("restarted gateway-0 (pid ")]
    assert mine == [
        (
            "WARNING",
            "saxgw",
            f"gateway-0 (pid {pid}) exited with status -9; restarting it in 0.5 s",
        ),
        ("WARNING", "saxgw", restarted),
        (
            "INFO",
            "saxgw",
            "stopping... (calls in flight get up to 9 s; Ctrl-C again stops at once)",
        ),
    ]


def test_the_embedded_cells_lines_are_json_when_the_logs_are(tmp_path: Path) -> None:
    # Without --log-dir every child writes to saxgw's stderr. The cell (its admin and model
    # servers) wrote text lines there whatever --log-format said, so a JSON log pipeline read
    # part of the stack's log as garbage.
    port = free_port()
    argv = [a for a in own_ports_and_dirs(port, tmp_path) if not a.startswith("--log-dir=")]
    with _json_up(tmp_path, [*argv, "--ops-port=0"]) as (_, stderr, _):
        pass
    records = [json.loads(line) for line in stderr.read_text().splitlines()]
    loggers = {r["logger"] for r in records}
    assert {"gateway.cell.admin", "gateway.cell.modelserver"} <= loggers


def _healthz_fails_within(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if httpx.get(url).status_code == 503:
            return True
        time.sleep(0.05)
    return False


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _grpc_health(address: str) -> list[int]:
    """The server's status by Check, its three services' by List, a Watch's first word."""
    with sync_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest()
        listed = health.List(health_pb2.HealthListRequest(), timeout=5).statuses
        watch = health.Watch(request, timeout=5)
        said = [health.Check(request, timeout=5).status, *(s.status for s in listed.values())]
        said.append(next(watch).status)
        watch.cancel()
    return said


def test_a_stream_longer_than_the_default_grace_ends_whole_after_sigterm(tmp_path: Path) -> None:
    # `up` and `serve` had no --grace-period (a fixed 10 s) nor --max-streams-per-client:
    # an LLM stream longer than that was cut when the stack stopped.
    words = [f"w{i}" for i in range(12)]  # a token a second: 11 s after SIGTERM, over 10 s
    port = free_port()
    config = tmp_path / "saxgw.yaml"
    config.write_text(_config('"/sax/test/*"'))
    argv = [
        *own_ports_and_dirs(port, tmp_path),
        "--ops-port=0",
        "--grace-period=30",
        "--max-streams-per-client=1",
        # Off loopback (so with a key), as behind a load balancer: Envoy's admin then takes
        # /healthcheck/fail, which a loopback one refuses (a web page could send it there).
        "--listen=0.0.0.0",
        f"--drain-delay={DRAIN_DELAY_S}",
        f"--config={config}",
    ]
    with saxgw_up(argv) as up:
        up.wait_for("Ready. Try:")
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, headers=OPS, timeout=60) as http:
            body = publish_body(MODEL, TEST_LM, text=" ".join(words), delay_ms="1000")
            assert http.post("/publish", json=body).status_code == 200
            ready = http.post("/wait_for_ready", json={"model": MODEL, "timeout": "30s"})
            assert ready.status_code == 200, ready.text
            request = {"model": MODEL, "query": "q"}
            # A client's keep-alive connection, open before the stop, to a model that answers
            # at once.
            quick = {"model": f"{MODEL}-quick", "query": "q"}
            assert http.post("/publish", json=publish_body(quick["model"], TEST_LM)).is_success
            keepalive = httpx.Client(base_url=url, headers=OPS, timeout=60)
            assert keepalive.post("/generate", json=quick).status_code == 200, "not served"
            with http.stream("POST", "/generate_stream", json=request) as response:
                assert response.status_code == 200
                lines = response.iter_lines()
                events = [json.loads(next(x for x in lines if x).removeprefix("data: "))]
                # The client's one stream is open: a second is refused.
                second = http.post("/generate_stream", json=request)
                assert second.status_code == 429, second.text
                assert _grpc_health(f"127.0.0.1:{port}") == [SERVING] * 5
                started = time.monotonic()
                up.proc.send_signal(signal.SIGTERM)
                # A load balancer is told at once to send new calls elsewhere: /healthz stayed
                # 200 for ~3 s, until Envoy's health checks found the gateways stopping.
                assert _healthz_fails_within(f"{url}/healthz", 1.5)
                # gRPC health on the same port says so too, to Check, List and a new Watch
                # (grpc_health_probe, Kubernetes' grpc probe, a load balancer's gRPC check):
                # the gateways, still serving, answered SERVING for the whole drain delay.
                assert _grpc_health(f"127.0.0.1:{port}") == [NOT_SERVING] * 5
                # The gateways go on serving for the drain delay: the connection's next call
                # is answered, and the connection closed after it (HTTP/2: GOAWAY), so that
                # its client reconnects, through the load balancer, elsewhere. Stopped at
                # once, the gateways left that call a 503.
                late = keepalive.post("/generate", json=quick)
                assert (late.status_code, late.headers["connection"]) == (200, "close")
                assert time.monotonic() - started < DRAIN_DELAY_S
                keepalive.close()
                events += [json.loads(x.removeprefix("data: ")) for x in lines if x]
        assert time.monotonic() - started > 10
        assert up.proc.wait(60) == 0
        up.wait_for(f"stopping... (new connections go elsewhere for {DRAIN_DELAY_S} s, then")
    assert [e["deltas"][0]["text"] for e in events[:-1]] == [words[0]] + [
        f" {w}" for w in words[1:]
    ]
    final = events[-1]
    assert final["done"] is True and "error" not in final, final
    assert [t["text"] for t in final["texts"]] == [" ".join(words)]


def test_health_watches_open_before_the_stop_hear_not_serving_when_the_drain_begins(
    tmp_path: Path,
) -> None:
    # Envoy marks NOT_SERVING only on replies that begin after /healthcheck/fail, and the
    # gateways, still serving, went on saying SERVING: a Watch opened before the stop, through
    # Envoy or at a gateway's own port, heard nothing until the gateways stopped, while
    # /healthz was 503 at once.
    port, gateway, admin = free_port(), free_port(), free_port()
    config = tmp_path / "saxgw.yaml"
    config.write_text(_config('"/sax/test/*"'))
    argv = [
        *own_ports_and_dirs(port, tmp_path),
        f"--gateway-ports={gateway}",
        f"--envoy-admin-port={admin}",  # the last one counts
        "--ops-port=0",
        "--listen=0.0.0.0",  # off loopback, so that Envoy's admin takes /healthcheck/fail
        # Long enough for Envoy's health checks (two, 2 s apart) to fail the gateway.
        "--drain-delay=20",
        f"--config={config}",
    ]
    with saxgw_up(argv) as up:
        up.wait_for("Ready. Try:")
        url = f"http://127.0.0.1:{port}"
        with (
            sync_channel(f"127.0.0.1:{port}") as through_envoy,
            sync_channel(f"127.0.0.1:{gateway}") as direct,
            httpx.Client(base_url=url, headers=OPS, timeout=30) as keepalive,
        ):
            watches = [
                health_pb2_grpc.HealthStub(c).Watch(health_pb2.HealthCheckRequest(), timeout=60)
                for c in (through_envoy, direct)
            ]
            assert [next(w).status for w in watches] == [SERVING, SERVING]
            assert keepalive.get("/listcells").status_code == 200
            up.proc.send_signal(signal.SIGTERM)
            assert [next(w).status for w in watches] == [NOT_SERVING, NOT_SERVING]
            # Heard while the gateways still serve: the drain has not ended.
            late = keepalive.get("/listcells")
            assert (late.status_code, late.headers["connection"]) == (200, "close")
            for watch in watches:
                watch.cancel()
            # Once Envoy's own health checks find the gateway NOT_SERVING, it still gets the
            # calls (no gateway is healthy: Envoy's panic routing sends them to all), until
            # the drain ends.
            address, deadline = f"127.0.0.1:{gateway}", time.monotonic() + 15
            while "failed_active_hc" not in _gateway_hosts(admin)[address]["health_flags"]:
                assert time.monotonic() < deadline, _gateway_hosts(admin)
                time.sleep(0.2)
            with httpx.Client(base_url=url, headers=OPS, timeout=30) as http:
                assert http.get("/listcells").status_code == 200
            up.proc.send_signal(signal.SIGINT)  # a second stop signal: the drain ends at once
        assert up.proc.wait(60) == 130
