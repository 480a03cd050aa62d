//! The OpenAPI 3.1 document of an app, built from its route catalog and its loaded models.
//!
//! How [`RouteDoc`](crate::RouteDoc) fields become OpenAPI:
//! - `<name>` (or `{name}`) segments become `{name}` with a required string path parameter;
//!   `request_headers` become header parameters.
//! - `request` and `request_example` become the JSON request body; `request_contents` add
//!   other media types (the v2 binary tensor body).
//! - `response` is the 200 `application/json` schema, or, when it is a string schema with a
//!   `contentMediaType` (such as `text/plain` or `text/html`), a 200 of that media type;
//!   `contents` add other media types and `response_headers` the 200's headers (every 200 has
//!   `X-Request-ID`).
//! - `streaming`: the 200 is `text/event-stream`, described as one event (`data`, `event`,
//!   `id`, `retry`) whose `data` holds JSON matching `event` (or `response`), or is
//!   `stream_end` on the last event. When the request schema has a boolean `stream` property
//!   (OpenAI's convention), the 200 may also be `response` as JSON.
//! - `errors`: each status the route answers, plus those the server answers on any route
//!   (400, 408, 413, 431, 500, 503 with `Retry-After`, and 401 with `WWW-Authenticate` on the
//!   routes an API key guards), each with the shared `Error` schema
//!   `{"error": string, "code": string}`; routes tagged [`OPENAI_TAG`] answer their own
//!   statuses in OpenAI's `{"error": {"message", "type", "param", "code"}}`. A route without
//!   `errors` is documented with `4XX` and `5XX`. 405 (with `Allow`) is
//!   `components/responses/MethodNotAllowed`: it answers methods a path does not list, so no
//!   operation has it.
//! - `schemas` (a typed route's types) join `components/schemas`, beside `Error` and
//!   `OpenAIError`; one whose name is taken by another schema is renamed (`Item2`), its
//!   `$ref`s with it.
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
/// use tinyserve::catalog::RouteDoc;
/// use tinyserve::{pages, model::ModelRegistry, App};
/// let app = App::new()
///     .get("/hello/<name>", |_| "hi")
///     .document("GET", "/hello/<name>", RouteDoc::new("Say hello"));
/// let doc = pages::openapi::document(&app.catalog(), &ModelRegistry::default(), "/api");
/// assert_eq!(doc["paths"]["/hello/{name}"]["get"]["summary"], "Say hello");
/// assert_eq!(doc["servers"][0]["url"], "/api");
/// ```
pub fn document(catalog: &RouteCatalog, models: &ModelRegistry, root_path: &str) -> Value {
    let infos: Vec<ModelInfo> = models.iter().map(ModelInfo::new).collect();
    build(catalog, &infos, root_path, &Auth::default())
}

/// [`document`] with the models' docs already computed, for a server that guards its routes
/// with an API key as `auth` says.
pub(crate) fn build(
    catalog: &RouteCatalog,
    models: &[ModelInfo],
    root_path: &str,
    auth: &Auth,
) -> Value {
    let mut paths = Map::new();
    let mut tags: Vec<String> = Vec::new();
    let mut ids = HashSet::new();
    let mut seen = HashSet::new();
    let mut components = shared_schemas();
    for mut route in catalog.routes() {
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
        if !route.doc.schemas.is_empty() {
            let doc = &mut route.doc;
            let schemas = std::mem::take(&mut doc.schemas);
            let mut roots: Vec<&mut Value> = [&mut doc.request, &mut doc.response, &mut doc.event]
                .into_iter()
                .flatten()
                .collect();
            crate::typed::merge_components(&mut components, schemas, &mut roots);
        }
        let (path, params) = openapi_path(&route.pattern);
        let op = operation(&route, &path, &params, &mut ids, auth);
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
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "tinyserve",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Generated from the server's routes and loaded models. \
                Every error is JSON: `{\"error\": \"<message>\", \"code\": \"<code>\"}` \
                (`/v1` routes answer their own errors in OpenAI's shape). A method a path does \
                not list is answered 405 (`#/components/responses/MethodNotAllowed`, with \
                `Allow`); a path no route matches, 404 `not_found`.",
        },
        "servers": [{"url": server}],
        "tags": tags,
        "paths": paths,
        "components": {"schemas": components},
    });
    doc["components"]["responses"] = json!({"MethodNotAllowed": {
        "description": "`method_not_allowed`: the path does not take this method",
        "headers": {"Allow": {"description": "The methods the path takes", "required": true,
            "schema": {"type": "string"}}},
        "content": {"application/json": {"schema": error_ref()}},
    }});
    if auth.public.is_some() {
        doc["components"]["securitySchemes"] = json!({"apiKey": {"type": "http", "scheme": "bearer",
                "description": "The key `tinyserve serve --api-key-env VAR` reads"}});
        doc["security"] = json!([{"apiKey": []}]);
    }
    doc
}

/// The component schemas every document has: the error bodies. A route's own component
/// schemas (a typed route's types) are added after them, renamed if they clash.
fn shared_schemas() -> Map<String, Value> {
    let schemas = json!({
        "Error": {
            "type": "object",
            "required": ["error", "code"],
            "properties": {
                "error": {"type": "string", "description": "What went wrong"},
                "code": {"type": "string", "description": "A stable code, such as `invalid_input`"},
                "errors": {
                    "type": "array",
                    "description": "With `invalid_body` from a typed route: every mistake of \
                        the body, at its path (`\"\"` for the body itself, `items[1].text`)",
                    "items": {
                        "type": "object",
                        "required": ["path", "message"],
                        "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
                    },
                },
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
    });
    match schemas {
        Value::Object(schemas) => schemas,
        _ => Map::new(),
    }
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

fn operation(
    route: &RouteInfo,
    path: &str,
    params: &[String],
    ids: &mut HashSet<String>,
    auth: &Auth,
) -> Value {
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
    let mut parameters: Vec<Value> = params
        .iter()
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    parameters.extend(
        doc.request_headers
            .iter()
            .map(|(_, parameter)| parameter.clone()),
    );
    if !parameters.is_empty() {
        op.insert("parameters".into(), json!(parameters));
    }
    if let Some(schema) = &doc.request {
        let mut media = json!({ "schema": schema });
        if let Some(example) = &doc.request_example {
            media["example"] = example.clone();
        }
        let mut content = Map::new();
        content.insert("application/json".into(), media);
        for (media_type, schema) in &doc.request_contents {
            content.insert(media_type.clone(), json!({ "schema": schema }));
        }
        op.insert(
            "requestBody".into(),
            json!({"required": true, "content": content}),
        );
    }
    if auth.public.is_some() && !auth.guards(route, path) {
        op.insert("security".into(), json!([]));
    }
    op.insert("responses".into(), responses(route, path, auth));
    Value::Object(op)
}

fn responses(route: &RouteInfo, path: &str, auth: &Auth) -> Value {
    let doc = &route.doc;
    let mut content = Map::new();
    let mut description = "Success";
    if doc.streaming {
        description = "A stream of Server-Sent Events; the schema describes one event";
        let data = doc.event.as_ref().or(doc.response.as_ref());
        content.insert(
            "text/event-stream".into(),
            json!({ "schema": event_schema(data, doc.stream_end.as_deref()) }),
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
    for (media, schema) in &doc.contents {
        content.insert(media.clone(), json!({ "schema": schema }));
    }
    let mut headers = Map::new();
    headers.insert("X-Request-ID".into(), request_id_header(true));
    for (name, header) in &doc.response_headers {
        headers.insert(name.clone(), header.clone());
    }
    let mut ok = json!({ "description": description, "headers": headers });
    if !content.is_empty() {
        ok["content"] = Value::Object(content);
    }
    let mut out = Map::new();
    out.insert("200".into(), ok);
    let openai = doc.tags.iter().any(|t| t == OPENAI_TAG);
    let guarded = auth.guards(route, path);
    let Some(own) = &doc.errors else {
        // Undeclared: any client or server error, in either shape for an OpenAI route.
        let schema = match openai {
            true => json!({"anyOf": [{"$ref": "#/components/schemas/OpenAIError"},
                                     {"$ref": "#/components/schemas/Error"}]}),
            false => json!({"$ref": "#/components/schemas/Error"}),
        };
        if guarded {
            out.insert("401".into(), error_response(401, error_ref(), false));
        }
        let error = |description: &str| json!({"description": description, "content": {"application/json": {"schema": schema}}});
        out.insert(
            "4XX".into(),
            error("Client error: bad request, unknown route or model, invalid input..."),
        );
        out.insert(
            "5XX".into(),
            error("Server error: `internal`, `overloaded` (retry later) or `not_ready`"),
        );
        return Value::Object(out);
    };
    let mut statuses: Vec<u16> = SERVER_ERRORS.iter().chain(own).copied().collect();
    if guarded {
        statuses.push(401);
    }
    statuses.sort_unstable();
    statuses.dedup();
    for status in statuses {
        let (ours, server) = (
            own.contains(&status),
            SERVER_ERRORS.contains(&status) || status == 401,
        );
        let schema = match (openai && ours, server) {
            (true, true) => json!({"anyOf": [{"$ref": "#/components/schemas/OpenAIError"},
                                             {"$ref": "#/components/schemas/Error"}]}),
            (true, false) => json!({"$ref": "#/components/schemas/OpenAIError"}),
            (false, _) => error_ref(),
        };
        let mut response = error_response(status, schema, ours);
        if openai && ours {
            response["description"] = json!(format!(
                "{} (in OpenAI's error shape when the route answers it)",
                response["description"].as_str().unwrap_or_default()
            ));
        }
        out.insert(status.to_string(), response);
    }
    Value::Object(out)
}

/// The error statuses the server itself may answer on any route: a malformed request (400),
/// a head or body that is too slow (408), too large (413, 431), a panic (500), no capacity
/// (503, with `Retry-After`).
const SERVER_ERRORS: [u16; 6] = [400, 408, 413, 431, 500, 503];

/// The routes an API key guards, when one is set.
#[derive(Debug, Clone, Default)]
pub(crate) struct Auth {
    /// `None` without an API key; else the paths served without one (the settings'
    /// `public_paths`), besides the routes of groups without the key.
    pub public: Option<Vec<String>>,
}

impl Auth {
    /// Whether the key guards `route`, documented at `path`.
    fn guards(&self, route: &RouteInfo, path: &str) -> bool {
        self.public
            .as_ref()
            .is_some_and(|public| !route.public && !public.iter().any(|p| p == path))
    }
}

fn error_ref() -> Value {
    json!({"$ref": "#/components/schemas/Error"})
}

fn request_id_header(required: bool) -> Value {
    json!({"description": "The request's id: the client's `X-Request-ID` when it is sane, else a new one",
        "required": required, "schema": {"type": "string"}})
}

/// The response object of an error `status` with body `schema`; `from_route` when the
/// route's handler answers it (as well as, maybe, the server).
fn error_response(status: u16, schema: Value, from_route: bool) -> Value {
    let description = match status {
        400 => "Bad request: malformed HTTP, or a body or input that does not fit (`bad_request`, `invalid_json`, `invalid_body`, `invalid_input`)",
        401 => "`unauthorized`: a missing or wrong `Authorization: Bearer` API key",
        404 => "`model_not_found` or `not_found`",
        408 => "`request_timeout`: the request did not arrive in time; the connection closes",
        413 => "`payload_too_large`: the body is over `--max-body-bytes`",
        415 => "`unsupported_media_type`: the body is not `application/json`",
        431 => "`headers_too_large`: the request line and headers are over the limits",
        500 => "`internal`: a fault of the server; the client gets a generic message, the log the cause",
        502 => "`upstream_error`: an upstream provider failed",
        503 => "`overloaded` (retry after `Retry-After` seconds) or `not_ready`",
        504 => "`upstream_timeout`: an upstream provider did not answer in time",
        _ => "An error",
    };
    let mut headers = Map::new();
    match status {
        401 => {
            headers.insert(
                "WWW-Authenticate".into(),
                json!({"description": "`Bearer`",
                "required": true, "schema": {"const": "Bearer"}}),
            );
        }
        503 => {
            // `not_ready` (the route's own 503) comes without it; `overloaded` always has it.
            headers.insert(
                "Retry-After".into(),
                json!({"description": "Seconds to wait",
                "required": !from_route, "schema": {"type": "string", "pattern": "^[0-9]+$"}}),
            );
        }
        _ => {}
    }
    // The server answers a request it could not read before it gives the request an id.
    let answered_by_route = from_route && !SERVER_ERRORS.contains(&status);
    headers.insert(
        "X-Request-ID".into(),
        request_id_header(answered_by_route || status == 401),
    );
    json!({"description": description, "headers": headers,
        "content": {"application/json": {"schema": schema}}})
}

/// One Server-Sent Event; `data` holds JSON matching `data_schema` when there is one, or is
/// `end` on the last event.
fn event_schema(data_schema: Option<&Value>, end: Option<&str>) -> Value {
    let mut data = json!({"type": "string", "description": "The event's data lines, joined"});
    if let Some(schema) = data_schema {
        let json = json!({"contentMediaType": "application/json", "contentSchema": schema});
        match end {
            Some(end) => {
                data["anyOf"] = json!([json, {"const": end, "description": "the last event"}]);
            }
            None => {
                data["contentMediaType"] = json["contentMediaType"].clone();
                data["contentSchema"] = schema.clone();
            }
        }
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
    op["requestBody"]["content"]["application/json"] = media;
    op["responses"]["200"]["content"]["application/json"] = json!({ "schema": response });
    // The model is loaded: its own path never answers `model_not_found`.
    if let Some(responses) = op["responses"].as_object_mut() {
        responses.shift_remove("404");
    }
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
