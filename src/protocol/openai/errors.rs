//! Errors in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`: the one place
//! the OpenAI routes turn an [`Error`] into a body, for a response or a stream's last event.
//!
//! The status, the error's headers and the logging of a 500 are those of every other route;
//! only the body differs (the rest of the server answers `{"error", "code"}`).

use serde_json::{json, Value};

use crate::{Error, ErrorKind, Response};

/// The body of `err` in OpenAI's shape (a 500 says only the generic message).
pub(super) fn error_body(err: &Error) -> Value {
    let kind = match err.status() {
        401 => "authentication_error",
        404 => "invalid_request_error",
        429 | 503 => "server_overloaded",
        500.. => "server_error",
        _ => "invalid_request_error",
    };
    json!({"error": {"message": err.public_message(), "type": kind, "param": null, "code": err.kind().code()}})
}

/// Logs a 500's cause chain (the client gets only the generic message).
pub(super) fn log_if_internal(err: &Error) {
    if err.kind() == ErrorKind::Internal {
        crate::log::error(&err.chain());
    }
}

/// The response, or the error as a response with the error's status and headers and an
/// OpenAI-shaped body.
pub(in crate::protocol) fn with_openai_errors(result: Result<Response, Error>) -> Response {
    result.unwrap_or_else(|err| Response::from_error_with_body(&err, error_body(&err)))
}
