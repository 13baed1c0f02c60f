"""Storage that fails under a running stack (Envoy, a gateway, the embedded cell's admin):
clients get UNAVAILABLE (503) when the storage may come back and INTERNAL (500) when it refuses
the server, with a message in their terms and no path or URL; the server's log has those, once
per failure; and what was stored stays as it was.

A local SAX_ROOT and fs root fail for real with ``chattr +i`` (root ignores file modes); a gs://
one is a GCS emulator process that is killed, or answers uploads 403 through a proxy.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from saxml.protobuf import admin_pb2

from gateway.cli._hints import STORAGE_FAILED
from gateway.client import ClientSettings
from gateway.common.storage import GCS_RETRY_S, open_storage
from gateway.launch.ports import listener_pid
from gateway.launch.processes import free_port
from gateway.launch.stack import Stack, StackSettings
from tests._stacks import (
    CELL,
    cell_settings,
    gateway_settings,
    healthy_stack,
    logs_dir,
    loopback_envoy,
)
from tests._storage import BUCKET, FROZEN_ERROR, Emulator, FaultyFront, frozen
from tests.e2e._published import TEST_LM, publish_body, request_info

KEPT = f"{CELL}/kept"
# The gateway's default deadline on the gs:// stack: above GCS_RETRY_S (10 s), so that the
# admin's first answer (storage unavailable) arrives within it.
GCS_DEADLINE_S = 12.0


def _stack(base: Path, root: str | None = None, gcs: str | None = None) -> StackSettings:
    """One gateway and an admin (no model servers: nothing here loads) under ``base``, or
    with SAX_ROOT and the fs root in ``root`` (a gs:// URL) on the emulator at ``gcs``."""
    cell = cell_settings(base, servers=0)
    gateway = dataclasses.replace(gateway_settings(base), default_timeout=GCS_DEADLINE_S)
    if root is not None:
        sax_root = f"{root}/sax-root"
        cell = dataclasses.replace(
            cell, sax_root=sax_root, fs_root=f"{root}/fs-root", gcs_endpoint=gcs
        )
        client = ClientSettings(sax_root=sax_root, gcs_endpoint=gcs)
        gateway = dataclasses.replace(gateway, client=client)
    return StackSettings(
        gateway=gateway,
        cell=cell,
        gateway_ports=(free_port(),),
        envoy=loopback_envoy(),
        log_dir=str(logs_dir(base)),
    )


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("local-storage")
    settings = _stack(base)
    with healthy_stack(settings, "the local-storage stack") as stack:
        yield stack


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    running = Emulator(tmp_path_factory.mktemp("gcs"))
    running.start()
    try:
        yield running
    finally:
        running.kill()


@pytest.fixture(scope="module")
def front(emulator: Emulator) -> Iterator[FaultyFront]:
    proxy = FaultyFront(emulator.port)
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory, front: FaultyFront) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("gcs-storage")
    settings = _stack(base, f"gs://{BUCKET}", front.endpoint)
    with healthy_stack(settings, "the gs:// stack") as stack:
        yield stack


@pytest.fixture
def kept(local: Stack) -> Iterator[str]:
    yield from _kept(local)


@pytest.fixture
def kept_gcs(gcs: Stack, front: FaultyFront) -> Iterator[str]:
    front.upload_status = None
    yield from _kept(gcs)
    front.upload_status = None


def _kept(stack: Stack) -> Iterator[str]:
    """A model published (on no replica) before the storage fails."""
    with httpx.Client(base_url=stack.http_url, timeout=60) as http:
        response = http.post("/publish", json=publish_body(KEPT, replicas=0, text="one"))
        assert response.status_code == 200, response.text
        yield KEPT
        http.post("/unpublish", json={"model": KEPT})


def _error(response: httpx.Response, status: int, code: int, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.json() == {
        "code": code,
        "message": message,
        "details": [request_info(response)],
    }


def _log(stack: Stack, process: str, level: str) -> list[str]:
    """The messages ``process`` ("cell", "gateway-0") logged at ``level``, in order: the
    gateway logs JSON lines, the cell "<time> <L> <server> <logger>: <message>"."""
    assert stack.settings.log_dir is not None
    messages = []
    for line in (Path(stack.settings.log_dir) / f"{process}.log").read_text().splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("level") == level:
                messages.append(str(record["message"]))
        elif (match := _CELL_LINE.match(line)) and match["level"] == level[0]:
            messages.append(match["message"])
    return messages


_CELL_LINE = re.compile(r"^\S+ \S+ (?P<level>[A-Z]) \S+ \S+: (?P<message>.*)$")


def _failed(stack: Stack, process: str, prefix: str) -> list[str]:
    return [m for m in _log(stack, process, "WARNING") if m.startswith(prefix)]


def _stored(state: bytes | None) -> dict[str, int]:
    """Model IDs in a state.proto and their replicas."""
    models = admin_pb2.State.FromString(state or b"").models
    return {m.model_id: m.requested_num_replicas for m in models}


# The embedded cell's messages end with the code's Go name, as upstream's do.
REFUSED_BY_CELL = (
    f"the storage of cell {CELL} failed; its operator finds why in the admin server's log: Internal"
)
REFUSED_BY_SAX_ROOT = "this gateway's SAX_ROOT failed; its operator finds why in the gateway's log"


def test_an_fs_root_that_refuses_writes_fails_admin_writes_and_keeps_the_state(
    local: Stack, kept: str
) -> None:
    # The admin's save failed as INTERNAL "could not save the cell state: [Errno 1] Operation
    # not permitted: '/.../fs-root/sax/test/.state.proto.x1y2.tmp'", and logged nothing.
    assert local.settings.cell is not None
    state = Path(local.settings.cell.effective_fs_root) / "sax" / "test" / "state.proto"
    before = state.read_bytes()
    with httpx.Client(base_url=local.http_url, timeout=60) as http, frozen(state.parent):
        new = f"{CELL}/refused"
        response = http.post("/publish", json=publish_body(new, replicas=0))
        _error(response, 500, 13, f"could not publish {new}: {REFUSED_BY_CELL}")
        response = http.post(f"/v1{kept}:update", json={"replicas": 2})
        _error(response, 500, 13, f"could not update {kept}: {REFUSED_BY_CELL}")
        response = http.post("/unpublish", json={"model": kept})
        _error(response, 500, 13, f"could not unpublish {kept}: {REFUSED_BY_CELL}")
        # saxgw, over gRPC: the same status, and a hint that points at the right log.
        argv = ["publish", "--gateway", local.grpc_address, f"{CELL}/cli", TEST_LM, "None", "0"]
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli", *argv], capture_output=True, text=True, timeout=60
        )
        assert (done.returncode, done.stdout) == (1, "")
        assert done.stderr.splitlines() == [
            f"saxgw: INTERNAL: could not publish {CELL}/cli: {REFUSED_BY_CELL}",
            f"hint: {STORAGE_FAILED}",
        ]
        # Nothing changed: neither the file, nor what the admin serves.
        assert state.read_bytes() == before
        assert sorted(p.name for p in state.parent.iterdir()) == ["state.proto"]
        listed = http.get("/listcell", params={"model": kept})
        assert listed.status_code == 200, listed.text
        assert listed.json()["max_replicas"] == 0
        assert http.get("/listcell", params={"model": new}).status_code == 404
    assert _stored(before) == {kept: 0}
    # The path and the cause are the operator's: in the admin's log, once for the four
    # failures (each named its own random temp file, a WARNING per call), naming the
    # directory that refused.
    assert _failed(local, "cell", f"writing {state} failed: ") == [
        f"writing {state} failed: {FROZEN_ERROR}: '{state.parent}'"
    ]


def test_a_sax_root_that_refuses_writes_fails_setacl_of_a_cell(local: Stack) -> None:
    # The gateway writes a cell's ACL into its config.proto itself; the bare OSError was
    # INTERNAL "internal error in sax-gateway", as for a bug, with a traceback in the log.
    config = Path(local.settings.sax_root) / "sax" / "test" / "config.proto"
    before = config.read_bytes()
    with httpx.Client(base_url=local.http_url, timeout=60) as http, frozen(config.parent):
        response = http.post("/setacl", json={"name": CELL, "acl": "acl/ops"})
        message = f"could not save the config of cell {CELL}: {REFUSED_BY_SAX_ROOT}"
        _error(response, 500, 13, message)
        assert config.read_bytes() == before
        acl = http.get("/getacl", params={"name": CELL})
        assert acl.status_code == 200, acl.text
        assert acl.json() == {"name": CELL, "acl": "", "method_acls": {}}
        # An admin restarted meanwhile serves again, on the address location.proto names:
        # it rewrote the file at start, and refused to start when it could not, which left
        # the cell with no admin (every listing and change 503) until the storage mended.
        assert local.settings.cell is not None
        admin = listener_pid(local.settings.cell.admin_port)
        assert admin is not None
        os.kill(admin, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while listener_pid(local.settings.cell.admin_port) in (None, admin) or (
            http.get("/listall", params={"sax_cell": CELL}).status_code != 200
        ):
            assert time.monotonic() < deadline, "the admin did not serve again"
            time.sleep(0.1)
        assert config.read_bytes() == before
    assert _failed(local, "gateway-0", f"writing {config} failed: ") == [
        f"writing {config} failed: {FROZEN_ERROR}: '{config.parent}'"
    ]
    assert _log(local, "gateway-0", "ERROR") == []  # not "unexpected error in the gateway"


def test_a_cell_whose_files_are_corrupt_or_unreadable(local: Stack) -> None:
    # A corrupt config.proto was FAILED_PRECONDITION (400, the caller's fault?) naming its
    # path; an unreadable location.proto was UNAVAILABLE naming its path and errno, after
    # retries that could not help.
    other = Path(local.settings.sax_root) / "sax" / "other"
    other.mkdir()
    try:
        (other / "config.proto").write_bytes(b"\xff not a sax.Config")
        (other / "location.proto").symlink_to(other / "location.proto")
        with httpx.Client(base_url=local.http_url, timeout=60) as http:
            response = http.get("/getacl", params={"name": "/sax/other"})
            message = "the config of cell /sax/other is corrupt; its operator must restore it"
            _error(response, 500, 13, message)
            response = http.get("/v1/sax/other:listModels")
            message = f"could not find the admin server of cell /sax/other: {REFUSED_BY_SAX_ROOT}"
            _error(response, 500, 13, message)
            assert response.elapsed.total_seconds() < 2  # not retried
    finally:
        shutil.rmtree(other)
    errors = _log(local, "gateway-0", "ERROR")
    [corrupt] = [e for e in errors if e.startswith(str(other))]
    assert corrupt.startswith(f"{other}/config.proto is not a sax.Config: Error parsing"), errors
    location = other / "location.proto"
    assert _failed(local, "gateway-0", f"reading {location} failed: ") == [
        f"reading {location} failed: [Errno 40] Too many levels of symbolic links: '{location}'"
    ]


def _gcs_state(emulator: Emulator) -> bytes | None:
    """state.proto of the gs:// stack's cell, read from the emulator itself."""
    storage = open_storage(f"gs://{BUCKET}/fs-root", gcs_endpoint=emulator.endpoint)
    return asyncio.run(storage.read("sax/test/state.proto"))


def test_gcs_refusing_uploads_is_internal_and_keeps_the_objects(
    gcs: Stack, emulator: Emulator, front: FaultyFront, kept_gcs: str
) -> None:
    # GCS refusing the server's credentials (403) was INTERNAL "could not save the cell state:
    # gs://sax-bucket/fs-root is unreachable: Forbidden", the bucket's URL to every caller.
    before = _gcs_state(emulator)
    front.upload_status = 403
    with httpx.Client(base_url=gcs.http_url, timeout=60) as http:
        new = f"{CELL}/refused"
        response = http.post("/publish", json=publish_body(new, replicas=0))
        _error(response, 500, 13, f"could not publish {new}: {REFUSED_BY_CELL}")
        response = http.post("/setacl", json={"name": CELL, "acl": "acl/ops"})
        message = f"could not save the config of cell {CELL}: {REFUSED_BY_SAX_ROOT}"
        _error(response, 500, 13, message)
        front.upload_status = None
        assert _gcs_state(emulator) == before
        assert _stored(before) == {kept_gcs: 0}
        assert http.get("/listcell", params={"model": new}).status_code == 404
        acl = http.get("/getacl", params={"name": CELL})
        assert acl.json() == {"name": CELL, "acl": "", "method_acls": {}}
    state = f"gs://{BUCKET}/fs-root/sax/test/state.proto"
    [cell] = _failed(gcs, "cell", f"writing {state} failed: ")
    assert cell.startswith(
        f"writing {state} failed: gs://{BUCKET}/fs-root refused: Forbidden (403)"
    )
    assert "does not have storage.objects.create access" in cell
    config = f"gs://{BUCKET}/sax-root/sax/test/config.proto"
    [gateway] = _failed(gcs, "gateway-0", f"writing {config} failed: ")
    assert gateway.startswith(
        f"writing {config} failed: gs://{BUCKET}/sax-root refused: Forbidden (403)"
    )


def test_gcs_down_is_unavailable_and_loses_nothing_stored(
    gcs: Stack, emulator: Emulator, kept_gcs: str
) -> None:
    # With the emulator killed, a publish was INTERNAL "could not save the cell state:
    # gs://sax-bucket/fs-root is unreachable: no answer within 10 s (ConnectionError)", and
    # the list of cells UNAVAILABLE "SAX_ROOT cannot be read: gs://...": the bucket's URL
    # for every caller, and no retry for the publish.
    before = _gcs_state(emulator)
    state = f"gs://{BUCKET}/fs-root/sax/test/state.proto"
    emulator.kill()
    try:
        with httpx.Client(base_url=gcs.http_url, timeout=60) as http:
            new = f"{CELL}/lost"
            response = http.post("/publish", json=publish_body(new, replicas=0))
            answered = time.monotonic()
            message = (
                f"could not publish {new}: the storage of cell {CELL} is unavailable; retry "
                "later: Unavailable"
            )
            _error(response, 503, 14, message)
            message = (
                "could not list the cells: this gateway's SAX_ROOT is unavailable; retry later"
            )
            # A deadline shorter than the storage's retries (10 s): the same 503, where it
            # was grpc's own 504 "Deadline Exceeded".
            for deadline in ({}, {"grpc-timeout": "3S"}):
                _error(http.get("/listcells", headers=deadline), 503, 14, message)
            assert http.get("/listcell", params={"model": new}).status_code == 404
            # A data call whose deadline ends while SAX_ROOT is read for its cell's admin
            # (its ACLs need the admin): SAX_ROOT's 503, as with a longer deadline; it was a
            # 504 saying the admin had not answered.
            elsewhere = {"model": "/sax/elsewhere/lm", "query": "q"}
            response = http.post("/generate", json=elsewhere, headers={"grpc-timeout": "3S"})
            message = (
                "could not find the admin server of cell /sax/elsewhere: this gateway's "
                "SAX_ROOT is unavailable; retry later"
            )
            _error(response, 503, 14, message)
        # The gateway retried UNAVAILABLE within its deadline, and the admin's last write goes
        # on after its caller has gone, for at most GCS_RETRY_S: storage back before then
        # would take it (see test_a_save_cut_short_by_its_caller_never_lands_after_a_later_one).
        time.sleep(max(0.0, answered + GCS_RETRY_S + 1 - time.monotonic()))
    finally:
        emulator.start()
    assert _gcs_state(emulator) == before
    assert _stored(before) == {kept_gcs: 0}
    with httpx.Client(base_url=gcs.http_url, timeout=60) as http:  # back, and all is well
        response = http.post("/publish", json=publish_body(new, replicas=0))
        assert response.status_code == 200, response.text
        assert _stored(_gcs_state(emulator)) == {kept_gcs: 0, new: 0}
        http.post("/unpublish", json={"model": new})
    unreachable = (
        f"writing {state} failed: gs://{BUCKET}/fs-root is unreachable: "
        "retries within 10 s gave up; last: "
    )
    assert _failed(gcs, "cell", f"writing {state} failed: ")[-1].startswith(unreachable)
    listing = f"listing gs://{BUCKET}/sax-root/sax failed: gs://{BUCKET}/sax-root is unreachable"
    assert _failed(gcs, "gateway-0", listing)


def test_a_save_cut_short_by_its_caller_lands_before_a_later_one_and_in_memory(
    gcs: Stack, emulator: Emulator, front: FaultyFront, kept_gcs: str
) -> None:
    # A caller whose deadline passed while GCS failed (503, retried by the library) went away,
    # and the admin let the next change save at once: its upload landed first, and the first
    # one's retry, succeeding later, put back a state without it. The next admin to start
    # had lost an acknowledged publish. Then the admin waited for the write but not for the
    # change in memory: the write landed, memory never heard of it, and the next save
    # dropped it again (an admin restarted in between would have brought it back).
    cut, later = f"{CELL}/cut-short", f"{CELL}/later"
    front.upload_status = 503
    with httpx.Client(base_url=gcs.http_url, timeout=60) as http:
        body = publish_body(cut, replicas=0)
        response = http.post("/publish", json=body, headers={"grpc-timeout": "1S"})
        assert response.status_code == 504, response.text
        front.upload_status = None  # the cut-short save's next retry succeeds
        try:
            # It waits for the cut-short save, write and memory, to end.
            response = http.post("/publish", json=publish_body(later, replicas=0))
            assert response.status_code == 200, response.text
            assert _stored(_gcs_state(emulator)) == {kept_gcs: 0, cut: 0, later: 0}
            # What was stored is what the admin serves: its publish took effect.
            assert http.get("/listcell", params={"model": cut}).status_code == 200
            response = http.post("/publish", json=body)
            assert response.status_code == 409, response.text
        finally:
            for model in (cut, later):
                http.post("/unpublish", json={"model": model})


def test_an_unpublish_cut_short_ends_the_models_waits_and_frees_its_name(
    gcs: Stack, front: FaultyFront
) -> None:
    # The admin finishes a change whose caller left during its save, but nothing after it
    # ran: the model's waits and watches were not ended (a wait held until its own deadline
    # and then said 404), the cell's cycle was not kicked (a publish of the name was "being
    # unpublished" for up to 10 s) and no "unpublished" line was logged.
    model = f"{CELL}/cut-unpublish"
    with httpx.Client(base_url=gcs.http_url, timeout=60) as http:
        response = http.post("/publish", json=publish_body(model, replicas=1))  # no server
        assert response.status_code == 200, response.text
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            wait = {"model": model, "timeout": "40s"}
            waiting = pool.submit(http.post, "/wait_for_ready", json=wait)
            time.sleep(0.5)
            front.upload_status = 503  # the save retries until the caller has left
            try:
                response = http.post(
                    "/unpublish", json={"model": model}, headers={"grpc-timeout": "1S"}
                )
                assert response.status_code == 504, response.text
            finally:
                front.upload_status = None  # the cut-short save's next retry lands
            started = time.monotonic()
            ended = waiting.result(timeout=60)
            assert time.monotonic() - started < 15, "the wait held until its own deadline"
        assert ended.status_code == 404, ended.text
        assert "unpublished while waiting" in ended.json()["message"]
        response = http.post("/publish", json=publish_body(model, replicas=0))
        assert response.status_code == 200, response.text
        http.post("/unpublish", json={"model": model})
    assert f"unpublished {model}" in _log(gcs, "cell", "INFO")
