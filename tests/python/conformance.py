"""The ONNX backend node test suite through tinyserve's KServe v2 API (issue #11).

Usage:
  python conformance.py prepare --out DIR
  python conformance.py check --url HOST:PORT --cases DIR

`prepare` takes every node test case of the installed `onnx` package (the in-memory cases of
`onnx.backend.test.loader.load_model_tests(kind="node")`, which `onnx`'s `generate-data` writes
as onnx/backend/test/data/node/*) and decides in-process, with the installed onnxruntime (the
version tinyserve pins), which ones to serve: a case is served when its inputs and outputs are
tensors of the v2 protocol's twelve datatypes, its output is not random, and ONNX Runtime loads
it, runs it and matches the expected outputs at the case's own tolerances, exactly as onnx's
backend runner checks them. Each served case's model is written to DIR/models/CASE.onnx (the
server names a model by its file stem) and its data to DIR/data/CASE.npz; every other case is
listed in DIR/manifest.json with the reason it is skipped.

`check` sends each served case's inputs to `POST /v2/models/CASE/infer` twice: with the binary
tensor data extension (`Inference-Header-Content-Length`, binary outputs), and as JSON unless the
inputs hold NaN or infinity, which JSON cannot carry. tinyserve writes non-finite outputs as JSON
null, so there the JSON answer must hold null exactly where the expected value is not finite. The
outputs are compared like onnx's runner does (same shape, same datatype,
`np.testing.assert_allclose` at the case's rtol and atol). It prints one `FAIL` line per failing
request and the counts, and exits 1 if any case failed.
"""

import argparse
import collections
import http.client
import json
import os
import re
import shutil
import sys
import time
import warnings

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, numpy_helper
from onnx.backend.test.loader import load_model_tests
from onnx.backend.test.runner import Runner

# Failures are reasons in the manifest, not log lines.
onnxruntime.set_default_logger_severity(4)

# ONNX element type -> KServe v2 datatype: the twelve the protocol (and tinyserve) carries.
V2_TYPES = {
    TensorProto.BOOL: "BOOL",
    TensorProto.UINT8: "UINT8",
    TensorProto.UINT16: "UINT16",
    TensorProto.UINT32: "UINT32",
    TensorProto.UINT64: "UINT64",
    TensorProto.INT8: "INT8",
    TensorProto.INT16: "INT16",
    TensorProto.INT32: "INT32",
    TensorProto.INT64: "INT64",
    TensorProto.FLOAT16: "FP16",
    TensorProto.FLOAT: "FP32",
    TensorProto.DOUBLE: "FP64",
}
NUMPY_TYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
# Operators whose output is random: the expected values were drawn by numpy, not by ONNX
# Runtime, so a match would be luck.
RANDOM_OPS = {
    "Bernoulli",
    "Multinomial",
    "RandomNormal",
    "RandomNormalLike",
    "RandomUniform",
    "RandomUniformLike",
}


def type_family(elem_type):
    """A datatype outside the twelve, named by its family for the skip reason."""
    name = TensorProto.DataType.Name(elem_type)
    if name.startswith("FLOAT8"):
        return "float8"
    if name in ("INT4", "UINT4", "INT2", "UINT2", "FLOAT4E2M1"):
        return "int4/uint4/float4 (sub-byte)"
    if name.startswith("COMPLEX"):
        return "complex"
    return name.lower()


def unsupported_type(model):
    """Why the model's inputs or outputs cannot go through the v2 protocol, or None."""
    for value in list(model.graph.input) + list(model.graph.output):
        kind = value.type.WhichOneof("value")
        if kind != "tensor_type":
            kind = {"sequence_type": "sequence", "optional_type": "optional",
                    "map_type": "map", "sparse_tensor_type": "sparse tensor"}.get(kind, kind)
            return "input or output is a sequence, optional, map or sparse tensor", kind
        elem = value.type.tensor_type.elem_type
        if elem not in V2_TYPES:
            family = type_family(elem)
            return f"datatype outside the v2 protocol's twelve: {family}", family
    return None


def ops(model):
    """Every operator type of the graph, including those inside subgraphs and functions."""
    found = set()

    def walk(graph):
        for node in graph.node:
            found.add(node.op_type)
            for attr in node.attribute:
                if attr.HasField("g"):
                    walk(attr.g)
                for sub in attr.graphs:
                    walk(sub)

    walk(model.graph)
    for function in model.functions:
        for node in function.node:
            found.add(node.op_type)
    return found


def as_array(value):
    """A case's input or output as an array: some cases hold a TensorProto, some a numpy
    scalar, which the suite's files (`generate-data`) store as a 0-d tensor."""
    if isinstance(value, TensorProto):
        return numpy_helper.to_array(value)
    return np.asarray(value)


def similar(ref_outputs, outputs, rtol, atol):
    """onnx's backend runner's comparison: the error text, or None when the outputs match."""
    try:
        Runner.assert_similar_outputs(ref_outputs, outputs, rtol=rtol, atol=atol)
        return None
    except AssertionError as err:
        return str(err).strip().splitlines()[0] if str(err).strip() else "mismatch"


def decide(case):
    """(reason, detail) why `case` is skipped, or None when it is served."""
    model = case.model
    bad = unsupported_type(model)
    if bad:
        return bad
    random = ops(model) & RANDOM_OPS
    if random:
        return "random output (the expected values were drawn by numpy)", ",".join(sorted(random))
    try:
        session = onnxruntime.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"]
        )
    except Exception as err:  # noqa: BLE001 - any load failure is the reason
        return "ONNX Runtime fails to load it in-process", first_line(err)
    inputs, expected = data_set(case)
    names = [i.name for i in session.get_inputs()]
    try:
        outputs = session.run(None, dict(zip(names, inputs, strict=True)))
    except Exception as err:  # noqa: BLE001
        return "ONNX Runtime fails it in-process (run)", first_line(err)
    why = similar(expected, outputs, case.rtol, case.atol)
    if why:
        return "ONNX Runtime fails it in-process (wrong output)", why
    return None


def data_set(case):
    """The inputs and expected outputs of a node case, which has exactly one data set."""
    if len(case.data_sets) != 1:
        raise ValueError(f"{case.name}: {len(case.data_sets)} data sets, expected 1")
    inputs, expected = case.data_sets[0]
    return [as_array(x) for x in inputs], [as_array(x) for x in expected]


def first_line(err):
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def prepare(out):
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(os.path.join(out, "models"))
    os.makedirs(os.path.join(out, "data"))
    # The case generators' own numpy overflow and divide-by-zero warnings are expected.
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    cases = sorted(load_model_tests(kind="node"), key=lambda c: c.name)
    served, skipped = [], []
    started = time.process_time()
    for case in cases:
        why = decide(case)
        if why:
            skipped.append({"case": case.name, "reason": why[0], "detail": why[1]})
            continue
        onnx.save(case.model, os.path.join(out, "models", case.name + ".onnx"))
        inputs, expected = data_set(case)
        arrays = {f"input_{i}": x for i, x in enumerate(inputs)}
        arrays.update({f"output_{i}": x for i, x in enumerate(expected)})
        np.savez(os.path.join(out, "data", case.name + ".npz"), **arrays)
        served.append({
            "case": case.name,
            "inputs": [i.name for i in case.model.graph.input],
            "outputs": [o.name for o in case.model.graph.output],
            "rtol": case.rtol,
            "atol": case.atol,
        })
    manifest = {
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "cases": len(cases),
        "served": served,
        "skipped": skipped,
    }
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}: "
          f"{len(cases)} node test cases, {len(served)} to serve, {len(skipped)} skipped "
          f"({time.process_time() - started:.1f} s CPU)")
    print_skipped(skipped)


def print_skipped(skipped):
    reasons = collections.Counter(s["reason"] for s in skipped)
    for reason, count in sorted(reasons.items(), key=lambda r: (-r[1], r[0])):
        print(f"skipped {count:5d}  {reason}")


class Client:
    """One keep-alive connection to the server; a request the server closed the connection
    on (as it may do to an idle keep-alive connection) is sent once more on a new one."""

    def __init__(self, url):
        self.url = url
        self.conn = http.client.HTTPConnection(url, timeout=60)

    def post(self, path, body, headers):
        for attempt in range(2):
            try:
                self.conn.request("POST", path, body=body, headers=headers)
                response = self.conn.getresponse()
                return response.status, dict(response.getheaders()), response.read()
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.url, timeout=60)
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")


def json_expressible(arrays):
    return all(
        not np.issubdtype(a.dtype, np.floating) or bool(np.isfinite(a).all()) for a in arrays
    )


def as_json_sees_it(array):
    """The expected output as JSON carries it: tinyserve writes NaN and infinities as null,
    which the client reads back as NaN."""
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        return np.where(np.isfinite(array), array, np.nan).astype(array.dtype)
    return array


def v2_type(array):
    for name, ty in NUMPY_TYPES.items():
        if array.dtype == ty:
            return name
    raise ValueError(f"no v2 datatype for {array.dtype}")


def infer_json(client, case, inputs):
    body = {
        "inputs": [
            {"name": name, "shape": list(x.shape), "datatype": v2_type(x),
             "data": x.ravel().tolist()}
            for name, x in zip(case["inputs"], inputs)
        ]
    }
    status, _, payload = client.post(
        f"/v2/models/{case['case']}/infer",
        json.dumps(body, allow_nan=False),
        {"Content-Type": "application/json"},
    )
    if status != 200:
        return None, f"status {status}: {payload[:300].decode(errors='replace')}"
    answer = json.loads(payload)
    outputs = []
    for out in answer["outputs"]:
        ty = NUMPY_TYPES[out["datatype"]]
        data = [np.nan if v is None else v for v in out["data"]]
        outputs.append((out["name"], np.array(data, dtype=ty).reshape(out["shape"])))
    return outputs, None


def infer_binary(client, case, inputs):
    header = {
        "inputs": [
            {"name": name, "shape": list(x.shape), "datatype": v2_type(x),
             "parameters": {"binary_data_size": x.nbytes}}
            for name, x in zip(case["inputs"], inputs)
        ],
        "parameters": {"binary_data_output": True},
    }
    head = json.dumps(header, allow_nan=False).encode()
    body = head + b"".join(np.ascontiguousarray(x).astype(x.dtype.newbyteorder("<")).tobytes()
                           for x in inputs)
    status, headers, payload = client.post(
        f"/v2/models/{case['case']}/infer",
        body,
        {"Content-Type": "application/octet-stream",
         "Inference-Header-Content-Length": str(len(head))},
    )
    if status != 200:
        return None, f"status {status}: {payload[:300].decode(errors='replace')}"
    length = int({k.lower(): v for k, v in headers.items()}
                 .get("inference-header-content-length", len(payload)))
    answer = json.loads(payload[:length])
    rest = payload[length:]
    outputs = []
    for out in answer["outputs"]:
        ty = np.dtype(NUMPY_TYPES[out["datatype"]]).newbyteorder("<")
        size = out["parameters"]["binary_data_size"]
        array = np.frombuffer(rest[:size], dtype=ty).reshape(out["shape"])
        rest = rest[size:]
        outputs.append((out["name"], array.astype(ty.newbyteorder("=")), ))
    if rest:
        return None, f"{len(rest)} unclaimed bytes after the outputs"
    return outputs, None


def compare(case, expected, outputs):
    names = [name for name, _ in outputs]
    if names != case["outputs"]:
        return f"outputs {names}, expected {case['outputs']}"
    return similar(expected, [x for _, x in outputs], case["rtol"], case["atol"])


def check(url, folder):
    with open(os.path.join(folder, "manifest.json")) as f:
        manifest = json.load(f)
    client = Client(url)
    counts = collections.Counter()
    failures = []
    for case in manifest["served"]:
        data = np.load(os.path.join(folder, "data", case["case"] + ".npz"))
        inputs = [data[f"input_{i}"] for i in range(len(case["inputs"]))]
        expected = [data[f"output_{i}"] for i in range(len(case["outputs"]))]
        tensors = inputs + expected
        counts["  with a 0-d (scalar) tensor"] += any(x.ndim == 0 for x in tensors)
        counts["  with an empty tensor"] += any(x.size == 0 for x in tensors)
        for ty in sorted({v2_type(x) for x in tensors}):
            counts[f"  with a {ty} tensor"] += 1
        modes = [("binary", infer_binary, expected)]
        if not json_expressible(inputs):
            counts["binary only (NaN or infinity in the inputs, which JSON cannot carry)"] += 1
        elif json_expressible(expected):
            modes.insert(0, ("json", infer_json, expected))
        else:
            # Outputs come back with null exactly where the expected value is not finite.
            counts["json with NaN or infinity in the outputs, written as null"] += 1
            modes.insert(0, ("json", infer_json, [as_json_sees_it(x) for x in expected]))
        ok = True
        for mode, infer, wanted in modes:
            outputs, error = infer(client, case, inputs)
            if error is None:
                error = compare(case, wanted, outputs)
            if error is None:
                counts[f"passed as {mode}"] += 1
            else:
                ok = False
                failures.append(case["case"])
                print(f"FAIL  {case['case']} [{mode}]: {error}", flush=True)
        counts["passed"] += ok
    served = len(manifest["served"])
    print(f"onnx {manifest['onnx']} node test cases: {manifest['cases']}")
    print(f"served {served}")
    print(f"passed {counts['passed']}")
    print(f"failed {served - counts['passed']}")
    for key in sorted(counts):
        if key != "passed" and not key.startswith(" "):
            print(f"  {key}: {counts[key]}")
    print("served cases")
    for key in sorted(counts):
        if key.startswith(" "):
            print(f"{key}: {counts[key]}")
    print(f"skipped {len(manifest['skipped'])}")
    print_skipped(manifest["skipped"])
    return 1 if failures else 0


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--out", required=True)
    c = sub.add_parser("check")
    c.add_argument("--url", required=True)
    c.add_argument("--cases", required=True)
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.out)
        return 0
    return check(args.url, args.cases)


if __name__ == "__main__":
    sys.exit(main())
