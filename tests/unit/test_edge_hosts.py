"""The Host names Envoy answers (gateway/edge/_hosts.py): loopback listeners answer loopback
names and the ones configured, every other listener (containers, Kubernetes) any Host."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.cli._edge import envoy_settings
from gateway.cli.main import main
from gateway.common.loopback import LOOPBACK_NAMES, domains
from gateway.config import ConfigError
from gateway.configfile import parse_config
from gateway.edge import allowed_host
from gateway.edge._hosts import SEVERAL_HOSTS
from gateway.launch.envoy import ADMIN_DRAIN, ADMIN_READS, EnvoySettings, render
from tests._envoy_routes import envoy_yaml


def _virtual_hosts(text: str) -> list[dict[str, Any]]:
    config = envoy_yaml(text)
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    hosts: list[dict[str, Any]] = hcm["typed_config"]["route_config"]["virtual_hosts"]
    return hosts


def test_a_loopback_listener_answers_loopback_names_and_added_ones() -> None:
    # Each name also with the root's dot (`localhost.`), the same name; addresses not.
    rooted = ["localhost.", "*.localhost."]
    assert domains("127.0.0.1", ()) == [*LOOPBACK_NAMES, *rooted]
    assert domains("127.0.0.1", ("gw.example", "localhost")) == [
        *LOOPBACK_NAMES,
        "gw.example",
        *rooted,
        "gw.example.",
    ]
    assert domains("127.0.0.2", ()) == [*LOOPBACK_NAMES, "127.0.0.2", *rooted]
    assert domains("::1", ()) == [*LOOPBACK_NAMES, *rooted]  # as [::1]
    assert domains("127.0.0.1", ("*",)) is None  # the operator's way out
    # IPv4-mapped loopback is loopback: it answered any Host (Python 3.11 says it is not).
    assert domains("::ffff:127.0.0.1", ()) == [*LOOPBACK_NAMES, "[::ffff:127.0.0.1]", *rooted]
    assert domains("::ffff:10.1.2.3", ()) is None


@pytest.mark.parametrize("address", ["0.0.0.0", "10.1.2.3"])
def test_any_other_listener_answers_every_host(address: str) -> None:
    # Kubernetes probes and Services name the pod by addresses and names unknown here.
    assert domains(address, ("gw.example",)) is None
    assert domains("::", ()) is None
    settings = EnvoySettings(gateway_endpoints=["gateway:50051"], listen_address=address)
    (gateway,) = _virtual_hosts(render(settings))
    assert gateway["domains"] == ["*"]


def test_a_listener_on_every_ipv6_address_renders_and_answers_every_host() -> None:
    # `--listen ::` rendered `address: ::`, which is not YAML: Envoy refused the config.
    settings = EnvoySettings(gateway_endpoints=["[::1]:50051"], listen_address="::")
    config = envoy_yaml(render(settings))
    listener = config["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"]["address"] == "::"
    # Envoy dials a gateway at an IPv6 address without its brackets: it looked "[::1]" up in
    # DNS, found nothing, and answered every call 503 "no healthy upstream".
    for cluster in config["static_resources"]["clusters"][:2]:
        [endpoint] = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
        assert endpoint["endpoint"]["address"]["socket_address"] == {
            "address": "::1",
            "port_value": 50051,
        }
    (gateway,) = _virtual_hosts(render(settings))
    assert gateway["domains"] == ["*"]


def test_the_rendered_loopback_config_refuses_other_hosts_with_421() -> None:
    settings = EnvoySettings(gateway_endpoints=["127.0.0.1:50051"], allowed_hosts=("gw.test",))
    gateway, other = _virtual_hosts(render(settings))
    assert gateway["domains"] == [
        *LOOPBACK_NAMES,
        "gw.test",
        "localhost.",
        "*.localhost.",
        "gw.test.",
    ]
    assert other["domains"] == ["*"]
    refusals = [r["direct_response"]["status"] for r in other["routes"]]
    assert refusals == [400, 421, 421]  # two Host lines, CONNECT, then any path


@pytest.mark.parametrize(("listen", "allowed"), [("0.0.0.0", ()), ("127.0.0.1", ("*",))])
def test_where_every_host_is_answered_two_hosts_are_still_refused(
    listen: str, allowed: tuple[str, ...]
) -> None:
    # Envoy joins two Host lines with a comma; where the virtual host answers any name, it
    # served them (tests/e2e/security/test_hosts.py shows the 400 on loopback).
    settings = EnvoySettings(
        gateway_endpoints=["127.0.0.1:50051"], listen_address=listen, allowed_hosts=allowed
    )
    (gateway,) = _virtual_hosts(render(settings))
    assert gateway["domains"] == ["*"]
    assert gateway["routes"][0]["match"]["headers"] == [
        {"name": ":authority", "string_match": {"contains": ","}}
    ]
    assert gateway["routes"][0]["direct_response"] == {
        "status": 400,
        "body": {"inline_string": SEVERAL_HOSTS},
    }


def test_envoy_config_for_containers_answers_every_host(tmp_path: Path) -> None:
    config = tmp_path / "saxgw.yaml"
    config.write_text("allowed_hosts: [gw.test]\n")
    argv = ["envoy-config", "--gateway", "gateway:50051", "--out", str(tmp_path / "out")]
    assert main([*argv, "--config", str(config)]) == 0
    (gateway,) = _virtual_hosts((tmp_path / "out" / "envoy.yaml").read_text())
    assert gateway["domains"] == ["*"]


def test_the_admin_of_a_container_also_takes_the_drain_that_envoy_run_sends(
    tmp_path: Path,
) -> None:
    # run-envoy.sh drains a container's Envoy on SIGTERM through its admin; a laptop's admin
    # (loopback, reachable by DNS rebinding) takes reads only (tests/e2e/test_operate.py).
    argv = ["envoy-config", "--gateway", "gateway:50051", "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    config = envoy_yaml((tmp_path / "out" / "envoy.yaml").read_text())
    assert config["admin"]["allow_paths"] == [*ADMIN_READS, *ADMIN_DRAIN]
    run_envoy = (Path(__file__).parents[2] / "gateway/launch/run-envoy.sh").read_text()
    assert "POST /healthcheck/fail" in run_envoy and "POST '/drain_listeners?" in run_envoy
    laptop = envoy_yaml(render(EnvoySettings(gateway_endpoints=["127.0.0.1:50051"])))
    assert laptop["admin"]["allow_paths"] == list(ADMIN_READS)


@pytest.mark.parametrize(
    ("text", "host"),
    [
        ("gw.example.com", "gw.example.com"),
        ("GW.Example.com", "gw.example.com"),
        ("gw.example.com.", "gw.example.com"),  # the same name, with the root's dot
        ("*.example.com", "*.example.com"),
        ("10.0.0.5", "10.0.0.5"),
        ("[fd00::5]", "[fd00::5]"),
        ("[FD00:0:0::5]", "[fd00::5]"),  # as a browser sends it in Host
        ("*", "*"),
    ],
)
def test_allowed_hosts_are_names_without_ports(text: str, host: str) -> None:
    assert allowed_host(text) == host


@pytest.mark.parametrize("text", ["gw.example:8888", "fd00::5", "[nope]", "a b", "", "-x.com"])
def test_malformed_allowed_hosts_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="without a port"):
        allowed_host(text)


def test_the_file_and_the_flags_add_up() -> None:
    edge = parse_config({"allowed_hosts": ["gw.example", "*.lan"]}).edge
    assert edge.allowed_hosts == ("gw.example", "*.lan")
    base = EnvoySettings(gateway_endpoints=(), allowed_hosts=("tunnel.test",))
    assert envoy_settings(base, edge).allowed_hosts == ("tunnel.test", "gw.example", "*.lan")
    with pytest.raises(ConfigError, match=r"^allowed_hosts\[1\]: expected a host name"):
        parse_config({"allowed_hosts": ["gw.example", "gw.example:80"]})


def test_the_flag_refuses_a_port(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["up", "--allowed-host", "gw.example:8888"])
    assert "without a port; got 'gw.example:8888'" in capsys.readouterr().err
