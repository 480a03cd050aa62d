#!/usr/bin/env python3
"""Embeddings (issue #24): tinyserve's `/v1/embeddings` against a Python server of the same
folder (FastAPI + uvicorn + onnxruntime + tokenizers, bench/embeddings_fastapi.py).

    python3 -m venv target/embed-venv
    target/embed-venv/bin/pip install -r bench/embeddings-requirements.txt
    cargo build --release
    target/embed-venv/bin/python bench/embeddings.py [--folder models/tinyembed] [--seconds 10]
        [--rounds 3] [--connections 16] [--batch 32] [--json OUT]

Requests: `--batch` texts each (32), every text 8 to 64 tokens (special tokens included) cut
from CPython's pydoc topics with a fixed seed; 64 different bodies, sent in turn by wrk
(bench/embeddings.lua) over `--connections` kept-alive connections (16) for `--seconds`.
Each round starts each server fresh, checks that its vectors equal the other's (cosine >=
0.9999 on one body), warms it for 2 s, then measures; servers alternate, so both see the same
moments of a shared machine. Both use one ONNX Runtime intra-op thread per session and one
session (tinyserve) or worker process (uvicorn) per core. Also measures the server's CPU time
per request (user + system time of the server process and its children over the measured run,
/proc/PID/stat), which a machine shared with other work disturbs far less than throughput.
Prints a Markdown table (medians of the rounds: requests/s, texts/s, CPU per request, p50 and
p99 latency) and the ratios.
"""
import argparse
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parents[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def texts(folder, count, seed=0):
    """`count` texts of 8 to 64 tokens (special tokens included), cut from pydoc topics."""
    from pydoc_data.topics import topics
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    words = re.findall(r"\S+", " ".join(topics[k] for k in sorted(topics)))
    rng = random.Random(seed)
    out = []
    while len(out) < count:
        want = rng.randint(8, 64)
        start = rng.randrange(len(words) - 100)
        n = max(1, want // 2)
        while True:
            text = " ".join(words[start:start + n])
            length = len(tokenizer.encode(text).ids)
            if length >= want or n > 90:
                break
            n += 1
        while length > 64 and n > 1:
            n -= 1
            text = " ".join(words[start:start + n])
            length = len(tokenizer.encode(text).ids)
        if 8 <= length <= 64:
            out.append(text)
    return out


def post(url, body):
    request = urllib.request.Request(url, json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.loads(reply.read())


def wait_ready(url, process, limit=60.0):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except Exception:  # noqa: BLE001
            time.sleep(0.1)
    raise RuntimeError(f"{url} not ready within {limit} s")


def start_tinyserve(binary, models, port):
    process = subprocess.Popen(
        [binary, "serve", "--models", models, "--port", str(port), "--log-level", "warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(f"http://127.0.0.1:{port}/healthz", process)
    return process


def start_python(folder, port, workers):
    env = dict(os.environ, EMBED_FOLDER=str(folder))
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "embeddings_fastapi:app", "--port", str(port),
         "--workers", str(workers), "--loop", "uvloop", "--http", "httptools",
         "--log-level", "warning", "--no-access-log"],
        cwd=ROOT / "bench", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(f"http://127.0.0.1:{port}/docs", process)
    return process


def stop(process):
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def vectors(url, body):
    return np.array([d["embedding"] for d in post(url, body)["data"]], np.float64)


def descendants(pid):
    """`pid` and every process below it."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                queue.extend(int(c) for c in task.read_text().split())
            except OSError:
                pass
    return found


def cpu_seconds(pid):
    """User + system CPU time of `pid` and its descendants (all their threads)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in descendants(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def measure(url, bodies_file, connections, seconds, pid=None):
    before = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency",
         "-s", str(ROOT / "bench" / "embeddings.lua"), url, "--", str(bodies_file)],
        capture_output=True, text=True, check=True).stdout
    line = next(line for line in out.splitlines() if line.startswith("JSON "))
    result = json.loads(line[5:])
    result["requests_per_s"] = result["requests"] / (result["duration_us"] / 1e6)
    if pid:
        result["cpu_ms_per_request"] = (cpu_seconds(pid) - before) * 1000 / max(
            result["requests"], 1)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", default=str(ROOT / "models" / "tinyembed"))
    parser.add_argument("--binary", default=str(ROOT / "target" / "release" / "tinyserve"))
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--json")
    args = parser.parse_args()
    folder = Path(args.folder).resolve()
    cores = os.cpu_count() or 2
    work = Path(tempfile.mkdtemp(prefix="tinyserve-embed-bench-"))
    models = work / "models"
    models.mkdir()
    (models / folder.name).symlink_to(folder)
    all_texts = texts(folder, 64 * args.batch)
    bodies = [{"model": folder.name, "input": all_texts[i:i + args.batch]}
              for i in range(0, len(all_texts), args.batch)]
    bodies_file = work / "bodies.jsonl"
    bodies_file.write_text("".join(json.dumps(b) + "\n" for b in bodies))
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    lengths = [len(tokenizer.encode(t).ids) for t in all_texts]
    print(f"{len(bodies)} bodies of {args.batch} texts, {min(lengths)} to {max(lengths)} tokens "
          f"(mean {statistics.mean(lengths):.1f}); {args.connections} connections, "
          f"{args.seconds} s x {args.rounds} rounds; {cores} cores", flush=True)

    results = {"tinyserve": [], "python": []}
    try:
        for round_ in range(args.rounds):
            for name in ("tinyserve", "python"):
                port = free_port()
                process = (start_tinyserve(args.binary, str(models), port) if name == "tinyserve"
                           else start_python(folder, port, cores))
                try:
                    url = f"http://127.0.0.1:{port}/v1/embeddings"
                    if round_ == 0:
                        results[f"{name}_check"] = vectors(url, bodies[0])
                    measure(url, bodies_file, args.connections, 2)
                    result = measure(url, bodies_file, args.connections, args.seconds,
                                     process.pid)
                finally:
                    stop(process)
                results[name].append(result)
                print(f"round {round_ + 1} {name}: {result['requests_per_s']:.0f} requests/s, "
                      f"{result['cpu_ms_per_request']:.2f} ms of server CPU per request, "
                      f"p50 {result['latency_us']['p50'] / 1000:.1f} ms, errors "
                      f"{result['errors']}, non-2xx {result['non_2xx']}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    a, b = results.pop("tinyserve_check"), results.pop("python_check")
    cosine = float(min((x @ y) / np.linalg.norm(x) / np.linalg.norm(y) for x, y in zip(a, b)))
    print(f"same vectors: cosine >= {cosine:.7f} over {len(a)} texts")

    def median(name, key):
        return statistics.median(r["latency_us"][key] if key in ("p50", "p99") else r[key]
                                 for r in results[name])

    rows = []
    for name, label in (("tinyserve", "tinyserve"),
                        ("python", f"FastAPI + onnxruntime + tokenizers ({cores} workers)")):
        rps = median(name, "requests_per_s")
        cpu = median(name, "cpu_ms_per_request")
        rows.append((label, rps, rps * args.batch, cpu, median(name, "p50") / 1000,
                     median(name, "p99") / 1000))
    print()
    print("| server | requests/s | texts/s | server CPU per request | texts per CPU-second | "
          "p50 | p99 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, rps, tps, cpu, p50, p99 in rows:
        print(f"| {label} | {rps:,.0f} | {tps:,.0f} | {cpu:.2f} ms | "
              f"{args.batch * 1000 / cpu:,.0f} | {p50:.1f} ms | {p99:.1f} ms |")
    ratios = [t["requests_per_s"] / p["requests_per_s"]
              for t, p in zip(results["tinyserve"], results["python"])]
    cpu_ratios = [p["cpu_ms_per_request"] / t["cpu_ms_per_request"]
                  for t, p in zip(results["tinyserve"], results["python"])]
    print(f"\nthroughput ratio (median of rounds): {rows[0][1] / rows[1][1]:.2f}x "
          f"(rounds {min(ratios):.2f}-{max(ratios):.2f}x); CPU per request, Python / "
          f"tinyserve: {rows[1][3] / rows[0][3]:.2f}x (rounds {min(cpu_ratios):.2f}-"
          f"{max(cpu_ratios):.2f}x)")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "cosine": cosine,
                                               "ratios": ratios}, indent=1))


if __name__ == "__main__":
    main()
