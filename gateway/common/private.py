"""Files only their owner may read: what `saxgw up|serve` and `saxgw envoy-config` write that
holds secrets (Envoy's config, with the API keys; the config snapshot the gateways read)."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, data: str | bytes) -> None:
    """Writes ``data`` to ``path`` readable by its owner only (0600, even if the file was
    there before with another mode)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data.encode() if isinstance(data, str) else data)
    path.chmod(0o600)
