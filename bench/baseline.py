"""The seed-style baseline: a FastAPI server shaped like the seed's HTTP server for Sax.

    SAX_ROOT=/tmp/root uvicorn bench.baseline:app --port 8000

The seed's routes, each calling the synchronous ``sax`` facade the way the seed called
upstream's ``sax`` module: ``/generate`` looks the model up (``sax.ListDetail``, on the event
loop, as the seed did) and then runs ``LM().Generate`` in a thread pool. It reads SAX_ROOT
from the environment, like the seed. Only the benchmark uses it.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI, HTTPException, Response
from pydantic import BaseModel

from gateway.client import sax

app = FastAPI()
# The seed's pool: one thread per concurrent generate, up to 1,000.
_pool = ThreadPoolExecutor(max_workers=1000)


class ModelRef(BaseModel):
    model: str


class CellRef(BaseModel):
    sax_cell: str


class ModelSpec(BaseModel):
    model: str
    model_path: str
    checkpoint: str
    replicas: int


class GenerateBody(BaseModel):
    model: str
    query: str


def _json(body: Any) -> Response:
    return Response(content=json.dumps(body, indent=4), media_type="application/json")


def _failed(exc: Exception) -> HTTPException:
    return HTTPException(status_code=500, detail=str(exc))


@app.get("/")
def root() -> Response:
    return _json({"message": "HTTP Server for SAX Client"})


@app.get("/listcell")
def listcell(body: ModelRef) -> Response:
    try:
        detail = sax.ListDetail(body.model)
    except Exception as exc:
        raise _failed(exc) from exc
    return _json(
        {
            "model": body.model,
            "model_path": detail.model,
            "checkpoint": detail.ckpt,
            "max_replicas": detail.max_replicas,
            "active_replicas": detail.active_replicas,
        }
    )


@app.get("/listall")
def listall(body: CellRef) -> Response:
    try:
        return _json(sax.ListAll(body.sax_cell))
    except Exception as exc:
        raise _failed(exc) from exc


@app.post("/publish")
def publish(body: ModelSpec) -> Response:
    try:
        sax.Publish(body.model, body.model_path, body.checkpoint, body.replicas)
    except Exception as exc:
        raise _failed(exc) from exc
    return _json(body.model_dump())


@app.put("/update")
def update(body: ModelSpec) -> Response:
    try:
        sax.Update(body.model, body.model_path, body.checkpoint, body.replicas)
    except Exception as exc:
        raise _failed(exc) from exc
    return _json(body.model_dump())


@app.post("/unpublish")
def unpublish(body: ModelRef) -> Response:
    try:
        sax.Unpublish(body.model)
    except Exception as exc:
        raise _failed(exc) from exc
    return _json({"model": body.model})


@app.post("/generate")
async def generate(body: GenerateBody) -> Response:
    try:
        sax.ListDetail(body.model)  # the seed's lookup: one admin RPC per request
        lm = sax.Model(body.model).LM()
        loop = asyncio.get_running_loop()
        texts = await loop.run_in_executor(_pool, lm.Generate, body.query)
    except Exception as exc:
        raise _failed(exc) from exc
    return _json(texts)
