//! The built-in hooks, set by [`Settings`]: CORS (a preflight answered on the head, the
//! allowed origin's headers on every answer), the API key (401 on the head) and the access
//! log (one record once the answer is written). The app runs them once per request, in the
//! order of [`crate::hooks`], ahead of its own hooks; the access log last of all.

use std::net::IpAddr;

use crate::http::Written;
use crate::{Error, ErrorKind, Request, Response, Settings};

/// A CORS preflight from an allowed origin, answered 204.
pub(crate) fn preflight(settings: &Settings, req: &Request) -> Option<Response> {
    if req.method() != "OPTIONS" || req.header("Access-Control-Request-Method").is_none() {
        return None;
    }
    let allowed = allowed_origin(settings, req)?;
    let headers = req
        .header("Access-Control-Request-Headers")
        .unwrap_or("Content-Type, Authorization")
        .to_string();
    Some(
        Response::empty(204)
            .with_header("Access-Control-Allow-Origin", allowed)
            .with_header(
                "Access-Control-Allow-Methods",
                "GET, POST, PUT, PATCH, DELETE, OPTIONS",
            )
            .with_header("Access-Control-Allow-Headers", headers)
            .with_header("Access-Control-Max-Age", "600")
            .with_header("Vary", "Origin"),
    )
}

/// 401 when the app has an API key and the request does not carry it; `public` requests
/// (the health probes, a group [without a key](crate::Group::without_key)) pass.
pub(crate) fn key(settings: &Settings, req: &Request, public: bool) -> Option<Response> {
    let key = settings.api_key.as_ref()?;
    // The scheme is case-insensitive (RFC 9110 section 11.1): `bearer` is `Bearer`.
    let presented = req
        .header("Authorization")
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Bearer"))
        .is_some_and(|(_, token)| key.matches(token.trim()));
    if public || presented {
        return None;
    }
    let err = Error::new(ErrorKind::Unauthorized, "missing or invalid API key")
        .with_header("WWW-Authenticate", "Bearer");
    Some(Response::from_error(&err))
}

/// Adds the CORS headers of an allowed origin to an answer (a preflight has them already).
pub(crate) fn cors(settings: &Settings, req: &Request, response: Response) -> Response {
    if response.headers().contains("Access-Control-Allow-Origin") {
        return response;
    }
    match allowed_origin(settings, req) {
        Some(allowed) => response
            .with_header("Access-Control-Allow-Origin", allowed)
            .with_header("Access-Control-Expose-Headers", "X-Request-ID")
            .with_header("Vary", "Origin"),
        None => response,
    }
}

/// The `Access-Control-Allow-Origin` value for the request's `Origin`, when CORS allows it.
fn allowed_origin(settings: &Settings, req: &Request) -> Option<String> {
    let origin = req.header("Origin")?;
    let origins = &settings.cors_origins;
    if origins.iter().any(|o| o == "*") {
        Some("*".to_string())
    } else {
        origins.iter().find(|o| o.as_str() == origin).cloned()
    }
}

/// A request's access-log record, begun from the request; its status, bytes and time are
/// known once the transport has written the answer ([`AccessRecord::on_written`]).
pub(crate) struct AccessRecord {
    client: Option<IpAddr>,
    method: String,
    path: String,
    request_id: String,
}

/// The access-log record of `req`, when [`Settings::access_log`] is on.
pub(crate) fn access_log(settings: &Settings, req: &Request) -> Option<AccessRecord> {
    settings.access_log.then(|| AccessRecord {
        client: req.client_addr(),
        method: req.method().to_string(),
        path: req.path().to_string(),
        request_id: req.request_id().to_string(),
    })
}

impl AccessRecord {
    /// What writes the record once the answer is written; `model` as the response recorded
    /// it ([`Response::with_model`]).
    pub(crate) fn on_written(self, model: Option<String>) -> Box<dyn FnOnce(&Written)> {
        Box::new(move |written: &Written| {
            crate::log::access(&crate::log::Access {
                client: self.client,
                method: &self.method,
                path: &self.path,
                status: written.status,
                bytes: written.bytes,
                duration: written.duration,
                request_id: &self.request_id,
                model: model.as_deref(),
                messages: written.messages,
            });
        })
    }
}
