"""Picks a few dozen ONNX backend node test cases for the schemathesis run of tests/docs/live.rs.

The `onnx` package defines its backend node test cases (`onnx/backend/test/case/node`); a
source checkout also writes them to `onnx/backend/test/data/node/<case>/model.onnx`, but the
wheel on the package index leaves that folder out, so the cases are taken from that folder when
it is there and otherwise made by the package's own `collect_testcases()` (what
`onnx/backend/test/cmd_tools.py generate-data` writes). The selection is decided here, with the
pinned onnx and onnxruntime, so it is the same on every machine:

- Candidates: every non-`_expanded` case whose inputs and outputs are all tensors of a type
  tinyserve serves (BOOL, UINT8..UINT64, INT8..INT64, FP16, FP32, FP64), with at least one
  input, at most 64 elements per input, and only operators from OPS: operators whose output
  size is bounded by their input sizes, so random input values cannot make ONNX Runtime
  allocate without bound, and whose integer arithmetic cannot trap (no integer Div or Mod).
- ONNX Runtime itself must load the model and run it on the case's first data set.
- Then, in an order fixed by a hash of the case name (spread over the operators, not
  alphabetical), cases are taken for each goal of GOALS until its quota is met: every datatype
  as an input and as an output, 0-d outputs, outputs whose size depends on the input values
  (NonZero, Compress, Unique), dynamic (-1) output dimensions and several outputs.

Writes `<out>/<case>.onnx` for each selected case and prints one line per case (name, goal,
signature). usage: node_cases.py OUT_DIR
"""

import hashlib
import os
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

TYPES = {
    onnx.TensorProto.BOOL: "BOOL",
    onnx.TensorProto.UINT8: "UINT8",
    onnx.TensorProto.UINT16: "UINT16",
    onnx.TensorProto.UINT32: "UINT32",
    onnx.TensorProto.UINT64: "UINT64",
    onnx.TensorProto.INT8: "INT8",
    onnx.TensorProto.INT16: "INT16",
    onnx.TensorProto.INT32: "INT32",
    onnx.TensorProto.INT64: "INT64",
    onnx.TensorProto.FLOAT16: "FP16",
    onnx.TensorProto.FLOAT: "FP32",
    onnx.TensorProto.DOUBLE: "FP64",
}

OPS = {
    # element-wise
    "Abs", "Neg", "Add", "Sub", "Mul", "Sign", "Not", "And", "Or", "Xor", "Equal", "Greater",
    "GreaterOrEqual", "Less", "LessOrEqual", "Max", "Min", "BitShift", "BitwiseAnd",
    "BitwiseOr", "BitwiseXor", "BitwiseNot", "Cast", "CastLike", "IsNaN", "IsInf", "Where",
    "Clip", "Relu", "Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Floor", "Ceil", "Round",
    "Identity", "Sum", "Mean", "Erf", "Softmax", "Celu", "Reciprocal",
    # reductions and shapes
    "ReduceSum", "ReduceMax", "ReduceMin", "ReduceMean", "ReduceProd", "ArgMax", "ArgMin",
    "Shape", "Size", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Concat", "Slice",
    "Gather", "GatherElements", "Trilu", "CumSum", "MatMul", "Det", "Einsum", "Split", "TopK",
    # outputs whose size depends on the values
    "Compress", "NonZero", "Unique",
}

MAX_INPUT_ELEMENTS = 64


def goals():
    """(name, quota, predicate over (inputs, outputs, ops)) in the order they are filled."""
    out = []
    for ty in TYPES.values():
        out.append((f"{ty} output", 2, lambda i, o, ops, ty=ty: any(t == ty for t, _ in o)))
        out.append((f"{ty} input", 1, lambda i, o, ops, ty=ty: any(t == ty for t, _ in i)))
    out += [
        ("0-d output", 4, lambda i, o, ops: any(s == [] for _, s in o)),
        ("value-dependent output size", 4, lambda i, o, ops: ops & {"NonZero", "Compress", "Unique"}),
        ("dynamic output dimension", 2, lambda i, o, ops: any(-1 in s for _, s in o)),
        ("several outputs", 2, lambda i, o, ops: len(o) > 1),
        ("0-d input", 1, lambda i, o, ops: any(s == [] for _, s in i)),
    ]
    return out


def signature(values):
    """[(datatype, shape)] of graph inputs or outputs, or None if one is not servable."""
    specs = []
    for value in values:
        kind = value.type
        if not kind.HasField("tensor_type") or kind.tensor_type.elem_type not in TYPES:
            return None
        tensor = kind.tensor_type
        if not tensor.HasField("shape"):
            return None
        shape = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        specs.append((TYPES[tensor.elem_type], shape))
    return specs


def all_cases():
    """(name, ModelProto, first data set's inputs as {name: array} or None), sorted by name."""
    import onnx.backend.test as backend_test

    folder = os.path.join(os.path.dirname(backend_test.__file__), "data", "node")
    if os.path.isdir(folder):
        for name in sorted(os.listdir(folder)):
            model = onnx.load(os.path.join(folder, name, "model.onnx"))
            data = os.path.join(folder, name, "test_data_set_0")
            inputs = {}
            for j, value in enumerate(model.graph.input):
                path = os.path.join(data, f"input_{j}.pb")
                if not os.path.isfile(path):
                    inputs = None
                    break
                tensor = onnx.TensorProto()
                with open(path, "rb") as f:
                    tensor.ParseFromString(f.read())
                inputs[value.name] = numpy_helper.to_array(tensor)
            yield name, model, inputs
        return
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        cases = collect_testcases()
    for case in sorted(cases, key=lambda c: c.name):
        inputs = None
        if case.data_sets:
            arrays = case.data_sets[0][0]
            names = [v.name for v in case.model.graph.input]
            if len(arrays) == len(names) and all(isinstance(a, np.ndarray) for a in arrays):
                inputs = dict(zip(names, arrays))
        yield case.name, case.model, inputs


def candidate(name, model, inputs):
    """(inputs, outputs, ops) if the case qualifies, else None."""
    if name.endswith("_expanded") or inputs is None:
        return None
    ins, outs = signature(model.graph.input), signature(model.graph.output)
    ops = {node.op_type for node in model.graph.node}
    if not ins or not outs or not ops <= OPS or any(n.domain not in ("", "ai.onnx") for n in model.graph.node):
        return None
    if any(-1 in s or int(np.prod(s)) > MAX_INPUT_ELEMENTS for _, s in ins):
        return None
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 4
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        session.run(None, inputs)
    except Exception:  # ONNX Runtime does not load or run it: not a candidate
        return None
    return ins, outs, ops


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    pool = []
    for name, model, inputs in all_cases():
        found = candidate(name, model, inputs)
        if found:
            pool.append((hashlib.sha256(name.encode()).hexdigest(), name, model, found))
    pool.sort(key=lambda entry: entry[0])
    chosen = {}
    for goal, quota, test in goals():
        have = sum(1 for _, _, (i, o, ops) in chosen.values() if test(i, o, ops))
        for _, name, model, (i, o, ops) in pool:
            if have >= quota:
                break
            if name not in chosen and test(i, o, ops):
                chosen[name] = (goal, model, (i, o, ops))
                have += 1
    print(f"onnx {onnx.__version__}, onnxruntime {ort.__version__}: {len(pool)} candidates, {len(chosen)} chosen")
    for name in sorted(chosen):
        goal, model, (i, o, ops) = chosen[name]
        onnx.save(model, os.path.join(out_dir, f"{name}.onnx"))
        print(f"{name:48} {goal:30} {i} -> {o}")


if __name__ == "__main__":
    main()
