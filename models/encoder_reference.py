#!/usr/bin/env python3
"""Reference embeddings for an encoder folder in the sentence-transformers / Optimum
feature-extraction layout, the way a Python user computes them: `tokenizers` for the ids,
onnxruntime for `last_hidden_state`, NumPy for the pooling and the normalization.

    python models/encoder_reference.py models/tinyembed --texts '["a class", "the loop"]'

Each text runs alone (batch 1, no padding): encoded with the folder's tokenizer.json (special
tokens added, truncated to the model's maximum length: sentence_bert_config.json's
`max_seq_length`, else tokenizer_config.json's `model_max_length`, else config.json's
`max_position_embeddings`, the smallest of those given), pooled as 1_Pooling/config.json says
(CLS, max, mean, mean_sqrt_len, last token; concatenated in that order when several are on;
mean when the file is absent), then L2-normalized when modules.json has a Normalize module.
`--ids '[[2, 57, 3]]'` embeds token-id lists as given instead (no special tokens added, the same
truncation). `--no-normalize` skips the normalization. Prints JSON:
{"embeddings": [[...], ...], "tokens": [n, ...]} (the ids fed per input).
"""
import argparse
import json
from pathlib import Path

import numpy as np

POOLING_ORDER = ["cls", "max", "mean", "mean_sqrt_len", "lasttoken"]


def load_json(path):
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def max_length(folder):
    limits = [load_json(folder / "sentence_bert_config.json").get("max_seq_length"),
              load_json(folder / "tokenizer_config.json").get("model_max_length"),
              load_json(folder / "config.json").get("max_position_embeddings")]
    limits = [n for n in limits if isinstance(n, int) and 0 < n < 1 << 24]
    return min(limits) if limits else 512


def pooling_modes(folder):
    modules = load_json(folder / "modules.json") or []
    path = next((m["path"] for m in modules if m.get("type", "").endswith(".Pooling")), "1_Pooling")
    config = load_json(folder / path / "config.json")
    on = [mode for mode in POOLING_ORDER if config.get(f"pooling_mode_{mode}_token")
          or config.get(f"pooling_mode_{mode}_tokens") or config.get(f"pooling_mode_{mode}")]
    return on or ["mean"]


def normalizes(folder):
    modules = load_json(folder / "modules.json") or []
    return any(m.get("type", "").endswith(".Normalize") for m in modules)


def pool(hidden, mask, modes):
    """hidden [S, H], mask [S] of 0/1 -> the pooled vector, modes concatenated."""
    mask = mask.astype(np.float32)[:, None]
    parts = []
    for mode in modes:
        if mode == "cls":
            parts.append(hidden[0])
        elif mode == "max":
            parts.append(np.where(mask > 0, hidden, -1e9).max(0))
        elif mode == "mean":
            parts.append((hidden * mask).sum(0) / max(mask.sum(), 1e-9))
        elif mode == "mean_sqrt_len":
            parts.append((hidden * mask).sum(0) / np.sqrt(max(mask.sum(), 1e-9)))
        elif mode == "lasttoken":
            parts.append(hidden[int(mask.sum()) - 1])
    return np.concatenate(parts)


def embed(folder, texts=None, ids=None, normalize=None):
    import onnxruntime as ort
    from tokenizers import Tokenizer

    folder = Path(folder)
    limit = max_length(folder)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(limit)
    if ids is None:
        ids = [tokenizer.encode(text).ids for text in texts]
    else:
        ids = [list(row)[:limit] for row in ids]
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    output = next(o.name for o in session.get_outputs()
                  if o.name in ("last_hidden_state", "token_embeddings"))
    modes = pooling_modes(folder)
    normalize = normalizes(folder) if normalize is None else normalize
    embeddings = []
    for row in ids:
        feed = {"input_ids": np.asarray([row], np.int64),
                "attention_mask": np.ones((1, len(row)), np.int64)}
        if "token_type_ids" in names:
            feed["token_type_ids"] = np.zeros((1, len(row)), np.int64)
        hidden = session.run([output], feed)[0][0]
        vector = pool(hidden.astype(np.float64), np.ones(len(row)), modes)
        if normalize:
            vector = vector / max(np.linalg.norm(vector), 1e-12)
        embeddings.append(vector)
    return {"embeddings": [v.astype(np.float32).tolist() for v in embeddings],
            "tokens": [len(row) for row in ids]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--texts", help="a JSON list of strings")
    group.add_argument("--ids", help="a JSON list of lists of token ids")
    parser.add_argument("--no-normalize", action="store_true")
    args = parser.parse_args()
    result = embed(args.folder,
                   texts=json.loads(args.texts) if args.texts else None,
                   ids=json.loads(args.ids) if args.ids else None,
                   normalize=False if args.no_normalize else None)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
