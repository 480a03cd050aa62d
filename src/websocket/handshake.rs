//! The opening handshake (RFC 6455 section 4.2): which requests may upgrade, the answer
//! `101 Switching Protocols` with its `Sec-WebSocket-Accept`, and the `Origin` check.

use std::sync::Arc;

use base64::Engine;
use sha1::{Digest, Sha1};

use super::Handler;
use crate::{Error, ErrorKind, Headers, Request, Response};

/// Appended to the client's key before hashing (RFC 6455 section 1.3).
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// An accepted upgrade: the request and the handler that will run once `101` is out.
pub(crate) struct Upgrade {
    pub(crate) request: Request,
    pub(crate) handler: Handler,
}

impl std::fmt::Debug for Upgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgrade")
            .field("path", &self.request.path())
            .finish_non_exhaustive()
    }
}

/// The answer of a WebSocket route: `101` carrying the upgrade, or the error saying why the
/// request cannot upgrade.
pub(super) fn answer(req: &Request, handler: &Handler) -> Response {
    match accept_key(req) {
        Ok(accept) => {
            let headers = Headers::from_iter([
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Accept", accept.as_str()),
            ]);
            let upgrade = Upgrade {
                request: req.clone(),
                handler: Arc::clone(handler),
            };
            Response::upgrade(headers, upgrade)
        }
        Err(err) => Response::from_error(&err),
    }
}

/// The `Sec-WebSocket-Accept` for a valid upgrade request; 426 for a request that does not
/// ask to upgrade (or asks for another version than 13), 400 for a broken handshake.
fn accept_key(req: &Request) -> Result<String, Error> {
    let wants_websocket = req
        .header("Upgrade")
        .is_some_and(|v| has_token(v, "websocket"));
    if req.method() != "GET" || !wants_websocket {
        let message = format!(
            "{} is a WebSocket endpoint: send GET with Upgrade: websocket",
            req.path()
        );
        return Err(
            Error::new(ErrorKind::UpgradeRequired, message).with_header("Upgrade", "websocket")
        );
    }
    if !req
        .header("Connection")
        .is_some_and(|v| has_token(v, "upgrade"))
    {
        return Err(Error::bad_request(
            "a WebSocket handshake needs Connection: Upgrade",
        ));
    }
    let version = req.header("Sec-WebSocket-Version").unwrap_or("").trim();
    if version != "13" {
        let message = format!("WebSocket version {version:?} is not supported: expected 13");
        return Err(Error::new(ErrorKind::UpgradeRequired, message)
            .with_header("Upgrade", "websocket")
            .with_header("Sec-WebSocket-Version", "13"));
    }
    let key = req.header("Sec-WebSocket-Key").unwrap_or("").trim();
    let decoded = base64::engine::general_purpose::STANDARD.decode(key);
    if decoded.map_or(true, |bytes| bytes.len() != 16) {
        return Err(Error::bad_request(
            "Sec-WebSocket-Key must be 16 bytes in base64",
        ));
    }
    Ok(derive_accept(key))
}

/// `base64(SHA-1(key + GUID))`.
fn derive_accept(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Whether the comma-separated header value holds `token` (case-insensitive).
fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|part| part.trim().eq_ignore_ascii_case(token))
}

/// A browser sends its page's `Origin` and lets any site open a WebSocket anywhere (no CORS
/// preflight): the server must refuse the origins it does not trust, or another site could
/// talk to it with the user's cookies. Allowed: no `Origin` (not a browser), the server's own
/// host (`Host`, or a trusted proxy's `X-Forwarded-Host`), or one of `cors_origins` (`*`:
/// any). Else 403.
pub(super) fn check_origin(req: &Request, cors_origins: &[String]) -> Result<(), Error> {
    let Some(origin) = req.header("Origin") else {
        return Ok(());
    };
    let listed = cors_origins.iter().any(|o| o == "*" || o == origin);
    let host = origin.split_once("://").map_or(origin, |(_, host)| host);
    let same_host = req.host().is_some_and(|own| own.eq_ignore_ascii_case(host));
    if listed || same_host {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Forbidden,
        format!(
            "origin {origin:?} may not open a WebSocket here (not this host, not in cors_origins)"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_key_of_rfc_6455_section_1_3() {
        assert_eq!(
            derive_accept("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn origins_allowed_are_none_the_own_host_and_the_listed_ones() {
        let req = |origin: Option<&str>| {
            let req = Request::new("GET", "/ws").with_header("Host", "example.com:8000");
            match origin {
                Some(origin) => req.with_header("Origin", origin),
                None => req,
            }
        };
        let listed = ["https://app.example".to_string()];
        assert!(check_origin(&req(None), &[]).is_ok());
        assert!(check_origin(&req(Some("http://example.com:8000")), &[]).is_ok());
        assert!(check_origin(&req(Some("https://app.example")), &listed).is_ok());
        let refused = check_origin(&req(Some("https://evil.example")), &listed);
        assert_eq!(refused.err().map(|e| e.status()), Some(403));
        assert!(check_origin(&req(Some("https://evil.example")), &["*".into()]).is_ok());
    }
}
