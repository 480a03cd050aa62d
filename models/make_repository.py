#!/usr/bin/env python3
"""Write the model repository fixture models/tests/repository/: Triton's layout with one model,
`times`, in three versions that answer differently (version k: y = x * k), so a test can tell
which version answered. Deterministic, no network. Run from anywhere:
    python models/make_repository.py
"""
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent / "tests" / "repository"
OPSET, IR_VERSION = 17, 8


def make_times(k, path):
    """y = x * k with x, y float [batch], k an initializer."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "k"], ["y"])], "times",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch"])],
        initializer=[numpy_helper.from_array(np.array(float(k), np.float32), "k")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="tinyserve-make_repository")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.array([1.0, -2.5, 4.0], np.float32)
    assert (sess.run(None, {"x": x})[0] == x * k).all(), f"times {k} differs"


def main():
    for k in (1, 2, 3):
        make_times(k, ROOT / "times" / str(k) / "model.onnx")
        print(f"{ROOT / 'times' / str(k) / 'model.onnx'}: y = x * {k}")


if __name__ == "__main__":
    main()
