"""The pod's readiness probe (deploy/k8s/base/deployment.yaml) against real processes, with the
`tls:` section docs/deploy.md tells operators to add: Envoy's public port then speaks TLS and
wants a client certificate (mTLS), so the probe the manifest had, a plain-HTTP GET of Envoy's
/healthz, never passed and the pods never became Ready. The probe now asks the ops server's
/readyz in plain HTTP, and the ops server runs here with the manifest's own args; it answers
as Envoy's /healthz (asked here over mTLS) does: 200 while the cell is up, 503 while it is
down. (A draining Envoy: tests/integration/test_ops_server.py, and the pod in tests/container.)
"""

from __future__ import annotations

import ssl
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from gateway.edge import EdgeConfig, Tls
from gateway.launch.processes import free_port
from gateway.launch.stack import Stack, StackSettings
from tests._deployment import http_readiness
from tests._stacks import (
    cell_settings,
    gateway_settings,
    healthy_stack,
    logs_dir,
    loopback_envoy,
    ops_as_deployed,
)
from tests.e2e.security._credentials import CertificateAuthority


@dataclass
class TlsPod:
    stack: Stack
    ops_port: int
    tls: ssl.SSLContext
    """Trusts the CA and presents a client certificate it signed: what Envoy's port wants."""

    def kubelet(self) -> int | None:
        """kubelet's readiness probe as the manifest writes it: plain HTTP to the pod's port;
        the status, or None for no answer within kubelet's timeout."""
        path, _, timeout = http_readiness("ops")
        try:
            return httpx.get(f"http://127.0.0.1:{self.ops_port}{path}", timeout=timeout).status_code
        except httpx.TimeoutException:
            return None

    def healthz(self) -> int:
        """Envoy's own /healthz, over mTLS."""
        url = f"{self.stack.http_url}/healthz"
        return httpx.get(url, verify=self.tls, timeout=10).status_code


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsPod]:
    base = tmp_path_factory.mktemp("readiness")
    ca = CertificateAuthority.generate()
    files = {"ca.pem": ca.pem()}
    files["server.pem"], files["server.key"] = ca.issue("saxgw server", server=True)
    files["client.pem"], files["client.key"] = ca.issue("prober", server=False)
    for name, data in files.items():
        (base / name).write_bytes(data)
    tls = Tls(
        cert_file=base / "server.pem",
        key_file=base / "server.key",
        client_ca_file=base / "ca.pem",
    )
    settings = StackSettings(
        # The gateway probes its cell every 0.5 s: an outage shows within seconds.
        gateway=gateway_settings(base, health_interval=0.5),
        cell=cell_settings(base, servers=0),
        gateway_ports=(free_port(),),
        envoy=loopback_envoy(edge=EdgeConfig(tls=tls)),
        log_dir=str(logs_dir(base)),
    )
    context = ssl.create_default_context(cafile=str(base / "ca.pem"))
    context.load_cert_chain(str(base / "client.pem"), str(base / "client.key"))
    with (
        healthy_stack(settings, "the TLS stack") as stack,
        ops_as_deployed(base, f"127.0.0.1:{stack.envoy.admin_port}") as (_, port),
    ):
        yield TlsPod(stack, port, context)


def _until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:g} s for {what}")
        time.sleep(0.2)


def test_the_readiness_probe_passes_in_plain_http_while_envoys_port_wants_mtls(
    pod: TlsPod,
) -> None:
    assert pod.healthz() == 200
    assert pod.kubelet() == 200
    path, _, _ = http_readiness("ops")
    body = httpx.get(f"http://127.0.0.1:{pod.ops_port}{path}", timeout=10).text
    assert body == "ok: 1 of 1 gateways healthy\n"
    # What the manifest probed before: Envoy's /healthz in plain HTTP, which its TLS listener
    # never answers.
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{pod.stack.envoy.listen_port}/healthz", timeout=10)


def test_the_readiness_probe_fails_while_the_cell_is_down_and_passes_once_it_is_back(
    pod: TlsPod,
) -> None:
    cell = dict(pod.stack.group.children)["cell"]
    cell.terminate()
    cell.wait(timeout=30)
    try:
        _until(lambda: pod.kubelet() == 503, "/readyz to fail without the cell")
        assert pod.healthz() == 503  # as Envoy's own /healthz says
        path, _, _ = http_readiness("ops")
        body = httpx.get(f"http://127.0.0.1:{pod.ops_port}{path}", timeout=10).text
        assert body == (
            "no gateway is healthy (0 of 1 pass their gRPC health check: the cell is "
            "unreachable, or the gateways are down)\n"
        )
    finally:
        pod.stack.group.restart("cell")
    _until(lambda: pod.kubelet() == 200, "/readyz to pass with the cell back")
    assert pod.healthz() == 200


def test_the_rendered_envoy_config_is_readable_by_its_owner_only(pod: TlsPod) -> None:
    # It may hold API keys (docs/config.md): 0600, as `saxgw envoy-config` writes it; it was
    # 0644, inside a 0700 directory.
    config = pod.stack.metrics_dir.parent / "envoy.yaml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
