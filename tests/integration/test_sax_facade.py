"""The synchronous facade runs a program written for upstream's `sax` module, unchanged but for
its import line, against the embedded cell."""

from __future__ import annotations

import asyncio
import math
import os
import sys
import textwrap

import pytest
from saxml.protobuf import common_pb2

from gateway.client import sax as facade
from gateway.client._facade import admin_timeout
from tests.integration._client_fixtures import RunningCell

# Written as seed-era code against upstream's Python client (saxml/client/python/sax.pyi); the
# only line changed from upstream is the import.
SEED_ERA_PROGRAM = textwrap.dedent(
    """
    from gateway.client import sax  # upstream: import sax

    MODEL = "/sax/test/lm2b"
    PATH = "saxml.server.pax.lm.params.lm_cloud.LmCloudSpmd2BTest"

    sax.Publish(MODEL, PATH, "None", 1)
    sax.WaitForReady(MODEL, 1)

    detail = sax.ListDetail(MODEL)
    print("detail", detail.model, detail.ckpt, detail.max_replicas, detail.active_replicas,
          sorted(detail.overrides.items()))
    print("list", sax.List(MODEL))
    print("all", sax.ListAll("/sax/test"))
    print("stats", [(s.chip_type, s.chip_topology, s.num_replicas) for s in sax.Stats("/sax/test")])

    options = sax.ModelOptions()
    options.SetExtraInput("temperature", 0.5)
    options.SetExtraInput("per_example_max_decode_steps", 4)
    options.SetTimeout(30)
    lm = sax.Model(MODEL).LM()
    samples = lm.Generate("Q: Who is Harry Potter's mom? A: ", options)
    assert isinstance(samples, list) and samples, samples
    assert all(isinstance(t, str) and isinstance(s, float) for t, s in samples), samples
    print("generate", len(samples))

    steps = []
    lm.GenerateStream("Q: Hi A: ", lambda last, items: steps.append((last, items)), options)
    assert steps[-1] == (True, []), steps[-1]
    assert all(isinstance(i[0], str) and isinstance(i[1], int) for _, items in steps for i in items)
    print("stream", steps[-1][0])

    print("score", len(lm.Score("Q: ", ["A", "B"])))

    sax.Unpublish(MODEL)
    try:
        sax.ListDetail(MODEL)
    except Exception as error:
        # Upstream raises StatusNotOk; its status reads the same way.
        print("after unpublish", type(error).__name__, error.status.code().name,
              "/sax/test/lm2b" in error.status.message())
    """
)


async def _run(program: str, cell: RunningCell) -> list[str]:
    """Runs ``program`` in a fresh interpreter with SAX_ROOT set, as a user would; its lines."""
    env = {**os.environ, "SAX_ROOT": cell.sax_root}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        program,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode().splitlines()


async def test_seed_era_program_runs_unchanged(cell: RunningCell) -> None:
    lines = await _run(SEED_ERA_PROGRAM, cell)
    # The number of samples is the stand-in model's choice; that there are some is asserted
    # inside the program.
    assert lines[4].startswith("generate ")
    assert lines[:4] + lines[5:] == [
        "detail saxml.server.pax.lm.params.lm_cloud.LmCloudSpmd2BTest None 1 1 []",
        "list ('saxml.server.pax.lm.params.lm_cloud.LmCloudSpmd2BTest', 'None', 1)",
        "all ['/sax/test/lm2b']",
        "stats [('CHIP_TYPE_CPU', 'CHIP_TOPOLOGY_1', 2)]",
        "stream True",
        "score 2",
        "after unpublish NotFoundError NOT_FOUND True",
    ]


def _with_model(model_id: str, model_path: str, body: str) -> str:
    """A program that publishes ``model_id``, runs ``body`` and unpublishes it."""
    return "\n".join(
        [
            "from gateway.client import sax  # upstream: import sax",
            f"sax.Publish({model_id!r}, {model_path!r}, 'None', 1)",
            f"sax.WaitForReady({model_id!r}, 1)",
            textwrap.dedent(body),
            f"sax.Unpublish({model_id!r})",
        ]
    )


CUSTOM_PROGRAM = _with_model(
    "/sax/test/cm",
    "sax_gateway.testing.TestCustom",
    """
    cm = sax.Model("/sax/test/cm").CM()
    print("custom", cm.Custom(request=b"\\x01", method_name="echo"))
    print("no exception", cm.CustomNoException(b"\\x02", "echo"))
    status = sax.Model("/sax/test/missing").CM().CustomNoException(b"", "echo")
    print("status", status.ok(), status.code().name, "/sax/test/missing" in status.message())
    """,
)


async def test_custom_no_exception_returns_the_status(cell: RunningCell) -> None:
    assert await _run(CUSTOM_PROGRAM, cell) == [
        "custom b'\\x01'",
        "no exception b'\\x02'",
        "status False NOT_FOUND True",
    ]


VISION_PROGRAM = _with_model(
    "/sax/test/vm",
    "sax_gateway.testing.TestVision",
    """
    vm = sax.Model("/sax/test/vm").VM()
    png = vm.TextToImage("a red square")[0][0]
    for name, result in [
        ("image_to_image", vm.ImageToImage(text=png)),
        ("text_and_image_to_image", vm.TextAndImageToImage("bluer", image_bytes=png)),
    ]:
        [(image, score)] = result
        print(name, image[:8] == b"\\x89PNG\\r\\n\\x1a\\n", image != png, score)
    [(caption, score)] = vm.VideoToText(image_frames=[png, png], text="see")
    [(first, first_score)] = vm.ImageToText(png, "see")  # the stand-in captions frame 1
    print("video_to_text", caption == first + b", 2 frame(s)", score == first_score)
    tokens = vm.VideoToToken([png, png, png])
    print("video_to_token", len(tokens), all(-1 <= t <= 1 for t in tokens))
    frames = vm.TokenToVideo(tokens=tokens)
    print("token_to_video", len(frames), all(f.startswith(b"\\x89PNG") for f in frames))
    try:
        sax.Model("/sax/test/vm").LM().Embed("not a vision call")
    except Exception as error:
        print("lm on vm", error.status.code().name)
    """,
)


async def test_vision_methods_upstream_has(cell: RunningCell) -> None:
    assert await _run(VISION_PROGRAM, cell) == [
        "image_to_image True True -0.5",
        "text_and_image_to_image True True -0.5",
        "video_to_text True True",
        "video_to_token 12 True",
        "token_to_video 3 True",
        "lm on vm INVALID_ARGUMENT",
    ]


MULTIMODAL_PROGRAM = _with_model(
    "/sax/test/mm",
    "sax_gateway.testing.TestMultimodal",
    """
    from saxml.protobuf import multimodal_pb2 as mm  # upstream's generated module path

    model = sax.Model("/sax/test/mm").MM()
    items = [mm.DataItem(text="hello"), mm.DataItem(image_bytes=b"\\x89PNG....")]
    generated = model.Generate(mm.GenerateRequest(items=items))
    print("generate", [[i.text for i in r.items] for r in generated.results])
    scored = model.Score(request=mm.ScoreRequest(prefix_items=items[:1], suffix_items=items[1:]))
    print("score", len(scored.results), scored.results[0].score <= 0)
    embedded = model.Embed(mm.EmbedRequest(items=items))
    print("embed", len(embedded.embedding.values))
    try:
        sax.Model("/sax/test/mm").LM().Generate("not multimodal")
    except Exception as error:
        print("lm on mm", error.status.code().name)
    """,
)


async def test_multimodal_model(cell: RunningCell) -> None:
    assert await _run(MULTIMODAL_PROGRAM, cell) == [
        "generate [['saw text(5) image_bytes(8)']]",
        "score 1 True",
        "embed 8",
        "lm on mm INVALID_ARGUMENT",
    ]


NO_DEADLINE_PROGRAM = _with_model(
    "/sax/test/nodeadline",
    "sax_gateway.testing.TestLM",
    """
    # Upstream: a timeout of 0 or less is none (its default, -1, too). A 0 was a deadline
    # of 0 s here, and an admin call without one was given the client's 10 s.
    admin = sax.AdminOptions()
    admin.timeout = 0
    print("list", sax.List("/sax/test/nodeadline", admin)[0])
    options = sax.ModelOptions()
    options.SetTimeout(0)
    lm = sax.Model("/sax/test/nodeadline").LM()
    print("generate", lm.Generate("hi", options)[0][0])
    # One string where upstream takes a list is its TypeError, not a list of characters.
    vm = sax.Model("/sax/x/y").VM()
    for call in (lambda: lm.Score("a", "bcd"), lambda: vm.Detect(b"", "cat")):
        try:
            call()
        except TypeError as error:
            print("type error", error)
    """,
)


async def test_no_deadline_and_type_errors_as_upstreams(cell: RunningCell) -> None:
    assert await _run(NO_DEADLINE_PROGRAM, cell) == [
        "list sax_gateway.testing.TestLM",
        "generate hi",
        "type error suffix must be a list of strings, not a single str",
        "type error text must be a list of strings, not a single str",
    ]


def test_admin_timeouts_of_zero_or_less_are_none() -> None:
    admin = facade.AdminOptions()
    assert admin_timeout(None) == admin_timeout(admin) == math.inf  # the default: -1
    admin.timeout = 0
    assert admin_timeout(admin) == math.inf
    admin.timeout = 2.5
    assert admin_timeout(admin) == 2.5


def test_model_options_behave_like_upstream() -> None:
    options = facade.ModelOptions()
    assert options.GetTimeout() == -1
    options.SetExtraInput("temperature", 1)
    options.SetExtraInputTensor("soft", [1, 2])
    options.SetExtraInputString("s", "v")
    options.SetTimeout(2.5)
    assert options.GetExtraInput("temperature") == 1.0
    assert options.GetTimeout() == 2.5
    with pytest.raises(KeyError):
        options.GetExtraInput("missing")
    call = options.to_call_options()
    assert call.timeout == 2.5
    assert dict(call.extra_inputs) == {"temperature": 1.0}
    assert dict(call.extra_tensors) == {"soft": [1.0, 2.0]}
    proto = options.ToProto()
    assert isinstance(proto, common_pb2.ExtraInputs)
    assert dict(proto.items) == {"temperature": 1.0}
    assert list(proto.tensors["soft"].values) == [1.0, 2.0]
    assert dict(proto.strings) == {"s": "v"}
    assert facade.ModelOptions().ToProto() == common_pb2.ExtraInputs()
    # Upstream's is the ExtraInputs' DebugString (protobuf's text format).
    assert facade.ModelOptions().ToDebugString() == ""
    assert options.ToDebugString() == str(proto)
    copied = options.__copy__()
    copied.SetExtraInput("temperature", 2)
    assert options.GetExtraInput("temperature") == 1.0


def test_options_defaults_match_upstream() -> None:
    options = facade.Options()
    assert (options.num_conn, options.proxy_addr, options.fail_fast) == (37, "", False)
