//! The OpenAPI description of `POST /v1/embeddings` and `POST /embed`.

use serde_json::{json, Value};

use super::{MAX_INPUTS, MAX_INPUT_CHARS};
use crate::model::ModelRegistry;
use crate::{Group, RouteDoc};

/// The route docs of the embedding routes: `model` names one of the loaded encoders.
pub(super) fn document(app: Group, models: &ModelRegistry) -> Group {
    let names: Vec<&str> = models.encoder_names().collect();
    let model = match names.is_empty() {
        true => json!({"type": "string", "description": "an embedding model (an encoder folder)"}),
        false => json!({"type": "string", "enum": names,
            "description": "an embedding model (an encoder folder)"}),
    };
    let dimension = models.encoders().map(|e| e.dimension()).max().unwrap_or(1);
    let inputs = inputs_schema();
    let dimensions = json!({"type": "integer", "minimum": 1, "maximum": dimension,
        "description": "keep the first N values (renormalized when the model normalizes); \
            1 to the model's dimension"});
    let example = names.first().copied().unwrap_or("tinyembed");
    let vector = json!({"type": "array", "items": {"type": "number"}});
    let answer = json!({
        "type": "object", "required": ["object", "data", "model", "usage"],
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": {"type": "object",
                "required": ["object", "index", "embedding"],
                "properties": {"object": {"const": "embedding"},
                    "index": {"type": "integer", "minimum": 0},
                    "embedding": {"anyOf": [vector,
                        {"type": "string", "description": "base64 of little-endian float32"}]}}}},
            "model": {"type": "string"},
            "usage": {"type": "object", "required": ["prompt_tokens", "total_tokens"],
                "properties": {"prompt_tokens": {"type": "integer", "minimum": 0},
                    "total_tokens": {"type": "integer", "minimum": 0}}},
        },
    });
    app.document(
        "POST",
        "/v1/embeddings",
        RouteDoc::new("Embeddings (OpenAI-compatible)")
            .with_description(
                "OpenAI's shape: each input is cut to the model's maximum length; the \
                 embeddings are L2-normalized when the model's modules.json has Normalize. \
                 A model that is not an embedding model is a 400.",
            )
            .with_tag(crate::pages::OPENAI_TAG)
            .with_request(json!({"type": "object", "required": ["model", "input"],
                "properties": {"model": model, "input": inputs,
                    "encoding_format": {"enum": ["float", "base64"]},
                    "dimensions": dimensions, "user": {"type": "string"}}}))
            .with_example(json!({"model": example, "input": ["What is a class?", "A loop"]}))
            .with_response(answer)
            .with_errors(&[400, 404, 413, 415]),
    )
    .document(
        "POST",
        "/embed",
        RouteDoc::new("Embeddings (text-embeddings-inference)")
            .with_description(
                "text-embeddings-inference's shape: a list of vectors, one per input. \
                 `normalize` (default true) L2-normalizes; an input over the model's maximum \
                 length is a 413 unless `truncate` is true. Without `model`, the only \
                 embedding model loaded.",
            )
            .with_tag("Embeddings")
            .with_request(json!({"type": "object", "required": ["inputs"],
                "properties": {"inputs": inputs_schema(), "normalize": {"type": "boolean"},
                    "truncate": {"type": "boolean"}, "model": model,
                    "dimensions": dimensions}}))
            .with_example(json!({"inputs": ["What is a class?"]}))
            .with_response(json!({"type": "array", "items": vector}))
            .with_errors(&[400, 404, 413, 415]),
    )
}

/// A string, a list of strings, a list of token ids, or a list of such lists.
fn inputs_schema() -> Value {
    let text = json!({"type": "string", "maxLength": MAX_INPUT_CHARS});
    let ids = json!({"type": "array", "minItems": 1, "maxItems": MAX_INPUT_CHARS,
        "items": {"type": "integer", "minimum": 0}});
    json!({"anyOf": [
        text,
        {"type": "array", "minItems": 1, "maxItems": MAX_INPUTS, "items": text},
        ids,
        {"type": "array", "minItems": 1, "maxItems": MAX_INPUTS, "items": ids},
    ]})
}
