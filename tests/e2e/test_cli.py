"""`saxgw` client commands run as subprocesses against the stack, over gRPC through Envoy."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from gateway.cell.models._hashing import unit_floats
from gateway.cell.models.base import ExtraInputs
from gateway.cell.models.media import TestAudio, TestVision
from gateway.cell.models.random_lm import MODEL_PATH as RANDOM_LM
from gateway.cli._numbers import number
from gateway.cli.main import main, parser
from gateway.common.results import Box
from gateway.launch.processes import free_port
from gateway.launch.stack import Stack
from tests.e2e._access_log import access_log_line_after, access_log_size
from tests.e2e._published import (
    IMAGE,
    TEST_AUDIO,
    TEST_CUSTOM,
    TEST_LM,
    TEST_VISION,
    publish_body,
    published,
    wav,
)

LM = "/sax/test/cli-lm"
ECHO = "/sax/test/cli-echo"
VISION = "/sax/test/cli-vision"
AUDIO = "/sax/test/cli-audio"
NONE = ExtraInputs()
_GENERATE_STREAM = "/saxgateway.v1.SaxGateway/GenerateStream"


@pytest.fixture(scope="module", autouse=True)
def models(stack: Stack) -> Iterator[None]:
    with (
        published(stack, LM, TEST_LM, {"text": "one two three", "delay_ms": "150"}),
        published(stack, ECHO, TEST_LM),
        published(stack, VISION, TEST_VISION),
        published(stack, AUDIO, TEST_AUDIO),
    ):
        yield


def _argv(stack: Stack, command: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "gateway.cli", command, "--gateway", stack.grpc_address, *args]


def saxgw(
    stack: Stack, command: str, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs one command to completion."""
    return subprocess.run(
        _argv(stack, command, *args), input=stdin, capture_output=True, text=True, timeout=30
    )


def ok(stack: Stack, command: str, *args: str, stdin: str | None = None) -> str:
    done = saxgw(stack, command, *args, stdin=stdin)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


def columns(output: str) -> list[list[str]]:
    """A printed table, split into cells."""
    return [re.split(r" {2,}", line) for line in output.splitlines()]


def _address(stack: Stack, model: str) -> str:
    [address] = _addresses(stack, model)
    return address


def _addresses(stack: Stack, model: str, count: int | None = None) -> list[str]:
    """The model's serving addresses; with ``count``, once that many serve (within 20 s)."""
    give_up = time.monotonic() + 20
    while True:
        info = httpx.get(f"{stack.http_url}/v1{model}").json()["model"]
        addresses = [str(a) for a in info["addresses"]]
        if count is None or len(addresses) == count or time.monotonic() > give_up:
            return addresses
        time.sleep(0.1)


def test_publish_ls_wait_update_unpublish(stack: Stack) -> None:
    model = "/sax/test/cli-pub"
    assert ok(stack, "publish", model, TEST_LM, "None", "1", "text=hi there") == (
        f"published {model}: {TEST_LM}, checkpoint None, 1 replica(s)\n"
    )
    try:
        assert ok(stack, "wait", model, "1") == f"{model}: 1 replica(s) ready\n"
        # saxutil's tables: cells and models numbered, by bare name.
        cells = columns(ok(stack, "ls"))
        assert cells[0] == ["#", "CELL"]
        assert "test" in [name for _, name in cells[1:]]
        assert [index for index, _ in cells[1:]] == [str(i) for i in range(len(cells) - 1)]
        assert ok(stack, "ls", "/sax") == ok(stack, "ls")  # as `saxutil ls /sax`
        models = columns(ok(stack, "ls", "/sax/test"))
        assert models[0] == ["#", "MODEL ID"]
        names = [name for _, name in models[1:]]
        assert "cli-pub" in names and names == sorted(names)
        assert ok(stack, "ls", model) == (
            "MODEL    MODEL PATH                  CHECKPOINT PATH  # OF REPLICAS  "
            "(SELECTED) REPLICAADDRESS  METHODS\n"
            f"cli-pub  {TEST_LM}  None             1              "
            f"{_address(stack, model):<25}  "
            "lm.embed, lm.generate, lm.generate_stream, lm.gradient, lm.score\n"
            "\n"
            "METHOD  ACL\n"  # saxutil's table of method ACLs: none yet
            "\n"
            "REQUESTED REPLICAS  OVERRIDES      LOAD ERROR\n"
            "1                   text=hi there\n"
        )
        assert ok(stack, "update", model, "--checkpoint", "/ckpt/2", "--replicas", "0") == (
            f"updated {model}: {TEST_LM}, checkpoint /ckpt/2, 0 replica(s), "
            "overrides text=hi there\n"
        )
    finally:
        assert ok(stack, "unpublish", model) == f"unpublished {model}\n"
    gone = saxgw(stack, "ls", model)
    assert gone.returncode == 1
    assert gone.stdout == ""
    assert gone.stderr.splitlines()[0].startswith("saxgw: NOT_FOUND: ")


def test_ls_csv_prints_saxutils_csv(stack: Stack) -> None:
    # `saxutil ls -csv` is how scripts read a cell: "# " and the headers, then a line a row.
    # saxgw refused the flag (exit 2), so those scripts broke on the way to the gateway.
    ok(stack, "wait", ECHO)
    assert ok(stack, "ls", "-csv").splitlines()[0] == "# #,Cell"
    assert "0,test" in ok(stack, "ls", "--csv", "/sax").splitlines()
    models = ok(stack, "ls", "-csv", "/sax/test").splitlines()
    assert models[0] == "# #,Model ID"
    names = [line.split(",")[1] for line in models[1:]]
    assert "cli-echo" in names and names == sorted(names)
    assert [line.split(",")[0] for line in models[1:]] == [str(i) for i in range(len(names))]
    assert ok(stack, "ls", "-csv", ECHO) == (
        "# Model,Model Path,Checkpoint Path,# of Replicas,(Selected) ReplicaAddress,Methods\n"
        f"cli-echo,{TEST_LM},None,1,{_address(stack, ECHO)},"
        '"lm.embed, lm.generate, lm.generate_stream, lm.gradient, lm.score"\n'
        "# Method,ACL\n"
        "# Requested Replicas,Overrides,Load Error\n"
        "1,,\n"
    )


def test_ls_details_and_acls_choose_tables_as_saxutils_flags_do(stack: Stack) -> None:
    # saxutil's ls takes -details (a cell's models with their methods, when given) and
    # -acls=false / -details=false (a model's tables left out); saxgw refused them (exit 2).
    ok(stack, "wait", ECHO)
    methods = "lm.embed, lm.generate, lm.generate_stream, lm.gradient, lm.score"
    models = ok(stack, "ls", "-csv", "-details", "/sax/test").splitlines()
    assert models[0] == "# #,Model ID,Methods"
    assert any(line.endswith(f',cli-echo,"{methods}"') for line in models[1:]), models
    assert ok(stack, "ls", "-csv", "-details=false", "/sax/test") == ok(
        stack, "ls", "-csv", "/sax/test"
    )
    assert ok(stack, "ls", "-csv", "-acls=false", ECHO) == (
        "# Model,Model Path,Checkpoint Path,# of Replicas,(Selected) ReplicaAddress,Methods\n"
        f'cli-echo,{TEST_LM},None,1,{_address(stack, ECHO)},"{methods}"\n'
        "# Requested Replicas,Overrides,Load Error\n"
        "1,,\n"
    )
    assert ok(stack, "ls", "-csv", "-details=false", ECHO) == "# Method,ACL\n"
    assert ok(stack, "ls", "--no-details", "--acls", ECHO) == "METHOD  ACL\n"
    nothing = saxgw(stack, "ls", "-details=false", "-acls=false", ECHO)
    assert (nothing.returncode, nothing.stdout) == (2, "")
    assert "leave nothing to print" in nothing.stderr


def test_a_wait_for_more_replicas_than_published_says_how_many_and_why(stack: Stack) -> None:
    # It ended with the admin's "admin WaitForReady for /sax/test did not finish within its
    # deadline", which named neither the model, nor how many replicas were up, nor why.
    ok(stack, "wait", ECHO)
    done = saxgw(stack, "wait", ECHO, "2", "--timeout", "1.5s")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.splitlines() == [
        f"saxgw: DEADLINE_EXCEEDED: {ECHO}: 1 of 2 replica(s) ready when the wait's deadline "
        "passed; it is published with 1 replica(s), so 2 can be ready only once its replicas "
        "are updated",
        f"hint: `saxgw ls {ECHO}` shows its replicas and any load error (none active: `saxgw "
        f"stats /sax/test` shows the model paths its servers serve); `saxgw update {ECHO} "
        "--replicas N` asks for more",
    ]


def test_update_checkpoint_as_saxutil_names_it(stack: Stack) -> None:
    # `saxutil update_checkpoint ID CHECKPOINT` reloads a model from a new checkpoint and
    # keeps the rest; saxgw had no such command ("unknown command", exit 2).
    model = "/sax/test/cli-ckpt"
    with published(stack, model, TEST_LM, {"text": "hi there"}):
        assert ok(stack, "update_checkpoint", model, "/ckpt/3") == (
            f"updated {model}: {TEST_LM}, checkpoint /ckpt/3, 1 replica(s), "
            "overrides text=hi there\n"
        )
        bad = saxgw(stack, "update_checkpoint", model, "bad path")
        assert (bad.returncode, bad.stdout) == (1, "")
        assert bad.stderr.startswith("saxgw: INVALID_ARGUMENT: checkpoint: ")
        assert saxgw(stack, "update_checkpoint", model).returncode == 2


def test_lm_generate_prints_a_table(stack: Stack) -> None:
    assert columns(ok(stack, "lm.generate", LM, "q")) == [
        ["TEXT", "SCORE"],
        ["one two three", "-0.3"],
    ]


def test_lm_generate_reads_stdin_and_sends_extra_inputs(stack: Stack) -> None:
    out = ok(
        stack,
        "lm.generate",
        ECHO,
        "-",
        "--extra",
        "per_example_max_decode_steps=2",
        "stop=x",
        "--json",
        stdin="from stdin today",
    )
    assert json.loads(out) == {"texts": [{"text": "from stdin", "score": -0.2}]}


def test_lm_generate_stream_prints_tokens_as_they_arrive(stack: Stack) -> None:
    with subprocess.Popen(
        _argv(stack, "lm.generate", LM, "q", "--stream"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None
        first = os.read(proc.stdout.fileno(), 100)
        first_at = time.monotonic()
        rest = proc.stdout.read()
        ended_at = time.monotonic()
        assert proc.wait(timeout=10) == 0
    assert first == b"one"  # flushed alone: the next token is 150 ms away
    assert (first + rest).decode() == "one two three\n"
    assert ended_at - first_at > 0.2


def test_lm_generate_stream_lists_its_samples_best_first_as_without_it(stack: Stack) -> None:
    # The stream's final texts come by sample index; its table listed them so, where the
    # same call without --stream lists them best first.
    model = "/sax/test/cli-random"
    with published(stack, model, RANDOM_LM):
        steps = ("--extra", "per_example_max_decode_steps=4")
        plain = columns(ok(stack, "lm.generate", model, "hi", *steps))
        streamed = ok(stack, "lm.generate", model, "hi", "--stream", *steps)
    table = columns(streamed.split("\n\n", 1)[1])  # after the first sample, streamed
    scores = [float(score) for _, score in plain[1:]]
    assert len(scores) > 1 and scores == sorted(scores, reverse=True)
    assert table == plain


def test_lm_generate_stream_reads_the_call_to_its_status(stack: Stack) -> None:
    # Dropped at its last message, the call was cancelled: the gateway's metrics and Envoy's
    # access log counted every `saxgw lm.generate --stream` that worked as CANCELLED.
    start, started = access_log_size(stack), datetime.now(UTC)
    assert ok(stack, "lm.generate", LM, "q", "--stream") == "one two three\n"

    def this_call(line: dict[str, object]) -> bool:
        # Envoy writes its log once a second: a stream of an earlier test can land after
        # `start`. This call began after `started` (its CLI takes far longer to start than
        # the millisecond the log's time is truncated to).
        began = datetime.fromisoformat(str(line["time"]).replace("Z", "+00:00"))
        return line["grpc_method"] == _GENERATE_STREAM and began >= started

    line = access_log_line_after(stack, start, this_call)
    assert (line["status"], line["grpc_status"], line["response_flags"]) == (200, 0, "-")


def test_lm_generate_stream_that_fails_prints_nothing_spurious(stack: Stack) -> None:
    # Before the first token: stdout stays empty (it was one bare newline).
    done = saxgw(stack, "lm.generate", "/sax/test/nosuch", "q", "--stream")
    assert (done.returncode, done.stdout) == (1, "")
    message, hint = done.stderr.splitlines()
    assert message.startswith("saxgw: NOT_FOUND: ") and "/sax/test/nosuch" in message
    assert hint.startswith("hint: list published models with `saxgw ls /sax/test`")
    # Mid-stream: the text so far, its line ended (so the error starts a line of its own).
    model = "/sax/test/cli-fails"
    with published(stack, model, TEST_LM, {"text": "one two three", "fail_after_tokens": "2"}):
        done = saxgw(stack, "lm.generate", model, "q", "--stream")
    assert (done.returncode, done.stdout) == (1, "one two\n")
    assert done.stderr.splitlines()[0] == (
        "saxgw: UNAVAILABLE: TestLM failed after 2 tokens (fail_after_tokens): Unavailable"
    )


def test_lm_score_and_embed(stack: Stack) -> None:
    assert columns(ok(stack, "lm.score", LM, "prefix", "a b", "c")) == [
        ["SUFFIX", "LOGP"],
        ["a b", "-0.2"],
        ["c", "-0.1"],
    ]
    vector = unit_floats(8, TEST_LM, "embed me")
    # Shortest form: at most the last unit of a double's noise is left out.
    printed = [float(v) for v in ok(stack, "lm.embed", LM, "embed me").split()]
    assert printed == pytest.approx(vector, rel=3e-16, abs=0)
    as_json = json.loads(ok(stack, "lm.embed", LM, "embed me", "--json"))
    assert as_json["embedding"] == pytest.approx(vector, rel=3e-16, abs=0)


def test_vm_classify_a_file(stack: Stack, tmp_path: Path) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(IMAGE)
    labels = asyncio.run(TestVision().classify(IMAGE, NONE))
    rows = columns(ok(stack, "vm.classify", VISION, str(image)))
    assert rows == [["TEXT", "SCORE"]] + [[h.text, number(h.score)] for h in labels]
    as_json = json.loads(ok(stack, "vm.classify", VISION, str(image), "--json"))
    assert as_json == {"texts": [{"text": h.text, "score": h.score} for h in labels]}


def test_vm_detect_prints_masks_of_boxes_of_interest(stack: Stack, tmp_path: Path) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(IMAGE)
    vision = TestVision()
    [plain] = asyncio.run(vision.detect(IMAGE, ["cat"], [], NONE))
    [masked] = asyncio.run(vision.detect(IMAGE, [], [(0.5, 0.25, 0.5, 0.125)], NONE))
    head = ["LABEL", "SCORE", "CX", "CY", "W", "H", "MASK"]

    def row(box: Box) -> list[str]:
        numbers = [number(v) for v in (box.score, box.cx, box.cy, box.w, box.h)]
        return [box.text, *numbers, f"{box.mask_height},{box.mask_width}"]

    assert columns(ok(stack, "vm.detect", VISION, str(image), "cat")) == [head, row(plain)]
    printed = ok(stack, "vm.detect", VISION, str(image), "--box", "0.5,0.25,0.5,0.125")
    assert columns(printed) == [head, row(masked)] and masked.mask_height > 0
    refused = saxgw(stack, "vm.detect", VISION, str(image), "--box", "1,2,3")
    assert refused.returncode == 2
    assert "expected CX,CY,W,H (four numbers), got '1,2,3'" in refused.stderr


def test_vm_generate_writes_images(stack: Stack, tmp_path: Path) -> None:
    out = tmp_path / "images"
    [(png, score)] = asyncio.run(TestVision().text_to_image("a red boat", NONE))
    rows = columns(ok(stack, "vm.generate", VISION, "a red boat", "--out", str(out)))
    path = out / "image_0.png"
    assert rows == [["FILE", "BYTES", "SCORE"], [str(path), str(len(png)), f"{score:.6g}"]]
    assert path.read_bytes() == png


def test_vm_image_to_image_text_and_image_to_image_and_video_to_text(
    stack: Stack, tmp_path: Path
) -> None:
    image = tmp_path / "in.png"
    image.write_bytes(IMAGE)
    vision = TestVision()
    [(png, score)] = asyncio.run(vision.image_to_image(IMAGE, NONE))
    out = tmp_path / "images"
    rows = columns(ok(stack, "vm.image_to_image", VISION, str(image), str(out)))
    path = out / "image_0.png"
    assert rows == [["FILE", "BYTES", "SCORE"], [str(path), str(len(png)), number(score)]]
    assert path.read_bytes() == png
    [(both, _)] = asyncio.run(vision.text_and_image_to_image("a red boat", IMAGE, NONE))
    argv = _argv(stack, "vm.text_and_image_to_image", VISION, "a red boat", str(image), "-")
    raw = subprocess.run(argv, capture_output=True, timeout=30)
    assert (raw.returncode, raw.stdout, raw.stderr) == (0, both, b"")
    frames = [IMAGE, b"second frame"]
    (tmp_path / "second").write_bytes(frames[1])
    [caption] = asyncio.run(vision.video_to_text(frames, "Look:", NONE))
    second = str(tmp_path / "second")
    printed = ok(stack, "vm.video_to_text", VISION, str(image), second, "--prompt", "Look:")
    assert columns(printed) == [["TEXT", "SCORE"], [caption.text, number(caption.score)]]


def test_vm_video_to_token_and_token_to_video(stack: Stack, tmp_path: Path) -> None:
    vision, frames = TestVision(), [IMAGE, b"second frame"]
    paths = [tmp_path / "first", tmp_path / "second"]
    for path, frame in zip(paths, frames, strict=True):
        path.write_bytes(frame)
    tokens = asyncio.run(vision.video_to_token(frames, NONE))
    printed = ok(stack, "vm.video_to_token", VISION, *map(str, paths))
    assert [float(word) for word in printed.split()] == tokens  # every digit: data
    as_json = json.loads(ok(stack, "vm.video_to_token", VISION, *map(str, paths), "--json"))
    assert as_json == {"tokens": tokens}
    # What vm.video_to_token prints is what vm.token_to_video reads, from a file or stdin:
    # the video of the model's own tokens (printed as scores are, a token moved by one unit
    # in its last place, and the video made of them was another).
    video = asyncio.run(vision.token_to_video(tokens, NONE))
    assert len(video) == 2
    (tmp_path / "tokens").write_text(printed)
    out = tmp_path / "video"
    rows = columns(ok(stack, "vm.token_to_video", VISION, str(tmp_path / "tokens"), str(out)))
    written = [out / f"frame_{i}.png" for i in range(len(video))]
    assert rows == [
        ["FILE", "BYTES"],
        *([str(path), str(len(f))] for path, f in zip(written, video, strict=True)),
    ]
    assert [path.read_bytes() for path in written] == video
    argv = _argv(stack, "vm.token_to_video", VISION, "-", "-")
    raw = subprocess.run(argv, input=printed.encode(), capture_output=True, timeout=30)
    assert (raw.returncode, raw.stdout, raw.stderr) == (0, b"".join(video), b"")
    # A word that is no number: refused before any call, naming it.
    bad = saxgw(stack, "vm.token_to_video", VISION, "-", str(out), stdin="0.5, 1e3 seven")
    assert (bad.returncode, bad.stdout) == (1, "")
    assert bad.stderr == (
        "saxgw: TOKENS_FILE stdin: 'seven' is not a number\n"
        "hint: TOKENS_FILE holds numbers (as vm.video_to_token prints them); - reads stdin\n"
    )


def test_cm_custom_calls_the_method_the_model_defines(stack: Stack, tmp_path: Path) -> None:
    data = bytes(range(256))
    (tmp_path / "in").write_bytes(data)
    with published(stack, "/sax/test/cli-custom", TEST_CUSTOM) as model:
        # The output's bytes as they are (no newline), from a file, from stdin, or from none.
        for args, given, echoed in [
            ((str(tmp_path / "in"),), None, data),
            (("-",), b"\0\n\1", b"\0\n\1"),
            ((), None, b""),
        ]:
            argv = _argv(stack, "cm.custom", model, "echo", *args)
            done = subprocess.run(argv, input=given, capture_output=True, timeout=30)
            assert (done.returncode, done.stdout, done.stderr) == (0, echoed, b""), args
        as_json = json.loads(ok(stack, "cm.custom", model, "echo", "-", "--json", stdin="hi"))
        assert as_json == {"response": "aGk="}
        refused = saxgw(stack, "cm.custom", model, "nope")
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == (
        f"saxgw: INVALID_ARGUMENT: {model} ({TEST_CUSTOM}) does not support nope; it supports "
        "echo: InvalidArgument\n"
        "hint: check the arguments (`saxgw cm.custom --help`) and the model's methods "
        f"(`saxgw ls {model}`)\n"
    )


def test_am_recognize_a_file(stack: Stack, tmp_path: Path) -> None:
    clip = tmp_path / "speech.wav"
    clip.write_bytes(wav(1.0))
    [transcript] = asyncio.run(TestAudio().recognize(clip.read_bytes(), NONE))
    assert columns(ok(stack, "am.recognize", AUDIO, str(clip))) == [
        ["TEXT", "SCORE"],
        [transcript.text, "-0.5"],
    ]


def test_stats(stack: Stack) -> None:
    servers = str(len(_model_server_ports(stack)))
    out = ok(stack, "stats", "/sax/test")
    servers_table, paths_table = out.split("\n\n")
    assert columns(servers_table) == [
        ["NAME", "CHIP TYPE", "CHIP TOPOLOGY", "SERVERS"],
        ["/sax/test", "CHIP_TYPE_CPU", "CHIP_TOPOLOGY_1", servers],
    ]
    assert ["/sax/test", TEST_LM, servers] in columns(paths_table)
    as_json = json.loads(ok(stack, "stats", LM, "--json"))
    assert as_json[LM]["server_types"] == [
        {"chip_type": "CHIP_TYPE_CPU", "chip_topology": "CHIP_TOPOLOGY_1", "replicas": 1}
    ]


def test_acl_round_trip(stack: Stack) -> None:
    assert ok(stack, "getacl", LM) == "(no admin ACL)\n\nMETHOD  ACL\n"
    assert ok(stack, "setacl", LM, "group-a") == f"{LM}: ACL set to 'group-a'\n"
    assert json.loads(ok(stack, "getacl", LM, "--json")) == {
        "name": LM,
        "acl": "group-a",
        "method_acls": {},
    }
    assert ok(stack, "setacl", LM, "") == f"{LM}: ACL cleared\n"
    assert ok(stack, "getacl", "/sax/test") == "(no ACL)\n"


def test_method_acl_round_trip(stack: Stack) -> None:
    # As `saxutil setacl MODEL METHOD ACL`. Without credentials (this stack has none) the
    # caller is anonymous, whom a method with an ACL refuses.
    model = "/sax/test/cli-acl"
    with published(stack, model, TEST_LM, {"text": "ok"}):
        assert ok(stack, "lm.generate", model, "q", "--terse") == "ok\n"
        set_ = ok(stack, "setacl", model, "lm.generate", "acl/team-a")
        assert set_ == f"{model} lm.generate: ACL set to 'acl/team-a'\n"
        assert ok(stack, "setacl", model, "lm.score", "acl/all") == (
            f"{model} lm.score: ACL set to 'acl/all'\n"
        )
        # A flag between the arguments (an argparse usage error before).
        assert json.loads(ok(stack, "setacl", model, "--json", "lm.embed", "acl/x")) == {
            "name": model,
            "method": "lm.embed",
            "acl": "acl/x",
        }
        assert ok(stack, "setacl", model, "lm.embed", "--timeout", "10", "") == (
            f"{model} lm.embed: ACL cleared\n"
        )
        assert ok(stack, "getacl", model).splitlines() == [
            "(no admin ACL)",
            "",
            "METHOD       ACL",
            "lm.generate  acl/team-a",
            "lm.score     acl/all",
        ]
        assert json.loads(ok(stack, "getacl", model, "--json")) == {
            "name": model,
            "acl": "",
            "method_acls": {"lm.generate": "acl/team-a", "lm.score": "acl/all"},
        }
        # saxutil's `getacl MODEL METHOD` and `getacl MODEL all`.
        assert ok(stack, "getacl", model, "lm.generate") == "acl/team-a\n"
        assert ok(stack, "getacl", model, "lm.embed") == "(no ACL)\n"
        assert columns(ok(stack, "getacl", model, "all")) == [
            ["METHOD", "ACL"],
            ["lm.generate", "acl/team-a"],
            ["lm.score", "acl/all"],
        ]
        # A misspelt method said "(no ACL)", as if anyone could call it; setacl refuses it.
        typo = saxgw(stack, "getacl", model, "lm.generte")
        assert (typo.returncode, typo.stdout) == (2, "")
        assert typo.stderr.startswith(
            "saxgw getacl: error: 'lm.generte' is no method a model ACL can name: one of "
            "am.recognize, lm.embed, lm.generate, "
        )
        of_cell = saxgw(stack, "getacl", "/sax/test", "lm.generate")
        assert (of_cell.returncode, of_cell.stdout) == (2, "")
        assert of_cell.stderr == (
            "saxgw getacl: error: /sax/test is a cell: only a model's data methods have ACLs\n"
        )
        # `ls MODEL`: saxutil's row, then its METHOD/ACL table, then the gateway's extras.
        tables = ok(stack, "ls", model).split("\n\n")
        assert [columns(t) for t in tables[1:]] == [
            [["METHOD", "ACL"], ["lm.generate", "acl/team-a"], ["lm.score", "acl/all"]],
            [["REQUESTED REPLICAS", "OVERRIDES", "LOAD ERROR"], ["1", "text=ok"]],
        ]
        listed = json.loads(ok(stack, "ls", model, "--json"))
        assert listed["model"]["method_acls"] == {
            "lm.generate": "acl/team-a",
            "lm.score": "acl/all",
        }
        # The stack's two gateway processes: the one that did not make the change may answer
        # from the ACLs it read, for at most about two seconds (docs/security.md).
        refused = _until_exit(stack, 1, "lm.generate", model, "q", "--terse")
        assert refused.stdout == ""
        assert refused.stderr == (
            f"saxgw: PERMISSION_DENIED: lm.generate on {model} is limited to acl/team-a; "
            "client anonymous is not in it\n"
            f"hint: check the ACLs of the model and its methods with `saxgw getacl {model}`\n"
        )
        assert ok(stack, "setacl", model, "lm.generate", "") == (
            f"{model} lm.generate: ACL cleared\n"
        )
        assert _until_exit(stack, 0, "lm.generate", model, "q", "--terse").stdout == "ok\n"
        assert columns(ok(stack, "ls", model).split("\n\n")[1]) == [
            ["METHOD", "ACL"],
            ["lm.score", "acl/all"],
        ]
        # A name Sax keeps no ACL for, and a method of a cell: refused, naming the field.
        bad = saxgw(stack, "setacl", model, "lm.generat", "acl/team-a")
        assert bad.returncode == 1
        assert bad.stderr.startswith(
            "saxgw: INVALID_ARGUMENT: method: 'lm.generat' is not a valid method name for an "
            "ACL: one of am.recognize, lm.embed, lm.generate, "
        )
        cell = saxgw(stack, "setacl", "/sax/test", "lm.generate", "acl/team-a")
        assert cell.returncode == 1
        assert cell.stderr.startswith(
            "saxgw: INVALID_ARGUMENT: method: /sax/test is a cell: only a model's data methods "
            "have ACLs\n"
        )


def _until_exit(
    stack: Stack, status: int, command: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """Runs the command until it exits with ``status`` (within 10 s); returns that run."""
    give_up = time.monotonic() + 10
    while True:
        done = saxgw(stack, command, *args)
        if done.returncode == status or time.monotonic() > give_up:
            assert done.returncode == status, done.stderr
            return done
        time.sleep(0.2)


@contextmanager
def _children_get_default_sigint() -> Iterator[None]:
    """As a terminal starts a command: SIGINT at its default, even when this test runs under a
    parent that ignores SIGINT (`bash -c 'trap "" INT; make test'`), whose "ignore" children
    would inherit. exec resets a caught signal to its default, so this process catches SIGINT
    while it starts the child. (Not a ``preexec_fn``: it runs Python's fork handlers, and
    grpc's can wait on grpc threads of this process; one hung test_up for good.)"""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def test_watch_prints_addresses_until_ctrl_c(stack: Stack) -> None:
    with _children_get_default_sigint():
        # --timeout: a line that never comes ends the watch (and fails the test), not hangs it.
        watch = _argv(stack, "watch", LM, "--timeout", "30")
        proc = subprocess.Popen(watch, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with proc:
        assert proc.stdout is not None
        # As saxutil prints it: "Reset", then the addresses serving now.
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        proc.send_signal(signal.SIGINT)
        # 130, as a shell reports a command Ctrl-C ended (a loop of watches stops with it).
        assert proc.wait(timeout=10) == 130
        assert proc.stderr is not None and proc.stderr.read() == ""
    assert lines == ["Reset\n", f"+ {_address(stack, LM)}\n"]


def test_watch_prints_each_address_that_comes_and_goes(stack: Stack) -> None:
    model = "/sax/test/cli-watch"
    ok(stack, "publish", model, TEST_LM, "None", "1")
    try:
        ok(stack, "wait", model, "1")
        [first] = _addresses(stack, model)
        # --timeout: a line that never comes ends the watch (and fails the test), not hangs it.
        watch = _argv(stack, "watch", model, "--timeout", "30")
        proc = subprocess.Popen(watch, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with proc:
            assert proc.stdout is not None and proc.stderr is not None
            assert [proc.stdout.readline(), proc.stdout.readline()] == ["Reset\n", f"+ {first}\n"]
            ok(stack, "update", model, "--replicas", "2")  # the cell's second server loads it
            [second] = set(_addresses(stack, model, 2)) - {first}
            assert proc.stdout.readline() == f"+ {second}\n"
            ok(stack, "update", model, "--replicas", "1")  # and one of the two unloads it
            [left] = _addresses(stack, model, 1)
            [gone] = {first, second} - {left}
            assert proc.stdout.readline() == f"- {gone}\n"
            proc.terminate()
            assert proc.wait(timeout=10) == -signal.SIGTERM
            assert proc.stderr.read() == ""
    finally:
        ok(stack, "unpublish", model)


def test_unknown_model_fails_with_a_hint(stack: Stack) -> None:
    done = saxgw(stack, "lm.generate", "/sax/test/nosuch", "q")
    assert done.returncode == 1
    assert done.stdout == ""
    message, hint = done.stderr.splitlines()
    assert message.startswith("saxgw: NOT_FOUND: ") and "/sax/test/nosuch" in message
    assert hint == (
        "hint: list published models with `saxgw ls /sax/test`; "
        "publish with `saxgw publish /sax/test/nosuch MODEL_PATH CHECKPOINT REPLICAS`"
    )


def test_a_field_violation_is_said_once(stack: Stack) -> None:
    # The gateway's message is the violation's description: it was printed twice.
    done = saxgw(stack, "ls", "/sax/test/")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.splitlines() == [
        "saxgw: INVALID_ARGUMENT: cell ID '/sax/test/' should have the form /sax/<cell name>, "
        "such as /sax/test",
        "hint: fix the fields named above; `saxgw ls --help` shows the arguments",
    ]


def test_an_unknown_override_is_refused_at_publish(stack: Stack) -> None:
    # It was published, and `ls` showed bogus=1 among the overrides, which did nothing.
    model = "/sax/test/cli-bogus"
    done = saxgw(stack, "publish", model, TEST_LM, "None", "1", "text=hi", "bogus=1")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.splitlines() == [
        "saxgw: INVALID_ARGUMENT: unknown override 'bogus' for sax_gateway.testing.TestLM, "
        "which takes delay_ms, embedding_dim, fail_after_tokens, fail_code, fail_load, length, "
        "max_in_flight, num_samples, score, text: InvalidArgument",
        "hint: fix or leave out the override named above (docs/cell.md lists the overrides the "
        "embedded cell's models take)",
    ]
    listed = saxgw(stack, "ls", model)
    assert listed.returncode == 1
    assert listed.stderr.splitlines()[0] == (
        f"saxgw: NOT_FOUND: model {model} is not published: NotFound"
    )


def test_deadline_fails_with_a_hint(stack: Stack) -> None:
    done = saxgw(stack, "lm.generate", LM, "q", "--timeout", "0.2")  # 3 tokens x 150 ms
    assert done.returncode == 1
    assert done.stderr.splitlines()[0].startswith("saxgw: DEADLINE_EXCEEDED: ")
    assert done.stderr.splitlines()[-1] == (
        f"hint: raise --timeout, or check that `saxgw ls {LM}` shows active replicas"
        " (none: `saxgw stats /sax/test` shows the model paths its servers serve)"
    )


def test_verbose_logs_each_call_its_deadline_outcome_and_request_id(stack: Stack) -> None:
    # README: "-v/--verbose logs debug details to stderr". The client verbs logged nothing
    # with it: no line said which gateway and method a command called, nor the request ID
    # that finds the call in Envoy's access log and the gateway's log.
    generate = "/saxgateway.v1.SaxGateway/Generate"
    offset = access_log_size(stack)
    done = saxgw(stack, "lm.generate", "/sax/test/nosuch", "q", "-v", "--timeout", "5")
    assert (done.returncode, done.stdout) == (1, "")
    calling, ended, message, _ = done.stderr.splitlines()
    assert calling.endswith(f"calling {generate} at {stack.grpc_address}, deadline 5 s")
    ended_pattern = rf"{generate}: NOT_FOUND after \d+ ms, x-request-id ([0-9a-f-]{{36}})$"
    found = re.search(ended_pattern, ended)
    assert found, ended
    logged = access_log_line_after(stack, offset, lambda line: line["request_id"] == found[1])
    assert logged["grpc_status"] == 5  # NOT_FOUND
    assert message.startswith("saxgw: NOT_FOUND: ")

    done = saxgw(stack, "lm.generate", ECHO, "q", "--stream", "--verbose")
    assert done.returncode == 0, done.stderr
    calling, ended = done.stderr.splitlines()
    assert calling.endswith(f"calling {_GENERATE_STREAM} at {stack.grpc_address}")
    assert re.search(rf"{_GENERATE_STREAM}: OK after \d+ ms, x-request-id [0-9a-f-]{{36}}$", ended)
    assert ok(stack, "ls", "/sax/test") != ""  # without -v: nothing on stderr


def test_no_gateway_fails_with_a_hint() -> None:
    address = f"127.0.0.1:{free_port()}"
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "ls", "--gateway", address],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines()[0].startswith("saxgw: UNAVAILABLE: ")
    assert done.stderr.splitlines()[-1].startswith(
        f"hint: is a gateway listening on {address}? start one with `make up`"
    )


@pytest.mark.parametrize("address", ["", " ", "localhost:8888 "])
def test_a_gateway_address_that_is_no_address_is_a_usage_error(address: str) -> None:
    # "" went to grpc: "UNKNOWN: Failed to create channel", hinting at the gateway's log.
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "ls", "--gateway", address],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines()[-1] == (
        f"saxgw ls: error: argument --gateway: expected HOST:PORT, got {address!r}"
    )


@pytest.mark.parametrize(
    ("command", "model", "name", "kind"),
    [
        ("vm.embed", VISION, "IMAGE_FILE", "an image"),
        ("am.recognize", AUDIO, "AUDIO_FILE", "audio (e.g. WAV)"),
    ],
)
def test_a_file_that_cannot_be_sent_is_one_line_and_a_hint(
    stack: Stack, tmp_path: Path, command: str, model: str, name: str, kind: str
) -> None:
    # Were "[Errno 2] No such file ...", "[Errno 21] Is a directory ..." with no hint, and for
    # an empty file the gateway's "required: base64-encoded bytes in JSON".
    (tmp_path / "empty").write_bytes(b"")
    hint = f"hint: {name} is the path of a file holding {kind}; - reads it from stdin\n"
    for path, why in [
        (tmp_path / "nope", f"cannot read {name} {tmp_path / 'nope'}: No such file or directory"),
        (tmp_path, f"cannot read {name} {tmp_path}: Is a directory"),
        (tmp_path / "empty", f"{name} {tmp_path / 'empty'} is empty"),
    ]:
        done = saxgw(stack, command, model, str(path))
        assert (done.returncode, done.stdout, done.stderr) == (1, "", f"saxgw: {why}\n{hint}")
    done = saxgw(stack, command, model, "-", stdin="")
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        f"saxgw: {name} stdin is empty\n{hint}",
    )


def test_text_that_is_not_utf8_is_one_line_and_a_hint(stack: Stack) -> None:
    # Both were tracebacks (UnicodeDecodeError reading stdin, UnicodeEncodeError in protobuf).
    argv = _argv(stack, "lm.generate", ECHO, "-")
    raw = subprocess.run(argv, input=b"\xff\xfe caf\xe9", capture_output=True, timeout=30)
    assert (raw.returncode, raw.stdout, raw.stderr.decode()) == (
        1,
        b"",
        "saxgw: QUERY from stdin is not valid UTF-8 text (byte 0)\n"
        "hint: pipe UTF-8 text into `-`; images and audio go to vm.* and am.* as files\n",
    )
    argv = [*_argv(stack, "lm.generate", ECHO), os.fsdecode(b"caf\xe9")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        "saxgw: an argument is not valid UTF-8 text\n"
        "hint: give text arguments in UTF-8; binary inputs go in files\n",
    )


def test_unicode_prompts_from_argv_and_stdin(stack: Stack) -> None:
    prompt = "héllo 😀 世界"
    assert columns(ok(stack, "lm.generate", ECHO, prompt)) == [["TEXT", "SCORE"], [prompt, "-0.3"]]
    as_json = json.loads(ok(stack, "lm.generate", ECHO, "-", "--json", stdin=prompt))
    assert as_json == {"texts": [{"text": prompt, "score": -0.3}]}


def test_output_a_terminal_cannot_show_is_one_line_and_a_hint(stack: Stack) -> None:
    # Was a UnicodeEncodeError traceback on an ASCII-only stdout.
    ascii_only = {**os.environ, "PYTHONIOENCODING": "ascii"}
    argv = _argv(stack, "lm.generate", ECHO, "世界")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=ascii_only)
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        "saxgw: cannot print the output in ascii: it holds U+4E16\n"
        "hint: use a UTF-8 locale (LANG=C.UTF-8) or set PYTHONIOENCODING=utf-8\n",
    )


def test_json_prints_text_as_utf8(stack: Stack) -> None:
    # Was "h\\u00e9llo \\ud83d\\ude00 \\u4e16\\u754c": JSON escapes where the reader wants text.
    prompt = "héllo 😀 世界"
    expected = (
        f'{{\n  "texts": [\n    {{\n      "text": "{prompt}",\n      "score": -0.3\n'
        "    }\n  ]\n}\n"
    )
    assert ok(stack, "lm.generate", ECHO, prompt, "--json") == expected
    # The C locale with nothing else set: Python writes UTF-8 there (its UTF-8 mode).
    plain = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "PYTHONIO"))}
    argv = _argv(stack, "lm.generate", ECHO, prompt, "--json")
    done = subprocess.run(argv, capture_output=True, timeout=30, env={**plain, "LANG": "C"})
    assert (done.returncode, done.stdout.decode(), done.stderr) == (0, expected, b"")


def test_json_an_output_cannot_hold_is_escaped_not_refused(stack: Stack) -> None:
    ascii_only = {**os.environ, "PYTHONIOENCODING": "ascii"}
    prompt = "héllo 😀 世界"
    argv = _argv(stack, "lm.generate", ECHO, prompt, "--json")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=ascii_only)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.isascii()
    assert json.loads(done.stdout) == {"texts": [{"text": prompt, "score": -0.3}]}
    # Errors on stderr too: was "\\xe9" from stderr's backslashreplace, which is not JSON.
    argv = _argv(stack, "vm.embed", VISION, "/nonexistent/é.png", "--json")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=ascii_only)
    assert (done.returncode, done.stdout) == (1, "")
    assert json.loads(done.stderr)["message"] == (
        "cannot read IMAGE_FILE /nonexistent/é.png: No such file or directory"
    )


def test_a_closed_stdout_is_one_line_and_a_hint(stack: Stack) -> None:
    # `saxgw ls >&-` was an AttributeError traceback: Python has no sys.stdout then.
    for argv in (_argv(stack, "ls"), _argv(stack, "ls", "--json")):
        closed = ["sh", "-c", 'exec "$@" >&-', "sh", *argv]
        done = subprocess.run(closed, stderr=subprocess.PIPE, text=True, timeout=30)
        assert (done.returncode, done.stderr) == (
            1,
            "saxgw: stdout is closed: the result could not be printed; nothing was sent\n"
            "hint: to discard the output, send it to /dev/null (>/dev/null)\n",
        )


def test_a_closed_stdin_or_stderr_is_told_and_never_written_to_stdout(stack: Stack) -> None:
    # `saxgw lm.generate ID - <&-` was an AttributeError traceback (Python has no stdin then);
    # with stderr closed, the error body went to stdout (print's file=None), where a script
    # reads the data.
    closed_stdin = ["sh", "-c", 'exec "$@" <&-', "sh", *_argv(stack, "lm.generate", LM, "-")]
    done = subprocess.run(closed_stdin, capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        "saxgw: QUERY is -, but stdin is closed\nhint: pipe the text into - or give it\n",
    )
    argv = _argv(stack, "ls", "/sax/no-such-cell", "--json")
    closed_stderr = ["sh", "-c", 'exec "$@" 2>&-', "sh", *argv]
    done = subprocess.run(closed_stderr, stdout=subprocess.PIPE, text=True, timeout=30)
    assert (done.returncode, done.stdout) == (1, "")


def test_flags_that_do_not_fit_are_usage_errors(stack: Stack) -> None:
    # `--gateway :PORT` was sent to grpc, whose "host must not be empty" came back with a hint
    # to start a gateway; a client certificate without its key was an input error (exit 1).
    port = stack.grpc_address.rpartition(":")[2]
    no_host = saxgw(stack, "ls", "--gateway", f":{port}")
    assert (no_host.returncode, no_host.stdout) == (2, "")
    assert no_host.stderr.endswith(
        f"error: argument --gateway: expected HOST:PORT, got ':{port}': no host "
        f"(localhost:{port} is this machine)\n"
    )
    half = saxgw(stack, "ls", "--client-key", "/nonexistent.pem", "--json")
    assert (half.returncode, half.stdout, half.stderr) == (
        2,
        "",
        "saxgw ls: error: --client-cert and --client-key go together: give the certificate and "
        "its private key, both PEM files\n",
    )


def test_saxutils_one_dash_flags_and_extra_inputs(stack: Stack) -> None:
    # saxutil (Go's flag package) takes -stream, -extra=k:v,k:v, -n=N, -terse, -replicas=N
    # and -sax_timeout=DURATION before the arguments; each was a usage error (exit 2).
    steps = "-extra=per_example_max_decode_steps:2"
    assert ok(stack, "lm.generate", "-stream", steps, ECHO, "one two three") == "one two\n"
    assert ok(stack, "lm.generate", "-n=1", "-terse", LM, "q") == "one two three\n"
    # -n=-1 is every sample to saxutil, which limits only by an N above 0 (a usage error here).
    assert ok(stack, "lm.generate", "-n=-1", "-terse", LM, "q") == ok(
        stack, "lm.generate", "-terse", LM, "q"
    )
    # Go's flag package also takes a switch's value, as strconv.ParseBool spells it (scripts
    # pass -stream=$STREAM): a usage error here, "ignored explicit argument 'true'".
    assert ok(stack, "lm.generate", "-stream=true", steps, ECHO, "one two three") == "one two\n"
    assert ok(stack, "lm.generate", "-n=1", "-terse=T", "-stream=false", LM, "q") == (
        "one two three\n"
    )
    assert ok(stack, "lm.generate", "--terse=0", steps, ECHO, "one two three") == (
        "TEXT     SCORE\none two  -0.2\n"
    )
    assert ok(stack, "lm.generate", "-extra", "per_example_max_decode_steps:'1'", ECHO, "a b") == (
        "TEXT  SCORE\na b   -0.2\n"  # a quoted value is a string: not a number of steps
    )
    assert ok(stack, "lm.generate", "-extra", "per_example_max_decode_steps:1", ECHO, "a b") == (
        "TEXT  SCORE\na     -0.1\n"
    )
    assert ok(stack, "wait", "-sax_timeout=30s", LM) == f"{LM}: 1 replica(s) ready\n"
    assert ok(stack, "update", "-replicas=1", ECHO) == (
        f"updated {ECHO}: {TEST_LM}, checkpoint None, 1 replica(s), overrides none\n"
    )
    late = saxgw(stack, "lm.generate", "-sax_timeout=200ms", LM, "q")  # 3 tokens x 150 ms
    assert (late.returncode, late.stdout) == (1, "")
    assert late.stderr.startswith("saxgw: DEADLINE_EXCEEDED: ")
    both = saxgw(stack, "lm.generate", "-stream", "-n=1", LM, "q")
    assert (both.returncode, both.stdout, both.stderr) == (
        2,
        "",
        "saxgw lm.generate: error: -n and --terse print whole samples: "
        "they do not go with --stream\n",
    )


def test_vm_generate_takes_saxutils_output_dir(stack: Stack, tmp_path: Path) -> None:
    # `saxutil vm.generate ID TEXT OUTPUT_DIR`; `-` pipes the images to stdout. Both were
    # usage errors (saxgw wanted --out DIR).
    [(png, score)] = asyncio.run(TestVision().text_to_image("a red boat", NONE))
    out = tmp_path / "images"
    rows = columns(ok(stack, "vm.generate", VISION, "a red boat", str(out)))
    assert rows == [["FILE", "BYTES", "SCORE"], [str(out / "image_0.png"), str(len(png)), "-0.5"]]
    assert score == -0.5
    raw = subprocess.run(
        _argv(stack, "vm.generate", VISION, "a red boat", "-"), capture_output=True, timeout=30
    )
    assert (raw.returncode, raw.stdout, raw.stderr) == (0, png, b"")
    (tmp_path / "file").write_text("")
    done = saxgw(stack, "vm.generate", VISION, "a red boat", str(tmp_path / "file"))
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        f"saxgw: OUTPUT_DIR {tmp_path / 'file'} is not a directory\n"
        "hint: give a directory, or - for stdout\n",
    )
    done = saxgw(stack, "vm.generate", VISION, "a red boat")
    assert (done.returncode, done.stdout, done.stderr) == (
        2,
        "",
        "saxgw vm.generate: error: give one OUTPUT_DIR (or --out DIR); "
        "- writes the images to stdout\n",
    )


def test_stats_of_sax_is_every_cell(stack: Stack) -> None:
    # As `ls /sax` lists every cell; was INVALID_ARGUMENT.
    assert ok(stack, "stats", "/sax") == ok(stack, "stats")


def test_json_errors_are_one_json_line_on_stderr(stack: Stack) -> None:
    done = saxgw(stack, "ls", "/sax/test/nosuch", "--json")
    assert (done.returncode, done.stdout) == (1, "")
    [line] = done.stderr.splitlines()
    error = json.loads(line)
    [info] = error.pop("details")
    assert info["@type"] == "type.googleapis.com/google.rpc.RequestInfo"
    assert error == {
        "code": 5,
        "message": "model /sax/test/nosuch is not published: NotFound",
        "hint": "list published models with `saxgw ls /sax/test`; "
        "publish with `saxgw publish /sax/test/nosuch MODEL_PATH CHECKPOINT REPLICAS`",
    }
    done = saxgw(stack, "vm.embed", VISION, "/nonexistent.png", "--json")
    assert (done.returncode, done.stdout) == (1, "")
    assert json.loads(done.stderr) == {
        "code": 3,
        "message": "cannot read IMAGE_FILE /nonexistent.png: No such file or directory",
        "details": [],
        "hint": "IMAGE_FILE is the path of a file holding an image; - reads it from stdin",
    }


def test_watch_ends_quietly_when_its_reader_leaves(stack: Stack) -> None:
    # `saxgw watch ID | head -1`: watch wrote nothing more, so it never saw the closed pipe
    # and ran for ever.
    proc = subprocess.Popen(
        _argv(stack, "watch", LM, "--json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    with proc:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        proc.stdout.close()  # as head does after one line
        assert proc.wait(timeout=10) == 1
        assert proc.stderr.read() == b""
    assert json.loads(line) == {"addresses": [_address(stack, LM)]}


def test_a_stream_ends_when_its_reader_leaves(stack: Stack) -> None:
    # `saxgw lm.generate ID Q --stream | head -1`: the stream noticed the closed pipe only at
    # its next write (the model's next token), the model decoding on for nobody meanwhile.
    slow = "/sax/test/cli-slow-stream"
    body = publish_body(slow, TEST_LM, text="one two three four five six", delay_ms="2000")
    with httpx.Client(base_url=stack.http_url, timeout=30) as http:
        assert http.post("/publish", json=body).status_code == 200
        assert http.post("/wait_for_ready", json={"model": slow}).status_code == 200
        try:
            proc = subprocess.Popen(
                _argv(stack, "lm.generate", slow, "q", "--stream", "--json"),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            with proc:
                assert proc.stdout is not None and proc.stderr is not None
                line = proc.stdout.readline()  # the first token, after 2 s
                proc.stdout.close()  # as head does after one line
                started = time.monotonic()
                assert proc.wait(timeout=30) == 1
                # At once, not at the next token's write 2 s later (nor the stream's end).
                assert time.monotonic() - started < 1.5
                assert proc.stderr.read() == b""
            assert json.loads(line)["deltas"][0]["text"] == "one"
        finally:
            http.post("/unpublish", json={"model": slow})


def test_watch_timeout_says_it_was_the_watchs_length(stack: Stack) -> None:
    done = saxgw(stack, "watch", LM, "--timeout", "1")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"saxgw: DEADLINE_EXCEEDED: watching {LM} reached the call's deadline",
        "hint: the watch ran for --timeout; without --timeout it runs until Ctrl-C",
    ]
    # With --json, the stream's in-band end is its last line, as the HTTP stream's last event
    # and `lm.generate --stream --json`'s are (it was left out).
    done = saxgw(stack, "watch", LM, "--timeout", "1", "--json")
    assert done.returncode == 1
    last = json.loads(done.stdout.splitlines()[-1])
    assert (last["addresses"], last["error"]["code"]) == ([], 4)


def test_ctrl_c_while_starting_is_quiet() -> None:
    # SIGINT while saxgw imports grpc and its commands (about a second) was a traceback.
    address = f"127.0.0.1:{free_port()}"
    with _children_get_default_sigint():
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "ls", "--gateway", address],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    # While it imports grpc (its C core is mapped), well inside saxgw's own code; earlier,
    # Python itself may not be ready for Ctrl-C yet.
    while b"cygrpc" not in _maps(proc.pid):
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out, err) == (130, "", "")


def _maps(pid: int) -> bytes:
    """What process ``pid`` has mapped (Linux's /proc): its shared libraries among them."""
    try:
        return Path(f"/proc/{pid}/maps").read_bytes()
    except FileNotFoundError:  # it exited: the assertion after says how
        return b"cygrpc"


def _model_server_ports(stack: Stack) -> tuple[int, ...]:
    assert stack.settings.cell is not None  # the e2e stack runs the embedded cell
    return stack.settings.cell.model_server_ports


def _commands() -> dict[str, argparse.ArgumentParser]:
    [commands] = [a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(commands.choices)


@pytest.mark.parametrize("command", sorted(_commands()))
def test_help_of_every_command_names_every_flag(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # `wait --help` and `vm.image_to_text --help` were a KeyError traceback: argparse hides an
    # optional positional's default while it takes the flags first (intermixed parsing), and
    # --help is one of those flags. In this process, not a `saxgw` of its own per command
    # (half a second of imports each, ~50 commands): the width a subprocess without a
    # terminal gets, and main()'s grpc log setting given back afterwards.
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("GRPC_VERBOSITY", "NONE")
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    done = capsys.readouterr()
    assert (exited.value.code, done.err) == (0, "")
    # A flag hidden from help on purpose (`--config-snapshot`, which `saxgw up|serve` give the
    # gateways they start) is not the user's to see.
    actions = [a for a in _commands()[command]._actions if a.help != argparse.SUPPRESS]
    flags = {f for a in actions for f in a.option_strings}
    said = [f for f in flags if re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", done.out)]
    assert sorted(flags - set(said)) == []
    # `update --help` said "(default: )" of the options whose unset value is "".
    assert "(default: )" not in done.out


def test_help_shows_an_optional_arguments_default() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "wait", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert "  REPLICAS             (default: 1)\n" in done.stdout
