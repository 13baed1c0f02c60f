"""A gs:// SAX_ROOT served by gcp-storage-emulator, through the real google-cloud-storage client:
gateway.common.storage itself, then a whole cell (admin and model servers) and a client on it."""

from __future__ import annotations

import json
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from gcp_storage_emulator.server import create_server
from saxml.protobuf import admin_pb2

from gateway import naming
from gateway.cell import AdminServer
from gateway.cell._files import CellFiles
from gateway.client import (
    CallOptions,
    Client,
    ClientSettings,
    DeadlineExceededError,
    NotFoundError,
    UnavailableError,
)
from gateway.client._admin import LIST, PUBLISH, CellAdmin, RpcCounter
from gateway.common.deadline import Deadline
from gateway.common.storage import GcsStorage, LocalStorage, StorageError, open_storage
from gateway.service._health import cell_problem, cell_reachable
from tests._storage import FaultyFront
from tests.integration._client_fixtures import CELL, TEST_LM, cell_settings, running_cell

BUCKET = "sax-bucket"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def gcs_endpoint() -> Iterator[str]:
    """An in-memory GCS emulator with one bucket, on a free local port."""
    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


async def test_gcs_storage_round_trip(gcs_endpoint: str) -> None:
    storage = open_storage(f"gs://{BUCKET}/some/root", gcs_endpoint=gcs_endpoint)
    assert isinstance(storage, GcsStorage)
    assert await storage.read("sax/a/location.proto") is None
    await storage.write("sax/a/location.proto", b"one")
    await storage.write("sax/a/location.proto", b"two")
    await storage.write("sax/b/config.proto", b"")
    await storage.write("sax/b/deeper/x", b"")
    assert await storage.read("sax/a/location.proto") == b"two"
    assert await storage.list_dirs("sax") == ["a", "b"]
    assert await storage.list_dirs("sax/b") == ["deeper"]
    assert await storage.list_dirs("nothing") == []
    assert await storage.exists("sax/a")
    assert await storage.exists("sax/a/location.proto")
    assert not await storage.exists("sax/c")
    # The prefix isolates roots sharing a bucket.
    other = open_storage(f"gs://{BUCKET}/other", gcs_endpoint=gcs_endpoint)
    assert await other.list_dirs("sax") == []


async def test_an_emulator_named_without_a_scheme_is_reached_over_http(
    gcs_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Go's storage client (upstream's admin and saxutil) takes STORAGE_EMULATOR_HOST=HOST:PORT
    # as http://HOST:PORT, and --gcs-endpoint accepts HOST:PORT; google-cloud-storage put it
    # before the path as it was: every call failed "gs://... is unreachable: no answer within
    # 10 s (InvalidSchema)", retried for good (saxgw serve waited for a cell it never read).
    root = f"gs://{BUCKET}/root"
    host_port = gcs_endpoint.removeprefix("http://")
    await open_storage(root, gcs_endpoint=host_port).write("sax/a/location.proto", b"one")
    for variable in (host_port, gcs_endpoint):
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", variable)
        assert await open_storage(root).read("sax/a/location.proto") == b"one"
        assert await open_storage(root).list_dirs("sax") == ["a"]


async def test_cell_and_client_on_a_gs_root(gcs_endpoint: str) -> None:
    root = f"gs://{BUCKET}/sax-root"
    settings = cell_settings(root, gcs_endpoint=gcs_endpoint, fs_root=f"{root}/fs")
    async with running_cell(settings, 1) as cell:
        client_settings = ClientSettings(sax_root=root, gcs_endpoint=gcs_endpoint)
        async with Client(client_settings) as client:
            assert await client.list_cells() == [CELL]
            model_id = f"{CELL}/lm"
            await client.publish(model_id, TEST_LM, "None", 1)
            await client.wait_for_ready(model_id, 1, timeout=20)
            detail = await client.list_detail(model_id)
            assert detail.addresses == [cell.model_servers[0].address]
            result = await client.lm_generate(model_id, "from gcs", CallOptions(timeout=10))
            assert [text for text, _ in result] == ["from gcs"]
            # The cell's ACL lives in config.proto in the bucket.
            await client.set_acl(CELL, "admins")
            assert await client.get_acl(CELL) == "admins"


async def test_a_cell_on_a_gs_root_is_one_upstream_finds(gcs_endpoint: str) -> None:
    # Upstream's tools and servers take a gs:// directory to exist when it holds a METADATA
    # object, which their CreateDir writes: before anything else, saxutil, upstream's model
    # servers and its admin check the cell's. The admin wrote config.proto and location.proto
    # alone, so none of them could use a cell it had made on GCS ("is not a directory").
    root = f"gs://{BUCKET}/sax-root"
    storage = open_storage(root, gcs_endpoint=gcs_endpoint)
    # A cell an earlier version made: its config.proto alone.
    config = admin_pb2.Config(fs_root=f"{root}/older/fsroot").SerializeToString()
    await storage.write("older/sax/test/config.proto", config)
    for made_anew in (root, f"{root}/older"):
        admin = AdminServer(cell_settings(made_anew, gcs_endpoint=gcs_endpoint))
        await admin.start()
        await admin.stop()
    assert await storage.read("sax/test/METADATA") == b""
    assert await storage.read("older/sax/test/METADATA") == b""
    assert await storage.list_dirs("sax") == ["test"]


def _dead_endpoint() -> str:
    """An endpoint where nothing listens: a storage emulator (or GCS) that is down."""
    return f"http://127.0.0.1:{_free_port()}"


async def test_an_unreachable_endpoint_is_a_storage_error_within_the_retry_budget() -> None:
    # google-cloud-storage retries a refused connection for 120 s by default: every caller, and
    # the admin's state lock, waited two minutes for a bucket that was down.
    storage = GcsStorage(f"gs://{BUCKET}/root", endpoint=_dead_endpoint(), retry_timeout=0.5)
    for attempt in (
        storage.read("sax/test/location.proto"),
        storage.write("sax/test/state.proto", b""),
        storage.list_dirs("sax"),
        storage.exists("sax/test"),
    ):
        with pytest.raises(StorageError, match=f"gs://{BUCKET}/root is unreachable"):
            await attempt


async def test_credentials_that_cannot_get_a_token_are_named_as_the_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A service account key whose token endpoint does not answer (on GKE: a NetworkPolicy
    # that shuts the pod out of the metadata server) failed every call "gs://... is
    # unreachable: no answer within 10 s (TransportError)": the operator looked at the bucket,
    # and nothing said that no access token could be had, nor from where.
    token_uri = f"{_dead_endpoint()}/token"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    account = {
        "type": "service_account",
        "project_id": "sax-project",
        "private_key_id": "1",
        "private_key": pem.decode(),
        "client_email": "sax-admin@sax-project.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }
    (tmp_path / "key.json").write_text(json.dumps(account))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "key.json"))
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    storage = GcsStorage(f"gs://{BUCKET}/root", retry_timeout=0.5)
    with pytest.raises(StorageError) as failed:
        await storage.read("sax/test/location.proto")
    message = str(failed.value)
    assert message.startswith(
        f"reading gs://{BUCKET}/root/sax/test/location.proto failed: gs://{BUCKET}/root is "
        "unreachable: retries within 0.5 s gave up; last: TransportError: "
    ), message
    assert "/token" in message and "Connection refused" in message, message


async def test_a_call_whose_deadline_passes_while_gcs_is_down_is_unavailable() -> None:
    # Finding a cell's admin reads its location.proto, which retries a GCS that is down for
    # its retry budget (10 s). A call with a shorter deadline ended DEADLINE_EXCEEDED (504)
    # "admin List for /sax/test did not finish within its deadline", as if the admin had
    # hung, and a longer one UNAVAILABLE (503) naming SAX_ROOT: both are the latter now.
    storage = GcsStorage(f"gs://{BUCKET}/root", endpoint=_dead_endpoint(), retry_timeout=2.0)
    admin = CellAdmin(naming.CellId("test"), storage, RpcCounter(), unreachable_after=5.0)
    try:
        model = admin_pb2.Model(model_id=f"{CELL}/m")
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: admin.call(LIST, admin_pb2.ListRequest(), deadline=Deadline.after(0.5)),
            lambda: admin.call(
                PUBLISH, admin_pb2.PublishRequest(model=model), deadline=Deadline.after(0.5)
            ),
        ]
        for call in calls:
            with pytest.raises(UnavailableError) as caught:
                await call()
            assert caught.value.message == (
                f"could not find the admin server of cell {CELL}: this gateway's SAX_ROOT is "
                "unavailable; retry later"
            )
    finally:
        await admin.close()


async def test_a_deadline_that_no_read_of_the_location_could_meet_is_the_calls_own(
    tmp_path: Path,
) -> None:
    # A local SAX_ROOT answers in microseconds, but a read runs in a thread: a call of a few
    # milliseconds (`grpc-timeout: 2m`, as a fuzzer sends) to a cell never seen before ran
    # out while the location was read, and was UNAVAILABLE (503) "this gateway's SAX_ROOT is
    # unavailable; retry later", blaming a root that was fine. SAX_ROOT is named only when
    # the read made the call wait (the GCS-down test above); else the deadline was too short.
    (tmp_path / "sax" / "test").mkdir(parents=True)
    admin = CellAdmin(naming.CellId("p"), LocalStorage(str(tmp_path)), RpcCounter())
    try:
        answers = set()
        for _ in range(20):
            try:
                await admin.call(LIST, admin_pb2.ListRequest(), deadline=Deadline.after(0.002))
            except (DeadlineExceededError, NotFoundError) as exc:
                answers.add(type(exc).__name__)
        assert answers <= {"DeadlineExceededError", "NotFoundError"}
    finally:
        await admin.close()


async def test_a_missing_bucket_is_a_storage_error_that_names_it(gcs_endpoint: str) -> None:
    storage = open_storage("gs://no-such-bucket/root", gcs_endpoint=gcs_endpoint)
    assert await storage.read("sax/test/location.proto") is None  # as a missing object
    for attempt in (
        storage.write("sax/test/state.proto", b""),
        storage.list_dirs("sax"),
        storage.exists("sax/test"),
    ):
        with pytest.raises(StorageError, match="bucket no-such-bucket does not exist"):
            await attempt


async def test_a_gateway_on_a_missing_bucket_answers_unavailable(
    gcs_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    # It crashed at start: the health probe's list of cells raised google's NotFound. Then
    # callers were told the bucket's URL; now that stays in the log, which the health log
    # (what `saxgw serve` points the operator at while NOT_SERVING) follows.
    settings = ClientSettings(
        sax_root="gs://no-such-bucket/root", gcs_endpoint=gcs_endpoint, admin_unreachable_after=1
    )
    listing = "could not list the cells: this gateway's SAX_ROOT is unavailable; retry later"
    async with Client(settings) as client:
        assert not await cell_reachable(client, timeout=5)
        assert await cell_problem(client, timeout=5) == listing
        with pytest.raises(UnavailableError) as listed:
            await client.list_cells()
        assert listed.value.message == listing
        with pytest.raises(UnavailableError) as found:
            await client.list_all(CELL, timeout=5)
        assert found.value.message == (
            f"could not find the admin server of cell {CELL}: this gateway's SAX_ROOT is "
            "unavailable; retry later"
        )
    warnings = {r.getMessage() for r in caplog.records if r.levelname == "WARNING"}
    missing = "bucket no-such-bucket does not exist (gs://no-such-bucket/root)"
    assert warnings == {
        f"listing gs://no-such-bucket/root/sax failed: {missing}",
        f"looking for gs://no-such-bucket/root/sax/test failed: {missing}",
    }


@pytest.fixture
def front(gcs_endpoint: str) -> Iterator[FaultyFront]:
    """A proxy before the emulator that can fail or lose uploads (tests/_storage.py)."""
    proxy = FaultyFront(int(gcs_endpoint.rsplit(":", 1)[1]))
    yield proxy
    proxy.close()


@pytest.mark.parametrize(
    ("status", "transient"),
    [(401, False), (403, False), (429, True), (500, True), (503, True)],
)
async def test_a_failed_upload_says_whether_a_retry_may_pass_and_keeps_the_old_object(
    front: FaultyFront, status: int, transient: bool
) -> None:
    # Every failure was "gs://... is unreachable", so the admin could not tell GCS refusing
    # its credentials (no retry mends that) from GCS failing for a moment (a retry may).
    storage = GcsStorage(f"gs://{BUCKET}/root", endpoint=front.endpoint, retry_timeout=0.5)
    await storage.write("sax/test/state.proto", b"old")
    front.upload_status = status
    with pytest.raises(StorageError) as failed:
        await storage.write("sax/test/state.proto", b"new")
    assert failed.value.transient is transient
    # 429 and 5xx, retried until the library gave up, were "is unreachable: no answer
    # within 0.5 s", of a storage that answered each time (and often gave up sooner).
    message = str(failed.value)
    assert message.startswith(
        f"writing gs://{BUCKET}/root/sax/test/state.proto failed: gs://{BUCKET}/root "
    ), message
    if transient:
        kept = "kept failing: retries within 0.5 s gave up; last: InvalidResponse"
        assert message.split("root ", 1)[1].startswith(f"{kept} ({status}): "), message
    front.upload_status = None
    assert await storage.read("sax/test/state.proto") == b"old"


async def test_an_upload_that_landed_but_whose_answers_were_lost_succeeds(
    front: FaultyFront,
) -> None:
    # Each upload was stored, and each answer lost (the connection closed): the write failed
    # "gs://... is unreachable" once its retries ran out, though the object held what it
    # wrote. The admin answered a publish so saved UNAVAILABLE, kept it out of memory, and
    # then wrote its old state back over it, logging that another admin had saved over it.
    storage = GcsStorage(f"gs://{BUCKET}/root", endpoint=front.endpoint, retry_timeout=0.5)
    await storage.write("sax/test/state.proto", b"old")
    front.lose_upload_replies = True
    await storage.write("sax/test/state.proto", b"new")
    front.lose_upload_replies = False
    assert await storage.read("sax/test/state.proto") == b"new"


async def test_a_cell_whose_bucket_is_missing_names_that_alone(
    gcs_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Its start logged first that the cell's directory "is not marked as upstream Sax marks
    # one" (its saxutil and servers would not find it), a consequence of the same fault, and
    # a false lead: the start failed, and the operator had a bucket to make, not a marker.
    files = CellFiles(
        cell_settings("gs://no-such-bucket/root", gcs_endpoint=gcs_endpoint, rpc_timeout=1)
    )
    with pytest.raises(StorageError, match="bucket no-such-bucket does not exist"):
        await files.ensure_cell()
    assert [r.getMessage() for r in caplog.records if "not marked" in r.getMessage()] == []
