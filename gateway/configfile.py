"""The ``--config`` file (``saxgw up|serve|gateway|envoy-config --config FILE``): one YAML
file, read and validated as a whole here, and split into each part's frozen settings.

    config = load_config(Path("saxgw.yaml"))   # or ConfigError("saxgw.yaml: tls.cert_file: ...")
    config.edge      # EdgeConfig: auth, clients, quotas, tls, cors, limits, admin_only
    config.models    # {model id: ModelConfig}: the OpenAI-compatible API's models:
    config.supervisor  # RestartSettings: how `saxgw up|serve` restarts and watches children

Each part owns some top-level sections (``_PARTS``); a key no part owns is an error naming
the key and the file, so a misspelt section stops ``saxgw`` at start instead of a rule being
silently dropped. To add a section: a field on `ConfigFile`, a row in ``_PARTS``, and its
parser (it gets the document's sections it owns and the file's folder).
"""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from gateway.common.private import write_private
from gateway.config import ConfigError, parse_yaml, unknown_key, yaml_error_place
from gateway.edge import SECTIONS as EDGE_SECTIONS
from gateway.edge import EdgeConfig, parse_edge
from gateway.modelconfig import ModelConfig, parse_models
from gateway.restartconfig import RestartSettings, parse_restart


@dataclass(frozen=True, kw_only=True)
class ConfigFile:
    """The parsed file; every field's default is what ``saxgw`` runs without ``--config``."""

    edge: EdgeConfig = field(default_factory=EdgeConfig)
    models: Mapping[str, ModelConfig] = field(default_factory=lambda: MappingProxyType({}))
    supervisor: RestartSettings = field(default_factory=RestartSettings)


Parser = Callable[[Mapping[str, Any], Path], Any]


def _models(sections: Mapping[str, Any], base: Path) -> Mapping[str, ModelConfig]:
    return MappingProxyType(parse_models(sections.get("models"), base))


def _supervisor(sections: Mapping[str, Any], _base: Path) -> RestartSettings:
    return parse_restart(sections.get("supervisor"))


#: ``ConfigFile`` field -> (the top-level sections it owns, the parser that builds it).
_PARTS: dict[str, tuple[tuple[str, ...], Parser]] = {
    "edge": (EDGE_SECTIONS, parse_edge),
    "models": (("models",), _models),
    "supervisor": (("supervisor",), _supervisor),
}
SECTIONS = tuple(sorted(s for sections, _ in _PARTS.values() for s in sections))
"""Every top-level key the file may have."""


def parse_config(data: Any, base: Path = Path(".")) -> ConfigFile:
    """Validates an already-parsed document; relative file names are relative to ``base``."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError("the file: expected a mapping of sections")
    for key in data:
        if key not in SECTIONS:
            expected = f"expected one of {', '.join(SECTIONS)}"
            raise unknown_key("", key, expected, kind="section")
    parts = {
        name: parse({k: v for k, v in data.items() if k in owned}, base)
        for name, (owned, parse) in _PARTS.items()
    }
    return ConfigFile(**parts)


def load_config(path: str | Path) -> ConfigFile:
    """Reads ``path``; raises `ConfigError` naming the file and the key at fault."""
    path = Path(path)
    try:
        data = parse_yaml(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML{yaml_error_place(exc)}") from exc
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    if data is None:
        # A file named on purpose that says nothing (emptied by accident, every line commented
        # out) is not taken for the defaults: they authenticate no one.
        raise ConfigError(
            f"{path}: holds no settings (it is empty, or only comments): leave out --config to "
            "run with the defaults (no authentication), or write {} for them"
        )
    try:
        return parse_config(data, path.parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def _read_only(mapping: dict[Any, Any]) -> Mapping[Any, Any]:
    return MappingProxyType(mapping)


class _SnapshotPickler(pickle.Pickler):
    """Pickles the read-only mappings the parsed file holds (``MappingProxyType`` has no
    pickle support of its own) as the mappings they wrap, read-only again when loaded."""

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is MappingProxyType:
            return _read_only, (dict(obj),)
        return NotImplemented


def write_snapshot(config: ConfigFile, path: Path) -> None:
    """Writes the file as `load_config` read it, owner-only (it holds the API keys' clients
    and more), for the processes `saxgw up|serve` starts and restarts: each reads this, never
    the live file again, so an edit while the stack runs reaches none of them (docs/config.md).
    Only a process of the same user that made the stack's private directory reads it back.
    So are the files it names, copied beside it (``path``'s directory is private)."""
    data = io.BytesIO()
    _SnapshotPickler(data, protocol=pickle.HIGHEST_PROTOCOL).dump(_with_copies(config, path))
    write_private(path, data.getvalue())


def _with_copies(config: ConfigFile, snapshot: Path) -> ConfigFile:
    """``config`` naming copies of its models' tokenizer files, beside ``snapshot``: each
    gateway loads its tokenizers as it starts, and one restarted read them as they were then
    (a file replaced since gave its counts, where the others gave the old ones; one removed
    kept it from starting at all, every call 503 once no gateway was left)."""
    copies: dict[str, str] = {}
    models: dict[str, ModelConfig] = {}
    for model_id, model in config.models.items():
        if model.tokenizer is not None:
            if model.tokenizer not in copies:
                copy = snapshot.with_name(f"{snapshot.name}.tokenizer-{len(copies)}")
                write_private(copy, Path(model.tokenizer).read_bytes())
                copies[model.tokenizer] = str(copy)
            model = replace(model, tokenizer=copies[model.tokenizer])
        models[model_id] = model
    return replace(config, models=MappingProxyType(models))


def read_snapshot(path: str | Path) -> ConfigFile:
    """The config `write_snapshot` wrote; raises `ConfigError` if it cannot be read."""
    try:
        with Path(path).open("rb") as file:
            # Unpickled only if it is what write_snapshot leaves: ours, and writable by no one
            # else (a pickle runs code as it loads, so a file another user could write is not).
            mode = os.fstat(file.fileno())
            if mode.st_uid != os.getuid() or mode.st_mode & 0o022:
                raise ConfigError(
                    f"{path}: not a config snapshot of this user's (owner uid {mode.st_uid},"
                    f" mode {mode.st_mode & 0o777:o}): saxgw up|serve writes it owner-only"
                )
            config = pickle.load(file)  # our own private file (write_snapshot), no other
    except (OSError, pickle.UnpicklingError, EOFError) as exc:
        raise ConfigError(f"{path}: cannot read the config snapshot: {exc}") from exc
    if not isinstance(config, ConfigFile):
        raise ConfigError(f"{path}: not a config snapshot")
    return config
