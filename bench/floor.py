#!/usr/bin/env python3
"""The floor: in-process ONNX Runtime time per call, with no server in the way.

For each model: the median time of one `session.run` on one row (batch 1, one intra-op
thread), the per-row time of a batch of 32, and the calls per second at batch 1 using both
cores, in three ways: one session per core (each called by its own thread), one session
called by one thread per core at once (onnxruntime's Run is thread-safe), and one session with
one intra-op thread per core. The best of the three is the floor's throughput: the most a
server without batching could reach on this machine. Prints JSON.
Usage: bench/.venv/bin/python bench/floor.py MODELS_DIR [SECONDS]
"""
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent / "servers"))
from onnx_models import load_models  # noqa: E402  (the servers' loader: same session options)


def rows(session, n):
    spec = session.get_inputs()[0]
    width = int(np.prod([d for d in spec.shape[1:]]))
    return {spec.name: (np.arange(n * width, dtype=np.float32).reshape(n, width) % 7) * 0.5}


def median_call(session, feeds, seconds):
    for _ in range(50):
        session.run(None, feeds)
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    return float(np.median(times)), len(times)


def session(folder, name, intra):
    if intra == 1:
        return load_models(folder)[name]  # exactly the servers' session options
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = intra, 1
    return ort.InferenceSession(str(Path(folder) / f"{name}.onnx"), options,
                                providers=["CPUExecutionProvider"])


def throughput(folder, name, threads, seconds, sessions_count=None, intra=1):
    """Calls/s of `threads` threads calling `sessions_count` sessions (round robin)."""
    pool = [session(folder, name, intra) for _ in range(sessions_count or threads)]
    sessions = [pool[i % len(pool)] for i in range(threads)]
    counts = [0] * threads
    end = time.perf_counter() + seconds

    def loop(i):
        feeds, n = rows(sessions[i], 1), 0
        while time.perf_counter() < end:
            sessions[i].run(None, feeds)
            n += 1
        counts[i] = n

    started = time.perf_counter()
    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - started)


def main():
    folder = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
    cores = os.cpu_count() or 2
    report = {"onnxruntime": ort.__version__, "threads": cores, "models": {}}
    for name, session in load_models(folder).items():
        one, calls = median_call(session, rows(session, 1), seconds)
        batch, _ = median_call(session, rows(session, 32), seconds / 2)
        ways = {
            f"{cores} sessions x 1 thread": throughput(folder, name, cores, seconds),
            f"1 session, {cores} callers": throughput(folder, name, cores, seconds, 1),
            f"1 session x {cores} intra-op threads": throughput(folder, name, 1, seconds, 1, cores),
        }
        top = max(ways, key=ways.get)
        report["models"][name] = {
            "per_call_us": one * 1e6, "calls": calls, "batch32_per_row_us": batch / 32 * 1e6,
            "throughput_rps": ways[top], "throughput_config": top, "throughput_ways": ways}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
