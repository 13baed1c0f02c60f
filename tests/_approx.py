"""`pytest.approx` typed as the number it stands in for."""

from __future__ import annotations

from typing import cast

import pytest


def approx(expected: float) -> float:
    """``pytest.approx(expected)``, which compares equal to floats near ``expected``.

    pytest types it as ``ApproxBase``, so mypy's strict equality rejects it inside a list or
    tuple of floats (or a field typed ``float``); at run time it is the same object.
    """
    return cast(float, pytest.approx(expected))
