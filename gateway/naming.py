"""Sax names, re-exported from their home, `gateway.common.names` (kept for old imports)."""

from __future__ import annotations

from gateway.common.names import (
    NAME_PATTERN,
    PREFIX,
    CellId,
    ModelId,
    check_checkpoint,
    check_model_path,
    is_valid_name,
    parse_cell_id,
    parse_cell_or_model_id,
    parse_model_id,
)

__all__ = [
    "NAME_PATTERN",
    "PREFIX",
    "CellId",
    "ModelId",
    "check_checkpoint",
    "check_model_path",
    "is_valid_name",
    "parse_cell_id",
    "parse_cell_or_model_id",
    "parse_model_id",
]
