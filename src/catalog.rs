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
/// use tinyserve::catalog::RouteDoc;
/// use tinyserve::App;
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
    /// More request media types besides JSON: (media type, schema).
    pub request_contents: Vec<(String, Value)>,
    /// Header parameters: (name, OpenAPI parameter object).
    pub request_headers: Vec<(String, Value)>,
    /// JSON Schema of the 200 JSON response.
    pub response: Option<Value>,
    /// The 200 response is `text/event-stream`; `response` then describes one event's data.
    pub streaming: bool,
    /// JSON Schema of one event's data when it differs from `response` (say, a stream that may
    /// also carry an error event).
    pub event: Option<Value>,
    /// The data of a stream's last event when it is this text rather than JSON (OpenAI's
    /// `[DONE]`).
    pub stream_end: Option<String>,
    /// More 200 media types besides JSON: (media type, schema).
    pub contents: Vec<(String, Value)>,
    /// Headers of the 200 response: (name, OpenAPI header object).
    pub response_headers: Vec<(String, Value)>,
    /// The error statuses the handler itself answers, besides those the server answers on any
    /// route (400, 408, 413, 431, 500, 503, and 401 with an API key). `None`: not declared,
    /// and the document allows any `4XX` and `5XX`.
    pub errors: Option<Vec<u16>>,
    /// Left out of the OpenAPI document.
    pub hidden: bool,
    /// Component schemas that `request` and `response` refer to as
    /// `#/components/schemas/NAME`: (name, schema). A typed route fills them from its types
    /// ([`crate::typed`]); the document renames one whose name another route's schema holds.
    pub schemas: Vec<(String, Value)>,
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
    pub fn with_streaming(mut self) -> RouteDoc {
        self.streaming = true;
        self
    }

    /// Adds a request media type besides JSON, such as `application/octet-stream`.
    pub fn with_request_content(
        mut self,
        media_type: impl Into<String>,
        schema: Value,
    ) -> RouteDoc {
        self.request_contents.push((media_type.into(), schema));
        self
    }

    /// Adds an optional request header the route reads.
    pub fn with_request_header(
        mut self,
        name: impl Into<String>,
        description: &str,
        schema: Value,
    ) -> RouteDoc {
        let name = name.into();
        let parameter = serde_json::json!({"name": name, "in": "header", "required": false,
            "description": description, "schema": schema});
        self.request_headers.push((name, parameter));
        self
    }

    /// Sets the JSON Schema of one event's data, when it differs from the 200 JSON response.
    pub fn with_event(mut self, schema: Value) -> RouteDoc {
        self.event = Some(schema);
        self
    }

    /// Declares the stream's last event: its data is `text`, not JSON.
    pub fn with_stream_end(mut self, text: impl Into<String>) -> RouteDoc {
        self.stream_end = Some(text.into());
        self
    }

    /// Adds a 200 media type besides JSON, such as `application/octet-stream`.
    pub fn with_content(mut self, media_type: impl Into<String>, schema: Value) -> RouteDoc {
        self.contents.push((media_type.into(), schema));
        self
    }

    /// Adds a header of the 200 response; `required` when every 200 carries it.
    pub fn with_response_header(
        mut self,
        name: impl Into<String>,
        description: &str,
        schema: Value,
        required: bool,
    ) -> RouteDoc {
        let header =
            serde_json::json!({"description": description, "required": required, "schema": schema});
        self.response_headers.push((name.into(), header));
        self
    }

    /// Declares the error statuses the handler answers (see [`RouteDoc::errors`]): the
    /// document then lists exactly those and the server's own, each with its error body.
    ///
    /// ```
    /// use tinyserve::catalog::RouteDoc;
    /// let doc = RouteDoc::new("Look a thing up").with_errors(&[404]);
    /// assert_eq!(doc.errors, Some(vec![404]));
    /// ```
    pub fn with_errors(mut self, statuses: &[u16]) -> RouteDoc {
        self.errors = Some(statuses.to_vec());
        self
    }

    /// Leaves the route out of the OpenAPI document.
    pub fn with_hidden(mut self) -> RouteDoc {
        self.hidden = true;
        self
    }
}

impl RouteDoc {
    /// This documentation, with the schemas and error statuses of `earlier` where it has none.
    fn over(mut self, earlier: &RouteDoc) -> RouteDoc {
        if self.request.is_none() {
            self.request = earlier.request.clone();
            self.request_example = self.request_example.or(earlier.request_example.clone());
        }
        if self.response.is_none() {
            self.response = earlier.response.clone();
        }
        if self.schemas.is_empty() {
            self.schemas = earlier.schemas.clone();
        }
        self.errors = match (self.errors, &earlier.errors) {
            (Some(mut own), Some(before)) => {
                own.extend(before);
                own.sort_unstable();
                own.dedup();
                Some(own)
            }
            (own, before) => own.or(before.clone()),
        };
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
    /// Served without the app's API key: a route of a group
    /// [without the key](crate::Group::without_key).
    pub public: bool,
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
                public: false,
            });
        }
    }

    /// Marks a route as served without the app's API key.
    pub(crate) fn set_public(&self, method: &str, pattern: &str) {
        if let Ok(mut routes) = self.0.write() {
            let method = method.to_ascii_uppercase();
            for route in routes.iter_mut() {
                if route.method == method && route.pattern == pattern {
                    route.public = true;
                }
            }
        }
    }

    /// Sets a route's documentation. What `doc` leaves unset keeps what the route had (a typed
    /// route's schemas, from its types); error statuses add to the route's.
    pub(crate) fn document(&self, method: &str, pattern: &str, doc: RouteDoc) {
        if let Ok(mut routes) = self.0.write() {
            let method = method.to_ascii_uppercase();
            for route in routes.iter_mut() {
                if route.method == method && route.pattern == pattern {
                    route.doc = doc.clone().over(&route.doc);
                }
            }
        }
    }
}
