"""Schemathesis hooks for tests/docs/live.rs (loaded through SCHEMATHESIS_HOOKS).

The byte-level language model generates a token per forward pass, and the document truly allows
`max_tokens` up to 4096 (and defaults of 16 and 128 tokens): generated cases with such values
would make the run take hours. This hook keeps the *generated requests* small without touching
the document: in a `/v1` generation body, a `max_tokens` or `max_completion_tokens` that the
document allows (1..4096) is mapped into 1..MAX_TOKENS (a valid value stays valid, so a positive
case stays positive), a value the document forbids is left as it is (a negative case stays
negative), and a body with neither gets `max_tokens: MAX_TOKENS` instead of the server's
default. 
The v2 infer routes read an optional `Inference-Header-Content-Length` header: the length of the
JSON part of a binary body. Its value must match the body, which a schema cannot say, so a
generated JSON body with a random value is refused and would hide the model behind a 400; the
hook leaves the header out of JSON bodies (which need none) and keeps it for binary bodies.
Nothing else of a case changes.
"""

import schemathesis

MAX_TOKENS = 4
ALLOWED = range(1, 4097)
GENERATION = ("/v1/completions", "/v1/chat/completions")
BINARY_HEADER = "inference-header-content-length"


def small(value):
    if isinstance(value, int) and not isinstance(value, bool) and value in ALLOWED:
        return 1 + (value - 1) % MAX_TOKENS
    return value


@schemathesis.hook
def map_case(context, case):
    """Applies in every phase (examples, coverage, fuzzing), unlike `map_body`."""
    if case.operation.path.endswith("/infer") and case.media_type == "application/json" and case.headers:
        for name in [name for name in case.headers if name.lower() == BINARY_HEADER]:
            del case.headers[name]
    body = case.body
    if case.operation.path not in GENERATION or not isinstance(body, dict):
        return case
    fields = [key for key in ("max_tokens", "max_completion_tokens") if key in body]
    for key in fields:
        body[key] = small(body[key])
    if not fields:
        body["max_tokens"] = MAX_TOKENS
    return case
