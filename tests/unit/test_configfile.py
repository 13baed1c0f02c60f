"""The config snapshot `saxgw up|serve` hands its gateway processes (gateway/configfile.py)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gateway.config import ConfigError
from gateway.configfile import load_config, read_snapshot, write_snapshot

CONFIG = """\
auth:
  api_keys:
    - {key: sk-ops-3f9c2b7e1d6a4f08, client: ops, roles: [admin, data]}
  groups: {team-a: [ops]}
clients:
  ops: {models: ["/sax/test/*"], max_concurrent: 4}
quotas:
  models: {/sax/test/lm: {max_in_flight: 8, max_queued: 16}}
models:
  /sax/test/lm: {aliases: [gpt-x], stop: [END]}
supervisor: {first_delay: 0.2}
"""


def test_snapshot_is_the_config_read_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "saxgw.yaml"
    path.write_text(CONFIG)
    config = load_config(path)
    snapshot = tmp_path / "config.snapshot"
    write_snapshot(config, snapshot)
    path.write_text("auth: [\n")  # the file changes; the snapshot does not
    assert read_snapshot(snapshot) == config
    assert stat.S_IMODE(snapshot.stat().st_mode) == 0o600
    # Read-only mappings stay read-only.
    with pytest.raises(TypeError):
        read_snapshot(snapshot).edge.clients["x"] = config.edge.clients["ops"]  # type: ignore[index]


def test_a_missing_or_foreign_snapshot_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config snapshot"):
        read_snapshot(tmp_path / "none")
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(ConfigError, match="cannot read the config snapshot"):
        read_snapshot(tmp_path / "empty")


def test_a_snapshot_others_could_write_is_not_unpickled(tmp_path: Path) -> None:
    # A pickle runs code as it loads: one that another user could have written is refused
    # before it is read, as is one that is not this user's.
    path = tmp_path / "saxgw.yaml"
    path.write_text("limits: {max_stream_duration: 30}\n")
    snapshot = tmp_path / "config.snapshot"
    write_snapshot(load_config(str(path)), snapshot)
    snapshot.chmod(0o662)
    with pytest.raises(
        ConfigError, match=r"not a config snapshot of this user's \(owner uid \d+, mode 662\)"
    ):
        read_snapshot(snapshot)
