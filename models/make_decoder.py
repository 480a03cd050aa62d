#!/usr/bin/env python3
"""Write models/tinychat/ (and models/tests/decoders/minimal/): small decoders in the layout
Hugging Face Optimum exports.

The folder holds `model.onnx` (a decoder with a KV cache: `input_ids`, `attention_mask`,
`position_ids`, `past_key_values.{i}.key/.value` in; `logits`, `present.{i}.key/.value` out),
`tokenizer.json` (a byte-level BPE trained here with the `tokenizers` package),
`tokenizer_config.json` (special tokens and a Jinja chat template), `generation_config.json`
and `config.json`.

The transformer is not trained by gradient descent. The embedding and the LM head are a
rank-128 bigram model: started from an SVD of the log bigram probabilities of the training
text and fitted with a few hundred full-batch Adam steps, so the model without its layers is
a bigram model. Two transformer layers with seeded random weights (real
causal attention over the cached and the current keys, grouped-query: 4 query heads share 2
key/value heads) add a perturbation to the residual stream large enough to change over 40 %
of the greedy choices, so the output depends on the whole context and on the positions:
a cache that is fed wrongly gives other tokens. The second folder, for tests, is smaller and
takes the other branches a server must handle: one layer, multi-head attention, no position_ids
input (the graph derives positions from the mask), GPT-2's config.json names, an integer
eos_token_id and no chat template. Fixed seeds, no network. Run with the pinned
venv (models/requirements.txt):
    python models/make_decoder.py
"""
import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
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
sys.path.insert(0, str(ROOT))
sys.dont_write_bytecode = True
import decoder_reference  # noqa: E402

OPSET, IR_VERSION = 17, 8
SEED = 0
VOCAB = 1024
CONTEXT = 1024                 # max_position_embeddings
BIGRAM_STEPS, BIGRAM_LR = 300, 0.01
POSITION_SCALE = 0.05            # position embeddings
BOS, EOS, PAD = "<|begin|>", "<|end|>", "<|pad|>"
ROLES = ["<|system|>", "<|user|>", "<|assistant|>"]
SPECIAL = [BOS, EOS, PAD] + ROLES


@dataclass(frozen=True)
class Shape:
    """One decoder to write: where, its sizes, and which optional parts it has."""
    out: Path
    layers: int
    d_model: int          # also the rank of the bigram factorization
    heads: int
    kv_heads: int
    head_size: int
    ffn: int
    position_ids: bool    # an input; without it the graph derives positions from the mask
    chat_template: bool   # in tokenizer_config.json; without it servers use a plain format
    gpt2_config: bool     # config.json with GPT-2's key names (n_layer, n_head, ...)
    layer_scale: float    # scales the layers' output projections (see the docstring)


# The bundled model: Llama-style config, grouped-query attention, position_ids, a template.
TINYCHAT = Shape(ROOT / "tinychat", layers=2, d_model=128, heads=4, kv_heads=2, head_size=32,
                 ffn=256, position_ids=True, chat_template=True, gpt2_config=False,
                 layer_scale=0.1)
# For tests: GPT-2-style config, multi-head attention, no position_ids input, no template.
MINIMAL = Shape(ROOT / "tests" / "decoders" / "minimal", layers=1, d_model=64, heads=2,
                kv_heads=2, head_size=32, ffn=128, position_ids=False, chat_template=False,
                gpt2_config=True, layer_scale=0.3)

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


def bigram_factors(ids, rank):
    """A rank-`rank` bigram model: an embedding [V, rank] and a head [rank, V] with
    softmax(emb[a] @ head) ~ P(next | a). Starts from the SVD of the smoothed log bigram
    probabilities, then full-batch Adam on the mean cross-entropy of the corpus's bigrams
    (the counts matrix makes each step one [V, rank] x [rank, V] product)."""
    counts = np.zeros((VOCAB, VOCAB), dtype=np.float64)
    np.add.at(counts, (ids[:-1], ids[1:]), 1.0)
    unigram = (np.bincount(ids, minlength=VOCAB) + 1.0) / (len(ids) + VOCAB)
    probs = (counts + 0.1 * VOCAB * unigram) / (counts.sum(1, keepdims=True) + 0.1 * VOCAB)
    logp = np.log(probs)
    u, s, vt = np.linalg.svd(logp - logp.mean(1, keepdims=True))
    root = np.sqrt(s[:rank])
    params = [u[:, :rank] * root, root[:, None] * vt[:rank]]
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


def init_layers(rng, shape):
    d, kv, ffn = shape.d_model, shape.kv_heads * shape.head_size, shape.ffn
    normal = lambda fan_in, *shape: rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)  # noqa: E731
    layers = []
    for _ in range(shape.layers):
        layers.append({
            "ln1_g": np.ones(d), "ln1_b": np.zeros(d),
            "wq": normal(d, d, d), "wk": normal(d, d, kv), "wv": normal(d, d, kv),
            "wo": shape.layer_scale * normal(d, d, d),
            "ln2_g": np.ones(d), "ln2_b": np.zeros(d),
            "w1": normal(d, d, ffn), "w2": shape.layer_scale * normal(ffn, ffn, d),
        })
    position = rng.normal(0.0, POSITION_SCALE, (CONTEXT, d))
    as32 = lambda tree: {k: v.astype(np.float32) for k, v in tree.items()}  # noqa: E731
    return [as32(layer) for layer in layers], position.astype(np.float32)


def layer_norm(x, g, b):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * g + b


def mask_positions(mask, s):
    """The positions a model without a position_ids input derives, as transformers does for
    GPT-2: the running count of unmasked keys minus one (0 for masked ones), last s columns."""
    return np.maximum(np.cumsum(mask, 1) - 1, 0)[:, -s:]


def forward(params, shape, ids, positions, mask, past):
    """NumPy reference of the graph. ids/positions [B, S] (positions None: derived from the
    mask), mask [B, P+S], past: list of (key, value) [B, KV, P, HS]. Returns logits [B, S, V]
    and the presents."""
    emb, head, layers, pos_table = params["emb"], params["head"], params["layers"], params["pos"]
    heads, kv_heads, size = shape.heads, shape.kv_heads, shape.head_size
    b, s = ids.shape
    if positions is None:
        positions = mask_positions(mask, s)
    x = emb[ids] + pos_table[positions]
    total = mask.shape[1]
    q_pos = np.arange(total - s, total)[:, None]
    allowed = (np.arange(total)[None, :] <= q_pos)[None, None] & (mask[:, None, None, :] != 0)
    presents = []
    for layer, (past_k, past_v) in zip(layers, past):
        h = layer_norm(x, layer["ln1_g"], layer["ln1_b"])
        q = (h @ layer["wq"]).reshape(b, s, heads, size).transpose(0, 2, 1, 3)
        k = (h @ layer["wk"]).reshape(b, s, kv_heads, size).transpose(0, 2, 1, 3)
        v = (h @ layer["wv"]).reshape(b, s, kv_heads, size).transpose(0, 2, 1, 3)
        k, v = np.concatenate([past_k, k], 2), np.concatenate([past_v, v], 2)
        presents.append((k, v))
        group = heads // kv_heads
        kk, vv = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
        scores = q @ kk.transpose(0, 1, 3, 2) / np.sqrt(size)
        scores = np.where(allowed, scores, -1e9)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        attn = (scores / scores.sum(-1, keepdims=True)) @ vv
        x = x + attn.transpose(0, 2, 1, 3).reshape(b, s, shape.d_model) @ layer["wo"]
        h = layer_norm(x, layer["ln2_g"], layer["ln2_b"]) @ layer["w1"]
        x = x + (h / (1.0 + np.exp(-h))) @ layer["w2"]
    return x @ head, presents


def build_graph(params, shape):
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
    const("scale", np.array(1.0 / np.sqrt(shape.head_size), np.float32))
    const("axes_12", np.array([1, 2], np.int64))
    const("axis_0", np.array([0], np.int64))
    const("axis_1", np.array([1], np.int64))
    const("shape_q", np.array([0, 0, shape.heads, shape.head_size], np.int64))
    const("shape_kv", np.array([0, 0, shape.kv_heads, shape.head_size], np.int64))
    const("shape_groups", np.array([0, shape.kv_heads, -1, 0], np.int64))
    const("shape_heads", np.array([0, shape.heads, -1, 0], np.int64))
    const("shape_model", np.array([0, 0, shape.d_model], np.int64))

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

    positions = "position_ids"
    if not shape.position_ids:
        # As transformers derives them for GPT-2: cumsum(mask) - 1, at least 0, last s columns.
        node("CumSum", ["attention_mask", "one"], "mask_count", )
        node("Sub", ["mask_count", "one"], "mask_index")
        node("Max", ["mask_index", "zero"], "mask_positions")
        node("Unsqueeze", ["past_len", "axis_0"], "past_len_1d")
        positions = node("Slice", ["mask_positions", "past_len_1d", "total_1d", "axis_1"],
                         "derived_position_ids")
    node("Gather", ["emb", "input_ids"], "tok_emb")
    node("Gather", ["pos_table", positions], "pos_emb")
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
    ]
    if shape.position_ids:
        inputs.append(helper.make_tensor_value_info("position_ids", TensorProto.INT64, [batch, seq]))
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, seq, VOCAB])]
    kv, size = shape.kv_heads, shape.head_size
    for i in range(shape.layers):
        for kind in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(
                f"past_key_values.{i}.{kind}", TensorProto.FLOAT, [batch, kv, past, size]))
            outputs.append(helper.make_tensor_value_info(
                f"present.{i}.{kind}", TensorProto.FLOAT, [batch, kv, total, size]))
    graph = helper.make_graph(nodes, shape.out.name, inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="tinyserve models/make_decoder.py")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def write_json(path, value):
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_configs(tokenizer, shape):
    ids = {token: tokenizer.token_to_id(token) for token in SPECIAL}
    added = {str(ids[t]): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                           "single_word": False, "special": True} for t in SPECIAL}
    config = {
        "added_tokens_decoder": added,
        "additional_special_tokens": ROLES,
        "bos_token": BOS,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": EOS,
        "model_max_length": CONTEXT,
        "pad_token": PAD,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    if not shape.chat_template:
        del config["chat_template"]
    write_json(shape.out / "tokenizer_config.json", config)
    # A list, as Llama 3's and Qwen's are, or a number, as GPT-2's is.
    eos = ids[EOS] if shape.gpt2_config else [ids[EOS]]
    write_json(shape.out / "generation_config.json", {
        "bos_token_id": ids[BOS],
        "eos_token_id": eos,
        "pad_token_id": ids[PAD],
        "do_sample": False,
    })
    if shape.gpt2_config:
        sizes = {"n_embd": shape.d_model, "n_layer": shape.layers, "n_head": shape.heads,
                 "n_inner": shape.ffn, "n_positions": CONTEXT}
    else:
        sizes = {"hidden_size": shape.d_model, "num_hidden_layers": shape.layers,
                 "num_attention_heads": shape.heads, "num_key_value_heads": shape.kv_heads,
                 "head_dim": shape.head_size, "intermediate_size": shape.ffn,
                 "max_position_embeddings": CONTEXT}
    write_json(shape.out / "config.json", {
        "architectures": ["TinyChatForCausalLM"],
        "model_type": "tinychat",
        "vocab_size": VOCAB,
        **sizes,
        "bos_token_id": ids[BOS],
        "eos_token_id": ids[EOS],
        "pad_token_id": ids[PAD],
        "use_cache": True,
    })


def empty_past(shape, batch=1):
    size = (batch, shape.kv_heads, 0, shape.head_size)
    return [(np.zeros(size, np.float32),) * 2 for _ in range(shape.layers)]


def check(params, shape, ids):
    """onnxruntime equals the NumPy forward pass, whole and step by step with the cache, with
    left padding in a batch of two."""
    import onnxruntime as ort
    session = ort.InferenceSession(str(shape.out / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    seq = np.asarray(ids[:40], np.int64)[None]

    def run(feed, past):
        for i, (k, v) in enumerate(past):
            feed[f"past_key_values.{i}.key"], feed[f"past_key_values.{i}.value"] = k, v
        if not shape.position_ids:
            del feed["position_ids"]
        out = session.run(None, feed)
        return out[0], [(out[1 + 2 * i], out[2 + 2 * i]) for i in range(shape.layers)]

    def step(chunk, start, past):
        return run({"input_ids": chunk,
                    "position_ids": np.arange(start, start + chunk.shape[1])[None],
                    "attention_mask": np.ones((1, start + chunk.shape[1]), np.int64)}, past)

    whole, _ = step(seq, 0, empty_past(shape))
    expected, _ = forward(params, shape, seq, np.arange(40)[None], np.ones((1, 40), np.int64),
                          empty_past(shape))
    diff_numpy = np.abs(whole - expected).max()
    assert diff_numpy < 1e-3, diff_numpy
    logits, past = step(seq[:, :30], 0, empty_past(shape))
    steps = [logits]
    for t in range(30, 40):
        logits, past = step(seq[:, t:t + 1], t, past)
        steps.append(logits)
    diff = np.abs(np.concatenate(steps, 1) - whole).max()
    assert diff < 1e-3, diff
    # Left padding: row 0 is 5 pads + 35 tokens; its logits equal the unpadded run's.
    padded = np.concatenate([np.full((1, 5), 2, np.int64), seq[:, :35]], 1)
    mask = np.ones((2, 40), np.int64)
    mask[0, :5] = 0
    positions = np.stack([np.r_[np.zeros(5, np.int64), np.arange(35)], np.arange(40)])
    out, _ = run({"input_ids": np.concatenate([padded, seq], 0), "attention_mask": mask,
                  "position_ids": positions}, empty_past(shape, 2))
    diff_pad = np.abs(out[0, 5:] - whole[0, :35]).max()
    assert diff_pad < 1e-3, diff_pad
    print(f"onnxruntime vs numpy {diff_numpy:.2e}, cached vs whole {diff:.2e}, "
          f"left-padded vs unpadded {diff_pad:.2e}")
    for outlet in session.get_outputs()[:3] + session.get_inputs()[:4]:
        print(f"  {outlet.name} {outlet.type} {outlet.shape}")


def write_decoder(shape, tokenizer, ids):
    """Fits the bigram factors, draws the layers, writes and checks `shape.out`."""
    print(f"== {shape.out.relative_to(ROOT)}")
    if shape.out.exists():
        shutil.rmtree(shape.out)
    shape.out.mkdir(parents=True)
    tokenizer.save(str(shape.out / "tokenizer.json"))
    logp, emb, head = bigram_factors(ids, shape.d_model)
    layers, pos = init_layers(np.random.default_rng(SEED), shape)
    params = {"emb": emb, "head": head, "layers": layers, "pos": pos}

    low_rank_pick = (emb @ head).argmax(1)
    sample = ids[:CONTEXT][None]
    logits, _ = forward(params, shape, sample, np.arange(CONTEXT)[None],
                        np.ones((1, CONTEXT), np.int64), empty_past(shape))
    changed = (logits[0].argmax(-1) != low_rank_pick[sample[0]]).mean()
    print(f"rank-{shape.d_model} factors pick the bigram argmax for "
          f"{(logp.argmax(1) == low_rank_pick).mean():.1%} of previous tokens; the layers change "
          f"{changed:.1%} of greedy picks on the first {CONTEXT} tokens of the corpus")

    onnx.save(build_graph(params, shape), str(shape.out / "model.onnx"))
    write_configs(tokenizer, shape)
    check(params, shape, ids)
    for messages in ([{"role": "user", "content": "What is assert?"}],
                     [{"role": "system", "content": "Answer briefly."},
                      {"role": "user", "content": "What is lambda?"}]):
        result = decoder_reference.generate(shape.out, messages=messages, max_tokens=48)
        print(json.dumps(messages), "->", json.dumps(result["text"]),
              f"(smallest top-2 logit gap {result['min_margin']:.4f})")
    for name in sorted(os.listdir(shape.out)):
        data = (shape.out / name).read_bytes()
        print(f"  {name}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}")


def main():
    text = corpus()
    print(f"corpus: {len(text.encode('utf-8'))} bytes, sha256 "
          f"{hashlib.sha256(text.encode('utf-8')).hexdigest()}")
    tokenizer = train_tokenizer(text)
    ids = np.asarray(tokenizer.encode(text).ids, np.int64)
    print(f"tokenizer: vocab {tokenizer.get_vocab_size()}, corpus {len(ids)} tokens "
          f"({len(text.encode('utf-8')) / len(ids):.2f} bytes/token)")
    for shape in (TINYCHAT, MINIMAL):
        write_decoder(shape, tokenizer, ids)


if __name__ == "__main__":
    main()
