//! OpenAI-compatible text generation: `POST /v1/completions`, `POST /v1/chat/completions`
//! (JSON or `"stream": true` Server-Sent Events, in OpenAI's exact chunk format) and
//! `GET /v1/models`, for every loaded byte-level language model and decoder folder (the list
//! also names the encoder folders that `/v1/embeddings` runs).
//!
//! Chat: a decoder's prompt is its chat template (`tokenizer_config.json`) rendered with the
//! generation prompt. Without one (byte-level models, decoders without a template), each
//! message becomes a line `System: ...`, `User: ...` or `Assistant: ...`, and the prompt ends
//! with `Assistant:`; generation then also stops before `\nUser:`, so the model does not
//! write the user's next turn.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::proxy;
use crate::{Error, Group, IntoResponse, Json, Request, Response, Sse, Upstream};

mod answer;
mod errors;
mod generators;
mod request;
mod schema;

use answer::{stream, Completion};
pub(super) use errors::with_openai_errors;
pub(super) use generators::CurrentGenerators;
pub use generators::Generators;
use request::{chat_prompt, messages_json, sampling, text_prompt, CompletionRequest, Kind, Route};

/// What the OpenAI routes serve: the repository's generators of the moment and upstream
/// providers.
#[derive(Clone)]
struct Backends {
    current: CurrentGenerators,
    upstreams: Arc<Vec<Upstream>>,
}

/// The generation routes and `GET /v1/models`; each request takes the models of the moment.
/// The OpenAPI document names the generators of `current` at mount time.
pub(super) fn mount(app: Group, current: &CurrentGenerators, upstreams: &[Upstream]) -> Group {
    let backends = Backends {
        current: current.clone(),
        upstreams: Arc::new(upstreams.to_vec()),
    };
    let (listing, text, chat) = (backends.clone(), backends.clone(), backends);
    let app = app
        .get("/v1/models", move |_| list_models(&listing))
        .post("/v1/completions", move |req| {
            with_openai_errors(complete(&text, req, Kind::Text))
        })
        .post("/v1/chat/completions", move |req| {
            with_openai_errors(complete(&chat, req, Kind::Chat))
        });
    schema::document(app, &current.snapshot().1, upstreams)
}

/// `GET /v1/models`: the models a `/v1` route runs. Text generators (byte-level language
/// models, decoder folders) for completions and chat, encoder folders for `/v1/embeddings` (as
/// vLLM lists its embedding models), then the upstreams' models. A plain ONNX model, served by
/// the predict and v2 routes, is not listed: no `/v1` route runs it.
fn list_models(backends: &Backends) -> Json<Value> {
    let (models, generators) = backends.current.snapshot();
    let mut data: Vec<Value> = generators
        .iter()
        .map(|g| g.name())
        .chain(models.encoder_names())
        .map(|name| json!({"id": name, "object": "model", "created": 0, "owned_by": "tinyserve"}))
        .collect();
    data.extend(proxy::list(&backends.upstreams));
    Json(json!({"object": "list", "data": data}))
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
    let (models, generators) = backends.current.snapshot();
    let generator = generators.get(&models, &request.model)?;
    let templated = kind == Kind::Chat && generator.has_chat_template();
    let prompt = match kind {
        Kind::Text => generator.text_prompt(text_prompt(request.prompt.take())?)?,
        Kind::Chat => {
            let messages = request.messages.as_deref();
            let templated = match generator.is_decoder() {
                true => generator.chat_prompt(&messages_json(messages)?)?,
                false => None,
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
    let call = Completion {
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
    // piece of text, one non-blocking system call). A client that half-closed after its
    // request still reads, and is answered.
    let generation = generator.generate_from(&prompt, &sampling, |_| {
        match req.is_client_gone_for_good() {
            true => Err(crate::Disconnected),
            false => Ok(()),
        }
    })?;
    drop(reservation);
    if generation.finish_reason == crate::model::FinishReason::Cancelled {
        return Err(Error::bad_request(
            "generation cancelled: the client closed the connection",
        ));
    }
    Ok(Json(call.full_answer(&generation)).into_response())
}
