"""Upper bounds on what callers may send, shared by the gateway and the embedded cell.

Sax names are short and the rest has sane sizes; an input over a bound is INVALID_ARGUMENT
naming the field and the bound, and no error message echoes more than `QUOTE_CHARS` of it::

    quote("x" * 10_000)   # "'xxxx…' (10000 characters)"
"""

from __future__ import annotations

import reprlib
from collections.abc import Sequence

#: Sizes in bytes. Here, not in gateway.config, so that saxgw's client commands, which size
#: their channel with MIB, do not import the Sax client with the settings (a third of a
#: command's start-up CPU).
KIB = 1 << 10
MIB = 1 << 20
#: The largest value of Envoy's uint32 config fields (counts, limits).
UINT32_MAX = 2**32 - 1
#: The largest message limit gRPC takes: its size options are C ints.
GRPC_MAX_MESSAGE_BYTES = 2**31 - 1
#: A caller without an identity is its address for the per-client limits (Envoy's anonymous
#: rate, the gateway's stream slots); an IPv6 one is its /64, which one host or subscriber is
#: given whole: by its full address, one caller could rotate through 2^64 budgets.
IPV6_CLIENT_PREFIX = 64
#: A whole model ID, "/sax/<cell>/<model>" (upstream's names are a few dozen characters).
MAX_ID_CHARS = 256
MAX_MODEL_PATH_CHARS = 512
MAX_CHECKPOINT_CHARS = 2048
MAX_ACL_CHARS = 512
#: Publish overrides: how many, and the size of each key and value.
MAX_OVERRIDES = 64
MAX_OVERRIDE_KEY_CHARS = 128
MAX_OVERRIDE_VALUE_CHARS = 4096
MAX_REPLICAS = 1024
#: Per-request extra inputs: how many, string size, tensor length.
MAX_EXTRA_INPUTS = 64
MAX_EXTRA_KEY_CHARS = 128
MAX_EXTRA_STRING_CHARS = 65_536
MAX_EXTRA_TENSOR_VALUES = 1_048_576
#: A prompt, prefix, suffix or any other text sent to a model.
MAX_TEXT_CHARS = 4_194_304
#: Repeated text fields (score suffixes, detect texts).
MAX_TEXTS = 1024
#: The items of a multimodal request (each list: items, prefix_items, suffix_items), and the
#: frames of a video (VideoToText's and VideoToToken's image_frames).
MAX_ITEMS = 1024
#: A video's tokens (TokenToVideo's): a tokenizer's grid of a clip, flattened (16 frames of
#: 32x32 tokens are 16,384), the same bound as an extra input's tensor.
MAX_VIDEO_TOKENS = MAX_EXTRA_TENSOR_VALUES
#: A custom method's name, which its model chooses (upstream's own are a few dozen characters).
MAX_METHOD_NAME_CHARS = 256

QUOTE_CHARS = 100

#: The longest duration a flag or the config file takes (~31.7 years). grpc holds a deadline as
#: int64 nanoseconds since the epoch, which overflows ~9.2e9 s from 1970: `--timeout 8e9` made
#: every call fail at once with DEADLINE_EXCEEDED. Envoy's durations end there too.
MAX_SECONDS = 10**9


def quote(value: str) -> str:
    """``repr(value)``, cut to `QUOTE_CHARS` characters with its length when longer."""
    if len(value) <= QUOTE_CHARS:
        return repr(value)
    return f"{value[:QUOTE_CHARS]!r}… ({len(value)} characters)"


def first_named(items: Sequence[str], at_most: int) -> str:
    """``items`` joined, the first ``at_most`` of them and how many more."""
    more = len(items) - at_most
    return ", ".join(items[:at_most]) + (f" and {more} more" if more > 0 else "")


_SHOWN = reprlib.Repr()
_SHOWN.maxlevel = 2
_SHOWN.maxstring = _SHOWN.maxother = _SHOWN.maxlong = QUOTE_CHARS


def shown(value: object) -> str:
    """`quote` for a string; any other value (a JSON number, list, object) as ``repr``
    spells it, with its strings, numbers and items cut short (``reprlib``)::

        shown({"type": "x" * 10_000})  # "{'type': 'xxx...xxx'}"
    """
    return quote(value) if isinstance(value, str) else _SHOWN.repr(value)


def too_long(value: str, limit: int) -> str | None:
    """Why ``value`` is over ``limit`` characters, or None if it is not."""
    if len(value) <= limit:
        return None
    return f"{len(value)} characters is over the limit of {limit}"
