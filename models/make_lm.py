#!/usr/bin/env python3
"""Train the byte-level language model bytelm.onnx and write its greedy fixture.

A Bengio-style neural n-gram model: the last K bytes -> byte embeddings -> concat ->
tanh hidden layer -> 256 logits. Trained with plain NumPy (minibatch Adam) on the
Python documentation topics shipped with CPython (`pydoc_data.topics`). Fixed seeds,
no network. Run from anywhere with the pinned venv:
    python models/make_lm.py
"""
import hashlib
import json
import os
import sys
import time
from pathlib import Path

# Single-threaded BLAS: faster than multi-threaded for these small matrices (about
# 2.5x here) and reproducible. Must be set before NumPy loads.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from numpy.lib.stride_tricks import sliding_window_view  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from pydoc_data.topics import topics  # noqa: E402

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.dont_write_bytecode = True  # no models/__pycache__
import lm_reference  # noqa: E402  (the greedy generator the tests use)

OPSET, IR_VERSION = 17, 8
MODEL_PATH = ROOT / "bytelm.onnx"
FIXTURE_PATH = ROOT / "tests" / "fixtures" / "bytelm_greedy.json"

# Model and training hyperparameters (documented in README.md).
SEED = 0
K, EMB, HIDDEN, VOCAB = 12, 32, 512, 256   # context bytes, embedding, hidden units, bytes
BATCH, EPOCHS, LR, LR_MIN = 512, 14, 3e-3, 1e-4  # Adam, cosine decay from LR to LR_MIN
BETA1, BETA2, EPS = 0.9, 0.999, 1e-8
DROPOUT = 0.3                               # on the hidden layer, training only
VAL_FRACTION = 0.05
CONTEXT = 256                               # serving context (bytes fed per step)
GREEDY_PROMPTS, GREEDY_TOKENS = ["The ", "def ", "A class is"], 120
SAMPLE_PROMPTS, SAMPLE_TOKENS, TEMPERATURE = ["The ", "If the "], 300, 0.8


def load_text():
    """The training text: all pydoc topics in sorted key order, as UTF-8 bytes."""
    data = "".join(topics[key] for key in sorted(topics)).encode("utf-8")
    assert 0 not in data, "NUL is reserved for padding but occurs in the text"
    return np.frombuffer(data, dtype=np.uint8)


def windows(ids):
    """[..., T] ids -> [..., T, K] contexts (oldest byte first), left-padded with K-1 zeros."""
    ids = np.asarray(ids)
    pad = [(0, 0)] * (ids.ndim - 1) + [(K - 1, 0)]
    return sliding_window_view(np.pad(ids, pad), K, axis=-1)


def init_params(rng):
    """Normal(0, 1/sqrt(fan_in)) weights, zero biases, normal(0, 1) embeddings; float32."""
    shapes = {"emb": (VOCAB, EMB), "w1": (K * EMB, HIDDEN), "w2": (HIDDEN, VOCAB)}
    params = {name: rng.normal(0.0, 1.0 if name == "emb" else 1.0 / np.sqrt(shape[0]),
                               shape) for name, shape in shapes.items()}
    params["b1"], params["b2"] = np.zeros(HIDDEN), np.zeros(VOCAB)
    return {k: v.astype(np.float32) for k, v in params.items()}


def forward(params, ctx):
    """[..., K] contexts -> (concatenated embeddings, hidden, logits), float32."""
    x = params["emb"][ctx].reshape(*ctx.shape[:-1], K * EMB)
    h = np.tanh(x @ params["w1"] + params["b1"])
    return x, h, h @ params["w2"] + params["b2"]


def logits_of(params, ids):
    """NumPy reference of the exported graph: [B, T] ids -> [B, T, 256] logits."""
    return forward(params, windows(ids))[2]


def log_softmax(z):
    """Numerically stable log-softmax over the last axis."""
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def bits_per_byte(params, ctx, targets, chunk=8192):
    """Mean cross-entropy of `targets` given `ctx`, in bits per byte."""
    total = 0.0
    for i in range(0, len(targets), chunk):
        logp = log_softmax(forward(params, ctx[i:i + chunk])[2].astype(np.float64))
        total -= logp[np.arange(len(logp)), targets[i:i + chunk]].sum()
    return total / len(targets) / np.log(2)


def gradients(params, ctx, targets, rng=None):
    """Mean cross-entropy loss (nats) and its gradients for one minibatch.

    With `rng`, applies inverted dropout (rate DROPOUT) to the hidden layer.
    """
    x = params["emb"][ctx].reshape(len(ctx), K * EMB)
    h = np.tanh(x @ params["w1"] + params["b1"])
    mh = 1.0  # inverted-dropout mask: 0 with probability DROPOUT, else 1/(1-DROPOUT)
    if rng is not None and DROPOUT:
        mh = (rng.random(h.shape, dtype=np.float32) >= DROPOUT) / np.float32(1 - DROPOUT)
    hd = h * mh
    z = hd @ params["w2"] + params["b2"]
    p = np.exp(log_softmax(z))
    n = len(targets)
    loss = -np.log(p[np.arange(n), targets] + 1e-30).mean()
    dz = p
    dz[np.arange(n), targets] -= 1.0
    dz /= n
    dh = (dz @ params["w2"].T) * mh * (1.0 - h * h)
    dx = dh @ params["w1"].T
    demb = np.zeros_like(params["emb"])
    np.add.at(demb, ctx.ravel(), dx.reshape(-1, EMB))
    grads = {"w2": hd.T @ dz, "b2": dz.sum(0), "w1": x.T @ dh, "b1": dh.sum(0), "emb": demb}
    return loss, grads


def train(text):
    """Train on the first 95% of `text`; return params and a dict of statistics."""
    rng = np.random.default_rng(SEED)
    params = init_params(rng)
    ctx, targets = windows(text[:-1]), text[1:].astype(np.int64)
    split = int(len(text) * (1 - VAL_FRACTION)) - 1  # targets[split:] = held-out bytes
    steps_per_epoch = split // BATCH
    total = EPOCHS * steps_per_epoch
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(v) for k, v in params.items()}
    start, step = time.perf_counter(), 0
    for epoch in range(EPOCHS):
        order = rng.permutation(split)
        losses = []
        for b in range(steps_per_epoch):
            idx = order[b * BATCH:(b + 1) * BATCH]
            loss, grads = gradients(params, ctx[idx], targets[idx], rng)
            losses.append(loss)
            step += 1
            lr = LR_MIN + 0.5 * (LR - LR_MIN) * (1 + np.cos(np.pi * step / total))
            for k, g in grads.items():
                m[k] = BETA1 * m[k] + (1 - BETA1) * g
                v[k] = BETA2 * v[k] + (1 - BETA2) * g * g
                mhat, vhat = m[k] / (1 - BETA1 ** step), v[k] / (1 - BETA2 ** step)
                params[k] -= (lr * mhat / (np.sqrt(vhat) + EPS)).astype(np.float32)
        val = bits_per_byte(params, ctx[split:], targets[split:])
        print(f"epoch {epoch + 1}/{EPOCHS}: train {np.mean(losses) / np.log(2):.3f} bits/byte "
              f"(mean over the epoch, with dropout), val {val:.3f} bits/byte, "
              f"{time.perf_counter() - start:.0f} s", flush=True)
    stats = {"seconds": time.perf_counter() - start, "steps": total, "val_bpb": val,
             "train_bpb": bits_per_byte(params, ctx[:split], targets[:split]),
             "train_bytes": split + 1, "val_bytes": len(targets) - split}
    return params, stats


def export(params, path):
    """Write the ONNX graph: input_ids INT64 [batch, sequence] -> logits FLOAT [.., 256]."""
    const = lambda name, values: numpy_helper.from_array(np.array(values, np.int64), name)
    inits = [numpy_helper.from_array(params[k].astype(np.float32), k)
             for k in ("emb", "w1", "b1", "w2", "b2")]
    inits += [const("pads", [0, K - 1, 0, 0]), const("zero", 0), const("axis1", [1])]
    nodes = [helper.make_node("Pad", ["input_ids", "pads", "zero"], ["padded"]),
             helper.make_node("Shape", ["input_ids"], ["seq_len"], start=1, end=2)]
    for j in range(K):  # slot j = padded[:, j:j+T], byte t-(K-1)+j at position t: oldest first
        inits.append(const(f"start{j}", [j]))
        slice_in = ["padded", f"start{j}", f"end{j}", "axis1"]
        nodes += [helper.make_node("Add", ["seq_len", f"start{j}"], [f"end{j}"]),
                  helper.make_node("Slice", slice_in, [f"ids{j}"]),
                  helper.make_node("Gather", ["emb", f"ids{j}"], [f"e{j}"], axis=0)]
    nodes += [helper.make_node("Concat", [f"e{j}" for j in range(K)], ["x"], axis=-1),
              helper.make_node("MatMul", ["x", "w1"], ["z1"]),
              helper.make_node("Add", ["z1", "b1"], ["a1"]),
              helper.make_node("Tanh", ["a1"], ["h"]),
              helper.make_node("MatMul", ["h", "w2"], ["z2"]),
              helper.make_node("Add", ["z2", "b2"], ["logits"])]
    graph = helper.make_graph(
        nodes, "bytelm",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                       ["batch", "sequence", VOCAB])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="tinyserve-make_lm")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)


def verify(params, session):
    """Assert the signature, and that onnxruntime matches NumPy on random sequences."""
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, inp.shape) == ("input_ids", "tensor(int64)", ["batch", "sequence"])
    assert (out.name, out.type, out.shape) == ("logits", "tensor(float)",
                                               ["batch", "sequence", VOCAB])
    rng = np.random.default_rng(SEED + 1)
    worst = 0.0
    for batch, length in [(1, 1), (3, 1), (1, 2), (2, K - 1), (1, K), (2, K + 1),
                          (4, 37), (1, CONTEXT), (2, 300)]:
        ids = rng.integers(0, VOCAB, size=(batch, length), dtype=np.int64)
        got = session.run(["logits"], {"input_ids": ids})[0]
        want = logits_of(params, ids)
        assert got.shape == (batch, length, VOCAB) and got.dtype == np.float32, got.shape
        worst = max(worst, float(np.abs(got - want).max()))
    assert worst < 1e-4, f"onnxruntime differs from NumPy by {worst}"
    return worst


def sample(session, prompt, n, temperature, rng):
    """Sample `n` bytes after `prompt` at `temperature` (context CONTEXT); return text."""
    ids = list(prompt.encode("utf-8"))
    for _ in range(n):
        window = np.array([ids[-CONTEXT:]], dtype=np.int64)
        z = session.run(["logits"], {"input_ids": window})[0][0, -1].astype(np.float64)
        p = np.exp(log_softmax(z / temperature))
        ids.append(int(rng.choice(VOCAB, p=p / p.sum())))
    return lm_reference.decode(ids)


def greedy_cases(session):
    """Greedy fixture cases, plus the smallest top-1/top-2 logit gap along each path."""
    cases, margins = [], []
    for prompt in GREEDY_PROMPTS:
        tokens = lm_reference.greedy(session, prompt.encode("utf-8"), GREEDY_TOKENS, CONTEXT)
        ids = list(prompt.encode("utf-8")) + tokens
        z = session.run(["logits"], {"input_ids": np.array([ids[:-1]], np.int64)})[0][0]
        top2 = np.sort(z[len(ids) - 1 - GREEDY_TOKENS:], axis=-1)[:, -2:]
        margins.append(float((top2[:, 1] - top2[:, 0]).min()))
        cases.append({"prompt": prompt, "max_tokens": GREEDY_TOKENS, "context": CONTEXT,
                      "tokens": tokens, "text": lm_reference.decode(tokens)})
    return cases, margins


def main():
    """Train, export, verify, write the fixture, print samples and a summary."""
    t0 = time.perf_counter()
    text = load_text()
    print(f"text: {len(topics)} topics, {len(text)} bytes, "
          f"sha256 {hashlib.sha256(text.tobytes()).hexdigest()} (Python {sys.version.split()[0]})")
    params, stats = train(text)
    export(params, MODEL_PATH)
    session = lm_reference.load(MODEL_PATH)
    worst = verify(params, session)
    cases, margins = greedy_cases(session)
    FIXTURE_PATH.parent.mkdir(parents=True, exist_ok=True)  # one case per line
    FIXTURE_PATH.write_text("[\n" + ",\n".join(json.dumps(c, ensure_ascii=False) for c in cases)
                            + "\n]\n", encoding="utf-8")
    n_params = sum(v.size for v in params.values())
    print(f"K={K} emb={EMB} hidden={HIDDEN}: {n_params} parameters, "
          f"{MODEL_PATH.stat().st_size} B on disk")
    print(f"training: {stats['steps']} steps of {BATCH} in {stats['seconds']:.0f} s on "
          f"{stats['train_bytes']} bytes; val {stats['val_bpb']:.3f} bits/byte on "
          f"{stats['val_bytes']} held-out bytes, train {stats['train_bpb']:.3f} bits/byte")
    print(f"onnxruntime vs NumPy: max abs diff {worst:.2e}")
    for case, margin in zip(cases, margins):
        print(f"--- greedy {case['prompt']!r} (min top-2 logit gap {margin:.3f}):\n"
              f"{case['prompt']}{case['text']}")
    rng = np.random.default_rng(SEED + 2)
    for prompt in SAMPLE_PROMPTS:
        print(f"--- sampled, temperature {TEMPERATURE}:\n"
              f"{sample(session, prompt, SAMPLE_TOKENS, TEMPERATURE, rng)}")
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
