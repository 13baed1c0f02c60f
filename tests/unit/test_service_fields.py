"""Request fields -> Sax client arguments, with errors naming the field."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import pytest
from google.protobuf import duration_pb2, struct_pb2

from gateway.client import InvalidArgumentError
from gateway.common.deadline import Deadline
from gateway.common.rpc import Context
from gateway.service import _fields as f


class _Context:
    def __init__(self, remaining: float | None) -> None:
        self._remaining = remaining

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def time_remaining(self) -> float | None:
        return self._remaining

    async def abort(self, code: object, details: str = "", trailing_metadata: object = ()) -> None:
        raise AssertionError("not used")


def _context(remaining: float | None) -> Context:
    # Only what `deadline` reads; a real servicer context needs a live call.
    return cast(Context, _Context(remaining))


def _violations(exc: pytest.ExceptionInfo[InvalidArgumentError]) -> list[str]:
    return [field for field, _ in exc.value.field_violations]


@pytest.mark.parametrize("value", ["/sax/test/lm2b", "sax/test/lm2b"])
def test_model_id_accepts_body_and_path_forms(value: str) -> None:
    assert f.model_id(value) == "/sax/test/lm2b"


@pytest.mark.parametrize("value", ["", "/sax/test", "/sax/test/Bad", "/other/test/x"])
def test_model_id_rejects_naming_the_field(value: str) -> None:
    with pytest.raises(InvalidArgumentError) as exc:
        f.model_id(value)
    assert _violations(exc) == ["model"]


@pytest.mark.parametrize("value", ["lm2b", "sax/test", "/sax/test", "/sax/test/lm2b/x"])
def test_model_id_of_the_wrong_shape_quotes_what_was_sent(value: str) -> None:
    # Not "cell ID '' should have the form /sax/<cell name>" for "lm2b" (the documented
    # mistake): the error names the whole ID the caller sent, and the shape it needs.
    with pytest.raises(InvalidArgumentError) as exc:
        f.model_id(value)
    expected = (
        f"model ID '{value}' should have the form /sax/<cell name>/<model name>,"
        " such as /sax/test/lm2b"
    )
    assert exc.value.message == expected
    assert exc.value.field_violations == (("model", expected),)


CELL_SHAPE = "/sax/<cell name>, such as /sax/test"
MODEL_SHAPE = "/sax/<cell name>/<model name>, such as /sax/test/lm2b"


@pytest.mark.parametrize(
    ("parse", "value", "message"),
    [
        (f.cell_id, "test", f"cell ID 'test' should have the form {CELL_SHAPE}"),
        (f.cell_id, "/sax/test/x", f"cell ID '/sax/test/x' should have the form {CELL_SHAPE}"),
        (f.cell_or_model_id, "lm2b", f"ID 'lm2b' should have the form {CELL_SHAPE}, or "
         f"{MODEL_SHAPE}"),
    ],
)  # fmt: skip
def test_cell_ids_of_the_wrong_shape_quote_what_was_sent(
    parse: Callable[[str], str], value: str, message: str
) -> None:
    with pytest.raises(InvalidArgumentError) as exc:
        parse(value)
    assert exc.value.message == message


def test_cell_or_model_id() -> None:
    assert f.cell_or_model_id("sax/test") == "/sax/test"
    assert f.cell_or_model_id("/sax/test/m") == "/sax/test/m"
    with pytest.raises(InvalidArgumentError):
        f.cell_or_model_id("/sax")


def test_payload_limits() -> None:
    assert f.payload(b"x", "image_bytes", 1) == b"x"
    for value in (b"", b"xx"):
        with pytest.raises(InvalidArgumentError) as exc:
            f.payload(value, "image_bytes", 1)
        assert _violations(exc) == ["image_bytes"]


def test_deadline_takes_the_shortest() -> None:
    assert f.deadline(_context(None), None, 60) == 60
    # The gateway's own deadline ends a moment before the caller's, to report it itself.
    assert f.deadline(_context(5), None, 60) == 5 - f.REPORT_MARGIN_S
    assert f.deadline(_context(0.5), None, 60) == 0.45
    assert f.deadline(_context(5), duration_pb2.Duration(seconds=2), 60) == 2
    assert f.deadline(_context(None), duration_pb2.Duration(seconds=90), 60) == 60
    with pytest.raises(InvalidArgumentError) as exc:
        f.deadline(_context(None), duration_pb2.Duration(seconds=-1), 60)
    assert _violations(exc) == ["timeout"]


def test_call_options_sorts_extra_inputs_by_json_type() -> None:
    inputs = {
        "temperature": struct_pb2.Value(number_value=0.5),
        "regex": struct_pb2.Value(string_value="a*"),
        "prompt": struct_pb2.Value(
            list_value=struct_pb2.ListValue(values=[struct_pb2.Value(number_value=1.0)])
        ),
    }
    deadline = Deadline.after(3)
    options = f.call_options(inputs, deadline)
    assert dict(options.extra_inputs) == {"temperature": 0.5}
    assert dict(options.extra_strings) == {"regex": "a*"}
    assert {k: list(v) for k, v in options.extra_tensors.items()} == {"prompt": [1.0]}
    assert options.deadline is deadline


@pytest.mark.parametrize(
    "value",
    [
        struct_pb2.Value(bool_value=True),
        struct_pb2.Value(null_value=struct_pb2.NULL_VALUE),
        struct_pb2.Value(
            list_value=struct_pb2.ListValue(values=[struct_pb2.Value(string_value="x")])
        ),
    ],
)
def test_call_options_rejects_other_json_types(value: struct_pb2.Value) -> None:
    with pytest.raises(InvalidArgumentError) as exc:
        f.call_options({"k": value}, Deadline.after(1))
    assert _violations(exc) == ["extra_inputs[k]"]


def _numbers(*values: float) -> struct_pb2.Value:
    numbers = [struct_pb2.Value(number_value=v) for v in values]
    return struct_pb2.Value(list_value=struct_pb2.ListValue(values=numbers))


@pytest.mark.parametrize(
    "value",
    [
        struct_pb2.Value(number_value=float("nan")),
        struct_pb2.Value(number_value=float("inf")),
        struct_pb2.Value(number_value=-float("inf")),
        struct_pb2.Value(number_value=1e39),  # JSON's 1e39: float32 infinity at the model
        _numbers(1.0, float("nan")),
        _numbers(-1e39),
    ],
)
def test_call_options_rejects_numbers_a_float32_cannot_hold(value: struct_pb2.Value) -> None:
    # They reached the model server as NaN or infinity, which failed with UNKNOWN (a Python
    # OverflowError's text) instead of naming the field.
    with pytest.raises(InvalidArgumentError) as exc:
        f.call_options({"per_example_top_k": value}, Deadline.after(1))
    assert _violations(exc) == ["extra_inputs[per_example_top_k]"]
    assert "must be a finite number within float32's range" in exc.value.message


def test_call_options_keeps_the_largest_float32() -> None:
    big = struct_pb2.Value(number_value=3.4e38)
    assert f.call_options({"k": big}, Deadline.after(1)).extra_inputs == {"k": 3.4e38}


@pytest.mark.parametrize(
    "timeout",
    [
        duration_pb2.Duration(seconds=10**14),  # past timedelta's range: was INTERNAL
        duration_pb2.Duration(seconds=-(2**63)),
        duration_pb2.Duration(seconds=315_576_000_001),
        duration_pb2.Duration(seconds=1, nanos=-5),
        duration_pb2.Duration(seconds=1, nanos=1_000_000_000),
    ],
)
def test_deadline_rejects_a_duration_out_of_its_range(timeout: duration_pb2.Duration) -> None:
    with pytest.raises(InvalidArgumentError) as exc:
        f.deadline(_context(None), timeout, 60)
    assert _violations(exc) == ["timeout"]


def test_deadline_keeps_a_nanosecond() -> None:
    # ToTimedelta() rounded it to zero, which then read as "must be positive".
    assert f.deadline(_context(None), duration_pb2.Duration(nanos=1), 60) == 1e-9
    assert f.deadline(_context(None), duration_pb2.Duration(seconds=315_576_000_000), 60) == 60


def test_acl_method_empty_is_the_admin_acl() -> None:
    assert f.acl_method("", "/sax/test/lm") is None
    assert f.acl_method("", "/sax/test") is None


def test_acl_method_takes_the_methods_sax_keeps_acls_for() -> None:
    assert f.acl_method("lm.generate", "/sax/test/lm") == "lm.generate"
    assert f.acl_method("vm.image_to_image", "/sax/test/lm") == "vm.image_to_image"
    assert f.acl_method("mm.score", "/sax/test/lm") == "mm.score"


@pytest.mark.parametrize(
    "method", ["lm.generat", "Generate", "vm.text_and_image_to_text", "lm.generate "]
)
def test_acl_method_refuses_a_method_sax_has_no_acl_for(method: str) -> None:
    with pytest.raises(InvalidArgumentError) as exc:
        f.acl_method(method, "/sax/test/lm")
    assert _violations(exc) == ["method"]
    assert exc.value.message.startswith(f"method: {method!r} is not a valid method name for an ACL")


def test_acl_method_refuses_a_method_of_a_cell() -> None:
    with pytest.raises(InvalidArgumentError) as exc:
        f.acl_method("lm.generate", "/sax/test")
    assert _violations(exc) == ["method"]
    assert exc.value.message == (
        "method: /sax/test is a cell: only a model's data methods have ACLs"
    )
