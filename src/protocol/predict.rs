//! The Flask-style route for demos and scripts:
//! `POST /models/<name>/predict` with `{"inputs": {"input_name": nested array}}`
//! (or a bare nested array for a single-input model), answering
//! `{"outputs": {"output_name": nested array}}`.

use serde::de::{DeserializeSeed, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use super::with;
use crate::model::{Model, ModelRegistry, ModelRepository, Tensor};
use crate::{Error, Group, Json, Request, Response, Result, RouteDoc};

pub(super) fn mount(app: Group, models: &ModelRepository) -> Group {
    let app = app
        .get("/models", with(models, |models, _| Json(list(models))))
        .post(
            "/models/<name>/predict",
            with(models, |models, req| {
                predict(&*models.get(req.param("name").unwrap_or_default())?, req)
            }),
        )
        .post("/predict", with(models, predict_single));
    document(app)
}

/// The route docs of `/models` and the predict routes, for the OpenAPI document.
fn document(app: Group) -> Group {
    let list = json!({"type": "object", "required": ["models"], "properties": {"models": {
        "type": "array", "items": {"type": "object", "required": ["name", "inputs", "outputs"],
            "properties": {"name": {"type": "string"},
                "inputs": {"type": "array", "items": super::v2::tensor_spec_schema()},
                "outputs": {"type": "array", "items": super::v2::tensor_spec_schema()}}}}}});
    let request = json!({"anyOf": [
        {"type": "object", "required": ["inputs"], "properties": {"inputs": {
            "type": "object", "additionalProperties": {"type": "array"},
            "description": "input name → nested array"}}},
        {"type": "array", "description": "a single-input model's input"},
    ]});
    let response = json!({"type": "object", "required": ["outputs"], "properties": {"outputs": {
        "type": "object", "description": "output name → nested array (a number for a scalar)"}}});
    let predict = |summary: &str| {
        RouteDoc::new(summary)
            .with_description(
                "`{\"inputs\": {\"<input name>\": <nested array>}}` → \
                 `{\"outputs\": {\"<output name>\": <nested array>}}`. A bare nested array \
                 (or `{\"inputs\": [...]}`) is accepted for a single-input model. Inputs are \
                 checked against the signature: a mistake is a 400 naming the input.",
            )
            .with_tag("Predict")
            .with_request(request.clone())
            .with_response(response.clone())
            .with_errors(&[400, 404, 415])
    };
    app.document(
        "GET",
        "/models",
        RouteDoc::new("The loaded models with their signatures")
            .with_tag("Predict")
            .with_response(list)
            .with_errors(&[]),
    )
    .document(
        "POST",
        "/models/<name>/predict",
        predict("Predict with a model"),
    )
    .document(
        "POST",
        "/predict",
        predict("Predict with the only loaded model"),
    )
}

/// `POST /predict`: only meaningful when exactly one model is loaded.
fn predict_single(models: &ModelRegistry, req: &Request) -> Result<Response> {
    let mut all = models.iter();
    match (all.next(), all.next()) {
        (Some(model), None) => predict(model, req),
        _ => Err(Error::new(
            crate::ErrorKind::NotFound,
            format!(
                "POST /predict needs exactly one loaded model, {} are loaded: use /models/<name>/predict",
                models.len()
            ),
        )),
    }
}

fn list(models: &ModelRegistry) -> Value {
    let models: Vec<Value> = models
        .iter()
        .map(|model| {
            serde_json::json!({
                "name": model.name(),
                "inputs": model.signature().inputs,
                "outputs": model.signature().outputs,
            })
        })
        .collect();
    serde_json::json!({ "models": models })
}

/// The HTTP route: the body's inputs are decoded from their JSON text and the answer written
/// as JSON text, neither held as a `Value` tree (that took 1.2 GB for a 10 MB body), and the
/// answer stops at the model's response limit.
fn predict(model: &Model, req: &Request) -> Result<Response> {
    // The Content-Type check and the syntax errors of `Request::json`, without keeping anything.
    req.json::<serde::de::IgnoredAny>()?;
    let body: &RawValue = serde_json::from_slice(req.body()).map_err(Error::from_json)?;
    let mut inputs = Vec::new();
    for (name, data) in named_input_texts(model, body)? {
        let spec = model.input_spec(&name)?;
        inputs.push(Tensor::from_json_text(spec, data.get(), None, None)?);
    }
    let outputs = model.infer(inputs)?;
    let limit = model.max_response_bytes();
    let mut out = b"{\"outputs\":{".to_vec();
    for (i, tensor) in outputs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut out, &tensor.name);
        out.push(b':');
        tensor.write_json(true, &mut out, limit).map_err(|_| {
            Error::invalid_input(format!(
                "the answer of model \"{}\" is over the response limit of {limit} bytes \
                 (--max-response-bytes)",
                model.name()
            ))
        })?;
    }
    out.extend_from_slice(b"}}");
    Ok(Response::new(200, "application/json", out))
}

/// The text of each input of a predict body, as [`named_inputs`] finds them.
fn named_input_texts<'a>(model: &Model, body: &'a RawValue) -> Result<Vec<(String, &'a RawValue)>> {
    #[derive(Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        inputs: Option<&'a RawValue>,
    }
    let inputs = match body.get().as_bytes().first() {
        Some(b'{') => serde_json::from_str::<Envelope>(body.get())
            .map_err(Error::from_json)?
            .inputs
            .ok_or_else(|| {
                Error::invalid_input("expected {\"inputs\": {\"<input name>\": <nested array>}}")
            })?,
        _ => body,
    };
    match inputs.get().as_bytes().first() {
        Some(b'{') => {
            let mut unknown = None;
            let seed = KnownInputs {
                model,
                unknown: &mut unknown,
            };
            let mut deserializer = serde_json::Deserializer::from_str(inputs.get());
            let named = seed.deserialize(&mut deserializer);
            match unknown {
                Some(err) => Err(err),
                None => named.map_err(Error::from_json),
            }
        }
        Some(b'[') => match model.signature().inputs.as_slice() {
            [only] => Ok(vec![(only.name.clone(), inputs)]),
            _ => Err(several_inputs(model)),
        },
        _ => Err(Error::invalid_input(
            "\"inputs\" must be an object of input name to nested array",
        )),
    }
}

/// The entries of an `"inputs"` object, read one by one and refused at the first name the
/// model does not have, so that a body of a million distinct keys is not first collected (at
/// some 70 bytes of map per 8 bytes of text). A repeated name keeps its last value, as a JSON
/// object does.
struct KnownInputs<'m, 'e> {
    model: &'m Model,
    unknown: &'e mut Option<Error>,
}

impl<'de> DeserializeSeed<'de> for KnownInputs<'_, '_> {
    type Value = Vec<(String, &'de RawValue)>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for KnownInputs<'_, '_> {
    type Value = Vec<(String, &'de RawValue)>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object of input name to nested array")
    }

    fn visit_map<A: MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut named: Vec<(String, &'de RawValue)> = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            if let Err(err) = self.model.input_spec(&name) {
                *self.unknown = Some(err);
                return Err(serde::de::Error::custom("unknown input"));
            }
            let data: &'de RawValue = map.next_value()?;
            named.retain(|(n, _)| *n != name);
            named.push((name, data));
        }
        Ok(named)
    }
}

fn several_inputs(model: &Model) -> Error {
    Error::invalid_input(format!(
        "model \"{}\" has inputs {}: pass {{\"inputs\": {{\"<name>\": <array>}}}}",
        model.name(),
        input_names(model)
    ))
}

/// Runs `model` on a predict-style body (`{"inputs": {...}}`, or a bare nested array for a
/// single-input model) and returns `{"outputs": {...}}` with nested arrays.
///
/// # Example
/// ```no_run
/// use tinyserve::{model::ModelRegistry, protocol};
/// let models = ModelRegistry::load_dir("models")?;
/// let iris = models.get("iris")?;
/// let out = protocol::predict(&iris, serde_json::json!([[5.1, 3.5, 1.4, 0.2]]))?;
/// println!("{}", out["outputs"]["label"]);
/// # Ok::<(), tinyserve::Error>(())
/// ```
pub fn run(model: &Model, body: Value) -> Result<Value> {
    let named = named_inputs(model, body)?;
    let mut inputs = Vec::with_capacity(named.len());
    for (name, data) in &named {
        let spec = model.input_spec(name)?;
        inputs.push(Tensor::from_json(spec, data, None, None)?);
    }
    let outputs: Map<String, Value> = model
        .infer(inputs)?
        .into_iter()
        .map(|tensor| {
            let value = tensor.to_nested_json();
            (tensor.name, value)
        })
        .collect();
    Ok(serde_json::json!({ "outputs": outputs }))
}

/// `{"inputs": {...}}`, or for a single-input model `{"inputs": [...]}` or a bare array.
fn named_inputs(model: &Model, body: Value) -> Result<Map<String, Value>> {
    let inputs = match body {
        Value::Object(mut object) => match object.remove("inputs") {
            Some(inputs) => inputs,
            None => {
                return Err(Error::invalid_input(
                    "expected {\"inputs\": {\"<input name>\": <nested array>}}",
                ))
            }
        },
        other => other,
    };
    match inputs {
        Value::Object(map) => Ok(map),
        array @ Value::Array(_) => match model.signature().inputs.as_slice() {
            [only] => Ok(Map::from_iter([(only.name.clone(), array)])),
            _ => Err(several_inputs(model)),
        },
        _ => Err(Error::invalid_input(
            "\"inputs\" must be an object of input name to nested array",
        )),
    }
}

fn input_names(model: &Model) -> String {
    let names: Vec<String> = model
        .signature()
        .inputs
        .iter()
        .map(|s| format!("\"{}\"", s.name))
        .collect();
    names.join(", ")
}
