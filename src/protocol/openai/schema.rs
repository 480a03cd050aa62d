//! The OpenAPI description of the OpenAI-compatible routes.

use serde_json::{json, Value};

use super::generators::Generators;
use super::request::{Kind, MAX_MESSAGES, MAX_TOKENS_LIMIT};
use crate::{Group, RouteDoc, Upstream};

/// The route docs of the OpenAI-compatible API, for the OpenAPI document: `model` names one
/// of `generators` or an upstream's model.
pub(super) fn document(app: Group, generators: &Generators, upstreams: &[Upstream]) -> Group {
    let tag = crate::pages::OPENAI_TAG;
    let strings = json!({"anyOf": [{"type": "string"},
        {"type": "array", "items": {"type": "string"}, "maxItems": 4}]});
    let common = json!({
        "model": model_schema(generators, upstreams),
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": MAX_TOKENS_LIMIT},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2, "description": "0 = greedy"},
        "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "top_k": {"type": "integer", "minimum": 0, "description": "0 = off"},
        "stop": strings,
        "seed": {"type": "integer", "minimum": 0},
        "n": {"const": 1},
        "stream": {"type": "boolean", "description": "answer with Server-Sent Events"},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
    });
    let request = |extra: Value, required: &str| {
        let mut properties = common.clone();
        if let (Some(all), Value::Object(extra)) = (properties.as_object_mut(), extra) {
            all.extend(extra);
        }
        json!({"type": "object", "required": ["model", required], "properties": properties})
    };
    let message = json!({"type": "object", "required": ["role", "content"], "properties": {
        "role": {"enum": ["system", "developer", "user", "assistant"]},
        "content": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object",
            "required": ["type", "text"],
            "properties": {"type": {"const": "text"}, "text": {"type": "string"}}}}]}}});
    let streamed = "OpenAI's format; with `\"stream\": true`, Server-Sent Events of chunks ending \
        with `data: [DONE]` (an error after the 200 comes as a `data: {\"error\": ...}` event). \
        A request for an upstream's model (`NAME/model`) is answered by the upstream, relayed \
        as it answered (its client errors included), or 502/504 when it fails.";
    // A local generation's own errors; an upstream may answer any client error of its own.
    let errors = |doc: RouteDoc| match upstreams.is_empty() {
        true => doc.with_errors(&[400, 404, 415]),
        false => doc,
    };
    let relayed = |schema: Value| match upstreams.is_empty() {
        true => schema,
        false => json!({"anyOf": [schema, {"type": "object",
            "description": "an upstream's answer, relayed as it sent it"}]}),
    };
    let event = |kind: Kind| {
        relayed(
            json!({"anyOf": [answer(kind, true), {"$ref": "#/components/schemas/OpenAIError"}]}),
        )
    };
    app.document(
        "GET",
        "/v1/models",
        RouteDoc::new("Models that can be named in `model`")
            .with_description(
                "The models a `/v1` route runs: language models (completions and chat), \
                 embedding models (`/v1/embeddings`) and the upstreams' models. A plain ONNX \
                 model is served by `/models/{name}/predict` and `/v2`, and is not listed.",
            )
            .with_tag(tag).with_response(json!({
            "type": "object", "required": ["object", "data"], "properties": {
                "object": {"const": "list"},
                "data": {"type": "array", "items": {"type": "object", "required": ["id"],
                    "properties": {"id": {"type": "string"}, "object": {"type": "string"},
                        "created": {"type": "integer"}, "owned_by": {"type": "string"}}}}}}))
            .with_errors(&[]),
    )
    .document(
        "POST",
        "/v1/completions",
        errors(
            RouteDoc::new("Text completion (OpenAI-compatible)")
                .with_description(streamed)
                .with_tag(tag)
                .with_request(request(json!({"prompt": strings}), "prompt"))
                .with_example(json!({"model": "bytelm", "prompt": "A class is", "max_tokens": 16}))
                .with_response(relayed(answer(Kind::Text, false)))
                .with_streaming()
                .with_event(event(Kind::Text))
                .with_stream_end("[DONE]"),
        ),
    )
    .document(
        "POST",
        "/v1/chat/completions",
        errors(
            RouteDoc::new("Chat completion (OpenAI-compatible)")
                .with_description(streamed)
                .with_tag(tag)
                .with_request(request(
                    json!({"messages": {"type": "array", "minItems": 1, "maxItems": MAX_MESSAGES, "items": message},
                        "max_completion_tokens": {"type": "integer", "minimum": 1, "maximum": MAX_TOKENS_LIMIT}}),
                    "messages",
                ))
                .with_example(json!({"model": "bytelm", "max_tokens": 32,
                    "messages": [{"role": "user", "content": "What is a class?"}]}))
                .with_response(relayed(answer(Kind::Chat, false)))
                .with_streaming()
                .with_event(event(Kind::Chat))
                .with_stream_end("[DONE]"),
        ),
    )
}

/// `model`: a loaded language model, or `NAME/model` for an upstream `NAME`.
pub(super) fn model_schema(generators: &Generators, upstreams: &[Upstream]) -> Value {
    let description = "a loaded language model (a byte-level model or a decoder folder), or \
        `NAME/model` for an `--upstream` NAME";
    let mut choices: Vec<Value> = Vec::new();
    let names: Vec<&str> = generators.iter().map(|g| g.name()).collect();
    if !names.is_empty() {
        choices.push(json!({"enum": names}));
    }
    if !upstreams.is_empty() {
        let prefixes: Vec<String> = upstreams.iter().map(|u| regex_escape(u.name())).collect();
        choices.push(json!({"type": "string", "pattern": format!("^(?:{})/", prefixes.join("|"))}));
    }
    match choices.len() {
        // Nothing can generate: any name is answered 404 (or 400), as the responses say.
        0 => json!({"type": "string", "description": description}),
        1 => {
            let mut only = choices.remove(0);
            only["description"] = json!(description);
            only
        }
        _ => json!({"anyOf": choices, "description": description}),
    }
}

pub(super) fn regex_escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if "\\^$.|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A whole answer, or (`chunk`) one streamed chunk, as [`Completion::full_answer`] and
/// [`Completion::chunk`] write them.
pub(super) fn answer(kind: Kind, chunk: bool) -> Value {
    let object = match (kind, chunk) {
        (Kind::Text, _) => "text_completion",
        (Kind::Chat, false) => "chat.completion",
        (Kind::Chat, true) => "chat.completion.chunk",
    };
    let reason = json!({"enum": ["stop", "length", null]});
    let content = |required: bool| {
        let mut schema = json!({"type": "object", "properties": {
            "role": {"const": "assistant"}, "content": {"type": "string"}}});
        if required {
            schema["required"] = json!(["role", "content"]);
        }
        schema
    };
    let choice = match (kind, chunk) {
        (Kind::Text, _) => json!({"type": "object", "required": ["index", "text", "finish_reason"],
            "properties": {"index": {"const": 0}, "text": {"type": "string"},
                "logprobs": {"type": "null"}, "finish_reason": reason}}),
        (Kind::Chat, false) => json!({"type": "object",
            "required": ["index", "message", "finish_reason"],
            "properties": {"index": {"const": 0}, "message": content(true),
                "logprobs": {"type": "null"}, "finish_reason": reason}}),
        (Kind::Chat, true) => json!({"type": "object",
            "required": ["index", "delta", "finish_reason"],
            "properties": {"index": {"const": 0}, "delta": content(false),
                "logprobs": {"type": "null"}, "finish_reason": reason}}),
    };
    let usage = json!({"type": "object",
        "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
        "properties": {"prompt_tokens": {"type": "integer", "minimum": 0},
            "completion_tokens": {"type": "integer", "minimum": 0},
            "total_tokens": {"type": "integer", "minimum": 0}}});
    let mut required = vec!["id", "object", "created", "model", "choices"];
    if !chunk {
        required.push("usage");
    }
    json!({
        "type": "object",
        "required": required,
        "properties": {
            "id": {"type": "string"}, "object": {"const": object},
            "created": {"type": "integer", "minimum": 0}, "model": {"type": "string"},
            "choices": {"type": "array", "maxItems": 1, "items": choice,
                "description": "one choice; none in the last chunk of `include_usage`"},
            "usage": usage,
        },
    })
}
