"""Sax's multimodal data service (sax.server.multimodal.MultimodalService), served like the
others: items become plain (kind, value) pairs for the model, and its answers become items."""

from __future__ import annotations

from google.protobuf.message import Message
from saxml.protobuf import multimodal_pb2 as mm
from saxml.protobuf import multimodal_pb2_grpc

from gateway.cell.models import base
from gateway.cell.models.base import ExtraInputs, Item, ServableModel
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


class MultimodalServicer(DataServicer, multimodal_pb2_grpc.MultimodalServiceServicer):
    @forward(base.MM_GENERATE)
    async def Generate(
        self, r: mm.GenerateRpcRequest, model: ServableModel, x: ExtraInputs
    ) -> mm.GenerateRpcResponse:
        samples = await model.mm_generate(to_items(list(r.request.items)), x)
        results = [mm.GenerateResult(items=from_items(i), score=s) for i, s in samples]
        return mm.GenerateRpcResponse(response=mm.GenerateResponse(results=results))

    @forward(base.MM_SCORE)
    async def Score(
        self, r: mm.ScoreRpcRequest, model: ServableModel, x: ExtraInputs
    ) -> mm.ScoreRpcResponse:
        prefix, suffix = (
            to_items(list(r.request.prefix_items)),
            to_items(list(r.request.suffix_items)),
        )
        scores = await model.mm_score(prefix, suffix, x)
        return mm.ScoreRpcResponse(
            response=mm.ScoreResponse(results=[mm.ScoreResult(score=s) for s in scores])
        )

    @forward(base.MM_EMBED)
    async def Embed(
        self, r: mm.EmbedRpcRequest, model: ServableModel, x: ExtraInputs
    ) -> mm.EmbedRpcResponse:
        vector = await model.mm_embed(to_items(list(r.request.items)), x)
        return mm.EmbedRpcResponse(
            response=mm.EmbedResponse(embedding=mm.DoubleEmbedding(values=vector))
        )
