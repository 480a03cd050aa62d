//! The KServe Open Inference Protocol v2 (REST), as Triton's HTTP client speaks it, including
//! its binary tensor data extension (the client's default for numpy inputs and outputs).

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::{with, Readiness};
use crate::model::{DataType, Model, ModelRegistry, Tensor};
use crate::{Error, Group, Json, Request, Response, Result, RouteDoc};

const VERSION: &str = "1";
const BINARY_HEADER: &str = "Inference-Header-Content-Length";

pub(super) fn mount(app: Group, models: &ModelRegistry, ready: &Readiness) -> Group {
    let ready = ready.clone();
    let app = app
        .get("/v2/health/live", |_| {
            Json(serde_json::json!({"live": true}))
        })
        .get("/v2/health/ready", move |_| {
            ready
                .check()
                .map(|()| Json(serde_json::json!({"ready": true})))
        })
        .get("/v2", |_| {
            Json(serde_json::json!({
                "name": "tinyserve",
                "version": env!("CARGO_PKG_VERSION"),
                "extensions": ["binary_tensor_data"],
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
        .post("/v2/models/<name>/infer", with(models, infer))
        .post(
            "/v2/models/<name>/versions/<version>/infer",
            with(models, infer),
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

/// The model the path names; a version other than "1" does not exist.
fn model_for(models: &ModelRegistry, req: &Request) -> Result<std::sync::Arc<Model>> {
    let name = req.param("name").unwrap_or_default();
    match req.param("version") {
        Some(version) if version != VERSION => Err(Error::new(
            crate::ErrorKind::ModelNotFound,
            format!("model \"{name}\" has no version \"{version}\" (only \"{VERSION}\")"),
        )),
        _ => models.get(name),
    }
}

fn metadata(models: &ModelRegistry, req: &Request) -> Result<Json<Value>> {
    let model = model_for(models, req)?;
    let specs = |specs: &[crate::model::TensorSpec]| -> Vec<Value> {
        specs
            .iter()
            .map(|s| serde_json::json!({"name": s.name, "datatype": s.datatype.as_str(), "shape": s.shape}))
            .collect()
    };
    Ok(Json(serde_json::json!({
        "name": model.name(),
        "versions": [VERSION],
        "platform": "onnx_onnxv1",
        "inputs": specs(&model.signature().inputs),
        "outputs": specs(&model.signature().outputs),
    })))
}

fn model_ready(models: &ModelRegistry, req: &Request) -> Result<Json<Value>> {
    let model = model_for(models, req)?;
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

fn infer(models: &ModelRegistry, req: &Request) -> Result<Response> {
    let model = model_for(models, req)?;
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
        inputs.push(read_input(&model, input, &mut binary)?);
    }
    if !binary.is_empty() {
        return Err(Error::invalid_input(format!(
            "{} bytes of binary data are not claimed by any input",
            binary.len()
        )));
    }
    let outputs = model.infer(inputs)?;
    respond(&model, request, outputs)
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
fn respond(model: &Model, request: InferRequest, outputs: Vec<Tensor>) -> Result<Response> {
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
    text(&mut out, VERSION);
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
