"""gateway/launch/direct: which models go direct, where their routes sit in Envoy's route
table, and how the watchdog sees its control plane (tests/e2e/test_direct.py shows what the
routes do in a real Envoy)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from saxml.protobuf.admin_pb2 import Location

from gateway.client import Client, ClientSettings
from gateway.common.stacktoken import STACK_TOKEN_HEADER
from gateway.edge import IDENTITY_HEADER, EdgeConfig, parse_edge
from gateway.launch import probes
from gateway.launch.direct import DirectFiles, _plane
from gateway.launch.direct._listener import GATEWAY_PATH, MODEL_HEADER
from gateway.launch.direct._plane import Plane
from gateway.launch.direct._resources import (
    SAX_PATH,
    Model,
    cluster,
    direct_models,
    gateway_clients,
    route_table,
)
from gateway.launch.envoy import EnvoySettings, render
from tests._envoy_routes import envoy_yaml

KEYS = [
    {"key": "key-of-ops-0123456789", "client": "ops", "roles": ["admin", "data"]},
    {"key": "key-of-narrow-012345678", "client": "narrow", "roles": ["data"]},
    {"key": "key-of-capped-012345678", "client": "capped", "roles": ["data"]},
]
EDGE = parse_edge(
    {
        "auth": {"api_keys": KEYS},
        "clients": {"narrow": {"models": ["/sax/test/a*"]}, "capped": {"max_concurrent": 2}},
        "quotas": {"models": {"/sax/test/limited": {"max_in_flight": 1}}},
        "direct": {"generate": True},
    }
)
SERVING = ("127.0.0.1:10001",)


def test_only_models_whose_meaning_the_gateway_keeps_go_direct() -> None:
    models = [
        Model("/sax/test/plain", SERVING, ""),
        Model("/sax/test/guarded", SERVING, "acl/readers"),
        Model("/sax/test/limited", SERVING, ""),
        Model("/sax/test/loading", (), ""),
        Model("/sax/test/named", ("model-server.local:10001",), ""),
    ]
    assert [m.model_id for m in direct_models(models, EDGE)] == ["/sax/test/plain"]
    every_client_counted = parse_edge(
        {"auth": {"api_keys": KEYS[:1]}, "quotas": {"max_concurrent": 8}}
    )
    assert direct_models(models, every_client_counted) == []


def test_a_models_limits_past_envoys_counts_are_capped_at_them() -> None:
    # quotas.model takes up to 4294967295 each: their sum, written as is, made Envoy refuse
    # the clusters file, and every direct call was a 503 with no message for good.
    edge = parse_edge(
        {"quotas": {"model": {"max_in_flight": 4294967295, "max_queued": 10}}, "direct": {}}
    )
    [limits] = cluster(Model("/sax/test/plain", SERVING, ""), edge)["circuit_breakers"][
        "thresholds"
    ]
    assert limits["max_requests"] == limits["max_pending_requests"] == 4294967295


def test_clients_the_gateway_treats_apart_are_left_to_it() -> None:
    assert gateway_clients("/sax/test/abc", EDGE) == ["capped"]
    assert gateway_clients("/sax/test/xyz", EDGE) == ["capped", "narrow"]
    assert gateway_clients("/sax/test/xyz", EdgeConfig()) == []


def test_direct_routes_come_before_the_catch_all_and_keep_its_filters(tmp_path: Path) -> None:
    settings = EnvoySettings(gateway_endpoints=("127.0.0.1:1",), direct_dir=str(tmp_path))
    config = envoy_yaml(render(settings, secrets_dir=tmp_path / "secrets"))
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    assert "route_config" not in hcm["typed_config"]  # the routes come from the RDS file
    base = json.loads((tmp_path / "routes.base.json").read_text())
    first = json.loads((tmp_path / "rds.json").read_text())["resources"][0]
    assert {k: v for k, v in first.items() if k != "@type"} == base
    table = route_table(base, [Model("/sax/test/plain", SERVING, "")], EDGE, deadline=20)
    routes = table["virtual_hosts"][0]["routes"]
    at_name = "direct /sax/test/plain"
    at = next(i for i, r in enumerate(routes) if r.get("name") == at_name)
    catch_all = routes[at + 1]
    assert catch_all["match"] == {"prefix": "/"}
    direct = routes[at]
    assert direct["typed_per_filter_config"] == catch_all["typed_per_filter_config"]
    assert direct["match"]["path"] == GATEWAY_PATH
    # Found by the model's header, Envoy's alone: tried first, never sent upstream
    # (tests/e2e/test_direct_model_header.py shows both in a real Envoy).
    model = {"name": MODEL_HEADER, "string_match": {"exact": "/sax/test/plain"}}
    assert direct["match"]["headers"][0] == model
    assert MODEL_HEADER in base["request_headers_to_remove"]
    assert direct["route"]["regex_rewrite"]["substitution"] == SAX_PATH
    assert direct["route"]["cluster"] == "direct/sax/test/plain"
    assert len(routes) == len(base["virtual_hosts"][0]["routes"]) + 1
    # Bounded by the deadline alone, not also by Envoy's default idle timeout (300 s).
    table = route_table(base, [Model("/sax/test/plain", SERVING, "")], EDGE, deadline=600)
    direct = next(r for r in table["virtual_hosts"][0]["routes"] if r.get("name") == at_name)
    assert (direct["route"]["timeout"], direct["route"]["idle_timeout"]) == ("601s", "601s")


def test_the_watchdog_finds_a_plane_silent_once_its_heartbeat_is_old(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(probes, "time", SimpleNamespace(monotonic=lambda: now[0]))
    heartbeat = tmp_path / "heartbeat"
    probe = probes.heartbeat_probe(heartbeat, stale_after=30)
    assert probe(2) == "heartbeat not written"
    heartbeat.touch()
    assert probe(2) is None
    now[0] += 31
    assert probe(2) == "heartbeat not touched for 31 s (more than 30 s)"
    os.utime(heartbeat, (1, 1))  # touched again (its mtime changed), whatever the wall clock says
    assert probe(2) is None
    ahead = time.time() + 3600  # a touch after the wall clock stepped an hour ahead
    os.utime(heartbeat, (ahead, ahead))
    assert probe(2) is None
    now[0] += 29
    assert probe(2) is None
    now[0] += 2
    assert probe(2) == "heartbeat not touched for 31 s (more than 30 s)"


def test_a_direct_call_carries_no_credential_of_the_caller_to_the_model_server() -> None:
    # A gateway's call to a model server carries none of the caller's headers; a direct one
    # carried each that Envoy's auth filters leave: seen at a stand-in model server, a
    # cookie, Proxy-Authorization, and any Authorization or x-api-key where no auth is
    # configured (measured, ports 61000-61010).
    open_edge = parse_edge({"direct": {"generate": True}})
    for edge in (EDGE, open_edge):
        catch_all = {"match": {"prefix": "/"}, "route": {"cluster": "gateways"}}
        base = {"virtual_hosts": [{"routes": [catch_all]}]}
        table = route_table(base, [Model("/sax/test/plain", SERVING, "")], edge, deadline=20)
        direct = table["virtual_hosts"][0]["routes"][0]
        removed = set(direct["request_headers_to_remove"])
        sent = {"authorization", "x-api-key", "proxy-authorization", "cookie", STACK_TOKEN_HEADER}
        assert sent - removed == set()
        assert IDENTITY_HEADER not in removed  # a model server may log who called


def test_a_listing_that_keeps_failing_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An admin that does not answer: one WARNING, not one per listing (every 0.5 s and the
    client's own wait); the routes stay."""
    root = tmp_path / "root"
    (root / "sax" / "test").mkdir(parents=True)
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        admin = f"127.0.0.1:{closed.getsockname()[1]}"
    location = root / "sax" / "test" / "location.proto"
    location.write_bytes(Location(location=admin).SerializeToString())
    files = DirectFiles(tmp_path / "direct")
    files.directory.mkdir()
    catch_all = {"match": {"prefix": "/"}, "route": {"cluster": "gateway_grpc"}}
    files.write_base({"name": "routes", "virtual_hosts": [{"name": "all", "routes": [catch_all]}]})
    settings = ClientSettings(sax_root=str(root), admin_unreachable_after=0.05)

    async def listings() -> None:
        client = Client(settings)
        try:
            plane = Plane(client, files, EDGE, 60.0)
            for _ in range(3):
                await plane.refresh()
        finally:
            await client.close()

    with caplog.at_level(logging.INFO, logger="gateway.launch.direct._plane"):
        asyncio.run(listings())
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    warned = [m for level, m in lines if level == "WARNING"]
    assert len(warned) == 1, lines
    assert warned[0].startswith("direct mode: listing /sax/test's models failed, its routes kept: ")


class _Watched(DirectFiles):
    """Records, after each write, the clusters the routes name that the clusters file lacks:
    what Envoy would have answered 503 for, had it read the files then."""

    missing: list[set[str]]

    def _check(self) -> None:
        routes = json.loads(self.routes.read_text())["resources"][0]
        clusters = json.loads(self.clusters.read_text())["resources"]
        named = {
            r["route"]["cluster"]
            for r in routes["virtual_hosts"][0]["routes"]
            if r["route"]["cluster"].startswith("direct")
        }
        self.missing.append(named - {c["name"] for c in clusters})

    def write_routes(self, route_config: dict[str, object]) -> None:
        super().write_routes(route_config)
        self._check()

    def write_clusters(self, clusters: list[dict[str, object]]) -> None:
        super().write_clusters(clusters)
        self._check()


def test_no_route_names_a_cluster_the_files_lack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One model leaves direct mode (an ACL set) as another comes (published) in the same
    listing: each file the plane writes, at every step, names only clusters that are there."""
    first = DirectFiles(tmp_path)
    catch_all = {"match": {"prefix": "/"}, "route": {"cluster": "gateway_grpc"}}
    first.write_base({"name": "routes", "virtual_hosts": [{"name": "all", "routes": [catch_all]}]})
    first.write_first()
    files = _Watched(tmp_path)
    object.__setattr__(files, "missing", [])
    monkeypatch.setattr(_plane, "_CLUSTERS_FIRST_S", 0.0)
    a = Model("/sax/test/a", ("127.0.0.1:1",), "")
    b = Model("/sax/test/b", ("127.0.0.1:2",), "")

    async def writes() -> None:
        client = Client(ClientSettings(sax_root=str(tmp_path)))  # never called
        plane = Plane(client, files, parse_edge({}), 60.0)
        for models in ([a], [b], [a, b], []):
            await plane._write(models)
        await client.close()

    asyncio.run(writes())
    assert files.missing and all(m == set() for m in files.missing), files.missing


class _Counted(DirectFiles):
    """Records which file each write was."""

    writes: list[str]

    def write_routes(self, route_config: dict[str, object]) -> None:
        super().write_routes(route_config)
        self.writes.append("routes")

    def write_clusters(self, clusters: list[dict[str, object]]) -> None:
        super().write_clusters(clusters)
        self.writes.append("clusters")


def test_replicas_that_move_rewrite_the_clusters_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model's replicas at new addresses (its servers started again) change its cluster,
    not the route table, which Envoy parsed whole again for nothing (1.1 MB at 500 models)."""
    first = DirectFiles(tmp_path)
    catch_all = {"match": {"prefix": "/"}, "route": {"cluster": "gateway_grpc"}}
    first.write_base({"name": "routes", "virtual_hosts": [{"name": "all", "routes": [catch_all]}]})
    first.write_first()
    files = _Counted(tmp_path)
    object.__setattr__(files, "writes", [])
    monkeypatch.setattr(_plane, "_CLUSTERS_FIRST_S", 0.0)
    there = Model("/sax/test/a", ("127.0.0.1:1",), "")
    moved = Model("/sax/test/a", ("127.0.0.1:2",), "")

    async def writes() -> None:
        client = Client(ClientSettings(sax_root=str(tmp_path)))  # never called
        plane = Plane(client, files, parse_edge({}), 60.0)
        await plane._write([there])
        files.writes.clear()
        await plane._write([moved])
        await client.close()

    asyncio.run(writes())
    assert files.writes == ["clusters"]
    (written,) = json.loads(files.clusters.read_text())["resources"]
    endpoint = written["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"]["port_value"] == 2
