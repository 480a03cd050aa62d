//! Triton's model repository extension (`POST /v2/repository/index`, `.../models/NAME/load`
//! and `/unload`) and statistics extension (`GET /v2/models[/NAME[/versions/V]]/stats`), in
//! Triton's names and JSON shapes, as `tritonclient` calls them.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::with_repository;
use crate::model::ModelRepository;
use crate::{Error, ErrorKind, Group, Json, Request, Response, Result, RouteDoc};

pub(super) fn mount(app: Group, repository: &ModelRepository) -> Group {
    let app = app
        .post("/v2/repository/index", with_repository(repository, index))
        .post(
            "/v2/repository/models/<name>/load",
            with_repository(repository, load),
        )
        .post(
            "/v2/repository/models/<name>/unload",
            with_repository(repository, unload),
        )
        .get("/v2/models/stats", with_repository(repository, stats))
        .get(
            "/v2/models/<name>/stats",
            with_repository(repository, stats),
        )
        .get(
            "/v2/models/<name>/versions/<version>/stats",
            with_repository(repository, stats),
        );
    document(app)
}

/// The body of an index request; tritonclient sends none.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct IndexRequest {
    #[serde(default)]
    ready: bool,
}

/// The body of a load or unload request; tritonclient sends `{}` or `{"parameters": {...}}`.
#[derive(Deserialize, Default)]
struct ChangeRequest {
    #[serde(default)]
    parameters: Map<String, Value>,
}

/// The JSON body, or the default when there is none (whatever the content type says).
fn optional_body<T: for<'a> Deserialize<'a> + Default>(req: &Request) -> Result<T> {
    let body = req.body();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(Error::from_json)
}

fn index(repository: &ModelRepository, req: &Request) -> Result<Json<Value>> {
    let request: IndexRequest = optional_body(req)?;
    let rows: Vec<Value> = repository
        .index(request.ready)
        .into_iter()
        .map(|row| {
            let mut entry =
                json!({"name": row.name, "state": row.state.as_str(), "reason": row.reason});
            if let Some(version) = row.version {
                entry["version"] = json!(version.to_string());
            }
            entry
        })
        .collect();
    Ok(Json(Value::Array(rows)))
}

fn load(repository: &ModelRepository, req: &Request) -> Result<Response> {
    let request: ChangeRequest = optional_body(req)?;
    if let Some(key) = request.parameters.keys().next() {
        return Err(Error::invalid_input(format!(
            "load parameter \"{key}\" is not supported: models load from the model folder as \
             they are"
        )));
    }
    repository.load(req.param("name").unwrap_or_default())?;
    Ok(Response::new(200, "application/json", "{}"))
}

fn unload(repository: &ModelRepository, req: &Request) -> Result<Response> {
    let _: ChangeRequest = optional_body(req)?;
    repository.unload(req.param("name").unwrap_or_default())?;
    Ok(Response::new(200, "application/json", "{}"))
}

/// Every served version of every model, of one model, or one version.
fn stats(repository: &ModelRepository, req: &Request) -> Result<Json<Value>> {
    let models = repository.registry();
    let mut names: Vec<String> = match req.param("name") {
        Some(name) => vec![name.to_string()],
        None => models.iter().map(|m| m.name().to_string()).collect(),
    };
    names.dedup();
    let mut entries = Vec::new();
    for name in &names {
        let versions = match req.param("version") {
            Some(text) => {
                let version = text.parse::<u64>().ok();
                match version.and_then(|v| models.stats(name, v).map(|_| v)) {
                    Some(v) => vec![v],
                    None => return Err(no_such(&models, name, text)),
                }
            }
            None => models.versions(name),
        };
        if versions.is_empty() {
            models.get(name)?;
        }
        for version in versions {
            if let Some(stats) = models.stats(name, version) {
                entries.push(stats.to_json(name, version));
            }
        }
    }
    Ok(Json(json!({"model_stats": entries})))
}

/// The 404 of a version `text` that `name` does not have.
fn no_such(models: &crate::model::ModelRegistry, name: &str, text: &str) -> Error {
    match models.get(name) {
        Err(err) => err,
        Ok(_) => Error::new(
            ErrorKind::ModelNotFound,
            format!("model \"{name}\" has no version \"{text}\""),
        ),
    }
}

/// The route docs of the repository and statistics extensions.
fn document(app: Group) -> Group {
    let row = json!({"type": "object", "required": ["name", "state", "reason"], "properties": {
        "name": {"type": "string"}, "version": {"type": "string"},
        "state": {"enum": ["READY", "UNAVAILABLE", "LOADING"]}, "reason": {"type": "string"}}});
    let tally = json!({"type": "object", "required": ["count", "ns"], "properties": {
        "count": {"type": "integer", "minimum": 0}, "ns": {"type": "integer", "minimum": 0}}});
    let phases: Map<String, Value> = [
        "success",
        "fail",
        "queue",
        "compute_input",
        "compute_infer",
        "compute_output",
        "cache_hit",
        "cache_miss",
    ]
    .iter()
    .map(|k| (k.to_string(), tally.clone()))
    .collect();
    let stats = json!({"type": "object", "required": ["model_stats"], "properties": {
        "model_stats": {"type": "array", "items": {"type": "object",
            "required": ["name", "version", "inference_count", "execution_count", "inference_stats"],
            "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                "last_inference": {"type": "integer", "description": "ms since the Unix epoch"},
                "inference_count": {"type": "integer"}, "execution_count": {"type": "integer"},
                "inference_stats": {"type": "object", "properties": phases},
                "batch_stats": {"type": "array"}}}}}});
    let change = |summary: &str, description: &str| {
        RouteDoc::new(summary)
            .with_description(description)
            .with_tag("KServe v2")
            .with_request(
                json!({"type": "object", "properties": {"parameters": {"type": "object"}}}),
            )
            .with_response(json!({"type": "object"}))
            .with_errors(&[400, 404])
    };
    let stats_doc = |summary: &str| {
        RouteDoc::new(summary)
            .with_description(
                "Triton's statistics extension: v2 infer requests by outcome, and the time \
                 spent decoding inputs, waiting for a session (`queue`), running and writing \
                 the answer. Counted since the version was first loaded.",
            )
            .with_tag("KServe v2")
            .with_response(stats.clone())
            .with_errors(&[404])
    };
    app.document(
        "POST",
        "/v2/repository/index",
        RouteDoc::new("The model repository index")
            .with_description(
                "Every model of the model folder: one row per version served or failed, or \
                 one for a model that is unloaded (`UNAVAILABLE`, reason `unloaded`), failed as \
                 a whole or is `LOADING`. `{\"ready\": true}` keeps the `READY` rows.",
            )
            .with_tag("KServe v2")
            .with_request(json!({"type": "object", "properties": {"ready": {"type": "boolean"}}}))
            .with_response(json!({"type": "array", "items": row}))
            .with_errors(&[400]),
    )
    .document(
        "POST",
        "/v2/repository/models/<name>/load",
        change(
            "Load or reload a model",
            "Loads the model's versions (or its decoder or encoder folder) from the model \
             folder; each answers a warm-up run before it replaces what is served. 400 with the reason when none loads.",
        ),
    )
    .document(
        "POST",
        "/v2/repository/models/<name>/unload",
        change(
            "Unload a model",
            "Requests in flight finish; later ones get 404 until the model is loaded again.",
        ),
    )
    .document(
        "GET",
        "/v2/models/stats",
        stats_doc("Statistics of every model"),
    )
    .document(
        "GET",
        "/v2/models/<name>/stats",
        stats_doc("Statistics of a model"),
    )
    .document(
        "GET",
        "/v2/models/<name>/versions/<version>/stats",
        stats_doc("Statistics of a model version"),
    )
}
