#!/usr/bin/env python3
"""Two tinyserve builds side by side on bench/embeddings.py's load (A B A B ...):

    target/embed-venv/bin/python bench/embeddings_ab.py OLD/tinyserve NEW/tinyserve [--rounds 4]
        [--seconds 8] [--connections 16] [--batch 32] [--folder models/tinyembed]

Same bodies as bench/embeddings.py (`--batch` texts of 8 to 64 tokens from pydoc topics, fixed
seed). Each round starts each build fresh, warms it for 2 s, then drives POST /v1/embeddings
with wrk for `--seconds`; prints requests/s and the server's CPU time per request
(/proc/PID/stat), then the medians and the median of the per-round ratios. A shared machine
moves both builds of a round alike, so the ratios say more than the milliseconds.
"""
import argparse
import json
import statistics
import tempfile
from pathlib import Path

import embeddings as bench


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--folder", default=str(bench.ROOT / "models" / "tinyembed"))
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    folder = Path(args.folder).resolve()
    work = Path(tempfile.mkdtemp(prefix="tinyserve-embed-ab-"))
    models = work / "models"
    models.mkdir()
    (models / folder.name).symlink_to(folder)
    all_texts = bench.texts(folder, 64 * args.batch)
    bodies_file = work / "bodies.jsonl"
    bodies_file.write_text("".join(
        json.dumps({"model": folder.name, "input": all_texts[i:i + args.batch]}) + "\n"
        for i in range(0, len(all_texts), args.batch)))
    results = {"old": [], "new": []}
    for round_ in range(args.rounds):
        for name in ("old", "new"):
            port = bench.free_port()
            process = bench.start_tinyserve(getattr(args, name), str(models), port)
            try:
                url = f"http://127.0.0.1:{port}/v1/embeddings"
                bench.measure(url, bodies_file, args.connections, 2)
                result = bench.measure(url, bodies_file, args.connections, args.seconds,
                                       pid=process.pid)
            finally:
                bench.stop(process)
            results[name].append(result)
            print(f"round {round_ + 1} {name}: {result['requests_per_s']:.0f} requests/s, "
                  f"{result['cpu_ms_per_request']:.2f} ms of server CPU per request, "
                  f"errors {result['errors']}, non-2xx {result['non_2xx']}", flush=True)
    for name in ("old", "new"):
        rps = statistics.median(r["requests_per_s"] for r in results[name])
        cpu = statistics.median(r["cpu_ms_per_request"] for r in results[name])
        print(f"{name}: {rps:.0f} requests/s, {cpu:.2f} ms CPU per request (medians)")
    pairs = list(zip(results["old"], results["new"]))
    throughput = [n["requests_per_s"] / o["requests_per_s"] for o, n in pairs]
    cpu = [o["cpu_ms_per_request"] / n["cpu_ms_per_request"] for o, n in pairs]
    print(f"new / old requests/s: {statistics.median(throughput):.2f}x "
          f"(rounds {min(throughput):.2f}-{max(throughput):.2f}x); "
          f"CPU per request old / new: {statistics.median(cpu):.2f}x "
          f"(rounds {min(cpu):.2f}-{max(cpu):.2f}x)")


if __name__ == "__main__":
    main()
