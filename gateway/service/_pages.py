"""ListModels' pages (AIP-158): a big cell's listing, a page at a time.

A cell's listing holds every model's definition: hundreds of models with large overrides
outgrow the gateway's message limit, and a listing that cannot be split cannot be read at all.
A page token is the ID of the last model of the page before (models are sorted by ID), so a
page after a model published or unpublished meanwhile neither repeats nor skips one that was
there throughout::

    wanted = Page.asked("/sax/test", size=100, token="")   # INVALID_ARGUMENT if malformed
    models, next_token = wanted.of(details, to_proto, budget=32 << 20)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from google.protobuf.message import Message

from gateway.client import ModelDetail
from gateway.common.limits import quote
from gateway.service import _fields as f

#: The largest page; a larger page_size is taken as this one, as AIP-158 asks.
MAX_PAGE_SIZE = 1000

_Detail = TypeVar("_Detail", bound=ModelDetail)
_Shown = TypeVar("_Shown", bound=Message)


@dataclass(frozen=True)
class Page:
    """Which models of a cell's listing a caller asked for."""

    size: int
    """The most models; 0: all of them."""
    after: str
    """The model ID the page starts after; "" for the first page."""

    @classmethod
    def asked(cls, cell: str, *, size: int, token: str) -> Page:
        """The page a request names; INVALID_ARGUMENT for a negative size, or a token that
        is not a model ID of ``cell`` (so no page of its listing gave it)."""
        if size < 0:
            raise f.invalid("page_size", f"must be 0 (all) or more, got {size}")
        # A token is only compared with model IDs: any model ID of the cell is one.
        name = token.removeprefix(f"{cell}/")
        if token and (name == token or not name or "/" in name):
            raise f.invalid("page_token", f"{quote(token)} is no token of a page of {cell}")
        return cls(size=min(size, MAX_PAGE_SIZE), after=token)

    def of(
        self, details: Sequence[_Detail], shown: Callable[[_Detail], _Shown], budget: int
    ) -> tuple[list[_Shown], str]:
        """This page of ``details`` (sorted by model ID), each as ``shown``, and the next
        page's token ("" when this is the last page). A page also ends before its models
        would pass ``budget`` bytes (the reply's limit), but for its first: a page of large
        definitions fails as a whole listing did, and a smaller page_size cannot help."""
        if self.after:
            details = [d for d in details if d.model_id > self.after]
        if self.size == 0:
            return [shown(d) for d in details], ""
        page: list[_Shown] = []
        for detail in details:
            message = shown(detail)
            # Each repeated message costs its bytes, a tag and a length (at most 6 bytes).
            budget -= message.ByteSize() + 6
            if len(page) == self.size or (page and budget < 0):
                return page, details[len(page) - 1].model_id
            page.append(message)
        return page, ""
