#!/usr/bin/env python3
"""Write models/tinyembed/ (and models/tests/encoders/clsraw/): small sentence encoders in the
layout sentence-transformers and Optimum's feature-extraction export give.

tinyembed holds `model.onnx` (a BERT-style encoder: `input_ids`, `attention_mask`,
`token_type_ids` in, `last_hidden_state` [batch, sequence, 64] out), `tokenizer.json` (a
WordPiece trained here with the `tokenizers` package on CPython's pydoc topics, lowercasing,
`[CLS] ... [SEP]` added), `tokenizer_config.json`, `config.json`, `sentence_bert_config.json`
(`max_seq_length` 128), `modules.json` (Transformer, Pooling, Normalize) and
`1_Pooling/config.json` (mean pooling). The weights are seeded random (no training): the
server only has to compute what the Python reference computes, and different texts get
clearly different vectors (the script prints the largest cosine between its sample texts).

The second folder, for tests, takes the other branches: CLS pooling, no Normalize module, no
`token_type_ids` input, no sentence_bert_config.json (the limit comes from config.json's
`max_position_embeddings`, 64), one layer.

Fixed seeds, no network. Run with the pinned venv (models/requirements.txt):
    python models/make_encoder.py
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
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from pydoc_data.topics import topics  # noqa: E402
from tokenizers import (Tokenizer, decoders, models, normalizers, pre_tokenizers,  # noqa: E402
                        processors, trainers)

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.dont_write_bytecode = True
import encoder_reference  # noqa: E402

OPSET, IR_VERSION = 17, 8
SEED = 0
VOCAB = 1024
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SAMPLES = ["What is a class?", "A for loop runs its body once per item.",
           "naïve → 😀 日本", "The with statement", "lambda", "assert x > 0, 'x must be positive'"]


@dataclass(frozen=True)
class Shape:
    """One encoder to write: where, its sizes, and which optional parts it has."""
    out: Path
    layers: int
    d_model: int
    heads: int
    ffn: int
    positions: int          # max_position_embeddings
    max_seq_length: int     # sentence_bert_config.json's; 0: no such file
    token_type_ids: bool    # an input (BERT exports have it)
    pooling: str            # "mean" or "cls"
    normalize: bool         # a Normalize module in modules.json
    attn_scale: float       # scales the attention output projection (CLS pooling needs more
                            # mixing for different texts to get different vectors)


TINYEMBED = Shape(ROOT / "tinyembed", layers=2, d_model=64, heads=4, ffn=128, positions=256,
                  max_seq_length=128, token_type_ids=True, pooling="mean", normalize=True, attn_scale=1.0)
CLSRAW = Shape(ROOT / "tests" / "encoders" / "clsraw", layers=1, d_model=32, heads=2, ffn=64,
               positions=64, max_seq_length=0, token_type_ids=False, pooling="cls",
               normalize=False, attn_scale=4.0)


def corpus():
    return "\n".join(topics[key].strip() for key in sorted(topics))


def train_tokenizer(text):
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=None,
                                                      clean_text=True,
                                                      handle_chinese_chars=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(vocab_size=VOCAB, special_tokens=SPECIAL,
                                        show_progress=False, continuing_subword_prefix="##")
    tokenizer.train_from_iterator([text], trainer=trainer)
    # The trainer's set of tokens is fixed, but ties in its counts take ids in hash order:
    # number the tokens by their text (after the special ones) so two runs give one file.
    learned = sorted(t for t in tokenizer.get_vocab() if t not in SPECIAL)
    vocab = {token: i for i, token in enumerate(SPECIAL + learned)}
    tokenizer.model = models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    assert tokenizer.get_vocab_size() == VOCAB, tokenizer.get_vocab_size()
    return tokenizer


def init_params(rng, shape):
    d, ffn = shape.d_model, shape.ffn
    normal = lambda std, *size: rng.normal(0.0, std, size).astype(np.float32)  # noqa: E731
    params = {
        "word": normal(1.0, VOCAB, d), "pos": normal(0.1, shape.positions, d),
        "type": normal(0.1, 2, d), "ln_g": np.ones(d, np.float32), "ln_b": np.zeros(d, np.float32),
        "layers": [],
    }
    for _ in range(shape.layers):
        params["layers"].append({
            "wq": normal(d ** -0.5, d, d), "wk": normal(d ** -0.5, d, d),
            "wv": normal(d ** -0.5, d, d), "wo": normal(shape.attn_scale * d ** -0.5, d, d),
            "ln1_g": np.ones(d, np.float32), "ln1_b": np.zeros(d, np.float32),
            "w1": normal(d ** -0.5, d, ffn), "b1": np.zeros(ffn, np.float32),
            "w2": normal(ffn ** -0.5, ffn, d), "b2": np.zeros(d, np.float32),
            "ln2_g": np.ones(d, np.float32), "ln2_b": np.zeros(d, np.float32),
        })
    return params


def build_graph(params, shape):
    nodes, inits = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(op, inputs, output, **attrs):
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    d, heads = shape.d_model, shape.heads
    size = d // heads
    const("word", params["word"])
    const("pos", params["pos"])
    const("zero", np.array(0, np.int64))
    const("one", np.array(1, np.int64))
    const("axis_0", np.array([0], np.int64))
    const("axes_12", np.array([1, 2], np.int64))
    const("one_f", np.array(1.0, np.float32))
    const("neg", np.array(-1e9, np.float32))
    const("half", np.array(0.5, np.float32))
    const("rsqrt2", np.array(1.0 / np.sqrt(2.0), np.float32))
    const("scale", np.array(1.0 / np.sqrt(size), np.float32))
    const("shape_heads", np.array([0, 0, heads, size], np.int64))
    const("shape_model", np.array([0, 0, d], np.int64))

    node("Shape", ["input_ids"], "seq_1d", start=1, end=2)
    node("Squeeze", ["seq_1d", "axis_0"], "seq")
    node("Range", ["zero", "seq", "one"], "positions")
    node("Gather", ["word", "input_ids"], "tok_emb")
    node("Gather", ["pos", "positions"], "pos_emb")
    x = node("Add", ["tok_emb", "pos_emb"], "emb_sum")
    if shape.token_type_ids:
        const("type", params["type"])
        node("Gather", ["type", "token_type_ids"], "type_emb")
        x = node("Add", [x, "type_emb"], "emb_typed")
    const("ln_g", params["ln_g"])
    const("ln_b", params["ln_b"])
    x = node("LayerNormalization", [x, "ln_g", "ln_b"], "x_0", axis=-1, epsilon=1e-12)
    # Padded keys get -1e9 before the softmax: [batch, 1, 1, seq].
    node("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT)
    node("Sub", ["one_f", "mask_f"], "mask_inv")
    node("Mul", ["mask_inv", "neg"], "mask_add_2d")
    node("Unsqueeze", ["mask_add_2d", "axes_12"], "mask_add")
    for i, layer in enumerate(params["layers"]):
        p = f"l{i}_"
        for key, value in layer.items():
            const(p + key, value)
        for kind in ("q", "k", "v"):
            node("MatMul", [x, p + "w" + kind], p + kind + "_flat")
            node("Reshape", [p + kind + "_flat", "shape_heads"], p + kind + "_bshd")
            perm = [0, 2, 3, 1] if kind == "k" else [0, 2, 1, 3]
            node("Transpose", [p + kind + "_bshd"], p + kind, perm=perm)
        node("MatMul", [p + "q", p + "k"], p + "scores_raw")
        node("Mul", [p + "scores_raw", "scale"], p + "scores_scaled")
        node("Add", [p + "scores_scaled", "mask_add"], p + "scores")
        node("Softmax", [p + "scores"], p + "probs", axis=-1)
        node("MatMul", [p + "probs", p + "v"], p + "attn_bhsd")
        node("Transpose", [p + "attn_bhsd"], p + "attn_bshd", perm=[0, 2, 1, 3])
        node("Reshape", [p + "attn_bshd", "shape_model"], p + "attn")
        node("MatMul", [p + "attn", p + "wo"], p + "attn_out")
        node("Add", [x, p + "attn_out"], p + "res1")
        x = node("LayerNormalization", [p + "res1", p + "ln1_g", p + "ln1_b"], p + "x_attn",
                 axis=-1, epsilon=1e-12)
        node("MatMul", [x, p + "w1"], p + "up_w")
        node("Add", [p + "up_w", p + "b1"], p + "up")
        # GELU with erf, as BERT's.
        node("Mul", [p + "up", "rsqrt2"], p + "up_scaled")
        node("Erf", [p + "up_scaled"], p + "erf")
        node("Add", [p + "erf", "one_f"], p + "erf1")
        node("Mul", [p + "up", p + "erf1"], p + "gelu_2")
        node("Mul", [p + "gelu_2", "half"], p + "gelu")
        node("MatMul", [p + "gelu", p + "w2"], p + "down_w")
        node("Add", [p + "down_w", p + "b2"], p + "down")
        node("Add", [x, p + "down"], p + "res2")
        out = "last_hidden_state" if i == shape.layers - 1 else p + "x_out"
        x = node("LayerNormalization", [p + "res2", p + "ln2_g", p + "ln2_b"], out,
                 axis=-1, epsilon=1e-12)

    batch, seq = "batch_size", "sequence_length"
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [batch, seq]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [batch, seq])]
    if shape.token_type_ids:
        inputs.append(helper.make_tensor_value_info("token_type_ids", TensorProto.INT64,
                                                    [batch, seq]))
    outputs = [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT,
                                             [batch, seq, d])]
    graph = helper.make_graph(nodes, shape.out.name, inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="tinyserve models/make_encoder.py")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def layer_norm(x, g, b, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * g + b


def forward(params, shape, ids, mask):
    """NumPy reference of the graph: ids, mask [B, S] -> last_hidden_state [B, S, d]."""
    from math import erf
    b, s = ids.shape
    d, heads = shape.d_model, shape.heads
    size = d // heads
    x = params["word"][ids] + params["pos"][np.arange(s)][None]
    if shape.token_type_ids:
        x = x + params["type"][np.zeros_like(ids)]
    x = layer_norm(x, params["ln_g"], params["ln_b"])
    add = ((1.0 - mask) * -1e9)[:, None, None, :]
    verf = np.vectorize(erf)
    for layer in params["layers"]:
        split = lambda w, perm: (x @ w).reshape(b, s, heads, size).transpose(perm)  # noqa: E731
        q, k, v = split(layer["wq"], (0, 2, 1, 3)), split(layer["wk"], (0, 2, 3, 1)), \
            split(layer["wv"], (0, 2, 1, 3))
        scores = q @ k / np.sqrt(size) + add
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        attn = (scores / scores.sum(-1, keepdims=True)) @ v
        x = layer_norm(x + attn.transpose(0, 2, 1, 3).reshape(b, s, d) @ layer["wo"],
                       layer["ln1_g"], layer["ln1_b"])
        up = x @ layer["w1"] + layer["b1"]
        gelu = 0.5 * up * (1.0 + verf(up / np.sqrt(2.0)))
        x = layer_norm(x + gelu @ layer["w2"] + layer["b2"], layer["ln2_g"], layer["ln2_b"])
    return x


def write_json(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_configs(shape):
    write_json(shape.out / "config.json", {
        "architectures": ["BertModel"], "model_type": "bert", "vocab_size": VOCAB,
        "hidden_size": shape.d_model, "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.heads, "intermediate_size": shape.ffn,
        "hidden_act": "gelu", "max_position_embeddings": shape.positions,
        "type_vocab_size": 2 if shape.token_type_ids else 1, "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
    })
    write_json(shape.out / "tokenizer_config.json", {
        "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]",
        "mask_token": "[MASK]", "do_lower_case": True,
        "model_max_length": shape.max_seq_length or shape.positions,
        "tokenizer_class": "BertTokenizer",
    })
    if shape.max_seq_length:
        write_json(shape.out / "sentence_bert_config.json",
                   {"max_seq_length": shape.max_seq_length, "do_lower_case": False})
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if shape.normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    write_json(shape.out / "modules.json", modules)
    write_json(shape.out / "1_Pooling" / "config.json", {
        "word_embedding_dimension": shape.d_model,
        "pooling_mode_cls_token": shape.pooling == "cls",
        "pooling_mode_mean_tokens": shape.pooling == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False,
        "include_prompt": True,
    })


def check(params, shape, tokenizer):
    """onnxruntime equals the NumPy forward pass, padded rows equal unpadded ones, and the
    reference's vectors differ between texts."""
    import onnxruntime as ort
    session = ort.InferenceSession(str(shape.out / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    rows = [tokenizer.encode(text).ids for text in SAMPLES]
    width = max(map(len, rows))
    ids = np.zeros((len(rows), width), np.int64)
    mask = np.zeros((len(rows), width), np.int64)
    for i, row in enumerate(rows):
        ids[i, :len(row)], mask[i, :len(row)] = row, 1
    feed = {"input_ids": ids, "attention_mask": mask}
    if shape.token_type_ids:
        feed["token_type_ids"] = np.zeros_like(ids)
    out = session.run(None, feed)[0]
    expected = forward(params, shape, ids, mask.astype(np.float32))
    diff = max(np.abs(out[i, :len(r)] - expected[i, :len(r)]).max() for i, r in enumerate(rows))
    assert diff < 1e-3, diff
    alone = encoder_reference.embed(shape.out, texts=SAMPLES)["embeddings"]
    pooled = []
    for i, row in enumerate(rows):
        vector = encoder_reference.pool(out[i].astype(np.float64), mask[i], [shape.pooling])
        if shape.normalize:
            vector /= np.linalg.norm(vector)
        pooled.append(vector)
    cos = lambda a, b: float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))  # noqa: E731
    worst = min(cos(a, b) for a, b in zip(alone, pooled))
    assert worst > 0.99999, worst
    largest = max(cos(alone[i], alone[j]) for i in range(len(SAMPLES))
                  for j in range(len(SAMPLES)) if i < j)
    assert largest < 0.95, largest
    print(f"onnxruntime vs numpy {diff:.2e}; padded batch vs alone: cosine >= {worst:.7f}; "
          f"largest cosine between different samples {largest:.3f}; tokens per sample "
          f"{[len(r) for r in rows]}")


def write_encoder(shape, tokenizer):
    print(f"== {shape.out.relative_to(ROOT)}")
    if shape.out.exists():
        shutil.rmtree(shape.out)
    shape.out.mkdir(parents=True)
    tokenizer.save(str(shape.out / "tokenizer.json"))
    params = init_params(np.random.default_rng(SEED), shape)
    onnx.save(build_graph(params, shape), str(shape.out / "model.onnx"))
    write_configs(shape)
    check(params, shape, tokenizer)
    for path in sorted(p for p in shape.out.rglob("*") if p.is_file()):
        data = path.read_bytes()
        print(f"  {path.relative_to(shape.out)}: {len(data)} bytes, "
              f"sha256 {hashlib.sha256(data).hexdigest()[:16]}")


def main():
    text = corpus()
    print(f"corpus: {len(text.encode('utf-8'))} bytes, sha256 "
          f"{hashlib.sha256(text.encode('utf-8')).hexdigest()}")
    tokenizer = train_tokenizer(text)
    print(f"tokenizer: WordPiece, vocab {tokenizer.get_vocab_size()}, corpus "
          f"{len(tokenizer.encode(text).ids)} tokens")
    for shape in (TINYEMBED, CLSRAW):
        write_encoder(shape, tokenizer)


if __name__ == "__main__":
    main()
