"""Which ONNX IR versions and opsets a `tinyserve serve` loads: the table in the README.

Usage: python ir_opsets.py --tinyserve target/debug/tinyserve --scratch DIR

Builds one tiny model per IR version (1 to one past the newest the installed `onnx` writes,
each at the newest opset that IR version allows, at least 7) and per `ai.onnx` opset (1 to one past the
newest, at the newest IR version), each computing `y = Add(Relu(x), x)` on FP32, serves each
alone (one model that does not load stops the whole server) and sends one inference through
`POST /v2/models/m/infer`. Prints one line per model: `loads` with a correct answer, or the
server's reason.
"""

import argparse
import http.client
import json
import os
import shutil
import subprocess

import onnx
import onnx.defs
from onnx import TensorProto, helper


def model(ir_version, opset):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["r", "x"], ["y"])]
    graph = helper.make_graph(nodes, "m", [x], [y])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir_version
    return m


def newest_opset(ir_version):
    """The newest ai.onnx opset an IR version allows (onnx's VERSION_TABLE)."""
    opsets = [row[2] for row in helper.VERSION_TABLE if row[1] <= ir_version]
    return max(opsets) if opsets else 1


def short(reason):
    """ONNX Runtime's message without the C++ source location and signature before it."""
    reason = reason.split("failed:", 1)[-1]
    if "onnxruntime::" in reason:
        reason = reason.rsplit(") ", 1)[-1]
    reason = reason.removeprefix("error: ").strip()
    sentences = reason.split(". ")
    return reason if len(sentences) < 3 else f"{sentences[0]}. ... {sentences[-1]}"


def serve(tinyserve, folder):
    """(True, None) when the server starts and answers correctly, else (False, reason)."""
    proc = subprocess.Popen(
        [tinyserve, "serve", "--port", "0", "--workers", "2", "--models", folder,
         "--log-level", "error"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        if not line.startswith("listening on http://"):
            proc.wait(timeout=60)
            err = proc.stderr.read().strip().splitlines()
            reason = err[-1] if err else f"exit {proc.returncode}"
            return False, short(reason)
        conn = http.client.HTTPConnection(line.strip().removeprefix("listening on http://"))
        body = {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [-1, 2]}]}
        conn.request("POST", "/v2/models/m/infer", json.dumps(body),
                     {"Content-Type": "application/json"})
        response = conn.getresponse()
        answer = json.loads(response.read())
        if response.status != 200 or answer["outputs"][0]["data"] != [-1, 4]:
            return False, f"answered {response.status} {answer}"
        return True, None
    finally:
        proc.kill()
        proc.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tinyserve", required=True)
    parser.add_argument("--scratch", required=True)
    args = parser.parse_args()
    newest_ir, newest = onnx.IR_VERSION, onnx.defs.onnx_opset_version()
    print(f"onnx {onnx.__version__} writes IR version {newest_ir}, opset {newest}")
    # ONNX Runtime has no kernels for opsets before 7 (see the opset sweep), so the IR sweep
    # uses at least opset 7.
    cases = [(ir, max(7, newest_opset(ir))) for ir in range(1, newest_ir + 2)]
    cases += [(newest_ir, opset) for opset in range(1, newest + 2)]
    for ir, opset in cases:
        folder = os.path.join(args.scratch, f"ir{ir}-opset{opset}")
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        onnx.save(model(ir, opset), os.path.join(folder, "m.onnx"))
        ok, reason = serve(args.tinyserve, folder)
        print(f"IR {ir:2d} opset {opset:2d}: " + ("loads" if ok else f"refused: {reason}"),
              flush=True)
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
