"""The whole cell dies (its supervisor, admin and model servers, SIGKILL): data calls to a model
that was served fail 503 once the admin has been unreachable for --admin-unreachable-after,
not at their deadline, and name the admin problem; the same when location.proto is gone.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import grpc
import httpx
import pytest
from saxgateway.v1 import gateway_pb2, gateway_pb2_grpc

from gateway.launch.ports import listener_pid
from gateway.launch.processes import free_port
from gateway.launch.stack import Stack, StackSettings
from tests._grpc import sync_channel
from tests._stacks import (
    CELL,
    cell_settings,
    gateway_settings,
    healthy_stack,
    logs_dir,
    loopback_envoy,
)
from tests.faults.conftest import publish

MODEL = f"{CELL}/echo"
# The gateway's default deadline, as `saxgw up` runs it: a call that waits for it is the bug.
DEADLINE_S = 60.0
# Well within the deadline: the admin's unreachable window (5 s) and a health check's cadence.
BOUND_S = 20.0
GENERATE = {"model": MODEL, "query": "hello"}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """A gateway, Envoy and a cell with one model server serving ``MODEL``."""
    gateway = dataclasses.replace(gateway_settings(tmp_path), default_timeout=DEADLINE_S)
    settings = StackSettings(
        gateway=gateway,
        cell=cell_settings(tmp_path, servers=1),
        gateway_ports=(free_port(),),
        envoy=loopback_envoy(),
        log_dir=str(logs_dir(tmp_path)),
    )
    with healthy_stack(settings, "the cell-outage stack") as running:
        with httpx.Client(base_url=running.http_url, timeout=30) as http:
            publish(http, MODEL)
            served = http.post("/generate", json=GENERATE)
            assert served.status_code == 200, served.text
        yield running


def _kill_cell(stack: Stack, *, admin_first: bool = False) -> None:
    """SIGKILL to the cell's supervisor (so that nothing restarts), admin and model servers.
    Admin first, the gateway keeps the model servers' addresses on record. Otherwise the
    model servers die first, and the admin sees them go and reports no replica before it dies:
    the gateway's watch of the model (its own record) shows the empty set. Killed together,
    whether the admin saw them go first was a race (its supervisor's death ends them all at
    once, through their stdin): lost, health stayed SERVING (1 run in 3 to 6)."""
    cell = stack.settings.cell
    assert cell is not None
    supervisor = dict(stack.group.children)["cell"].pid
    ports = (cell.admin_port, *cell.model_server_ports)
    if admin_first:
        os.kill(_listener(cell.admin_port), signal.SIGKILL)
        os.kill(supervisor, signal.SIGKILL)
    else:
        with sync_channel(stack.grpc_address) as channel:
            watch = gateway_pb2_grpc.SaxGatewayStub(channel).WatchAddresses(
                gateway_pb2.WatchAddressesRequest(model=MODEL), timeout=30
            )
            assert next(watch).addresses
            os.kill(supervisor, signal.SIGSTOP)  # restarts nothing, and its children live on
            try:
                for port in cell.model_server_ports:
                    os.kill(_listener(port), signal.SIGKILL)
                while next(watch).addresses:
                    pass
            finally:
                watch.cancel()
                os.kill(supervisor, signal.SIGKILL)
    for port in ports:
        pid = listener_pid(port)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(listener_pid(p) for p in ports):
        assert time.monotonic() < deadline, "the cell's servers still listen"
        time.sleep(0.1)


def _listener(port: int) -> int:
    pid = listener_pid(port)
    assert pid is not None, f"nothing listens on {port}"  # os.kill(0) would kill the tests
    return pid


def _timed(
    call: httpx.Client, path: str, body: Mapping[str, object]
) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call.post(path, json=body)
    return response, time.monotonic() - started


def _without_request_id(body: dict[str, object]) -> dict[str, object]:
    details = body.get("details")
    assert isinstance(details, list)
    for detail in details:
        assert detail.pop("request_id", None)
    return body


def _unavailable(message: str) -> dict[str, object]:
    return {
        "code": 14,
        "message": message,
        "details": [
            {"@type": "type.googleapis.com/google.rpc.RequestInfo", "serving_data": ""},
        ],
    }


@pytest.mark.parametrize("admin_first", [False, True], ids=["servers-first", "admin-first"])
def test_data_calls_fail_503_soon_after_the_whole_cell_dies(
    stack: Stack, admin_first: bool
) -> None:
    # Before, every data call waited for its whole deadline (60 s by default), holding its
    # quota slot, and ended 504 "no replica of /sax/test/echo answered within the deadline
    # (0 replicas are ready)" (or, with the dead replica still on record, 503 from it at the
    # deadline), while the cell's admin reads were 503 after 5 s.
    cell = stack.settings.cell
    assert cell is not None
    _kill_cell(stack, admin_first=admin_first)
    killed = time.monotonic()
    with httpx.Client(base_url=stack.http_url, timeout=DEADLINE_S + 30) as http:
        response, took = _timed(http, "/generate", GENERATE)
        assert response.status_code == 503, response.text
        body = _without_request_id(response.json())
        message = body["message"]
        assert isinstance(message, str)
        prefix = (
            f"no replica of {MODEL} can be reached: the admin server of cell {CELL} at "
            f"127.0.0.1:{cell.admin_port} is unreachable: "
        )
        assert message.startswith(prefix), message  # then grpc's "failed to connect ..."
        assert body == _unavailable(message)
        assert took < BOUND_S, took
        # Now that the outage is known, at once; the stream too, and over native gRPC.
        again, took = _timed(http, "/generate", {**GENERATE, "timeout": "3s"})
        assert (again.status_code, _without_request_id(again.json())) == (503, body)
        assert took < 2.5, took
        stream, took = _timed(http, "/generate_stream", GENERATE)
        assert (stream.status_code, _without_request_id(stream.json())) == (503, body)
        assert took < BOUND_S, took
        with sync_channel(stack.grpc_address) as channel:
            stub = gateway_pb2_grpc.SaxGatewayStub(channel)
            with pytest.raises(grpc.RpcError) as caught:
                stub.Generate(gateway_pb2.GenerateRequest(model=MODEL, query="hello"))
        assert (caught.value.code(), caught.value.details()) == (
            grpc.StatusCode.UNAVAILABLE,
            message,
        )

        if admin_first:
            return  # with a replica on record, health stays SERVING (see docs/reliability.md)

        # /healthz follows: the gateway's probe (every 5 s) finds no admin (5 s) and no
        # replica on record, and Envoy's health check fails twice (every 2 s).
        def unhealthy() -> bool:
            return http.get("/healthz", timeout=5).status_code == 503

        while not unhealthy():
            assert time.monotonic() - killed < BOUND_S, "/healthz still 200"
            time.sleep(0.2)


def test_data_calls_fail_503_when_the_cell_is_down_and_its_location_proto_gone(
    stack: Stack,
) -> None:
    cell = stack.settings.cell
    assert cell is not None
    _kill_cell(stack)
    (Path(cell.sax_root) / "sax" / "test" / "location.proto").unlink()
    with httpx.Client(base_url=stack.http_url, timeout=DEADLINE_S + 30) as http:
        # The first message may still name the address it last found; once the location is
        # read again (and found missing), the missing file.
        gone = (
            f"no replica of {MODEL} can be reached: the admin server of cell {CELL} "
            f"(no address) is unreachable: no admin server location for {CELL} yet"
        )
        started = time.monotonic()
        while True:
            response, took = _timed(http, "/generate", GENERATE)
            assert response.status_code == 503, response.text
            assert took < BOUND_S, took
            body = _without_request_id(response.json())
            if body == _unavailable(gone):
                break
            assert time.monotonic() - started < BOUND_S, body
