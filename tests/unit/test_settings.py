"""One settings tree: each process's command line comes from one function, and parsing it
gives the same settings back; the CLI's defaults are the settings' defaults."""

from __future__ import annotations

import argparse
import dataclasses

from gateway.cell import CellSettings, cell_argv
from gateway.cell.__main__ import parse as parse_cell
from gateway.cli.main import parser as cli_parser
from gateway.client import ClientSettings
from gateway.config import DEFAULT_GATEWAY_PORT, GatewaySettings, SharedSlots
from gateway.launch.envoy import EnvoySettings
from gateway.service.args import add_gateway_arguments, gateway_argv, settings_from_args


def _gateway_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_gateway_arguments(parser)
    return parser


def test_gateway_argv_round_trips() -> None:
    settings = GatewaySettings(
        client=ClientSettings(
            sax_root="gs://b/root", gcs_endpoint="http://127.0.0.1:9", overloaded_after=0.25
        ),
        port=12345,
        default_timeout=7.5,
        grace_period=2.0,
        stream_keepalive=0.25,
        shared_slots=SharedSlots(path="/run/saxgw/slots", worker=3),
        config_file="saxgw.yaml",
        config_snapshot="/tmp/saxgw-x/config.snapshot",
    )
    argv = gateway_argv(settings)
    assert argv[1:5] == ["-P", "-m", "gateway.cli", "gateway"]
    assert settings_from_args(_gateway_parser().parse_args(argv[5:])) == settings


def test_gateway_flag_defaults_are_the_settings_defaults() -> None:
    parsed = settings_from_args(_gateway_parser().parse_args(["--sax-root", "/r"]))
    expected = GatewaySettings(client=ClientSettings(sax_root="/r"), port=DEFAULT_GATEWAY_PORT)
    assert parsed == expected


def test_cell_argv_round_trips() -> None:
    settings = CellSettings(
        sax_root="/r",
        fs_root="/fs",
        cell="/sax/other",
        admin_port=2000,
        num_model_servers=2,
        model_server_ports=(2001, 2002),
        poll_interval=0.3,
        server_dead_after=2.0,
        max_restart_backoff=1.5,
        seed=4,
    )
    argv = cell_argv(settings)
    assert argv[1:4] == ["-P", "-m", "gateway.cell"]
    assert parse_cell(argv[4:]) == (settings, "INFO", "text")


def test_up_and_envoy_defaults_come_from_the_settings() -> None:
    args = cli_parser().parse_args(["up"])
    gateway = GatewaySettings(client=ClientSettings(sax_root="/r"))
    assert args.default_timeout == gateway.default_timeout
    envoy = EnvoySettings(gateway_endpoints=())
    assert (args.port, args.envoy_admin_port, args.listen) == (
        envoy.listen_port,
        envoy.admin_port,
        envoy.listen_address,
    )
    assert args.gateway_ports == [DEFAULT_GATEWAY_PORT]
    assert dataclasses.fields(GatewaySettings)[0].name == "client"  # composed, not copied
