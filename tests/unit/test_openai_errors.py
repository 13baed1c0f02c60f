"""Errors of the OpenAI face: every gRPC code has an OpenAI type; the envelope; 429s."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import cast

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from gateway.client import (
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    UnavailableError,
    UnimplementedError,
)
from gateway.common.errors import SaxError
from gateway.common.rpc import Context
from gateway.launch._openai_errors import error_fields_table, error_headers_table
from gateway.launch.envoy import EnvoySettings, render
from gateway.service._errors import GRPC_FRAME_BYTES
from gateway.service.openai._errors import (
    ENVELOPE_KEY,
    KINDS,
    abort,
    envelope,
    error_fields,
    reply_headers,
)
from gateway.service.openai._generate import check_samples
from gateway.service.openai._responses import body, fitted


def test_every_status_code_has_an_openai_type() -> None:
    assert set(KINDS) == set(grpc.StatusCode)


def test_a_model_that_answers_no_sample_is_a_server_error_not_the_callers_n() -> None:
    # It was a 400 'n: M returns 0 sample(s) per prompt' to a caller that had set no n.
    for samples, n in ((0, 1), (0, 4), (1, 2)):
        with pytest.raises(SaxError) as refused:
            check_samples("/sax/test/lm", samples, n)
        _, body, _ = envelope(refused.value)
        assert body["error"] == (
            {
                "message": "/sax/test/lm answered the prompt with no sample",
                "type": "server_error",
                "param": None,
                "code": None,
            }
            if samples == 0
            else {
                "message": "n: /sax/test/lm returns 1 sample(s) per prompt",
                "type": "invalid_request_error",
                "param": "n",
                "code": None,
            }
        )
    check_samples("/sax/test/lm", 2, 2)


def test_envelope_names_the_field_and_the_model_not_found_code() -> None:
    code, body, _ = envelope(InvalidArgumentError("n: bad", field_violations=(("n", "bad"),)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert body == {
        "error": {"message": "n: bad", "type": "invalid_request_error", "param": "n", "code": None}
    }
    for missing in ("model /sax/test/x is not published: NotFound", "cell /sax/x not found"):
        _, body, _ = envelope(NotFoundError(missing))
        assert body["error"] == {
            "message": missing,
            "type": "invalid_request_error",
            "param": "model",  # every OpenAI call names one model: it is what is missing
            "code": "model_not_found",
        }
    _, body, _ = envelope(TimeoutError())
    assert body["error"]["type"] == "timeout_error"
    _, body, _ = envelope(RuntimeError("secret"))
    assert body["error"] == {
        "message": "internal error in sax-gateway",
        "type": "server_error",
        "param": None,
        "code": None,
    }


class _Aborted(Exception):
    pass


class _Context:
    def __init__(self, *metadata: tuple[str, str]) -> None:
        self.aborted: tuple[object, str, Sequence[tuple[str, str | bytes]]] | None = None
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def time_remaining(self) -> float | None:
        return None

    async def abort(
        self,
        code: object,
        details: str = "",
        trailing_metadata: Sequence[tuple[str, str | bytes]] = (),
    ) -> None:
        self.aborted = (code, details, trailing_metadata)
        raise _Aborted

    def as_context(self) -> Context:
        # Only what `abort` calls; a real servicer context needs a live call.
        return cast(Context, self)


async def test_abort_sends_the_envelope_and_retry_after_on_429() -> None:
    context = _Context()
    with pytest.raises(_Aborted):
        await abort(context.as_context(), ResourceExhaustedError("busy"))
    assert context.aborted is not None
    code, details, metadata = context.aborted
    assert (code, details) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "busy")
    headers = dict(metadata)
    assert headers["retry-after"] == "1"
    assert json.loads(headers[ENVELOPE_KEY])["error"]["type"] == "rate_limit_error"
    context = _Context()
    with pytest.raises(_Aborted):
        await abort(context.as_context(), UnavailableError("caf\u00e9 down"))
    assert context.aborted is not None
    headers = dict(context.aborted[2])
    assert "retry-after" not in headers and "x-should-retry" not in headers  # 503: retried
    assert str(headers[ENVELOPE_KEY]).isascii()  # metadata must be ASCII
    context = _Context()
    with pytest.raises(_Aborted):
        await abort(context.as_context(), UnimplementedError("no such RPC"))
    assert context.aborted is not None
    assert dict(context.aborted[2])["x-should-retry"] == "false"  # 501: no retry can help


async def test_a_grpc_callers_status_names_the_request_id() -> None:
    # As SaxGateway's failures do (docs/clients.md), in a google.rpc.RequestInfo: the
    # OpenAIGateway's had none, so a gRPC caller's error details (grpcurl -format-error, Go's
    # status.Details()) could not name the call to whoever reads Envoy's or the gateway's log.
    context = _Context(("x-request-id", "req-7"))
    with pytest.raises(_Aborted):
        await abort(context.as_context(), NotFoundError("model 'x' does not exist"))
    assert context.aborted is not None
    raw = dict(context.aborted[2])["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(cast(bytes, raw))
    assert (status.code, status.message) == (5, "model 'x' does not exist")
    info = error_details_pb2.RequestInfo()
    assert [detail.Unpack(info) for detail in status.details] == [True]
    assert info.request_id == "req-7"


def test_a_response_over_the_message_limit_is_invalid_argument() -> None:
    message = body({"text": "x" * 1000})
    # gRPC counts the serialized message; its 5-byte frame prefix is counted too, so the
    # check fires before gRPC's own limit (RESOURCE_EXHAUSTED, a 429 the SDKs retry) would.
    exact = message.ByteSize() + GRPC_FRAME_BYTES
    assert fitted(message, exact, "ask for less") is message
    with pytest.raises(InvalidArgumentError) as failure:
        fitted(message, exact - 1, "ask for less")
    assert failure.value.message == (
        f"the response would be {len(message.data)} bytes, over this gateway's limit of "
        f"{exact - 1} bytes: ask for less"
    )
    assert envelope(failure.value)[0] == grpc.StatusCode.INVALID_ARGUMENT


def test_envoys_envelopes_come_from_the_gateways_table() -> None:
    # What Envoy's `openai_errors` Lua writes for a failure grpc reported itself: the
    # gateway's own type, param and code for each gRPC code, and its headers.
    fields, headers = error_fields_table(), error_headers_table()
    rendered = render(EnvoySettings(gateway_endpoints=["127.0.0.1:1"]))
    assert f"local FIELDS = {fields}\n" in rendered
    assert f"local HEADERS = {headers}\n" in rendered
    for code in grpc.StatusCode:
        member = json.dumps(error_fields(code))[1:-1]
        assert f"[{code.value[0]}] = [[{member}]]" in fields
        message = json.dumps("Deadline Exceeded")
        assert json.loads(f'{{"message": {message}, {member}}}') == {
            "message": "Deadline Exceeded",
            **error_fields(code),
        }
    assert headers == "{[8] = {{[[retry-after]], [[1]]}}, [12] = {{[[x-should-retry]], [[false]]}}}"
    assert reply_headers(grpc.StatusCode.RESOURCE_EXHAUSTED) == (("retry-after", "1"),)
