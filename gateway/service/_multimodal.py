"""The gateway's multimodal methods: its MultimodalItem lists <-> Sax's DataItem lists.

A mixin of `SaxGatewayServicer`, which supplies the client and the call options."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from saxgateway.v1 import gateway_pb2 as pb
from saxml.protobuf import multimodal_pb2 as mm

from gateway.client import CallOptions, Client
from gateway.common import limits as lim
from gateway.common.rpc import Context
from gateway.config import GatewaySettings
from gateway.service import _fields as f


def to_sax(
    items: Sequence[pb.MultimodalItem], field: str, payload_limit: int, *, required: bool = False
) -> list[mm.DataItem]:
    """The request's items as Sax's; INVALID_ARGUMENT for an item that is none of them, an
    image or video with no bytes or over ``payload_limit`` bytes, a text over the text limit,
    more items than the limit, or no items where some are ``required``: the bounds the other
    data methods put on their texts and payloads."""
    if required and not items:
        raise f.invalid(field, "required: at least one item")
    if len(items) > lim.MAX_ITEMS:
        raise f.invalid(field, f"{len(items)} items is over the limit of {lim.MAX_ITEMS}")
    out = []
    for index, item in enumerate(items):
        kind = item.WhichOneof("item")
        if kind is None:
            raise f.invalid(f"{field}[{index}]", "set one of text, image_bytes or video")
        value = getattr(item, kind)
        if kind == "text":
            f.bounded(value, f"{field}[{index}].text")
        else:  # as Classify and the others take an image
            f.payload(value, f"{field}[{index}].{kind}", payload_limit)
        out.append(mm.DataItem(**{kind: value}))
    return out


def from_sax(items: Sequence[mm.DataItem]) -> list[pb.MultimodalItem]:
    """Sax's items as the gateway's; kinds the API does not carry (tokens, embeddings) are
    left out."""
    out = []
    for item in items:
        kind = item.WhichOneof("item")
        if kind in ("text", "image_bytes", "video"):
            out.append(pb.MultimodalItem(**{kind: getattr(item, kind)}))
    return out


class MultimodalMethods:
    _client: Client
    _settings: GatewaySettings

    def _target(self, request: Any, context: Context) -> tuple[str, CallOptions]:
        raise NotImplementedError  # SaxGatewayServicer's

    async def MultimodalGenerate(
        self, request: pb.MultimodalGenerateRequest, context: Context
    ) -> pb.MultimodalGenerateResponse:
        model, options = self._target(request, context)
        items = to_sax(request.items, "items", self._settings.max_payload_bytes, required=True)
        done = await self._client.mm_generate(model, mm.GenerateRequest(items=items), options)
        samples = [
            pb.MultimodalSample(items=from_sax(r.items), score=r.score) for r in done.results
        ]
        return pb.MultimodalGenerateResponse(samples=samples)

    async def MultimodalScore(
        self, request: pb.MultimodalScoreRequest, context: Context
    ) -> pb.MultimodalScoreResponse:
        model, options = self._target(request, context)
        limit = self._settings.max_payload_bytes
        sax_request = mm.ScoreRequest(
            suffix_items=to_sax(request.suffix_items, "suffix_items", limit, required=True),
            prefix_items=to_sax(request.prefix_items, "prefix_items", limit),
        )
        done = await self._client.mm_score(model, sax_request, options)
        return pb.MultimodalScoreResponse(scores=[r.score for r in done.results])

    async def MultimodalEmbed(
        self, request: pb.MultimodalEmbedRequest, context: Context
    ) -> pb.MultimodalEmbedResponse:
        model, options = self._target(request, context)
        sax_request = mm.EmbedRequest(
            items=to_sax(request.items, "items", self._settings.max_payload_bytes, required=True)
        )
        embedding = (await self._client.mm_embed(model, sax_request, options)).embedding
        return pb.MultimodalEmbedResponse(embedding=list(embedding.values))
