"""The body of an embeddings reply, written as its vectors arrive.

A request may ask for 2,048 inputs; with a model's 4,096 dimensions their JSON floats come to
170 MB, over the gateway's message limit. Built whole and then measured, such a reply took
seconds and hundreds of MB before its 400. Each vector is written as it comes instead, and the
reply is refused once what is written, with the least the vectors still to come can take, is
over the limit: after a few hundred calls, with a few tens of MB held, or, in base64, whose
size the first vector fixes, after the first.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Sequence
from typing import Any

from google.api import httpbody_pb2

from gateway.client import InvalidArgumentError
from gateway.service._errors import GRPC_FRAME_BYTES
from gateway.service.openai._responses import JSON

#: What frames each vector's value in the list, its index aside: `_item`.
_ITEM_BYTES = len('{"object": "embedding", "index": , "embedding": }, ')


class EmbeddingList:
    """An embedding list for ``count`` inputs, within ``limit`` bytes of message."""

    def __init__(self, count: int, as_base64: bool, limit: int, hint: str) -> None:
        self._values: dict[int, str] = {}
        self._count, self._base64, self._limit, self._hint = count, as_base64, limit, hint
        self._size = GRPC_FRAME_BYTES + len(JSON) + 64  # the message's framing, the head
        self._least = 0  # the fewest bytes a vector still to come takes (known from the first)

    def add(self, index: int, vector: Sequence[float]) -> None:
        """Writes input ``index``'s ``vector``: INVALID_ARGUMENT if the reply would be over
        the limit, counting what the vectors still to come take at the least."""
        value = _value(vector, self._base64)
        self._values[index] = value
        self._size += len(value) + _ITEM_BYTES + len(str(index))
        if not self._least:
            self._least = _least_bytes(len(vector), self._base64) + _ITEM_BYTES + 1
        bound = self._size + (self._count - len(self._values)) * self._least
        if bound > self._limit:
            raise InvalidArgumentError(
                f"the response would be at least {bound} bytes, over this gateway's limit of "
                f"{self._limit} bytes: {self._hint}"
            )

    def body(self, model: str, usage: dict[str, Any]) -> httpbody_pb2.HttpBody:
        """The reply: every vector, in order, then the model and the prompt's ``usage``."""
        items = ", ".join(_item(i, self._values[i]) for i in range(self._count))
        tail = json.dumps({"model": model, "usage": _prompt_usage(usage)})[1:]
        data = f'{{"object": "list", "data": [{items}], {tail}'
        return httpbody_pb2.HttpBody(content_type=JSON, data=data.encode())


def _item(index: int, value: str) -> str:
    return f'{{"object": "embedding", "index": {index}, "embedding": {value}}}'


def _prompt_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """An embedding's usage: the prompt's counts alone, its total the prompt's."""
    prompt = {k: v for k, v in usage.items() if not k.startswith(("completion", "total"))}
    prompt["total_tokens"] = usage["prompt_tokens"]
    if "total_characters" in usage:
        prompt["total_characters"] = usage["prompt_characters"]
    return prompt


def _value(vector: Sequence[float], as_base64: bool) -> str:
    """``vector`` as JSON: base64 of its little-endian float32 bytes, as OpenAI's, or numbers."""
    if as_base64:
        return '"' + base64.b64encode(_float32s(vector)).decode() + '"'
    if all(map(math.isfinite, vector)):  # the usual case, at C speed
        return json.dumps(list(vector))
    return json.dumps([_json_number(v) for v in vector])


def _least_bytes(dimensions: int, as_base64: bool) -> int:
    """The fewest bytes `_value` writes for a vector of ``dimensions``: base64's, exactly; a
    number's one digit and its separator each."""
    if as_base64:
        return 2 + 4 * math.ceil(4 * dimensions / 3)
    return 2 + max(3 * dimensions - 2, 0)


_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def _json_number(value: float) -> float | str:
    """``value``, or the string proto3 JSON spells it with where JSON has no number for it
    ("NaN", "Infinity", "-Infinity"), as /embed answers it: json.dumps wrote NaN, which no
    client's JSON parser reads."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else _NON_FINITE[value]


def _float32s(vector: Sequence[float]) -> bytes:
    """``vector`` as little-endian float32s, a value beyond float32's range as the infinity
    a cast to float32 rounds it to: struct refused it with OverflowError (a 500)."""
    try:
        return struct.pack(f"<{len(vector)}f", *vector)
    except OverflowError:
        return b"".join(_float32(v) for v in vector)


def _float32(value: float) -> bytes:
    try:
        return struct.pack("<f", value)
    except OverflowError:
        return struct.pack("<f", math.copysign(math.inf, value))
