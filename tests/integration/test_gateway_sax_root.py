"""A `saxgw gateway` process whose SAX_ROOT is not a directory of cells: a file is the
operator's to fix (INTERNAL at once, as docs/reliability.md has it), a root not there yet is
UNAVAILABLE once the admin retry window has passed, and neither floods the log."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc
from saxml.protobuf import admin_pb2

from gateway.launch.processes import free_port
from tests._grpc import sync_channel
from tests._stacks import wait_listening

#: 3 s, not 1 s: a call that is not retried takes milliseconds (a loaded host's pauses, a
#: subprocess gateway), one retried takes this window; AT_ONCE_S sits far from both.
UNREACHABLE_AFTER_S = 3.0
AT_ONCE_S = 2.0
NO_ADMIN_YET = "No admin server has been started for this Sax cell."  # what Sax writes first


@contextmanager
def _gateway(root: Path, log: Path) -> Iterator[gateway_pb2_grpc.SaxGatewayStub]:
    """`saxgw gateway --sax-root ROOT` on a free port, logging to ``log``; a stub to it."""
    port = free_port()
    argv = [
        *(sys.executable, "-m", "gateway.cli", "gateway", "--log-format=text"),
        *("--host", "127.0.0.1", "--port", str(port), "--sax-root", str(root)),
        f"--admin-unreachable-after={UNREACHABLE_AFTER_S:g}",
    ]
    with log.open("w") as out:
        gateway = subprocess.Popen(argv, stderr=out)
    try:
        wait_listening(gateway, port, log, "the gateway", timeout=60)
        with sync_channel(f"127.0.0.1:{port}") as channel:
            yield gateway_pb2_grpc.SaxGatewayStub(channel)
    finally:
        gateway.terminate()
        gateway.wait(timeout=30)


def _fails(call: Callable[..., object], request: object) -> tuple[str, str, float]:
    """The code name and message ``call`` fails with, and how long it took."""
    started = time.monotonic()
    try:
        call(request, timeout=30)
    except grpc.RpcError as exc:
        return exc.code().name, exc.details() or "", time.monotonic() - started
    raise AssertionError(f"{request} succeeded")


def test_a_sax_root_that_became_a_file_is_internal_at_once(tmp_path: Path) -> None:
    # Started on a directory that a file then replaced (`saxgw gateway` refuses a file at
    # start, as `up` and `serve` do). Before, ListCells answered no cells at all, as if the
    # root were empty, and a cell's calls were UNAVAILABLE once the retry window had passed.
    root = tmp_path / "root"
    root.mkdir()
    with _gateway(root, tmp_path / "gateway.log") as stub:
        root.rmdir()
        root.write_text("not a directory")
        code, message, took = _fails(stub.ListCells, pb.ListCellsRequest())
        assert (code, message) == (
            "INTERNAL",
            "could not list the cells: this gateway's SAX_ROOT failed; its operator finds why "
            "in the gateway's log",
        )
        code, message, took = _fails(stub.ListModels, pb.ListModelsRequest(sax_cell="/sax/test"))
        assert (code, message) == (
            "INTERNAL",
            "could not find the admin server of cell /sax/test: this gateway's SAX_ROOT "
            "failed; its operator finds why in the gateway's log",
        )
        assert took < AT_ONCE_S  # not retried
    logged = (tmp_path / "gateway.log").read_text()
    assert (
        f"WARNING reading {root}/sax/test/location.proto failed: [Errno 20] the root is not a "
        f"directory: '{root}'"
    ) in logged


def test_no_cell_under_sax_root_is_logged_once_not_at_every_retry(tmp_path: Path) -> None:
    # Before, every attempt of every call logged it: 17 lines in the 7 s of two calls.
    root = tmp_path / "root"
    with _gateway(root, tmp_path / "gateway.log") as stub:
        for call in range(2):
            listing = pb.ListModelsRequest(sax_cell="/sax/test")
            code, message, took = _fails(stub.ListModels, listing)
            assert (code, message) == (
                "UNAVAILABLE",
                "the admin server of cell /sax/test (no address) is unreachable: no Sax cell "
                "exists under this gateway's SAX_ROOT (looking for /sax/test): it is missing or "
                "empty; its operator should check its --sax-root",
            )
            # The first retries for the window; the second, in the outage it found, looks
            # once and fails at once.
            assert took >= UNREACHABLE_AFTER_S if call == 0 else took < AT_ONCE_S
        # The cell appears, as Sax creates it: before any admin has started.
        (root / "sax" / "test").mkdir(parents=True)
        never_started = admin_pb2.Location(location=NO_ADMIN_YET)
        (root / "sax" / "test" / "location.proto").write_bytes(never_started.SerializeToString())
        code, message, _ = _fails(stub.ListModels, pb.ListModelsRequest(sax_cell="/sax/test"))
        assert (code, message) == (
            "UNAVAILABLE",
            "the admin server of cell /sax/test (no address) is unreachable: no admin server "
            "has started for /sax/test yet",
        )
    lines = (tmp_path / "gateway.log").read_text().splitlines()
    no_cell = [line.split(" ", 2)[2] for line in lines if "Sax cell under" in line]
    assert len(no_cell) == 2, no_cell  # when it started, and when it ended
    assert no_cell[0] == f"gateway.client._saxroot INFO no Sax cell under SAX_ROOT {root}/sax"
    ended = f"gateway.client._saxroot INFO finding a Sax cell under {root}/sax works again, after "
    assert no_cell[1].startswith(ended)
    assert int(no_cell[1].removeprefix(ended).split()[0]) > 4  # every attempt of both calls


def test_an_empty_sax_root_is_refused_at_start_naming_where_it_came_from(tmp_path: Path) -> None:
    # `--sax-root=$SAX_ROOT` with the variable unset (a unit file's, a compose file's), or
    # `export SAX_ROOT=$ROOT` with ROOT unset. Before, `saxgw gateway --sax-root=` served the
    # current directory as SAX_ROOT, saying nothing of it; `serve` said `--sax-root  does not
    # exist`, and with SAX_ROOT exported empty `the following arguments are required:
    # --sax-root`, though the operator had set it.
    ports = ["--port", str(free_port()), "--envoy-admin-port", str(free_port())]
    serve = ["serve", *ports, "--gateway-ports", str(free_port()), "--ops-port", "0"]
    gateway = ["gateway", "--host", "127.0.0.1", "--port", str(free_port())]
    flag = "--sax-root is empty: give the SAX_ROOT of the cell (a directory or gs://BUCKET/PATH)"
    variable = (
        "SAX_ROOT is set but empty (the environment's): give the SAX_ROOT of the cell "
        "(a directory or gs://BUCKET/PATH)"
    )
    cases = [
        (gateway, ["--sax-root="], None, f"saxgw gateway: {flag}"),
        (gateway, [], " ", f"saxgw gateway: {variable}"),
        (serve, ["--sax-root="], None, f"saxgw: {flag}"),
        (serve, [], "", f"saxgw: {variable}"),
        (["up", *ports], ["--sax-root="], None, f"saxgw: {flag}"),
    ]
    env = {k: v for k, v in os.environ.items() if k != "SAX_ROOT"}
    for command, flags, exported, refusal in cases:
        ran = subprocess.run(
            [sys.executable, "-m", "gateway.cli", *command, *flags],
            capture_output=True,
            text=True,
            cwd=tmp_path,  # what an empty root would have served
            env=env if exported is None else {**env, "SAX_ROOT": exported},
            timeout=60,  # the old gateway served until stopped
        )
        assert (ran.returncode, ran.stderr.strip()) == (2, refusal), (command, flags, exported)
        assert list(tmp_path.iterdir()) == []  # nothing made there either
