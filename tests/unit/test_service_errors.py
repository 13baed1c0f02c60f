"""Domain errors -> gRPC statuses, in the one place that does it."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from collections.abc import Sequence
from typing import cast

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from saxgateway.v1 import gateway_pb2 as pb

from gateway.client import (
    DeadlineExceededError,
    InvalidArgumentError,
    ResourceExhaustedError,
    UnavailableError,
    error_for_code,
)
from gateway.common.logs import LOGGED_ID_CHARS
from gateway.common.rpc import Context
from gateway.service._errors import (
    GRPC_FRAME_BYTES,
    MAX_FIELD_BYTES,
    MAX_TEXT_BYTES,
    MAX_VIOLATIONS,
    ErrorInterceptor,
    Report,
    abort,
    check_reply,
    clip,
    to_status,
)
from gateway.service.openai._errors import ENVELOPE_KEY
from gateway.service.openai._errors import abort as openai_abort

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


# A process capped (RLIMIT_AS) 16 MiB above what it uses parses a 64 MiB request as the
# gateway's servers do, and serializes one as its calls to model servers do: upb cannot
# allocate either, and says so as a DecodeError and an EncodeError.
_WITHOUT_MEMORY = """
import re, resource
from pathlib import Path
from saxgateway.v1 import gateway_pb2 as pb
from saxml.protobuf import lm_pb2
from gateway.client._serializing import _Serialized
from gateway.service._errors import _tolerant, to_status
data = pb.GenerateRequest(model="/sax/test/lm", query="a" * (64 << 20)).SerializeToString()
sax = lm_pb2.GenerateRequest(model_key="/sax/test/lm", text="a" * (64 << 20))
used = int(re.search(r"VmSize:\\s+(\\d+) kB", Path("/proc/self/status").read_text())[1]) << 10
resource.setrlimit(resource.RLIMIT_AS, (used + (16 << 20), resource.RLIM_INFINITY))
error = _tolerant(pb.GenerateRequest.FromString)(data).error
print(error.code.name, error.message)
try:
    _Serialized(print, lm_pb2.GenerateRequest.SerializeToString)(sax)
except Exception as exc:
    code, message, _ = to_status(exc)
    print(code.name, message)
"""


def test_out_of_memory_is_resource_exhausted_not_the_callers_fault() -> None:
    """A gateway out of memory (a cgroup's or RLIMIT_AS cap, 30 MB bodies) answered a request
    it could not allocate INVALID_ARGUMENT (400, `the request does not parse: ... Arena alloc
    failed`), and a MemoryError later in a call INTERNAL (its request to a model server, which
    grpc.aio failed to serialize, went as an empty one: tests/integration/test_client_data.py):
    now all are a 429 to retry."""
    out_of_memory = "the gateway ran out of memory for this call; retry later"
    ran = subprocess.run(
        [sys.executable, "-c", _WITHOUT_MEMORY],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert ran.stdout == f"RESOURCE_EXHAUSTED {out_of_memory}\n" * 2, ran.stderr
    code, message, _ = to_status(MemoryError())
    assert (code, message) == (grpc.StatusCode.RESOURCE_EXHAUSTED, out_of_memory)


def test_clip_keeps_what_fits_and_cuts_the_rest_to_its_size_in_a_header() -> None:
    assert clip("short", 100) == "short"
    assert clip("x" * 5000, 100) == "x" * 73 + "… (5000 characters)"
    # An emoji is 12 bytes in JSON with ensure_ascii; "%" is 3 percent-encoded.
    assert clip("\U0001f600" * 10, 120) == "\U0001f600" * 10
    assert clip("\U0001f600" * 11, 120) == "\U0001f600" * 7 + "… (11 characters)"
    assert clip("%" * 100, 100) == "%" * 24 + "… (100 characters)"


# Every kind of character at its widest: a control character, "%", a quote, a 2-, 3- and
# 4-byte character in UTF-8.
_WIDE = '\x01%"\u00e9\u4e2d\U0001f600'


class _Aborted(Exception):
    pass


class _Context:
    """What `abort` uses of a servicer context: its request ID, and abort itself."""

    def __init__(self, request_id: str) -> None:
        self._metadata = (("x-request-id", request_id),)
        self.aborted: tuple[str, Sequence[tuple[str, str | bytes]]] = ("", ())
        self.code: object = None

    def invocation_metadata(self) -> Sequence[tuple[str, str]]:
        return self._metadata

    async def abort(
        self,
        code: object,
        details: str = "",
        trailing_metadata: Sequence[tuple[str, str | bytes]] = (),
    ) -> None:
        self.aborted, self.code = (details, trailing_metadata), code
        raise _Aborted


async def _sent(report: Report, error: Exception) -> tuple[str, dict[str, str | bytes]]:
    """The message and the headers ``report`` sends for ``error`` (a call whose caller
    chose a request ID as large as Envoy lets through)."""
    context = _Context(request_id="r" * 60_000)
    with pytest.raises(_Aborted):
        await report(cast(Context, context), error)
    message, metadata = context.aborted
    return message, dict(metadata)


def _sizes(message: str, headers: dict[str, str | bytes]) -> dict[str, int]:
    """The bytes of each header a status is sent in: grpc-message percent-encoded (printable
    ASCII but "%" as it is), binary headers in base64, others in ASCII (they must be)."""
    sizes = {
        "grpc-message": sum(1 if 0x20 <= b < 0x7F and b != 0x25 else 3 for b in message.encode())
    }
    for key, value in headers.items():
        sizes[key] = (
            len(base64.b64encode(value)) if isinstance(value, bytes) else len(value.encode("ascii"))
        )
    return sizes


@pytest.mark.parametrize("report", [abort, openai_abort], ids=["native", "openai"])
async def test_every_header_a_status_fills_is_bounded_whatever_it_echoes(report: Report) -> None:
    # A message, field names and descriptions of a megabyte each and ten violations, with a
    # request ID at Envoy's largest header: under Envoy's 60 KiB with room to spare.
    huge = _WIDE * 200_000
    message, headers = await _sent(
        report, InvalidArgumentError(huge, field_violations=[(huge, huge)] * 10)
    )
    sizes = _sizes(message, headers)
    assert sizes["grpc-message"] <= MAX_TEXT_BYTES
    assert sum(sizes.values()) < 24 * 1024, sizes
    status = status_pb2.Status.FromString(cast(bytes, headers["grpc-status-details-bin"]))
    assert status.message == message == clip(huge, MAX_TEXT_BYTES)
    bad_request, info = error_details_pb2.BadRequest(), error_details_pb2.RequestInfo()
    assert status.details[0].Unpack(bad_request)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        (clip(huge, MAX_FIELD_BYTES), clip(huge, MAX_TEXT_BYTES))
    ] * MAX_VIOLATIONS
    if report is abort:
        assert status.details[1].Unpack(info) and info.request_id == "r" * LOGGED_ID_CHARS
    else:
        envelope = json.loads(headers[ENVELOPE_KEY])
        assert envelope["error"]["message"] == message
        assert envelope["error"]["param"] == clip(huge, MAX_FIELD_BYTES)


@pytest.mark.parametrize("report", [abort, openai_abort], ids=["native", "openai"])
async def test_every_resource_exhausted_says_when_to_retry(report: Report) -> None:
    # An overloaded model's 429 had no Retry-After on the native face (only the gateway's own
    # limits sent one): clients could not tell how long to back off.
    _, headers = await _sent(report, ResourceExhaustedError("/sax/test/lm is overloaded"))
    assert headers["retry-after"] == "1"
    _, headers = await _sent(report, UnavailableError("no replica"))
    assert "retry-after" not in headers


async def test_a_retry_after_the_error_names_is_the_one_sent() -> None:
    class Later(ResourceExhaustedError):
        metadata = (("retry-after", "10"),)

    context = _Context(request_id="r")
    with pytest.raises(_Aborted):
        await abort(cast(Context, context), Later("full"))
    assert [v for k, v in context.aborted[1] if k == "retry-after"] == ["10"]


def test_a_reply_over_the_message_limit_is_invalid_argument() -> None:
    reply = pb.CustomResponse(response=b"x" * 1000)
    # gRPC counts its 5-byte frame too: the check fires where gRPC's own limit would (with
    # RESOURCE_EXHAUSTED, a 429 that clients retry).
    exact = reply.ByteSize() + GRPC_FRAME_BYTES
    check_reply(reply, exact)
    with pytest.raises(InvalidArgumentError) as failure:
        check_reply(reply, exact - 1)
    assert failure.value.message == (
        f"the reply would be {exact} bytes, over this gateway's limit of {exact - 1} bytes: ask"
        " the model for less (fewer or shorter samples, fewer or smaller outputs)"
    )


async def test_a_call_cut_under_its_handler_is_answered_unavailable() -> None:
    # grpc.aio raises CancelledError in a handler whose outgoing call had its channel closed
    # under it; its caller did not leave. Unanswered, the call ended with no status, and its
    # caller waited until its deadline (or Envoy's route timeout: a 504).
    async def cut(request: object, context: object) -> object:
        raise asyncio.CancelledError  # not this task's cancellation

    call = ErrorInterceptor().wrap_unary("/saxgateway.v1.SaxGateway/Generate", cut)
    context = _Context(request_id="r")
    with pytest.raises(_Aborted):
        await call(pb.GenerateRequest(), cast(Context, context))
    assert (context.code, context.aborted[0]) == (
        grpc.StatusCode.UNAVAILABLE,
        "a connection closed under the call",
    )
