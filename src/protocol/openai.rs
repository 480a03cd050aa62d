//! OpenAI-compatible text generation: `POST /v1/completions`, `POST /v1/chat/completions`
//! (JSON or `"stream": true` Server-Sent Events, in OpenAI's exact chunk format) and
//! `GET /v1/models`, for every loaded byte-level language model and decoder folder.
//!
//! Chat: a decoder's prompt is its chat template (`tokenizer_config.json`) rendered with the
//! generation prompt. Without one (byte-level models, decoders without a template), each
//! message becomes a line `System: ...`, `User: ...` or `Assistant: ...`, and the prompt ends
//! with `Assistant:`; generation then also stops before `\nUser:`, so the model does not
//! write the user's next turn.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{json, Value};

use super::proxy;
use crate::model::{Generation, Generator, ModelRegistry, Prompt, Sampling};
use crate::{
    App, Error, ErrorKind, Event, EventSender, IntoResponse, Json, Request, Response, RouteDoc,
    Sse, Upstream,
};

/// The generators of every model that can generate text, by model name.
#[derive(Clone, Default)]
pub struct Generators(Arc<BTreeMap<String, Generator>>);

impl Generators {
    /// A generator for each model of `models` whose signature is a byte-level language model,
    /// and for each decoder folder.
    pub fn from_registry(models: &ModelRegistry) -> Generators {
        let mut generators: BTreeMap<String, Generator> = models
            .iter()
            .filter(|model| Generator::fits(model))
            .filter_map(|model| {
                Some((
                    model.name().to_string(),
                    Generator::new(model.clone()).ok()?,
                ))
            })
            .collect();
        for decoder in models.decoders() {
            generators.insert(
                decoder.name().to_string(),
                Generator::for_decoder(decoder.clone()),
            );
        }
        Generators(Arc::new(generators))
    }

    /// The generators, in name order.
    pub fn iter(&self) -> impl Iterator<Item = &Generator> {
        self.0.values()
    }

    fn get(&self, models: &ModelRegistry, name: &str) -> Result<Generator, Error> {
        match self.0.get(name) {
            Some(generator) => Ok(generator.clone()),
            None => Err(match models.get(name) {
                Ok(model) => Generator::new(model).err().unwrap_or_else(|| {
                    Error::bad_request(format!("model \"{name}\" cannot generate text"))
                }),
                Err(err) => Error::new(
                    ErrorKind::ModelNotFound,
                    format!("The model `{name}` does not exist"),
                )
                .with_source(err),
            }),
        }
    }
}

/// What the OpenAI routes serve: local generators and upstream providers.
#[derive(Clone)]
struct Backends {
    models: ModelRegistry,
    generators: Generators,
    upstreams: Arc<Vec<Upstream>>,
}

pub(super) fn mount(
    app: App,
    models: &ModelRegistry,
    generators: &Generators,
    upstreams: &[Upstream],
) -> App {
    let backends = Backends {
        models: models.clone(),
        generators: generators.clone(),
        upstreams: Arc::new(upstreams.to_vec()),
    };
    let (listing, text, chat) = (backends.clone(), backends.clone(), backends);
    let app = app
        .get("/v1/models", move |_| list_models(&listing))
        .post("/v1/completions", move |req| {
            openai_errors(complete(&text, req, Kind::Text))
        })
        .post("/v1/chat/completions", move |req| {
            openai_errors(complete(&chat, req, Kind::Chat))
        });
    document(app, generators, upstreams)
}

fn list_models(backends: &Backends) -> Json<Value> {
    let mut data: Vec<Value> = backends
        .models
        .iter()
        .map(|m| m.name())
        .chain(backends.models.decoders().map(|d| d.name()))
        .map(|name| json!({"id": name, "object": "model", "created": 0, "owned_by": "tinyserve"}))
        .collect();
    data.extend(proxy::list(&backends.upstreams));
    Json(json!({"object": "list", "data": data}))
}

/// An error in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
fn openai_error_body(err: &Error) -> Value {
    let kind = match err.status() {
        401 => "authentication_error",
        404 => "invalid_request_error",
        429 | 503 => "server_overloaded",
        500.. => "server_error",
        _ => "invalid_request_error",
    };
    json!({"error": {"message": err.public_message(), "type": kind, "param": null, "code": err.kind().code()}})
}

fn openai_errors(result: Result<Response, Error>) -> Response {
    result.unwrap_or_else(|err| {
        let mut res = Response::json(&openai_error_body(&err)).with_status(err.status());
        for (name, value) in err.headers() {
            res = res.with_header(name, value);
        }
        if err.kind() == ErrorKind::Internal {
            crate::log::error(&err.chain());
        }
        res
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Chat,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Message {
    role: String,
    content: Content,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Deserialize)]
struct CompletionRequest {
    model: String,
    prompt: Option<OneOrMany>,
    messages: Option<Vec<Message>>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<u64>,
    stop: Option<OneOrMany>,
    seed: Option<u64>,
    n: Option<u64>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
}

/// Upper bound on `max_tokens`: a request cannot hold a worker for an unbounded time.
const MAX_TOKENS_LIMIT: u64 = 4096;

/// Just the `model` of a request, read without building the rest (the prompt of a local model
/// is parsed straight into [`CompletionRequest`], never into a `Value` tree).
#[derive(Deserialize)]
struct Route {
    #[serde(default, deserialize_with = "string_or_nothing")]
    model: Option<String>,
}

/// A string as itself, anything else as `None` (skipped without being kept).
fn string_or_nothing<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("any value")
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut a: A,
        ) -> Result<Self::Value, A::Error> {
            while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut a: A,
        ) -> Result<Self::Value, A::Error> {
            while a
                .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                .is_some()
            {}
            Ok(None)
        }
    }
    d.deserialize_any(Visitor)
}

fn complete(backends: &Backends, req: &Request, kind: Kind) -> Result<Response, Error> {
    let route: Route = req.json()?;
    let model = route.model.unwrap_or_default();
    if let Some((upstream, model)) = proxy::route(&backends.upstreams, &model) {
        let path = match kind {
            Kind::Text => "/completions",
            Kind::Chat => "/chat/completions",
        };
        let model = model.to_string();
        return proxy::forward(upstream, path, req.json()?, &model, req);
    }
    let mut request: CompletionRequest = req.json()?;
    let generator = backends.generators.get(&backends.models, &request.model)?;
    let templated = kind == Kind::Chat
        && generator
            .decoder()
            .is_some_and(|d| !d.chat_template().is_plain());
    let prompt = match kind {
        Kind::Text => generator.text_prompt(text_prompt(request.prompt.take())?)?,
        Kind::Chat => {
            let messages = request.messages.as_deref();
            let templated = match generator.decoder() {
                Some(_) => generator.chat_prompt(&messages_json(messages)?)?,
                None => None,
            };
            match templated {
                Some(prompt) => prompt,
                None => generator.text_prompt(chat_prompt(messages)?)?,
            }
        }
    };
    let sampling = sampling(&request, kind, templated)?;
    // Before the 200: a decoder's prompt plus max_tokens must fit in its context, and their
    // KV cache in its budget (held until the generation ends).
    let reservation = generator.reserve(&prompt, &sampling)?;
    let call = Call {
        id: format!(
            "{}-{}",
            if kind == Kind::Chat {
                "chatcmpl"
            } else {
                "cmpl"
            },
            crate::ids::new_id()
        ),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        model: request.model.clone(),
        kind,
    };
    if request.stream {
        let include_usage = request.stream_options.is_some_and(|o| o.include_usage);
        return Ok(Sse::new(move |events| {
            let _reservation = reservation;
            stream(&generator, &prompt, &sampling, &call, include_usage, events)
        })
        .into_response());
    }
    // Nobody reads the answer once the client has gone: stop generating (checked at each
    // piece of text, one non-blocking system call).
    let generation =
        generator.generate_from(&prompt, &sampling, |_| match req.is_client_gone() {
            true => Err(crate::Disconnected),
            false => Ok(()),
        })?;
    drop(reservation);
    if generation.finish_reason == crate::model::FinishReason::Cancelled {
        return Err(Error::bad_request(
            "generation cancelled: the client closed the connection",
        ));
    }
    Ok(Json(call.full_answer(&generation)).into_response())
}

/// The messages as the chat template reads them: `{"role", "content"}` objects, the content
/// a string (text parts joined). Contents over [`crate::model::MAX_PROMPT_BYTES`] in all are
/// a 400 before the template and the tokenizer run.
fn messages_json(messages: Option<&[Message]>) -> Result<Vec<Value>, Error> {
    let messages = messages
        .filter(|m| !m.is_empty())
        .ok_or_else(|| Error::invalid_input("\"messages\" must be a non-empty array"))?;
    let mut out = Vec::with_capacity(messages.len());
    let mut total = 0usize;
    for message in messages {
        total = total.saturating_add(message.role.len());
        total = total.saturating_add(match &message.content {
            Content::Text(text) => text.len(),
            Content::Parts(parts) => parts
                .iter()
                .map(|p| p.text.as_ref().map_or(0, String::len))
                .sum(),
        });
        if total > crate::model::MAX_PROMPT_BYTES {
            return Err(Error::invalid_input(format!(
                "the messages are over {} bytes, the prompt limit",
                crate::model::MAX_PROMPT_BYTES
            )));
        }
    }
    for message in messages {
        let content = match &message.content {
            Content::Text(text) => text.clone(),
            Content::Parts(parts) => {
                let mut text = String::new();
                for part in parts {
                    match (part.kind.as_str(), &part.text) {
                        ("text", Some(piece)) => text.push_str(piece),
                        _ => {
                            return Err(Error::invalid_input(format!(
                                "unsupported content part type \"{}\"",
                                part.kind
                            )))
                        }
                    }
                }
                text
            }
        };
        out.push(json!({"role": message.role, "content": content}));
    }
    Ok(out)
}

fn text_prompt(prompt: Option<OneOrMany>) -> Result<String, Error> {
    match prompt {
        Some(OneOrMany::One(text)) => Ok(text),
        Some(OneOrMany::Many(mut texts)) if texts.len() == 1 => Ok(texts.remove(0)),
        Some(OneOrMany::Many(_)) => Err(Error::bad_request(
            "only one prompt per request is supported",
        )),
        None => Err(Error::invalid_input("\"prompt\" is required")),
    }
}

/// The chat template: one `Role: content` line per message, then `Assistant:`.
fn chat_prompt(messages: Option<&[Message]>) -> Result<String, Error> {
    let messages = messages
        .filter(|m| !m.is_empty())
        .ok_or_else(|| Error::invalid_input("\"messages\" must be a non-empty array"))?;
    let mut prompt = String::new();
    for message in messages {
        let role = match message.role.as_str() {
            "system" | "developer" => "System",
            "user" => "User",
            "assistant" => "Assistant",
            other => {
                return Err(Error::invalid_input(format!(
                    "unknown message role \"{other}\""
                )))
            }
        };
        prompt.push_str(role);
        prompt.push_str(": ");
        match &message.content {
            Content::Text(text) => prompt.push_str(text),
            Content::Parts(parts) => {
                for part in parts {
                    match (part.kind.as_str(), &part.text) {
                        ("text", Some(text)) => prompt.push_str(text),
                        _ => {
                            return Err(Error::invalid_input(format!(
                                "unsupported content part type \"{}\"",
                                part.kind
                            )))
                        }
                    }
                }
            }
        }
        prompt.push('\n');
        // Past the cap the generator refuses it anyway: stop copying.
        if prompt.len() > crate::model::MAX_PROMPT_BYTES {
            break;
        }
    }
    prompt.push_str("Assistant:");
    Ok(prompt)
}

/// The sampling parameters; `templated`: a chat rendered by a model's own template, which
/// ends its turns with an end-of-sequence token rather than a `\nUser:` line.
fn sampling(request: &CompletionRequest, kind: Kind, templated: bool) -> Result<Sampling, Error> {
    let default_max = if kind == Kind::Chat { 128 } else { 16 };
    let max_tokens = request
        .max_completion_tokens
        .or(request.max_tokens)
        .unwrap_or(default_max);
    if !(1..=MAX_TOKENS_LIMIT).contains(&max_tokens) {
        return Err(Error::invalid_input(format!(
            "max_tokens must be between 1 and {MAX_TOKENS_LIMIT}, got {max_tokens}"
        )));
    }
    let temperature = request.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(Error::invalid_input(format!(
            "temperature must be between 0 and 2, got {temperature}"
        )));
    }
    let top_p = request.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(Error::invalid_input(format!(
            "top_p must be in (0, 1], got {top_p}"
        )));
    }
    if request.n.is_some_and(|n| n != 1) {
        return Err(Error::invalid_input("only n = 1 is supported"));
    }
    let mut stop = match &request.stop {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s.clone()],
        Some(OneOrMany::Many(list)) => list.clone(),
    };
    if stop.len() > 4 {
        return Err(Error::invalid_input(format!(
            "at most 4 stop sequences, got {}",
            stop.len()
        )));
    }
    if kind == Kind::Chat && !templated {
        stop.push("\nUser:".to_string());
    }
    Ok(Sampling {
        max_tokens: max_tokens as usize,
        temperature,
        top_p,
        top_k: usize::try_from(request.top_k.unwrap_or(0)).unwrap_or(usize::MAX),
        stop,
        seed: request.seed,
    })
}

/// The parts of every answer that identify the call.
struct Call {
    id: String,
    created: u64,
    model: String,
    kind: Kind,
}

impl Call {
    fn usage(generation: &Generation) -> Value {
        json!({
            "prompt_tokens": generation.prompt_tokens,
            "completion_tokens": generation.completion_tokens,
            "total_tokens": generation.prompt_tokens + generation.completion_tokens,
        })
    }

    fn full_answer(&self, generation: &Generation) -> Value {
        let reason = generation.finish_reason.as_str();
        let choice = match self.kind {
            Kind::Text => {
                json!({"index": 0, "text": generation.text, "logprobs": null, "finish_reason": reason})
            }
            Kind::Chat => json!({
                "index": 0,
                "message": {"role": "assistant", "content": generation.text},
                "logprobs": null,
                "finish_reason": reason,
            }),
        };
        json!({
            "id": self.id,
            "object": if self.kind == Kind::Chat { "chat.completion" } else { "text_completion" },
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": Call::usage(generation),
        })
    }

    /// One streamed chunk; `piece` is new text, `reason` is set on the last chunk only.
    fn chunk(&self, piece: Option<&str>, role: bool, reason: Option<&str>) -> Value {
        let choice = match self.kind {
            Kind::Text => {
                json!({"index": 0, "text": piece.unwrap_or(""), "logprobs": null, "finish_reason": reason})
            }
            Kind::Chat => {
                let mut delta = serde_json::Map::new();
                if role {
                    delta.insert("role".into(), json!("assistant"));
                }
                if let Some(piece) = piece {
                    delta.insert("content".into(), json!(piece));
                }
                json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": reason})
            }
        };
        json!({
            "id": self.id,
            "object": if self.kind == Kind::Chat { "chat.completion.chunk" } else { "text_completion" },
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        })
    }
}

/// Streams a generation as OpenAI chunks, ending with `data: [DONE]`.
fn stream(
    generator: &Generator,
    prompt: &Prompt,
    sampling: &Sampling,
    call: &Call,
    include_usage: bool,
    events: &mut EventSender<'_>,
) -> Result<(), crate::Disconnected> {
    if call.kind == Kind::Chat {
        events.send(Event::json(&call.chunk(Some(""), true, None)))?;
    }
    let outcome = generator.generate_from(prompt, sampling, |piece| {
        events.send(Event::json(&call.chunk(Some(piece), false, None)))
    });
    match outcome {
        Ok(generation) if generation.finish_reason == crate::model::FinishReason::Cancelled => {
            return Err(crate::Disconnected)
        }
        Ok(generation) => {
            let reason = generation.finish_reason.as_str();
            let last = match call.kind {
                Kind::Text => call.chunk(Some(""), false, Some(reason)),
                Kind::Chat => call.chunk(None, false, Some(reason)),
            };
            events.send(Event::json(&last))?;
            if include_usage {
                let mut usage = call.chunk(None, false, None);
                usage["choices"] = json!([]);
                usage["usage"] = Call::usage(&generation);
                events.send(Event::json(&usage))?;
            }
        }
        Err(err) => {
            if err.kind() == ErrorKind::Internal {
                crate::log::error(&err.chain());
            }
            events.send(Event::json(&openai_error_body(&err)))?;
        }
    }
    events.send(Event::data("[DONE]"))
}

/// The route docs of the OpenAI-compatible API, for the OpenAPI document: `model` names one
/// of `generators` or an upstream's model.
fn document(app: App, generators: &Generators, upstreams: &[Upstream]) -> App {
    let tag = crate::docs::OPENAI_TAG;
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
        RouteDoc::new("Models that can be named in `model`").with_tag(tag).with_response(json!({
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
                    json!({"messages": {"type": "array", "minItems": 1, "items": message},
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
fn model_schema(generators: &Generators, upstreams: &[Upstream]) -> Value {
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

fn regex_escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if "\\^$.|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A whole answer, or (`chunk`) one streamed chunk, as [`Call::full_answer`] and
/// [`Call::chunk`] write them.
fn answer(kind: Kind, chunk: bool) -> Value {
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
