"""Request fields of the public API turned into Sax client arguments, with field-named errors."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence

from google.protobuf import duration_pb2, struct_pb2

from gateway.client import CallOptions, InvalidArgumentError
from gateway.common import limits as lim
from gateway.common.deadline import Deadline
from gateway.common.errors import DeadlineExceededError
from gateway.common.limits import quote
from gateway.common.names import (
    check_acl_method,
    check_checkpoint,
    check_model_path,
    parse_cell_id,
    parse_model_id,
)
from gateway.common.rpc import Context, metadata_value


def invalid(field: str, description: str) -> InvalidArgumentError:
    """An INVALID_ARGUMENT error naming ``field``, for a google.rpc.BadRequest."""
    return InvalidArgumentError(f"{field}: {description}", field_violations=((field, description),))


def with_slash(value: str) -> str:
    """A model or cell ID with its leading slash: bodies carry "/sax/test/lm2b", resource
    paths bind "sax/test/lm2b", OpenAI clients may send either; all name one model."""
    return value if value.startswith("/") else "/" + value


_MODEL_SHAPE = "model ID", "/sax/<cell name>/<model name>, such as /sax/test/lm2b"
_CELL_SHAPE = "cell ID", "/sax/<cell name>, such as /sax/test"


def _misshapen(field: str, value: str, shape: tuple[str, str]) -> InvalidArgumentError:
    # An ID with too few or too many "/": parse_model_id would judge the part before the
    # last "/" as a cell ID and quote that ("cell ID ''" for "lm2b"), and the "/" that
    # with_slash() adds would show in the quote; this names what the caller sent.
    message = f"{shape[0]} {quote(value)} should have the form {shape[1]}"
    return InvalidArgumentError(message, field_violations=((field, message),))


def model_id(value: str, field: str = "model") -> str:
    """Returns the Sax model ID in ``value``, e.g. "/sax/test/lm2b"."""
    if not value:
        raise invalid(field, "required: a model ID such as /sax/test/lm2b")
    absolute = with_slash(value)
    if absolute.count("/") != 3:
        raise _misshapen(field, value, _MODEL_SHAPE)
    return parse_model_id(absolute, field=field).id


def cell_id(value: str, field: str = "sax_cell") -> str:
    """Returns the Sax cell ID in ``value``, e.g. "/sax/test"."""
    if not value:
        raise invalid(field, "required: a cell ID such as /sax/test")
    absolute = with_slash(value)
    if absolute.count("/") != 2:
        raise _misshapen(field, value, _CELL_SHAPE)
    return parse_cell_id(absolute, field=field).id


def cell_or_model_id(value: str, field: str = "name") -> str:
    """Returns the cell or model ID in ``value``."""
    if not value:
        raise invalid(field, "required: a cell (/sax/test) or model ID (/sax/test/lm2b)")
    absolute = with_slash(value)
    if absolute.count("/") == 2:
        return parse_cell_id(absolute, field=field).id
    if absolute.count("/") != 3:
        raise _misshapen(field, value, ("ID", f"{_CELL_SHAPE[1]}, or {_MODEL_SHAPE[1]}"))
    return parse_model_id(absolute, field=field).id


def required(value: str | bytes, field: str, limit: int = lim.MAX_TEXT_CHARS) -> None:
    """Rejects an empty string or byte payload, or one longer than ``limit``."""
    if not value:
        raise invalid(field, "required")
    bounded(value, field, limit)


def bounded(value: str | bytes, field: str, limit: int = lim.MAX_TEXT_CHARS) -> None:
    """Rejects a string (or bytes) longer than ``limit``."""
    if len(value) > limit:
        raise invalid(field, f"{len(value)} characters is over the limit of {limit}")


def texts(values: Sequence[str], field: str) -> list[str]:
    """Bounds a repeated text field: how many, and each one's length."""
    if len(values) > lim.MAX_TEXTS:
        raise invalid(field, f"{len(values)} items is over the limit of {lim.MAX_TEXTS}")
    for i, value in enumerate(values):
        bounded(value, f"{field}[{i}]")
    return list(values)


def overrides(values: Mapping[str, str], field: str = "overrides") -> dict[str, str]:
    """Bounds publish overrides: how many, each key's and value's length; and each key must
    be what a Sax model server overrides, an attribute name of the model's config."""
    if len(values) > lim.MAX_OVERRIDES:
        raise invalid(field, f"{len(values)} entries is over the limit of {lim.MAX_OVERRIDES}")
    for key, value in values.items():
        if len(key) > lim.MAX_OVERRIDE_KEY_CHARS:
            raise invalid(f"{field}[{lim.quote(key)}]", "the key is too long")
        if not (key.isascii() and key.isidentifier()):
            raise invalid(
                f"{field}[{lim.quote(key)}]",
                "the key must be a model config attribute name (letters, digits and _, not "
                "starting with a digit)",
            )
        bounded(value, f"{field}[{key}]", lim.MAX_OVERRIDE_VALUE_CHARS)
    return dict(values)


def _sax_path(
    value: str, field: str, limit: int, check: Callable[[str], object], *, needed: bool
) -> None:
    """A path Sax checks by ``check`` (its pattern), bounded by ``limit``; empty is fine where
    not ``needed`` (an update that leaves it)."""
    if value or needed:
        required(value, field, limit)
        try:
            check(value)
        except InvalidArgumentError as exc:
            raise invalid(field, exc.message) from None


def model_path(value: str, *, needed: bool, field: str = "model_path") -> None:
    """Checks a model path (Sax's pattern, bounded)."""
    _sax_path(value, field, lim.MAX_MODEL_PATH_CHARS, check_model_path, needed=needed)


def checkpoint(value: str, *, needed: bool, field: str = "checkpoint") -> None:
    """Checks a checkpoint path as `model_path` does, and refuses ".." segments: Sax's
    pattern lets them through, and no checkpoint needs one to be named."""
    _sax_path(value, field, lim.MAX_CHECKPOINT_CHARS, check_checkpoint, needed=needed)
    if ".." in value.split("/"):
        raise invalid(field, f"{quote(value)} must not have a '..' segment")


def acl(value: str, field: str = "acl") -> str:
    """An ACL name: a group (acl/NAME) or a client ID; empty clears the ACL."""
    bounded(value, field, lim.MAX_ACL_CHARS)
    if not value.isprintable() or any(c.isspace() for c in value):
        raise invalid(
            field, f"{quote(value)} must be a group (acl/NAME) or a client ID, without spaces"
        )
    return value


def is_cell(name: str) -> bool:
    """Whether ``name``, as `cell_or_model_id` returned it, is a cell rather than a model."""
    return name.count("/") == 2


def acl_method(value: str, name: str, field: str = "method") -> str | None:
    """The data method of model ``name`` whose ACL a SetAcl sets (one Sax has ACLs for), or
    None for the admin ACL (empty ``value``). A cell has no data methods."""
    if not value:
        return None
    if is_cell(name):
        raise invalid(field, f"{name} is a cell: only a model's data methods have ACLs")
    try:
        check_acl_method(value)
    except InvalidArgumentError as exc:
        raise invalid(field, exc.message) from None
    return value


def payload(value: bytes, field: str, limit: int, *, required: bool = True) -> bytes:
    """Rejects an oversized payload (image, audio, a custom method's input), or an empty one
    where it is ``required``."""
    if required and not value:
        raise invalid(field, "required: base64-encoded bytes in JSON")
    if len(value) > limit:
        raise invalid(field, f"{len(value)} bytes is over the limit of {limit} bytes")
    return value


def replicas(value: int, field: str = "replicas") -> int:
    """Rejects a negative or absurdly large replica count."""
    if not 0 <= value <= lim.MAX_REPLICAS:
        raise invalid(field, f"must be between 0 and {lim.MAX_REPLICAS}, got {value}")
    return value


def deadline(
    context: Context,
    requested: duration_pb2.Duration | None,
    default: float,
) -> float:
    """Seconds left for this call: the shortest of the gRPC deadline (a moment before it,
    `REPORT_MARGIN_S`), the request's ``timeout`` field and the gateway's default. The
    caller's own (the first two) count from when Envoy began to receive the call
    (`RECEIVING_HEADER`), not from when the gateway got it whole; 0 once passed (a
    DeadlineExceededError if it passed while the call was being received)."""
    seconds = default
    receiving = _receiving(context)
    if requested is not None:  # sent, even as 0s: a caller who asks for no time at all erred
        asked = _seconds(requested, "timeout")
        if asked <= 0:
            raise invalid("timeout", "must be positive")
        seconds = min(seconds, asked - receiving)
    remaining = context.time_remaining()
    if remaining is not None:
        remaining -= receiving
        seconds = min(seconds, remaining - min(REPORT_MARGIN_S, max(remaining, 0.0) / 10))
    relayed = metadata_value(context, RELAYED_TIMEOUT_HEADER)
    if relayed is not None:
        seconds = min(seconds, _grpc_timeout(relayed) - receiving)
    # (Less a nanosecond: 0.1 - 0.7 + 0.7 is 0.09999999999999998.)
    if seconds <= 0 and seconds + receiving >= _SLOW_RECEIVING_S - 1e-9:
        # Spent while Envoy received the call: it failed at its first wait, which its message
        # named, so a body sent slowly (a large image on a slow uplink) was told the admin
        # had not answered in time with the model's ACLs, of a healthy admin. Not a deadline
        # too short to begin with (1 ns), which receiving a small body on a loaded host
        # passes too (0.1 s, measured).
        raise DeadlineExceededError(
            "the call exceeded its deadline while its request was being received "
            f"(it took {receiving:.1f} s to arrive)"
        )
    return max(seconds, 0.0)


#: The header in which Envoy tells the gateway how long it took to receive the request, from
#: its first byte to its last (`%REQUEST_DURATION%`, ms; envoy/envoy.yaml.tmpl). Envoy hands
#: a call on only once its body has come whole (the transcoder, the buffer filter), and grpc
#: starts a call's deadline when it gets it: a body sent over 3.5 s with `grpc-timeout: 2S`
#: had its 504 after 5.3 s. A caller who sends it itself only shortens its own deadline.
RECEIVING_HEADER = "x-saxgw-receiving-ms"
#: The shortest deadline (the caller's, from its first byte) whose passing is put down to
#: receiving the call, once the call took longer than it to receive.
_SLOW_RECEIVING_S = 0.1
_RECEIVING = re.compile(r"[0-9]{1,9}")


def _receiving(context: Context) -> float:
    """Seconds Envoy took to receive the call (0 if it did not say)."""
    value = metadata_value(context, RECEIVING_HEADER)
    return int(value) / 1000 if value is not None and _RECEIVING.fullmatch(value) else 0.0


#: The header in which Envoy hands the gateway an HTTP client's ``grpc-timeout`` on the
#: routes of HTTP streams and of the OpenAI API (envoy/envoy.yaml.tmpl), so that grpc does
#: not enforce it and the gateway alone ends the call: at grpc's deadline nothing more can
#: be sent, and a stream whose gateway was a moment late (a busy loop; a tenth of a 100 ms
#: deadline is 10 ms) ended with no last event, which an SSE client took for a complete
#: answer. A caller who sends it itself only sets its own deadline, as with grpc-timeout.
RELAYED_TIMEOUT_HEADER = "x-saxgw-grpc-timeout"
_GRPC_TIMEOUT = re.compile(r"0*([1-9][0-9]{0,7})([HMSmun])")  # Envoy's check of grpc-timeout
_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def _grpc_timeout(value: str) -> float:
    """Seconds of a gRPC timeout value (``30S``, ``500m``), as grpc reads the header."""
    match = _GRPC_TIMEOUT.fullmatch(value)
    if match is None:
        raise invalid("grpc-timeout", "not a gRPC timeout (a positive number and a unit)")
    return int(match[1]) * _TIMEOUT_UNITS[match[2]]


#: The gateway's own deadline ends this long (at most a tenth of the time) before the
#: caller's gRPC deadline, so that the gateway reports it, not grpc: once grpc's deadline has
#: passed, nothing more can be sent. A stream that started then ended with no last message,
#: which an HTTP/1.1 (SSE) client, seeing no trailer, took for a complete answer.
REPORT_MARGIN_S = 0.2


# google.protobuf.Duration's own bounds (about 10,000 years); beyond them a Duration is not one.
_MAX_DURATION_S = 315_576_000_000


def _seconds(duration: duration_pb2.Duration, field: str) -> float:
    # Not ToTimedelta(): it overflows (a Python OverflowError, INTERNAL to the caller) past
    # timedelta's range, and rounds a positive nanosecond down to zero.
    if abs(duration.seconds) > _MAX_DURATION_S or abs(duration.nanos) >= 1_000_000_000:
        raise invalid(field, f"out of range: a Duration is at most {_MAX_DURATION_S} seconds")
    if duration.seconds * duration.nanos < 0:
        raise invalid(field, "seconds and nanos have opposite signs")
    return duration.seconds + duration.nanos / 1e9


# Sax's extra inputs are 32-bit floats: a larger number would reach the model as infinity.
_MAX_FLOAT32 = 3.4028234663852886e38


def _number(value: float, field: str) -> float:
    if not math.isfinite(value) or abs(value) > _MAX_FLOAT32:
        raise invalid(field, f"must be a finite number within float32's range, got {value!r}")
    return value


def call_options(extra_inputs: Mapping[str, struct_pb2.Value], deadline: Deadline) -> CallOptions:
    """Sorts JSON-typed extra inputs into Sax's float, string and tensor maps."""
    if not extra_inputs:
        return CallOptions(deadline=deadline)
    if len(extra_inputs) > lim.MAX_EXTRA_INPUTS:
        raise invalid(
            "extra_inputs",
            f"{len(extra_inputs)} entries is over the limit of {lim.MAX_EXTRA_INPUTS}",
        )
    floats: dict[str, float] = {}
    strings: dict[str, str] = {}
    tensors: dict[str, list[float]] = {}
    for key, value in extra_inputs.items():
        if len(key) > lim.MAX_EXTRA_KEY_CHARS:
            raise invalid(f"extra_inputs[{lim.quote(key)}]", "the key is too long")
        field = f"extra_inputs[{key}]"
        kind = value.WhichOneof("kind")
        if kind == "number_value":
            floats[key] = _number(value.number_value, field)
        elif kind == "string_value":
            bounded(value.string_value, field, lim.MAX_EXTRA_STRING_CHARS)
            strings[key] = value.string_value
        elif kind == "list_value" and all(
            v.WhichOneof("kind") == "number_value" for v in value.list_value.values
        ):
            if len(value.list_value.values) > lim.MAX_EXTRA_TENSOR_VALUES:
                raise invalid(field, f"over the limit of {lim.MAX_EXTRA_TENSOR_VALUES} numbers")
            tensors[key] = [_number(v.number_value, field) for v in value.list_value.values]
        else:
            raise invalid(field, "must be a number, a string or a list of numbers")
    return CallOptions(
        extra_inputs=floats, extra_strings=strings, extra_tensors=tensors, deadline=deadline
    )
