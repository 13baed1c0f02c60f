"""Compose files and Dockerfiles, checked statically: they parse, their commands are ones our
CLIs accept and agree with each other, and the Envoy config they render is one the real Envoy
binary accepts. `make container-test` runs them for real (tests/container)."""

from __future__ import annotations

import argparse
import http.server
import json
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from gateway.cli.main import main, parser
from gateway.configfile import load_config
from gateway.edge import EdgeConfig
from gateway.launch.envoy import envoy_binary, run_script
from gateway.launch.stack import ENVOY_JSON_ENV, ENVOY_JSON_LOG
from tests._wait import wait_until

ROOT = Path(__file__).resolve().parents[2]


_VARIABLE = re.compile(r"\$\{[A-Z_]+:-([^}]*)\}")


def _defaults(value: Any) -> Any:
    """``value`` with every ``${VAR:-default}`` replaced by its default, as Compose would."""
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: m.group(1), value)
    if isinstance(value, list):
        return [_defaults(v) for v in value]
    if isinstance(value, dict):
        return {k: _defaults(v) for k, v in value.items()}
    return value


def _compose(name: str = "docker-compose.yml") -> dict[str, Any]:
    return dict(_defaults(yaml.safe_load((ROOT / name).read_text())))


OVERRIDES = [None, "deploy/compose/host-network.yml"]


def _services(override: str | None) -> dict[str, Any]:
    """The compose file's services, with ``override``'s merged in as compose merges them."""
    services: dict[str, Any] = _compose()["services"]
    for name, service in (_compose(override)["services"] if override else {}).items():
        services[name] = {**services[name], **service}
    return services


def test_compose_services_use_our_image_or_official_ones() -> None:
    services = _compose()["services"]
    assert {"cell", "gateway", "envoy-config", "envoy", "gateway-tpu", "envoy-tpu"} <= set(services)
    for name, service in services.items():
        image = service["image"]
        assert image == "sax-gateway:latest" or image.startswith(
            ("envoyproxy/envoy:v1.40", "us-docker.pkg.dev/cloud-tpu-images/inference/sax-")
        ), name
        if image == "sax-gateway:latest":
            assert service["build"]["args"] == {"BASE": "python:3.11-slim"}, name
        assert "ports" not in service, f"{name}: publish ports in docker-compose.override.yml"
    published = _compose("docker-compose.override.yml")["services"]
    assert published == {
        "envoy": {"ports": ["8888:8888", "127.0.0.1:8889:8889"]},  # ops: Envoy's network
        "envoy-tpu": {"ports": ["8888:8888"]},
    }


def _envoy_config_args(services: dict[str, Any]) -> argparse.Namespace:
    return parser().parse_args(services["envoy-config"]["command"])


@pytest.mark.parametrize("override", OVERRIDES)
def test_compose_commands_parse_and_agree(override: str | None) -> None:
    services = _services(override)
    for name in ("gateway", "envoy-config", "gateway-tpu"):
        argv = services[name]["command"]
        assert parser().parse_args(argv).command == argv[0]
    config = _envoy_config_args(services)
    gateway = parser().parse_args(services["gateway"]["command"])
    assert config.gateway in (
        [f"gateway:{gateway.port}"],
        [f"{gateway.host}:{gateway.port}"],
    )
    # run-envoy.sh ADMIN_PORT DRAIN_SECONDS envoy ...: it drains through the admin port that
    # envoy-config rendered, within the container's stop grace period.
    bash, script, admin_port, drain, *envoy = services["envoy"]["command"]
    assert (bash, script) == ("bash", "/etc/envoy/run-envoy.sh")
    assert int(admin_port) == config.admin_port
    assert envoy[:3] == ["envoy", "-c", "/etc/envoy/envoy.yaml"]
    assert envoy[envoy.index("--log-format") + 1] == ENVOY_JSON_LOG  # as `saxgw up`'s
    assert envoy[envoy.index("--drain-time-s") + 1] == drain
    # Not a worker per core of the host (Envoy's default; tests/unit/test_k8s.py).
    assert envoy[envoy.index("--concurrency") + 1] == "2"
    assert int(drain) < int(services["envoy"]["stop_grace_period"].removesuffix("s"))
    if override:
        assert all(s["network_mode"] == "host" for s in services.values() if "profiles" not in s)
    # ops adds up the gateway's metrics files and Envoy's stats from its admin port.
    ops = parser().parse_args(services["ops"]["command"])
    assert ops.command == "ops"
    assert ops.metrics_dir == gateway.metrics_dir == "/run/saxgw/metrics"
    assert ops.envoy_admin == f"127.0.0.1:{config.admin_port}"
    for name in ("gateway", "ops"):
        assert f"metrics:{ops.metrics_dir}" in services[name]["volumes"], name
    if override:
        assert (ops.host, ops.port) == ("127.0.0.1", 18889)  # SAXGW_CT_OPS_PORT
    else:
        # Envoy's admin listens on its loopback: ops joins Envoy's network to reach it.
        assert services["ops"]["network_mode"] == "service:envoy"
        assert (ops.host, ops.port) == ("0.0.0.0", 8889)


@pytest.mark.parametrize("override", OVERRIDES)
def test_compose_stops_envoy_with_the_gateway_so_a_long_stream_ends_with_its_last_message(
    override: str | None,
) -> None:
    # `docker compose stop` (and down) signals a service only once those that depend on it
    # have exited: Envoy depended on the gateway, so the gateway kept serving a stream until
    # Envoy's drain ran out and Envoy stopped under it, cutting it with no last message
    # (measured: a 30 s stream, Envoy stopped 20.8 s after SIGTERM, curl: transfer closed with
    # outstanding read data). Signalled together, the gateway ends it with its last message
    # a second before its grace period ends, through Envoy, whose drain outlasts that period.
    services = _services(override)
    for envoy, gateway in (("envoy", "gateway"), ("envoy-tpu", "gateway-tpu")):
        assert gateway not in services[envoy]["depends_on"], envoy
        grace = parser().parse_args(services[gateway]["command"]).grace_period
        drain = int(services[envoy]["command"][3])
        stop = {
            n: int(services[n]["stop_grace_period"].removesuffix("s")) for n in (envoy, gateway)
        }
        assert grace + 1 < drain < stop[envoy], envoy
        assert grace + 5 < stop[gateway], gateway  # the gateway's own end of its grace
        assert grace >= 15, gateway  # streams were drained for Envoy's 20 s before


def test_run_envoy_gives_envoy_the_zone_its_json_log_names() -> None:
    # Every container runs Envoy through run-envoy.sh with ENVOY_JSON_LOG, whose times end in
    # Z; spdlog writes the local time, so a host zone (TZ set, /etc/localtime mounted) made
    # each Envoy line hours off the access log's and the gateway's. Here the command is
    # `date` in Envoy's place.
    env = {"PATH": "/usr/bin:/bin", "TZ": "Asia/Tokyo"}
    command = ["bash", str(run_script()), "1", "1", "date", "+%z"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout) == (0, "+0000\n")
    assert ENVOY_JSON_ENV == {"TZ": "UTC"}  # what `saxgw up` gives it


class _FakeAdmin(http.server.BaseHTTPRequestHandler):
    """Envoy's admin as run-envoy.sh's drain asks it: no request active; the times of its
    counts are kept in ``counts``."""

    counts: ClassVar[list[float]] = []

    def do_GET(self) -> None:
        self.counts.append(time.monotonic())
        self._reply(b"http.ingress_http.downstream_rq_active: 0\n")

    def do_POST(self) -> None:
        self._reply(b"OK\n")

    def _reply(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


def _catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (a shell: once its trap is set). A
    fixed 0.3 s was too short for bash to reach the trap on a loaded host: SIGTERM killed it."""
    with open(f"/proc/{pid}/status") as status:
        caught = next(line for line in status if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) >> (signum - 1) & 1)


def test_run_envoy_serves_new_connections_for_its_drain_delay_however_idle() -> None:
    # A pod's deletion reaches kube-proxy and the load balancers only seconds after SIGTERM,
    # and they send new connections meanwhile: an idle Envoy was stopped 1.75 s after SIGTERM
    # and refused them (measured: every new call from 2.3 s on refused, the gateway beside it
    # still serving). DRAIN_DELAY keeps it serving, idle or not; the pods give it 5 s.
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeAdmin) as admin:
        counts: list[float] = []
        _FakeAdmin.counts = counts
        threading.Thread(target=admin.serve_forever, daemon=True).start()
        envoy = ["bash", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]  # exits 0
        command = ["bash", str(run_script()), str(admin.server_port), "20", "2", *envoy]
        run = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        try:
            wait_until("run-envoy.sh has set its trap", lambda: _catches(run.pid, signal.SIGTERM))
            stopped = time.monotonic()
            run.send_signal(signal.SIGTERM)
            _, said = run.communicate(timeout=30)
            took = time.monotonic() - stopped
            admin.shutdown()
        finally:
            run.kill()
    assert run.returncode == 0
    assert counts[0] - stopped >= 2  # the drain counts only after the delay
    # No more while nothing is active: one count finds none (the drain's), one says so as
    # Envoy stops; a drain that went on would count every 0.5 s for its 20 s.
    assert len(counts) == 2, counts
    assert counts[1] - counts[0] >= 0.75  # the spans' 0.75 s
    # The delay and the spans': 2.75 s; the drain's 20 s were the bad. 10 s, not 4 s: a
    # backstop with room for a loaded host's slow shell, the counts above being the check.
    assert 2.75 <= took < 10
    assert "serving new connections for 2s, draining for up to 20s" in said


def test_compose_metrics_volume_is_fresh_per_run() -> None:
    # tmpfs: gone when the last container using it stops, so no run counts an earlier one's
    # files; owned by the image's user, who runs the gateway and ops.
    volume = _compose()["volumes"]["metrics"]
    assert volume["driver_opts"]["type"] == "tmpfs"
    assert "uid=10001" in volume["driver_opts"]["o"].split(",")


@pytest.mark.parametrize("override", OVERRIDES)
def test_compose_gateway_and_envoy_read_the_mounted_config(override: str | None) -> None:
    services = _services(override)
    for name in ("gateway", "envoy-config", "gateway-tpu"):
        assert parser().parse_args(services[name]["command"]).config == "/etc/saxgw/config.yaml"
        assert "./deploy/compose/config:/etc/saxgw:ro" in services[name]["volumes"], name
    # The default folder's config is empty: the stack is open, as the seed is.
    default = ROOT / "deploy/compose/config/config.yaml"
    assert load_config(default).edge == EdgeConfig()
    assert load_config(default).models == {}


@pytest.mark.parametrize("gateway", ["gateway:50051", "127.0.0.1:50051"])
def test_rendered_container_envoy_config_is_valid(tmp_path: Path, gateway: str) -> None:
    assert main(["envoy-config", "--gateway", gateway, "--out", str(tmp_path)]) == 0
    config = (tmp_path / "envoy.yaml").read_text()
    assert (tmp_path / "run-envoy.sh").read_text().startswith("#!/usr/bin/env bash")
    for name in ("descriptor.binpb", "openapi.json"):  # Envoy reads both at start
        assert (tmp_path / name).stat().st_size > 0
        assert str(tmp_path / name) in config
    for name in ("docs/index.html", "docs/docs.js", "swagger-ui/swagger-ui-bundle.js"):
        assert (tmp_path / name).stat().st_size > 0  # the /docs page, read at start too
        assert str(tmp_path / name) in config
    result = subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "-c", str(tmp_path / "envoy.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout + result.stderr


def test_dockerfile_copies_what_exists() -> None:
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source


def test_the_images_default_gateway_listens_on_loopback() -> None:
    # The gateway trusts the identity header Envoy sets: a container run with the image's
    # default command listened on 0.0.0.0, where anything on its network could claim to be
    # any client. Deployments that need another address say so in their own command.
    [cmd] = [
        line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("CMD ")
    ]
    args = parser().parse_args(json.loads(cmd.removeprefix("CMD ")))
    assert (args.command, args.host) == ("gateway", "127.0.0.1")
    assert "EXPOSE 50051" not in (ROOT / "Dockerfile").read_text()
