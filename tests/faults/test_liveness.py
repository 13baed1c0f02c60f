"""The pod's liveness probes (deploy/k8s/base/deployment.yaml), each command run as written
(ports and paths aside) against real processes: it passes a process that answers, whatever it
answers, and fails one that is stopped (SIGSTOP: alive, accepting connections, answering
nothing) within kubelet's timeout. Before, Envoy's probe was a TCP connect, which a stopped
Envoy passes, and the gateway and ops containers had none."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from gateway.launch.envoy import run_script
from tests._deployment import http_liveness, liveness
from tests._stacks import cell_less_gateway, ops_as_deployed, stopped
from tests.faults.conftest import Faults


def _envoy_probe(admin_port: int) -> tuple[list[str], float]:
    return liveness(
        "envoy", {"/etc/envoy/run-envoy.sh": str(run_script()), "9901": str(admin_port)}
    )


def _gateway_probe(port: int) -> tuple[list[str], float]:
    return liveness("gateway", {"python": sys.executable, "127.0.0.1:50051": f"127.0.0.1:{port}"})


def _run(probe: tuple[list[str], float]) -> subprocess.CompletedProcess[str]:
    command, timeout = probe
    # Ends within kubelet's timeout, or this raises: a probe kubelet kills says nothing.
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def _stderr_while_stopped(faults: Faults, port: int, probe: tuple[list[str], float]) -> str:
    """What ``probe`` says, failing (exit 1), while the process listening on ``port`` is
    stopped (SIGSTOP), and that it passes once the process runs again."""
    with stopped(faults.pid(port)):
        hung = _run(probe)
    assert hung.returncode == 1
    assert _run(probe).returncode == 0
    return hung.stderr


def test_envoys_probe_passes_a_live_envoy_and_fails_a_stopped_one(faults: Faults) -> None:
    admin_port = faults.stack.envoy.admin_port
    probe = _envoy_probe(admin_port)
    assert _run(probe).returncode == 0
    said = f"Envoy's admin at 127.0.0.1:{admin_port} did not answer GET /ready within 2s"
    assert _stderr_while_stopped(faults, admin_port, probe).splitlines() == [said]
    faults.healthy()


def test_the_gateways_probe_passes_a_live_gateway_and_fails_a_stopped_one(
    faults: Faults,
) -> None:
    port = faults.stack.settings.gateway_ports[0]
    probe = _gateway_probe(port)
    ok = _run(probe)
    assert (ok.returncode, ok.stderr) == (0, "")
    assert _stderr_while_stopped(faults, port, probe) == (
        f"grpc.health.v1 Check at 127.0.0.1:{port}: no answer within 2 s\n"
    )
    faults.healthy()


def test_the_cells_probe_passes_a_live_cell_and_fails_a_stopped_admin_or_model_server(
    faults: Faults,
) -> None:
    # The cell restarts a server that exits, not one that hangs; its container had no
    # liveness probe, so a stopped admin or model server stayed so (deploy/k8s embedded-cell).
    cell = faults.stack.settings.cell
    assert cell is not None
    admin, model = cell.admin_port, cell.model_server_ports[0]
    command, timeout = liveness(
        "cell",
        {"python": sys.executable, "127.0.0.1:10000": f"127.0.0.1:{admin}",
         "127.0.0.1:10001": f"127.0.0.1:{model}"},
    )  # fmt: skip
    probe = (command, timeout)
    ok = _run(probe)  # the admin and the model server answer UNIMPLEMENTED: alive
    assert (ok.returncode, ok.stderr) == (0, "")
    for port in (admin, model):
        assert _stderr_while_stopped(faults, port, probe) == (
            f"grpc.health.v1 Check at 127.0.0.1:{port}: no answer within 2 s\n"
        )
    faults.healthy()


def test_the_gateways_probe_passes_a_gateway_whose_cell_is_down(tmp_path: Path) -> None:
    # NOT_SERVING: no cell under SAX_ROOT. Restarting the gateway would not bring one.
    with cell_less_gateway(tmp_path) as (_, port):
        answered = _run(_gateway_probe(port))
    assert (answered.returncode, answered.stderr) == (0, "")
    assert (
        "health: NOT_SERVING (no admin answers: no cell under SAX_ROOT"
        in (tmp_path / "gateway.log").read_text()
    )


def _kubelet_get(port: int) -> int | None:
    """kubelet's httpGet probe: the status, or None for no answer within its timeout."""
    path, _, timeout = http_liveness("ops")
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=timeout).status_code
    except httpx.TimeoutException:
        return None


def test_the_ops_probe_passes_while_envoy_hangs_and_fails_a_stopped_ops_server(
    faults: Faults, tmp_path: Path
) -> None:
    admin_port = faults.stack.envoy.admin_port
    with ops_as_deployed(tmp_path, f"127.0.0.1:{admin_port}") as (pid, port):
        assert _kubelet_get(port) == 200
        # A scrape reads Envoy's admin; the probe does not, so a hung Envoy is Envoy's
        # probe's business, not a reason to restart the ops container too.
        with stopped(faults.pid(admin_port)):
            assert _kubelet_get(port) == 200
        with stopped(pid):
            assert _kubelet_get(port) is None
        assert _kubelet_get(port) == 200
    faults.healthy()
