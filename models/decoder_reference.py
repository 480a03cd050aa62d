#!/usr/bin/env python3
"""Reference greedy generator for a decoder folder in Hugging Face Optimum's layout.

Renders the chat template from tokenizer_config.json with Jinja2 (as transformers does:
sandboxed, trim_blocks, lstrip_blocks, `raise_exception`), or tinyserve's plain format
(`User: ...` lines, then `Assistant:`) when the folder has none, encodes with `tokenizers`, runs the
prompt through onnxruntime once, then one token per step feeding each `present.*` output back
as the next `past_key_values.*` input. Greedy (argmax, ties to the lowest id); stops at an EOS
id from generation_config.json (not included) or after --max-tokens.

    python models/decoder_reference.py models/tinychat --prompt "The " --max-tokens 32
    python models/decoder_reference.py models/tinychat --messages '[{"role": "user", "content": "Hi"}]'
    python models/decoder_reference.py models/tinychat --messages '[...]' --render-only

--json prints one JSON object: `prompt` (the text fed: the rendered template, or --prompt),
`prompt_ids`, `tokens` (generated ids), `text` (tokens decoded, special tokens skipped) and
`finish_reason` ("stop" or "length") and `min_margin` (the smallest gap between the two
largest logits along the path: how far another build's rounding is from changing it; null
when the model did not run); with --render-only only `prompt`, or `error` when the
template raises (--messages may then be a list of conversations, giving a list of results, and
--template FILE renders another Jinja template with the folder's special tokens). Without
--json it prints the prompt and the text.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np


def load_json(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def token_text(value):
    """A special token in tokenizer_config.json: a string or an AddedToken dict."""
    if isinstance(value, dict):
        return value.get("content", "")
    return value or ""


PLAIN_ROLES = {"system": "System", "developer": "System", "user": "User", "assistant": "Assistant"}


def render_plain(messages, add_generation_prompt):
    """tinyserve's plain format for models without a template: `Role: content` lines, then
    `Assistant:`."""
    lines = []
    for message in messages:
        role = PLAIN_ROLES.get(message["role"])
        if role is None:
            raise ValueError(f'unknown message role "{message["role"]}"')
        content = message.get("content") or ""
        if isinstance(content, list):
            content = "".join(part.get("text", "") for part in content)
        lines.append(f"{role}: {content}\n")
    return "".join(lines) + ("Assistant:" if add_generation_prompt else "")


def render(folder, messages, add_generation_prompt=True, template_path=None):
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    config = load_json(Path(folder) / "tokenizer_config.json")
    if template_path is None and "chat_template" not in config:
        return render_plain(messages, add_generation_prompt)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    if template_path is not None:
        source = Path(template_path).read_text(encoding="utf-8")
    else:
        source = config["chat_template"]
    template = env.from_string(source)
    return template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                           bos_token=token_text(config.get("bos_token")),
                           eos_token=token_text(config.get("eos_token")))


def eos_ids(folder):
    config = load_json(Path(folder) / "generation_config.json")
    eos = config.get("eos_token_id", [])
    return set(eos if isinstance(eos, list) else [eos])


def generate(folder, prompt=None, messages=None, max_tokens=32):
    import onnxruntime as ort
    from tokenizers import Tokenizer

    folder = Path(folder)
    text = render(folder, messages) if messages is not None else prompt
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    # A rendered chat already holds its special tokens (apply_chat_template encodes it without
    # adding any); a raw prompt gets what the tokenizer's post-processor adds, as in a pipeline.
    prompt_ids = tokenizer.encode(text, add_special_tokens=messages is None).ids
    if not prompt_ids:
        raise SystemExit("empty prompt")
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    past = {}
    for spec in session.get_inputs():
        if spec.name.startswith("past_key_values."):
            _, heads, _, size = spec.shape
            past[spec.name] = np.zeros((1, heads, 0, size), np.float32)
    stop = eos_ids(folder)
    ids = list(prompt_ids)
    fed = list(prompt_ids)
    tokens, finish, margin = [], "length", float("inf")
    while len(tokens) < max_tokens:
        start = len(ids) - len(fed)
        feed = {"input_ids": np.asarray([fed], np.int64),
                "attention_mask": np.ones((1, len(ids)), np.int64)}
        if "position_ids" in names:
            feed["position_ids"] = np.arange(start, len(ids), dtype=np.int64)[None]
        feed.update(past)
        outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))
        past = {name.replace("present.", "past_key_values."): value
                for name, value in outputs.items() if name.startswith("present.")}
        last = outputs["logits"][0, -1]
        token = int(np.argmax(last))
        top2 = np.partition(last, -2)[-2:]
        margin = min(margin, float(top2[1] - top2[0]))
        if token in stop:
            finish = "stop"
            break
        tokens.append(token)
        ids.append(token)
        fed = [token]
    return {"prompt": text, "prompt_ids": prompt_ids, "tokens": tokens,
            "text": tokenizer.decode(tokens, skip_special_tokens=True),
            "finish_reason": finish, "min_margin": margin if tokens or finish == "stop" else None}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt")
    source.add_argument("--messages", help="a JSON list of {role, content}")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--render-only", action="store_true")
    parser.add_argument("--template", help="render this Jinja file instead of the folder's template")
    parser.add_argument("--no-generation-prompt", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    messages = json.loads(args.messages) if args.messages is not None else None
    if args.render_only:
        if messages is None:
            parser.error("--render-only needs --messages")
        def one(conversation):
            try:
                return {"prompt": render(args.folder, conversation, not args.no_generation_prompt,
                                         args.template)}
            except Exception as err:  # the template's raise_exception, or a Jinja error
                return {"error": str(err)}
        batch = bool(messages) and isinstance(messages[0], list)
        result = [one(c) for c in messages] if batch else one(messages)
    else:
        result = generate(args.folder, args.prompt, messages, args.max_tokens)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        for item in result if isinstance(result, list) else [result]:
            print(item.get("prompt", item.get("error")))
            if "text" in item:
                print(item["text"])
    sys.stdout.flush()


if __name__ == "__main__":
    main()
