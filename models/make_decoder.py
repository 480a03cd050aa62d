#!/usr/bin/env python3
"""Write models/tinychat/: a small decoder in the layout Hugging Face Optimum exports.

The folder holds `model.onnx` (a decoder with a KV cache: `input_ids`, `attention_mask`,
`position_ids`, `past_key_values.{i}.key/.value` in; `logits`, `present.{i}.key/.value` out),
`tokenizer.json` (a byte-level BPE trained here with the `tokenizers` package),
`tokenizer_config.json` (special tokens and a Jinja chat template), `generation_config.json`
and `config.json`.

The weights are not trained by gradient descent. The embedding and the LM head are the two
factors of a rank-128 SVD of the log bigram probabilities of the training text, so the model
without its layers is a bigram model. Two transformer layers with seeded random weights (real
causal attention over the cached and the current keys, grouped-query: 4 query heads share 2
key/value heads) add a perturbation to the residual stream large enough to change about a
fifth of the greedy choices, so the output depends on the whole context and on the positions:
a cache that is fed wrongly gives other tokens. Fixed seeds, no network. Run with the pinned
venv (models/requirements.txt):
    python models/make_decoder.py
"""
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
# The BPE trainer's merge order does not depend on threads, but keep it single-threaded anyway.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from pydoc_data.topics import topics  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "tinychat"
sys.path.insert(0, str(ROOT))
sys.dont_write_bytecode = True
import decoder_reference  # noqa: E402

OPSET, IR_VERSION = 17, 8
SEED = 0
VOCAB = 1024
LAYERS, D_MODEL, HEADS, KV_HEADS, HEAD_SIZE, FFN = 2, 128, 4, 2, 32, 256
RANK = D_MODEL                 # rank of the bigram factorization
CONTEXT = 1024                 # max_position_embeddings
BIGRAM_STEPS, BIGRAM_LR = 300, 0.01
LAYER_SCALE = 0.1                # output projections of the layers (see the docstring)
POSITION_SCALE = 0.05            # position embeddings
BOS, EOS, PAD = "<|begin|>", "<|end|>", "<|pad|>"
ROLES = ["<|system|>", "<|user|>", "<|assistant|>"]
SPECIAL = [BOS, EOS, PAD] + ROLES

CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}"
    "{% set system_message = messages[0]['content'] %}"
    "{% set loop_messages = messages[1:] %}"
    "{% else %}"
    "{% set system_message = false %}"
    "{% set loop_messages = messages %}"
    "{% endif %}"
    "{{ bos_token }}"
    "{% if system_message != false %}"
    "{{ '<|system|>\\n' + system_message.strip() + eos_token + '\\n' }}"
    "{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'].strip() + eos_token + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}"
    "{{ '<|assistant|>\\n' }}"
    "{% endif %}"
)


def corpus():
    """The training text as chat turns: one user turn (the topic's name) and one assistant
    turn (its text) per pydoc topic, in sorted key order."""
    turns = []
    for key in sorted(topics):
        turns.append(f"{BOS}<|user|>\nWhat is {key}?{EOS}\n<|assistant|>\n"
                     f"{topics[key].strip()}{EOS}\n")
    return "".join(turns)


def train_tokenizer(text):
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=SPECIAL, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    plain = text
    for token in SPECIAL:
        plain = plain.replace(token, "\n")
    tokenizer.train_from_iterator([plain], trainer=trainer)
    assert tokenizer.get_vocab_size() == VOCAB, tokenizer.get_vocab_size()
    return tokenizer


def bigram_factors(ids):
    """A rank-RANK bigram model: an embedding [V, RANK] and a head [RANK, V] with
    softmax(emb[a] @ head) ~ P(next | a). Starts from the SVD of the smoothed log bigram
    probabilities, then full-batch Adam on the mean cross-entropy of the corpus's bigrams
    (the counts matrix makes each step one [V, RANK] x [RANK, V] product)."""
    counts = np.zeros((VOCAB, VOCAB), dtype=np.float64)
    np.add.at(counts, (ids[:-1], ids[1:]), 1.0)
    unigram = (np.bincount(ids, minlength=VOCAB) + 1.0) / (len(ids) + VOCAB)
    probs = (counts + 0.1 * VOCAB * unigram) / (counts.sum(1, keepdims=True) + 0.1 * VOCAB)
    logp = np.log(probs)
    u, s, vt = np.linalg.svd(logp - logp.mean(1, keepdims=True))
    root = np.sqrt(s[:RANK])
    params = [u[:, :RANK] * root, root[:, None] * vt[:RANK]]
    moments = [[np.zeros_like(p), np.zeros_like(p)] for p in params]
    total = counts.sum()
    row = counts.sum(1, keepdims=True)
    for step in range(1, BIGRAM_STEPS + 1):
        emb, head = params
        z = emb @ head
        z = np.exp(z - z.max(1, keepdims=True))
        grad_z = (row * z / z.sum(1, keepdims=True) - counts) / total
        grads = [grad_z @ head.T, emb.T @ grad_z]
        for p, g, m in zip(params, grads, moments):
            m[0] = 0.9 * m[0] + 0.1 * g
            m[1] = 0.999 * m[1] + 0.001 * g * g
            p -= BIGRAM_LR * (m[0] / (1 - 0.9 ** step)) / (np.sqrt(m[1] / (1 - 0.999 ** step)) + 1e-8)
    emb, head = params
    z = emb @ head
    z = z - z.max(1, keepdims=True)
    logq = z - np.log(np.exp(z).sum(1, keepdims=True))
    loss = -(counts * logq).sum() / total
    exact = -(counts * np.log(np.maximum(counts, 1e-300) / np.maximum(row, 1))).sum() / total
    print(f"bigram factors: {loss / np.log(2):.3f} bits/token on the corpus "
          f"(the exact bigram: {exact / np.log(2):.3f})")
    return logp, emb.astype(np.float32), head.astype(np.float32)


def init_layers(rng):
    d, kv = D_MODEL, KV_HEADS * HEAD_SIZE
    normal = lambda fan_in, *shape: rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)  # noqa: E731
    layers = []
    for _ in range(LAYERS):
        layers.append({
            "ln1_g": np.ones(d), "ln1_b": np.zeros(d),
            "wq": normal(d, d, d), "wk": normal(d, d, kv), "wv": normal(d, d, kv),
            "wo": LAYER_SCALE * normal(d, d, d),
            "ln2_g": np.ones(d), "ln2_b": np.zeros(d),
            "w1": normal(d, d, FFN), "w2": LAYER_SCALE * normal(FFN, FFN, d),
        })
    position = rng.normal(0.0, POSITION_SCALE, (CONTEXT, D_MODEL))
    as32 = lambda tree: {k: v.astype(np.float32) for k, v in tree.items()}  # noqa: E731
    return [as32(layer) for layer in layers], position.astype(np.float32)


def layer_norm(x, g, b):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * g + b


def forward(params, ids, positions, mask, past):
    """NumPy reference of the graph. ids/positions [B, S], mask [B, P+S], past: list of
    (key, value) [B, KV, P, HS]. Returns logits [B, S, V] and the presents."""
    emb, head, layers, pos_table = params["emb"], params["head"], params["layers"], params["pos"]
    x = emb[ids] + pos_table[positions]
    b, s = ids.shape
    total = mask.shape[1]
    q_pos = np.arange(total - s, total)[:, None]
    allowed = (np.arange(total)[None, :] <= q_pos)[None, None] & (mask[:, None, None, :] != 0)
    presents = []
    for layer, (past_k, past_v) in zip(layers, past):
        h = layer_norm(x, layer["ln1_g"], layer["ln1_b"])
        q = (h @ layer["wq"]).reshape(b, s, HEADS, HEAD_SIZE).transpose(0, 2, 1, 3)
        k = (h @ layer["wk"]).reshape(b, s, KV_HEADS, HEAD_SIZE).transpose(0, 2, 1, 3)
        v = (h @ layer["wv"]).reshape(b, s, KV_HEADS, HEAD_SIZE).transpose(0, 2, 1, 3)
        k, v = np.concatenate([past_k, k], 2), np.concatenate([past_v, v], 2)
        presents.append((k, v))
        group = HEADS // KV_HEADS
        kk, vv = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
        scores = q @ kk.transpose(0, 1, 3, 2) / np.sqrt(HEAD_SIZE)
        scores = np.where(allowed, scores, -1e9)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        attn = (scores / scores.sum(-1, keepdims=True)) @ vv
        x = x + attn.transpose(0, 2, 1, 3).reshape(b, s, D_MODEL) @ layer["wo"]
        h = layer_norm(x, layer["ln2_g"], layer["ln2_b"]) @ layer["w1"]
        x = x + (h / (1.0 + np.exp(-h))) @ layer["w2"]
    return x @ head, presents


def build_graph(params):
    nodes, inits = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(op, inputs, output, **attrs):
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    const("emb", params["emb"])
    const("head", params["head"])
    const("pos_table", params["pos"])
    const("zero", np.array(0, np.int64))
    const("one", np.array(1, np.int64))
    const("neg", np.array(-1e9, np.float32))
    const("scale", np.array(1.0 / np.sqrt(HEAD_SIZE), np.float32))
    const("axes_12", np.array([1, 2], np.int64))
    const("axis_0", np.array([0], np.int64))
    const("axis_1", np.array([1], np.int64))
    const("shape_q", np.array([0, 0, HEADS, HEAD_SIZE], np.int64))
    const("shape_kv", np.array([0, 0, KV_HEADS, HEAD_SIZE], np.int64))
    const("shape_groups", np.array([0, KV_HEADS, -1, 0], np.int64))
    const("shape_heads", np.array([0, HEADS, -1, 0], np.int64))
    const("shape_model", np.array([0, 0, D_MODEL], np.int64))

    # Which keys each query may see: causal over past + current, and the attention mask.
    node("Shape", ["input_ids"], "seq_1d", start=1, end=2)
    node("Shape", ["attention_mask"], "total_1d", start=1, end=2)
    node("Squeeze", ["seq_1d", "axis_0"], "seq")
    node("Squeeze", ["total_1d", "axis_0"], "total")
    node("Sub", ["total", "seq"], "past_len")
    node("Range", ["past_len", "total", "one"], "q_pos_1d")
    node("Unsqueeze", ["q_pos_1d", "axis_1"], "q_pos")
    node("Range", ["zero", "total", "one"], "k_pos_1d")
    node("Unsqueeze", ["k_pos_1d", "axis_0"], "k_pos")
    node("LessOrEqual", ["k_pos", "q_pos"], "causal")
    node("Cast", ["attention_mask"], "mask_bool", to=TensorProto.BOOL)
    node("Unsqueeze", ["mask_bool", "axes_12"], "mask_4d")
    node("And", ["causal", "mask_4d"], "allowed")

    node("Gather", ["emb", "input_ids"], "tok_emb")
    node("Gather", ["pos_table", "position_ids"], "pos_emb")
    x = node("Add", ["tok_emb", "pos_emb"], "x_0")
    for i, layer in enumerate(params["layers"]):
        p = f"l{i}_"
        for key, value in layer.items():
            const(p + key, value)
        h = node("LayerNormalization", [x, p + "ln1_g", p + "ln1_b"], p + "h1", axis=-1, epsilon=1e-5)
        node("MatMul", [h, p + "wq"], p + "q_flat")
        node("Reshape", [p + "q_flat", "shape_q"], p + "q_bshd")
        q = node("Transpose", [p + "q_bshd"], p + "q", perm=[0, 2, 1, 3])
        for kind, out in (("k", f"present.{i}.key"), ("v", f"present.{i}.value")):
            node("MatMul", [h, p + "w" + kind], p + kind + "_flat")
            node("Reshape", [p + kind + "_flat", "shape_kv"], p + kind + "_bshd")
            node("Transpose", [p + kind + "_bshd"], p + kind + "_new", perm=[0, 2, 1, 3])
            past = f"past_key_values.{i}.key" if kind == "k" else f"past_key_values.{i}.value"
            node("Concat", [past, p + kind + "_new"], out, axis=2)
        # Grouped-query attention without copying the cache per query head: the query heads
        # of one key/value head are stacked along the rows, [b, KV, group * s, HS].
        node("Reshape", [q, "shape_groups"], p + "q_grouped")
        node("Transpose", [f"present.{i}.key"], p + "k_t", perm=[0, 1, 3, 2])
        node("MatMul", [p + "q_grouped", p + "k_t"], p + "scores_grouped")
        node("Reshape", [p + "scores_grouped", "shape_heads"], p + "scores_raw")
        node("Mul", [p + "scores_raw", "scale"], p + "scores_scaled")
        node("Where", ["allowed", p + "scores_scaled", "neg"], p + "scores")
        node("Softmax", [p + "scores"], p + "probs", axis=-1)
        node("Reshape", [p + "probs", "shape_groups"], p + "probs_grouped")
        node("MatMul", [p + "probs_grouped", f"present.{i}.value"], p + "attn_grouped")
        node("Reshape", [p + "attn_grouped", "shape_heads"], p + "attn_bhsd")
        node("Transpose", [p + "attn_bhsd"], p + "attn_bshd", perm=[0, 2, 1, 3])
        node("Reshape", [p + "attn_bshd", "shape_model"], p + "attn")
        node("MatMul", [p + "attn", p + "wo"], p + "attn_out")
        x = node("Add", [x, p + "attn_out"], p + "x_attn")
        h = node("LayerNormalization", [x, p + "ln2_g", p + "ln2_b"], p + "h2", axis=-1, epsilon=1e-5)
        node("MatMul", [h, p + "w1"], p + "up")
        node("Sigmoid", [p + "up"], p + "gate")
        node("Mul", [p + "up", p + "gate"], p + "silu")
        node("MatMul", [p + "silu", p + "w2"], p + "down")
        x = node("Add", [x, p + "down"], p + "x_out")
    node("MatMul", [x, "head"], "logits")

    batch, seq, past, total = "batch_size", "sequence_length", "past_sequence_length", \
        "past_sequence_length + sequence_length"
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, [batch, seq]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [batch, total]),
        helper.make_tensor_value_info("position_ids", TensorProto.INT64, [batch, seq]),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, seq, VOCAB])]
    for i in range(LAYERS):
        for kind in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(
                f"past_key_values.{i}.{kind}", TensorProto.FLOAT, [batch, KV_HEADS, past, HEAD_SIZE]))
            outputs.append(helper.make_tensor_value_info(
                f"present.{i}.{kind}", TensorProto.FLOAT, [batch, KV_HEADS, total, HEAD_SIZE]))
    graph = helper.make_graph(nodes, "tinychat", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="tinyserve models/make_decoder.py")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def write_json(path, value):
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_configs(tokenizer):
    ids = {token: tokenizer.token_to_id(token) for token in SPECIAL}
    added = {str(ids[t]): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                           "single_word": False, "special": True} for t in SPECIAL}
    write_json(OUT / "tokenizer_config.json", {
        "added_tokens_decoder": added,
        "additional_special_tokens": ROLES,
        "bos_token": BOS,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": EOS,
        "model_max_length": CONTEXT,
        "pad_token": PAD,
        "tokenizer_class": "PreTrainedTokenizerFast",
    })
    write_json(OUT / "generation_config.json", {
        "bos_token_id": ids[BOS],
        "eos_token_id": [ids[EOS]],
        "pad_token_id": ids[PAD],
        "do_sample": False,
    })
    write_json(OUT / "config.json", {
        "architectures": ["TinyChatForCausalLM"],
        "model_type": "tinychat",
        "vocab_size": VOCAB,
        "hidden_size": D_MODEL,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "head_dim": HEAD_SIZE,
        "intermediate_size": FFN,
        "max_position_embeddings": CONTEXT,
        "bos_token_id": ids[BOS],
        "eos_token_id": ids[EOS],
        "pad_token_id": ids[PAD],
        "use_cache": True,
    })


def check(params, ids):
    """onnxruntime equals the NumPy forward pass, whole and step by step with the cache, with
    left padding in a batch of two."""
    import onnxruntime as ort
    session = ort.InferenceSession(str(OUT / "model.onnx"), providers=["CPUExecutionProvider"])
    seq = np.asarray(ids[:40], np.int64)[None]
    empty = [(np.zeros((1, KV_HEADS, 0, HEAD_SIZE), np.float32),) * 2 for _ in range(LAYERS)]

    def run(chunk, start, past):
        feed = {"input_ids": chunk, "position_ids": np.arange(start, start + chunk.shape[1])[None],
                "attention_mask": np.ones((1, start + chunk.shape[1]), np.int64)}
        for i, (k, v) in enumerate(past):
            feed[f"past_key_values.{i}.key"], feed[f"past_key_values.{i}.value"] = k, v
        out = session.run(None, feed)
        return out[0], [(out[1 + 2 * i], out[2 + 2 * i]) for i in range(LAYERS)]

    whole, _ = run(seq, 0, empty)
    expected, _ = forward(params, seq, np.arange(40)[None], np.ones((1, 40), np.int64), empty)
    assert np.abs(whole - expected).max() < 1e-3, np.abs(whole - expected).max()
    logits, past = run(seq[:, :30], 0, empty)
    steps = [logits]
    for t in range(30, 40):
        logits, past = run(seq[:, t:t + 1], t, past)
        steps.append(logits)
    stepped = np.concatenate(steps, 1)
    diff = np.abs(stepped - whole).max()
    assert diff < 1e-3, diff
    # Left padding: row 0 is 5 pads + 35 tokens; its logits equal the unpadded run's.
    padded = np.concatenate([np.full((1, 5), 2, np.int64), seq[:, :35]], 1)
    batch = np.concatenate([padded, seq], 0)
    mask = np.ones((2, 40), np.int64)
    mask[0, :5] = 0
    positions = np.stack([np.r_[np.zeros(5, np.int64), np.arange(35)], np.arange(40)])
    empty2 = [(np.zeros((2, KV_HEADS, 0, HEAD_SIZE), np.float32),) * 2 for _ in range(LAYERS)]
    feed = {"input_ids": batch, "attention_mask": mask, "position_ids": positions}
    for i, (k, v) in enumerate(empty2):
        feed[f"past_key_values.{i}.key"], feed[f"past_key_values.{i}.value"] = k, v
    out = session.run(None, feed)[0]
    diff_pad = np.abs(out[0, 5:] - whole[0, :35]).max()
    assert diff_pad < 1e-3, diff_pad
    print(f"onnxruntime vs numpy {np.abs(whole - expected).max():.2e}, cached vs whole "
          f"{diff:.2e}, left-padded vs unpadded {diff_pad:.2e}")
    for output in session.get_outputs()[:3] + session.get_inputs()[:4]:
        print(f"  {output.name} {output.type} {output.shape}")


def main():
    text = corpus()
    print(f"corpus: {len(text.encode('utf-8'))} bytes, sha256 "
          f"{hashlib.sha256(text.encode('utf-8')).hexdigest()}")
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir()
    tokenizer = train_tokenizer(text)
    tokenizer.save(str(OUT / "tokenizer.json"))
    ids = np.asarray(tokenizer.encode(text).ids, np.int64)
    print(f"tokenizer: vocab {tokenizer.get_vocab_size()}, corpus {len(ids)} tokens "
          f"({len(text.encode('utf-8')) / len(ids):.2f} bytes/token)")
    logp, emb, head = bigram_factors(ids)
    rng = np.random.default_rng(SEED)
    layers, pos = init_layers(rng)
    params = {"emb": emb, "head": head, "layers": layers, "pos": pos}

    bigram_pick = logp.argmax(1)
    low_rank_pick = (emb @ head).argmax(1)
    sample = ids[:2000][None]
    empty = [(np.zeros((1, KV_HEADS, 0, HEAD_SIZE), np.float32),) * 2 for _ in range(LAYERS)]
    logits, _ = forward(params, sample, np.arange(2000)[None] % CONTEXT,
                        np.ones((1, 2000), np.int64), empty)
    changed = (logits[0].argmax(-1) != low_rank_pick[sample[0]]).mean()
    print(f"rank-{RANK} factors pick the bigram argmax for {(bigram_pick == low_rank_pick).mean():.1%}"
          f" of previous tokens; the layers change {changed:.1%} of greedy picks on the corpus")

    model = build_graph(params)
    onnx.save(model, str(OUT / "model.onnx"))
    write_configs(tokenizer)
    check(params, ids)
    for messages in ([{"role": "user", "content": "What is assert?"}],
                     [{"role": "system", "content": "Answer briefly."},
                      {"role": "user", "content": "What is lambda?"}]):
        result = decoder_reference.generate(OUT, messages=messages, max_tokens=48)
        print(json.dumps(messages), "->", json.dumps(result["text"]),
              f"(smallest top-2 logit gap {result['min_margin']:.4f})")
    for name in sorted(os.listdir(OUT)):
        data = (OUT / name).read_bytes()
        print(f"  {name}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}")


if __name__ == "__main__":
    main()
