"""Sax's multimodal data service (sax.server.multimodal.MultimodalService), served like the
others: items become plain (kind, value) pairs for the model, and its answers become items."""

from __future__ import annotations

from google.protobuf.message import Message
from saxml.protobuf import multimodal_pb2 as mm
from saxml.protobuf import multimodal_pb2_grpc

from gateway.cell.models import base
from gateway.cell.models.base import Item
from gateway.cell.modelserver.data import DataServicer, forward


def to_items(items: list[mm.DataItem]) -> list[Item]:
    """Each DataItem as (field set, value); a nested message as its serialized bytes."""
    out: list[Item] = []
    for item in items:
        kind = item.WhichOneof("item") or "text"
        value = getattr(item, kind)
        out.append((kind, value.SerializeToString() if isinstance(value, Message) else value))
    return out


def from_items(items: list[Item]) -> list[mm.DataItem]:
    """The inverse of `to_items`."""
    out = []
    for kind, value in items:
        item = mm.DataItem()
        nested = getattr(item, kind)
        if isinstance(nested, Message) and isinstance(value, bytes):
            nested.ParseFromString(value)
        else:
            setattr(item, kind, value)
        out.append(item)
    return out


def _generated(samples: list[tuple[list[Item], float]]) -> mm.GenerateRpcResponse:
    results = [mm.GenerateResult(items=from_items(i), score=s) for i, s in samples]
    return mm.GenerateRpcResponse(response=mm.GenerateResponse(results=results))


class MultimodalServicer(DataServicer, multimodal_pb2_grpc.MultimodalServiceServicer):  # type: ignore[misc,unused-ignore]
    Generate = forward(
        mm.GenerateRpcRequest,
        base.MM_GENERATE,
        lambda r, model, x: model.mm_generate(to_items(list(r.request.items)), x),
        _generated,
    )
    Score = forward(
        mm.ScoreRpcRequest,
        base.MM_SCORE,
        lambda r, model, x: model.mm_score(
            to_items(list(r.request.prefix_items)), to_items(list(r.request.suffix_items)), x
        ),
        lambda scores: mm.ScoreRpcResponse(
            response=mm.ScoreResponse(results=[mm.ScoreResult(score=s) for s in scores])
        ),
    )
    Embed = forward(
        mm.EmbedRpcRequest,
        base.MM_EMBED,
        lambda r, model, x: model.mm_embed(to_items(list(r.request.items)), x),
        lambda vector: mm.EmbedRpcResponse(
            response=mm.EmbedResponse(embedding=mm.DoubleEmbedding(values=vector))
        ),
    )
