#!/usr/bin/env python3
"""Regenerate every committed ONNX model and JSON fixture under models/.

Deterministic: fixed seeds, no network. Run from anywhere:
    python models/make_models.py
"""
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_iris

ROOT = Path(__file__).resolve().parent
TESTS = ROOT / "tests"
OPSET, IR_VERSION = 17, 8

# Iris MLP hyperparameters (documented in README.md).
SEED, HIDDEN, EPOCHS, LR = 0, 16, 2000, 0.5

# Identity-model dtypes: file suffix -> (ONNX element type, numpy dtype).
DTYPES = {
    "bool": (TensorProto.BOOL, np.bool_),
    "uint8": (TensorProto.UINT8, np.uint8),
    "uint16": (TensorProto.UINT16, np.uint16),
    "uint32": (TensorProto.UINT32, np.uint32),
    "uint64": (TensorProto.UINT64, np.uint64),
    "int8": (TensorProto.INT8, np.int8),
    "int16": (TensorProto.INT16, np.int16),
    "int32": (TensorProto.INT32, np.int32),
    "int64": (TensorProto.INT64, np.int64),
    "fp16": (TensorProto.FLOAT16, np.float16),
    "fp32": (TensorProto.FLOAT, np.float32),
    "fp64": (TensorProto.DOUBLE, np.float64),
}


def save(graph, path):
    """Wrap `graph` in an opset-17 / IR-8 model, check it and write it to `path`."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="tinyserve-make_models")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def write_json(obj, path):
    """Write `obj` as indented JSON with a trailing newline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1) + "\n")


def run(path, feeds):
    """Run the model at `path` in onnxruntime (CPU) and return {output name: array}."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def softmax(z):
    """Row-wise numerically stable softmax."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def train_iris():
    """Train a 4-16(tanh)-3 MLP on all of Iris with full-batch gradient descent.

    Returns (float32 params dict, training accuracy). Features are standardized
    with the data set's mean/std, which the params carry so the graph can apply them.
    """
    data = load_iris()
    x, t = data.data, data.target
    mean, std = x.mean(axis=0), x.std(axis=0)
    xs = (x - mean) / std
    onehot = np.eye(3)[t]
    rng = np.random.default_rng(SEED)
    w1 = rng.normal(0.0, 1.0 / np.sqrt(4), (4, HIDDEN))
    b1 = np.zeros(HIDDEN)
    w2 = rng.normal(0.0, 1.0 / np.sqrt(HIDDEN), (HIDDEN, 3))
    b2 = np.zeros(3)
    for _ in range(EPOCHS):
        h = np.tanh(xs @ w1 + b1)
        p = softmax(h @ w2 + b2)
        dz2 = (p - onehot) / len(x)  # d(mean cross-entropy)/d(logits)
        dh = (dz2 @ w2.T) * (1.0 - h**2)
        w2 -= LR * h.T @ dz2
        b2 -= LR * dz2.sum(axis=0)
        w1 -= LR * xs.T @ dh
        b1 -= LR * dh.sum(axis=0)
    params = {k: v.astype(np.float32) for k, v in
              dict(mean=mean, std=std, w1=w1, b1=b1, w2=w2, b2=b2).items()}
    accuracy = float((iris_forward(params, x)[1] == t).mean())
    return params, accuracy


def iris_forward(params, x):
    """NumPy float32 forward pass of the exported graph: (probabilities, label)."""
    xs = (np.asarray(x, np.float32) - params["mean"]) / params["std"]
    h = np.tanh(xs @ params["w1"] + params["b1"])
    probs = softmax(h @ params["w2"] + params["b2"]).astype(np.float32)
    return probs, probs.argmax(axis=1).astype(np.int64)


def make_iris(params):
    """Export the Iris MLP: input [batch,4] raw cm -> probabilities [batch,3], label [batch]."""
    inits = [numpy_helper.from_array(v, k) for k, v in params.items()]
    nodes = [
        helper.make_node("Sub", ["input", "mean"], ["centered"]),
        helper.make_node("Div", ["centered", "std"], ["scaled"]),
        helper.make_node("MatMul", ["scaled", "w1"], ["z1"]),
        helper.make_node("Add", ["z1", "b1"], ["a1"]),
        helper.make_node("Tanh", ["a1"], ["h"]),
        helper.make_node("MatMul", ["h", "w2"], ["z2"]),
        helper.make_node("Add", ["z2", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
        helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "iris_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3]),
         helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"])],
        initializer=inits)
    return save(graph, ROOT / "iris.onnx")


def iris_fixture(params, path):
    """Write iris.json (NumPy reference outputs) and cross-check against onnxruntime."""
    x = load_iris().data
    rng = np.random.default_rng(SEED + 1)
    batches = [x[[0]], x[[0, 50, 100]], x[[70, 77, 83, 106, 119, 133, 134]],
               x[rng.choice(len(x), 8, replace=False)],
               np.array([[6.0, 2.9, 4.5, 1.5], [4.3, 2.0, 1.0, 0.1], [7.9, 4.4, 6.9, 2.5]])]
    cases = []
    for batch in batches:
        probs, label = iris_forward(params, batch)
        got = run(path, {"input": batch.astype(np.float32)})
        assert np.abs(got["probabilities"] - probs).max() < 1e-5, "iris probabilities differ"
        assert (got["label"] == label).all(), "iris labels differ"
        cases.append({"input": batch.tolist(), "probabilities": probs.tolist(),
                      "label": label.tolist()})
    write_json(cases, TESTS / "fixtures" / "iris.json")
    return len(cases)


def make_identities():
    """One Identity model per dtype, x [n,3] -> y [n,3], all in tests/dtypes/."""
    for name, (elem, np_type) in DTYPES.items():
        graph = helper.make_graph(
            [helper.make_node("Identity", ["x"], ["y"])], f"echo_{name}",
            [helper.make_tensor_value_info("x", elem, ["n", 3])],
            [helper.make_tensor_value_info("y", elem, ["n", 3])])
        path = save(graph, TESTS / "dtypes" / f"echo_{name}.onnx")
        sample = np.arange(6).reshape(2, 3).astype(np_type)
        got = run(path, {"x": sample})["y"]
        assert got.dtype == sample.dtype and (got == sample).all(), f"echo_{name} broken"


def make_add_mul():
    """Static two-input, two-output model: sum = a + b, product = a * b, all [2,3] float."""
    def spec(name):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, [2, 3])

    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["sum"]),
         helper.make_node("Mul", ["a", "b"], ["product"])], "add_mul",
        [spec("a"), spec("b")], [spec("sum"), spec("product")])
    path = save(graph, TESTS / "multi" / "add_mul.onnx")
    # Multiples of 1/4: every sum and product is exact in float32.
    a = np.array([[1.0, 2.0, 3.0], [-4.0, 0.5, 2.0]], np.float32)
    b = np.array([[0.25, -1.5, 2.0], [3.0, 8.0, -7.75]], np.float32)
    want = {"sum": a + b, "product": a * b}
    got = run(path, {"a": a, "b": b})
    assert all((got[k] == v).all() for k, v in want.items()), "add_mul differs"
    case = {"a": a.tolist(), "b": b.tolist(), **{k: v.tolist() for k, v in want.items()}}
    write_json([case], TESTS / "fixtures" / "add_mul.json")


def make_scale():
    """y = x * 2 + 1 with x, y float [batch, 2], constants as initializers."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["doubled"]),
         helper.make_node("Add", ["doubled", "one"], ["y"])], "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        initializer=[numpy_helper.from_array(np.array(2.0, np.float32), "two"),
                     numpy_helper.from_array(np.array(1.0, np.float32), "one")])
    path = save(graph, TESTS / "multi" / "scale.onnx")
    x = np.array([[0.0, 1.0], [-1.5, 10.0], [3.0, -0.5]], np.float32)
    assert (run(path, {"x": x})["y"] == x * 2 + 1).all(), "scale differs"


def save_current(graph, path):
    """Like `save`, but at what this onnx package writes by default (IR 14, its newest opset
    that ONNX Runtime runs), the way a user's current exporter writes models."""
    model = helper.make_model(graph, producer_name="tinyserve-make_models")
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def make_rejects():
    """Models whose run fails on some values of valid-looking inputs, so ONNX Runtime itself
    rejects them at run time: each is a 400 naming the model and ONNX Runtime's reason."""
    f, i64, i32 = TensorProto.FLOAT, TensorProto.INT64, TensorProto.INT32
    vi = helper.make_tensor_value_info
    models = {
        # a / b on integers: b == 0 is a division by zero.
        "int_div": helper.make_graph(
            [helper.make_node("Div", ["a", "b"], ["y"])], "int_div",
            [vi("a", i32, ["n"]), vi("b", i32, ["n"])], [vi("y", i32, ["n"])]),
        # table[indices]: an index past 4 is out of range.
        "gather": helper.make_graph(
            [helper.make_node("Gather", ["table", "indices"], ["y"])], "gather",
            [vi("indices", i64, ["n"])], [vi("y", f, ["n"])],
            initializer=[numpy_helper.from_array(np.arange(5, dtype=np.float32), "table")]),
        # x reshaped to `shape`: a shape of another element count is impossible.
        "reshape": helper.make_graph(
            [helper.make_node("Reshape", ["x", "shape"], ["y"])], "reshape",
            [vi("x", f, ["n"]), vi("shape", i64, [2])], [vi("y", f, ["a", "b"])]),
        # x split in two parts of the given sizes: sizes that do not add up to len(x) fail.
        "split": helper.make_graph(
            [helper.make_node("Split", ["x", "sizes"], ["first", "second"])], "split",
            [vi("x", f, ["n"]), vi("sizes", i64, [2])],
            [vi("first", f, ["p"]), vi("second", f, ["q"])]),
        # x squeezed on axis 1: a second dimension other than 1 cannot be squeezed.
        "squeeze": helper.make_graph(
            [helper.make_node("Squeeze", ["x", "axes"], ["y"])], "squeeze",
            [vi("x", f, ["n", "m"])], [vi("y", f, ["n"])],
            initializer=[numpy_helper.from_array(np.array([1], np.int64), "axes")]),
    }
    for name, graph in models.items():
        path = save_current(graph, TESTS / "rejects" / f"{name}.onnx")
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        bad = {
            "int_div": {"a": np.array([1], np.int32), "b": np.array([0], np.int32)},
            "gather": {"indices": np.array([7], np.int64)},
            "reshape": {"x": np.zeros(6, np.float32), "shape": np.array([4, 4], np.int64)},
            "split": {"x": np.zeros(6, np.float32), "sizes": np.array([2, 2], np.int64)},
            "squeeze": {"x": np.zeros((2, 3), np.float32)},
        }[name]
        try:
            sess.run(None, bad)
        except Exception:  # onnxruntime's own exception types; the run must fail
            continue
        raise AssertionError(f"onnxruntime accepted the bad input of {name}")


def make_broken():
    """A file named .onnx that is not a model, so loading it must fail."""
    path = TESTS / "broken" / "not_a_model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("this is not an ONNX model: plain text garbage }{ 0xDEADBEEF\n")
    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception:  # onnxruntime raises its own exception types; any failure is fine
        return
    raise AssertionError("onnxruntime loaded not_a_model.onnx")


def summarize():
    """Print every model's size and its inputs/outputs as onnxruntime reports them."""
    for path in sorted(ROOT.rglob("*.onnx")):
        rel = path.relative_to(ROOT)
        if rel.parts[:2] == ("tests", "broken"):
            print(f"{rel} ({path.stat().st_size} B): not a model (fails to load, as intended)")
            continue
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        sig = {kind: ", ".join(f"{a.name}: {a.type} {a.shape}" for a in args)
               for kind, args in (("in", sess.get_inputs()), ("out", sess.get_outputs()))}
        print(f"{rel} ({path.stat().st_size} B)\n"
              f"    in:  {sig['in']}\n    out: {sig['out']}")


def main():
    """Build all models and fixtures, verify them, print a summary."""
    params, accuracy = train_iris()
    iris = make_iris(params)
    n_cases = iris_fixture(params, iris)
    make_identities()
    make_add_mul()
    make_scale()
    make_rejects()
    make_broken()
    print(f"onnx {onnx.__version__}, onnxruntime {ort.__version__}, numpy {np.__version__}")
    print(f"iris: {HIDDEN} tanh hidden, {EPOCHS} epochs, lr {LR}, seed {SEED}: "
          f"training accuracy {accuracy:.2%} ({round(accuracy * 150)}/150); "
          f"{n_cases} fixture cases cross-checked with onnxruntime")
    summarize()


if __name__ == "__main__":
    main()
