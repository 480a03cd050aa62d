"""The Python baseline of bench/embeddings.py: an OpenAI-style `/v1/embeddings` for an encoder
folder, written the way FastAPI users write one (the pattern of sentence-transformers'
and Optimum's ONNX examples): a pydantic body, `tokenizers` with padding and truncation
enabled, `encode_batch`, one onnxruntime InferenceSession, mean pooling and L2 normalization
in NumPy, `.tolist()` into a dict. A plain `def` route, so FastAPI runs it in its thread pool
(onnxruntime and tokenizers release the GIL). Served by uvicorn (uvloop + httptools), one
worker process per core, each session with one intra-op thread (bench/embeddings.py starts it).

Environment: EMBED_FOLDER (the encoder folder), EMBED_MAX_LENGTH (128).
"""
import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI
from pydantic import BaseModel
from tokenizers import Tokenizer

FOLDER = os.environ["EMBED_FOLDER"]
tokenizer = Tokenizer.from_file(os.path.join(FOLDER, "tokenizer.json"))
tokenizer.enable_truncation(max_length=int(os.environ.get("EMBED_MAX_LENGTH", "128")))
tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(os.path.join(FOLDER, "model.onnx"), options,
                               providers=["CPUExecutionProvider"])
NEEDS_TYPES = any(i.name == "token_type_ids" for i in session.get_inputs())

app = FastAPI()


class EmbeddingRequest(BaseModel):
    model: str
    input: str | list[str]


@app.post("/v1/embeddings")
def embeddings(request: EmbeddingRequest):
    texts = [request.input] if isinstance(request.input, str) else request.input
    encodings = tokenizer.encode_batch(texts)
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    feed = {"input_ids": ids, "attention_mask": mask}
    if NEEDS_TYPES:
        feed["token_type_ids"] = np.zeros_like(ids)
    hidden = session.run(["last_hidden_state"], feed)[0]
    weights = mask[..., None].astype(np.float32)
    pooled = (hidden * weights).sum(1) / np.clip(weights.sum(1), 1e-9, None)
    pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
    tokens = int(mask.sum())
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": vector.tolist()}
                 for i, vector in enumerate(pooled)],
        "model": request.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
