"""Model loading and one inference, shared by the Flask and FastAPI baselines so both do
exactly the same work per request: JSON lists -> numpy -> onnxruntime -> lists.

Sessions use one intra-op and one inter-op thread, as an expert would configure ONNX Runtime
under these servers: gunicorn runs 5 processes on 2 cores, and FastAPI's thread pool runs
several calls on one session at once; more threads per session would only oversubscribe the
cores and spin. Concurrency comes from processes and threads calling `run`, which releases
the GIL.
"""
from pathlib import Path

import numpy as np
import onnxruntime as ort

# ONNX Runtime's type names for the element types the benchmark models use.
NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64,
               "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_}


class InvalidInput(ValueError):
    """The request does not fit the model (answered 422)."""


def load_models(folder):
    """{name: InferenceSession} for every NAME.onnx in `folder`, loaded once."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    models = {}
    for path in sorted(Path(folder).glob("*.onnx")):
        models[path.stem] = ort.InferenceSession(str(path), options,
                                                 providers=["CPUExecutionProvider"])
    return models


def predict(session, inputs):
    """`inputs` {name: nested list} -> {output name: nested list}; InvalidInput if it does not fit."""
    if not isinstance(inputs, dict):
        raise InvalidInput('expected {"inputs": {"<input name>": <nested array>}}')
    specs = {i.name: i for i in session.get_inputs()}
    if set(inputs) != set(specs):
        raise InvalidInput(f"expected inputs {sorted(specs)}, got {sorted(inputs)}")
    feeds = {}
    for name, value in inputs.items():
        spec = specs[name]
        try:
            array = np.asarray(value, dtype=NUMPY_TYPES[spec.type])
        except (ValueError, TypeError, KeyError) as err:
            raise InvalidInput(f"input {name!r}: {err}") from None
        if array.ndim != len(spec.shape) or any(
                isinstance(d, int) and d != n for d, n in zip(spec.shape, array.shape)):
            raise InvalidInput(f"input {name!r}: expected shape {spec.shape}, got {list(array.shape)}")
        feeds[name] = array
    names = [o.name for o in session.get_outputs()]
    return {name: out.tolist() for name, out in zip(names, session.run(names, feeds))}
