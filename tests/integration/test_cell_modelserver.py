"""The embedded model server's data and Modelet services over real sockets (and a call without
its request message, which the admin shares the server setup for)."""

from __future__ import annotations

import asyncio
import io
import logging
import signal
import sys
import time
import wave
from pathlib import Path
from typing import TypeAlias

import grpc
import pytest
from saxml.protobuf import (
    admin_pb2,
    audio_pb2,
    audio_pb2_grpc,
    common_pb2,
    custom_pb2,
    custom_pb2_grpc,
    lm_pb2,
    lm_pb2_grpc,
    modelet_pb2,
    modelet_pb2_grpc,
    vision_pb2,
    vision_pb2_grpc,
)

from gateway.cell._args import settings_to_argv
from gateway.cell._launcher import _ServerProcess
from gateway.cell.modelserver.join import JoinLoop
from gateway.cell.modelserver.loaded import KEPT_CANCELLATIONS
from gateway.launch.processes import free_port
from tests._grpc import aio_channel
from tests.integration._cell_fixtures import (
    CELL,
    SEED_LM,
    InprocCell,
    addresses,
    admin_stub,
    eventually,
    fast_settings,
    inproc,
    publish,
)

Code: TypeAlias = grpc.StatusCode


async def _publish_one(
    cell: InprocCell, name: str, *, model_path: str = "sax_gateway.testing.TestLM", **overrides: str
) -> tuple[str, grpc.aio.Channel]:
    async with admin_stub(cell.admin.address) as admin:
        model_id = await publish(admin, name, model_path=model_path, overrides=overrides)
        (address,) = await addresses(admin, model_id)
    return model_id, aio_channel(address)


async def test_generate_stream_one_item_per_token(inproc_cell: InprocCell) -> None:
    model_id, channel = await _publish_one(
        inproc_cell, "lm", text="hello big world", delay_ms="30", num_samples="2"
    )
    async with channel:
        lm = lm_pb2_grpc.LMServiceStub(channel)
        started = time.monotonic()
        arrivals, replies = [], []
        async for reply in lm.GenerateStream(lm_pb2.GenerateRequest(model_key=model_id, text="x")):
            arrivals.append(time.monotonic() - started)
            replies.append(reply)
    assert [[(i.text, i.prefix_len) for i in r.items] for r in replies] == [
        [("hello", 0), ("hello", 0)],
        [(" big", 5), (" big", 5)],
        [(" world", 9), (" world", 9)],
    ]
    # Scores are per step, as upstream's decoder sends them: they add up to each sample's score.
    assert [list(i.scores) for i in replies[0].items] == [
        [pytest.approx(-0.1)],
        [pytest.approx(-1.1)],
    ]
    assert [list(i.scores) for i in replies[-1].items] == [[pytest.approx(-0.1)]] * 2
    totals = [sum(r.items[i].scores[0] for r in replies) for i in range(2)]
    assert totals == [pytest.approx(-0.3), pytest.approx(-1.3)]
    # One item per token as it is produced, not all at the end.
    assert arrivals[0] >= 0.025 and arrivals[2] - arrivals[0] >= 0.05


async def test_generate_honours_overrides_and_extra_inputs(inproc_cell: InprocCell) -> None:
    model_id, channel = await _publish_one(inproc_cell, "lm", text="a b c d", length="6")
    async with channel:
        lm = lm_pb2_grpc.LMServiceStub(channel)
        reply = await lm.Generate(lm_pb2.GenerateRequest(model_key=model_id, text="ignored"))
        assert [t.text for t in reply.texts] == ["a b c d a b"]
        capped = await lm.Generate(
            lm_pb2.GenerateRequest(
                model_key=model_id,
                text="",
                extra_inputs=common_pb2.ExtraInputs(items={"per_example_max_decode_steps": 2}),
            )
        )
        assert [t.text for t in capped.texts] == ["a b"]
        scores = await lm.Score(lm_pb2.ScoreRequest(model_key=model_id, prefix="p", suffix=["x y"]))
        assert list(scores.logp) == [pytest.approx(-0.2)]
        embedding = await lm.Embed(lm_pb2.EmbedRequest(model_key=model_id, text="t"))
        assert len(embedding.embedding) == 8


async def test_extra_inputs_are_those_the_method_declares(inproc_cell: InprocCell) -> None:
    # As upstream's model servers check them (ServableMethod.default_extra_inputs): a key
    # the method does not declare, a tensor whose default is no list or has another length, or
    # one key in two maps is INVALID_ARGUMENT; a misspelt key did what no key does instead.
    model_id, channel = await _publish_one(inproc_cell, "xin", text="a b c")
    seed_id, seed_channel = await _publish_one(inproc_cell, "xseed", model_path=SEED_LM)
    Extra = common_pb2.ExtraInputs
    refused = [
        (Extra(items={"tempreature": 0.5}), "tempreature"),
        (Extra(strings={"mode": "fast"}), "mode"),
        (Extra(tensors={"bias": common_pb2.Tensor(values=[1.0])}), "bias"),
        (Extra(tensors={"temperature": common_pb2.Tensor(values=[1.0])}), "temperature"),
        (Extra(items={"stop": 1.0}, strings={"stop": "x"}), "stop"),
    ]
    async with channel, seed_channel:
        lm = lm_pb2_grpc.LMServiceStub(channel)
        for extra, key in refused:
            request = lm_pb2.GenerateRequest(model_key=model_id, text="q", extra_inputs=extra)
            for call in (lm.Generate, lambda r: _drain(lm.GenerateStream(r))):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await call(request)
                assert caught.value.code() == Code.INVALID_ARGUMENT, extra
                assert f"extra input '{key}' " in (caught.value.details() or ""), (
                    caught.value.details()
                )
        taken = Extra(
            items={"per_example_max_decode_steps": 2, "temperature": 0.5},
            strings={"stop": "\n"},
            tensors={"bias": common_pb2.Tensor(values=[0.5, -0.5])},
        )
        reply = await lm.Generate(
            lm_pb2.GenerateRequest(model_key=model_id, text="q", extra_inputs=taken)
        )
        assert [t.text for t in reply.texts] == ["a b"]
        # The seed LM's Score declares none, as upstream's SCORE_EXTRA_INPUTS; Generate its four.
        seed = lm_pb2_grpc.LMServiceStub(seed_channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await seed.Score(
                lm_pb2.ScoreRequest(model_key=seed_id, prefix="p", suffix=["s"], extra_inputs=taken)
            )
        assert caught.value.code() == Code.INVALID_ARGUMENT
        sampling = Extra(items={"temperature": 0, "per_example_top_k": 5})
        assert await seed.Generate(
            lm_pb2.GenerateRequest(model_key=seed_id, text="the", extra_inputs=sampling)
        )
        # The model is found (or not) first, as upstream: NOT_FOUND wins over the key.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await lm.Generate(
                lm_pb2.GenerateRequest(model_key="/sax/test/nope", extra_inputs=refused[0][0])
            )
        assert caught.value.code() == Code.NOT_FOUND


async def _drain(
    stream: grpc.aio.UnaryStreamCall[lm_pb2.GenerateRequest, lm_pb2.GenerateStreamResponse],
) -> list[lm_pb2.GenerateStreamResponse]:
    return [item async for item in stream]


async def test_stream_fails_mid_way_when_asked(inproc_cell: InprocCell) -> None:
    model_id, channel = await _publish_one(
        inproc_cell, "lm", text="a b c d e", fail_after_tokens="2", fail_code="INTERNAL"
    )
    async with channel:
        call = lm_pb2_grpc.LMServiceStub(channel).GenerateStream(
            lm_pb2.GenerateRequest(model_key=model_id, text="x")
        )
        received = []
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for reply in call:
                received.append(reply.items[0].text)
    assert received == ["a", " b"]
    assert caught.value.code() == Code.INTERNAL
    assert (caught.value.details() or "").endswith(": Internal")


async def test_cancelled_stream_is_recorded(inproc_cell: InprocCell) -> None:
    model_id, channel = await _publish_one(inproc_cell, "lm", text="a", length="100", delay_ms="20")
    async with channel:
        call = lm_pb2_grpc.LMServiceStub(channel).GenerateStream(
            lm_pb2.GenerateRequest(model_key=model_id, text="x")
        )
        await call.read()
        call.cancel()

        async def recorded() -> bool:
            return any(s.loaded.cancellations(model_id) for s in inproc_cell.model_servers)

        await eventually(recorded, timeout=30, interval=0.005)
    (event,) = [c for s in inproc_cell.model_servers for c in s.loaded.cancellations(model_id)]
    # It stopped generating: 100 tokens 20 ms apart take 2 s, and the call was cancelled after
    # the first. (How soon it notices is a speed: the bench's business, not a test's.)
    assert 1 <= event.tokens_sent < 100


async def test_data_errors(inproc_cell: InprocCell) -> None:
    model_id, channel = await _publish_one(inproc_cell, "lm")
    async with channel:
        lm = lm_pb2_grpc.LMServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await lm.Generate(lm_pb2.GenerateRequest(model_key="/sax/test/nope", text="x"))
        assert caught.value.code() == Code.NOT_FOUND
        assert (caught.value.details() or "").endswith(": NotFound")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await vision_pb2_grpc.VisionServiceStub(channel).Classify(
                vision_pb2.ClassifyRequest(model_key=model_id, image_bytes=b"x")
            )
        assert caught.value.code() == Code.INVALID_ARGUMENT
        assert "does not support vm.classify" in (caught.value.details() or "")


async def test_vision_audio_custom_stand_ins(inproc_cell: InprocCell) -> None:
    vm_id, vm_channel = await _publish_one(
        inproc_cell, "vm", model_path="sax_gateway.testing.TestVision"
    )
    async with vm_channel:
        vm = vision_pb2_grpc.VisionServiceStub(vm_channel)
        first = await vm.Classify(vision_pb2.ClassifyRequest(model_key=vm_id, image_bytes=b"img"))
        again = await vm.Classify(vision_pb2.ClassifyRequest(model_key=vm_id, image_bytes=b"img"))
        assert first == again and len(first.texts) == 3
        image = await vm.TextToImage(vision_pb2.TextToImageRequest(model_key=vm_id, text="a cat"))
        assert image.images[0].image.startswith(b"\x89PNG\r\n\x1a\n")
        boxes = await vm.Detect(
            vision_pb2.DetectRequest(model_key=vm_id, image_bytes=b"img", text=["cat", "dog"])
        )
        assert [b.text for b in boxes.bounding_boxes] == ["cat", "dog"]
        caption = await vm.ImageToText(
            vision_pb2.ImageToTextRequest(model_key=vm_id, image_bytes=b"img")
        )
        assert caption.texts[0].text == f"a picture of a {first.texts[0].text}"
        # As upstream's: a Custom call naming a method the model serves through another of
        # Sax's services finds no custom method of that name (NOT_FOUND, as upstream's batcher
        # answers), where it failed UNKNOWN with a Python class name; one the model does not
        # serve at all is INVALID_ARGUMENT, as any method it does not support.
        cm = custom_pb2_grpc.CustomServiceStub(vm_channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await cm.Custom(custom_pb2.CustomRequest(model_key=vm_id, method_name="vm.classify"))
        assert (caught.value.code(), caught.value.details()) == (
            Code.NOT_FOUND,
            f"{vm_id} has no custom method vm.classify: its vm service serves it: NotFound",
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await cm.Custom(custom_pb2.CustomRequest(model_key=vm_id, method_name="lm.generate"))
        assert caught.value.code() == Code.INVALID_ARGUMENT
        assert "does not support lm.generate" in (caught.value.details() or "")

    am_id, am_channel = await _publish_one(
        inproc_cell, "am", model_path="sax_gateway.testing.TestAudio"
    )
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\x00\x00" * 12000)
    async with am_channel:
        asr = await audio_pb2_grpc.AudioServiceStub(am_channel).Recognize(
            audio_pb2.AsrRequest(model_key=am_id, audio_bytes=buffer.getvalue())
        )
    assert asr.hyps[0].text.startswith("1.50 seconds of audio: ")

    cm_id, cm_channel = await _publish_one(
        inproc_cell, "cm", model_path="sax_gateway.testing.TestCustom"
    )
    async with cm_channel:
        cm = custom_pb2_grpc.CustomServiceStub(cm_channel)
        echoed = await cm.Custom(
            custom_pb2.CustomRequest(model_key=cm_id, request=b"\x01\x02", method_name="echo")
        )
        assert echoed.response == b"\x01\x02"
        # As upstream's: a Custom call is the model's method of its method_name, and one the
        # model does not define is refused (the server reports the model's own names).
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await cm.Custom(custom_pb2.CustomRequest(model_key=cm_id, method_name="nope"))
        assert caught.value.code() == Code.INVALID_ARGUMENT
        assert "does not support nope" in (caught.value.details() or "")
        status = await modelet_pb2_grpc.ModeletStub(cm_channel).GetStatus(
            modelet_pb2.GetStatusRequest(include_method_stats=True)
        )
        (model,) = [m for m in status.models if m.model_key == cm_id]
        assert [s.method for s in model.method_stats] == ["echo"]


async def test_seed_lm_generates_deterministically(inproc_cell: InprocCell) -> None:
    model_id, channel = await _publish_one(inproc_cell, "seed", model_path=SEED_LM)
    async with channel:
        lm = lm_pb2_grpc.LMServiceStub(channel)
        request = lm_pb2.GenerateRequest(
            model_key=model_id,
            text="the river",
            extra_inputs=common_pb2.ExtraInputs(items={"temperature": 0.8}),
        )
        first, second = await asyncio.gather(lm.Generate(request), lm.Generate(request))
        assert first == second
        assert len(first.texts) == 4 and all(t.text for t in first.texts)
        assert [t.score for t in first.texts] == sorted(
            (t.score for t in first.texts), reverse=True
        )
        greedy = lm_pb2.GenerateRequest(
            model_key=model_id,
            text="the",
            extra_inputs=common_pb2.ExtraInputs(items={"temperature": 0}),
        )
        assert len({t.text for t in (await lm.Generate(greedy)).texts}) == 1
        items = [r async for r in lm.GenerateStream(request)]
        streamed = "".join(r.items[0].text for r in items)
        assert streamed in {t.text for t in first.texts}


async def test_a_generation_of_no_tokens_streams_every_sample_empty(
    inproc_cell: InprocCell,
) -> None:
    # As upstream's last stream message holds an item of every sample, with its score: with
    # no message at all, a GenerateStream's final texts had no sample where Generate's had
    # every one, empty.
    none = common_pb2.ExtraInputs(items={"per_example_max_decode_steps": 0})
    for name, path, overrides in (
        ("none-test", "sax_gateway.testing.TestLM", {"num_samples": "3"}),
        ("none-seed", SEED_LM, {}),
    ):
        model_id, channel = await _publish_one(inproc_cell, name, model_path=path, **overrides)
        async with channel:
            lm = lm_pb2_grpc.LMServiceStub(channel)
            request = lm_pb2.GenerateRequest(model_key=model_id, text="the", extra_inputs=none)
            whole = await lm.Generate(request)
            replies = [r async for r in lm.GenerateStream(request)]
        assert [t.text for t in whole.texts] == [""] * len(whole.texts), path
        assert [[(i.text, i.prefix_len) for i in r.items] for r in replies] == [
            [("", 0)] * len(whole.texts)
        ], path
        assert sorted((i.scores[0] for i in replies[0].items), reverse=True) == [
            t.score for t in whole.texts
        ], path


async def test_modelet_status_and_unimplemented(inproc_cell: InprocCell) -> None:
    model_id, channel = await _publish_one(inproc_cell, "lm")
    async with channel:
        await lm_pb2_grpc.LMServiceStub(channel).Generate(
            lm_pb2.GenerateRequest(model_key=model_id, text="x")
        )
        modelet = modelet_pb2_grpc.ModeletStub(channel)
        status = await modelet.GetStatus(modelet_pb2.GetStatusRequest(include_method_stats=True))
        (model,) = status.models
        assert model.model_key == model_id
        stats = {s.method: s for s in model.method_stats}
        assert sorted(stats) == [
            "lm.embed",
            "lm.generate",
            "lm.generate_stream",
            "lm.gradient",
            "lm.score",
        ]
        assert stats["lm.generate"].successes_per_second > 0
        assert stats["lm.generate"].HasField("p50_latency_on_success_per_second")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await modelet.Export(modelet_pb2.ExportRequest(model_key=model_id))
        assert caught.value.code() == Code.UNIMPLEMENTED
        # Unloading a model it does not have: INVALID_ARGUMENT, as upstream's servers answer.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await modelet.Unload(modelet_pb2.UnloadRequest(model_key="/sax/test/never"))
        assert caught.value.code() == Code.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await modelet.Load(
                modelet_pb2.LoadRequest(model_key="/sax/test/x", model_path="no.such.Model")
            )
        assert caught.value.code() == Code.INVALID_ARGUMENT


async def test_update_loaded_with_a_checkpoint_loads_the_model_anew_from_it(
    inproc_cell: InprocCell,
) -> None:
    # As upstream's model servers do: an upstream admin sends the checkpoint in every
    # UpdateLoaded, and the model is loaded again from it (its path and overrides kept); one
    # without a checkpoint changes ACLs only, and the loaded model stays (its statistics too).
    model_id, channel = await _publish_one(inproc_cell, "ckpt", model_path=SEED_LM)
    score = lm_pb2.ScoreRequest(model_key=model_id, prefix="the river", suffix=["runs north"])
    async with channel:
        lm = lm_pb2_grpc.LMServiceStub(channel)
        modelet = modelet_pb2_grpc.ModeletStub(channel)
        before = (await lm.Score(score)).logp[0]

        async def generate_successes() -> float:
            status = await modelet.GetStatus(
                modelet_pb2.GetStatusRequest(include_method_stats=True)
            )
            (model,) = status.models
            assert model.model_status == common_pb2.LOADED
            stats = {s.method: s.successes_per_second for s in model.method_stats}
            return stats["lm.score"]

        acls = common_pb2.AccessControlLists(items={"lm.score": "acl/team"})
        await modelet.UpdateLoaded(modelet_pb2.UpdateLoadedRequest(model_key=model_id, acls=acls))
        assert (await lm.Score(score)).logp[0] == before
        assert await generate_successes() > 0  # not loaded anew: its statistics are kept
        await modelet.UpdateLoaded(
            modelet_pb2.UpdateLoadedRequest(model_key=model_id, checkpoint_path="gs://b/ckpt-2")
        )
        assert await generate_successes() == 0  # loaded anew
        assert (await lm.Score(score)).logp[0] != before  # with the weights of the new one
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await modelet.UpdateLoaded(
                modelet_pb2.UpdateLoadedRequest(model_key="/sax/test/nope", checkpoint_path="x")
            )
        assert caught.value.code() == Code.NOT_FOUND


@pytest.mark.parametrize(
    ("server", "method", "streaming"),
    [
        ("model server", "/sax.server.lm.LMService/Generate", False),
        ("model server", "/sax.server.lm.LMService/GenerateStream", True),
        ("admin", "/sax.Admin/List", False),
        ("admin", "/sax.Admin/WatchLoc", False),
    ],
)
async def test_a_call_without_its_request_message_is_invalid_argument(
    inproc_cell: InprocCell, server: str, method: str, streaming: bool
) -> None:
    """A client that half-closes before sending its one message (a cut frame, a raw HTTP/2
    client) gets a status at once: grpc.aio alone left the call open until its deadline."""
    address = inproc_cell.model_servers[0].address if server == "model server" else None
    async with aio_channel(address or inproc_cell.admin.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            # The deadline only turns the old hang into a failure; the answer is immediate.
            if streaming:
                await channel.stream_stream(method)(iter(()), timeout=10).read()
            else:
                await channel.stream_unary(method)(iter(()), timeout=10)
    assert (caught.value.code(), caught.value.details()) == (
        Code.INVALID_ARGUMENT,
        "the call carries no complete request message: a gRPC call sends exactly one:"
        " InvalidArgument",
    )


@pytest.mark.parametrize(
    ("server", "method", "message_type", "streaming"),
    [
        (
            "model server",
            "/sax.server.lm.LMService/Generate",
            "sax.server.lm.GenerateRequest",
            False,
        ),
        (
            "model server",
            "/sax.server.lm.LMService/GenerateStream",
            "sax.server.lm.GenerateRequest",
            True,
        ),
        ("admin", "/sax.Admin/List", "sax.ListRequest", False),
    ],
)
async def test_a_request_that_does_not_parse_is_invalid_argument(
    inproc_cell: InprocCell,
    server: str,
    method: str,
    message_type: str,
    streaming: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """grpc.aio answered UNKNOWN "Unexpected <class DecodeError>" and logged a traceback at
    ERROR for each such call: a flood of them was a flood of tracebacks."""
    address = inproc_cell.model_servers[0].address if server == "model server" else None
    garbage = b"\xff\xff\xff\xff"
    async with aio_channel(address or inproc_cell.admin.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            if streaming:
                await channel.unary_stream(method, request_serializer=bytes)(
                    garbage, timeout=10
                ).read()
            else:
                await channel.unary_unary(method, request_serializer=bytes)(garbage, timeout=10)
    assert (caught.value.code(), caught.value.details()) == (
        Code.INVALID_ARGUMENT,
        f"the request does not parse: Error parsing message with type '{message_type}':"
        " Wire format was corrupt: InvalidArgument",
    )
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_model_server_stopped_during_a_stream_logs_no_traceback(tmp_path: Path) -> None:
    # grpc cancels the calls still running once a stopping server's grace is over, and logged
    # each as an ERROR with a traceback ("Exception not handled by _handle_exceptions",
    # CancelledError): one per open stream at every restart of a model server.
    settings = fast_settings(tmp_path)
    async with inproc(settings, num_model_servers=0) as cell:
        port = free_port()
        argv = [sys.executable, "-m", "gateway.cell.modelserver", *settings_to_argv(settings)]
        server = await asyncio.create_subprocess_exec(
            *argv, f"--port={port}", stderr=asyncio.subprocess.PIPE
        )
        try:
            async with admin_stub(cell.admin.address) as admin:
                overrides = {"text": "a b c d e f g h", "delay_ms": "500"}
                model_id = await publish(admin, "long", overrides=overrides)
                assert await addresses(admin, model_id) == [f"127.0.0.1:{port}"]
            async with aio_channel(f"127.0.0.1:{port}") as channel:
                call = lm_pb2_grpc.LMServiceStub(channel).GenerateStream(
                    lm_pb2.GenerateRequest(model_key=model_id, text="x")
                )
                await call.read()  # the stream is open: SIGTERM, a 1 s grace, then cancelled
                server.send_signal(signal.SIGTERM)
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    while await call.read() is not grpc.aio.EOF:
                        pass
            # In grpc's words for the calls a stopping server cuts, as upstream's model servers
            # (Python grpc servers) end them, not in Sax's ("the server is stopping:
            # Unavailable"), which the gateway read as the model's own failure of the stream.
            assert (caught.value.code(), caught.value.details()) == (
                Code.UNAVAILABLE,
                "Cancelling all calls",
            )
            assert await asyncio.wait_for(server.wait(), 30) == 0
        finally:
            if server.returncode is None:
                server.kill()
                await server.wait()
    assert server.stderr is not None
    stderr = (await server.stderr.read()).decode()
    assert "stream cancelled model=/sax/test/long" in stderr  # it did cancel the stream
    assert "Traceback" not in stderr, stderr


async def test_a_join_loop_that_cannot_find_its_admin_says_so_once_without_a_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A location.proto that cannot be read (the storage failing) logged an ERROR with the
    # step's traceback at every step (every 15 s on GCS, ~125 lines each), over the storage's
    # own WARNING; one naming no admin (missing, or left empty) was skipped without a word,
    # so a model server that never joined logged nothing at all.
    caplog.set_level(logging.INFO, logger="gateway.cell.modelserver")
    settings = fast_settings(tmp_path, num_model_servers=1)
    location = tmp_path / "root" / "sax" / "test" / "location.proto"
    location.parent.mkdir(parents=True)
    location.symlink_to(location.name)  # a link to itself: every read fails (ELOOP)
    request = admin_pb2.JoinRequest(address="127.0.0.1:1")
    loop = JoinLoop(settings=settings, request=request, last_polled=time.monotonic)
    loop.start()
    try:
        await asyncio.sleep(10 * settings.location_watch_interval)
        location.unlink()
        location.write_bytes(b"")  # read as naming no admin
        await asyncio.sleep(10 * settings.location_watch_interval)
    finally:
        await loop.stop()
    logged = [
        (r.levelname, r.getMessage(), bool(r.exc_info))
        for r in caplog.records
        if r.name == "gateway.cell.modelserver"
    ]
    assert logged == [
        (
            "INFO",
            f"location.proto of {CELL} names no admin server (missing or empty): this server "
            "joins one once it is named there",
            False,
        )
    ]


async def test_the_launcher_keeps_the_last_cancellations_as_the_server_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # It kept every one: a `saxgw up` cell grew ~200 bytes for good per stream a caller left.
    # The launcher's children do not look in the current directory (-P): the stand-in is a
    # module of the tests, found through PYTHONPATH.
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parents[2]))
    process = _ServerProcess(
        module="tests.integration._events_server", argv=["1500"], name="stand-in"
    )
    await process.start(timeout=30)
    try:
        await process.wait_until(
            lambda: sum(process.cancelled.values()) == 1500, timeout=30, what="to report"
        )
        assert len(process.cancellations) == KEPT_CANCELLATIONS
        assert process.cancellations[-1].model_key == "/sax/test/b"
        assert process.cancellations[0].tokens_sent == 1500 - KEPT_CANCELLATIONS
        assert process.cancelled == {"/sax/test/a": 1499, "/sax/test/b": 1}
    finally:
        await process.stop()
