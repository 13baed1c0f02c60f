"""SAX_ROOT storage, re-exported from its home, `gateway.common.storage` (kept for old imports)."""

from __future__ import annotations

from gateway.common.storage import (
    GcsStorage,
    LocalStorage,
    Storage,
    open_storage,
)

__all__ = [
    "GcsStorage",
    "LocalStorage",
    "Storage",
    "open_storage",
]
