"""`saxgw up` as a user runs it: the banner, a restart that does not stall, busy ports, and the
files it leaves under SAX_ROOT (issue #11)."""

from __future__ import annotations

import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
from saxml.protobuf import admin_pb2

from gateway.launch.ports import listener_pid
from gateway.launch.processes import free_port
from tests._envoy_routes import envoy_yaml, unary_route_timeouts
from tests.e2e._published import TEST_LM
from tests.e2e._up import own_ports_and_dirs, saxgw_up

MODEL = "/sax/test/restored"


def _scrape_until(url: str, text: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while text not in (scrape := httpx.get(url).text) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert text in scrape, scrape
    return scrape


def _unary_route_timeouts(port: int) -> set[str]:
    """The route timeouts (streams' 0s aside) of the config the Envoy on ``port`` runs."""
    pid = listener_pid(port)
    assert pid is not None
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return unary_route_timeouts(envoy_yaml(Path(argv[argv.index(b"-c") + 1].decode()).read_text()))


def test_up_restart_serves_restored_models_and_refuses_busy_ports(tmp_path: Path) -> None:
    port, ops = free_port(), free_port()
    argv = [*own_ports_and_dirs(port, tmp_path), f"--ops-port={ops}", "--listen=127.0.0.1"]
    argv.append("--log-format=text")  # the banner's lines as text, as this test reads them
    url = f"http://127.0.0.1:{port}"
    with saxgw_up(argv) as up:
        up.wait_for("Ready. Try:")
        # The banner comes after health passes, never before.
        assert httpx.get(f"{url}/healthz").status_code == 200
        assert f"  curl -s {url}/listcells" in up.lines
        metrics = f"http://127.0.0.1:{ops}/metrics"
        assert f"Prometheus metrics         {metrics}  (gateway + Envoy)" in up.lines
        body = {"model": MODEL, "model_path": TEST_LM, "checkpoint": "None", "replicas": 1}
        assert httpx.post(f"{url}/publish", json=body).status_code == 200
        ready = httpx.post(f"{url}/wait_for_ready", json={"model": MODEL, "timeout": "30s"})
        assert ready.status_code == 200, ready.text
        # The ops port: one scrape URL for the gateway and Envoy (issue #13); the gateway
        # writes its counts out once a second. (The ops server writes labels sorted.)
        labels = 'client="anonymous",grpc_code="OK",grpc_method="PublishModel"'
        publish = f"saxgw_requests_total{{{labels}}}"
        scrape = _scrape_until(metrics, publish)
        assert "\nsaxgw_envoy_up 1\n" in scrape
        assert "envoy_cluster_membership_healthy" in scrape

        # A second `saxgw up` on the same ports says so at once, without a traceback.
        second = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "up", *argv],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1
        # The lowest of its ports, which the first `saxgw up` claimed (gateway/launch/ports.py).
        lowest = min(int(a.split("=")[1]) for a in argv if a.split("=")[1].isdigit())
        assert second.stderr.startswith(f"saxgw: port {lowest} is in use (")
        assert f" by pid {up.proc.pid} (" in second.stderr
        assert "Traceback" not in second.stderr + second.stdout

    with saxgw_up(argv) as up:
        up.wait_for("Ready. Try:")
        up.wait_for(f"saxgw: restored models ready: {MODEL} (1/1)")
        # Restored models were placed at once: well within this 10 s deadline (before the
        # fix the first call waited ~27 s for old servers that never came back).
        generate = httpx.post(
            f"{url}/generate", json={"model": MODEL, "query": "back", "timeout": "10s"}, timeout=30
        )
        assert generate.status_code == 200, generate.text
        assert generate.json() == {"texts": [{"text": "back", "score": -0.1}]}

    for root in (tmp_path / "sax-root", tmp_path / "fs-root"):
        for path in [root, *root.rglob("*")]:
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode == (0o755 if path.is_dir() else 0o644), (path, oct(mode))
    state = admin_pb2.State.FromString(
        (tmp_path / "fs-root" / "sax" / "test" / "state.proto").read_bytes()
    )
    [model] = state.models
    assert model.model_id == MODEL
    assert "lm.generate" in model.method_names


def test_up_with_keys_reports_restored_models(tmp_path: Path) -> None:
    # `saxgw up` asked Envoy, without a credential, which models were restored: with API keys
    # configured that was a 401, read as "none", and the line below never came.
    key = "sk-ops-3f9c2b7e1d6a4f08"
    config = tmp_path / "saxgw.yaml"
    entry = f"{{key: {key}, client: ops, roles: [admin, data]}}"
    config.write_text(f"auth:\n  api_keys:\n    - {entry}\n")
    port = free_port()
    # And calls allowed 400 s: Envoy cut them at its 300 s route timeout, with its bare 504.
    argv = [
        *own_ports_and_dirs(port, tmp_path),
        "--ops-port=0",
        f"--config={config}",
        "--default-timeout=400",
        "--log-format=text",  # the banner's lines as text, as this test reads them
    ]
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {key}"}
    with saxgw_up(argv) as up:
        up.wait_for("Ready. Try:")
        assert _unary_route_timeouts(port) == {"410s"}
        assert f'  curl -s -H "Authorization: Bearer $SAXGW_API_KEY" {url}/listcells' in up.lines
        body = {"model": MODEL, "model_path": TEST_LM, "checkpoint": "None", "replicas": 1}
        assert httpx.post(f"{url}/publish", json=body, headers=headers).status_code == 200
        ready = httpx.post(
            f"{url}/wait_for_ready", json={"model": MODEL, "timeout": "30s"}, headers=headers
        )
        assert ready.status_code == 200, ready.text
    with saxgw_up(argv) as up:
        up.wait_for(f"saxgw: restored models ready: {MODEL} (1/1)")


def test_up_started_in_a_directory_of_python_files_serves(tmp_path: Path) -> None:
    # Every child ran `python -m ...`, which puts the current directory first on sys.path: in
    # a directory holding a gateway.py (or a timeit.py, which prometheus_client imports) each
    # gateway died at import, and ran whatever the file held.
    here = tmp_path / "project"
    here.mkdir()
    for name in ("gateway.py", "timeit.py", "grpc.py"):
        (here / name).write_text(f"raise SystemExit('{name} of the current directory ran')\n")
    port = free_port()
    argv = [*own_ports_and_dirs(port, tmp_path), "--ops-port=0", "--log-format=text"]
    with saxgw_up(argv, cwd=here) as up:
        up.wait_for("Ready. Try:")
        response = httpx.get(f"http://127.0.0.1:{port}/listcells", timeout=30)
        assert (response.status_code, response.json()) == (200, {"cells": ["/sax/test"]})


def test_up_names_a_restored_model_that_failed_to_load(tmp_path: Path) -> None:
    # A restored model that failed to load never serves: `saxgw up` waited for it for good,
    # asking the gateway twice a second, and said nothing, not even of the models that did.
    port = free_port()
    argv = [*own_ports_and_dirs(port, tmp_path), "--ops-port=0"]
    url = f"http://127.0.0.1:{port}"
    broken = "/sax/test/broken"
    # And one that no model server serves: it neither serves nor fails, and held back the
    # news of the others until `saxgw up` gave up on it (after 90 s, past wait_for's 50).
    models: list[tuple[str, str, dict[str, str]]] = [
        (MODEL, TEST_LM, {}),
        (broken, TEST_LM, {"fail_load": "disk on fire"}),
        ("/sax/test/orphan", "no.server.Serves", {}),
    ]
    with saxgw_up(argv) as up:
        up.wait_for("Ready. Try:")
        for model, path, overrides in models:
            body = {"model": model, "model_path": path, "checkpoint": "None", "replicas": 1}
            published = httpx.post(f"{url}/publish", json={**body, "overrides": overrides})
            assert published.status_code == 200, published.text
    with saxgw_up(argv) as up:
        up.wait_for(f"restored models ready: {MODEL} (1/1)")  # a JSON record here
        # Its own line (JSON here: stdout is no terminal), with the admin's load error.
        up.wait_for(f"restored model {broken} does not serve: ")
        [line] = [line for line in up.lines if "does not serve" in line]
        assert "TestLM failed to load: disk on fire" in line


def test_two_ups_started_at_once_on_the_same_ports_one_serves(tmp_path: Path) -> None:
    # Both used to find the ports free (the check came well before the processes that bind
    # them), and both started a stack; the loser failed later with "cell exited" or worse.
    port = free_port()
    argv = [*own_ports_and_dirs(port, tmp_path), f"--ops-port={free_port()}"]
    argv = [a for a in argv if not a.startswith("--log-dir=")]
    with (
        saxgw_up([*argv, f"--log-dir={tmp_path / 'logs-a'}"]) as a,
        saxgw_up([*argv, f"--log-dir={tmp_path / 'logs-b'}"]) as b,
    ):
        deadline = time.monotonic() + 60
        while a.proc.poll() is None and b.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        loser, winner = (a, b) if a.proc.poll() is not None else (b, a)
        assert loser.proc.wait(10) == 1
        loser.close()
        # One line, naming the lowest of the ports, which the winner claimed first.
        lowest = min(int(f.split("=")[1]) for f in argv if f.split("=")[1].isdigit())
        [line] = loser.lines
        assert line.startswith(f"saxgw: port {lowest} is in use (")
        assert f") by pid {winner.proc.pid} ({sys.executable} -P -m gateway.cli up " in line
        assert line.endswith(
            "; is another `saxgw up` running? Stop it, or choose other ports "
            "(see `saxgw up --help`)."
        )
        loser_logs = tmp_path / ("logs-a" if loser is a else "logs-b")
        assert list(loser_logs.iterdir()) == []  # it started nothing
        winner.wait_for("Ready. Try:")
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200


def test_up_on_ipv6_loopback_serves_there_and_says_so(tmp_path: Path) -> None:
    # `saxgw up --listen ::1` stopped at a traceback before it started anything (its port
    # check was IPv4 only); past that, it waited for a /healthz it asked at 127.0.0.1, where
    # nothing listened, and warned the cell was unreachable; `--ops-listen ::1` failed the
    # whole stack. An address not this machine's was a traceback too.
    port, ops = free_port(), free_port()
    argv = [*own_ports_and_dirs(port, tmp_path), f"--ops-port={ops}", "--log-format=text"]
    elsewhere = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "up", *argv, "--listen=192.0.2.1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (elsewhere.returncode, elsewhere.stdout) == (1, "")
    assert elsewhere.stderr == (
        f"saxgw: cannot listen on 192.0.2.1:{port} (Envoy's public port, --port): Cannot "
        "assign requested address; --listen and --ops-listen take an address of this "
        "machine (0.0.0.0 or :: for every one)\n"
    )
    url, metrics = f"http://[::1]:{port}", f"http://[::1]:{ops}/metrics"
    with saxgw_up([*argv, "--listen=::1", "--ops-listen=::1"]) as up:
        up.wait_for("Ready. Try:", timeout=40)
        assert f"HTTP/JSON, gRPC, grpc-web  {url}  (Envoy; /healthz)" in up.lines
        assert f"Prometheus metrics         {metrics}  (gateway + Envoy)" in up.lines
        assert f"  .venv/bin/saxgw --gateway [::1]:{port} ls /sax/test" in up.lines
        assert not any("still waiting" in line for line in up.lines)
        body = {"model": MODEL, "model_path": TEST_LM, "checkpoint": "None", "replicas": 1}
        assert httpx.post(f"{url}/publish", json=body).status_code == 200  # Host: [::1]:port
        listed = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "--gateway", f"[::1]:{port}", "ls", MODEL],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listed.returncode == 0, listed.stderr
        refused = httpx.get(f"{url}/listcells", headers={"host": f"evil.example:{port}"})
        assert refused.status_code == 421
        _scrape_until(metrics, "\nsaxgw_envoy_up 1\n")
    # "::", every interface, is both families': Envoy bound it IPv6 only, and refused IPv4
    # clients the ops port (Python's, dual-stack) answered.
    with saxgw_up([*argv, "--listen=::", "--ops-listen=::", "--drain-delay=0"]) as up:
        up.wait_for("Ready. Try:", timeout=40)
        for host in ("127.0.0.1", "[::1]"):
            assert httpx.get(f"http://{host}:{port}/listcells").json() == {"cells": ["/sax/test"]}
            assert httpx.get(f"http://{host}:{ops}/livez").text == "ok\n"
