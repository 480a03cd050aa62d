//! What the app's routes are and what their documentation says: the source of the OpenAPI
//! document. The catalog is shared, so a docs route registered early still sees routes
//! registered after it.

use std::sync::{Arc, RwLock};

use serde_json::Value;

/// The documentation of one route.
///
/// # Example
/// ```
/// use serde_json::json;
/// use tinyserve::{App, RouteDoc};
/// let app = App::new()
///     .post("/echo", |req| req.json::<serde_json::Value>())
///     .document("POST", "/echo", RouteDoc::new("Echo a JSON value")
///         .with_request(json!({"type": "object"}))
///         .with_response(json!({"type": "object"})));
/// assert_eq!(app.catalog().routes()[0].doc.summary, "Echo a JSON value");
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct RouteDoc {
    /// One line.
    pub summary: String,
    /// Longer text (Markdown).
    pub description: String,
    /// Groups in the docs page.
    pub tags: Vec<String>,
    /// JSON Schema of the JSON request body, if it takes one.
    pub request: Option<Value>,
    /// A valid example request body.
    pub request_example: Option<Value>,
    /// JSON Schema of the 200 JSON response.
    pub response: Option<Value>,
    /// The 200 response is `text/event-stream`; `response` then describes one event's data.
    pub streaming: bool,
    /// Left out of the OpenAPI document.
    pub hidden: bool,
}

impl RouteDoc {
    /// Documentation with a summary.
    pub fn new(summary: impl Into<String>) -> RouteDoc {
        RouteDoc {
            summary: summary.into(),
            ..RouteDoc::default()
        }
    }

    /// Sets the longer description.
    pub fn with_description(mut self, text: impl Into<String>) -> RouteDoc {
        self.description = text.into();
        self
    }

    /// Adds a tag.
    pub fn with_tag(mut self, tag: impl Into<String>) -> RouteDoc {
        self.tags.push(tag.into());
        self
    }

    /// Sets the request body's JSON Schema.
    pub fn with_request(mut self, schema: Value) -> RouteDoc {
        self.request = Some(schema);
        self
    }

    /// Sets a valid example request body.
    pub fn with_example(mut self, example: Value) -> RouteDoc {
        self.request_example = Some(example);
        self
    }

    /// Sets the 200 response's JSON Schema.
    pub fn with_response(mut self, schema: Value) -> RouteDoc {
        self.response = Some(schema);
        self
    }

    /// Marks the 200 response as a Server-Sent Events stream.
    pub fn streaming(mut self) -> RouteDoc {
        self.streaming = true;
        self
    }

    /// Leaves the route out of the OpenAPI document.
    pub fn hidden(mut self) -> RouteDoc {
        self.hidden = true;
        self
    }
}

/// A registered route and its documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteInfo {
    /// Upper-case method.
    pub method: String,
    /// The pattern as registered (`/models/<name>/predict`).
    pub pattern: String,
    /// What the docs say about it.
    pub doc: RouteDoc,
}

/// The app's routes, shared between the app and the handlers that document it.
#[derive(Debug, Clone, Default)]
pub struct RouteCatalog(Arc<RwLock<Vec<RouteInfo>>>);

impl RouteCatalog {
    /// Every route, in registration order.
    pub fn routes(&self) -> Vec<RouteInfo> {
        self.0.read().map(|r| r.clone()).unwrap_or_default()
    }

    pub(crate) fn add(&self, method: &str, pattern: &str) {
        if let Ok(mut routes) = self.0.write() {
            routes.push(RouteInfo {
                method: method.to_ascii_uppercase(),
                pattern: pattern.to_string(),
                doc: RouteDoc::default(),
            });
        }
    }

    pub(crate) fn document(&self, method: &str, pattern: &str, doc: RouteDoc) {
        if let Ok(mut routes) = self.0.write() {
            let method = method.to_ascii_uppercase();
            for route in routes.iter_mut() {
                if route.method == method && route.pattern == pattern {
                    route.doc = doc.clone();
                }
            }
        }
    }
}
