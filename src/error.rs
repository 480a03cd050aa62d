//! One error type for the crate, mapped to an HTTP status and a JSON body.

use std::fmt;

use crate::Headers;

/// What went wrong, as a stable category. Each kind has one HTTP status and one `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request is malformed (bad query, bad header value, bad HTTP). 400.
    BadRequest,
    /// The body is not valid JSON. 400.
    InvalidJson,
    /// The JSON is well-formed but does not have the expected shape. 400.
    InvalidBody,
    /// The input does not fit the model's signature, or the model rejected its values at run
    /// time (an index out of range, a division by zero). 400.
    InvalidInput,
    /// A missing or wrong API key. 401, with `WWW-Authenticate: Bearer`.
    Unauthorized,
    /// No route matches the path. 404.
    NotFound,
    /// The named model is not loaded. 404.
    ModelNotFound,
    /// A route matches the path but not the method. 405, with `Allow`.
    MethodNotAllowed,
    /// The client took too long to send its request. 408.
    RequestTimeout,
    /// The body is larger than the configured limit. 413.
    PayloadTooLarge,
    /// The request line or headers are too large. 431.
    HeadersTooLarge,
    /// The route speaks WebSocket only: a request without `Upgrade: websocket`. 426.
    UpgradeRequired,
    /// The request is understood but refused (a WebSocket from an origin not allowed). 403.
    Forbidden,
    /// The body's content type is not one the route accepts. 415.
    UnsupportedMediaType,
    /// The server is at capacity. 503, with `Retry-After`.
    Overloaded,
    /// The server is not ready (models loading, or shutting down). 503.
    NotReady,
    /// A bug or a runtime failure; the client sees a generic message. 500.
    Internal,
    /// An upstream service failed: refused, reset, or answered with an error status. 502.
    BadGateway,
    /// An upstream service did not answer before the deadline. 504.
    GatewayTimeout,
}

impl ErrorKind {
    /// The HTTP status for this kind.
    pub fn status(self) -> u16 {
        match self {
            // 400 for every input mistake, as Triton, KServe and OpenAI answer, so that their
            // official clients raise their bad-request error; the `code` tells them apart.
            ErrorKind::BadRequest
            | ErrorKind::InvalidJson
            | ErrorKind::InvalidBody
            | ErrorKind::InvalidInput => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::NotFound | ErrorKind::ModelNotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::RequestTimeout => 408,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::HeadersTooLarge => 431,
            ErrorKind::UpgradeRequired => 426,
            ErrorKind::Forbidden => 403,
            ErrorKind::Overloaded | ErrorKind::NotReady => 503,
            ErrorKind::Internal => 500,
            ErrorKind::BadGateway => 502,
            ErrorKind::GatewayTimeout => 504,
        }
    }

    /// The stable snake_case code sent in the JSON body.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::InvalidJson => "invalid_json",
            ErrorKind::InvalidBody => "invalid_body",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::NotFound => "not_found",
            ErrorKind::ModelNotFound => "model_not_found",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::RequestTimeout => "request_timeout",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::HeadersTooLarge => "headers_too_large",
            ErrorKind::UpgradeRequired => "upgrade_required",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::UnsupportedMediaType => "unsupported_media_type",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::NotReady => "not_ready",
            ErrorKind::Internal => "internal",
            ErrorKind::BadGateway => "upstream_error",
            ErrorKind::GatewayTimeout => "upstream_timeout",
        }
    }
}

/// The crate's error: a kind, a message for the client, and for 5xx the cause for the log.
///
/// # Example
/// ```
/// use tinyserve::{Error, ErrorKind};
/// let err = Error::invalid_input(r#"input "x": expected shape [-1, 4], got [1, 3]"#);
/// assert_eq!(err.kind(), ErrorKind::InvalidInput);
/// assert_eq!(err.status(), 400);
/// assert_eq!(err.to_json()["code"], "invalid_input");
/// ```
pub struct Error(Box<Inner>);

struct Inner {
    kind: ErrorKind,
    message: String,
    headers: Headers,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
    /// Every mistake of an `invalid_body`, each at its path (typed bodies).
    fields: Vec<FieldError>,
}

/// One mistake in a JSON body: where it is and what is wrong, as listed in the `errors` of an
/// `invalid_body` answer (see [`Error::invalid_body`]).
///
/// `path` names the value: `""` for the body itself, `top_k`, `items[1].text`, and a key
/// that is not an identifier in brackets (`labels["two words"]`). A missing field is reported
/// at the object that lacks it, an unknown field at its own path.
///
/// # Example
/// ```
/// use tinyserve::FieldError;
/// let mistake = FieldError::new("items[1].text", "expected at least 1 character, got 0");
/// assert_eq!(mistake.path, "items[1].text");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// Where: `""` for the whole body, else `name`, `list[2]`, `outer.inner`.
    pub path: String,
    /// What: lowercase, expected versus got.
    pub message: String,
}

impl FieldError {
    /// A mistake at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` with a message shown to the client (for 4xx) or logged (for 5xx).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error(Box::new(Inner {
            kind,
            message: message.into(),
            headers: Headers::new(),
            source: None,
            fields: Vec::new(),
        }))
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::BadRequest, message)
    }

    /// 404: no route for this path.
    pub fn not_found(path: &str) -> Error {
        Error::new(ErrorKind::NotFound, format!("no route for {path}"))
    }

    /// 404: the model is not loaded.
    pub fn model_not_found(name: &str) -> Error {
        Error::new(
            ErrorKind::ModelNotFound,
            format!("model \"{name}\" is not loaded"),
        )
    }

    /// 405 with an `Allow` header listing the methods the path accepts.
    pub fn method_not_allowed(method: &str, path: &str, allow: &[&str]) -> Error {
        let allow = allow.join(", ");
        Error::new(
            ErrorKind::MethodNotAllowed,
            format!("method {method} is not allowed on {path}; allowed: {allow}"),
        )
        .with_header("Allow", allow)
    }

    /// 413: the body is larger than `limit` bytes.
    pub fn payload_too_large(limit: usize) -> Error {
        Error::new(
            ErrorKind::PayloadTooLarge,
            format!("body is larger than the limit of {limit} bytes"),
        )
    }

    /// 415: the content type is not JSON.
    pub fn unsupported_media_type(expected: &str, got: &str) -> Error {
        Error::new(
            ErrorKind::UnsupportedMediaType,
            format!("expected content type {expected}, got {got:?}"),
        )
    }

    /// 400: the JSON is valid but does not fit the expected shape or the model's signature.
    pub fn invalid_input(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidInput, message)
    }

    /// 400 `invalid_body` listing every mistake of a JSON body, each at its path; the answer is
    /// `{"error": "...", "code": "invalid_body", "errors": [{"path", "message"}, ...]}`.
    ///
    /// # Example
    /// ```
    /// use tinyserve::{Error, FieldError};
    /// let err = Error::invalid_body(vec![
    ///     FieldError::new("", "missing field \"top_k\""),
    ///     FieldError::new("extra", "unknown field \"extra\""),
    /// ]);
    /// assert_eq!(err.status(), 400);
    /// let body = err.to_json();
    /// assert_eq!(body["code"], "invalid_body");
    /// assert_eq!(body["errors"][1]["path"], "extra");
    /// ```
    pub fn invalid_body(fields: Vec<FieldError>) -> Error {
        let message = match fields.as_slice() {
            [only] if only.path.is_empty() => format!("invalid body: {}", only.message),
            [only] => format!("invalid body: {}: {}", only.path, only.message),
            _ => format!("invalid body: {} mistakes", fields.len()),
        };
        let mut err = Error::new(ErrorKind::InvalidBody, message);
        err.0.fields = fields;
        err
    }

    /// The mistakes an [`Error::invalid_body`] lists (empty for other errors).
    pub fn field_errors(&self) -> &[FieldError] {
        &self.0.fields
    }

    /// 503 with `Retry-After`: the server is at capacity.
    pub fn overloaded(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Overloaded, message).with_header("Retry-After", "1")
    }

    /// 500: keeps `cause` for the log; the client only sees a generic message.
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
        let cause = cause.into();
        let mut err = Error::new(ErrorKind::Internal, cause.to_string());
        err.0.source = Some(cause);
        err
    }

    /// The error for a body that failed to parse as JSON: `invalid_json` when it is not JSON at
    /// all, `invalid_body` when it is JSON of the wrong shape (serde_json's category decides);
    /// both are 400.
    pub fn from_json(err: serde_json::Error) -> Error {
        use serde_json::error::Category;
        let kind = match err.classify() {
            Category::Data => ErrorKind::InvalidBody,
            Category::Io | Category::Syntax | Category::Eof => ErrorKind::InvalidJson,
        };
        Error::new(kind, format!("invalid JSON body: {err}"))
    }

    /// Keeps `source` as the cause, reported in the log.
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Error {
        self.0.source = Some(source.into());
        self
    }

    /// The category of the error.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.0.kind.status()
    }

    /// The message, as logged. For 5xx the client sees [`Error::public_message`] instead.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The message the client sees: the real one for 4xx, a generic one for 5xx internals.
    pub fn public_message(&self) -> &str {
        match self.0.kind {
            ErrorKind::Internal => "internal server error",
            _ => &self.0.message,
        }
    }

    /// Extra headers the response must carry.
    pub fn headers(&self) -> &Headers {
        &self.0.headers
    }

    /// The headers of this error's JSON answer: `Content-Type: application/json`, then the
    /// error's own ([`Error::headers`]), which replace any of the same name. The one list both
    /// [`crate::Response::from_error`] and the transport's own refusals (400, 408, 413, 431,
    /// 503 before a request exists) write.
    pub(crate) fn answer_headers(&self) -> Headers {
        let mut headers = Headers::from_iter([("Content-Type", "application/json")]);
        for (name, _) in self.headers() {
            headers.remove(name);
        }
        headers.extend(self.headers());
        headers
    }

    /// The JSON body: `{"error": "<message>", "code": "<code>"}`, and `"errors"` with each
    /// mistake when there are some ([`Error::invalid_body`]).
    pub fn to_json(&self) -> serde_json::Value {
        let mut body =
            serde_json::json!({"error": self.public_message(), "code": self.0.kind.code()});
        if !self.0.fields.is_empty() {
            body["errors"] = serde_json::json!(self.0.fields);
        }
        body
    }

    /// The full cause chain on one line, for the log.
    pub fn chain(&self) -> String {
        let mut out = self.0.message.clone();
        let mut next = std::error::Error::source(self);
        while let Some(cause) = next {
            let text = cause.to_string();
            if !out.ends_with(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            next = cause.source();
        }
        out
    }
}

/// The cause chain on one line, in words: what `fn main() -> tinyserve::Result<()>` prints
/// when it returns an error (`Error: <chain>`). `{:#?}` shows the fields.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !f.alternate() {
            return f.write_str(&self.chain());
        }
        f.debug_struct("Error")
            .field("kind", &self.0.kind)
            .field("message", &self.0.message)
            .field("source", &self.0.source)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Error {
        Error::from_json(err)
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Error {
        Error::internal(err)
    }
}

crate::headers::header_modifiers!(
    Error,
    "the error's response (such as `Allow` or `Retry-After`)",
    |s| s.0.headers
);

#[cfg(test)]
mod tests {
    use super::*;

    /// `fn main() -> tinyserve::Result<()>` prints `Error: {:?}`: one line in words.
    #[test]
    fn debug_is_the_cause_chain_on_one_line() {
        let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = busy.local_addr().expect("addr");
        let err = crate::App::new()
            .bind(addr)
            .err()
            .expect("the port is taken");
        let printed = format!("{err:?}");
        assert!(
            !printed.contains('\n') && !printed.contains("Error {"),
            "{printed}"
        );
        assert!(
            printed.starts_with(&format!("cannot listen on {addr}: ")),
            "{printed}"
        );
        assert!(printed.to_lowercase().contains("in use"), "{printed}");
        assert!(format!("{err:#?}").contains("kind"));
    }

    #[test]
    fn error_stays_one_pointer_wide() {
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
    }

    #[test]
    fn internal_errors_hide_their_cause_from_the_client() {
        let err = Error::internal(std::io::Error::other("disk on fire"));
        assert_eq!(err.to_json()["error"], "internal server error");
        assert!(err.chain().contains("disk on fire"));
    }

    #[test]
    fn json_syntax_and_wrong_shape_are_400_with_their_own_codes() {
        let syntax = serde_json::from_str::<Vec<u32>>("[1,").map_err(Error::from_json);
        let syntax = syntax.err().map(|e| (e.status(), e.kind().code()));
        assert_eq!(syntax, Some((400, "invalid_json")));
        let shape = serde_json::from_str::<u32>("\"x\"").map_err(Error::from_json);
        let shape = shape.err().map(|e| (e.status(), e.kind().code()));
        assert_eq!(shape, Some((400, "invalid_body")));
    }
}
