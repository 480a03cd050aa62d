"""The FastAPI baseline, served by uvicorn (uvloop + httptools): the same API as tinyserve's
bench server.

- POST /models/{name}/predict  {"inputs": {"input": [[...]]}} -> {"outputs": {...}}; the body
  and the answer are pydantic models (validation, and FastAPI's fast pydantic serialization);
  inference runs off the event loop, in the thread pool (run_in_threadpool)
- GET  /fanout  3 parallel GETs to the mock upstream: one shared httpx.AsyncClient (pooled,
  keep-alive, limits sized for 256 concurrent requests x 3 calls) and asyncio.gather
- GET  /sse     20 Server-Sent Events, 10 ms apart (an async generator, asyncio.sleep)
- GET  /healthz

Models and the HTTP client are created once per worker process in the lifespan handler.
Environment: BENCH_MODELS (folder of .onnx files), BENCH_UPSTREAM (http://127.0.0.1:PORT).
"""
import asyncio
import os
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from onnx_models import InvalidInput, load_models, predict as run_model


@asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.models = load_models(os.environ["BENCH_MODELS"])
    limits = httpx.Limits(max_connections=1024, max_keepalive_connections=1024)
    async with httpx.AsyncClient(base_url=os.environ["BENCH_UPSTREAM"], limits=limits,
                                 timeout=httpx.Timeout(30.0, connect=5.0)) as client:
        app.state.http = client
        yield


app = FastAPI(lifespan=lifespan)


class PredictRequest(BaseModel):
    inputs: dict[str, list[Any]]


class PredictResponse(BaseModel):
    outputs: dict[str, list[Any]]


@app.get("/healthz")
async def healthz():
    return {"status": "ok"}


@app.post("/models/{name}/predict")
async def predict(name: str, body: PredictRequest, request: Request) -> PredictResponse:
    session = request.app.state.models.get(name)
    if session is None:
        raise HTTPException(404, f"model {name!r} not found")
    try:
        outputs = await run_in_threadpool(run_model, session, body.inputs)
    except InvalidInput as err:
        raise HTTPException(422, str(err)) from None
    return PredictResponse(outputs=outputs)


@app.get("/fanout")
async def fanout(request: Request):
    http: httpx.AsyncClient = request.app.state.http
    try:
        replies = await asyncio.gather(*(http.get(f"/item/{i}") for i in range(3)))
        for reply in replies:
            reply.raise_for_status()
    except httpx.HTTPError as err:  # a failed upstream call is a 502, as in tinyserve
        raise HTTPException(502, f"upstream: {err}") from None
    return {"items": [reply.json() for reply in replies]}


@app.get("/sse")
async def sse():
    async def events():
        for i in range(20):
            if i:
                await asyncio.sleep(0.01)
            yield f"id: {i}\ndata: token {i}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
