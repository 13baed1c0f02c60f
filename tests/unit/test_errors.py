"""gateway.common.errors: one class per status code, and the one grpc -> SaxError mapping."""

from __future__ import annotations

import grpc
import pytest

from gateway.common import errors
from gateway.common.storage import StorageError
from tests.unit._statuses import DETAILS_KEY, bad_request


class _FakeRpcError(grpc.RpcError):
    """What grpc raises: an RpcError that is also a call with code() and details()."""

    def __init__(
        self, code: grpc.StatusCode, details: str, trailing: tuple[tuple[str, object], ...] = ()
    ) -> None:
        self._code, self._details, self._trailing = code, details, trailing

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    # grpc-stubs types metadata as `_Metadatum` objects; grpc hands (key, value) tuples.
    def trailing_metadata(self) -> tuple[tuple[str, object], ...]:  # type: ignore[override]
        return self._trailing


NON_OK = [c for c in grpc.StatusCode if c != grpc.StatusCode.OK]


@pytest.mark.parametrize("code", NON_OK, ids=lambda c: c.name)
def test_every_status_code_has_its_own_class(code: grpc.StatusCode) -> None:
    error = errors.from_grpc_error(_FakeRpcError(code, "boom"))
    assert type(error).code == code
    assert isinstance(error, errors.SaxError)
    assert error.message == "boom"
    assert type(errors.error_for_code(code, "x")) is type(error)


def test_classes_are_distinct() -> None:
    classes = {type(errors.error_for_code(c, "")) for c in NON_OK}
    assert len(classes) == len(NON_OK)
    assert errors.SaxError not in classes


def test_cancelled_class_does_not_shadow_asyncio() -> None:
    assert errors.error_for_code(grpc.StatusCode.CANCELLED, "").__class__.__name__ == (
        "RequestCancelledError"
    )


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("model /sax/test/foo not found: NotFound", grpc.StatusCode.NOT_FOUND),
        ("model {test foo} not found: ...: NotFound", grpc.StatusCode.NOT_FOUND),
        ("publish: model exists: AlreadyExists", grpc.StatusCode.ALREADY_EXISTS),
        ("bad name: InvalidArgument", grpc.StatusCode.INVALID_ARGUMENT),
        ("canceled: Canceled", grpc.StatusCode.CANCELLED),
        ("no servers: Unavailable", grpc.StatusCode.UNAVAILABLE),
        ("x: rpc error: code = NotFound desc = NotFound", grpc.StatusCode.NOT_FOUND),
        ("rpc error: code = PermissionDenied desc = no", grpc.StatusCode.PERMISSION_DENIED),
        ("DeadlineExceeded", grpc.StatusCode.DEADLINE_EXCEEDED),
        ("something odd happened", grpc.StatusCode.UNKNOWN),
        ("model not found: notfound", grpc.StatusCode.UNKNOWN),
        ("ends with NotFoundish", grpc.StatusCode.UNKNOWN),
    ],
)
def test_unknown_recovers_code_from_message_text(message: str, code: grpc.StatusCode) -> None:
    error = errors.from_grpc_error(_FakeRpcError(grpc.StatusCode.UNKNOWN, message))
    assert error.code == code
    assert error.message == message


def test_known_code_is_not_overridden_by_text() -> None:
    error = errors.from_grpc_error(_FakeRpcError(grpc.StatusCode.INTERNAL, "x: NotFound"))
    assert isinstance(error, errors.InternalError)


@pytest.mark.parametrize(
    ("details", "message"),
    [
        ("Deadline Exceeded", "Deadline Exceeded"),
        # grpc's wording when its retry layer is off and the server's cancellation wins.
        ("Stream removed (Deadline Exceeded)", "Deadline Exceeded"),
        # A server's own deadline message is its own.
        ("model timed out after 3s", "model timed out after 3s"),
    ],
)
def test_a_deadline_has_one_message_however_grpc_words_it(details: str, message: str) -> None:
    error = errors.from_grpc_error(_FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, details))
    assert isinstance(error, errors.DeadlineExceededError)
    assert error.message == message


def test_bad_request_details_become_field_violations() -> None:
    status = bad_request("bad", ("text", "empty"))
    exc = _FakeRpcError(
        grpc.StatusCode.INVALID_ARGUMENT, "bad", ((DETAILS_KEY, status.SerializeToString()),)
    )
    assert errors.from_grpc_error(exc).field_violations == (("text", "empty"),)


def test_plain_rpc_error_is_unknown() -> None:
    error = errors.from_grpc_error(grpc.RpcError("opaque"))
    assert isinstance(error, errors.UnknownError)


def test_storage_failure_is_unavailable_if_it_may_pass_else_internal() -> None:
    # The admin said "could not save the cell state: <path or gs:// URL>: <errno>" as INTERNAL
    # whatever the cause: callers learnt where the server keeps its files, and never retried
    # storage that was only away for a moment.
    failed = "could not publish /sax/test/lm"
    storage, log = "the storage of cell /sax/test", "the admin server's log"
    away = StorageError("writing gs://b/fs/sax/test/state.proto failed: ...", transient=True)
    error = errors.storage_failure(away, failed, storage, log)
    assert type(error) is errors.UnavailableError
    assert error.message == (
        "could not publish /sax/test/lm: the storage of cell /sax/test is unavailable; retry later"
    )
    refused = StorageError("writing /srv/fs/sax/test/state.proto failed: EROFS", transient=False)
    error = errors.storage_failure(refused, failed, storage, log)
    assert type(error) is errors.InternalError
    assert error.message == (
        "could not publish /sax/test/lm: the storage of cell /sax/test failed; its operator "
        "finds why in the admin server's log"
    )
