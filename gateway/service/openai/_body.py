"""An OpenAI request's body: a JSON object in strict UTF-8 whose text is all valid Unicode."""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

from gateway.client import InvalidArgumentError
from gateway.service._fields import invalid

# A \\uXXXX escape of a UTF-16 surrogate (d800-dfff). JSON may spell a lone one, which
# json.loads keeps as is and protobuf cannot encode: only a body with one is walked.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")


class _NotJson(ValueError):
    """A token Python's json reads that JSON has no value for (raised while parsing)."""


def _constant(name: str) -> float:
    # NaN, Infinity and -Infinity: JavaScript's, not JSON's (RFC 8259 6).
    raise _NotJson(f"{name} is not a JSON value")


def _double(text: str) -> float:
    # A number JSON spells but a double cannot hold (1e400) would be infinity: refused, as
    # the native routes' parser refuses it ("Number exceeds the range of double").
    value = float(text)
    if math.isinf(value):
        raise _NotJson(f"{text} is out of a double's range")
    return value


def parse_body(data: bytes) -> dict[str, Any]:
    """The request's JSON object, whose text is all valid Unicode.

    The body is decoded as strict UTF-8 (RFC 8259's only encoding for JSON on a network; a
    leading byte order mark is ignored, as it permits): ``json.loads(bytes)`` would guess
    UTF-16 or UTF-32 from the first bytes, and decode surrogates encoded as UTF-8 (ED A0 BD)
    as they are, which protobuf cannot encode (a 500). What Python's json takes beyond JSON
    (NaN, Infinity) and numbers no double holds are not valid JSON either, as on the native
    routes: such a body was served, its value ignored or "must be a number".
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidArgumentError(
            f"the request body is not UTF-8: {exc.reason} at byte {exc.start}"
        ) from None
    try:
        body = json.loads(text or "null", parse_constant=_constant, parse_float=_double)
    except _NotJson as exc:
        raise InvalidArgumentError(f"the request body is not valid JSON: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InvalidArgumentError(f"the request body is not valid JSON: {exc}") from exc
    except RecursionError:
        raise InvalidArgumentError(
            "the request body is not valid JSON: nested too deeply"
        ) from None
    except ValueError:
        # The one other ValueError json.loads raises: Python's cap on the digits of an int
        # it converts (an INTERNAL 500 before, as any unexpected exception is).
        raise InvalidArgumentError(
            "the request body is not valid JSON: a number has more than "
            f"{sys.get_int_max_str_digits()} digits"
        ) from None
    if not isinstance(body, dict):
        raise InvalidArgumentError("the request body must be a JSON object")
    if _SURROGATE_ESCAPE.search(data):  # a plain scan: the walk below is for rare bodies
        _reject_lone_surrogates(body)
    return body


def _reject_lone_surrogates(body: dict[str, Any]) -> None:
    """INVALID_ARGUMENT naming the first text with a lone surrogate (json.loads joins a pair
    into one character)."""
    queue: list[tuple[str, object]] = [("", body)]
    for path, value in queue:  # breadth first, not recursive: the body may be deeply nested
        if isinstance(value, str) and (lone := _lone_surrogate(value)):
            raise invalid(path, f"not valid Unicode: a lone surrogate ({lone})")
        if isinstance(value, dict):
            for key, item in value.items():
                if lone := _lone_surrogate(key):
                    where = f"a key in {path}" if path else "a key of the request body"
                    raise InvalidArgumentError(
                        f"{where} is not valid Unicode: a lone surrogate ({lone})"
                    )
                queue.append((f"{path}.{key}" if path else key, item))
        elif isinstance(value, list):
            queue += [(f"{path}[{i}]", item) for i, item in enumerate(value)]


def _lone_surrogate(text: str) -> str | None:
    """The first surrogate in ``text``, spelt as a JSON escape."""
    found = _SURROGATE.search(text)
    return f"\\u{ord(found.group()):04x}" if found else None
