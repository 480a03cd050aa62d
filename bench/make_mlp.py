#!/usr/bin/env python3
"""Write the benchmark's model folders to bench/results/models/ (not committed: 21 MB).

- mlp/mlp.onnx: a compute-bound MLP with fixed-seed random weights,
  input FLOAT [-1 "batch", 256] -> 4 x (MatMul 1280 + Add + Relu) -> output FLOAT [-1, 16].
  21 MB of float32 weights: far larger than the L2 caches (1 MiB per core here), and two
  copies do not fit the 32 MiB L3, so one row (batch 1: a matrix-vector product per layer) is
  bound by memory bandwidth and takes about 0.5 ms with one intra-op thread on the benchmark
  machine; a batch of rows reuses each weight it loads (about 0.1 ms per row at 32 rows),
  which is what dynamic batching exploits.
- iris/iris.onnx: a copy of models/iris.onnx.

Each scenario's servers load one folder, so a server holds only the model it is measured on.

Deterministic: numpy.random.default_rng(0), no network. Prints the in-process time per call
at batch 1 and the per-row time at batch 32 (one onnxruntime thread) as a sanity check.
Usage: bench/.venv/bin/python bench/make_mlp.py [OUT_DIR]
"""
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
INPUT, HIDDEN, LAYERS, OUTPUT = 256, 1280, 4, 16
SEED, OPSET, IR_VERSION = 0, 17, 8


def build():
    """The MLP graph: He-initialized weights (normal(0, sqrt(2/fan_in))), zero biases."""
    rng = np.random.default_rng(SEED)
    sizes = [INPUT] + [HIDDEN] * LAYERS + [OUTPUT]
    nodes, inits, x = [], [], "input"
    for i, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
        w = rng.normal(0.0, np.sqrt(2.0 / fan_in), (fan_in, fan_out)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"),
                  numpy_helper.from_array(np.zeros(fan_out, np.float32), f"b{i}")]
        last = i == len(sizes) - 2
        out = "output" if last else f"h{i}"
        nodes += [helper.make_node("MatMul", [x, f"w{i}"], [f"z{i}"]),
                  helper.make_node("Add", [f"z{i}", f"b{i}"], [out if last else f"a{i}"])]
        if not last:
            nodes.append(helper.make_node("Relu", [f"a{i}"], [out]))
        x = out
    graph = helper.make_graph(
        nodes, "bench_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", INPUT])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", OUTPUT])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="tinyserve-bench")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def per_call(session, batch, seconds=1.0):
    """Median seconds per session.run on `batch` random rows."""
    x = np.random.default_rng(1).standard_normal((batch, INPUT)).astype(np.float32)
    for _ in range(20):
        session.run(None, {"input": x})
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        session.run(None, {"input": x})
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "results" / "models"
    for name in ("mlp", "iris"):
        (out / name).mkdir(parents=True, exist_ok=True)
    path = out / "mlp" / "mlp.onnx"
    onnx.save(build(), path)
    shutil.copyfile(HERE.parent / "models" / "iris.onnx", out / "iris" / "iris.onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    one, many = per_call(session, 1), per_call(session, 32)
    print(f"{path} ({path.stat().st_size / 1e6:.1f} MB): batch 1 {one * 1e3:.3f} ms per call; "
          f"batch 32 {many / 32 * 1e3:.3f} ms per row (1 onnxruntime thread)")


if __name__ == "__main__":
    main()
