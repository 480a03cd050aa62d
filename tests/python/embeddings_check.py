#!/usr/bin/env python3
"""The official `openai` Python client, and text-embeddings-inference's `/embed` shape, against
a running `tinyserve serve`, compared with models/encoder_reference.py (onnxruntime +
tokenizers + NumPy pooling, each text alone).

    python tests/python/embeddings_check.py URL FOLDER

URL is the server's base; FOLDER the encoder folder it serves as model `basename(FOLDER)`.
Checks: embeddings.create with floats, with base64 (the client's default, which it decodes,
and explicit, decoded here as little-endian float32), a single string, a list, token-id
lists, `dimensions`, usage; every vector at cosine >= 0.9999 from the reference's and of the
same length; the limits and errors (iris, empty input, 2049 inputs, a long input, an unknown
model); then `/embed`: a string, a list, `normalize: false`, `truncate`, `model`.

Prints one line per check ("ok    ..." or "FAIL  ..."), then "all checks passed"; exits
non-zero if any check failed.
"""
import base64
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import openai
from openai import OpenAI

from checks import check, exit_status

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "models"))
sys.dont_write_bytecode = True
import encoder_reference  # noqa: E402

TEXTS = [
    "What is a class?",
    "A for loop runs its body once for each item of the sequence, in order.",
    "naïve → 😀 日本語 \"quotes\" {braces}",
    "lambda",
    "The with statement wraps the execution of a block with methods defined by a context "
    "manager; the exit method runs even when the block raises an exception.",
    " ".join(["assert x > 0, 'x must be positive'"] * 20),  # over 128 tokens: truncated
]
MIN_COSINE = 0.9999
# Whether the server also serves iris (the bundled models/ folder): then it is refused.
IRIS_SERVED = False


def cosine(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def close(got, expected, what):
    """Same length, cosine >= MIN_COSINE, and the same norm within 0.1 %."""
    same = len(got) == len(expected)
    worst = min((cosine(g, e) for g, e in zip(got, expected)), default=0.0)
    norms = all(abs(np.linalg.norm(g) - np.linalg.norm(e)) <= 1e-3 * np.linalg.norm(e)
                for g, e in zip(got, expected))
    lengths = all(len(g) == len(e) for g, e in zip(got, expected))
    check(same and lengths and norms and worst >= MIN_COSINE,
          f"{what}: {len(got)} vectors, cosine >= {worst:.7f} from the reference's")


def post(url, body):
    """POST JSON; (status, parsed answer)."""
    request = urllib.request.Request(url, json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def raises(call, error, needle, what):
    try:
        call()
    except error as err:
        message = str(err)
        check(needle in message, f"{what} raises {error.__name__} ({needle!r} in {message!r})")
        return
    except Exception as err:  # noqa: BLE001
        check(False, f"{what}: expected {error.__name__}, got {type(err).__name__}: {err}")
        return
    check(False, f"{what}: expected {error.__name__}, got an answer")


def openai_checks(base, folder, name):
    client = OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=60.0)
    reference = encoder_reference.embed(folder, texts=TEXTS)
    expected = reference["embeddings"]
    listed = [m.id for m in client.models.list()]
    check(name in listed, f"models.list() contains {name}")
    # /v1/models lists what /v1 runs, not a plain ONNX model: tinyserve's GET /models does.
    check("iris" not in listed, "models.list() leaves out iris, which /v1 does not run")
    with urllib.request.urlopen(base + "/models", timeout=60) as reply:
        served = [m["name"] for m in json.load(reply)["models"]]
    global IRIS_SERVED
    IRIS_SERVED = "iris" in served

    answer = client.embeddings.create(model=name, input=TEXTS, encoding_format="float")
    close([d.embedding for d in answer.data], expected, "a list, encoding_format float")
    check([d.index for d in answer.data] == list(range(len(TEXTS)))
          and all(d.object == "embedding" for d in answer.data)
          and answer.object == "list" and answer.model == name,
          "indexes in order, object list / embedding, model")
    tokens = sum(reference["tokens"])
    check(answer.usage.prompt_tokens == tokens and answer.usage.total_tokens == tokens,
          f"usage counts the reference's {tokens} tokens (after truncation)")

    decoded = client.embeddings.create(model=name, input=TEXTS)
    close([d.embedding for d in decoded.data], expected, "the client's default (base64, decoded)")
    raw = client.embeddings.create(model=name, input=TEXTS, encoding_format="base64")
    vectors = [np.frombuffer(base64.b64decode(d.embedding), "<f4") for d in raw.data]
    close(vectors, expected, "encoding_format base64 decoded as little-endian float32")
    check(all(isinstance(d.embedding, str) for d in raw.data), "base64 embeddings are strings")

    one = client.embeddings.create(model=name, input=TEXTS[0], encoding_format="float")
    close([d.embedding for d in one.data], expected[:1], "a single string")

    from tokenizers import Tokenizer
    tokenizer = Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
    ids = [tokenizer.encode(text).ids for text in TEXTS[:3]]
    by_ids = client.embeddings.create(model=name, input=ids, encoding_format="float")
    close([d.embedding for d in by_ids.data], expected[:3], "token-id lists")

    dims = 16
    short = client.embeddings.create(model=name, input=TEXTS[:2], dimensions=dims,
                                     encoding_format="float")
    cut = [np.asarray(v[:dims]) for v in expected[:2]]
    if encoder_reference.normalizes(Path(folder)):
        cut = [v / np.linalg.norm(v) for v in cut]
    close([d.embedding for d in short.data], cut, f"dimensions={dims}")

    if IRIS_SERVED:
        raises(lambda: client.embeddings.create(model="iris", input="x"),
               openai.BadRequestError, "`iris` is not an embedding model", "model iris")
    raises(lambda: client.embeddings.create(model=name, input=[]), openai.BadRequestError,
           "input is empty", "an empty input list")
    raises(lambda: client.embeddings.create(model=name, input=["a"] * 2049),
           openai.BadRequestError, "over the limit of 2048", "2049 inputs")
    raises(lambda: client.embeddings.create(model=name, input="x" * 50_001),
           openai.BadRequestError, "over the limit of 50000 per input", "50,001 characters")
    raises(lambda: client.embeddings.create(model=name, input=[[tokenizer.get_vocab_size(True)]]),
           openai.BadRequestError, "out of range", "a token id past the vocabulary")
    raises(lambda: client.embeddings.create(model=name, input="x", dimensions=100_000),
           openai.BadRequestError, "dimensions 100000 is out of range", "dimensions too large")
    raises(lambda: client.embeddings.create(model="nope", input="x"), openai.NotFoundError,
           "nope", "an unknown model")
    again = client.embeddings.create(model=name, input=TEXTS[3], encoding_format="float")
    close([d.embedding for d in again.data], expected[3:4], "the next request still works")


def embed_checks(base, folder, name):
    url = base + "/embed"
    expected = encoder_reference.embed(folder, texts=TEXTS[:5], normalize=True)["embeddings"]
    status, answer = post(url, {"inputs": TEXTS[0]})
    check(status == 200 and isinstance(answer, list) and len(answer) == 1,
          f"/embed a string: 200 and a list of one vector ({status})")
    if status == 200:
        close(answer, expected[:1], "/embed a string")
    status, answer = post(url, {"inputs": TEXTS[:5], "model": name})
    check(status == 200, f"/embed a list with model: 200 ({status})")
    if status == 200:
        close(answer, expected, "/embed a list (normalized by default)")
    raw = encoder_reference.embed(folder, texts=TEXTS[:2], normalize=False)["embeddings"]
    status, answer = post(url, {"inputs": TEXTS[:2], "normalize": False})
    if status == 200:
        close(answer, raw, "/embed normalize false: the pooled vectors as they are")
    else:
        check(False, f"/embed normalize false: {status} {answer}")
    status, answer = post(url, {"inputs": TEXTS})
    check(status == 413 and answer.get("code") == "payload_too_large"
          and "input 5: the input has" in answer.get("error", ""),
          f"/embed an input over the maximum length: 413 naming it ({status} {answer})")
    status, answer = post(url, {"inputs": TEXTS[5:], "truncate": True})
    long = encoder_reference.embed(folder, texts=TEXTS[5:], normalize=True)["embeddings"]
    if status == 200:
        close(answer, long, "/embed truncate true")
    else:
        check(False, f"/embed truncate true: {status} {answer}")
    if IRIS_SERVED:
        status, answer = post(url, {"inputs": "x", "model": "iris"})
        check(status == 400 and "`iris` is not an embedding model" in answer.get("error", ""),
              f"/embed model iris: 400 in tinyserve's error shape ({status} {answer})")
    status, answer = post(url, {"inputs": []})
    check(status == 400 and "input is empty" in answer.get("error", ""),
          f"/embed empty inputs: 400 ({status} {answer})")


def main():
    base, folder = sys.argv[1], Path(sys.argv[2])
    name = folder.name
    openai_checks(base, folder, name)
    embed_checks(base, folder, name)
    return exit_status()


if __name__ == "__main__":
    sys.exit(main())
