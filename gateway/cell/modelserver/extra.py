"""A data call's extra inputs, checked against what its method declares, as upstream's model
servers check them before the model runs.

Each method of a model declares the extra inputs it takes, each with a default: a number, or
a list of numbers for a tensor (`ServableModel.extra_inputs`). A request may set a declared
key in one of its three maps (numbers, strings, tensors); a tensor only for a key whose
default is a list, and with as many values. Anything else is INVALID_ARGUMENT naming the key:
on a real cell a misspelt key fails the call, so here it must not quietly do nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from saxml.protobuf import common_pb2

from gateway.cell._errors import invalid_argument
from gateway.cell.models.base import ExtraDefaults, ExtraInputs
from gateway.common.limits import quote


def checked(proto: common_pb2.ExtraInputs, declared: ExtraDefaults, method: str) -> ExtraInputs:
    """The request's extra inputs for ``method``, which declares ``declared``."""
    items, strings = dict(proto.items), dict(proto.strings)
    tensors = {key: list(tensor.values) for key, tensor in proto.tensors.items()}
    for key in (*items, *strings, *tensors):
        if key not in declared:
            raise _refused(key, f"is not an extra input of {method}", declared)
    for key, values in tensors.items():
        default = declared[key]
        if key in items:
            raise _refused(key, "is given both as a number and as a tensor", declared)
        if isinstance(default, float | int):
            raise _refused(key, f"is a number in {method}, not a tensor", declared)
        if len(values) != len(default):
            raise _refused(
                key, f"takes {len(default)} values in {method}, not {len(values)}", declared
            )
    for key in strings:
        if key in items or key in tensors:
            raise _refused(key, "is given both as a string and as another kind", declared)
    return ExtraInputs(floats=items, strings=strings)


def _refused(key: str, why: str, declared: Mapping[str, object]) -> Exception:
    takes = ", ".join(sorted(declared)) or "none"
    return invalid_argument(f"extra input {quote(key)} {why} (it takes {takes})")
