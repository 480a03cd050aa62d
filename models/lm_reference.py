#!/usr/bin/env python3
"""Reference greedy generator for byte-level language models such as bytelm.onnx.

Tests use it to check the server's output byte for byte:

    python models/lm_reference.py MODEL.onnx --prompt TEXT --max-tokens N [--context 256]

The model takes `input_ids` INT64 [batch, sequence] and returns `logits` FLOAT
[batch, sequence, 256]; token id = byte value. Each step runs the model on the last
`context` ids (truncated from the left) with shape [1, len], takes the argmax of the
logits at the last position (ties go to the lowest index) and appends it. No stop
strings, no sampling. Prints {"text": ..., "tokens": [...]} as JSON on stdout, where
`tokens` are the generated ids only and `text` is them decoded as UTF-8
(errors="replace").
"""
import argparse
import json

import numpy as np
import onnxruntime as ort

DEFAULT_CONTEXT = 256


def load(model_path):
    """Open `model_path` in an onnxruntime CPU session."""
    return ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])


def greedy(session, prompt_ids, max_tokens, context=DEFAULT_CONTEXT):
    """Generate `max_tokens` ids greedily after `prompt_ids`; return the new ids only."""
    if context < 1:
        raise ValueError("context must be at least 1")
    ids = [int(i) for i in prompt_ids]
    if not ids:
        raise ValueError("the prompt must contain at least one byte")
    generated = []
    for _ in range(max_tokens):
        window = np.array([ids[-context:]], dtype=np.int64)
        logits = session.run(["logits"], {"input_ids": window})[0]
        next_id = int(np.argmax(logits[0, -1]))
        ids.append(next_id)
        generated.append(next_id)
    return generated


def decode(ids):
    """Bytes -> str as UTF-8, replacing invalid sequences with U+FFFD."""
    return bytes(ids).decode("utf-8", errors="replace")


def main():
    """Parse the command line, generate, print the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="path to the .onnx model")
    parser.add_argument("--prompt", required=True, help="prompt text (encoded as UTF-8)")
    parser.add_argument("--max-tokens", type=int, required=True, help="bytes to generate")
    parser.add_argument("--context", type=int, default=DEFAULT_CONTEXT,
                        help=f"ids fed to the model per step (default {DEFAULT_CONTEXT})")
    args = parser.parse_args()
    tokens = greedy(load(args.model), args.prompt.encode("utf-8"), args.max_tokens,
                    args.context)
    print(json.dumps({"text": decode(tokens), "tokens": tokens}))


if __name__ == "__main__":
    main()
