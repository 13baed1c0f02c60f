"""`sax_gateway.testing.TestMultimodal` (mm.generate, mm.score, mm.embed): a stand-in whose
answers are a pure function of the items. Generate describes the items it was given (one text
item per sample); score and embed hash them."""

from __future__ import annotations

from gateway.cell.models._hashing import unit_floats
from gateway.cell.models.base import (
    MM_EMBED,
    MM_GENERATE,
    MM_SCORE,
    ExtraInputs,
    Item,
    ServableModel,
)

MULTIMODAL_PATH = "sax_gateway.testing.TestMultimodal"


def describe(items: list[Item]) -> str:
    """What the stand-in says about ``items``: e.g. "text(5) image_bytes(67)"."""
    return " ".join(f"{kind}({len(value)})" for kind, value in items) or "nothing"


def _parts(items: list[Item]) -> list[str | bytes]:
    return [part for kind, value in items for part in (kind, value)]


class TestMultimodal(ServableModel):
    method_names = frozenset({MM_GENERATE, MM_SCORE, MM_EMBED})

    async def mm_generate(
        self, items: list[Item], extra: ExtraInputs
    ) -> list[tuple[list[Item], float]]:
        return [([("text", f"saw {describe(items)}")], -0.25)]

    async def mm_score(
        self, prefix: list[Item], suffix: list[Item], extra: ExtraInputs
    ) -> list[float]:
        (value,) = unit_floats(1, "score", *_parts(prefix), "|", *_parts(suffix))
        return [(value - 1) / 2]  # a log probability: <= 0

    async def mm_embed(self, items: list[Item], extra: ExtraInputs) -> list[float]:
        return unit_floats(8, "embed", *_parts(items))
