//! Typed routes: a body type that derives its JSON Schema (with [`schemars`]) is checked
//! against that schema, every mistake listed with its path, and the route's documentation
//! (request and 200 schemas) comes from the handler's types.
//!
//! ```
//! use schemars::JsonSchema;
//! use serde::{Deserialize, Serialize};
//! use tinyserve::{App, Json, Request};
//!
//! #[derive(Deserialize, JsonSchema)]
//! #[serde(deny_unknown_fields)]
//! struct Greet {
//!     #[schemars(length(min = 1, max = 20))]
//!     name: String,
//! }
//!
//! #[derive(Serialize, JsonSchema)]
//! struct Greeting {
//!     text: String,
//! }
//!
//! let app = App::new().post_typed("/greet", |_: &Request, body: Greet| {
//!     Json(Greeting { text: format!("Hello, {}!", body.name) })
//! });
//! let doc = &app.catalog().routes()[0].doc;
//! assert_eq!(doc.request, Some(serde_json::json!({"$ref": "#/components/schemas/Greet"})));
//! ```
//!
//! How a body is read ([`Request::validated_json`], and every typed route):
//! 1. over [`MAX_TYPED_BODY_BYTES`]: 413 `payload_too_large` (the body becomes a
//!    `serde_json::Value` tree first, which takes up to ~36 times the bytes of the text);
//! 2. not JSON: 415 `unsupported_media_type` or 400 `invalid_json`, as [`Request::json`];
//! 3. checked against the type's schema: every mistake, each with its path, in one 400
//!    `invalid_body` ([`Error::invalid_body`]; at most 100 listed);
//! 4. deserialized with serde (a mistake the schema cannot express is reported at `""`).
//!
//! Paths: `""` is the body itself (a missing top-level field is reported there), then
//! `top_k`, `items[1].text`, `labels["two words"]`. A missing field is reported at its parent
//! with the message `missing field "name"`; an unknown field (with
//! `#[serde(deny_unknown_fields)]`) at its own path. Lengths count characters, not bytes.
//! The constraints come from the same declaration as the documentation: schemars'
//! `#[schemars(length(min = 1, max = 1000))]`, `range(min = 0)`, `regex(pattern = r"^\w+$")`,
//! `#[serde(default)]`, doc comments. The keywords checked are listed in `validate.rs`.

mod validate;
mod words;

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use schemars::generate::{Contract, SchemaSettings};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::catalog::RouteDoc;
use crate::{App, Error, FieldError, IntoResponse, Json, Request, Response, Result};
use validate::{Validator, REF_PREFIX};

/// Largest body a typed route (or [`Request::validated_json`]) reads: 1 MiB; larger gets 413.
/// The body is parsed into a `serde_json::Value` tree before it is checked, and that tree
/// takes up to ~36 times the bytes of the text (72 bytes for a 2-byte `0,`), so the limit
/// keeps one request under ~40 MB. Routes that take larger bodies read them with
/// [`Request::json`], which deserializes straight into the type.
pub const MAX_TYPED_BODY_BYTES: usize = 1024 * 1024;

/// The JSON Schema of a type, as the OpenAPI document shows it: `schema` (a `$ref` for a
/// struct or an enum, inline for others) and the component schemas it refers to.
///
/// # Example
/// ```
/// use tinyserve::typed::TypeSchema;
/// let list = TypeSchema::response::<Vec<u8>>();
/// assert_eq!(list.schema["type"], "array");
/// assert!(list.components.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TypeSchema {
    /// The schema; `$ref`s point to `#/components/schemas/NAME`.
    pub schema: Value,
    /// The component schemas it refers to: (name, schema).
    pub components: Vec<(String, Value)>,
}

impl TypeSchema {
    /// `T` as a request body: how it is deserialized (a field with a default is optional).
    pub fn request<T: JsonSchema>() -> TypeSchema {
        TypeSchema::generate::<T>(Contract::Deserialize)
    }

    /// `T` as a response body: how it is serialized.
    pub fn response<T: JsonSchema>() -> TypeSchema {
        TypeSchema::generate::<T>(Contract::Serialize)
    }

    /// A text answer of `media_type`, such as `text/plain`.
    pub fn text(media_type: &str) -> TypeSchema {
        TypeSchema {
            schema: json!({"type": "string", "contentMediaType": media_type}),
            components: Vec::new(),
        }
    }

    fn generate<T: JsonSchema>(contract: Contract) -> TypeSchema {
        let mut generator = SchemaSettings::draft2020_12()
            .with(|settings| {
                settings.definitions_path = "/components/schemas".into();
                settings.meta_schema = None;
                settings.contract = contract;
            })
            .into_generator();
        let schema = generator.subschema_for::<T>().to_value();
        let components = generator.take_definitions(true).into_iter().collect();
        TypeSchema { schema, components }
    }

    /// The schema with `$ref`s followed, for reading its annotations.
    fn resolved(&self) -> &Value {
        let name = self.schema.get("$ref").and_then(Value::as_str);
        let name = name.and_then(|r| r.strip_prefix(REF_PREFIX));
        self.components
            .iter()
            .find(|(n, _)| Some(n.as_str()) == name)
            .map_or(&self.schema, |(_, schema)| schema)
    }
}

/// A handler's return value whose 200 answer has a schema: what a typed route documents as
/// its response. Implemented for [`Json<T>`] (`T: JsonSchema`), `String` and `&'static str`
/// (`text/plain`), [`Response`] (undocumented) and `Result<R, E>` (the schema of `R`; the
/// error is a JSON error with its own status).
///
/// # Example
/// ```
/// use tinyserve::typed::ResponseSchema;
/// use tinyserve::Json;
/// let schema = <tinyserve::Result<Json<Vec<f32>>>>::response_schema();
/// assert_eq!(schema.map(|s| s.schema["type"].clone()), Some("array".into()));
/// ```
pub trait ResponseSchema: IntoResponse {
    /// The 200 body's schema; `None` leaves it undocumented.
    fn response_schema() -> Option<TypeSchema>;
}

impl<T: Serialize + JsonSchema> ResponseSchema for Json<T> {
    fn response_schema() -> Option<TypeSchema> {
        Some(TypeSchema::response::<T>())
    }
}

impl<R: ResponseSchema, E: Into<Error>> ResponseSchema for Result<R, E> {
    fn response_schema() -> Option<TypeSchema> {
        R::response_schema()
    }
}

impl ResponseSchema for String {
    fn response_schema() -> Option<TypeSchema> {
        Some(TypeSchema::text("text/plain"))
    }
}

impl ResponseSchema for &'static str {
    fn response_schema() -> Option<TypeSchema> {
        Some(TypeSchema::text("text/plain"))
    }
}

impl ResponseSchema for Response {
    fn response_schema() -> Option<TypeSchema> {
        None
    }
}

/// The validator of `T` as a request body, built once per type and kept.
fn validator<T: JsonSchema + 'static>() -> Result<Arc<Validator>> {
    type Cache = Mutex<HashMap<TypeId, Arc<Validator>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Cache::default);
    if let Some(found) = cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&TypeId::of::<T>())
    {
        return Ok(Arc::clone(found));
    }
    let TypeSchema { schema, components } = TypeSchema::request::<T>();
    let validator = Validator::new(schema, components.into_iter().collect()).map_err(|why| {
        Error::internal(format!(
            "the schema of {}: {why}",
            std::any::type_name::<T>()
        ))
    })?;
    let validator = Arc::new(validator);
    let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
    Ok(Arc::clone(
        cache.entry(TypeId::of::<T>()).or_insert(validator),
    ))
}

/// Reads `req`'s body as a `T` that `validator` checks (the steps of the module docs).
fn read<T: DeserializeOwned>(req: &Request, validator: &Validator) -> Result<T> {
    if req.body().len() > MAX_TYPED_BODY_BYTES {
        return Err(Error::payload_too_large(MAX_TYPED_BODY_BYTES));
    }
    let value: Value = req.json()?;
    let mistakes = validator.validate(&value);
    if !mistakes.is_empty() {
        return Err(Error::invalid_body(mistakes));
    }
    serde_json::from_value(value)
        .map_err(|err| Error::invalid_body(vec![FieldError::new("", err.to_string())]))
}

impl Request {
    /// Reads the body as a `T`, checked against `T`'s JSON Schema first: every mistake, each
    /// with its path, in one 400 `invalid_body` (see [`crate::typed`]). 413 over
    /// [`MAX_TYPED_BODY_BYTES`]; 415 and `invalid_json` as [`Request::json`]. A type whose
    /// `pattern` is not a valid regex gives a 500.
    ///
    /// # Example
    /// ```
    /// use schemars::JsonSchema;
    /// use serde::Deserialize;
    /// use tinyserve::Request;
    ///
    /// #[derive(Debug, Deserialize, JsonSchema)]
    /// #[serde(deny_unknown_fields)]
    /// struct Query {
    ///     #[schemars(range(min = 1, max = 100))]
    ///     top_k: u32,
    /// }
    ///
    /// let req = Request::new("POST", "/").with_body(br#"{"top_k": 0, "extra": 1}"#.to_vec());
    /// let err = req.validated_json::<Query>().unwrap_err();
    /// let paths: Vec<&str> = err.field_errors().iter().map(|e| e.path.as_str()).collect();
    /// assert_eq!(paths, ["top_k", "extra"]);
    /// ```
    pub fn validated_json<T: DeserializeOwned + JsonSchema + 'static>(&self) -> Result<T> {
        read(self, validator::<T>()?.as_ref())
    }
}

// Typed routes. `App` itself lives in app.rs; these only register a route and its docs.
impl App {
    /// Registers a typed `POST` handler: it gets the body as a `B`, read as
    /// [`Request::validated_json`] does (a body with mistakes never reaches it), and the
    /// route's documentation has `B`'s schema as the request and `R`'s as the 200 answer
    /// ([`ResponseSchema`]), with no [`RouteDoc`] to write. A `#[schemars(example = ...)]` on
    /// `B` becomes the docs page's example request. [`App::document`] may still add a summary
    /// and error statuses: the schemas stay.
    ///
    /// # Panics
    /// When `B`'s schema has a `pattern` that is not a valid regex: a fault of the program,
    /// reported when the route is registered rather than on the first request.
    ///
    /// # Example
    /// ```no_run
    /// use schemars::JsonSchema;
    /// use serde::{Deserialize, Serialize};
    /// use tinyserve::{pages, App, Json, Request};
    ///
    /// #[derive(Deserialize, JsonSchema)]
    /// struct Sum { a: f64, b: f64 }
    ///
    /// #[derive(Serialize, JsonSchema)]
    /// struct Total { sum: f64 }
    ///
    /// let app = App::new().post_typed("/sum", |_: &Request, Sum { a, b }| Json(Total { sum: a + b }));
    /// pages::mount_openapi(app).run("127.0.0.1:8000")?; // /docs shows both schemas
    /// # Ok::<(), tinyserve::Error>(())
    /// ```
    pub fn post_typed<B, R, F>(self, pattern: &str, handler: F) -> App
    where
        B: DeserializeOwned + JsonSchema + 'static,
        R: ResponseSchema,
        F: Fn(&Request, B) -> R + Send + Sync + 'static,
    {
        self.route_typed("POST", pattern, handler)
    }

    /// [`App::post_typed`] for any method (`PUT`, `PATCH`...).
    ///
    /// # Panics
    /// As [`App::post_typed`].
    pub fn route_typed<B, R, F>(self, method: &str, pattern: &str, handler: F) -> App
    where
        B: DeserializeOwned + JsonSchema + 'static,
        R: ResponseSchema,
        F: Fn(&Request, B) -> R + Send + Sync + 'static,
    {
        let (handler, doc) = typed_route(method, pattern, handler);
        self.route(method, pattern, handler)
            .document(method, pattern, doc)
    }

    /// Registers a `GET` handler whose 200 schema comes from its return type `R`
    /// ([`ResponseSchema`]), documented with no [`RouteDoc`] to write.
    ///
    /// # Example
    /// ```
    /// use tinyserve::{App, Json};
    /// let app = App::new().get_typed("/primes", |_| Json(vec![2u32, 3, 5]));
    /// let doc = &app.catalog().routes()[0].doc;
    /// assert_eq!(doc.response.as_ref().map(|s| &s["type"]), Some(&"array".into()));
    /// ```
    pub fn get_typed<R, F>(self, pattern: &str, handler: F) -> App
    where
        R: ResponseSchema,
        F: Fn(&Request) -> R + Send + Sync + 'static,
    {
        self.route("GET", pattern, handler)
            .document("GET", pattern, get_doc::<R>())
    }
}

/// A typed route's handler (the body read and checked, then `handler`) and documentation.
///
/// # Panics
/// As [`App::post_typed`].
pub(crate) fn typed_route<B, R, F>(
    method: &str,
    pattern: &str,
    handler: F,
) -> (
    impl Fn(&Request) -> Response + Send + Sync + 'static,
    RouteDoc,
)
where
    B: DeserializeOwned + JsonSchema + 'static,
    R: ResponseSchema,
    F: Fn(&Request, B) -> R + Send + Sync + 'static,
{
    let validator = match validator::<B>() {
        Ok(validator) => validator,
        Err(err) => panic!("typed route {method} {pattern}: {}", err.message()),
    };
    let request = TypeSchema {
        schema: validator.root().clone(),
        components: validator.components().clone().into_iter().collect(),
    };
    let doc = typed_doc(Some(request), R::response_schema());
    let handler = move |req: &Request| match read::<B>(req, &validator) {
        Ok(body) => handler(req, body).into_response(),
        Err(err) => Response::from_error(&err),
    };
    (handler, doc)
}

/// The response documentation a `GET` route gets from its return type.
pub(crate) fn get_doc<R: ResponseSchema>() -> RouteDoc {
    typed_doc(None, R::response_schema())
}

/// The documentation a typed route gets from its types. It answers 415 besides the server's
/// statuses when it takes a body.
fn typed_doc(request: Option<TypeSchema>, response: Option<TypeSchema>) -> RouteDoc {
    let mut doc = RouteDoc::default();
    let mut components = Map::new();
    if let Some(mut request) = request {
        let example = request
            .resolved()
            .get("examples")
            .and_then(|e| e.get(0))
            .cloned();
        merge_components(
            &mut components,
            request.components,
            &mut [&mut request.schema],
        );
        doc.request = Some(request.schema);
        doc.request_example = example;
        doc.errors = Some(vec![415]);
    } else {
        doc.errors = Some(Vec::new());
    }
    if let Some(mut response) = response {
        merge_components(
            &mut components,
            response.components,
            &mut [&mut response.schema],
        );
        doc.response = Some(response.schema);
    }
    doc.schemas = components.into_iter().collect();
    doc
}

/// Adds `schemas` to `components`. A name already taken by another schema is renamed
/// (`Item2`, `Item3`...), and the `$ref`s to it in `schemas` and `roots` follow.
pub(crate) fn merge_components(
    components: &mut Map<String, Value>,
    schemas: Vec<(String, Value)>,
    roots: &mut [&mut Value],
) {
    let mut renames: HashMap<String, String> = HashMap::new();
    // A schema is renamed when its name holds another schema, or when it refers to a renamed
    // one (its text then differs); repeat until nothing more changes.
    loop {
        let mut changed = false;
        for (name, schema) in &schemas {
            if renames.contains_key(name) {
                continue;
            }
            let mut text = schema.clone();
            rename_refs(&mut text, &renames);
            if components.get(name).is_some_and(|taken| *taken != text) {
                let free = (2..)
                    .map(|n| format!("{name}{n}"))
                    .find(|candidate| {
                        !components.contains_key(candidate)
                            && !schemas.iter().any(|(n, _)| n == candidate)
                            && !renames.values().any(|v| v == candidate)
                    })
                    .unwrap_or_default();
                renames.insert(name.clone(), free);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    for (name, mut schema) in schemas {
        rename_refs(&mut schema, &renames);
        let name = renames.get(&name).cloned().unwrap_or(name);
        components.entry(name).or_insert(schema);
    }
    for root in roots {
        rename_refs(root, &renames);
    }
}

/// Rewrites `$ref`s to renamed component schemas.
fn rename_refs(value: &mut Value, renames: &HashMap<String, String>) {
    if renames.is_empty() {
        return;
    }
    match value {
        Value::Object(object) => {
            let target = object.get("$ref").and_then(Value::as_str);
            let renamed = target
                .and_then(|r| r.strip_prefix(REF_PREFIX))
                .and_then(|name| renames.get(name));
            if let Some(new) = renamed {
                object.insert("$ref".into(), Value::String(format!("{REF_PREFIX}{new}")));
            }
            object.values_mut().for_each(|v| rename_refs(v, renames));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rename_refs(v, renames)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        #[schemars(length(min = 1, max = 5))]
        text: String,
        #[serde(default)]
        #[schemars(range(min = 0.0))]
        weight: f64,
        tag: Option<u8>,
    }

    #[derive(Debug, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        items: Vec<Item>,
        #[schemars(range(min = 1, max = 100))]
        top_k: u32,
    }

    /// Any scalar, the edge cases of the fields' types among them.
    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            prop_oneof![
                Just(-1i64),
                Just(0),
                Just(1),
                Just(100),
                Just(101),
                Just(255),
                Just(256)
            ]
            .prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            prop_oneof![Just(-0.5f64), Just(1.0), Just(1.5), Just(1e300)].prop_map(Value::from),
            "\\PC{0,7}".prop_map(Value::from),
        ]
    }

    /// Bodies near the shape of `Body`: each field present or not, of the right kind or not.
    fn near_body() -> impl Strategy<Value = Value> {
        let item = (
            proptest::option::of(scalar()),
            proptest::option::of(scalar()),
            proptest::option::of(scalar()),
            any::<bool>(),
        )
            .prop_map(|(text, weight, tag, extra)| {
                let mut item = Map::new();
                for (name, value) in [("text", text), ("weight", weight), ("tag", tag)] {
                    if let Some(value) = value {
                        item.insert(name.into(), value);
                    }
                }
                if extra {
                    item.insert("extra".into(), Value::Null);
                }
                Value::Object(item)
            });
        (
            proptest::collection::vec(item, 0..4),
            proptest::option::of(scalar()),
        )
            .prop_map(|(items, top_k)| {
                let mut body = json!({ "items": items });
                if let Some(top_k) = top_k {
                    body["top_k"] = top_k;
                }
                body
            })
    }

    proptest! {
        /// The check never panics, and what it lets through serde reads: a body never gets
        /// past the check only to fail in serde (which would name no path).
        #[test]
        fn what_the_check_accepts_serde_reads(body in near_body()) {
            let validator = validator::<Body>().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mistakes = validator.validate(&body);
            let read = serde_json::from_value::<Body>(body.clone());
            prop_assert!(
                !mistakes.is_empty() || read.is_ok(),
                "{body} passed the check, then serde said {:?}", read.err()
            );
            prop_assert!(
                read.is_ok() || !mistakes.is_empty(),
                "serde refused {body} without a mistake from the check"
            );
        }
    }

    #[derive(Debug, Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Tree {
        name: String,
        children: Vec<Tree>,
    }

    #[test]
    fn a_recursive_type_is_checked_through_its_ref() {
        let body = br#"{"name": "a", "children": [{"name": "b", "children": [{"name": 1}]}]}"#;
        let req = Request::new("POST", "/").with_body(body.to_vec());
        let err = req.validated_json::<Tree>().err();
        let paths: Vec<(String, String)> = err.map_or(vec![], |e| {
            e.field_errors()
                .iter()
                .map(|m| (m.path.clone(), m.message.clone()))
                .collect()
        });
        assert_eq!(
            paths,
            [
                (
                    "children[0].children[0].name",
                    "expected a string, got an integer"
                ),
                ("children[0].children[0]", "missing field \"children\""),
            ]
            .map(|(p, m)| (p.to_string(), m.to_string()))
        );
        let schema = TypeSchema::request::<Tree>();
        assert_eq!(schema.schema, json!({"$ref": "#/components/schemas/Tree"}));
        assert_eq!(
            schema.components[0].1["properties"]["children"]["items"]["$ref"],
            "#/components/schemas/Tree"
        );
    }

    #[test]
    fn clashing_component_names_are_renamed_with_their_refs() {
        let mut components = Map::new();
        components.insert("Error".into(), json!({"type": "object"}));
        components.insert("Item".into(), json!({"type": "string"}));
        let schemas = vec![
            ("Item".to_string(), json!({"type": "integer"})),
            (
                "List".to_string(),
                json!({"items": {"$ref": "#/components/schemas/Item"}}),
            ),
            ("Error".to_string(), json!({"type": "object"})),
        ];
        let mut root = json!({"$ref": "#/components/schemas/List"});
        merge_components(&mut components, schemas, &mut [&mut root]);
        assert_eq!(components["Item2"], json!({"type": "integer"}));
        assert_eq!(components["Item"], json!({"type": "string"}), "kept");
        assert_eq!(
            components["List"]["items"]["$ref"],
            "#/components/schemas/Item2"
        );
        assert!(
            !components.contains_key("Error2"),
            "the same schema is shared"
        );
        assert_eq!(root["$ref"], "#/components/schemas/List");

        // A schema that refers to a renamed one is itself renamed when its name is taken.
        let schemas = vec![
            ("Item".to_string(), json!({"type": "boolean"})),
            (
                "List".to_string(),
                json!({"items": {"$ref": "#/components/schemas/Item"}}),
            ),
        ];
        let mut root = json!({"$ref": "#/components/schemas/List"});
        merge_components(&mut components, schemas, &mut [&mut root]);
        assert_eq!(components["Item3"], json!({"type": "boolean"}));
        assert_eq!(root["$ref"], "#/components/schemas/List2");
        assert_eq!(
            components["List2"]["items"]["$ref"],
            "#/components/schemas/Item3"
        );
    }
}
