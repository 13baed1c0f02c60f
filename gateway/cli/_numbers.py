"""Numbers as a person reads them: the shortest text that stands for the value.

Sax sends scores as float32 and the gateway sums them as doubles, so a score of three tokens
at -0.1 arrives as -0.30000000000000004; ``number`` prints it -0.3::

    number(-0.1 * 3) == "-0.3"; number(0.1) == "0.1"; number(2.0) == "2"

A vector's numbers (`exact`) keep every digit a double has: they are data, not sums.
"""

from __future__ import annotations

import math
import struct
from typing import Any

# A double rounded to 15 digits is printed so when that moves it by at most 1 unit in the last
# place: the noise of summing float32 scores (-0.1 * 3), not information (an embedding's digits).
_DOUBLE_DIGITS = 15
_NOISE_ULPS = 1


def _as_float32(value: float) -> float:
    result: float = struct.unpack("f", struct.pack("f", value))[0]
    return result


def number(value: float) -> str:
    """The shortest decimal for a score or another sum: exact for float32 values; doubles
    without the noise in their last bits."""
    value = float(value) + 0.0  # + 0.0 turns -0.0 into 0.0
    if not math.isfinite(value):
        return repr(value)
    rounded = float(f"{value:.{_DOUBLE_DIGITS}g}")
    if abs(rounded - value) <= _NOISE_ULPS * math.ulp(value):
        value = rounded  # only arithmetic noise was dropped
    return exact(value)


def exact(value: float) -> str:
    """The shortest decimal that reads back as ``value`` (as a float32, for a float32 value):
    for data, whose every digit may matter (a video's tokens, which `vm.token_to_video`
    reads back; an embedding). Rounded as a score is, a token moved by one unit in the last
    place, and the video made of it was another."""
    value = float(value) + 0.0
    text = repr(value)
    if math.isfinite(value) and abs(value) <= 3.4e38 and _as_float32(value) == value:
        for digits in range(1, 10):
            short = f"{value:.{digits}g}"
            if _as_float32(float(short)) == value:
                text = repr(float(short))
                break
    return text.removesuffix(".0")


def shorten(data: Any) -> Any:
    """``data`` (parsed JSON) with every float replaced by its shortest form: a score's
    (`number`), or, in a list of numbers (a vector: tokens, an embedding), its exact one."""
    if isinstance(data, float):
        return float(number(data))
    if isinstance(data, dict):
        return {key: shorten(value) for key, value in data.items()}
    if isinstance(data, list):
        return [float(exact(item)) if isinstance(item, float) else shorten(item) for item in data]
    return data
