"""The client commands' shared pieces: inputs, tables, JSON and error reports (no sockets)."""

from __future__ import annotations

import argparse
import io
import json
import os

import grpc
import pytest
from google.protobuf import any_pb2, struct_pb2
from google.rpc import error_details_pb2, status_pb2
from saxgateway.v1 import gateway_pb2 as pb

from gateway.cli import _failures as failures
from gateway.cli import _inputs as inputs
from gateway.cli import _output as output
from gateway.cli import main
from gateway.cli._channel import DEFAULT_PORT, gateway_target
from gateway.cli._hints import HINTS
from gateway.common.stacktoken import REFUSED as STACK_TOKEN_REFUSED
from gateway.config import GatewaySettings
from gateway.launch.envoy import EnvoySettings
from tests.unit._statuses import DETAILS_KEY, bad_request

Trailers = tuple[tuple[str, str | bytes], ...]


class FakeRpcError(grpc.RpcError):
    """What a failed call raises, with the methods `report` reads."""

    def __init__(self, code: grpc.StatusCode, details: str, trailers: Trailers = ()) -> None:
        super().__init__(details)
        self._code, self._details, self._trailers = code, details, trailers

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    # grpc-stubs types metadata as `_Metadatum` objects; grpc hands (key, value) tuples.
    def trailing_metadata(self) -> Trailers:  # type: ignore[override]
        return self._trailers


def _args(**values: str) -> argparse.Namespace:
    return argparse.Namespace(gateway="gw:1", command="lm.score", **values)


def test_pair_splits_on_the_first_equals() -> None:
    assert inputs.pair("text=a=b") == ("text", "a=b")
    assert inputs.pair("empty=") == ("empty", "")
    for bad in ("novalue", "=v"):
        with pytest.raises(argparse.ArgumentTypeError):
            inputs.pair(bad)


def test_extra_inputs_are_numbers_when_they_parse() -> None:
    values = inputs.extra_inputs([("temperature", "0.5"), ("steps", "3"), ("mode", "fast")])
    assert values == {
        "temperature": struct_pb2.Value(number_value=0.5),
        "steps": struct_pb2.Value(number_value=3.0),
        "mode": struct_pb2.Value(string_value="fast"),
    }


def test_extra_inputs_read_quotes_and_non_numbers_as_saxutil_does() -> None:
    values = inputs.extra_inputs([("a", '"0.5"'), ("b", "'x'"), ("c", "nan"), ("d", "1e3")])
    assert values == {
        "a": struct_pb2.Value(string_value="0.5"),
        "b": struct_pb2.Value(string_value="x"),
        "c": struct_pb2.Value(string_value="nan"),
        "d": struct_pb2.Value(number_value=1000.0),
    }


def test_text_and_file_arguments_read_stdin_for_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"from stdin")))
    assert inputs.text_arg("-") == "from stdin"
    assert inputs.text_arg("literal") == "literal"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"\xef\xbb\xbf\xe6\x97\xa5\n")))
    assert inputs.text_arg("-") == "\u65e5\n"  # without the byte order mark a file began with
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"\x89PNG")))
    assert inputs.file_arg("-", "IMAGE_FILE", "an image") == b"\x89PNG"


def test_table_aligns_columns_and_formats_floats() -> None:
    rows = [("a long text", -0.30000000000000004), ("b", -0.0)]
    assert output.table(("TEXT", "SCORE"), rows) == (
        "TEXT         SCORE\na long text  -0.3\nb            0"
    )
    assert output.table(("CELL",), []) == "CELL"


def test_fields_align_values() -> None:
    assert output.fields([("ID", "/sax/test/x"), ("ADDRESSES", "")]) == (
        "ID         /sax/test/x\nADDRESSES"
    )


def test_floats_print_in_shortest_exact_form() -> None:
    float32_point_3 = -0.30000001192092896  # -0.3 as Sax sends it (float32)
    assert output.floats([0.1, -2.0, 1 / 3, float32_point_3, 1e-7, 0.1234567]) == (
        "0.1 -2 0.3333333333333333 -0.3 1e-07 0.1234567"
    )
    # A vector's doubles are data: every digit stays, so that what is printed reads back as
    # the value (vm.token_to_video reads vm.video_to_token's tokens). Rounded to 15 digits
    # where that moved them by one unit in the last place, as a score's noise is, these
    # read back as other tokens, and made another video.
    vector = [-0.6289469948969781, 0.04974505351856351, 0.8259910782799125, -0.1 * 3]
    printed = output.floats(vector)
    assert (
        printed == "-0.6289469948969781 0.04974505351856351 0.8259910782799125 -0.30000000000000004"
    )
    assert [float(v) for v in printed.split()] == vector
    message = pb.VideoToTokenResponse(tokens=vector)
    assert json.loads(output.to_json(message))["tokens"] == vector


def test_to_json_prints_numbers_in_shortest_form() -> None:
    message = pb.GenerateResponse(texts=[pb.DecodedText(text="a b c", score=-0.1 * 3)])
    assert output.to_json(message) == '{"texts": [{"text": "a b c", "score": -0.3}]}'


def test_to_json_uses_proto_names_and_prints_defaults() -> None:
    message = pb.WaitForReadyResponse(model="/sax/test/x")
    assert output.to_json(message) == '{"model": "/sax/test/x", "active_replicas": 0}'
    assert output.to_dict(message) == {"model": "/sax/test/x", "active_replicas": 0}


def test_json_prints_text_as_utf8_where_the_output_can_hold_it() -> None:
    # Was "h\\u00e9 \\u4e16\\u754c": unreadable for a French or Japanese reply.
    message = pb.GenerateResponse(texts=[pb.DecodedText(text="hé 世界", score=0.5)])
    assert output.to_json(message) == '{"texts": [{"text": "hé 世界", "score": 0.5}]}'
    utf8 = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    assert output.to_json(message, out=utf8) == '{"texts": [{"text": "hé 世界", "score": 0.5}]}'
    # An output that cannot hold it gets JSON's escapes: still valid JSON, not a failure.
    for encoding in ("ascii", "latin-1"):
        narrow = io.TextIOWrapper(io.BytesIO(), encoding=encoding)
        assert output.to_json(message, out=narrow) == (
            '{"texts": [{"text": "h\\u00e9 \\u4e16\\u754c", "score": 0.5}]}'
        )
    # A lone surrogate (an argument that was not UTF-8, echoed in a message) is escaped too.
    assert output.json_text({"m": "a\udcff"}, utf8) == '{"m": "a\\udcff"}'


def test_every_status_code_has_a_hint() -> None:
    assert set(HINTS) == set(grpc.StatusCode)
    for code in grpc.StatusCode:
        assert "{" not in failures.hint(code, _args(id="/sax/test/lm"))


def test_hints_name_the_model_cell_and_gateway() -> None:
    args = _args(id="/sax/prod/lm")
    assert failures.hint(grpc.StatusCode.NOT_FOUND, args) == (
        "list published models with `saxgw ls /sax/prod`; "
        "publish with `saxgw publish /sax/prod/lm MODEL_PATH CHECKPOINT REPLICAS`"
    )
    assert failures.hint(grpc.StatusCode.DEADLINE_EXCEEDED, args) == (
        "raise --timeout, or check that `saxgw ls /sax/prod/lm` shows active replicas"
        " (none: `saxgw stats /sax/prod` shows the model paths its servers serve)"
    )
    assert failures.hint(grpc.StatusCode.UNAVAILABLE, args).startswith(
        "is a gateway listening on gw:1? start one with `make up`"
    )
    assert "saxgw ls /sax/<cell>" in failures.hint(grpc.StatusCode.NOT_FOUND, _args())


@pytest.mark.parametrize(
    ("code", "details", "starts"),
    [
        # Each had the hint of its code, which sent the user the wrong way (a second probe).
        (  # "a bug in the gateway or model server"
            grpc.StatusCode.INTERNAL,
            "Stream removed (RST_STREAM (Received RST_STREAM with error code 2))",
            "the connection to the gateway was reset during the call",
        ),
        (  # "send less (payloads <= 10 MiB)"
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "local_rate_limited",
            "the credentials are over their rate (quotas.rate",
        ),
        (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "/sax/test/lm is at its limit of calls in flight and queued; retry later",
            "too many calls are in flight",
        ),
        (  # "send less (messages <= 32 MiB)", where the model's servers were busy
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "/sax/test/lm is overloaded; retry later (queue full: ResourceExhausted)",
            "the model's servers are overloaded: retry in a second, or give it more replicas",
        ),
        (  # "check the ACLs of the model"
            grpc.StatusCode.PERMISSION_DENIED,
            "client team-a may not use /sax/test/echo",
            "the gateway's config limits which models these credentials may use",
        ),
        (  # "the model may not support this method"
            grpc.StatusCode.FAILED_PRECONDITION,
            "invalid model update: model path can't be changed",
            "a model's path is fixed once published: `saxgw unpublish /sax/test/lm`",
        ),
        (
            grpc.StatusCode.FAILED_PRECONDITION,
            "/sax/test/lm failed to load (127.0.0.1:10001: TestLM failed to load: boom)",
            "the model failed to load on its servers",
        ),
        (  # "the model may not support this method", where it has no replica requested
            grpc.StatusCode.FAILED_PRECONDITION,
            "/sax/test/lm has no replica to serve it: it is published with 0 replicas (an "
            "update of its replicas makes it serve)",
            "the model has no replica requested: `saxgw update /sax/test/lm --replicas N`",
        ),
        (  # "check ... the model's methods", which have nothing to do with it
            grpc.StatusCode.INVALID_ARGUMENT,
            "unknown override 'bogus' for sax_gateway.testing.TestLM, which takes delay_ms, ...",
            "fix or leave out the override named above (docs/cell.md lists the overrides",
        ),
        (  # "is it published?", which it was when saxgw began to wait
            grpc.StatusCode.NOT_FOUND,
            "model /sax/test/lm was unpublished while waiting for it to be ready",
            "the model was unpublished while saxgw waited for it",
        ),
        (  # "set SAXGW_API_KEY", which a gateway port of a stack with credentials ignores
            grpc.StatusCode.UNAUTHENTICATED,
            STACK_TOKEN_REFUSED,
            "point --gateway at Envoy's public port",
        ),
    ],
)
def test_a_message_that_says_why_gets_the_hint_for_it(
    code: grpc.StatusCode, details: str, starts: str
) -> None:
    assert failures.hint(code, _args(id="/sax/test/lm"), details=details).startswith(starts)


@pytest.mark.parametrize(
    ("command", "target", "details"),
    [
        ("ls", "/sax/test", "admin List for /sax/test did not finish within its deadline"),
        (
            "publish",
            "/sax/test/lm",
            "admin Publish for /sax/test did not finish within its deadline",
        ),
        ("stats", "/sax/test", "admin Stats for /sax/test did not finish within its deadline"),
        (
            "lm.generate",
            "/sax/test/lm",
            "call to /sax/test/lm exceeded its deadline reading the model's ACLs from the admin",
        ),
    ],
)
def test_an_admin_that_does_not_answer_gets_the_admins_hint(
    command: str, target: str, details: str
) -> None:
    # With the admin SIGSTOPped, `saxgw ls /sax/test` hinted to run `saxgw ls /sax/test`:
    # the call that had just failed, and one more admin call that cannot answer either.
    args = argparse.Namespace(gateway="gw:1", command=command, id=target)
    assert failures.hint(grpc.StatusCode.DEADLINE_EXCEEDED, args, details=details) == (
        "the gateway reached the admin server of /sax/test, but it did not answer in time "
        "(stopped, stuck or overloaded?): check that its process runs, what its log says (under "
        "`saxgw up`: the gateway.cell.admin lines, or cell.log in --log-dir) and that "
        "SAX_ROOT/sax/test/location.proto names its address; raise --timeout only if it is just "
        "slow"
    )


def test_a_wait_that_ran_out_hints_at_replicas_and_then_at_the_admin() -> None:
    # WaitForReady is a long poll: a well admin answers at the deadline as a silent one does.
    args = argparse.Namespace(gateway="gw:1", command="wait", id="/sax/test/lm", replicas=2)
    details = "admin WaitForReady for /sax/test did not finish within its deadline"
    assert failures.hint(grpc.StatusCode.DEADLINE_EXCEEDED, args, details=details) == (
        "the model had fewer ready replicas than asked when --timeout ran out: `saxgw ls "
        "/sax/test/lm` shows its active replicas (none: `saxgw stats /sax/test` shows the model "
        "paths its servers serve); if that times out too, the admin server of /sax/test is not "
        "answering: check that its process runs, what its log says (under `saxgw up`: the "
        "gateway.cell.admin lines, or cell.log in --log-dir) and that "
        "SAX_ROOT/sax/test/location.proto names its address"
    )


def test_a_wait_that_ran_out_saying_its_counts_hints_at_ls_and_update() -> None:
    args = argparse.Namespace(gateway="gw:1", command="wait", id="/sax/test/lm", replicas=3)
    details = (
        "/sax/test/lm: 1 of 3 replica(s) ready when the wait's deadline passed; it is "
        "published with 1 replica(s), so 3 can be ready only once its replicas are updated"
    )
    assert failures.hint(grpc.StatusCode.DEADLINE_EXCEEDED, args, details=details) == (
        "`saxgw ls /sax/test/lm` shows its replicas and any load error (none active: `saxgw "
        "stats /sax/test` shows the model paths its servers serve); `saxgw update /sax/test/lm "
        "--replicas N` asks for more"
    )


def test_sizes_in_the_hints_are_the_gateways() -> None:
    hinted = failures.hint(grpc.StatusCode.RESOURCE_EXHAUSTED, _args(), details="too big")
    default = GatewaySettings.__dataclass_fields__["max_message_bytes"].default
    assert "32 MiB" in hinted and default == 32 << 20


def test_an_unknown_cell_hints_at_the_cells_not_at_publishing_into_it() -> None:
    # `saxgw ls /sax/nope` suggested `saxgw ls /sax/nope` again and publishing into /sax/nope.
    for target in ("/sax/nope", "/sax/nope/lm"):
        hinted = failures.hint(
            grpc.StatusCode.NOT_FOUND, _args(id=target), details="cell /sax/nope not found"
        )
        assert hinted == "no such cell: `saxgw ls` lists the cells under the gateway's SAX_ROOT"


def test_report_prints_field_violations_from_status_details() -> None:
    status = bad_request("suffix: required", ("suffix", "required"))
    trailers = (("other", "x"), (DETAILS_KEY, status.SerializeToString()))
    err = io.StringIO()
    exc = FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "suffix: required", trailers)
    assert failures.report(exc, _args(id="/sax/test/lm"), err) == 1
    assert err.getvalue().splitlines() == [
        "saxgw: INVALID_ARGUMENT: suffix: required",  # the violation, said once
        "hint: fix the fields named above; `saxgw lm.score --help` shows the arguments",
    ]


def test_report_without_details() -> None:
    err = io.StringIO()
    exc = FakeRpcError(grpc.StatusCode.INTERNAL, "")
    assert failures.report(exc, _args(), err) == 1
    assert err.getvalue().splitlines()[0] == "saxgw: INTERNAL: no details"
    assert failures.field_violations(exc) == []


def test_a_failures_message_is_printed_as_text_whatever_a_server_put_in_it() -> None:
    # A model server's error text reaches saxgw as the gateway passes it on: an escape
    # sequence in it cleared the caller's screen, a line break forged a line of saxgw's own.
    err = io.StringIO()
    exc = FakeRpcError(grpc.StatusCode.INTERNAL, "boom\x1b[2J\nhint: run rm -rf")
    assert failures.report(exc, _args(), err) == 1
    assert err.getvalue().splitlines()[0] == "saxgw: INTERNAL: boom\\u001b[2J\\nhint: run rm -rf"


def test_a_failure_the_logs_explain_names_the_request_id_to_find_them_by() -> None:
    # The hint sent the reader to the gateway's log, among every call's lines, without the
    # x-request-id that finds this one's there and in Envoy's access log (only -v showed it).
    info = any_pb2.Any()
    info.Pack(error_details_pb2.RequestInfo(request_id="req-17"))
    status = status_pb2.Status(code=13, message="model server failed", details=[info])
    failed = (
        FakeRpcError(grpc.StatusCode.INTERNAL, "model server failed", trailers)
        for trailers in (
            ((DETAILS_KEY, status.SerializeToString()),),
            (("x-request-id", "req-17"),),  # a status without details: grpc's own
        )
    )
    for exc in failed:
        err = io.StringIO()
        assert failures.report(exc, _args(), err) == 1
        assert err.getvalue().splitlines()[-1] == (
            "hint: a bug in the gateway or model server; see their logs (and Envoy's access log)"
            " for x-request-id req-17, which names this call"
        )
    err = io.StringIO()
    failures.report(FakeRpcError(grpc.StatusCode.UNKNOWN, "?"), _args(), err)
    assert err.getvalue().splitlines()[-1] == (
        "hint: the gateway or cell failed unexpectedly; see the gateway's log"
    )


def test_unimplemented_from_the_cell_is_not_blamed_on_an_old_gateway() -> None:
    args = _args(id="/sax/test/lm")
    own = failures.hint(grpc.StatusCode.UNIMPLEMENTED, args, details="Method not found!")
    assert own == "the gateway at gw:1 does not offer this call; is it older than saxgw?"
    relayed = failures.hint(
        grpc.StatusCode.UNIMPLEMENTED, args, details="model server: method lm.gradient: not found"
    )
    assert relayed == (
        "the Sax cell behind the gateway does not implement this call (see the message above); "
        "`saxgw ls /sax/test/lm` lists the model's methods"
    )


def test_an_address_that_is_not_grpc_is_not_blamed_on_the_cell() -> None:
    # What grpc says for Envoy's admin port (HTTP 404) and for the ops port (HTTP/1.0).
    for code, details in (
        (grpc.StatusCode.UNIMPLEMENTED, "Received http2 header with status: 404"),
        (
            grpc.StatusCode.UNAVAILABLE,
            "failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:8889: "
            "Failed parsing HTTP/2 (Expected SETTINGS frame as the first frame, got frame type 79)",
        ),
    ):
        assert failures.hint(code, _args(), details=details) == (
            "gw:1 answered, but it is not the gateway's gRPC port: point --gateway at Envoy's "
            "public port (`saxgw up --port`, 8888) or a gateway port (--gateway-ports)"
        )


def test_a_closed_socket_hints_at_tls_only_for_a_plaintext_call() -> None:
    # What grpc says for plaintext to a TLS listener (tests/e2e/security/test_tls.py has the
    # rest); with TLS flags given the cause is something else: the usual hint.
    details = (
        "failed to connect to all addresses; last error: UNAVAILABLE: ipv4:gw:1: Socket closed"
    )
    plaintext = failures.hint(grpc.StatusCode.UNAVAILABLE, _args(), details=details)
    assert plaintext.startswith("gw:1 closed the connection at once: if it serves TLS")
    tls = failures.hint(grpc.StatusCode.UNAVAILABLE, _args(ca_cert="ca.pem"), details=details)
    assert tls == failures.hint(grpc.StatusCode.UNAVAILABLE, _args())


def test_an_unreachable_cell_is_not_blamed_on_a_missing_gateway() -> None:
    details = "the admin server of cell /sax/test at 127.0.0.1:10000 is unreachable: refused"
    assert failures.hint(grpc.StatusCode.UNAVAILABLE, _args(), details=details).startswith(
        "the gateway is up but the Sax cell's admin server is not"
    )


def test_a_failed_storage_is_not_blamed_on_a_missing_gateway_or_a_bug() -> None:
    # UNAVAILABLE asked whether a gateway listens, INTERNAL spoke of a bug.
    for code, details in (
        (
            grpc.StatusCode.UNAVAILABLE,
            "could not list the cells: this gateway's SAX_ROOT is unavailable; retry later",
        ),
        (
            grpc.StatusCode.INTERNAL,
            "could not publish /sax/test/lm: the storage of cell "
            "/sax/test failed; its operator finds why in the admin server's log: Internal",
        ),
    ):
        assert failures.hint(code, _args(), details=details) == (
            "the Sax cell's storage (SAX_ROOT, or the fs root where its admin keeps state) "
            "failed: retry later; if it lasts, the gateway's or admin server's log says which "
            "file and why"
        )


def test_invalid_argument_without_fields_points_at_arguments_and_methods() -> None:
    err = io.StringIO()
    exc = FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "does not support lm.score")
    assert failures.report(exc, _args(id="/sax/test/vis"), err) == 1
    assert err.getvalue().splitlines()[-1] == (
        "hint: check the arguments (`saxgw lm.score --help`) "
        "and the model's methods (`saxgw ls /sax/test/vis`)"
    )


@pytest.mark.parametrize(
    ("argv", "quiet"),
    [
        (["ls", "/sax"], True),
        (["--gateway", "h:1", "lm.generate", "/sax/a/b", "q"], True),
        (["-v", "ls"], False),
        (["up", "--port", "8888"], False),
        (["gateway", "--port", "1"], False),
        (["serve"], False),
        (["ops"], False),
        (["envoy-config"], False),
    ],
)
def test_grpc_logs_are_quiet_for_client_verbs_only(
    argv: list[str], quiet: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GRPC_VERBOSITY", raising=False)
    main._quiet_grpc(argv)
    assert os.environ.get("GRPC_VERBOSITY") == ("NONE" if quiet else None)


@pytest.mark.parametrize(
    ("gateway", "tls", "target"),
    [
        ("localhost", False, "localhost:8888"),
        ("gw.example.com", True, "gw.example.com:443"),
        ("[::1]", False, "[::1]:8888"),
        # A bare IPv6 address too: grpc dialled ::1 at 443, in plaintext.
        ("::1", False, "[::1]:8888"),
        ("fd00::5", True, "[fd00::5]:443"),
        ("localhost:9000", False, "localhost:9000"),
        ("[::1]:9000", True, "[::1]:9000"),
        ("unix:/run/saxgw.sock", False, "unix:/run/saxgw.sock"),
        ("dns:///gw.example.com:443", True, "dns:///gw.example.com:443"),
    ],
)
def test_a_gateway_named_without_a_port_gets_the_public_ports(
    gateway: str, tls: bool, target: str
) -> None:
    # grpc's own default is 443, plaintext too: `--gateway localhost` dialled localhost:443.
    args = main.parser().parse_args(["--gateway", gateway, *(["--tls"] if tls else []), "ls"])
    assert gateway_target(args) == target
    failed = "failed to connect to all addresses"
    hint = failures.hint(grpc.StatusCode.UNAVAILABLE, args, details=failed)
    assert f"is a gateway listening on {target}?" in hint


def test_the_cli_default_port_is_envoys() -> None:
    assert EnvoySettings(gateway_endpoints=()).listen_port == DEFAULT_PORT
