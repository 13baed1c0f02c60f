"""Domain errors -> gRPC statuses, in the one place that does it."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2

from gateway.client import DeadlineExceededError, InvalidArgumentError, error_for_code
from gateway.service._errors import to_status

ERROR_CODES = [code for code in grpc.StatusCode if code != grpc.StatusCode.OK]


@pytest.mark.parametrize("code", ERROR_CODES, ids=lambda c: c.name)
def test_every_status_code_round_trips(code: grpc.StatusCode) -> None:
    reported, message, status = to_status(error_for_code(code, "it broke"))
    assert reported == code
    assert message == "it broke"
    assert status.code == code.value[0] and status.message == "it broke"
    assert list(status.details) == []


def test_field_violations_become_a_bad_request_detail() -> None:
    error = InvalidArgumentError("model: bad", field_violations=(("model", "bad"),))
    code, _, status = to_status(error)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    [detail] = status.details
    bad_request = error_details_pb2.BadRequest()
    assert detail.Unpack(bad_request)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [("model", "bad")]


def test_timeout_is_deadline_exceeded() -> None:
    code, message, _ = to_status(TimeoutError())
    assert code == DeadlineExceededError.code
    assert "deadline" in message


def test_unexpected_errors_are_internal_without_their_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    code, message, _ = to_status(KeyError("secret detail"))
    assert code == grpc.StatusCode.INTERNAL
    assert "secret" not in message
    assert "secret detail" in caplog.text
