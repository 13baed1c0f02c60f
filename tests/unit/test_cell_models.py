"""The stand-in models and the error mapping, without sockets."""

from __future__ import annotations

import asyncio
import struct
import tracemalloc
import zlib
from collections.abc import Awaitable, Callable

import grpc
import pytest
from saxml.protobuf import modelet_pb2

from gateway.cell.models import (
    MODEL_PATHS,
    LoadSpec,
    ServableModel,
    check_overrides,
    create_model,
)
from gateway.cell.models.base import ExtraInputs
from gateway.cell.models.random_lm import RandomBigramLM
from gateway.cell.modelserver.loaded import LoadedModels
from gateway.cell.modelserver.modelet import ModeletServicer
from gateway.client.errors import InvalidArgumentError, ResourceExhaustedError
from gateway.common.errors import go_code_name
from gateway.common.names import check_acl_method
from gateway.common.rpc import PROBE_METADATA

SEED_LM = "saxml.server.pax.lm.params.lm_cloud.LmCloudSpmd2BTest"
NONE = ExtraInputs()


def _load(path: str, overrides: dict[str, str] | None = None) -> ServableModel:
    return create_model(
        LoadSpec(model_path=path, checkpoint="None", overrides=overrides or {}, seed=0)
    )


def test_go_code_names_cover_every_code() -> None:
    names = {code: go_code_name(code) for code in grpc.StatusCode}
    assert names[grpc.StatusCode.CANCELLED] == "Canceled"
    assert names[grpc.StatusCode.INVALID_ARGUMENT] == "InvalidArgument"
    assert names[grpc.StatusCode.DEADLINE_EXCEEDED] == "DeadlineExceeded"
    assert len(set(names.values())) == len(names)


def test_registry_paths() -> None:
    assert MODEL_PATHS == (
        "sax_gateway.testing.TestAudio",
        "sax_gateway.testing.TestCustom",
        "sax_gateway.testing.TestLM",
        "sax_gateway.testing.TestMultimodal",
        "sax_gateway.testing.TestVision",
        SEED_LM,
    )
    with pytest.raises(InvalidArgumentError):
        _load("no.such.Model")


@pytest.mark.parametrize(
    "overrides",
    [{"delay_ms": "x"}, {"num_samples": "0"}, {"fail_code": "OK"}, {"max_in_flight": "-1"}],
)
def test_test_lm_rejects_bad_overrides(overrides: dict[str, str]) -> None:
    with pytest.raises(InvalidArgumentError):
        _load("sax_gateway.testing.TestLM", overrides)


@pytest.mark.parametrize(
    ("path", "overrides", "message"),
    [
        # Published, listed by `ls`, and doing nothing: a misspelt delay_ms was never noticed.
        (
            "sax_gateway.testing.TestLM",
            {"text": "hi", "bogus": "1"},
            "unknown override 'bogus' for sax_gateway.testing.TestLM, which takes delay_ms, "
            "embedding_dim, fail_after_tokens, fail_code, fail_load, length, max_in_flight, "
            "num_samples, score, text",
        ),
        (
            "sax_gateway.testing.TestLM",
            {"dealy_ms": "5", "bogus": "1"},
            "unknown overrides 'bogus', 'dealy_ms' for sax_gateway.testing.TestLM, which takes "
            "delay_ms, embedding_dim, fail_after_tokens, fail_code, fail_load, length, "
            "max_in_flight, num_samples, score, text",
        ),
        (
            "sax_gateway.testing.TestVision",
            {"size": "64"},
            "unknown override 'size' for sax_gateway.testing.TestVision, which takes none",
        ),
        (
            "sax_gateway.testing.TestMultimodal",
            {"x": "1"},
            "unknown override 'x' for sax_gateway.testing.TestMultimodal, which takes none",
        ),
    ],
)
def test_the_projects_stand_ins_refuse_unknown_overrides_at_publish(
    path: str, overrides: dict[str, str], message: str, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(InvalidArgumentError) as refused:
        check_overrides(path, overrides)
    assert refused.value.message == message
    # A model published before the check (restored from state.proto) still loads.
    assert _load(path, overrides).method_names
    # The seed's LM stands in for an upstream params class, which takes any key its config
    # has (BATCH_SIZE) and logs and ignores others: it checks only its own.
    check_overrides(SEED_LM, {**overrides, "BATCH_SIZE": "4", "num_samples": "2"})
    _load(SEED_LM, {"BATCH_SIZE": "4", "num_samples": "2"})
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"override BATCH_SIZE is not used by {SEED_LM}'s stand-in; ignored"
    ]


async def test_test_lm_echoes_by_default() -> None:
    model = create_model(
        LoadSpec(model_path="sax_gateway.testing.TestLM", checkpoint="None", overrides={}, seed=0)
    )
    (hyp,) = await model.generate("say  this please", NONE)
    assert hyp.text == "say this please"
    assert hyp.score == pytest.approx(-0.3)
    steps = [step async for step in model.generate_stream("a b", NONE)]
    assert [s.pieces for s in steps] == [("a",), (" b",)]


async def test_test_lm_streams_an_empty_item_per_sample_for_no_token() -> None:
    # A negative cap (as 0) is no token: the stream's one message has an empty item per
    # sample, as Generate's one empty text; it had sent none at all.
    model = _load("sax_gateway.testing.TestLM", {"text": "a b", "num_samples": "2"})
    for cap in (0.0, -1.0):
        extra = ExtraInputs(floats={"per_example_max_decode_steps": cap})
        steps = [step async for step in model.generate_stream("x", extra)]
        assert [s.pieces for s in steps] == [("", "")], cap


async def test_test_lm_streams_its_tokens_as_it_sends_them() -> None:
    # It built the whole answer first: 50 streams of 8,192 tokens of 4 KB took the model
    # server to 1.6 GB while clients read the first few MB of each.
    model = _load("sax_gateway.testing.TestLM", {"text": "A" * 4000, "length": "2000"})
    tracemalloc.start()
    try:
        stream = model.generate_stream("x", NONE)
        first = await anext(stream)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert first.pieces == ("A" * 4000,)
    assert held < 1 << 20, held  # the whole answer: 8 MB
    tokens = [first.pieces[0], *[step.pieces[0] async for step in stream]]
    assert tokens == ["A" * 4000] + [" " + "A" * 4000] * 1999


async def test_test_lm_refuses_calls_over_its_max_in_flight() -> None:
    model = _load("sax_gateway.testing.TestLM", {"max_in_flight": "1", "delay_ms": "50"})
    message = "TestLM is at its max_in_flight (1 calls at once)"
    stream = model.generate_stream("a b", NONE)
    assert (await anext(stream)).pieces == ("a",)  # holds the one slot until it ends
    for call in (model.generate("x", NONE), model.score("x", ["y"], NONE)):
        with pytest.raises(ResourceExhaustedError) as refused:
            await call
        assert refused.value.message == message
    assert [s.pieces async for s in stream] == [(" b",)]
    assert [h.text for h in await model.generate("x", NONE)] == ["x"]  # free again
    with pytest.raises(ResourceExhaustedError):  # 0: every call
        await _load("sax_gateway.testing.TestLM", {"max_in_flight": "0"}).embed_text("x", NONE)


async def test_random_lm_is_a_function_of_seed_and_request() -> None:
    spec = LoadSpec(model_path=SEED_LM, checkpoint="None", overrides={}, seed=7)
    one, two = create_model(spec), create_model(spec)
    other = create_model(LoadSpec(model_path=SEED_LM, checkpoint="None", overrides={}, seed=8))
    extra = ExtraInputs(floats={"temperature": 1.0, "per_example_max_decode_steps": 5})
    first = await one.generate("the cell", extra)
    assert first == await two.generate("the cell", extra)
    assert first != await other.generate("the cell", extra)
    assert all(len(h.text.split()) <= 5 for h in first)
    top1 = ExtraInputs(floats={"per_example_top_k": 1, "temperature": 1.0})
    assert len({h.text for h in await one.generate("the", top1)}) == 1
    (logp,) = await one.score("the", ["river runs"], NONE)
    assert logp < 0
    assert len(await one.embed_text("hello", NONE)) == 16


async def test_text_to_image_is_a_valid_png() -> None:
    model = create_model(
        LoadSpec(
            model_path="sax_gateway.testing.TestVision", checkpoint="None", overrides={}, seed=0
        )
    )
    ((png, _),) = await model.text_to_image("a cat", NONE)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", png[8:16])
    assert kind == b"IHDR" and struct.unpack(">II", png[16:24]) == (8, 8)
    idat_at = png.index(b"IDAT")
    (idat_len,) = struct.unpack(">I", png[idat_at - 4 : idat_at])
    rows = zlib.decompress(png[idat_at + 4 : idat_at + 4 + idat_len])
    assert len(rows) == 8 * (1 + 8 * 3)
    assert length == 13


@pytest.mark.parametrize("path", MODEL_PATHS)
def test_every_method_a_stand_in_serves_takes_an_acl(path: str) -> None:
    # vm.text_and_image_to_image, vm.video_to_token, vm.token_to_video, mm.score and
    # mm.embed were refused (the names of upstream's admin validator, not of its servers).
    # Custom methods are named by each model (TestCustom's: echo), and no ACL list has them.
    for method in _load(path).method_names - {"echo"}:
        check_acl_method(method)


def test_an_acl_on_a_method_no_server_serves_is_refused() -> None:
    # Upstream's admin validator takes vm.text_and_image_to_text; no model server serves it.
    with pytest.raises(InvalidArgumentError) as refused:
        check_acl_method("vm.text_and_image_to_text")
    assert refused.value.message == (
        "'vm.text_and_image_to_text' is not a valid method name for an ACL: one of "
        "am.recognize, lm.embed, lm.generate, lm.generate_stream, lm.gradient, lm.score, "
        "mm.embed, mm.generate, mm.generate_stream, mm.score, vm.classify, vm.detect, "
        "vm.embed, vm.generate, vm.image_to_image, vm.image_to_text, vm.text_and_image_to_image, "
        "vm.token_to_video, vm.video_to_text, vm.video_to_token"
    )


class _Context:
    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


async def test_a_model_server_answers_a_clients_probe_and_takes_it_for_no_admin_poll() -> None:
    # A poll keeps the server from re-joining an admin that forgot it; a gateway probing a
    # replica it suspects of hanging (every second, while a call on it runs long) would
    # have hidden that the admin stopped polling.
    modelet = ModeletServicer(loaded=LoadedModels(seed=0))
    modelet.last_polled = 0.0
    request = modelet_pb2.GetStatusRequest()
    reply = await modelet.GetStatus(request, _Context(PROBE_METADATA))  # type: ignore[arg-type]
    assert reply.server_status.state == modelet_pb2.GetStatusResponse.ServerStatus.ACTIVE
    assert modelet.last_polled == 0.0
    await modelet.GetStatus(request, _Context(()))  # type: ignore[arg-type]
    assert modelet.last_polled > 0.0


@pytest.mark.parametrize("method", ["score", "embed_text"])
async def test_the_bigram_lm_computes_off_the_servers_event_loop(method: str) -> None:
    # In the event loop, a long call (a Score of 100,000 words: seconds on a starved host)
    # kept its model server from answering the gateway's status request and the admin's
    # polls: the live server was taken for hung, and its admin dropped it.
    model = _load(SEED_LM)
    assert isinstance(model, RandomBigramLM)
    words = " ".join(f"w{i}" for i in range(40_000))
    call: Callable[[], Awaitable[list[float]]] = {
        "score": lambda: model.score("a", [words], NONE),
        "embed_text": lambda: model.embed_text(words, NONE),
    }[method]
    loop = asyncio.get_running_loop()
    gaps: list[float] = []

    async def tick() -> None:
        last = loop.time()
        while True:
            await asyncio.sleep(0.005)
            now = loop.time()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    started = loop.time()
    await call()
    took = loop.time() - started
    ticker.cancel()
    # The loop went on ticking while the model computed: no gap near the computing's length.
    assert took > 0.2  # long enough to tell
    assert max(gaps, default=took) < took / 3, (max(gaps, default=took), took)
