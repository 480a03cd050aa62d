"""The Flask baseline, served by gunicorn (sync workers, or gthread): the same API as
tinyserve's bench server.

- POST /models/<name>/predict  {"inputs": {"input": [[...]]}} -> {"outputs": {...}}
- GET  /fanout  3 parallel GETs to the mock upstream: a ThreadPoolExecutor and one pooled,
  thread-safe urllib3 PoolManager per worker process (keep-alive connections reused)
- GET  /sse     20 Server-Sent Events, 10 ms apart (a streamed generator)
- GET  /healthz

Environment: BENCH_MODELS (folder of .onnx files), BENCH_UPSTREAM (http://127.0.0.1:PORT).
gunicorn imports this module in each worker (no --preload), so every worker loads the models
once, at start, never per request.
"""
import os
import time
from concurrent.futures import ThreadPoolExecutor

import urllib3
from flask import Flask, Response, jsonify, request

from onnx_models import InvalidInput, load_models, predict as run_model

app = Flask(__name__)
MODELS = load_models(os.environ["BENCH_MODELS"])
UPSTREAM = os.environ["BENCH_UPSTREAM"].rstrip("/")
HTTP = urllib3.PoolManager(maxsize=64, retries=False,
                           timeout=urllib3.Timeout(connect=5.0, read=30.0))
CALLS = ThreadPoolExecutor(max_workers=32)


def error(status, message):
    return jsonify(error=message), status


@app.get("/healthz")
def healthz():
    return {"status": "ok"}


@app.post("/models/<name>/predict")
def predict(name):
    session = MODELS.get(name)
    if session is None:
        return error(404, f"model {name!r} not found")
    body = request.get_json()  # 415 / 400 from Flask itself
    try:
        return {"outputs": run_model(session, body.get("inputs") if isinstance(body, dict) else None)}
    except InvalidInput as err:
        return error(422, str(err))


def fetch(i):
    reply = HTTP.request("GET", f"{UPSTREAM}/item/{i}")
    if reply.status != 200:
        raise RuntimeError(f"upstream answered {reply.status}")
    return reply.json()


@app.get("/fanout")
def fanout():
    calls = [CALLS.submit(fetch, i) for i in range(3)]
    try:
        return {"items": [call.result(timeout=5) for call in calls]}
    except Exception as err:  # a failed or slow upstream call is a 502, as in tinyserve
        return error(502, f"upstream: {err}")


@app.get("/sse")
def sse():
    def events():
        for i in range(20):
            if i:
                time.sleep(0.01)
            yield f"id: {i}\ndata: token {i}\n\n"

    return Response(events(), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
