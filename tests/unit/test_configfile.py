"""The config snapshot `saxgw up|serve` hands its gateway processes (gateway/configfile.py)."""

from __future__ import annotations

import io
import re
import stat
from pathlib import Path
from typing import Any

import pytest
import sentencepiece
import yaml

from gateway.config import ConfigError, ModelLimit
from gateway.configfile import load_config, parse_config, read_snapshot, write_snapshot
from gateway.edge import EdgeConfig, Limits
from gateway.restartconfig import RestartSettings
from gateway.service.openai._tokens import TokenCounter

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


def test_a_snapshot_keeps_the_tokenizers_the_config_was_read_with(tmp_path: Path) -> None:
    # Each gateway loads its models' tokenizers as it starts: one the supervisor started
    # again read the files as they were then. One replaced meanwhile gave its counts where
    # the stack's other gateways gave the old ones; one removed kept it from starting.
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(["a b c", "b c a"]),
        model_writer=model,
        model_type="word",
        vocab_size=6,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    tokenizer = tmp_path / "spm.model"
    tokenizer.write_bytes(model.getvalue())
    path = tmp_path / "saxgw.yaml"
    path.write_text(
        "models:\n  /sax/test/a: {tokenizer: spm.model}\n  /sax/test/b: {tokenizer: spm.model}\n"
    )
    snapshot = tmp_path / "private" / "config.snapshot"
    snapshot.parent.mkdir()
    write_snapshot(load_config(path), snapshot)
    tokenizer.unlink()
    read = read_snapshot(snapshot)
    [copy] = {str(m.tokenizer) for m in read.models.values()}  # one copy of one file
    assert Path(copy).parent == snapshot.parent
    assert Path(copy).read_bytes() == model.getvalue()
    assert stat.S_IMODE(Path(copy).stat().st_mode) == 0o600
    assert TokenCounter(read.models).count("/sax/test/a", "a b c") == 3


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


DOCS = Path(__file__).resolve().parents[2] / "docs"

# An unknown key in each mapping the loader reads: its refusal lists the keys it takes there.
PROBES: list[dict[str, Any]] = [
    {"bogus": 1},
    {"auth": {"bogus": 1}},
    {"auth": {"api_keys": [{"bogus": 1}]}},
    {"auth": {"jwt": [{"bogus": 1}]}},
    {"clients": {"a": {"bogus": 1}}},
    {"clients": {"a": {"rate": {"bogus": 1}}}},
    {"quotas": {"bogus": 1}},
    {"quotas": {"model": {"bogus": 1}}},
    {"tls": {"bogus": 1}},
    {"cors": {"bogus": 1}},
    {"limits": {"bogus": 1}},
    {"models": {"/sax/test/x": {"bogus": 1}}},
    {"supervisor": {"bogus": 1}},
    {"admin_only": ["bogus"]},
]


def _path(probe: Any) -> list[str]:
    """The keys leading to a probe's unknown key."""
    if isinstance(probe, list):
        return _path(probe[0]) if isinstance(probe[0], dict) else []
    key, value = next(iter(probe.items()))
    return [] if key == "bogus" else [key, *_path(value)]


@pytest.mark.parametrize("probe", PROBES, ids=lambda p: ".".join(_path(p)))
def test_every_key_the_loader_takes_is_documented(probe: dict[str, Any]) -> None:
    # docs/config.md is the file's reference (the `models:` keys are in docs/openai.md's
    # example): a key the loader takes that the page never names could only be guessed.
    with pytest.raises(ConfigError, match=r"expected (one|any) of ") as refused:
        parse_config(probe)
    keys = str(refused.value).split(" of ")[-1].split(", ")
    pages = (DOCS / "config.md").read_text() + (DOCS / "openai.md").read_text()
    named = [k for k in keys if re.search(rf"`{k}[`.]|^ *(- )?{k}:", pages, re.M)]
    assert named == keys


def _documented_files() -> list[Any]:
    """Every config file the pages show: ```yaml blocks, and the README's `<<'YAML'` heredocs."""
    pages = [DOCS.parent / "README.md", *sorted(DOCS.glob("*.md"))]
    found = []
    for page in pages:
        text = page.read_text()
        blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
        blocks += re.findall(r"<<'YAML'\n(.*?)\nYAML\n", text, re.S)
        found += [pytest.param(block, id=f"{page.name}[{i}]") for i, block in enumerate(blocks)]
    return found


@pytest.mark.parametrize("text", _documented_files())
def test_every_config_file_the_pages_show_loads(text: str, tmp_path: Path) -> None:
    # A reader copies these as they stand; one the loader refuses stops `saxgw` at start.
    # Files of the operator's own are left out: PEM files, a tokenizer, a JWKS (given here).
    example = yaml.safe_load(text)
    example.pop("tls", None)
    for settings in (example.get("models") or {}).values():
        settings.pop("tokenizer", None)
    (tmp_path / "jwks.json").write_text('{"keys": [{"kty": "oct", "k": "c2VjcmV0LWtleQ"}]}')
    parse_config(example, tmp_path)


def test_the_documented_example_is_a_valid_file_of_the_defaults(tmp_path: Path) -> None:
    # docs/config.md says its example shows the defaults of `limits`, `supervisor` and
    # `quotas.model`: a default changed in code alone made the page tell operators a wrong one.
    page = (DOCS / "config.md").read_text()
    example = yaml.safe_load(page.split("## A complete example\n\n```yaml\n")[1].split("```")[0])
    (tmp_path / "jwks.json").write_text('{"keys": [{"kty": "oct", "k": "c2VjcmV0LWtleQ"}]}')
    del example["tls"]  # PEM files of the operator's
    config = parse_config(example, tmp_path)
    assert config.edge.limits == Limits()
    assert config.supervisor == RestartSettings()
    assert config.edge.quotas.model == ModelLimit()
    assert config.edge.acl_cache_seconds == EdgeConfig().acl_cache_seconds
    assert config.edge.admin_only == EdgeConfig().admin_only
