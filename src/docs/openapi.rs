//! The OpenAPI 3.1 document of an app, built from its route catalog and its loaded models.
//!
//! How [`RouteDoc`](crate::RouteDoc) fields become OpenAPI:
//! - `<name>` (or `{name}`) segments become `{name}` with a required string path parameter.
//! - `request` and `request_example` become the JSON request body.
//! - `response` is the 200 `application/json` schema, or, when it is a string schema with a
//!   `contentMediaType` (such as `text/plain` or `text/html`), a 200 of that media type.
//! - `streaming`: the 200 is `text/event-stream`, described as one event (`data`, `event`,
//!   `id`, `retry`) whose `data` holds JSON matching `response`. When the request schema has
//!   a boolean `stream` property (OpenAI's convention), the 200 may also be that JSON.
//! - Every operation answers errors (`4XX`, `5XX`) with the shared `Error` schema
//!   `{"error": string, "code": string}`; routes tagged [`OPENAI_TAG`] may also answer
//!   OpenAI's `{"error": {"message", "type", "param", "code"}}`.
//! - `hidden` routes are left out; so are methods OpenAPI 3.1 has no field for.
//!
//! For each loaded model, the predict and v2 infer routes also get a concrete path
//! (`/models/iris/predict`, `/v2/models/iris/infer`) whose schemas come from the model's
//! signature, with a valid example request.

use std::collections::HashSet;

use serde_json::{json, Map, Value};

use super::encode_segment;
use super::schema::ModelInfo;
use crate::model::ModelRegistry;
use crate::{RouteCatalog, RouteInfo};

/// Routes with this tag may answer errors in OpenAI's shape as well as tinyserve's.
pub const OPENAI_TAG: &str = "OpenAI";

/// The generic predict and v2 infer paths that get one concrete path per model.
const PREDICT: &str = "/models/{name}/predict";
const INFER: &str = "/v2/models/{name}/infer";

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The OpenAPI 3.1 document of every route in `catalog`, with per-model paths for the
/// models of `models`, served under `root_path` (`""` for none).
///
/// # Example
/// ```
/// use tinyserve::{docs, model::ModelRegistry, App, RouteDoc};
/// let app = App::new()
///     .get("/hello/<name>", |_| "hi")
///     .document("GET", "/hello/<name>", RouteDoc::new("Say hello"));
/// let doc = docs::openapi::document(&app.catalog(), &ModelRegistry::default(), "/api");
/// assert_eq!(doc["paths"]["/hello/{name}"]["get"]["summary"], "Say hello");
/// assert_eq!(doc["servers"][0]["url"], "/api");
/// ```
pub fn document(catalog: &RouteCatalog, models: &ModelRegistry, root_path: &str) -> Value {
    let infos: Vec<ModelInfo> = models.iter().map(ModelInfo::new).collect();
    build(catalog, &infos, root_path)
}

/// [`document`] with the models' docs already computed.
pub(crate) fn build(catalog: &RouteCatalog, models: &[ModelInfo], root_path: &str) -> Value {
    let mut paths = Map::new();
    let mut tags: Vec<String> = Vec::new();
    let mut ids = HashSet::new();
    let mut seen = HashSet::new();
    for route in catalog.routes() {
        let method = route.method.to_ascii_lowercase();
        if route.doc.hidden
            || !METHODS.contains(&method.as_str())
            || !seen.insert((route.method.clone(), route.pattern.clone()))
        {
            continue;
        }
        for tag in &route.doc.tags {
            if !tags.contains(tag) {
                tags.push(tag.clone());
            }
        }
        let (path, params) = openapi_path(&route.pattern);
        let op = operation(&route, &path, &params, &mut ids);
        let expand = method == "post" && (path == PREDICT || path == INFER);
        let concrete: Vec<(String, Value)> = match expand {
            true => models
                .iter()
                .map(|m| per_model(&op, &path, m, &mut ids))
                .collect(),
            false => Vec::new(),
        };
        add(&mut paths, &path, &method, op);
        for (concrete, op) in concrete {
            add(&mut paths, &concrete, &method, op);
        }
    }
    let server = if root_path.is_empty() { "/" } else { root_path };
    let tags: Vec<Value> = tags.into_iter().map(|name| json!({"name": name})).collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "tinyserve",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Generated from the server's routes and loaded models. \
                Every error is JSON: `{\"error\": \"<message>\", \"code\": \"<code>\"}`.",
        },
        "servers": [{"url": server}],
        "tags": tags,
        "paths": paths,
        "components": {"schemas": {
            "Error": {
                "type": "object",
                "required": ["error", "code"],
                "properties": {
                    "error": {"type": "string", "description": "What went wrong"},
                    "code": {"type": "string", "description": "A stable code, such as `invalid_input`"},
                },
            },
            "OpenAIError": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {
                    "type": "object",
                    "required": ["message", "type"],
                    "properties": {
                        "message": {"type": "string"},
                        "type": {"type": "string"},
                        "param": {"type": ["string", "null"]},
                        "code": {"type": ["string", "null"]},
                    },
                }},
            },
        }},
    })
}

/// `/models/<name>/predict` → (`/models/{name}/predict`, `["name"]`).
fn openapi_path(pattern: &str) -> (String, Vec<String>) {
    let mut params = Vec::new();
    let segments: Vec<String> = pattern
        .split('/')
        .map(|segment| match crate::router::param_name(segment) {
            Some(name) => {
                params.push(name.to_string());
                format!("{{{name}}}")
            }
            None => segment.to_string(),
        })
        .collect();
    let path = segments.join("/");
    (if path.is_empty() { "/".into() } else { path }, params)
}

fn add(paths: &mut Map<String, Value>, path: &str, method: &str, op: Value) {
    let item = paths.entry(path.to_string()).or_insert_with(|| json!({}));
    item[method] = op;
}

/// A unique operation id such as `post_models_name_predict`.
fn operation_id(ids: &mut HashSet<String>, method: &str, path: &str) -> String {
    let words: Vec<String> = path
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    let base = match words.is_empty() {
        true => format!("{method}_root"),
        false => format!("{method}_{}", words.join("_")),
    };
    let mut id = base.clone();
    let mut n = 2;
    while !ids.insert(id.clone()) {
        id = format!("{base}_{n}");
        n += 1;
    }
    id
}

fn operation(route: &RouteInfo, path: &str, params: &[String], ids: &mut HashSet<String>) -> Value {
    let doc = &route.doc;
    let method = route.method.to_ascii_lowercase();
    let mut op = Map::new();
    op.insert(
        "operationId".into(),
        json!(operation_id(ids, &method, path)),
    );
    let summary = match doc.summary.is_empty() {
        true => format!("{} {path}", route.method),
        false => doc.summary.clone(),
    };
    op.insert("summary".into(), json!(summary));
    if !doc.description.is_empty() {
        op.insert("description".into(), json!(doc.description));
    }
    if !doc.tags.is_empty() {
        op.insert("tags".into(), json!(doc.tags));
    }
    if !params.is_empty() {
        let params: Vec<Value> = params
            .iter()
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        op.insert("parameters".into(), json!(params));
    }
    if let Some(schema) = &doc.request {
        let mut media = json!({ "schema": schema });
        if let Some(example) = &doc.request_example {
            media["example"] = example.clone();
        }
        op.insert(
            "requestBody".into(),
            json!({"required": true, "content": {"application/json": media}}),
        );
    }
    op.insert("responses".into(), responses(route));
    Value::Object(op)
}

fn responses(route: &RouteInfo) -> Value {
    let doc = &route.doc;
    let mut content = Map::new();
    let mut description = "Success";
    if doc.streaming {
        description = "A stream of Server-Sent Events; the schema describes one event";
        content.insert(
            "text/event-stream".into(),
            json!({ "schema": event_schema(doc.response.as_ref()) }),
        );
        let optional = doc
            .request
            .as_ref()
            .and_then(|r| r.pointer("/properties/stream/type"))
            .is_some_and(|t| t == "boolean");
        if let (true, Some(schema)) = (optional, &doc.response) {
            description =
                "JSON, or with `\"stream\": true` Server-Sent Events (one event described)";
            content.insert("application/json".into(), json!({ "schema": schema }));
        }
    } else if let Some(schema) = &doc.response {
        let media = match (schema.get("type"), schema.get("contentMediaType")) {
            (Some(t), Some(Value::String(media))) if t == "string" => media.as_str(),
            _ => "application/json",
        };
        content.insert(media.into(), json!({ "schema": schema }));
    }
    let mut ok = json!({ "description": description });
    if !content.is_empty() {
        ok["content"] = Value::Object(content);
    }
    let error = if doc.tags.iter().any(|t| t == OPENAI_TAG) {
        json!({"anyOf": [{"$ref": "#/components/schemas/OpenAIError"},
                         {"$ref": "#/components/schemas/Error"}]})
    } else {
        json!({"$ref": "#/components/schemas/Error"})
    };
    let error = |description: &str| json!({"description": description, "content": {"application/json": {"schema": error}}});
    json!({
        "200": ok,
        "4XX": error("Client error: bad request, unknown route or model, invalid input..."),
        "5XX": error("Server error: `internal`, `overloaded` (retry later) or `not_ready`"),
    })
}

/// One Server-Sent Event; `data` holds JSON matching `data_schema` when there is one.
fn event_schema(data_schema: Option<&Value>) -> Value {
    let mut data = json!({"type": "string", "description": "The event's data lines, joined"});
    if let Some(schema) = data_schema {
        data["contentMediaType"] = json!("application/json");
        data["contentSchema"] = schema.clone();
    }
    json!({
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": data,
            "event": {"type": "string"},
            "id": {"type": "string"},
            "retry": {"type": "integer", "minimum": 0},
        },
    })
}

/// The concrete path and operation of a predict or infer route for one model.
fn per_model(
    generic: &Value,
    path: &str,
    info: &ModelInfo,
    ids: &mut HashSet<String>,
) -> (String, Value) {
    let name = info.model.name();
    let concrete = path.replace("{name}", &encode_segment(name));
    let mut op = generic.clone();
    op["operationId"] = json!(operation_id(ids, "post", &concrete));
    let (what, request, example, response) = match path {
        PREDICT => (
            "Predict with",
            info.predict_request(),
            info.example.clone(),
            info.predict_response(),
        ),
        _ => (
            "KServe v2 inference with",
            info.infer_request(),
            info.infer_example(),
            info.infer_response(),
        ),
    };
    op["summary"] = json!(format!("{what} model {name}"));
    let left = op
        .get_mut("parameters")
        .and_then(Value::as_array_mut)
        .map(|params| {
            params.retain(|p| p["name"] != "name");
            params.len()
        });
    if let (Some(0), Some(op)) = (left, op.as_object_mut()) {
        op.retain(|key, _| key != "parameters");
    }
    let mut media = json!({ "schema": request });
    if let Some(example) = example {
        media["example"] = example;
    }
    op["requestBody"] = json!({"required": true, "content": {"application/json": media}});
    op["responses"]["200"]["content"]["application/json"] = json!({ "schema": response });
    (concrete, op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_become_templates_with_parameters() {
        assert_eq!(
            openapi_path("/v2/models/<name>/versions/<version>"),
            (
                "/v2/models/{name}/versions/{version}".to_string(),
                vec!["name".to_string(), "version".to_string()]
            )
        );
        assert_eq!(openapi_path("/a/{b}"), ("/a/{b}".into(), vec!["b".into()]));
        assert_eq!(openapi_path("/"), ("/".into(), vec![]));
    }

    #[test]
    fn operation_ids_are_unique() {
        let mut ids = HashSet::new();
        assert_eq!(operation_id(&mut ids, "get", "/"), "get_root");
        assert_eq!(operation_id(&mut ids, "get", "/a/{b}"), "get_a_b");
        assert_eq!(operation_id(&mut ids, "get", "/a/b"), "get_a_b_2");
    }
}
