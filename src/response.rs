//! Responses, and the conversions that let a handler return a string, JSON, a status with a
//! body, or a `Result`.

use serde::Serialize;

use crate::stream::{BodySender, Disconnected, Stream};
use crate::websocket::Upgrade;
use crate::{Error, Headers};

/// An HTTP response: status, headers and a body.
///
/// # Example
/// ```
/// use tinyserve::Response;
/// let res = Response::json(&serde_json::json!({"ok": true})).with_status(201);
/// assert_eq!(res.status(), 201);
/// assert_eq!(res.header("Content-Type"), Some("application/json"));
/// ```
#[derive(Debug)]
pub struct Response {
    status: u16,
    headers: Headers,
    body: Body,
    /// The error's code when the response was built from an [`Error`]: what error handlers
    /// ([`crate::App::on_error`]) select by.
    error_code: Option<&'static str>,
    /// The model the request was about, for the access log's `model` field.
    model: Option<String>,
}

/// A body in memory, or one produced piece by piece.
#[derive(Debug)]
pub(crate) enum Body {
    Full(Vec<u8>),
    Stream(Stream),
    /// `101 Switching Protocols`: the connection is handed to a WebSocket handler.
    Upgrade(Box<Upgrade>),
}

impl Response {
    /// A response with `status`, a content type and a body.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: Headers::from_iter([("Content-Type", content_type)]),
            body: Body::Full(body.into()),
            error_code: None,
            model: None,
        }
    }

    /// A 200 response sent with chunked transfer encoding, whose body `produce` writes piece by
    /// piece from a thread of its own (holding the request's worker turn). Each [`BodySender::send`] reaches the client at once; once the
    /// client has gone, `send` fails with [`Disconnected`] so the producer can stop.
    ///
    /// # Example
    /// ```
    /// use tinyserve::Response;
    /// let res = Response::stream("text/plain; charset=utf-8", |body| {
    ///     for i in 0..3 {
    ///         body.send(format!("line {i}\n"))?;
    ///     }
    ///     Ok(())
    /// });
    /// assert_eq!(res.status(), 200);
    /// ```
    pub fn stream<F>(content_type: &str, produce: F) -> Response
    where
        F: FnOnce(&mut BodySender) -> Result<(), Disconnected> + Send + 'static,
    {
        Response::from_stream(200, content_type, Stream::new(Box::new(produce)))
    }

    pub(crate) fn from_stream(status: u16, content_type: &str, stream: Stream) -> Response {
        Response {
            status,
            headers: Headers::from_iter([("Content-Type", content_type)]),
            body: Body::Stream(stream),
            error_code: None,
            model: None,
        }
    }

    /// A `101 Switching Protocols` answer whose connection goes to a WebSocket handler.
    pub(crate) fn upgrade(headers: Headers, upgrade: Upgrade) -> Response {
        Response {
            status: 101,
            headers,
            body: Body::Upgrade(Box::new(upgrade)),
            error_code: None,
            model: None,
        }
    }

    /// Whether the body is streamed.
    pub fn is_stream(&self) -> bool {
        matches!(self.body, Body::Stream(_))
    }

    /// 200 `text/plain; charset=utf-8`.
    pub fn text(body: impl Into<String>) -> Response {
        Response::new(200, "text/plain; charset=utf-8", body.into())
    }

    /// 200 `text/html; charset=utf-8`.
    pub fn html(body: impl Into<String>) -> Response {
        Response::new(200, "text/html; charset=utf-8", body.into())
    }

    /// 200 `application/json`. A value that cannot be serialized gives a logged 500.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Response {
        match serde_json::to_vec(value) {
            Ok(body) => Response::new(200, "application/json", body),
            Err(err) => Response::from_error(&Error::internal(err)),
        }
    }

    /// A response with `status` and no body.
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Headers::new(),
            body: Body::Full(Vec::new()),
            error_code: None,
            model: None,
        }
    }

    /// The JSON error response for `err`: its status, its headers, `{"error", "code"}` (for a
    /// 500, a generic message; the cause chain goes to the log). Every error the server
    /// answers goes through here.
    ///
    /// # Example
    /// ```
    /// use tinyserve::{Error, Response};
    /// let res = Response::from_error(&Error::overloaded("busy"));
    /// assert_eq!(res.status(), 503);
    /// assert_eq!(res.header("Retry-After"), Some("1"));
    /// assert_eq!(res.body(), br#"{"error":"busy","code":"overloaded"}"#);
    /// ```
    pub fn from_error(err: &Error) -> Response {
        Response::from_error_with_body(err, err.to_json())
    }

    /// [`Response::from_error`] with another JSON body, for an API with its own error shape
    /// (OpenAI's `{"error": {"message", "type", ...}}`): the same status and headers, and a
    /// 500's cause logged the same way.
    pub fn from_error_with_body(err: &Error, body: serde_json::Value) -> Response {
        if err.kind() == crate::ErrorKind::Internal {
            crate::log::error(&err.chain());
        }
        let mut res = Response::new(err.status(), "application/json", body.to_string());
        res.headers = err.answer_headers();
        res.error_code = Some(err.kind().code());
        res
    }

    /// Records the model this answer is about: the access log writes it as the field `model`.
    /// A route whose pattern names a model (`/models/<name>/predict`) records it by itself;
    /// a handler that learns the model elsewhere (from the body) records it here.
    ///
    /// # Example
    /// ```
    /// use tinyserve::Response;
    /// let res = Response::text("ok").with_model("iris");
    /// assert_eq!(res.model(), Some("iris"));
    /// ```
    pub fn with_model(mut self, name: impl Into<String>) -> Response {
        self.model = Some(name.into());
        self
    }

    /// The model this answer is about, as recorded by [`Response::with_model`].
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// Replaces the status.
    pub fn with_status(mut self, status: u16) -> Response {
        self.status = status;
        self
    }

    /// The code of the error this response answers (`not_found`, `unauthorized`...), when it
    /// was built from an [`Error`] ([`Response::from_error`]); `None` for any other response,
    /// whatever its status.
    ///
    /// # Example
    /// ```
    /// use tinyserve::{Error, Response};
    /// assert_eq!(Response::from_error(&Error::not_found("/x")).error_code(), Some("not_found"));
    /// assert_eq!(Response::text("gone").with_status(404).error_code(), None);
    /// ```
    pub fn error_code(&self) -> Option<&str> {
        self.error_code
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// All headers, in order.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The body bytes; empty for a streamed body.
    pub fn body(&self) -> &[u8] {
        match &self.body {
            Body::Full(bytes) => bytes,
            Body::Stream(_) | Body::Upgrade(_) => &[],
        }
    }

    pub(crate) fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }

    pub(crate) fn into_parts(self) -> (u16, Headers, Body) {
        (self.status, self.headers, self.body)
    }
}

/// A value serialized as the JSON body of a 200 response.
///
/// # Example
/// ```
/// use tinyserve::{IntoResponse, Json};
/// let res = Json(vec![1, 2, 3]).into_response();
/// assert_eq!(res.body(), b"[1,2,3]");
/// ```
#[derive(Debug, Clone)]
pub struct Json<T>(pub T);

/// Anything a handler may return: converted into a [`Response`].
pub trait IntoResponse {
    /// Builds the response.
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl IntoResponse for &'static str {
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

impl IntoResponse for serde_json::Value {
    fn into_response(self) -> Response {
        Response::json(&self)
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        Response::json(&self.0)
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        Response::from_error(&self)
    }
}

impl<T: IntoResponse> IntoResponse for (u16, T) {
    fn into_response(self) -> Response {
        self.1.into_response().with_status(self.0)
    }
}

impl<T: IntoResponse, E: Into<Error>> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(value) => value.into_response(),
            Err(err) => Response::from_error(&err.into()),
        }
    }
}

crate::headers::header_modifiers!(Response, "this response", |s| s.headers);
