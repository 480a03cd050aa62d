"""Checks a running tinyserve with the official Triton HTTP client (tritonclient[http]).

Usage: python triton_check.py --url HOST:PORT --fixtures models/tests/fixtures/iris.json

Prints one line per check ("ok ..." or "FAIL ...") and exits 1 if any check failed.
The server must serve models/ (the iris model).
"""

import argparse
import json
import sys
import traceback

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from checks import FAILURES, check, exit_status


def check_metadata(client):
    check(client.is_server_live(), "is_server_live() is True")
    check(client.is_server_ready(), "is_server_ready() is True")
    check(client.is_model_ready("iris"), 'is_model_ready("iris") is True')
    check(client.is_model_ready("iris", "1"), 'is_model_ready("iris", "1") is True')
    check(not client.is_model_ready("nope"), 'is_model_ready("nope") is False')

    server = client.get_server_metadata()
    check(server.get("name") == "tinyserve", f"server metadata name: {server}")
    check(
        "binary_tensor_data" in server.get("extensions", []),
        f"server metadata lists binary_tensor_data: {server}",
    )

    meta = client.get_model_metadata("iris")
    expected = {
        "name": "iris",
        "versions": ["1"],
        "platform": "onnx_onnxv1",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
            {"name": "label", "datatype": "INT64", "shape": [-1]},
        ],
    }
    check(meta == expected, f"model metadata of iris: {meta}")
    check(
        client.get_model_metadata("iris", "1") == expected,
        "model metadata of iris version 1",
    )

    try:
        client.get_model_metadata("nope")
        check(False, "metadata of an unknown model raises")
    except InferenceServerException as err:
        check('model "nope"' in str(err.message()), f"unknown model error names it: {err}")


def infer_case(client, index, case, mode):
    x = np.array(case["input"], dtype=np.float32)
    expected_probabilities = np.array(case["probabilities"], dtype=np.float32)
    expected_label = np.array(case["label"], dtype=np.int64)
    rows = x.shape[0]
    what = f"[{mode}] case {index} ({rows} rows)"

    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    if mode == "default":
        # The client's defaults: binary input, no requested outputs, which makes the client ask
        # for every output in binary (parameters.binary_data_output = true).
        inp.set_data_from_numpy(x)
        outputs = None
    elif mode == "requested outputs, default binary":
        inp.set_data_from_numpy(x)
        outputs = [
            httpclient.InferRequestedOutput("probabilities"),
            httpclient.InferRequestedOutput("label"),
        ]
    elif mode == "binary_data=False":
        inp.set_data_from_numpy(x, binary_data=False)
        outputs = [
            httpclient.InferRequestedOutput("probabilities", binary_data=False),
            httpclient.InferRequestedOutput("label", binary_data=False),
        ]
    else:
        raise ValueError(mode)

    result = client.infer("iris", [inp], outputs=outputs, request_id=f"case-{index}")
    response = result.get_response()
    check(response.get("model_name") == "iris", f"{what}: model_name")
    check(response.get("model_version") == "1", f"{what}: model_version")
    check(response.get("id") == f"case-{index}", f"{what}: id echoed")
    binary = mode != "binary_data=False"
    for out in response.get("outputs", []):
        sent_binary = "binary_data_size" in out.get("parameters", {})
        check(
            sent_binary == binary and ("data" in out) != binary,
            f"{what}: output {out.get('name')} sent as {'binary' if binary else 'JSON'}",
        )

    probabilities = result.as_numpy("probabilities")
    label = result.as_numpy("label")
    check(
        probabilities is not None
        and probabilities.dtype == np.float32
        and probabilities.shape == (rows, 3),
        f"{what}: probabilities is float32 [{rows}, 3]",
    )
    check(
        probabilities is not None
        and probabilities.shape == expected_probabilities.shape
        and np.allclose(probabilities, expected_probabilities, rtol=0, atol=1e-5),
        f"{what}: probabilities within 1e-5 of the fixture",
    )
    check(
        label is not None and label.dtype == np.int64 and label.shape == (rows,),
        f"{what}: label is int64 [{rows}]",
    )
    check(
        label is not None and np.array_equal(label, expected_label),
        f"{what}: labels {None if label is None else label.tolist()} equal the fixture {case['label']}",
    )


def check_errors(client):
    x = np.zeros((1, 3), dtype=np.float32)
    inp = httpclient.InferInput("input", [1, 3], "FP32")
    inp.set_data_from_numpy(x)
    try:
        client.infer("iris", [inp])
        check(False, "a [1, 3] input raises")
    except InferenceServerException as err:
        check(
            'input "input": expected shape [-1, 4], got [1, 3]' in str(err.message()),
            f"a wrong shape is reported with the input's name: {err}",
        )
        check(
            str(err.status()) == "400",
            f"a bad input is a 400 InferenceServerException, as Triton answers: status {err.status()}",
        )

    # Only the requested output comes back.
    x = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)
    inp = httpclient.InferInput("input", [1, 4], "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer("iris", [inp], outputs=[httpclient.InferRequestedOutput("label")])
    check(result.as_numpy("probabilities") is None, "unrequested output is not returned")
    label = result.as_numpy("label")
    check(label is not None and label.tolist() == [0], f"requested label: {label}")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="HOST:PORT of the server")
    parser.add_argument("--fixtures", required=True, help="models/tests/fixtures/iris.json")
    args = parser.parse_args()

    with open(args.fixtures) as f:
        cases = json.load(f)
    check(len(cases) > 0, f"{len(cases)} fixture cases loaded")

    client = httpclient.InferenceServerClient(
        url=args.url, connection_timeout=60.0, network_timeout=60.0
    )
    try:
        check_metadata(client)
        for mode in ("default", "requested outputs, default binary", "binary_data=False"):
            for index, case in enumerate(cases):
                infer_case(client, index, case, mode)
        check_errors(client)
    except Exception:  # any exception is a failed check, with its traceback
        traceback.print_exc()
        FAILURES.append("unexpected exception")
    finally:
        client.close()

    return exit_status()


if __name__ == "__main__":
    sys.exit(main())
