//! [`TestClient`]: requests through the whole app without a socket, as Flask's
//! `app.test_client()` and FastAPI's `TestClient` do.

use serde::de::DeserializeOwned;

use crate::response::Body;
use crate::{App, Error, Headers, Request, Response, Result};

/// Sends requests through an app as the server would (the API key, CORS, before hooks,
/// routing with its 404 and 405, the handler, error handlers, after hooks), on the calling
/// thread and without a socket. A streamed body is read to its end; a `HEAD` answer loses its
/// body as on the wire; a body over [`crate::Settings::max_body_bytes`] gets 413.
///
/// What it does not do is the transport's: parsing bytes, timeouts, worker turns, keep-alive,
/// the access log and metrics. Test those against a real server on port 0.
///
/// # Example
/// ```
/// use serde_json::json;
/// use tinyserve::{App, Request};
///
/// let app = App::new()
///     .get("/hello/<name>", |req| format!("Hello, {}!", req.param("name").unwrap_or("you")))
///     .post("/echo", |req| req.json::<serde_json::Value>());
/// let client = app.test_client();
///
/// let res = client.get("/hello/ada");
/// assert_eq!((res.status(), res.text().as_str()), (200, "Hello, ada!"));
/// assert_eq!(client.get("/nowhere").status(), 404);
/// assert_eq!(client.send(Request::new("DELETE", "/echo")).status(), 405);
/// let res = client.post_json("/echo", &json!({"a": 1}));
/// assert_eq!(res.json::<serde_json::Value>()?, json!({"a": 1}));
/// # Ok::<(), tinyserve::Error>(())
/// ```
pub struct TestClient<'a> {
    app: &'a App,
}

/// The answer to a [`TestClient`] request: status, headers and the whole body.
#[derive(Debug, Clone)]
pub struct TestResponse {
    status: u16,
    headers: Headers,
    body: Vec<u8>,
}

impl App {
    /// A client that sends requests through this app without a socket ([`TestClient`]).
    pub fn test_client(&self) -> TestClient<'_> {
        TestClient { app: self }
    }
}

impl TestClient<'_> {
    /// `GET path` (with an optional `?query`).
    pub fn get(&self, target: &str) -> TestResponse {
        self.send(Request::new("GET", target))
    }

    /// `POST target` with `value` as its JSON body.
    pub fn post_json(&self, target: &str, value: &serde_json::Value) -> TestResponse {
        let req = Request::new("POST", target)
            .with_header("Content-Type", "application/json")
            .with_body(value.to_string().into_bytes());
        self.send(req)
    }

    /// Sends `req` (built with [`Request::new`], [`Request::with_header`],
    /// [`Request::with_body`]) through the app.
    pub fn send(&self, mut req: Request) -> TestResponse {
        let settings = self.app.settings();
        let origin = crate::http::Origin::resolve(None, req.headers(), &settings.trusted_proxies);
        let id = crate::ids::request_id(req.header("X-Request-ID"));
        req.set_context(origin, &settings.root_path, id.clone());
        let head_only = req.method() == "HEAD";
        let too_large = req.body().len() > settings.max_body_bytes;
        let response = match self.app.screen(&req) {
            Some(early) => early,
            None if too_large => {
                Response::from_error(&Error::payload_too_large(settings.max_body_bytes))
            }
            None => self.app.dispatch(req).0,
        };
        let (status, mut headers, body) = response.into_parts();
        headers.append("X-Request-ID", id);
        let body = match body {
            _ if head_only => Vec::new(),
            Body::Full(bytes) => bytes,
            Body::Stream(stream) => crate::stream::collect(stream),
            Body::Upgrade(_) => Vec::new(),
        };
        TestResponse {
            status,
            headers,
            body,
        }
    }
}

impl TestResponse {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// All headers, in order (with the `X-Request-ID` the server adds).
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The whole body; a stream's chunks joined.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(Error::from_json)
    }
}
