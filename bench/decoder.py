#!/usr/bin/env python3
"""Decoder folders through /v1 (issue #15): tinyserve against the Python onnxruntime loop.

    target/pyenv/bin/python bench/decoder.py [--folder models/tinychat] [--tokens 128]
        [--streams 16] [--repeat 3] [--binary target/release/tinyserve] [--json OUT]

In one run, on the same model folder:

1. **One stream**: tinyserve (`POST /v1/completions`, `"stream": true`, greedy) and the
   reference loop of models/decoder_reference.py (`tokenizers` + onnxruntime, prompt once then
   one token per step with the cache, greedy), `--tokens` tokens each, `--repeat` rounds of
   one run each, interleaved (so both see the same moments of a shared machine), medians:
   time to first token (TTFT: request sent to first text chunk; for Python, encode + prompt
   run + argmax + decode) and tokens/s (generated tokens / whole time, the request's
   included). The HTTP client reads the stream in blocks and parses only the usage event, so
   that its own Python work per event stays out of the server's rate.
2. **`--streams` concurrent streams**: the same, all started at once, 3 interleaved rounds (tinyserve: one HTTP
   client thread per stream; Python: one thread per stream sharing one InferenceSession, as a
   Python server would; onnxruntime releases the GIL while it runs): aggregate tokens/s and
   the mean and worst TTFT.
3. **Per-token time at position 16 vs 256**, by CPU time, not wall clock (the machine is
   shared): the server's CPU (the sum of every thread's run time from
   /proc/PID/task/*/schedstat, ns) for a request of `max_tokens = p - prompt + K` minus that
   for `max_tokens = p - prompt`, divided by K = 64: the tokens at positions p .. p+K-1 alone,
   the prompt and fixed per-request work cancelled out; the requests go over one kept-alive
   connection, so the thread that serves them lives on and keeps its count. Median of
   `--repeat`×5 pairs. For
   the Python loop, each step's thread CPU time (time.thread_time_ns), median over the same
   positions.

Both sides generate greedily and ignore nothing: the prompt is chosen so that greedy decoding
reaches the needed length without an end-of-sequence token (checked: the usage is reported).
Prints a Markdown table; `--json OUT` writes every number.
"""
import argparse
import glob
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "The "
K = 64


# ---------------------------------------------------------------- tinyserve


def start_server(binary, models, extra):
    proc = subprocess.Popen([binary, "serve", "--port", "0", "--models", str(models),
                             "--log-level", "warn", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        proc.kill()
        raise SystemExit(f"tinyserve did not start: {line!r} {proc.stderr.read()}")
    return proc, line.split()[-1]


def post(url, body, stream):
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(req, timeout=600)


FIRST_TEXT = re.compile(rb'"text":"[^"]')


def server_stream(base, model, tokens):
    """One streamed completion: (ttft s, total s, completion tokens). The client reads the
    stream in large blocks and parses only the usage event at the end, so its own work per
    token (a Python client parsing every event costs as much as generating it) stays out of
    the server's rate; the first text chunk is found with a byte search."""
    body = {"model": model, "prompt": PROMPT, "max_tokens": tokens, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}}
    host, port = base.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    start = time.perf_counter()
    conn.request("POST", "/v1/completions", json.dumps(body),
                 {"Content-Type": "application/json"})
    res = conn.getresponse()
    first, blocks = None, []
    while True:
        block = res.read1(65536)
        if not block:
            break
        if first is None and FIRST_TEXT.search(block):
            first = time.perf_counter()
        blocks.append(block)
    end = time.perf_counter()
    conn.close()
    usage = None
    for line in b"".join(blocks).decode().splitlines():
        if line.startswith("data: {") and '"usage"' in line:
            usage = json.loads(line[6:])["usage"]
    return first - start, end - start, usage["completion_tokens"]


def server_cpu_ns(pid):
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            total += int(Path(path).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def server_request_cpu(conn, pid, model, max_tokens):
    """CPU ns the server spent on one plain (non-streamed) completion, sent on the kept-alive
    connection `conn` (so the thread that serves it lives on and keeps its count)."""
    body = {"model": model, "prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0}
    before = server_cpu_ns(pid)
    conn.request("POST", "/v1/completions", json.dumps(body),
                 {"Content-Type": "application/json"})
    answer = json.loads(conn.getresponse().read())
    after = server_cpu_ns(pid)
    if answer["usage"]["completion_tokens"] != max_tokens:
        raise SystemExit(f"greedy stopped early: {answer['usage']}")
    return after - before


# ---------------------------------------------------------------- the Python reference loop


class Reference:
    """decoder_reference.py's loop, timed; one InferenceSession shared by the threads."""

    def __init__(self, folder, threads):
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(folder / "model.onnx"), options,
                                            providers=["CPUExecutionProvider"])
        self.inputs = self.session.get_inputs()
        self.names = [i.name for i in self.inputs]
        self.outputs = [o.name for o in self.session.get_outputs()]
        config = json.loads((folder / "generation_config.json").read_text())
        eos = config.get("eos_token_id")
        self.eos = set(eos if isinstance(eos, list) else [eos])

    def run(self, tokens, step_cpu=None):
        """Generates `tokens` greedily from PROMPT: (ttft s, total s, tokens generated);
        `step_cpu`, a list, gets each step's thread CPU ns by position."""
        start = time.perf_counter()
        ids = self.tokenizer.encode(PROMPT, add_special_tokens=True).ids
        past = {s.name: np.zeros((1, s.shape[1], 0, s.shape[3]), np.float32)
                for s in self.inputs if s.name.startswith("past_key_values.")}
        fed, length, generated, text, first = list(ids), len(ids), [], "", None
        while len(generated) < tokens:
            cpu = time.thread_time_ns()
            feed = {"input_ids": np.asarray([fed], np.int64),
                    "attention_mask": np.ones((1, length), np.int64)}
            if "position_ids" in self.names:
                feed["position_ids"] = np.arange(length - len(fed), length, dtype=np.int64)[None]
            feed.update(past)
            outputs = dict(zip(self.outputs, self.session.run(None, feed)))
            past = {n.replace("present.", "past_key_values."): v
                    for n, v in outputs.items() if n.startswith("present.")}
            token = int(np.argmax(outputs["logits"][0, -1]))
            if token in self.eos:
                break
            generated.append(token)
            # Streaming detokenization, as a server must do to send each piece.
            new = self.tokenizer.decode(generated[-2:], skip_special_tokens=True)
            text += new
            if step_cpu is not None and len(fed) == 1:
                step_cpu.append((length - 1, time.thread_time_ns() - cpu))
            if first is None:
                first = time.perf_counter()
            fed = [token]
            length += 1
        return first - start, time.perf_counter() - start, len(generated)


# ---------------------------------------------------------------- runs


def concurrent(fn, streams):
    results = [None] * streams
    barrier = threading.Barrier(streams + 1)

    def worker(i):
        barrier.wait()
        results[i] = fn()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(streams)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    tokens = sum(r[2] for r in results)
    ttfts = [r[0] for r in results]
    return {"tokens_per_s": tokens / wall, "ttft_mean_ms": 1000 * statistics.mean(ttfts),
            "ttft_max_ms": 1000 * max(ttfts), "tokens": tokens, "wall_s": wall}


def single(runs):
    """Median tokens/s and time to first token of several one-stream runs."""
    rates = [r[2] / r[1] for r in runs]
    return {"tokens_per_s": statistics.median(rates),
            "ttft_ms": 1000 * statistics.median(r[0] for r in runs),
            "runs_tokens_per_s": rates}


def median_of(rounds):
    """The round with the median aggregate rate, with every round's rate."""
    ordered = sorted(rounds, key=lambda r: r["tokens_per_s"])
    middle = dict(ordered[len(ordered) // 2])
    middle["rounds_tokens_per_s"] = [r["tokens_per_s"] for r in rounds]
    return middle


def loadavg():
    return Path("/proc/loadavg").read_text().split()[:3]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default=str(ROOT / "models/tinychat"))
    parser.add_argument("--binary", default=str(ROOT / "target/release/tinyserve"))
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--server-args", default="--sessions-per-model 2 --intra-threads 1",
                        help="extra `tinyserve serve` flags (default: a session per core, "
                             "one intra-op thread each)")
    parser.add_argument("--python-threads", type=int, default=1,
                        help="intra-op threads of the Python session (0: onnxruntime's default)")
    parser.add_argument("--json")
    args = parser.parse_args()
    folder = Path(args.folder)
    model = folder.name
    results = {"model": model, "tokens": args.tokens, "streams": args.streams,
               "cores": os.cpu_count(), "loadavg_start": loadavg()}

    results["server_args"] = args.server_args
    results["python_threads"] = args.python_threads
    reference = Reference(folder, args.python_threads)
    reference.run(8)  # warm-up
    proc, base = start_server(args.binary, folder.parent, args.server_args.split())
    try:
        server_stream(base, model, 8)  # warm-up
        # Interleaved, so that both sides see the same moments of a shared machine's load.
        ours, theirs = [], []
        for _ in range(args.repeat):
            ours.append(server_stream(base, model, args.tokens))
            theirs.append(reference.run(args.tokens))
        results["tinyserve_1"], results["python_1"] = single(ours), single(theirs)
        results["ratio_1_per_round"] = [(o[2] / o[1]) / (t[2] / t[1])
                                        for o, t in zip(ours, theirs)]
        ours, theirs = [], []
        for _ in range(3):
            ours.append(concurrent(lambda: server_stream(base, model, args.tokens),
                                   args.streams))
            theirs.append(concurrent(lambda: reference.run(args.tokens), args.streams))
        results["tinyserve_n"], results["python_n"] = median_of(ours), median_of(theirs)
        prompt = len(Tokenizer.from_file(str(folder / "tokenizer.json"))
                     .encode(PROMPT, add_special_tokens=True).ids)
        per_token = {}
        host, port = base.removeprefix("http://").rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=600)
        for position in (16, 256):
            short = position - prompt
            samples = []
            for _ in range(args.repeat * 5):
                a = server_request_cpu(conn, proc.pid, model, short)
                b = server_request_cpu(conn, proc.pid, model, short + K)
                samples.append((b - a) / K)
            per_token[position] = samples
        conn.close()
        results["tinyserve_per_token_us"] = {
            str(p): statistics.median(s) / 1000 for p, s in per_token.items()}
        results["tinyserve_per_token_quartiles_us"] = {
            str(p): [q / 1000 for q in statistics.quantiles(s, n=4)]
            for p, s in per_token.items()}
        results["tinyserve_per_token_samples_us"] = {
            str(p): [x / 1000 for x in s] for p, s in per_token.items()}
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    steps = []
    for _ in range(args.repeat):
        reference.run(256 + K, steps)
    results["python_per_token_us"] = {
        str(p): statistics.median(ns for pos, ns in steps if p <= pos < p + K) / 1000
        for p in (16, 256)}
    results["loadavg_end"] = loadavg()

    t1, p1 = results["tinyserve_1"], results["python_1"]
    tn, pn = results["tinyserve_n"], results["python_n"]
    tp, pp = results["tinyserve_per_token_us"], results["python_per_token_us"]
    print(f"model {model}, {args.tokens} tokens per stream, {os.cpu_count()} cores, "
          f"load average {' '.join(results['loadavg_start'])} at the start, "
          f"{' '.join(results['loadavg_end'])} at the end; tinyserve serve "
          f"{args.server_args}; Python intra-op threads {args.python_threads or 'default'}\n")
    print("| | tinyserve | Python onnxruntime loop | ratio |")
    print("| --- | --- | --- | --- |")
    per_round = results["ratio_1_per_round"]
    print(f"| 1 stream: tokens/s (median of {args.repeat}) | {t1['tokens_per_s']:.0f} | "
          f"{p1['tokens_per_s']:.0f} | {t1['tokens_per_s'] / p1['tokens_per_s']:.2f}× "
          f"(rounds {min(per_round):.2f}–{max(per_round):.2f}×) |")
    print(f"| 1 stream: time to first token | {t1['ttft_ms']:.1f} ms | {p1['ttft_ms']:.1f} ms | |")
    print(f"| {args.streams} streams: tokens/s (all streams, median of 3) | "
          f"{tn['tokens_per_s']:.0f} | "
          f"{pn['tokens_per_s']:.0f} | {tn['tokens_per_s'] / pn['tokens_per_s']:.2f}× |")
    print(f"| {args.streams} streams: time to first token, mean / worst | "
          f"{tn['ttft_mean_ms']:.0f} / {tn['ttft_max_ms']:.0f} ms | "
          f"{pn['ttft_mean_ms']:.0f} / {pn['ttft_max_ms']:.0f} ms | |")
    print(f"| CPU per token at position 16 | {tp['16']:.0f} µs | {pp['16']:.0f} µs | |")
    print(f"| CPU per token at position 256 | {tp['256']:.0f} µs | {pp['256']:.0f} µs | |")
    print(f"| position 256 / position 16 | {tp['256'] / tp['16']:.2f}× | "
          f"{pp['256'] / pp['16']:.2f}× | |")
    quartiles = results["tinyserve_per_token_quartiles_us"]
    print(f"\ntinyserve CPU per token over {len(per_token[16])} pairs, quartiles: "
          + "; ".join(f"position {p}: " + " / ".join(f"{q:.0f}" for q in quartiles[p]) + " µs"
                      for p in ("16", "256")))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
