"""Checks the model repository extension of a running tinyserve with the official Triton HTTP
client (tritonclient[http]): the index, load_model, unload_model, version-specific inference
and the statistics extension.

Usage: python repository_check.py --url HOST:PORT

The server must run `--model-control-mode explicit --load-model times` over a folder holding
`times/{1,2,3}/model.onnx` (version k: y = x * k) and `scale.onnx`.
Prints one line per check ("ok ..." or "FAIL ...") and exits 1 if any check failed.
"""

import argparse
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from checks import check, exit_status


def rows(client):
    """The index as {(name, version or None): (state, reason)}."""
    return {(r["name"], r.get("version")): (r.get("state"), r.get("reason", ""))
            for r in client.get_model_repository_index()}


def times(client, version=""):
    """`times` on [1, 2] (at `version`): (y, model_version)."""
    x = httpclient.InferInput("x", [2], "FP32")
    x.set_data_from_numpy(np.array([1.0, 2.0], np.float32))
    result = client.infer("times", [x], model_version=version)
    return result.as_numpy("y").tolist(), result.get_response()["model_version"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    args = parser.parse_args()
    client = httpclient.InferenceServerClient(url=args.url)

    index = rows(client)
    for version in ("1", "2", "3"):
        check(index.get(("times", version), (None,))[0] == "READY",
              f"index: times version {version} READY: {index}")
    check(index.get(("scale", None)) == ("UNAVAILABLE", "unloaded"),
          f"index: scale UNAVAILABLE, unloaded (explicit mode): {index}")
    check(not client.is_model_ready("scale"), "is_model_ready(scale) is False before load")

    check(times(client, "2") == ([2.0, 4.0], "2"), "infer times version 2: y = x * 2")
    check(times(client, "1") == ([1.0, 2.0], "1"), "infer times version 1: y = x * 1")
    check(times(client) == ([3.0, 6.0], "3"), "infer times without a version: the highest, 3")
    try:
        times(client, "7")
        check(False, "infer of version 7 raises")
    except InferenceServerException as err:
        check("no version" in str(err.message()), f"version 7: {err}")

    client.load_model("scale")
    check(client.is_model_ready("scale"), "load_model(scale): is_model_ready is True")
    check(rows(client).get(("scale", "1"), (None,))[0] == "READY", "index: scale 1 READY")

    client.unload_model("times")
    check(not client.is_model_ready("times"), "unload_model(times): is_model_ready is False")
    index = rows(client)
    check(index.get(("times", None)) == ("UNAVAILABLE", "unloaded"),
          f"index: times UNAVAILABLE, unloaded: {index}")
    try:
        times(client)
        check(False, "infer of an unloaded model raises")
    except InferenceServerException as err:
        check("not loaded" in str(err.message()), f"unloaded model infer error: {err}")
    listed = {r["name"] for r in client.get_model_repository_index()}
    check(listed == {"times", "scale"}, f"the index still lists every model: {listed}")

    client.load_model("times")
    check(times(client, "2") == ([2.0, 4.0], "2"), "load_model(times) again: version 2 answers")

    try:
        client.load_model("nope")
        check(False, "load_model(nope) raises")
    except InferenceServerException as err:
        check('"nope"' in str(err.message()), f"load_model(nope) names it: {err}")

    stats = client.get_inference_statistics("times", "2")["model_stats"]
    check(len(stats) == 1 and stats[0]["version"] == "2", f"statistics of times 2: {stats}")
    success = stats[0]["inference_stats"]["success"]["count"] if stats else -1
    check(success == 1, f"times 2 counted one success since its reload: {success}")
    return exit_status()


if __name__ == "__main__":
    sys.exit(main())
