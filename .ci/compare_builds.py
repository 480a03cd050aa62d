"""Starts two tinyserve builds on the same models and checks that they answer alike.

Used by .ci/aarch64: the reference is the x86-64 build, the candidate the aarch64 build under
qemu-user. Each server is `COMMAND serve --port 0 --models DIR`; the requests are a predict,
a KServe v2 infer (JSON and binary outputs) and a greedy (temperature 0) /v1 completion.
Integers, labels, shapes and generated text must be equal; floats equal within 1e-6 relative, a few float32 ulps
(the two builds run different SIMD kernels). Prints one "ok ..." line per check; exits 1 on
the first difference.

usage: compare_builds.py --reference CMD --candidate CMD --models DIR
"""

import argparse
import json
import math
import shlex
import struct
import subprocess
import sys
import threading
import time
import urllib.request

START_LIMIT = 600  # seconds: the candidate may fetch ONNX Runtime first, and runs emulated


def start(command, models, name):
    argv = shlex.split(command) + ["serve", "--port", "0", "--workers", "4", "--models", models]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    found = {}

    def read():
        for line in proc.stdout:
            sys.stdout.write(f"[{name}] {line}")
            if line.startswith("listening on http://"):
                found["url"] = line.split()[-1]

    threading.Thread(target=read, daemon=True).start()
    deadline = time.time() + START_LIMIT
    while "url" not in found:
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            sys.exit(f"FAIL  {name} did not start ({command})")
        time.sleep(0.2)
    return proc, found["url"]


def post(url, path, body):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as res:
        return res.status, res.headers.get("Content-Type"), res.read(), \
            res.headers.get("Inference-Header-Content-Length")


def same(a, b, where="$"):
    """None if `a` and `b` agree, else where they first differ."""
    if isinstance(a, float) or isinstance(b, float):
        ok = isinstance(a, (int, float)) and isinstance(b, (int, float)) and \
            math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-30)
        return None if ok else f"{where}: {a!r} vs {b!r}"
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return f"{where}: keys {sorted(a)} vs {sorted(b)}"
        return next((d for k in a if (d := same(a[k], b[k], f"{where}.{k}"))), None)
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where}: {len(a)} vs {len(b)} items"
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := same(x, y, f"{where}[{i}]"))), None)
    return None if a == b else f"{where}: {a!r} vs {b!r}"


def binary_outputs(reply):
    """A binary v2 answer as JSON: its header, each FP32 output's bytes decoded into `data`."""
    body, header_len = reply[2], int(reply[3])
    header, rest = json.loads(body[:header_len]), body[header_len:]
    for output in header["outputs"]:
        size = output["parameters"]["binary_data_size"]
        raw, rest = rest[:size], rest[size:]
        fmt = {"FP32": "f", "INT64": "q"}[output["datatype"]]
        output["data"] = list(struct.unpack(f"<{size // struct.calcsize(fmt)}{fmt}", raw))
    return header


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reference", required=True)
    parser.add_argument("--candidate", required=True)
    parser.add_argument("--models", required=True)
    args = parser.parse_args()

    iris = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
    checks = [
        ("predict iris", "/models/iris/predict", {"inputs": {"input": iris}}),
        ("v2 infer iris", "/v2/models/iris/infer",
         {"inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP32",
                      "data": [x for row in iris for x in row]}]}),
        ("v2 infer iris, binary outputs", "/v2/models/iris/infer",
         {"inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP32",
                      "data": [x for row in iris for x in row]}],
          "parameters": {"binary_data_output": True}}),
        ("greedy /v1 completion of bytelm", "/v1/completions",
         {"model": "bytelm", "prompt": "The Python tutorial", "max_tokens": 24, "temperature": 0}),
    ]
    servers = []
    try:
        for name, command in (("x86-64", args.reference), ("aarch64", args.candidate)):
            servers.append(start(command, args.models, name))
        (_, ref), (_, cand) = servers
        for what, path, body in checks:
            a, b = post(ref, path, body), post(cand, path, body)
            if a[0] != 200 or b[0] != 200 or a[1] != b[1]:
                sys.exit(f"FAIL  {what}: status/type {a[:2]} vs {b[:2]}")
            if a[1] == "application/json":
                diff = same(json.loads(a[2]), json.loads(b[2]))
                if path == "/v1/completions":  # ids and timestamps differ by design
                    x, y = json.loads(a[2]), json.loads(b[2])
                    diff = same([x["choices"], x["usage"]], [y["choices"], y["usage"]])
            else:  # binary outputs: the JSON header, then raw little-endian tensors
                diff = same(binary_outputs(a), binary_outputs(b))
            if diff:
                sys.exit(f"FAIL  {what}: the builds differ at {diff}")
            shown = json.loads(b[2])["choices"][0]["text"] if path == "/v1/completions" else f"{len(b[2])} bytes"
            print(f"ok    {what}: same answer ({shown!r})")
    finally:
        for proc, _ in servers:
            proc.kill()
    print("all checks passed")


if __name__ == "__main__":
    main()
