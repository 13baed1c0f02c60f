"""Direct mode's xDS files as Envoy reads them: a bare Envoy of the stack's binary, started
from direct mode's config, and the files written as the control plane writes them."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from gateway.edge import parse_edge
from gateway.launch.direct import DirectFiles
from gateway.launch.direct._resources import Model, cluster, route_table
from gateway.launch.envoy import envoy_binary, render
from tests._stacks import loopback_envoy
from tests._wait import wait_until

pytestmark = pytest.mark.e2e

EDGE = parse_edge({"direct": {"generate": True}})
GATEWAY = ("127.0.0.1:1",)  # never called
CDS = "cluster_manager.cds.update_attempt"
RDS = r"http\.ingress_http\.rds\..+\.update_attempt"


@pytest.fixture
def envoy(tmp_path: Path) -> Iterator[tuple[DirectFiles, Callable[[str], int]]]:
    """Envoy in direct mode, its files, and a reader of its stats (a sum over a regex)."""
    settings = replace(loopback_envoy(direct_dir=str(tmp_path / "d")), gateway_endpoints=GATEWAY)
    (tmp_path / "d").mkdir()
    config = tmp_path / "envoy.json"
    config.write_text(render(settings, secrets_dir=tmp_path / "secrets"))
    admin = f"http://127.0.0.1:{settings.admin_port}"

    def stat(regex: str) -> int:
        text = httpx.get(f"{admin}/stats?filter=^{regex}$", timeout=10).text
        return sum(int(line.rpartition(":")[2]) for line in text.splitlines() if line)

    def ready() -> bool:
        try:
            return httpx.get(f"{admin}/ready", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    argv = [str(envoy_binary()), "-c", str(config), "-l", "error", "--disable-hot-restart"]
    with subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as process:
        try:
            wait_until("Envoy is ready", ready)
            yield DirectFiles(tmp_path / "d"), stat
        finally:
            process.terminate()
            process.wait(timeout=30)


def test_each_file_written_is_read_once(
    envoy: tuple[DirectFiles, Callable[[str], int]],
) -> None:
    """Envoy parses the CDS file when it is written, and the RDS file when it is: watched as
    a directory (``watched_directory``), a rename of either had Envoy read both again, and
    parse the unchanged one whole (at 500 models: 0.62 s of its main thread a model
    published, 0.40 s read once; in a storm of publishes, its watchdog aborted it)."""
    files, stat = envoy
    models = [Model(f"/sax/test/m{i}", ("127.0.0.1:1000",), "") for i in range(3)]
    cds, rds = stat(CDS), stat(RDS)
    files.write_clusters([cluster(m, EDGE) for m in models])
    wait_until("the clusters are read", lambda: stat(CDS) > cds)
    files.write_routes(route_table(files.read_base(), models, EDGE, 20.0))
    wait_until("the routes are read", lambda: stat(RDS) > rds)
    clusters = stat(r"cluster_manager\.active_clusters")
    files.write_clusters([cluster(m, EDGE) for m in models[:2]])
    wait_until("the cluster is gone", lambda: stat(r"cluster_manager\.active_clusters") < clusters)
    assert (stat(CDS) - cds, stat(RDS) - rds) == (2, 1)
