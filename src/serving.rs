//! Serving an [`App`]: [`App::bind`] and [`App::run`] start the transport with the app as its
//! `Service`. For each request, a [`Request`] is built from what the transport read, the
//! app's layers, hooks and handler answer it, and the [`Response`] becomes the reply the
//! transport writes, with the access log's record and, for a WebSocket, the takeover of the
//! connection.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;

use crate::http::{Config, Incoming, Limits, Origin, Reply, ReplyBody, Server, Service, Switched};
use crate::layers::{self, AccessRecord};
use crate::response::Body;
use crate::websocket::{self, Permit, Sockets, Upgrade};
use crate::{App, Error, Headers, Request, Response, Result, Settings};

/// A bound app: the app, and the WebSockets open on its connections.
pub(crate) struct Served {
    app: App,
    websockets: Arc<Sockets>,
}

impl Served {
    /// The service that serves `app`, and what the transport takes of its settings.
    pub(crate) fn new(app: App) -> (Served, Config) {
        let settings = app.settings();
        let config = Config {
            limits: Limits {
                max_head_bytes: settings.max_head_bytes,
                max_headers: settings.max_headers,
                max_body_bytes: settings.max_body_bytes,
                head_timeout: settings.head_timeout,
                request_timeout: settings.request_timeout,
                read_timeout: settings.io_timeout,
                keep_alive_timeout: settings.keep_alive_timeout,
            },
            workers: settings.workers,
            queue_capacity: settings.queue_capacity,
            max_streams: settings.stream_limit(),
            max_connections: settings.max_connections,
            max_connections_per_ip: settings.max_connections_per_ip,
            trusted_proxies: settings.trusted_proxies.clone(),
            write_timeout: settings.io_timeout,
            drain_timeout: settings.drain_timeout,
            metrics: app.metrics(),
        };
        let websockets = Arc::new(Sockets::new(settings.websockets.max_open, app.metrics()));
        (Served { app, websockets }, config)
    }

    /// The request of `incoming`'s head, its body not read yet, with `headers` (the head's,
    /// or none where only the access log needs the request).
    fn head_request(&self, incoming: &Incoming, headers: Headers) -> Request {
        let head = &incoming.head;
        request(
            self.app.settings(),
            (&head.method, &head.target, headers),
            incoming.peer,
            incoming.origin.clone(),
            incoming.request_id.clone(),
        )
    }

    /// The reply that writes `response`, with the access log's record of the request.
    fn reply(&self, response: Response, route: Option<String>, log: Option<AccessRecord>) -> Reply {
        let on_written = log.map(|log| log.on_written(response.model().map(str::to_string)));
        let (status, headers, body) = response.into_parts();
        let (status, headers, body) = match body {
            // Only a WebSocket route can switch protocols: it takes the connection over.
            Body::Full(_) | Body::Stream(_) if (100..200).contains(&status) => {
                let message = format!(
                    "a handler answered {status}: switching protocols takes App::websocket"
                );
                error_parts(&Error::internal(message))
            }
            Body::Full(body) => (status, headers, ReplyBody::Whole(body)),
            Body::Stream(stream) => (status, headers, ReplyBody::Stream(stream)),
            Body::Upgrade(upgrade) => {
                let origins = &self.app.settings().cors_origins;
                match websocket::admit(&self.websockets, &upgrade, origins) {
                    Ok(permit) => (status, headers, self.takeover(*upgrade, permit)),
                    Err(err) => error_parts(&err),
                }
            }
        };
        Reply {
            status,
            headers,
            body,
            route,
            on_written,
        }
    }

    /// The connection after `101`: the WebSocket handler runs on it until it closes. The
    /// socket holds a place among the open WebSockets (`permit`) instead of a worker turn.
    fn takeover(&self, upgrade: Upgrade, permit: Permit) -> ReplyBody {
        let limits = self.app.settings().websockets.clone();
        let metrics = self.app.metrics();
        let sockets = Arc::clone(&self.websockets);
        ReplyBody::Switch(Box::new(move |socket: &Arc<TcpStream>, buffered| {
            let report =
                websocket::serve(socket, buffered, upgrade, permit, &limits, metrics, sockets);
            Switched {
                bytes_sent: report.bytes_sent,
                messages: (report.received, report.sent),
            }
        }))
    }
}

impl App {
    /// Starts serving on `addr` (port 0 picks a free port) and returns the running server.
    /// An address that cannot be resolved or bound is an error that names it:
    /// `cannot listen on 127.0.0.1:8000: Address already in use (os error 98)`.
    pub fn bind(self, addr: impl ToSocketAddrs) -> Result<Server> {
        let addrs: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|err| {
                Error::internal(format!("cannot resolve the address to listen on: {err}"))
            })?
            .collect();
        let shown: Vec<String> = addrs.iter().map(SocketAddr::to_string).collect();
        let (service, config) = Served::new(self);
        Server::start(service, config, addrs.as_slice()).map_err(|err| {
            Error::internal(format!(
                "cannot listen on {}: {}",
                shown.join(", "),
                err.chain()
            ))
        })
    }

    /// Serves on `addr` until the server is shut down. Prints `listening on http://ADDR` on
    /// stdout ([`crate::log::listening`]) once it accepts connections.
    pub fn run(self, addr: impl ToSocketAddrs) -> Result<()> {
        let server = self.bind(addr)?;
        crate::log::listening(server.addr());
        server.join();
        Ok(())
    }
}

impl Service for Served {
    fn screen(&self, incoming: &Incoming) -> Option<Reply> {
        let req = self.head_request(incoming, incoming.head.headers.clone());
        let response = if incoming.reserved && !self.app.is_public(req.path()) {
            // A reserved slot serves only the health probes, without the hooks.
            Response::from_error(&Error::overloaded(
                "too many open connections: this reserved connection answers only the health probes",
            ))
        } else {
            self.app.screen(&req)?
        };
        let log = layers::access_log(self.app.settings(), &req);
        Some(self.reply(response, None, log))
    }

    fn respond(&self, incoming: Incoming) -> Reply {
        let Incoming {
            head,
            peer,
            origin,
            request_id,
            body,
            socket,
            ..
        } = incoming;
        let mut req = request(
            self.app.settings(),
            (&head.method, &head.target, head.headers),
            peer,
            origin,
            request_id,
        )
        .with_body(body);
        if let Some(socket) = &socket {
            req.set_socket(socket, head.minor_version > 0);
        }
        let log = layers::access_log(self.app.settings(), &req);
        let (response, route) = self.app.dispatch(req);
        self.reply(response, route, log)
    }

    fn refuse(&self, incoming: &Incoming, err: &Error) -> Reply {
        let req = self.head_request(incoming, Headers::new());
        let log = layers::access_log(self.app.settings(), &req);
        self.reply(Response::from_error(err), None, log)
    }

    fn shutdown(&self) {
        self.websockets.shutdown();
    }
}

/// The request a handler sees, from the request line and headers the transport read, where
/// it came from, and its id. A path that still carries the root path is routed without it.
fn request(
    settings: &Settings,
    (method, target, headers): (&str, &str, Headers),
    peer: Option<SocketAddr>,
    origin: Origin,
    request_id: String,
) -> Request {
    let mut req = Request::new(method, target).with_headers(headers);
    if let Some(peer) = peer {
        req = req.with_remote_addr(peer);
    }
    req.set_context(origin, &settings.root_path, request_id);
    req
}

/// The status, headers and body of `err`'s answer ([`Response::from_error`]).
fn error_parts(err: &Error) -> (u16, Headers, ReplyBody) {
    match Response::from_error(err).into_parts() {
        (status, headers, Body::Full(body)) => (status, headers, ReplyBody::Whole(body)),
        // An error response is whole.
        (status, headers, _) => (status, headers, ReplyBody::Whole(Vec::new())),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::sync::mpsc;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use crate::{App, Error, Request, Response};

    #[test]
    fn a_model_route_records_its_model_through_error_handlers_and_after_hooks() {
        let app = App::new()
            .post("/models/<name>/predict", |req| {
                Err::<Response, _>(Error::model_not_found(req.param("name").unwrap_or("")))
            })
            .get("/v2/models/<name>", |_| {
                Response::text("ready").with_model("chosen")
            })
            .get("/hello/<name>", |_| "hello")
            .on_error(404, |_, _| (404, "no such model"))
            .after(|_, res| res.with_header("X-After", "1"));
        let model = |req: Request| app.dispatch(req).0.model().map(str::to_string);
        let predict = Request::new("POST", "/models/iris%2Dv2/predict");
        assert_eq!(model(predict).as_deref(), Some("iris-v2"));
        let chosen = Request::new("GET", "/v2/models/iris");
        assert_eq!(
            model(chosen).as_deref(),
            Some("chosen"),
            "the handler's own"
        );
        assert_eq!(model(Request::new("GET", "/hello/ada")), None);
        assert_eq!(
            model(Request::new("GET", "/models/a/b/c")),
            None,
            "no route"
        );
    }

    /// Opens a stream on `/stream` and returns its response head and the socket.
    fn open_stream(addr: std::net::SocketAddr) -> (String, TcpStream) {
        let mut socket = TcpStream::connect(addr).expect("connect");
        socket
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        socket
            .write_all(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
            .expect("write");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && socket.read(&mut byte).expect("read") == 1 {
            head.push(byte[0]);
        }
        (String::from_utf8_lossy(&head).into_owned(), socket)
    }

    #[test]
    fn with_workers_8_caps_streams_at_4_when_the_server_binds() {
        let (release, released) = mpsc::channel::<()>();
        let released = Arc::new(Mutex::new(released));
        let app = App::new().with_workers(8).get("/stream", move |_| {
            let released = Arc::clone(&released);
            Response::stream("text/plain", move |body| {
                body.send("started\n")?;
                // Each producer holds its stream until the test releases one.
                let _ = released
                    .lock()
                    .map(|r| r.recv_timeout(Duration::from_secs(30)));
                Ok(())
            })
        });
        let server = app.bind("127.0.0.1:0").expect("bind");
        let mut open = Vec::new();
        for _ in 0..4 {
            let (head, socket) = open_stream(server.addr());
            assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
            open.push(socket);
        }
        let (head, mut socket) = open_stream(server.addr());
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        let length = head
            .lines()
            .find_map(|line| line.strip_prefix("Content-Length: "))
            .and_then(|n| n.trim().parse::<usize>().ok())
            .unwrap_or_default();
        let mut body = vec![0u8; length];
        socket.read_exact(&mut body).expect("body");
        let body = String::from_utf8_lossy(&body);
        assert!(
            body.contains("too many concurrent streams (limit 4)"),
            "{body}"
        );
        for _ in 0..4 {
            let _ = release.send(());
        }
        drop(open);
        server.shutdown();
    }
}
