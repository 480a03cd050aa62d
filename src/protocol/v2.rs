//! The KServe Open Inference Protocol v2 (REST), as Triton's HTTP client speaks it, including
//! its binary tensor data extension (the client's default for numpy inputs and outputs).

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::health::serving;
use super::{with, with_repository, Readiness};
use crate::model::{DataType, Model, ModelRegistry, ModelRepository, ModelStats, Tensor, Timings};
use crate::{Error, ErrorKind, Group, Json, Request, Response, Result, RouteDoc};

const BINARY_HEADER: &str = "Inference-Header-Content-Length";

pub(super) fn mount(app: Group, models: &ModelRepository, ready: &Readiness) -> Group {
    let (ready, repository) = (ready.clone(), models.clone());
    let app = app
        .get("/v2/health/live", |_| {
            Json(serde_json::json!({"live": true}))
        })
        .get("/v2/health/ready", move |_| {
            serving(&ready, &repository).map(|()| Json(serde_json::json!({"ready": true})))
        })
        .get("/v2", |_| {
            Json(serde_json::json!({
                "name": "tinyserve",
                "version": env!("CARGO_PKG_VERSION"),
                "extensions": ["binary_tensor_data", "model_repository", "statistics"],
            }))
        })
        .get("/v2/models/<name>", with(models, metadata))
        .get(
            "/v2/models/<name>/versions/<version>",
            with(models, metadata),
        )
        .get("/v2/models/<name>/ready", with(models, model_ready))
        .get(
            "/v2/models/<name>/versions/<version>/ready",
            with(models, model_ready),
        )
        .post("/v2/models/<name>/infer", with_repository(models, infer))
        .post(
            "/v2/models/<name>/versions/<version>/infer",
            with_repository(models, infer),
        );
    document(app)
}

/// The route docs of the v2 protocol, for the OpenAPI document.
fn document(app: Group) -> Group {
    let doc = |summary: &str, response: Value| {
        RouteDoc::new(summary)
            .with_tag("KServe v2")
            .with_response(response)
            .with_errors(&[])
    };
    let flag = |name: &str| json!({"type": "object", "required": [name], "properties": {name: {"const": true}}});
    let specs = json!({"type": "array", "items": tensor_spec_schema()});
    let metadata = doc(
        "Model metadata: inputs and outputs",
        json!({
            "type": "object",
            "required": ["name", "versions", "platform", "inputs", "outputs"],
            "properties": {"name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "string"}},
                "platform": {"type": "string"}, "inputs": specs, "outputs": specs},
        }),
    )
    .with_errors(&[404]);
    let ready = doc(
        "Model readiness",
        json!({"type": "object", "required": ["name", "ready"],
        "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}}}),
    )
    .with_errors(&[404]);
    let datatypes: Vec<&str> = DataType::ALL.iter().map(|t| t.as_str()).collect();
    let shape = json!({"type": "array", "items": {"type": "integer", "minimum": 0}});
    let infer = doc("Inference (KServe v2)", json!({
        "type": "object",
        "required": ["model_name", "model_version", "outputs"],
        "properties": {"model_name": {"type": "string"}, "model_version": {"type": "string"},
            "id": {"type": "string"}, "outputs": {"type": "array", "items": {
                "type": "object", "required": ["name", "datatype", "shape"],
                "properties": {"name": {"type": "string"}, "datatype": {"enum": datatypes},
                    "shape": shape, "data": {"type": "array", "description": "flat, row-major"},
                    "parameters": {"type": "object"}}}}},
    }))
    .with_description(
        "Inputs `{name, shape, datatype, data}` with flat or nested data; optional `id` \
         (echoed) and `outputs` (which to return, and whether as binary). With the binary \
         tensor data extension (`Inference-Header-Content-Length`), the body is JSON followed \
         by raw little-endian tensors, and so is an answer with binary outputs \
         (`application/octet-stream`).",
    )
    .with_errors(&[400, 404, 415])
    .with_content(
        "application/octet-stream",
        json!({"type": "string", "contentMediaType": "application/octet-stream",
            "description": "Binary outputs (`binary_data_output`, or `binary_data` on an output): \
                the JSON answer, `Inference-Header-Content-Length` bytes long, then each binary \
                output's raw little-endian elements in the order of `outputs`, \
                `parameters.binary_data_size` bytes each"}),
    )
    .with_request_content(
        "application/octet-stream",
        json!({"type": "string", "contentMediaType": "application/octet-stream",
            "description": "Binary inputs: the JSON request, `Inference-Header-Content-Length` \
                bytes long, then each binary input's raw little-endian elements in the order of \
                `inputs`, `parameters.binary_data_size` bytes each"}),
    )
    .with_request_header(
        BINARY_HEADER,
        "With binary inputs: the length in bytes of the body's leading JSON",
        json!({"type": "integer", "minimum": 0}),
    )
    .with_response_header(
        BINARY_HEADER,
        "With an `application/octet-stream` answer: the length in bytes of its leading JSON",
        json!({"type": "string", "pattern": "^[0-9]+$"}),
        false,
    )
    .with_request(json!({
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object", "properties": {"binary_data_output": {"type": "boolean"}}},
            "inputs": {"type": "array", "items": {
                "type": "object", "required": ["name", "shape", "datatype"],
                "properties": {"name": {"type": "string"}, "shape": shape, "datatype": {"enum": datatypes},
                    "data": {"type": "array", "description": "flat (row-major) or nested"},
                    "parameters": {"type": "object", "properties": {
                        "binary_data_size": {"type": "integer", "minimum": 0}}}}}},
            "outputs": {"type": "array", "items": {
                "type": "object", "required": ["name"],
                "properties": {"name": {"type": "string"}, "parameters": {"type": "object",
                    "properties": {"binary_data": {"type": "boolean"}}}}}},
        },
    }));
    app.document(
        "GET",
        "/v2/health/live",
        doc("Server liveness", flag("live")),
    )
    .document(
        "GET",
        "/v2/health/ready",
        doc("Server readiness", flag("ready")).with_errors(&[503]),
    )
    .document(
        "GET",
        "/v2",
        doc(
            "Server metadata",
            json!({
            "type": "object", "required": ["name", "version", "extensions"],
            "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                "extensions": {"type": "array", "items": {"type": "string"}}}}),
        ),
    )
    .document("GET", "/v2/models/<name>", metadata.clone())
    .document("GET", "/v2/models/<name>/versions/<version>", metadata)
    .document("GET", "/v2/models/<name>/ready", ready.clone())
    .document("GET", "/v2/models/<name>/versions/<version>/ready", ready)
    .document("POST", "/v2/models/<name>/infer", infer.clone())
    .document("POST", "/v2/models/<name>/versions/<version>/infer", infer)
}

/// JSON Schema of a [`crate::model::TensorSpec`]: `{"name", "datatype", "shape"}`.
pub(super) fn tensor_spec_schema() -> Value {
    let datatypes: Vec<&str> = DataType::ALL.iter().map(|t| t.as_str()).collect();
    json!({"type": "object", "required": ["name", "datatype", "shape"], "properties": {
        "name": {"type": "string"}, "datatype": {"enum": datatypes},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": -1},
            "description": "-1 marks a dynamic dimension"}}})
}

/// The version the path names (the highest without one), with its number.
fn model_for(models: &ModelRegistry, req: &Request) -> Result<(u64, Arc<Model>)> {
    let (version, model, _) = served(models, req)?;
    Ok((version, model))
}

/// The model, version number and statistics the path names.
fn served(models: &ModelRegistry, req: &Request) -> Result<(u64, Arc<Model>, Arc<ModelStats>)> {
    let name = req.param("name").unwrap_or_default();
    let version = match req.param("version") {
        None => None,
        Some(text) => Some(text.parse::<u64>().map_err(|_| {
            Error::new(
                ErrorKind::ModelNotFound,
                format!("model \"{name}\" has no version \"{text}\" (versions are numbers)"),
            )
        })?),
    };
    let model = match version {
        Some(v) => models.version(name, v)?,
        None => models.get(name)?,
    };
    let number = version.or_else(|| models.versions(name).last().copied());
    let number = number.unwrap_or(1);
    let stats = models.stats(name, number).unwrap_or_default();
    Ok((number, model, stats))
}

/// The error for a model the registry does not serve: what the repository says of it (unloaded,
/// failed to load) when it knows it.
fn not_served(repository: &ModelRepository, name: &str, err: Error) -> Error {
    if err.kind() != ErrorKind::ModelNotFound {
        return err;
    }
    let rows = repository.index(false);
    match rows.iter().find(|row| row.name == name) {
        Some(row) if !row.reason.is_empty() => Error::new(
            ErrorKind::ModelNotFound,
            format!(
                "model \"{name}\" is not loaded ({}: {})",
                row.state.as_str(),
                row.reason
            ),
        ),
        _ => err,
    }
}

fn metadata(models: &ModelRegistry, req: &Request) -> Result<Json<Value>> {
    let (_, model) = model_for(models, req)?;
    let specs = |specs: &[crate::model::TensorSpec]| -> Vec<Value> {
        specs
            .iter()
            .map(|s| serde_json::json!({"name": s.name, "datatype": s.datatype.as_str(), "shape": s.shape}))
            .collect()
    };
    let versions: Vec<String> = models
        .versions(model.name())
        .iter()
        .map(u64::to_string)
        .collect();
    Ok(Json(serde_json::json!({
        "name": model.name(),
        "versions": versions,
        "platform": "onnx_onnxv1",
        "inputs": specs(&model.signature().inputs),
        "outputs": specs(&model.signature().outputs),
    })))
}

fn model_ready(models: &ModelRegistry, req: &Request) -> Result<Json<Value>> {
    let (_, model) = model_for(models, req)?;
    Ok(Json(
        serde_json::json!({"name": model.name(), "ready": true}),
    ))
}

/// An inference request, borrowed from the body: each input's `data` stays JSON text until
/// it is decoded against the input's spec (no `Value` tree, see [`Tensor::from_json_text`]).
#[derive(Deserialize)]
struct InferRequest<'a> {
    id: Option<String>,
    #[serde(default, borrow)]
    parameters: RequestParameters<'a>,
    #[serde(borrow)]
    inputs: Vec<InferInput<'a>>,
    #[serde(borrow)]
    outputs: Option<Vec<RequestedOutput<'a>>>,
}

#[derive(Deserialize, Default)]
struct RequestParameters<'a> {
    #[serde(borrow)]
    binary_data_output: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct InferInput<'a> {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default, borrow)]
    parameters: InputParameters<'a>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct InputParameters<'a> {
    #[serde(borrow)]
    binary_data_size: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RequestedOutput<'a> {
    name: String,
    #[serde(default, borrow)]
    parameters: OutputParameters<'a>,
}

#[derive(Deserialize, Default)]
struct OutputParameters<'a> {
    #[serde(borrow)]
    binary_data: Option<&'a RawValue>,
}

/// `POST /v2/models/NAME[/versions/V]/infer`: on the models of the moment (a model replaced
/// meanwhile answers this request from its old version), counted in the version's statistics.
fn infer(repository: &ModelRepository, req: &Request) -> Result<Response> {
    let models = repository.registry();
    let name = req.param("name").unwrap_or_default();
    let (version, model, stats) =
        served(&models, req).map_err(|err| match models.versions(name).is_empty() {
            true => not_served(repository, name, err),
            false => err,
        })?;
    let started = Instant::now();
    let mut timings = Timings::default();
    let answer = run(&model, version, req, &mut timings);
    match &answer {
        Ok((_, rows)) => stats.record_success(started.elapsed(), *rows, timings),
        Err(_) => stats.record_failure(started.elapsed()),
    }
    answer.map(|(response, _)| response)
}

/// Decodes, runs and answers one request, timing each phase; also returns its rows.
fn run(
    model: &Model,
    version: u64,
    req: &Request,
    timings: &mut Timings,
) -> Result<(Response, u64)> {
    let phase = Instant::now();
    let body = req.body();
    let (json, mut binary): (&[u8], &[u8]) = match req.header(BINARY_HEADER) {
        Some(len) => {
            // Digits only: Rust's `parse` would also read `+5` as 5.
            let digits = Some(len.trim()).filter(|l| l.bytes().all(|b| b.is_ascii_digit()));
            let len: usize = digits.and_then(|l| l.parse().ok()).ok_or_else(|| {
                Error::bad_request(format!("{BINARY_HEADER} is not a number: {len:?}"))
            })?;
            if len > body.len() {
                return Err(Error::bad_request(format!(
                    "{BINARY_HEADER} is {len} but the body has {} bytes",
                    body.len()
                )));
            }
            body.split_at(len)
        }
        None => {
            // The Content-Type check and the syntax errors of `Request::json`, without keeping anything.
            req.json::<serde::de::IgnoredAny>()?;
            (body, &[])
        }
    };
    let request: InferRequest = serde_json::from_slice(json).map_err(Error::from_json)?;
    let mut inputs = Vec::with_capacity(request.inputs.len());
    for input in &request.inputs {
        inputs.push(read_input(model, input, &mut binary)?);
    }
    if !binary.is_empty() {
        return Err(Error::invalid_input(format!(
            "{} bytes of binary data are not claimed by any input",
            binary.len()
        )));
    }
    let rows = inputs
        .first()
        .and_then(|t| t.shape.first().copied())
        .map_or(1, |rows| rows as u64);
    timings.compute_input = phase.elapsed();
    let phase = Instant::now();
    let mut queued = Duration::ZERO;
    let outputs = model.infer_queued(inputs, &mut queued)?;
    timings.queue = queued;
    timings.compute_infer = phase.elapsed().saturating_sub(queued);
    let phase = Instant::now();
    let response = respond(model, version, request, outputs)?;
    timings.compute_output = phase.elapsed();
    Ok((response, rows))
}

fn read_input(model: &Model, input: &InferInput, binary: &mut &[u8]) -> Result<Tensor> {
    let spec = model.input_spec(&input.name)?;
    let shape = input
        .shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<std::result::Result<Vec<usize>, _>>()
        .map_err(|_| {
            Error::invalid_input(format!(
                "input \"{}\": shape {:?} has a negative dimension",
                input.name, input.shape
            ))
        })?;
    match (input.parameters.binary_data_size, input.data) {
        (Some(size), _) => {
            let size = serde_json::from_str::<u64>(size.get())
                .ok()
                .and_then(|s| usize::try_from(s).ok())
                .ok_or_else(|| {
                    Error::invalid_input(format!(
                        "input \"{}\": binary_data_size must be a non-negative integer",
                        input.name
                    ))
                })?;
            if size > binary.len() {
                return Err(Error::invalid_input(format!(
                    "input \"{}\": binary_data_size is {size} but only {} bytes remain",
                    input.name,
                    binary.len()
                )));
            }
            let (bytes, rest) = binary.split_at(size);
            *binary = rest;
            Tensor::from_le_bytes(spec, &shape, &input.datatype, bytes)
        }
        (None, Some(data)) => {
            Tensor::from_json_text(spec, data.get(), Some(&shape), Some(&input.datatype))
        }
        (None, None) => Err(Error::invalid_input(format!(
            "input \"{}\": has neither \"data\" nor binary_data_size",
            input.name
        ))),
    }
}

/// Writes the answer's JSON (and binary outputs after it) straight into bytes: the elements
/// are never held as `Value`s, and writing stops at the response limit.
fn respond(
    model: &Model,
    version: u64,
    request: InferRequest,
    outputs: Vec<Tensor>,
) -> Result<Response> {
    let all_binary = flag(request.parameters.binary_data_output);
    let selected: Vec<(Tensor, bool)> = match request.outputs {
        None => outputs.into_iter().map(|t| (t, all_binary)).collect(),
        Some(wanted) => {
            let mut outputs = outputs;
            let mut selected = Vec::with_capacity(wanted.len());
            for want in wanted {
                if selected
                    .iter()
                    .any(|(t, _): &(Tensor, bool)| t.name == want.name)
                {
                    return Err(Error::invalid_input(format!(
                        "output \"{}\" is requested twice",
                        want.name
                    )));
                }
                let Some(pos) = outputs.iter().position(|t| t.name == want.name) else {
                    return Err(Error::invalid_input(format!(
                        "unknown output \"{}\": model \"{}\" has outputs {}",
                        want.name,
                        model.name(),
                        model.output_names()
                    )));
                };
                let binary = all_binary || flag(want.parameters.binary_data);
                selected.push((outputs.swap_remove(pos), binary));
            }
            selected
        }
    };
    let limit = model.max_response_bytes();
    let too_large = || {
        Error::invalid_input(format!(
            "the answer of model \"{}\" is over the response limit of {limit} bytes \
             (--max-response-bytes)",
            model.name()
        ))
    };
    let binary_bytes = selected
        .iter()
        .filter(|(_, binary)| *binary)
        .map(|(t, _)| t.to_le_bytes_len())
        .fold(0usize, usize::saturating_add);
    let json_limit = limit.checked_sub(binary_bytes).ok_or_else(too_large)?;
    let mut out = Vec::new();
    let text = |out: &mut Vec<u8>, value: &str| {
        let _ = serde_json::to_writer(out, value);
    };
    out.extend_from_slice(b"{\"model_name\":");
    text(&mut out, model.name());
    out.extend_from_slice(b",\"model_version\":");
    text(&mut out, &version.to_string());
    out.extend_from_slice(b",\"outputs\":[");
    for (i, (tensor, as_binary)) in selected.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        text(&mut out, &tensor.name);
        out.extend_from_slice(b",\"datatype\":");
        text(&mut out, tensor.datatype().as_str());
        out.extend_from_slice(b",\"shape\":");
        let _ = serde_json::to_writer(&mut out, &tensor.shape);
        if *as_binary {
            out.extend_from_slice(b",\"parameters\":{\"binary_data_size\":");
            out.extend_from_slice(tensor.to_le_bytes_len().to_string().as_bytes());
            out.push(b'}');
        } else {
            out.extend_from_slice(b",\"data\":");
            tensor
                .write_json(false, &mut out, json_limit)
                .map_err(|_| too_large())?;
        }
        out.push(b'}');
    }
    out.push(b']');
    if let Some(id) = &request.id {
        out.extend_from_slice(b",\"id\":");
        text(&mut out, id);
    }
    out.push(b'}');
    if out.len() > json_limit {
        return Err(too_large());
    }
    if binary_bytes == 0 {
        return Ok(Response::new(200, "application/json", out));
    }
    let json_len = out.len().to_string();
    out.reserve_exact(binary_bytes);
    for (tensor, _) in selected.iter().filter(|(_, binary)| *binary) {
        tensor.write_le_bytes(&mut out);
    }
    Ok(Response::new(200, "application/octet-stream", out).with_header(BINARY_HEADER, &json_len))
}

/// A boolean parameter; anything but `true` is false.
fn flag(parameter: Option<&RawValue>) -> bool {
    parameter.is_some_and(|raw| serde_json::from_str::<bool>(raw.get()).unwrap_or(false))
}
