"""The client commands' grammar and formatting, without a gateway."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from typing import cast

import grpc
import pytest
from google.rpc import status_pb2
from saxgateway.v1 import gateway_pb2 as pb
from saxgateway.v1 import gateway_pb2_grpc

from gateway.cli import _channel, _common, admin, am, cm, lm, vm
from gateway.cli._families import FAMILIES, families_for
from gateway.cli._help import go_style_flags
from gateway.cli.main import main, parser

USAGES = {
    "ls": "[ID] [--csv] [--[no-]details] [--[no-]acls]",
    "publish": "ID MODEL_PATH CHECKPOINT REPLICAS [k=v ...]",
    "unpublish": "ID",
    "update": "ID [--model-path P] [--checkpoint C] [--replicas N] [--clear-overrides] [k=v ...]",
    "update_checkpoint": "ID CHECKPOINT",
    "stats": "[ID]",
    "watch": "ID",
    "wait": "ID [REPLICAS]",
    "getacl": "ID [METHOD|all]",
    "setacl": "ID [METHOD] ACL",
    "lm.generate": "ID QUERY [--stream] [-n N] [--terse] [--extra k=v ...]",
    "lm.score": "ID PREFIX SUFFIX [SUFFIX ...]",
    "lm.embed": "ID TEXT",
    "lm.gradient": "ID PREFIX SUFFIX",
    "vm.classify": "ID IMAGE_FILE",
    "vm.generate": "ID TEXT OUTPUT_DIR",
    "vm.embed": "ID IMAGE_FILE",
    "vm.detect": "ID IMAGE_FILE [LABEL ...] [--box CX,CY,W,H ...]",
    "vm.image_to_text": "ID IMAGE_FILE [PROMPT]",
    "vm.image_to_image": "ID IMAGE_FILE OUTPUT_DIR",
    "vm.text_and_image_to_image": "ID TEXT IMAGE_FILE OUTPUT_DIR",
    "vm.video_to_text": "ID FRAME_FILE [FRAME_FILE ...] [--prompt TEXT]",
    "vm.video_to_token": "ID FRAME_FILE [FRAME_FILE ...]",
    "vm.token_to_video": "ID TOKENS_FILE OUTPUT_DIR",
    "am.recognize": "ID AUDIO_FILE",
    "cm.custom": "ID METHOD [REQUEST_FILE]",
}


def _commands() -> dict[str, argparse.ArgumentParser]:
    top = parser()
    [sub] = [a for a in top._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_client_command_has_a_synopsis_and_a_literal_usage_line() -> None:
    commands = _commands()
    for name, usage in USAGES.items():
        description = commands[name].description or ""
        assert description.startswith(f"Usage: saxgw {name} "), name
        assert description.endswith(usage), name
    [sub] = [a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {action.dest: action.help for action in sub._choices_actions}
    assert all(helps[name] for name in USAGES)


def test_publish_takes_saxutils_argument_order_and_overrides() -> None:
    args = parser().parse_args(
        ["publish", "/sax/test/lm", "path.Model", "None", "2", "a=1", "b=x=y", "--timeout", "5"]
    )
    assert (args.id, args.model_path, args.checkpoint, args.replicas) == (
        "/sax/test/lm",
        "path.Model",
        "None",
        2,
    )
    assert args.overrides == [("a", "1"), ("b", "x=y")]
    assert args.timeout == 5.0
    assert args.gateway == _channel.DEFAULT_GATEWAY
    assert args.json is False


def test_generate_flags() -> None:
    args = parser().parse_args(
        ["lm.generate", "--gateway", "h:1", "/sax/test/lm", "-", "--stream", "--extra", "t=0.5"]
    )
    assert (args.gateway, args.id, args.query, args.stream) == ("h:1", "/sax/test/lm", "-", True)
    assert args.extra == [[("t", "0.5")]]
    args = parser().parse_args(
        ["lm.generate", "m", "q", "--extra", "a=1", "b=2", "--extra", "c=x", "--json"]
    )
    assert args.extra == [[("a", "1")], [("b", "2")], [("c", "x")]]
    assert args.json is True
    # saxutil's one-dash flags and its k:v,k:v extra inputs (Go's flag package).
    args = parser().parse_args(
        go_style_flags(
            parser(),
            ["lm.generate", "-stream", "-extra=t:0.5,stop:a=b", "-sax_timeout=1m30s", "m", "q"],
        )
    )
    assert (args.stream, args.extra, args.timeout) == (True, [[("t", "0.5"), ("stop", "a=b")]], 90)


@pytest.mark.parametrize(
    "argv",
    [
        ["lm.generate", "m", "q", "--extra", "novalue"],
        ["lm.score", "m", "prefix"],  # at least one suffix
        ["publish", "m", "p", "c", "many"],
        ["lm.generate", "m", "q", "--extra", "a:1,b"],  # saxutil's form, one pair short
        ["ls", "--timeout", "0s"],
        ["ls", "--timeout", "0"],
        # Past int32 these were tracebacks (protobuf's ValueError), not usage errors.
        ["publish", "m", "p", "c", "99999999999"],
        ["update", "m", "--replicas", "3000000000"],
        ["wait", "m", "1025"],
        ["publish", "m", "p", "c", "--", "-1"],
    ],
)
def test_bad_command_lines_are_usage_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(argv)
    assert exited.value.code == 2
    assert "usage: saxgw" in capsys.readouterr().err


def test_is_cell() -> None:
    assert admin.is_cell("/sax/test") and admin.is_cell("sax/test")
    assert not admin.is_cell("/sax/test/lm")


def test_model_detail_has_saxutils_columns_then_the_gateways() -> None:
    info = pb.ModelInfo(
        model="/sax/test/lm",
        model_path="p.M",
        checkpoint="None",
        max_replicas=3,
        active_replicas=2,
        overrides={"b": "2", "a": "1"},
        addresses=["h:1", "h:2"],
        methods=["lm.generate", "lm.score"],
        method_acls={"lm.score": "acl/all", "lm.generate": "acl/team-a"},
    )
    # saxutil's row shows one address it picks at random; pick the last one here. Then, as
    # saxutil prints them, the method ACLs by method.
    assert admin.model_detail(info, pick=lambda addresses: addresses[-1]).splitlines() == [
        "MODEL  MODEL PATH  CHECKPOINT PATH  # OF REPLICAS  (SELECTED) REPLICAADDRESS  METHODS",
        "lm     p.M         None             2              h:2                        "
        "lm.generate, lm.score",
        "",
        "METHOD       ACL",
        "lm.generate  acl/team-a",
        "lm.score     acl/all",
        "",
        "REQUESTED REPLICAS  OVERRIDES  LOAD ERROR",
        "3                   a=1, b=2",
    ]
    assert admin.model_detail(info).splitlines()[1].split()[4] in ("h:1", "h:2")
    # A model that failed to load says why, beside the count of replicas it asked for.
    info.ClearField("addresses")
    info.ClearField("overrides")
    info.ClearField("method_acls")
    info.active_replicas = 0
    info.load_error = "/sax/test/lm failed to load (h:1: weights are corrupt)"
    assert admin.model_detail(info).splitlines()[1:] == [
        "lm     p.M         None             0                                         "
        "lm.generate, lm.score",
        "",
        "METHOD  ACL",
        "",
        "REQUESTED REPLICAS  OVERRIDES  LOAD ERROR",
        "3                              /sax/test/lm failed to load (h:1: weights are corrupt)",
    ]


def test_cell_and_model_tables_number_bare_names_as_saxutil_does() -> None:
    assert admin.cell_table(["/sax/a", "/sax/test"]).splitlines() == ["#  CELL", "0  a", "1  test"]
    models = [pb.ModelInfo(model=f"/sax/test/{name}", model_path="p.M") for name in ("a", "lm")]
    assert admin.model_table(models).splitlines() == ["#  MODEL ID", "0  a", "1  lm"]
    assert admin.model_table([]) == "#  MODEL ID"


def test_a_model_id_the_admin_names_is_shown_whole_and_escaped() -> None:
    # An admin lists what its state holds (upstream's does not check it): printed as it came,
    # an escape sequence reached the terminal, a line break made a row of its own, and
    # /sax/bk/x/../y showed as a model y, which no call could reach.
    ids = ["a\nb", "esc\x1b[31mRED", "x/../y", "nul\x00", "ok"]
    models = [pb.ModelInfo(model=f"/sax/bk/{name}") for name in ids]
    assert admin.model_table(models).splitlines() == [
        "#  MODEL ID",
        "0  a\\nb",
        "1  esc\\u001b[31mRED",
        "2  x/../y",
        "3  nul\\u0000",
        "4  ok",
    ]
    assert admin.model_table(models, csv=True).splitlines()[1:3] == [
        "0,a\\nb",
        "1,esc\\u001b[31mRED",
    ]


def test_watch_prints_a_reset_then_changes_as_saxutil_does() -> None:
    assert admin.changes(None, ["h:2", "h:1"]) == ["Reset", "+ h:1", "+ h:2"]
    assert admin.changes(None, []) == ["Reset"]
    assert admin.changes(["h:1", "h:2"], ["h:2", "h:3"]) == ["- h:1", "+ h:3"]
    assert admin.changes(["h:1"], ["h:1"]) == []


def test_image_suffix() -> None:
    assert vm.image_suffix(b"\x89PNG\r\n\x1a\nrest") == ".png"
    assert vm.image_suffix(b"\xff\xd8\xff\xe0") == ".jpg"
    assert vm.image_suffix(b"raw") == ".bin"


def _session(out: io.StringIO) -> _common.Session:
    # The printing helpers under test never call the gateway: no stub behind the session.
    no_stub = cast(gateway_pb2_grpc.SaxGatewayStub, None)
    return _common.Session(stub=no_stub, timeout=None, json=False, out=out)


def test_stream_text_prints_the_first_sample_and_backtracks() -> None:
    out = io.StringIO()
    messages = [
        pb.GenerateStreamResponse(deltas=[pb.TextDelta(index=0, text="Hel")]),
        pb.GenerateStreamResponse(
            deltas=[pb.TextDelta(index=1, text="other"), pb.TextDelta(index=0, text="lo")]
        ),
        pb.GenerateStreamResponse(deltas=[pb.TextDelta(index=0, backtrack=2, text="p!")]),
        pb.GenerateStreamResponse(done=True, texts=[pb.DecodedText(text="Help!", score=-1)]),
    ]
    final = lm.stream_text(messages, _session(out))
    assert out.getvalue() == "Hello\b\b  \b\bp!\n"
    assert [t.text for t in final] == ["Help!"]


def test_stream_text_stops_quietly_on_an_in_band_error() -> None:
    # The text so far ends its line; with none, nothing is printed (not an empty line).
    error = pb.GenerateStreamResponse(done=True, error=status_pb2.Status(code=13, message="x"))
    for deltas, printed in (([pb.TextDelta(index=0, text="a")], "a\n"), ([], "")):
        out = io.StringIO()
        messages = [pb.GenerateStreamResponse(deltas=deltas), error]
        assert lm.stream_text(messages, _session(out)) == []
        assert out.getvalue() == printed


def test_stream_text_ends_an_empty_answers_line() -> None:
    out = io.StringIO()
    done = pb.GenerateStreamResponse(done=True, texts=[pb.DecodedText(text="", score=-1)])
    assert [t.text for t in lm.stream_text([done], _session(out))] == [""]
    assert out.getvalue() == "\n"


def test_every_family_registers_its_commands() -> None:
    commands = _commands()
    for family, prefix in [(lm, "lm."), (vm, "vm."), (am, "am."), (cm, "cm.")]:
        assert family.register is not None
        assert [n for n in USAGES if n.startswith(prefix)] == [
            n for n in commands if n.startswith(prefix)
        ]


def test_global_flags_work_before_the_command() -> None:
    args = parser().parse_args(["--gateway", "h:1", "--timeout", "3", "--json", "ls", "/sax/x"])
    assert (args.gateway, args.timeout, args.json, args.id) == ("h:1", 3.0, True, "/sax/x")
    after = parser().parse_args(["ls", "--gateway", "h:2"])
    assert (after.gateway, after.timeout, after.json) == ("h:2", None, False)
    both = parser().parse_args(["--gateway", "h:1", "ls", "--timeout", "4"])
    assert (both.gateway, both.timeout) == ("h:1", 4.0)
    default = parser().parse_args(["ls"])
    assert default.gateway == _channel.DEFAULT_GATEWAY
    # -v too, as README says of every global flag (it was refused after the command, though
    # main.py's check for grpc's logs already looked for it there).
    assert [parser().parse_args(a).verbose for a in (["-v", "ls"], ["ls", "-v"], ["ls"])] == [
        True,
        True,
        False,
    ]
    assert parser().parse_args(["lm.generate", "m", "q", "--verbose"]).verbose


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        # A flag between two optional positionals: argparse alone gave METHOD nothing, then
        # "unrecognized arguments: acl/a".
        (["setacl", "m", "--json", "lm.generate", "acl/a"], {"method": "lm.generate"}),
        (["setacl", "m", "lm.generate", "--json", "acl/a"], {"method": "lm.generate"}),
        (["setacl", "m", "--json", "acl/a"], {"method": None, "acl": "acl/a"}),
        (["getacl", "m", "--json", "all"], {"method": "all"}),
        (["lm.score", "m", "p", "a", "--json", "b"], {"suffix": ["a", "b"]}),
    ],
)
def test_flags_may_come_between_a_commands_arguments(
    argv: list[str], expected: dict[str, object]
) -> None:
    args = parser().parse_args(argv)
    assert {key: getattr(args, key) for key in expected} == expected
    assert (args.id, args.json) == ("m", True)


def test_a_mistyped_command_gets_did_you_mean(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(["--gateway", "h:1", "lm.generat", "/sax/test/lm", "q"])
    assert exited.value.code == 2
    err = capsys.readouterr().err.splitlines()
    # lm.gradient, much less close than the two, was suggested too.
    assert err[-2] == (
        "saxgw: unknown command 'lm.generat'; did you mean lm.generate or vm.generate?"
    )
    assert err[-1] == "`saxgw --help` lists the commands."
    with pytest.raises(SystemExit):
        parser().parse_args(["zzz"])
    assert capsys.readouterr().err.splitlines()[-2] == "saxgw: unknown command 'zzz'"


@pytest.mark.parametrize(
    "argv",
    [
        ["ls", "-sax_root=gs://bucket/sax", "/sax/test"],  # saxutil's spelling
        ["--sax_root=gs://bucket/sax", "ls", "/sax/test"],  # as saxutil's aliases put it
    ],
)
def test_saxutils_sax_root_flag_says_the_gateway_reads_it(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # It was "unrecognized arguments" alone, which left a saxutil user guessing.
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "saxgw reaches Sax through a gateway, which reads SAX_ROOT itself: name the gateway "
        "with --gateway HOST:PORT (saxutil's --sax_root has no use here)."
    )


@pytest.mark.parametrize(
    ("typed", "suggested"),
    [
        ("bogus", "saxgw: unknown command 'bogus'"),  # was "; did you mean ops?"
        ("list", "saxgw: unknown command 'list'; did you mean ls?"),  # was "ls or publish or wait"
        ("start", "saxgw: unknown command 'start'; did you mean stats?"),  # was "... or setacl"
        ("envoy", "saxgw: unknown command 'envoy'; did you mean envoy-config?"),  # its start
        ("publsh", "saxgw: unknown command 'publsh'; did you mean publish?"),
    ],
)
def test_only_close_commands_are_suggested(
    typed: str, suggested: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parser().parse_args([typed])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-2] == suggested


@pytest.mark.parametrize(
    ("argv", "command", "extra"),
    [
        (["unpublish", "/sax/test/lm", "extra"], "unpublish", "extra"),
        (["ls", "/sax/test", "a", "b"], "ls", "a b"),
        (["--gateway", "h:1", "wait", "/sax/test/lm", "1", "2"], "wait", "2"),
    ],
)
def test_an_argument_too_many_is_the_commands_usage_error(
    argv: list[str], command: str, extra: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The top level's usage ("saxgw [-h] ... COMMAND ...") and "saxgw: error:" said nothing
    # of the command whose arguments were wrong.
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: saxgw {command} [-h] ")
    assert err.splitlines()[-1] == f"saxgw {command}: error: unrecognized arguments: {extra}"


def _help(*command: str) -> str:
    out = io.StringIO()
    sub = parser()
    for name in command:
        sub = next(a for a in sub._actions if isinstance(a, argparse._SubParsersAction)).choices[
            name
        ]
    sub.print_help(out)
    return " ".join(out.getvalue().split())


def test_help_shows_defaults() -> None:
    up = _help("up")
    for shown in (
        "--port PORT public HTTP/JSON + gRPC port (Envoy) (default: 8888)",
        "--cell CELL the embedded cell's ID (default: /sax/test)",
        "--admin-port ADMIN_PORT the embedded cell's Sax admin port (default: 10000)",
        "(default: 60.0)",
        # Lists of ports as they are typed, not as Python prints a list.
        "one gateway process each (default: 50051)",
        "one embedded Sax model server each (default: 10001)",
        # Every flag of up says what it is for.
        "--envoy-admin-port ENVOY_ADMIN_PORT Envoy's admin port (loopback only) (default: 9901)",
    ):
        assert shown in up, shown
    ls = _help("ls")
    assert "(default: localhost:8888)" in ls
    assert "(default: None)" not in ls and "(default: False)" not in ls
    # A --no-x flag stores False; "(default: True)" beside it would read as if it were on.
    assert "--no-metrics no per-call metrics (to measure what they cost) --" in up
    assert "(default: True)" not in up


class _CellsStub:
    """ListCells and GetStats of a gateway in front of a healthy cell and a dead one."""

    class Down(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.UNAVAILABLE

        def details(self) -> str:
            return "the admin server of cell /sax/dead at 127.0.0.1:1 is unreachable"

    def ListCells(
        self, request: pb.ListCellsRequest, timeout: float | None
    ) -> pb.ListCellsResponse:
        return pb.ListCellsResponse(cells=["/sax/dead", "/sax/test"])

    def GetStats(self, request: pb.GetStatsRequest, timeout: float | None) -> pb.GetStatsResponse:
        if request.name == "/sax/dead":
            raise self.Down()
        return pb.GetStatsResponse(
            server_types=[pb.ServerTypeStat(chip_type="CPU", chip_topology="1", replicas=1)],
            servers_by_model_path={"p.M": 1},
        )


@pytest.mark.parametrize("as_json", [False, True])
def test_stats_of_every_cell_survives_a_dead_one(
    as_json: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    # One cell whose admin is gone (a leftover directory under SAX_ROOT) failed the whole
    # `saxgw stats`, and showed nothing of the cells that answered.
    out = io.StringIO()
    stub = cast(gateway_pb2_grpc.SaxGatewayStub, _CellsStub())
    session = _common.Session(stub=stub, timeout=None, json=as_json, out=out)
    with pytest.raises(_common.Incomplete):
        admin.stats.run(session, argparse.Namespace(id=None))
    if as_json:
        shown = json.loads(out.getvalue())
        assert shown["/sax/test"]["servers_by_model_path"] == {"p.M": 1}
        assert shown["/sax/dead"] == {
            "error": {
                "code": 14,  # as the HTTP API's error bodies number it
                "message": "the admin server of cell /sax/dead at 127.0.0.1:1 is unreachable",
            }
        }
    else:
        assert "/sax/test  CPU        1              1" in out.getvalue()
        assert "/sax/test  p.M         1" in out.getvalue()
    err = capsys.readouterr().err
    if as_json:  # errors as JSON on stderr too: was a text line
        assert json.loads(err) == {
            "name": "/sax/dead",
            "code": 14,
            "message": "the admin server of cell /sax/dead at 127.0.0.1:1 is unreachable",
        }
    else:
        assert err == (
            "saxgw: /sax/dead: UNAVAILABLE: the admin server of cell /sax/dead at 127.0.0.1:1 "
            "is unreachable\n"
        )


class _ForgingStub(_CellsStub):
    """A dead cell whose admin answers in words of its own: escapes and a line break."""

    class Down(_CellsStub.Down):
        def details(self) -> str:
            return "boom \x1b]0;TITLE\x07\nsaxgw: /sax/test: OK"


def test_stats_of_every_cell_escapes_what_a_failing_cell_says(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Printed raw, a cell's error set the terminal's title and forged a `saxgw:` line, where
    # `saxgw stats CELL` and `ls CELL` escape the same text.
    stub = cast(gateway_pb2_grpc.SaxGatewayStub, _ForgingStub())
    session = _common.Session(stub=stub, timeout=None, json=False, out=io.StringIO())
    with pytest.raises(_common.Incomplete):
        admin.stats.run(session, argparse.Namespace(id=None))
    assert capsys.readouterr().err == (
        "saxgw: /sax/dead: UNAVAILABLE: boom \\u001b]0;TITLE\\u0007\\nsaxgw: /sax/test: OK\n"
    )


def _commands_of(grammar: argparse.ArgumentParser) -> list[str]:
    [sub] = [a for a in grammar._actions if isinstance(a, argparse._SubParsersAction)]
    return list(sub.choices)


def test_the_families_table_names_what_each_family_registers() -> None:
    # `saxgw CMD` loads CMD's family alone, found in _families.FAMILIES: a command that table
    # lacks would be missing from its own grammar.
    for family, commands in FAMILIES.items():
        grammar = parser([commands[0]])
        assert families_for([commands[0]]) == [family]
        assert _commands_of(grammar) == list(commands), family
    everything = [c for commands in FAMILIES.values() for c in commands]
    assert _commands_of(parser()) == everything
    assert _commands_of(parser(["--help"])) == everything
    assert _commands_of(parser(["lss"])) == everything  # misspelt: "did you mean" needs all
    assert families_for(["--gateway", "up", "ls"]) == ["run", "admin"]  # a value that is one


def test_a_client_command_loads_neither_the_servers_nor_the_cell() -> None:
    # Every family's imports made `saxgw ls` take 0.4 s, half of it for modules it never used.
    code = (
        "import sys\n"
        "from gateway.cli.main import parser\n"
        "parser(['--gateway', '127.0.0.1:1', 'ls', '/sax/test'])\n"
        "print(sorted(m for m in sys.modules if m.startswith(('gateway.service', 'gateway.cell',"
        " 'gateway.launch', 'gateway.cli.run', 'gateway.cli.envoy_config'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "[]\n", done.stdout
