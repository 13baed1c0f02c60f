"""Deterministic pseudo-random numbers derived from bytes: the stand-ins' "weights"."""

from __future__ import annotations

import hashlib
import struct


def digest(*parts: bytes | str | int) -> bytes:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        data = data if isinstance(data, bytes) else str(data).encode()
        h.update(len(data).to_bytes(4, "big"))
        h.update(data)
    return h.digest()


def unit_floats(n: int, *parts: bytes | str | int) -> list[float]:
    """n floats in [-1, 1), a pure function of parts."""
    out: list[float] = []
    counter = 0
    while len(out) < n:
        block = digest(*parts, counter)
        for (value,) in struct.iter_unpack(">I", block):
            out.append(value / 2**31 - 1.0)
        counter += 1
    return out[:n]
