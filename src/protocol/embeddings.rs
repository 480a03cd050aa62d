//! Embeddings of the loaded encoder folders: `POST /v1/embeddings` in OpenAI's shape (its
//! errors too) and `POST /embed` in text-embeddings-inference's (our JSON errors).
//!
//! Both read the inputs the same way (a string, a list of strings, a list of token ids or a
//! list of such lists), check the same limits, and embed a request's inputs together
//! ([`Encoder::embed`]: runs of similar lengths, each up to
//! [`crate::model::MAX_RUN_TOKENS`] padded tokens; with dynamic batching, together with
//! concurrent requests' inputs).

use std::sync::Arc;

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::openai::with_openai_errors;
use crate::model::{Encoder, ModelRegistry, ModelRepository};
use crate::{Error, ErrorKind, Group, IntoResponse, Json, Request, Response};

mod inputs;
mod schema;

use inputs::Inputs;

/// Inputs one request may embed, as OpenAI's API allows.
pub const MAX_INPUTS: usize = 2048;

/// Characters (or token ids) one input may have. Each input is cut to the model's maximum
/// length (`/v1/embeddings`, or `/embed` with `"truncate": true`) after it is tokenized; this
/// bounds the tokenizing.
pub const MAX_INPUT_CHARS: usize = 50_000;

/// The body of `POST /v1/embeddings`.
#[derive(Deserialize)]
struct OpenAiRequest {
    model: String,
    input: Inputs,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<u64>,
}

/// The body of `POST /embed`.
#[derive(Deserialize)]
struct TeiRequest {
    inputs: Inputs,
    #[serde(default = "yes")]
    normalize: bool,
    #[serde(default)]
    truncate: bool,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    dimensions: Option<u64>,
}

fn yes() -> bool {
    true
}

#[derive(Serialize)]
struct OpenAiAnswer<'a> {
    object: &'static str,
    data: Vec<OpenAiEmbedding>,
    model: &'a str,
    usage: Usage,
}

#[derive(Serialize)]
struct OpenAiEmbedding {
    object: &'static str,
    index: usize,
    embedding: Vector,
}

/// An embedding as numbers, or as base64 of its little-endian `f32`s.
#[derive(Serialize)]
#[serde(untagged)]
enum Vector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: usize,
    total_tokens: usize,
}

/// `POST /v1/embeddings` and `POST /embed`; each request takes the models of the moment. The
/// OpenAPI document names the encoders served at mount time.
pub(super) fn mount(app: Group, repository: &ModelRepository) -> Group {
    let (openai, tei) = (repository.clone(), repository.clone());
    let app = app
        .post("/v1/embeddings", move |req| {
            with_openai_errors(openai_embeddings(&openai.registry(), req))
        })
        .post("/embed", move |req| tei_embed(&tei.registry(), req));
    schema::document(app, &repository.registry())
}

fn openai_embeddings(models: &ModelRegistry, req: &Request) -> Result<Response, Error> {
    let request: OpenAiRequest = req.json()?;
    let encoder = embedding_model(models, &request.model)?;
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(Error::invalid_input(format!(
                "encoding_format \"{other}\" is not supported: send \"float\" or \"base64\""
            )))
        }
    };
    let dimensions = check_dimensions(&encoder, request.dimensions)?;
    // OpenAI's models refuse an input over their context; an encoder is cut to its maximum
    // length, as sentence-transformers does.
    let rows = tokenize(&encoder, request.input, true)?;
    let tokens = rows.iter().map(Vec::len).sum();
    let vectors = encoder.embed(&rows, encoder.normalizes())?;
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, vector)| {
            let vector = shorten(vector, dimensions, encoder.normalizes());
            OpenAiEmbedding {
                object: "embedding",
                index,
                embedding: match base64 {
                    true => Vector::Base64(little_endian_base64(&vector)),
                    false => Vector::Float(vector),
                },
            }
        })
        .collect();
    Ok(Json(OpenAiAnswer {
        object: "list",
        data,
        model: encoder.name(),
        usage: Usage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    })
    .into_response())
}

fn tei_embed(models: &ModelRegistry, req: &Request) -> Result<Response, Error> {
    let request: TeiRequest = req.json()?;
    let encoder = match &request.model {
        Some(name) => embedding_model(models, name)?,
        None => only_embedding_model(models)?,
    };
    let dimensions = check_dimensions(&encoder, request.dimensions)?;
    let rows = tokenize(&encoder, request.inputs, request.truncate)?;
    let vectors = encoder.embed(&rows, request.normalize)?;
    let vectors: Vec<Vec<f32>> = vectors
        .into_iter()
        .map(|v| shorten(v, dimensions, request.normalize))
        .collect();
    Ok(Json(vectors).into_response())
}

/// The embedding model called `name`: a 400 for a model that is not one, a 404 for no model.
fn embedding_model(models: &ModelRegistry, name: &str) -> Result<Arc<Encoder>, Error> {
    if let Some(encoder) = models.encoder(name) {
        return Ok(encoder);
    }
    let loaded = models.get(name).is_ok() || models.decoder_names().any(|d| d == name);
    Err(match loaded {
        true => Error::invalid_input(format!(
            "`{name}` is not an embedding model (embedding models: {})",
            names(models)
        )),
        false => Error::new(
            ErrorKind::ModelNotFound,
            format!("The model `{name}` does not exist"),
        ),
    })
}

/// The one embedding model served, for `/embed` without `model`.
fn only_embedding_model(models: &ModelRegistry) -> Result<Arc<Encoder>, Error> {
    let mut encoders = models.encoders();
    match (encoders.next(), encoders.next()) {
        (Some(only), None) => Ok(Arc::clone(only)),
        (None, _) => Err(Error::new(
            ErrorKind::ModelNotFound,
            "no embedding model is loaded (an encoder folder: model.onnx with \
             last_hidden_state, tokenizer.json, modules.json)",
        )),
        (Some(_), Some(_)) => Err(Error::invalid_input(format!(
            "several embedding models are loaded ({}): name one in \"model\"",
            names(models)
        ))),
    }
}

fn names(models: &ModelRegistry) -> String {
    let names: Vec<&str> = models.encoder_names().collect();
    match names.is_empty() {
        true => "none".into(),
        false => names.join(", "),
    }
}

/// The rows of ids of the inputs, each checked against the limits; `truncate` cuts an input
/// longer than the model's maximum length (else 413).
fn tokenize(encoder: &Encoder, inputs: Inputs, truncate: bool) -> Result<Vec<Vec<u32>>, Error> {
    let count = inputs.len();
    if count == 0 {
        return Err(Error::invalid_input(
            "input is empty: send a string or a list of 1 to 2048 inputs",
        ));
    }
    if count > MAX_INPUTS {
        return Err(Error::invalid_input(format!(
            "{count} inputs in one request, over the limit of {MAX_INPUTS}"
        )));
    }
    let in_input = |i: usize, err: Error| match count {
        1 => err,
        _ => Error::new(err.kind(), format!("input {i}: {}", err.message())),
    };
    let text = |i: usize, text: &str| {
        let chars = text.chars().count();
        if chars > MAX_INPUT_CHARS {
            return Err(in_input(
                i,
                Error::invalid_input(format!(
                    "{chars} characters, over the limit of {MAX_INPUT_CHARS} per input"
                )),
            ));
        }
        encoder
            .tokenize(text, truncate)
            .map_err(|err| in_input(i, err))
    };
    let ids = |i: usize, ids: Vec<u32>| {
        if ids.len() > MAX_INPUT_CHARS {
            return Err(in_input(
                i,
                Error::invalid_input(format!(
                    "{} token ids, over the limit of {MAX_INPUT_CHARS} per input",
                    ids.len()
                )),
            ));
        }
        encoder
            .check_ids(ids, truncate)
            .map_err(|err| in_input(i, err))
    };
    let rows = match inputs {
        Inputs::Text(one) => vec![text(0, &one)?],
        Inputs::Texts(list) => list
            .iter()
            .enumerate()
            .map(|(i, one)| text(i, one))
            .collect::<Result<_, _>>()?,
        Inputs::Ids(one) => vec![ids(0, one)?],
        Inputs::IdLists(list) => list
            .into_iter()
            .enumerate()
            .map(|(i, one)| ids(i, one))
            .collect::<Result<_, _>>()?,
    };
    Ok(rows)
}

/// `dimensions`, between 1 and the model's dimension (a 400 naming them otherwise).
fn check_dimensions(encoder: &Encoder, dimensions: Option<u64>) -> Result<Option<usize>, Error> {
    let Some(asked) = dimensions else {
        return Ok(None);
    };
    let most = encoder.dimension();
    match usize::try_from(asked) {
        Ok(n) if (1..=most).contains(&n) => Ok(Some(n)),
        _ => Err(Error::invalid_input(format!(
            "dimensions {asked} is out of range: model \"{}\" gives 1 to {most}",
            encoder.name()
        ))),
    }
}

/// The first `dimensions` values, scaled back to length 1 when `normalize` (as OpenAI's
/// models shorten an embedding).
fn shorten(mut vector: Vec<f32>, dimensions: Option<usize>, normalize: bool) -> Vec<f32> {
    if let Some(n) = dimensions.filter(|&n| n < vector.len()) {
        vector.truncate(n);
        if normalize {
            let norm = vector
                .iter()
                .map(|&v| f64::from(v) * f64::from(v))
                .sum::<f64>()
                .sqrt()
                .max(1e-12);
            vector
                .iter_mut()
                .for_each(|v| *v = (f64::from(*v) / norm) as f32);
        }
    }
    vector
}

/// The vector as OpenAI's `"encoding_format": "base64"` sends it: base64 of the little-endian
/// bytes of each `f32`.
fn little_endian_base64(vector: &[f32]) -> String {
    let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_holds_little_endian_floats() {
        assert_eq!(little_endian_base64(&[1.0, -2.5]), "AACAPwAAIMA=");
    }

    #[test]
    fn shortening_renormalizes_only_normalized_vectors() {
        assert_eq!(shorten(vec![3.0, 4.0, 12.0], Some(2), true), [0.6, 0.8]);
        assert_eq!(shorten(vec![3.0, 4.0, 12.0], Some(2), false), [3.0, 4.0]);
        assert_eq!(shorten(vec![3.0, 4.0], None, true), [3.0, 4.0]);
    }
}
