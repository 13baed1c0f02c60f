"""Validation of model paths and checkpoints (model and cell IDs: `gateway.naming`), with
upstream's patterns, so that what this cell accepts, a real cell accepts."""

from __future__ import annotations

import re

from gateway.cell._errors import invalid_argument

_MODEL_PATH = re.compile(r"[a-zA-Z]+[a-zA-Z0-9_.-]*")
_CHECKPOINT = re.compile(r"(/|\d|\w|_|\.|-|%|:|=|\||\+)+")


def check_model_path(model_path: str) -> None:
    if not _MODEL_PATH.fullmatch(model_path):
        raise invalid_argument(f"model path {model_path!r} must match '^{_MODEL_PATH.pattern}$'")


def check_checkpoint(checkpoint: str) -> None:
    if not _CHECKPOINT.fullmatch(checkpoint):
        raise invalid_argument(
            f"checkpoint path {checkpoint!r} must match '^{_CHECKPOINT.pattern}$'"
            " (use the literal None for random weights)"
        )
