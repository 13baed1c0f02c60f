"""The config file (``saxgw up|serve|gateway --config FILE``): YAML, validated as a whole.

Only the ``models:`` section exists so far (per-model aliases, chat templates, tokenizers of
the OpenAI-compatible API; see `gateway.modelconfig`). Every top-level key is checked, so a
misspelt section is an error at start rather than a setting silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from gateway.modelconfig import ConfigError, ModelConfig, parse_models

# The edge's sections (auth, quotas, TLS, ...) are validated by gateway.edge, which the CLI runs
# on the same file first; this module owns ``models:``. Both know every top-level key.
_SECTIONS = frozenset(
    {"auth", "clients", "quotas", "tls", "cors", "limits", "admin_only", "models"}
)


@dataclass(frozen=True, kw_only=True)
class FileConfig:
    """The parsed config file."""

    models: dict[str, ModelConfig] = field(default_factory=dict)


def load_config(path: str | Path) -> FileConfig:
    """Reads and validates ``path``; raises `ConfigError` naming the file and key at fault."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    unknown = sorted(set(raw) - _SECTIONS)
    if unknown:
        raise ConfigError(f"{path}: unknown section {unknown[0]!r}; known: {sorted(_SECTIONS)}")
    try:
        return FileConfig(models=parse_models(raw.get("models"), path.parent))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
