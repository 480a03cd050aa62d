//! The request a handler sees: method, path, parameters, query, headers and a body
//! that was read under the server's size limit.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use serde::de::DeserializeOwned;

use crate::http::Origin;
use crate::{Error, Headers, Result};

/// An HTTP request, fully read. Handlers take it by reference.
///
/// # Example
/// ```
/// use tinyserve::Request;
/// let req = Request::new("POST", "/models/iris/predict?pretty=1")
///     .with_header("Content-Type", "application/json")
///     .with_body(br#"{"inputs": [[1, 2, 3, 4]]}"#.to_vec());
/// assert_eq!(req.path(), "/models/iris/predict");
/// assert_eq!(req.query_param("pretty").as_deref(), Some("1"));
/// let body: serde_json::Value = req.json()?;
/// assert_eq!(body["inputs"][0][3], 4);
/// # Ok::<(), tinyserve::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    path: String,
    query: String,
    headers: Headers,
    body: Vec<u8>,
    params: Vec<(String, String)>,
    remote_addr: Option<SocketAddr>,
    gone: Arc<AtomicBool>,
    /// The client's socket, checked by [`Request::is_client_gone`]; none for requests built
    /// by hand. Weak, so a request kept by a handler never keeps the connection open.
    socket: Option<Weak<TcpStream>>,
    /// Whether the client may be sent an interim `100 Continue` (HTTP/1.1), and whether it was.
    interim: bool,
    probed: Arc<AtomicBool>,
    origin: Option<Origin>,
    root_path: String,
    request_id: String,
}

impl Request {
    /// A request for `target` (path with optional `?query`), without headers or body.
    /// The server builds requests itself; this is for tests and for calling handlers directly.
    pub fn new(method: &str, target: &str) -> Request {
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, query),
            None => (target, ""),
        };
        Request {
            method: method.to_ascii_uppercase(),
            path: path.to_string(),
            query: query.to_string(),
            headers: Headers::new(),
            body: Vec::new(),
            params: Vec::new(),
            remote_addr: None,
            gone: Arc::new(AtomicBool::new(false)),
            socket: None,
            interim: false,
            probed: Arc::new(AtomicBool::new(false)),
            origin: None,
            root_path: String::new(),
            request_id: String::new(),
        }
    }

    /// Replaces all headers (the server's: the headers as received).
    pub(crate) fn with_headers(mut self, headers: Headers) -> Request {
        self.headers = headers;
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: Vec<u8>) -> Request {
        self.body = body;
        self
    }

    pub(crate) fn with_remote_addr(mut self, addr: SocketAddr) -> Request {
        self.remote_addr = Some(addr);
        self
    }

    /// Sets where the request came from, the prefix it is mounted under, and its id. A path
    /// that still carries the prefix is routed without it.
    pub(crate) fn set_context(&mut self, origin: Origin, root_path: &str, request_id: String) {
        let prefix = origin
            .prefix
            .clone()
            .unwrap_or_else(|| root_path.to_string());
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() {
            if let Some(rest) = self.path.strip_prefix(prefix) {
                if rest.is_empty() || rest.starts_with('/') {
                    self.path = if rest.is_empty() {
                        "/".to_string()
                    } else {
                        rest.to_string()
                    };
                }
            }
        }
        self.root_path = prefix.to_string();
        self.origin = Some(origin);
        self.request_id = request_id;
    }

    /// The client's address: the peer's, or behind a trusted proxy the address it reports.
    pub fn client_addr(&self) -> Option<IpAddr> {
        match &self.origin {
            Some(origin) => origin.client,
            None => self.remote_addr.map(|a| a.ip()),
        }
    }

    /// `http` or `https` (as a trusted proxy reports it).
    pub fn scheme(&self) -> &str {
        self.origin.as_ref().map_or("http", |o| o.scheme.as_str())
    }

    /// The host the client asked for (`Host`, or a trusted proxy's `X-Forwarded-Host`).
    pub fn host(&self) -> Option<&str> {
        match &self.origin {
            Some(origin) => origin.host.as_deref(),
            None => self.header("Host"),
        }
    }

    /// The prefix the app is served under (`--root-path` or a trusted `X-Forwarded-Prefix`),
    /// without a trailing slash; empty when none. Prepend it to links the app generates.
    pub fn root_path(&self) -> &str {
        &self.root_path
    }

    /// The base URL of the app as the client sees it: `scheme://host/prefix`.
    pub fn base_url(&self) -> String {
        format!(
            "{}://{}{}",
            self.scheme(),
            self.host().unwrap_or("localhost"),
            self.root_path
        )
    }

    /// The request id: the client's `X-Request-ID` (sanitized) or a generated one. It is
    /// echoed in the response, written in log lines and passed on to outbound calls.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// Ties the request to the client's socket, for [`Request::is_client_gone`].
    /// `interim`: the client speaks HTTP/1.1, and may be sent a `100 Continue`.
    pub(crate) fn set_socket(&mut self, socket: &Arc<TcpStream>, interim: bool) {
        self.socket = Some(Arc::downgrade(socket));
        self.interim = interim;
    }

    /// Whether the client has gone for good, for a handler whose answer is not written yet (a
    /// generation that stops for nobody). Unlike [`Request::is_client_gone`], a client that only
    /// half-closed after its request is still there: the first time its socket reads closed,
    /// an HTTP/1.1 client is sent an interim `100 Continue`, which clients skip; a client that
    /// closed its socket answers that with a reset, and a later call says gone. An HTTP/1.0
    /// client cannot be sent one, and its closed reading side counts as gone.
    ///
    /// # Example
    /// ```
    /// use tinyserve::Request;
    /// // A request built by hand has no socket: its client never goes.
    /// assert!(!Request::new("POST", "/v1/completions").is_client_gone_for_good());
    /// ```
    pub fn is_client_gone_for_good(&self) -> bool {
        use crate::http::{peer_state, probe_with_continue, Peer};
        if self.gone.load(Ordering::Relaxed) {
            return true;
        }
        let Some(socket) = self.socket.as_ref() else {
            return false;
        };
        let gone = match socket.upgrade() {
            None => true,
            Some(socket) => match peer_state(&socket) {
                Peer::Open => false,
                Peer::Gone => true,
                Peer::ReadClosed if !self.interim => true,
                // After the end of stream, a read reports the end rather than the reset: the
                // reset shows as the socket's pending error.
                Peer::ReadClosed => match self.probed.swap(true, Ordering::Relaxed) {
                    true => !matches!(socket.take_error(), Ok(None)),
                    false => !probe_with_continue(&socket),
                },
            },
        };
        if gone {
            self.gone.store(true, Ordering::Relaxed);
        }
        gone
    }

    /// Whether the client closed its connection while this request was being handled; a
    /// long handler can check it and give up (as [`crate::FanOut::run_for`] does). Each call
    /// looks at the socket (one system call, without blocking) until the answer is yes.
    /// A client that only shut down its writing side (a half-close) counts as gone too: without
    /// writing to it, the server cannot tell it from one that left. A streamed response is not
    /// cut for a half-close: the server keeps writing until a write fails.
    pub fn is_client_gone(&self) -> bool {
        if self.gone.load(Ordering::Relaxed) {
            return true;
        }
        // A connection that has already ended counts as gone.
        let gone = self.socket.as_ref().is_some_and(|socket| {
            socket
                .upgrade()
                .is_none_or(|socket| crate::http::peer_closed(&socket))
        });
        if gone {
            self.gone.store(true, Ordering::Relaxed);
        }
        gone
    }

    pub(crate) fn set_params(&mut self, params: Vec<(String, String)>) {
        self.params = params;
    }

    /// The method, upper case (`GET`, `POST`, ...).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The path, without the query string, as sent (not percent-decoded).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The raw query string, without the `?` (empty when absent).
    pub fn query(&self) -> &str {
        &self.query
    }

    /// The first value of the query parameter `name`, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query
            .split('&')
            .filter_map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(key) == name).then(|| percent_decode(value))
            })
            .next()
    }

    /// The value of the path parameter `name` (`<name>` in the route pattern), percent-decoded.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// All headers, in the order received.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The body. The server has already read it, and refused it with 413 if it was over the limit.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The peer's socket address (the proxy's, when behind one).
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote_addr
    }

    /// Parses the body as JSON. A `Content-Type` other than JSON gives 415, malformed JSON 400,
    /// JSON of the wrong shape 400 (code `invalid_body`). A missing `Content-Type` is accepted.
    /// serde reports the first mistake only; [`Request::validated_json`] reports every one,
    /// each at its path, against the type's JSON Schema.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        if let Some(content_type) = self.header("Content-Type") {
            let essence = content_type.split(';').next().unwrap_or("").trim();
            let is_json = essence.eq_ignore_ascii_case("application/json")
                || essence.to_ascii_lowercase().ends_with("+json");
            if !is_json {
                return Err(Error::unsupported_media_type("application/json", essence));
            }
        }
        serde_json::from_slice(&self.body).map_err(Error::from_json)
    }
}

/// Decodes `%XX` escapes and `+` (as in form-encoded queries); invalid escapes are kept as is,
/// and bytes that are not UTF-8 become U+FFFD.
pub(crate) fn percent_decode(text: &str) -> String {
    percent_decode_path(&text.replace('+', " "))
}

/// Decodes `%XX` escapes only: in a path, `+` is a literal plus (RFC 3986), not a space.
pub(crate) fn percent_decode_path(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

crate::headers::header_modifiers!(Request, "this request", |s| s.headers);

#[cfg(test)]
mod tests {
    use super::*;

    /// The two ends of a loopback TCP connection: (client, server).
    fn connected() -> (TcpStream, Arc<TcpStream>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        (client, Arc::new(server))
    }

    #[test]
    fn client_gone_follows_the_socket() {
        let (client, server) = connected();
        let mut req = Request::new("GET", "/");
        req.set_socket(&server, true);
        assert!(!req.is_client_gone(), "connected and silent");
        drop(client);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(req.is_client_gone(), "closed by the client");
        assert!(req.clone().is_client_gone(), "clones share the answer");

        // A pipelined next request is unread data, not a departure.
        let (client, server) = connected();
        let mut req = Request::new("GET", "/");
        req.set_socket(&server, true);
        std::io::Write::write_all(&mut &client, b"GET / HTTP/1.1\r\n").expect("write");
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!req.is_client_gone(), "data waiting");
    }

    #[test]
    fn a_half_closed_client_is_not_gone_for_good_and_a_closed_one_is() {
        let (client, server) = connected();
        let mut req = Request::new("POST", "/");
        req.set_socket(&server, true);
        client
            .shutdown(std::net::Shutdown::Write)
            .expect("half-close");
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            req.is_client_gone(),
            "a half-close reads as an end of stream"
        );
        let mut req = Request::new("POST", "/");
        req.set_socket(&server, true);
        assert!(!req.is_client_gone_for_good(), "probed, still there");
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !req.is_client_gone_for_good(),
            "the probe was answered by no reset"
        );
        let mut interim = [0u8; 25];
        std::io::Read::read_exact(&mut &client, &mut interim).expect("read the probe");
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");

        let (client, server) = connected();
        let mut req = Request::new("POST", "/");
        req.set_socket(&server, true);
        drop(client);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!req.is_client_gone_for_good(), "probed");
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            req.is_client_gone_for_good(),
            "the closed socket reset the connection"
        );

        // HTTP/1.0 gets no interim answer: a closed reading side is gone.
        let (client, server) = connected();
        let mut req = Request::new("POST", "/");
        req.set_socket(&server, false);
        client
            .shutdown(std::net::Shutdown::Write)
            .expect("half-close");
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(req.is_client_gone_for_good());
    }

    #[test]
    fn client_gone_when_the_connection_has_ended_and_a_request_never_holds_it_open() {
        let (client, server) = connected();
        let mut req = Request::new("GET", "/");
        req.set_socket(&server, true);
        let kept = req.clone();
        drop(server);
        assert!(kept.is_client_gone());
        // The request held no strong reference: the server's drop closed the socket.
        let mut byte = [0u8; 1];
        let read = std::io::Read::read(&mut &client, &mut byte).expect("read");
        assert_eq!(read, 0, "the client sees the connection closed");
        assert!(
            !Request::new("GET", "/").is_client_gone(),
            "no socket: never gone"
        );
    }

    #[test]
    fn percent_decoding_handles_escapes_plus_and_garbage() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%e2%82%ac"), "€");
        assert_eq!(
            percent_decode("a%2Bb"),
            "a+b",
            "an escaped plus stays a plus"
        );
        assert_eq!(percent_decode_path("a+b%20c"), "a+b c");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }

    #[test]
    fn json_rejects_other_content_types_with_415() {
        let req = Request::new("POST", "/").with_header("Content-Type", "text/plain");
        let err = req.json::<serde_json::Value>().err().map(|e| e.status());
        assert_eq!(err, Some(415));
        let ok = Request::new("POST", "/")
            .with_header("content-type", "application/json; charset=utf-8")
            .with_body(b"[1]".to_vec());
        assert!(ok.json::<serde_json::Value>().is_ok());
    }
}
