"""The FastAPI baseline, served by uvicorn (uvloop + httptools): the same API as tinyserve's
bench server.

- POST /models/{name}/predict  {"inputs": {"input": [[...]]}} -> {"outputs": {...}}; the body
  and the answer are pydantic models (validation, and FastAPI's fast pydantic serialization);
  inference runs off the event loop, in the thread pool (run_in_threadpool)
- GET  /fanout  3 parallel GETs to the mock upstream: one aiohttp.ClientSession per worker
  (pooled keep-alive connections, no connection limit, so 256 concurrent requests x 3 calls
  never queue) and asyncio.gather. aiohttp, not httpx: httpx 0.28 spent 1.5-1.9 ms of CPU
  per call here (its pool's bookkeeping grows with the connections it holds; the README's
  Surprises); the issue names FastAPI + aiohttp the best Python setup for this job
- GET  /sse     20 Server-Sent Events, 10 ms apart (an async generator, asyncio.sleep)
- GET  /healthz

Models and the HTTP client are created once per worker process in the lifespan handler.
Environment: BENCH_MODELS (folder of .onnx files), BENCH_UPSTREAM (http://127.0.0.1:PORT).
"""
import asyncio
import json
import os
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from onnx_models import InvalidInput, load_models, predict as run_model


@asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.models = load_models(os.environ["BENCH_MODELS"])
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=75)
    timeout = aiohttp.ClientTimeout(total=30.0, connect=5.0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        app.state.http = session
        yield


app = FastAPI(lifespan=lifespan)
UPSTREAM = os.environ.get("BENCH_UPSTREAM", "")


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


async def fetch(http: aiohttp.ClientSession, i: int):
    # A full URL string and json.loads of the bytes: about 14% less CPU per fan-out request
    # here than base_url= and reply.json() (measured at c=64).
    async with http.get(f"{UPSTREAM}/item/{i}") as reply:
        reply.raise_for_status()
        return json.loads(await reply.read())


@app.get("/fanout")
async def fanout(request: Request):
    http: aiohttp.ClientSession = request.app.state.http
    try:
        items = await asyncio.gather(*(fetch(http, i) for i in range(3)))
    except (aiohttp.ClientError, asyncio.TimeoutError) as err:  # a 502, as in tinyserve
        raise HTTPException(502, f"upstream: {err}") from None
    return {"items": items}


@app.get("/sse")
async def sse():
    async def events():
        for i in range(20):
            if i:
                await asyncio.sleep(0.01)
            yield f"id: {i}\ndata: token {i}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
