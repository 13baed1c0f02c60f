"""Admin operations of the Sax client against the embedded cell, over real sockets."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import pytest

from gateway.client import (
    AlreadyExistsError,
    CallOptions,
    Client,
    ClientSettings,
    DeadlineExceededError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    ServerTypeStat,
    UnavailableError,
)
from tests.integration._client_fixtures import (
    CELL,
    SEED_LM,
    TEST_LM,
    TEST_VISION,
    RunningCell,
    publish_ready,
)


async def test_list_cells_finds_the_cell(client: Client) -> None:
    assert await client.list_cells() == [CELL]


async def test_publish_list_detail_unpublish(client: Client, cell: RunningCell) -> None:
    model_id = f"{CELL}/foo"
    await client.publish(model_id, TEST_LM, "None", 2, {"num_samples": "2"})
    await client.wait_for_ready(model_id, 2, timeout=20)

    detail = await client.list_detail(model_id)
    assert detail.model_id == model_id
    assert detail.model_path == TEST_LM
    assert detail.checkpoint == "None"
    assert detail.max_replicas == 2
    assert detail.active_replicas == 2
    assert detail.overrides == {"num_samples": "2"}
    assert detail.addresses == sorted(s.address for s in cell.model_servers)
    assert "lm.generate" in detail.method_names

    await client.unpublish(model_id)
    with pytest.raises(NotFoundError):
        await client.list_detail(model_id)


async def test_publish_twice_is_already_exists(client: Client) -> None:
    await client.publish(f"{CELL}/dup", TEST_LM, "None", 1)
    with pytest.raises(AlreadyExistsError):
        await client.publish(f"{CELL}/dup", TEST_LM, "None", 1)


async def test_publish_bad_model_path_is_invalid_argument(client: Client) -> None:
    with pytest.raises(InvalidArgumentError):
        await client.publish(f"{CELL}/bad", "not a path!", "None", 1)


async def test_update_changes_only_given_fields(client: Client) -> None:
    model_id = await publish_ready(client, "upd", replicas=1, overrides={"text": "a"})
    await client.update(model_id, num_replicas=2)
    await client.wait_for_ready(model_id, 2, timeout=20)
    detail = await client.list_detail(model_id)
    assert (detail.max_replicas, detail.active_replicas) == (2, 2)
    assert detail.overrides == {"text": "a"}
    assert detail.model_path == TEST_LM

    await client.update(model_id, overrides={"text": "b"})
    assert (await client.list_detail(model_id)).overrides == {"text": "b"}


async def test_concurrent_updates_of_one_model_keep_every_change(client: Client) -> None:
    # An update reads the model, changes its fields and writes it whole (Sax's Update takes
    # the whole model). Two at once read the same model, and the second write lost the
    # first's change: here the replicas, or the overrides.
    model_id = await publish_ready(client, "concurrent", replicas=0, overrides={"text": "a"})
    await asyncio.gather(
        client.update(model_id, num_replicas=1),
        client.update(model_id, overrides={"text": "b"}),
        client.update(model_id, checkpoint="None"),
    )
    detail = await client.list_detail(model_id)
    assert (detail.max_replicas, detail.overrides) == (1, {"text": "b"})


async def test_unpublish_unknown_is_not_found(client: Client) -> None:
    with pytest.raises(NotFoundError):
        await client.unpublish(f"{CELL}/never")


async def test_list_all_is_sorted(client: Client) -> None:
    for name in ("zz", "aa", "mm"):
        await client.publish(f"{CELL}/{name}", TEST_LM, "None", 0)
    models = await client.list_all(CELL)
    assert [m.model_id for m in models] == [f"{CELL}/aa", f"{CELL}/mm", f"{CELL}/zz"]


async def test_stats_of_cell_and_model(client: Client) -> None:
    stats = await client.stats(CELL)
    assert stats.server_types == [ServerTypeStat("CHIP_TYPE_CPU", "CHIP_TOPOLOGY_1", 2)]
    assert stats.servers_by_model_path[SEED_LM] == 2
    assert stats.servers_by_model_path[TEST_VISION] == 2

    model_id = await publish_ready(client, "one", replicas=1)
    model_stats = await client.stats(model_id)
    assert sum(s.num_replicas for s in model_stats.server_types) == 1


async def test_wait_for_ready_times_out_when_replicas_cannot_exist(client: Client) -> None:
    await client.publish(f"{CELL}/many", TEST_LM, "None", 3)  # only two servers exist
    with pytest.raises(DeadlineExceededError):
        await client.wait_for_ready(f"{CELL}/many", 3, timeout=0.5)


async def test_cell_acl_reads_and_writes_config(client: Client, cell: RunningCell) -> None:
    assert await client.get_acl(CELL) == ""
    # Writes a kill cut short (a temp file a gateway never renamed) went nowhere, and piled
    # up in SAX_ROOT: an old one goes at the next write, one of a write in flight stays.
    folder = Path(cell.sax_root) / CELL.removeprefix("/")
    old, fresh = folder / ".config.proto.cut.tmp", folder / ".config.proto.flight.tmp"
    old.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(old, (time.time() - 120, time.time() - 120))
    await client.set_acl(CELL, "sax-admins")
    assert await client.get_acl(CELL) == "sax-admins"
    assert sorted(p.name for p in folder.glob(".config.proto.*")) == [fresh.name]


async def test_model_acl_and_method_acl(client: Client) -> None:
    model_id = await publish_ready(client, "acl", replicas=1)
    await client.set_acl(model_id, "owners")
    await client.set_acl(model_id, "readers", method="lm.generate")
    assert await client.get_acl(model_id) == "owners"
    assert await client.get_acl(model_id, method="lm.generate") == "readers"
    assert (await client.list_detail(model_id)).acls == {"lm.generate": "readers"}
    await client.set_acl(model_id, "", method="lm.generate")
    assert (await client.list_detail(model_id)).acls == {}


@pytest.mark.parametrize("bad", ["", "foo", "/sax/test/Foo", "/sax/test", "/sax/Test/foo"])
async def test_invalid_model_id_fails_before_any_rpc(client: Client, bad: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        await client.list_detail(bad)
    assert info.value.field_violations[0][0] == "model_id"
    with pytest.raises(InvalidArgumentError):
        await client.lm_generate(bad, "x")
    assert client.admin_rpcs == 0


async def test_unknown_cell_is_not_found(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "gateway.client")
    with pytest.raises(NotFoundError) as missing:
        await client.list_all("/sax/nope")
    assert missing.value.message == "cell /sax/nope not found"  # no server path to clients
    [logged] = [r for r in caplog.records if "/sax/nope not found" in r.getMessage()]
    assert logged.levelno == logging.DEBUG
    assert logged.getMessage().startswith("cell /sax/nope not found: no ")
    assert logged.getMessage().endswith("/sax/nope")
    with pytest.raises(NotFoundError):
        await client.lm_generate("/sax/nope/lm", "x", CallOptions(timeout=5))
    # Any caller can name cells of its choosing, one per request: INFO says so once (then
    # once a minute), not once per call (and once more for its ACL read).
    for name in ("nope2", "nope3", "nope4"):
        with pytest.raises(NotFoundError):
            await client.list_all(f"/sax/{name}")
    infos = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert len([m for m in infos if "cells that do not exist" in m]) == 1, infos


async def test_client_follows_admin_to_a_new_address(
    client: Client, cell: RunningCell, lm: str
) -> None:
    before = await client.list_detail(lm)
    old_address = cell.admin_address
    await cell.move_admin()
    assert cell.admin_address != old_address

    # The old address refuses connections now: the client must re-read location.proto.
    models = await client.list_all(CELL, timeout=20)
    assert lm in [m.model_id for m in models] or models == []
    await client.publish(f"{CELL}/after-move", TEST_LM, "None", 0)
    assert (await client.list_detail(f"{CELL}/after-move")).model_path == TEST_LM

    # Data calls kept going meanwhile and still do.
    assert await client.lm_generate(lm, "still here", CallOptions(timeout=10))
    assert before.model_id == lm


async def test_admin_timeout_default_applies(cell: RunningCell) -> None:
    settings = ClientSettings(sax_root=cell.sax_root, admin_timeout=0.3)
    async with Client(settings) as client:
        await client.publish(f"{CELL}/slow", TEST_LM, "None", 3)
        started = asyncio.get_running_loop().time()
        with pytest.raises(DeadlineExceededError):
            await client.wait_for_ready(f"{CELL}/slow", 3)
        # Its admin_timeout (0.3 s); without it, the default 10 s. 5 s, not 2 s: a loaded
        # host's pauses, far from both.
        assert asyncio.get_running_loop().time() - started < 5


async def test_a_missing_sax_root_is_unavailable_not_an_unknown_cell(tmp_path: Path) -> None:
    # Every cell was "not found" (404) while SAX_ROOT was missing (a volume not mounted yet,
    # a wrong --sax-root): a caller took its cell name for wrong, and nobody retried.
    settings = ClientSettings(sax_root=str(tmp_path / "missing"), admin_unreachable_after=0.2)
    async with Client(settings) as client:
        with pytest.raises(UnavailableError, match="no Sax cell exists under this gateway's"):
            await client.list_all(CELL, timeout=5)
        with pytest.raises(UnavailableError, match="check its --sax-root"):
            await client.lm_generate(f"{CELL}/lm", "x", CallOptions(timeout=5))


async def test_a_sax_root_that_refuses_the_gateway_is_internal_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A local SAX_ROOT that cannot be read (here a symlink loop; also permissions) first
    # raised a bare OSError, then UNAVAILABLE naming the path: the caller learnt where this
    # server keeps its files, and retried what no retry mends. Its operator must act: INTERNAL
    # (the server's fault), with the path and cause in the log, once per failure.
    sax = tmp_path / "sax"
    sax.symlink_to(sax)
    async with Client(ClientSettings(sax_root=str(tmp_path))) as client:
        with pytest.raises(InternalError) as listing:
            await client.list_cells()
        assert listing.value.message == (
            "could not list the cells: this gateway's SAX_ROOT failed; its operator finds why "
            "in the gateway's log"
        )
        started = asyncio.get_running_loop().time()
        with pytest.raises(InternalError) as finding:
            await client.list_all(CELL, timeout=20)
        assert finding.value.message == (
            f"could not find the admin server of cell {CELL}: this gateway's SAX_ROOT failed; "
            "its operator finds why in the gateway's log"
        )
        # Not retried: milliseconds; retried, it would fail after the unreachable window (5 s
        # by default) at the soonest. 3 s, not 1 s: a loaded host's pauses, far from both.
        assert asyncio.get_running_loop().time() - started < 3
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        f"listing {sax} failed: [Errno 40] Too many levels of symbolic links: '{sax}'",
        f"reading {sax}/test/location.proto failed: [Errno 40] Too many levels of symbolic "
        f"links: '{sax}/test/location.proto'",
    ]
