"""clients/python: every status code maps to one exception class, BadRequest details read."""

from __future__ import annotations

import copy
import pickle

import grpc
import pytest
import saxgateway_client
from google.rpc import status_pb2
from saxgateway_client import (
    AbortedError,
    BadRequestError,
    FieldViolation,
    NotFoundError,
    SaxGatewayError,
    ServerError,
    UnavailableError,
    error_for,
    extra_inputs,
    from_status,
)

from tests.unit._statuses import bad_request


@pytest.mark.parametrize("code", [c for c in grpc.StatusCode if c is not grpc.StatusCode.OK])
def test_every_status_code_has_an_exception(code: grpc.StatusCode) -> None:
    error = error_for(code, "boom")
    assert isinstance(error, SaxGatewayError)
    assert (error.code, error.message, str(error)) == (code, "boom", f"{code.name}: boom")


def test_aborted_is_a_conflict_to_handle_not_a_server_failure() -> None:
    # ABORTED (409) is "the model changed under an update: read it and decide again"
    # (docs/clients.md), the caller's to handle as ALREADY_EXISTS is. It was a ServerError,
    # the class of UNKNOWN and INTERNAL, which says the server failed.
    error = error_for(grpc.StatusCode.ABORTED, "changed")
    assert type(error) is AbortedError
    assert not isinstance(error, ServerError)


def test_bad_request_lists_its_field_violations() -> None:
    error = from_status(bad_request("bad", ("model", "x")))
    assert isinstance(error, BadRequestError)
    assert error.field_violations == (FieldViolation("model", "x"),)


def test_an_error_survives_pickling_as_a_process_pool_sends_it() -> None:
    # A call failing in a ProcessPoolExecutor's worker came back as "TypeError: __init__()
    # missing 1 required positional argument: 'message'" (its pickle rebuilt it from str()
    # alone); copy.copy failed the same way.
    details = tuple(bad_request("b", ("model", "x")).details)
    error = error_for(grpc.StatusCode.RESOURCE_EXHAUSTED, "busy", details, 1.5)
    for again in (pickle.loads(pickle.dumps(error)), copy.copy(error)):
        assert type(again) is type(error)
        assert (again.code, again.message, again.details, again.retry_after, str(again)) == (
            error.code,
            error.message,
            error.details,
            1.5,
            "RESOURCE_EXHAUSTED: busy",
        )


def test_an_error_without_a_request_info_has_no_request_id() -> None:
    assert from_status(bad_request("bad", ("model", "x"))).request_id is None


def test_in_band_status_maps_like_a_call() -> None:
    assert isinstance(from_status(status_pb2.Status(code=5, message="gone")), NotFoundError)
    assert isinstance(from_status(status_pb2.Status(code=14, message="down")), UnavailableError)


@pytest.mark.parametrize("number", [0, 17, 99, -1])
def test_an_in_band_code_the_client_does_not_know_is_unknown(number: int) -> None:
    # A newer server's code, or OK where an error should be: a KeyError escaped before.
    error = from_status(status_pb2.Status(code=number, message="odd"))
    assert isinstance(error, ServerError)
    assert (error.code, error.message) == (grpc.StatusCode.UNKNOWN, "odd")


def test_extra_inputs_become_values() -> None:
    values = extra_inputs({"temperature": 0.5, "stop": "\n", "bias": [1.0, -1.0], "k": 40})
    assert values["temperature"].number_value == 0.5
    assert values["stop"].string_value == "\n"
    assert [v.number_value for v in values["bias"].list_value.values] == [1.0, -1.0]
    assert values["k"].number_value == 40


def test_public_names_are_sorted_and_exported() -> None:
    assert saxgateway_client.__all__ == sorted(saxgateway_client.__all__)
    assert all(hasattr(saxgateway_client, name) for name in saxgateway_client.__all__)


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (None, "NoneType"),
        (True, "bool"),
        ({"a": 1}, "dict"),
        (["a", "b"], "list"),
        ([1, None], "list"),
    ],
)
def test_extra_inputs_refuse_what_the_gateway_refuses_naming_the_key(
    value: object, kind: str
) -> None:
    # None failed with "'NoneType' object is not iterable", True went out as 1.0 (which the
    # HTTP/JSON API and the Node client refuse), a list of strings went to the server.
    with pytest.raises(TypeError) as info:
        extra_inputs({"x": value})  # type: ignore[dict-item]
    assert str(info.value) == (
        f"extra_inputs[x]: must be a number, a string or a list of numbers, not {kind}"
    )


def test_extra_inputs_take_any_iterable_of_numbers() -> None:
    values = extra_inputs({"bias": (0.5, -1), "gen": (x / 2 for x in range(3))})
    assert [v.number_value for v in values["bias"].list_value.values] == [0.5, -1.0]
    assert [v.number_value for v in values["gen"].list_value.values] == [0.0, 0.5, 1.0]
