#!/usr/bin/env python3
"""The official `openai` Python client against a running `tinyserve serve`.

    python tests/python/openai_check.py URL [PROXY_URL]

URL is the server's base (http://host:port); the client uses URL + "/v1". Checks, all with
temperature 0 (greedy, so deterministic):

- models.list() lists bytelm;
- completions.create and chat.completions.create, plain and streamed: the streamed pieces
  concatenated equal the plain answer's text, the chat stream starts with the assistant
  role, and each stream ends with a finish_reason;
- stream_options={"include_usage": True} gives a usage chunk equal to the plain usage;
- an unknown model raises openai.NotFoundError (HTTP 404).

With PROXY_URL, a `tinyserve serve --upstream local=URL/v1` in front of URL, it also checks
that streaming through the proxy with model `local/bytelm` yields exactly the same sequence of
pieces as streaming directly, and that the proxy lists `local/bytelm`.

Prints one line per check ("ok    ..." or "FAIL  ..."), then "all checks passed"; exits
non-zero if any check failed.
"""
import sys

import openai
from openai import OpenAI

from checks import check, exit_status


def client_for(base):
    """A client for the server at `base`: no retries, so an error shows as it is."""
    return OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=60.0)


PROMPT = "The "
MESSAGES = [{"role": "user", "content": "What is a tuple?"}]
MAX_TOKENS = 40


def completion_pieces(client, model):
    """Streamed completion: (text pieces, finish_reason of the last chunk)."""
    pieces, reasons = [], []
    stream = client.completions.create(model=model, prompt=PROMPT, max_tokens=MAX_TOKENS,
                                       temperature=0, stream=True)
    for chunk in stream:
        for choice in chunk.choices:
            pieces.append(choice.text)
            reasons.append(choice.finish_reason)
    return pieces, reasons


def chat_stream(client, model, include_usage=False):
    """Streamed chat: (chunks, content pieces)."""
    extra = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(client.chat.completions.create(model=model, messages=MESSAGES,
                                                 max_tokens=MAX_TOKENS, temperature=0,
                                                 stream=True, **extra))
    pieces = [c.choices[0].delta.content for c in chunks
              if c.choices and c.choices[0].delta.content is not None]
    return chunks, pieces


def check_direct(client):
    """Everything against one server; returns the streamed pieces for the proxy comparison."""
    ids = [m.id for m in client.models.list()]
    check("bytelm" in ids, f"models.list() contains bytelm: {ids}")

    # Completions.
    full = client.completions.create(model="bytelm", prompt=PROMPT, max_tokens=MAX_TOKENS,
                                     temperature=0)
    text = full.choices[0].text
    check(full.object == "text_completion", f"completion object is {full.object!r}")
    check(full.model == "bytelm", f"completion model is {full.model!r}")
    check(full.choices[0].finish_reason == "length",
          f"completion finish_reason is {full.choices[0].finish_reason!r}")
    check(full.usage.prompt_tokens == len(PROMPT.encode())
          and full.usage.completion_tokens == MAX_TOKENS
          and full.usage.total_tokens == len(PROMPT.encode()) + MAX_TOKENS,
          f"completion usage {full.usage}")
    check(len(text) > 0, f"completion text is not empty: {text!r}")
    again = client.completions.create(model="bytelm", prompt=PROMPT, max_tokens=MAX_TOKENS,
                                      temperature=0).choices[0].text
    check(again == text, "greedy completion is the same twice")
    pieces, reasons = completion_pieces(client, "bytelm")
    check("".join(pieces) == text,
          f"streamed completion pieces ({len(pieces)}) concatenate to the plain text: "
          f"{''.join(pieces)!r} vs {text!r}")
    check(len([p for p in pieces if p]) > 1, "the completion arrives in several pieces")
    check(reasons[-1] == "length" and all(r is None for r in reasons[:-1]),
          f"only the last completion chunk has a finish_reason: {reasons[-3:]}")

    # Chat.
    chat = client.chat.completions.create(model="bytelm", messages=MESSAGES,
                                          max_tokens=MAX_TOKENS, temperature=0)
    message = chat.choices[0].message
    check(chat.object == "chat.completion", f"chat object is {chat.object!r}")
    check(message.role == "assistant", f"chat message role is {message.role!r}")
    check(chat.choices[0].finish_reason in ("stop", "length"),
          f"chat finish_reason is {chat.choices[0].finish_reason!r}")
    chunks, chat_pieces = chat_stream(client, "bytelm", include_usage=True)
    check(chunks[0].choices[0].delta.role == "assistant",
          f"the first chat chunk has role assistant: {chunks[0]}")
    check(all(c.object == "chat.completion.chunk" for c in chunks),
          "every chat chunk is a chat.completion.chunk")
    check("".join(chat_pieces) == message.content,
          f"streamed chat pieces ({len(chat_pieces)}) concatenate to the plain message: "
          f"{''.join(chat_pieces)!r} vs {message.content!r}")
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason is not None]
    check(len(finals) == 1 and finals[0].choices[0].finish_reason == chat.choices[0].finish_reason,
          "one chat chunk has the finish_reason, the same as the plain answer's")
    usage = chunks[-1].usage
    check(chunks[-1].choices == [] and usage is not None
          and usage.prompt_tokens == chat.usage.prompt_tokens
          and usage.completion_tokens == chat.usage.completion_tokens
          and usage.total_tokens == chat.usage.total_tokens,
          f"include_usage: the last chunk has no choices and the plain usage: {usage}")

    # Errors.
    try:
        client.completions.create(model="no-such-model", prompt="x", max_tokens=1)
        check(False, "an unknown model raises openai.NotFoundError (nothing raised)")
    except openai.NotFoundError as err:
        check(err.status_code == 404, f"an unknown model raises openai.NotFoundError: {err}")
    except openai.APIError as err:
        check(False, f"an unknown model raises openai.NotFoundError, not {type(err).__name__}: "
                     f"{err}")
    for what, kwargs in (("a negative temperature", {"temperature": -1.0}),
                         ("max_tokens past the limit", {"max_tokens": 1_000_000})):
        try:
            client.completions.create(model="bytelm", prompt="x", **{"max_tokens": 1, **kwargs})
            check(False, f"{what} raises openai.BadRequestError (nothing raised)")
        except openai.BadRequestError as err:
            check(err.status_code == 400 and err.body.get("type") == "invalid_request_error",
                  f"{what} raises openai.BadRequestError (400, invalid_request_error): {err}")
        except openai.APIError as err:
            check(False, f"{what} raises openai.BadRequestError, not {type(err).__name__}: {err}")
    return pieces, chat_pieces


def check_proxy(proxy, direct_pieces, direct_chat_pieces):
    """Streams through the upstream proxy give the same pieces as streams to the server."""
    ids = [m.id for m in proxy.models.list()]
    check("local/bytelm" in ids, f"the proxy lists local/bytelm: {ids}")
    pieces, reasons = completion_pieces(proxy, "local/bytelm")
    check(pieces == direct_pieces,
          f"completion stream through the proxy has the same {len(direct_pieces)} pieces: "
          f"{pieces!r} vs {direct_pieces!r}")
    check(reasons[-1] == "length", "the proxied completion stream ends with finish_reason length")
    _, chat_pieces = chat_stream(proxy, "local/bytelm")
    check(chat_pieces == direct_chat_pieces,
          f"chat stream through the proxy has the same {len(direct_chat_pieces)} content "
          f"deltas: {chat_pieces!r} vs {direct_chat_pieces!r}")
    full = proxy.chat.completions.create(model="local/bytelm", messages=MESSAGES,
                                         max_tokens=MAX_TOKENS, temperature=0)
    check(full.choices[0].message.content == "".join(direct_chat_pieces),
          "plain chat through the proxy has the same text")


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    print(f"openai {openai.__version__}", flush=True)
    pieces, chat_pieces = check_direct(client_for(sys.argv[1]))
    if len(sys.argv) == 3:
        check_proxy(client_for(sys.argv[2]), pieces, chat_pieces)
    sys.exit(exit_status())


if __name__ == "__main__":
    main()
