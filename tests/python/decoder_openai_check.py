#!/usr/bin/env python3
"""The official `openai` client against a running `tinyserve serve` that serves a decoder
folder, compared with models/decoder_reference.py (onnxruntime + tokenizers + Jinja2).

    python tests/python/decoder_openai_check.py URL FOLDER [MODEL]

MODEL defaults to the folder's name. For a few raw prompts (/v1/completions) and a few
conversations (/v1/chat/completions), greedy (temperature 0), streamed and not:

- the text equals the reference's, and usage counts its tokens: prompt_tokens = the
  reference's prompt ids, completion_tokens = its generated ids;
- the finish_reason equals the reference's ("stop" at an EOS id, else "length");
- the streamed pieces are, one by one, the text each generated token completes (the
  reference's tokens decoded one more at a time, whole characters only), so the stream
  equals the reference token for token.

Prints one line per check ("ok    ..." or "FAIL  ..."), then "all checks passed"; exits
non-zero if any check failed.
"""
import importlib.util
import sys
from pathlib import Path

from openai import OpenAI
from tokenizers import Tokenizer

from checks import check, exit_status

MAX_TOKENS = 40
PROMPTS = ["The ", "A class is", "def f(x):\n    return"]
CONVERSATIONS = [
    [{"role": "user", "content": "What is assert?"}],
    [{"role": "system", "content": "  Answer briefly.\n"},
     {"role": "user", "content": "What is lambda?"}],
    [{"role": "user", "content": "Hi"},
     {"role": "assistant", "content": " Hello! Ask me about Python. "},
     {"role": "user", "content": "naïve → 😀 \"quotes\" {{ braces }} {% raw %}"}],
]


def load_reference():
    path = Path(__file__).resolve().parents[2] / "models" / "decoder_reference.py"
    spec = importlib.util.spec_from_file_location("decoder_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def expected_pieces(tokenizer, tokens):
    """The text each token completes, as a streaming detokenizer hands it out."""
    pieces, emitted = [], ""
    for i in range(len(tokens)):
        text = tokenizer.decode(tokens[: i + 1], skip_special_tokens=True)
        if text.endswith("\ufffd") or len(text) <= len(emitted):
            continue
        pieces.append(text[len(emitted):])
        emitted = text
    rest = tokenizer.decode(tokens, skip_special_tokens=True)[len(emitted):]
    if rest:
        pieces.append(rest)
    return pieces


def compare(what, ref, text, usage, reason, pieces, tokenizer):
    check(text == ref["text"], f"{what}: text equals the reference's: {text!r} vs {ref['text']!r}")
    if usage is not None:
        check(usage.prompt_tokens == len(ref["prompt_ids"])
              and usage.completion_tokens == len(ref["tokens"])
              and usage.total_tokens == len(ref["prompt_ids"]) + len(ref["tokens"]),
              f"{what}: usage counts the reference's tokens ({len(ref['prompt_ids'])} + "
              f"{len(ref['tokens'])}): {usage}")
    check(reason == ref["finish_reason"],
          f"{what}: finish_reason {reason!r} is the reference's {ref['finish_reason']!r}")
    if pieces is not None:
        want = expected_pieces(tokenizer, ref["tokens"])
        check(pieces == want, f"{what}: {len(pieces)} streamed pieces are the reference's "
                              f"tokens one by one: {pieces!r} vs {want!r}")


def main():
    if len(sys.argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    base, folder = sys.argv[1], Path(sys.argv[2])
    model = sys.argv[3] if len(sys.argv) == 4 else folder.name
    reference = load_reference()
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    client = OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120.0)

    ids = [m.id for m in client.models.list()]
    check(model in ids, f"models.list() contains {model}: {ids}")

    for prompt in PROMPTS:
        ref = reference.generate(folder, prompt=prompt, max_tokens=MAX_TOKENS)
        full = client.completions.create(model=model, prompt=prompt, max_tokens=MAX_TOKENS,
                                         temperature=0)
        choice = full.choices[0]
        compare(f"completion {prompt!r}", ref, choice.text, full.usage, choice.finish_reason,
                None, tokenizer)
        pieces, reasons, usage = [], [], None
        for chunk in client.completions.create(model=model, prompt=prompt,
                                               max_tokens=MAX_TOKENS, temperature=0,
                                               stream=True,
                                               stream_options={"include_usage": True}):
            if chunk.usage is not None:
                usage = chunk.usage
            for c in chunk.choices:
                if c.text:
                    pieces.append(c.text)
                reasons.append(c.finish_reason)
        compare(f"streamed completion {prompt!r}", ref, "".join(pieces), usage, reasons[-1],
                pieces, tokenizer)

    for messages in CONVERSATIONS:
        what = f"chat {messages[-1]['content'][:20]!r}"
        ref = reference.generate(folder, messages=messages, max_tokens=MAX_TOKENS)
        full = client.chat.completions.create(model=model, messages=messages,
                                              max_tokens=MAX_TOKENS, temperature=0)
        choice = full.choices[0]
        check(choice.message.role == "assistant", f"{what}: the message is the assistant's")
        compare(what, ref, choice.message.content, full.usage, choice.finish_reason, None,
                tokenizer)
        chunks = list(client.chat.completions.create(model=model, messages=messages,
                                                     max_tokens=MAX_TOKENS, temperature=0,
                                                     stream=True,
                                                     stream_options={"include_usage": True}))
        check(chunks[0].choices[0].delta.role == "assistant",
              f"streamed {what}: the first chunk has role assistant")
        pieces = [c.choices[0].delta.content for c in chunks
                  if c.choices and c.choices[0].delta.content]
        reasons = [c.choices[0].finish_reason for c in chunks
                   if c.choices and c.choices[0].finish_reason]
        compare(f"streamed {what}", ref, "".join(pieces), chunks[-1].usage,
                reasons[-1] if reasons else None, pieces, tokenizer)

    sys.exit(exit_status())


if __name__ == "__main__":
    main()
