//! Streamed responses (`Response::stream`, `Sse`) on in-process servers, directly and behind a
//! real nginx.
//!
//! Incremental delivery is proven by ordering, never by timing: the producer sends chunk k only
//! after the test has read chunk k-1 and said so on a channel. A server (or proxy) that held
//! the body back would deadlock such a test, so every client read has a timeout and the test
//! fails instead of hanging. Producers wait on their channels with a timeout too, and end as
//! soon as the test drops its end, so a failing test still lets the server shut down.
//!
//! [`Http`] (a raw HTTP/1.1 client that decodes chunked framing itself), the SSE parser and
//! the [`Nginx`] runner are shared with `tests/openai.rs`.

use std::io::{ErrorKind as IoErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tinyserve::{App, Disconnected, Event, Response, Settings, Sse};

use crate::support::TestServer;

/// How long a client waits for the next bytes before the test fails. A server or proxy that
/// buffers a stream the test drives by ordering never sends them.
pub(crate) const READ_LIMIT: Duration = Duration::from_secs(20);
/// How long a producer waits for the test's go-ahead; longer than [`READ_LIMIT`], so a client
/// timeout is what reports a failure. A producer also ends when the test drops its sender.
const GATE_LIMIT: Duration = Duration::from_secs(60);
/// How long the test waits for something a producer reports.
const REPORT_LIMIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// A raw HTTP/1.1 client

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// `Content-Length`: this many bytes are still to come.
    Length(usize),
    /// No length: the body ends when the server closes the connection (HTTP/1.0 streams).
    Close,
    /// No body at all (a HEAD response).
    Empty,
}

/// One HTTP exchange on a raw socket: sends a request, parses the response head, and decodes
/// the body (chunked, sized or close-delimited) as it arrives, without buffering ahead.
pub(crate) struct Http {
    stream: TcpStream,
    /// Bytes read from the socket and not yet decoded.
    raw: Vec<u8>,
    /// Decoded body bytes not yet consumed.
    body: Vec<u8>,
    pub(crate) status: u16,
    /// `HTTP/1.x` of the status line.
    pub(crate) version: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) framing: Framing,
    ended: bool,
    what: String,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl Http {
    /// Connects to `addr`, writes `request` and reads the response head.
    pub(crate) fn send(addr: SocketAddr, request: &[u8]) -> Http {
        let what = String::from_utf8_lossy(request)
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        let stream = TcpStream::connect(addr).unwrap_or_else(|err| panic!("connect {addr}: {err}"));
        stream
            .set_read_timeout(Some(READ_LIMIT))
            .expect("set read timeout");
        stream
            .set_write_timeout(Some(READ_LIMIT))
            .expect("set write timeout");
        (&stream)
            .write_all(request)
            .unwrap_or_else(|err| panic!("sending {what:?}: {err}"));
        let head_only = request.starts_with(b"HEAD ");
        let mut http = Http {
            stream,
            raw: Vec::new(),
            body: Vec::new(),
            status: 0,
            version: String::new(),
            headers: Vec::new(),
            framing: Framing::Empty,
            ended: false,
            what,
        };
        http.read_head(head_only);
        http
    }

    /// `GET path` over HTTP/1.1.
    pub(crate) fn get(addr: SocketAddr, path: &str) -> Http {
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        Http::send(addr, request.as_bytes())
    }

    /// `POST path` with a JSON body over HTTP/1.1.
    pub(crate) fn post_json(addr: SocketAddr, path: &str, body: &Value) -> Http {
        let body = body.to_string();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        Http::send(addr, request.as_bytes())
    }

    /// Reads more bytes from the socket; 0 at end of stream. A timeout fails the test.
    fn fill(&mut self) -> usize {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(n) => {
                    self.raw.extend_from_slice(&buf[..n]);
                    return n;
                }
                Err(err) if err.kind() == IoErrorKind::Interrupted => continue,
                Err(err)
                    if matches!(err.kind(), IoErrorKind::WouldBlock | IoErrorKind::TimedOut) =>
                {
                    panic!(
                        "{}: nothing arrived within {READ_LIMIT:?}; the server or a proxy is \
                         holding back data it should have sent (body so far: {:?})",
                        self.what,
                        String::from_utf8_lossy(&self.body)
                    )
                }
                // A reset after the server closed: the same as an end of stream here.
                Err(err) if err.kind() == IoErrorKind::ConnectionReset => return 0,
                Err(err) => panic!("{}: reading: {err}", self.what),
            }
        }
    }

    fn read_head(&mut self, head_only: bool) {
        let end = loop {
            if let Some(pos) = find(&self.raw, b"\r\n\r\n") {
                break pos;
            }
            if self.fill() == 0 {
                panic!(
                    "{}: connection closed before a complete response head: {:?}",
                    self.what,
                    String::from_utf8_lossy(&self.raw)
                );
            }
        };
        let head = String::from_utf8_lossy(&self.raw[..end]).into_owned();
        self.raw.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut parts = status_line.splitn(3, ' ');
        self.version = parts.next().unwrap_or("").to_string();
        self.status = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{}: bad status line {status_line:?}", self.what));
        self.headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let chunked = self
            .header("Transfer-Encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let length = self
            .header("Content-Length")
            .map(|v| v.parse::<usize>().expect("numeric Content-Length"));
        self.framing = match (head_only, chunked, length) {
            (true, _, _) => Framing::Empty,
            (false, true, _) => Framing::Chunked,
            (false, false, Some(len)) => Framing::Length(len),
            (false, false, None) => Framing::Close,
        };
    }

    /// The first header called `name` (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Takes one CRLF-terminated line of chunk framing from the socket.
    fn raw_line(&mut self) -> String {
        loop {
            if let Some(pos) = find(&self.raw, b"\r\n") {
                let line = String::from_utf8_lossy(&self.raw[..pos]).into_owned();
                self.raw.drain(..pos + 2);
                return line;
            }
            if self.fill() == 0 {
                panic!("{}: connection closed inside chunk framing", self.what);
            }
        }
    }

    fn raw_exact(&mut self, n: usize) -> Vec<u8> {
        while self.raw.len() < n {
            if self.fill() == 0 {
                panic!("{}: connection closed inside a chunk", self.what);
            }
        }
        self.raw.drain(..n).collect()
    }

    /// Decodes more body bytes (one chunk, or what the socket has); false once the body ended.
    fn more(&mut self) -> bool {
        if self.ended {
            return false;
        }
        match self.framing {
            Framing::Chunked => {
                let line = self.raw_line();
                let size_text = line.split(';').next().unwrap_or("").trim().to_string();
                let size = usize::from_str_radix(&size_text, 16)
                    .unwrap_or_else(|_| panic!("{}: bad chunk size line {line:?}", self.what));
                if size == 0 {
                    while !self.raw_line().is_empty() {}
                    self.ended = true;
                    return false;
                }
                let data = self.raw_exact(size);
                self.body.extend_from_slice(&data);
                let end = self.raw_exact(2);
                assert_eq!(end, b"\r\n", "{}: chunk not followed by CRLF", self.what);
                true
            }
            Framing::Length(0) | Framing::Empty => {
                self.ended = true;
                false
            }
            Framing::Length(left) => {
                if self.raw.is_empty() && self.fill() == 0 {
                    panic!("{}: body ended {left} bytes early", self.what);
                }
                let n = left.min(self.raw.len());
                let data: Vec<u8> = self.raw.drain(..n).collect();
                self.body.extend_from_slice(&data);
                self.framing = Framing::Length(left - n);
                true
            }
            Framing::Close => {
                if self.raw.is_empty() && self.fill() == 0 {
                    self.ended = true;
                    return false;
                }
                let data = std::mem::take(&mut self.raw);
                self.body.extend_from_slice(&data);
                true
            }
        }
    }

    /// Reads until the body has `expected` next, and consumes it; fails on anything else.
    pub(crate) fn expect_body(&mut self, expected: &[u8]) {
        while self.body.len() < expected.len() {
            if !self.more() {
                break;
            }
        }
        let got = &self.body[..expected.len().min(self.body.len())];
        assert_eq!(
            String::from_utf8_lossy(got),
            String::from_utf8_lossy(expected),
            "{}: unexpected body bytes",
            self.what
        );
        self.body.drain(..expected.len());
    }

    /// Whether the body has ended with nothing left to consume.
    pub(crate) fn at_end(&mut self) -> bool {
        self.body.is_empty() && !self.more() && self.body.is_empty()
    }

    /// The rest of the body, until it ends.
    pub(crate) fn read_to_end(&mut self) -> Vec<u8> {
        while self.more() {}
        std::mem::take(&mut self.body)
    }

    /// The rest of the body as JSON.
    pub(crate) fn json(&mut self) -> Value {
        let body = self.read_to_end();
        serde_json::from_slice(&body).unwrap_or_else(|err| {
            panic!(
                "{}: body is not JSON ({err}): {}",
                self.what,
                String::from_utf8_lossy(&body)
            )
        })
    }

    /// The next raw SSE event (up to and including its blank line), or `None` at the end.
    pub(crate) fn next_event_text(&mut self) -> Option<String> {
        loop {
            if let Some(pos) = find(&self.body, b"\n\n") {
                let text: Vec<u8> = self.body.drain(..pos + 2).collect();
                return Some(String::from_utf8(text).expect("events are UTF-8"));
            }
            if !self.more() {
                assert!(
                    self.body.is_empty(),
                    "{}: stream ended inside an event: {:?}",
                    self.what,
                    String::from_utf8_lossy(&self.body)
                );
                return None;
            }
        }
    }

    /// The next SSE event, comments included, or `None` at the end of the stream.
    pub(crate) fn next_event(&mut self) -> Option<SseEvent> {
        self.next_event_text().map(|text| SseEvent::parse(&text))
    }

    /// The next SSE event that has data (keep-alive comments skipped), or `None` at the end.
    pub(crate) fn next_data_event(&mut self) -> Option<SseEvent> {
        loop {
            let event = self.next_event()?;
            if event.data.is_some() {
                return Some(event);
            }
        }
    }
}

/// One parsed Server-Sent Event (per the WHATWG `text/event-stream` rules).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    pub(crate) event: Option<String>,
    pub(crate) id: Option<String>,
    pub(crate) retry: Option<u64>,
    /// The `data:` lines joined with `\n`; `None` when there was no `data:` line.
    pub(crate) data: Option<String>,
    /// Comment lines (`:` ...), without the colon.
    pub(crate) comments: Vec<String>,
}

impl SseEvent {
    pub(crate) fn parse(text: &str) -> SseEvent {
        let mut event = SseEvent::default();
        for line in text.split('\n').filter(|l| !l.is_empty()) {
            if let Some(comment) = line.strip_prefix(':') {
                event.comments.push(comment.to_string());
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value).to_string();
            match field {
                "event" => event.event = Some(value),
                "id" => event.id = Some(value),
                "retry" => event.retry = value.parse().ok(),
                "data" => match &mut event.data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(&value);
                    }
                    None => event.data = Some(value),
                },
                _ => {}
            }
        }
        event
    }

    /// The data as JSON.
    pub(crate) fn json(&self) -> Value {
        let data = self.data.as_deref().unwrap_or("");
        serde_json::from_str(data)
            .unwrap_or_else(|err| panic!("event data is not JSON ({err}): {data}"))
    }
}

// ---------------------------------------------------------------------------------------------
// A real nginx in front of a server

/// The nginx binary: Debian's path, else whatever `nginx` is on `PATH`.
fn nginx_binary() -> PathBuf {
    let debian = Path::new("/usr/sbin/nginx");
    if debian.is_file() {
        debian.to_path_buf()
    } else {
        PathBuf::from("nginx")
    }
}

/// A private directory for one nginx, removed with it.
fn scratch_dir(what: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "tinyserve-{what}-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap_or_else(|err| panic!("create {}: {err}", dir.display()));
    dir
}

/// A free port right now (bound to 127.0.0.1:0, then closed). Another process may take it
/// before nginx binds it; [`Nginx::start`] retries when that happens.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// nginx as a reverse proxy in front of `upstream`, configured as a user would
/// (`proxy_pass`, HTTP/1.1 upstream, no buffering directives), in its own temporary
/// directory: configuration, logs, pid file and temp paths, nothing under /var. It runs in
/// the foreground without a master process (`master_process off`), so one child is the
/// whole nginx and killing it on drop leaves nothing behind, as root or not.
pub(crate) struct Nginx {
    child: Child,
    dir: PathBuf,
    pub(crate) addr: SocketAddr,
}

impl Nginx {
    /// Starts nginx proxying every path to `upstream` (`host:port`) and waits (bounded) until
    /// a request through it comes back from this very nginx.
    pub(crate) fn start(upstream: &str) -> Nginx {
        let dir = scratch_dir("nginx");
        let token = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for attempt in 1..=5 {
            let port = free_port();
            let config = format!(
                r#"daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
lock_file {dir}/nginx.lock;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            add_header X-Test-Proxy "{token}" always;
        }}
    }}
}}
"#,
                dir = dir.display()
            );
            let conf = dir.join("nginx.conf");
            std::fs::write(&conf, config).expect("write nginx.conf");
            let stderr = std::fs::File::create(dir.join("stderr.log")).expect("create stderr.log");
            let child = Command::new(nginx_binary())
                .arg("-p")
                .arg(&dir)
                .arg("-e")
                .arg(dir.join("error.log"))
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap_or_else(|err| {
                    panic!(
                        "cannot run nginx ({err}); it is required for the proxy tests: \
                         apt-get install nginx (.ci/run installs it)"
                    )
                });
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
            let mut nginx = Nginx {
                child,
                dir: dir.clone(),
                addr,
            };
            match nginx.wait_ready(&token) {
                Ok(()) => return nginx,
                Err(log) if log.contains("Address already in use") && attempt < 5 => {
                    // Someone took the port between our probe and nginx's bind: try another.
                    let _ = nginx.child.kill();
                    let _ = nginx.child.wait();
                    nginx.dir = PathBuf::new(); // the next attempt reuses the directory
                }
                Err(log) => panic!("nginx did not start:\n{log}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Waits until a request through this nginx (recognized by its `X-Test-Proxy` token)
    /// comes back; `Err` with the logs if nginx exits or 20 s pass.
    fn wait_ready(&mut self, token: &str) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("nginx exited ({status}):\n{}", self.log()));
            }
            if let Ok(mut stream) = TcpStream::connect(self.addr) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = stream.write_all(
                    b"GET /nginx-readiness-probe HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
                );
                let mut answer = Vec::new();
                let _ = stream.read_to_end(&mut answer);
                let answer = String::from_utf8_lossy(&answer);
                if answer.contains(&format!("X-Test-Proxy: {token}")) {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Err(format!("nginx did not answer within 20 s:\n{}", self.log()))
    }

    /// nginx's error log and stderr.
    pub(crate) fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!("{}{}", read("error.log"), read("stderr.log"))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Apps under test

/// Hands the test one go-ahead sender per running producer, in the order they start.
#[derive(Clone)]
struct Gates(Arc<Mutex<Sender<Sender<()>>>>);

impl Gates {
    fn new() -> (Gates, Receiver<Sender<()>>) {
        let (tx, rx) = mpsc::channel();
        (Gates(Arc::new(Mutex::new(tx))), rx)
    }

    /// A new gate: the test gets its sender, the producer waits on the receiver.
    fn open(&self) -> Receiver<()> {
        let (tx, rx) = mpsc::channel();
        let _ = self.0.lock().unwrap_or_else(|p| p.into_inner()).send(tx);
        rx
    }
}

/// Waits for the test's go-ahead; false when the test gave up (dropped it) or never sent it.
fn wait(gate: &Receiver<()>) -> bool {
    gate.recv_timeout(GATE_LIMIT).is_ok()
}

const CHUNKS: usize = 5;

fn chunk_text(k: usize) -> String {
    format!("chunk {k} of {CHUNKS}\n")
}

/// The SSE event k of the ordered stream: typed, with an id, a retry and multi-line data.
fn event(k: usize) -> Event {
    Event::data(format!("line one of {k}\nline two of {k}"))
        .with_event("tick")
        .with_id(k.to_string())
        .with_retry(1000 + k as u64)
}

/// Routes:
/// - `/ordered`: `CHUNKS` chunks, chunk k only after the test's go-ahead for it (k > 0);
/// - `/ordered-sse`: the same as SSE events;
/// - `/ping`: a plain answer.
fn ordered_app(settings: Settings) -> (App, Receiver<Sender<()>>) {
    let (gates, go) = Gates::new();
    let sse_gates = gates.clone();
    let app = App::new()
        .with_settings(settings)
        .get("/ping", |_| "pong")
        .get("/ordered", move |_| {
            let gate = gates.open();
            Response::stream("text/plain; charset=utf-8", move |body| {
                for k in 0..CHUNKS {
                    if k > 0 && !wait(&gate) {
                        return Ok(());
                    }
                    body.send(chunk_text(k))?;
                }
                Ok(())
            })
        })
        .get("/ordered-sse", move |_| {
            let gate = sse_gates.open();
            Sse::new(move |events| {
                for k in 0..CHUNKS {
                    if k > 0 && !wait(&gate) {
                        return Ok(());
                    }
                    events.send(event(k))?;
                }
                Ok(())
            })
        });
    (app, go)
}

fn small_settings() -> Settings {
    let mut settings = Settings::default();
    settings.workers = 4;
    settings.max_streams = 2;
    settings
}

fn gate_of(go: &Receiver<Sender<()>>) -> Sender<()> {
    go.recv_timeout(REPORT_LIMIT)
        .expect("the handler ran and handed out its gate")
}

/// Reads `/ordered` chunk by chunk, allowing chunk k+1 only after chunk k arrived.
fn assert_ordered_chunks(addr: SocketAddr, go: &Receiver<Sender<()>>) {
    let mut http = Http::get(addr, "/ordered");
    assert_eq!(http.status, 200);
    assert_eq!(
        http.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        http.framing,
        Framing::Chunked,
        "an HTTP/1.1 stream is chunked"
    );
    let gate = gate_of(go);
    for k in 0..CHUNKS {
        // Chunk k can only be here if the server sent it before the body was complete:
        // chunk k+1 does not exist until the next line.
        http.expect_body(chunk_text(k).as_bytes());
        if k + 1 < CHUNKS {
            gate.send(()).expect("the producer waits for the go-ahead");
        }
    }
    assert!(http.at_end(), "the body ends after the last chunk");
}

/// Reads `/ordered-sse` event by event, allowing event k+1 only after event k arrived, and
/// checks the SSE headers (`proxied`: nginx consumes `X-Accel-Buffering`).
fn assert_ordered_events(addr: SocketAddr, go: &Receiver<Sender<()>>, proxied: bool) {
    let mut http = Http::get(addr, "/ordered-sse");
    assert_eq!(http.status, 200);
    assert_eq!(http.header("Content-Type"), Some("text/event-stream"));
    assert_eq!(http.header("Cache-Control"), Some("no-cache"));
    if proxied {
        assert!(
            http.header("Server")
                .is_some_and(|s| s.starts_with("nginx")),
            "through nginx: {:?}",
            http.headers
        );
    } else {
        assert_eq!(http.header("X-Accel-Buffering"), Some("no"));
    }
    let gate = gate_of(go);
    for k in 0..CHUNKS {
        let got = http.next_data_event().expect("another event");
        assert_eq!(
            got,
            SseEvent {
                event: Some("tick".into()),
                id: Some(k.to_string()),
                retry: Some(1000 + k as u64),
                data: Some(format!("line one of {k}\nline two of {k}")),
                comments: Vec::new(),
            },
            "event {k}"
        );
        if k + 1 < CHUNKS {
            gate.send(()).expect("the producer waits for the go-ahead");
        }
    }
    assert!(http.next_data_event().is_none(), "the stream ends");
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn stream_chunks_arrive_one_by_one() {
    let (app, go) = ordered_app(small_settings());
    let server = TestServer::start(app);
    assert_ordered_chunks(server.addr, &go);
    // Twice, on the same server: the stream's worker and slot were given back.
    assert_ordered_chunks(server.addr, &go);
    assert_eq!(server.get("/ping").text(), "pong");
}

#[test]
fn sse_events_arrive_one_by_one_with_their_fields() {
    let (app, go) = ordered_app(small_settings());
    let server = TestServer::start(app);
    assert_ordered_events(server.addr, &go, false);

    // The exact wire format of one event: fields, then one `data:` line per line of data.
    let (gates, go2) = Gates::new();
    let app = App::new().get("/one", move |_| {
        let gate = gates.open();
        Sse::new(move |events| {
            if wait(&gate) {
                events.send(Event::data("a\nb").with_event("e").with_id("1"))?;
            }
            Ok(())
        })
    });
    let server = TestServer::start(app);
    let mut http = Http::get(server.addr, "/one");
    gate_of(&go2).send(()).expect("producer waiting");
    assert_eq!(
        http.next_event_text().as_deref(),
        Some("event: e\nid: 1\ndata: a\ndata: b\n\n")
    );
    assert!(http.next_event_text().is_none());
}

#[test]
fn a_client_that_leaves_stops_the_producer() {
    const LIMIT: usize = 1_000_000;
    let sent = Arc::new(AtomicUsize::new(0));
    let (report_tx, report) = mpsc::channel::<Result<(), Disconnected>>();
    let report_tx = Mutex::new(report_tx);
    let counter = Arc::clone(&sent);
    let app = App::new()
        .get("/ping", |_| "pong")
        .get("/endless", move |_| {
            let sent = Arc::clone(&counter);
            let report = report_tx.lock().unwrap_or_else(|p| p.into_inner()).clone();
            Response::stream("text/plain", move |body| {
                let mut outcome = Ok(());
                for i in 0..LIMIT {
                    if let Err(err) = body.send(format!("line {i:07}\n")) {
                        outcome = Err(err);
                        break;
                    }
                    sent.fetch_add(1, Ordering::SeqCst);
                }
                let _ = report.send(outcome);
                outcome
            })
        });
    let server = TestServer::start(app);
    let mut http = Http::get(server.addr, "/endless");
    assert_eq!(http.status, 200);
    http.expect_body(b"line 0000000\n");
    http.expect_body(b"line 0000001\n");
    let at_drop = sent.load(Ordering::SeqCst);
    drop(http);

    let outcome = report
        .recv_timeout(REPORT_LIMIT)
        .expect("the producer ended within 10 s of the client leaving");
    assert_eq!(
        outcome,
        Err(Disconnected),
        "send fails once the client has gone"
    );
    let total = sent.load(Ordering::SeqCst);
    // Whatever the socket buffers absorbed was sent before the drop; after it, the producer
    // learns within a chunk or two (one in the hand-off channel, one being written).
    assert!(
        total - at_drop <= 16,
        "the producer sent {} chunks after the client left (at drop: {at_drop}, total: {total})",
        total - at_drop
    );
    assert!(total < LIMIT / 10, "stopped long before its limit: {total}");
    assert_eq!(
        server.get("/ping").text(),
        "pong",
        "the server still answers"
    );
}

#[test]
fn the_stream_cap_answers_503_and_plain_requests_still_work() {
    let (gates, go) = Gates::new();
    let app = App::new()
        .with_settings(small_settings())
        .get("/ping", |_| "pong")
        .get("/held", move |_| {
            let gates = gates.clone();
            Response::stream("text/plain", move |body| {
                // Only a producer that got a stream slot runs, so only it hands out a gate.
                let gate = gates.open();
                body.send("start\n")?;
                if wait(&gate) {
                    body.send("end\n")?;
                }
                Ok(())
            })
        });
    let server = TestServer::start(app);

    // One after the other, so each gate is known to belong to its stream: a producer hands
    // out its gate before it sends "start".
    let open_held = || {
        let mut held = Http::get(server.addr, "/held");
        assert_eq!(held.status, 200);
        held.expect_body(b"start\n");
        (held, gate_of(&go))
    };
    let (mut first, first_gate) = open_held();
    let (mut second, second_gate) = open_held();

    // Both slots are held (their producers wait for the test): a third stream is refused at
    // once, as JSON, while plain requests are served by the free workers.
    let mut third = Http::get(server.addr, "/held");
    assert_eq!(third.status, 503);
    assert_eq!(third.header("Content-Type"), Some("application/json"));
    assert_eq!(third.header("Retry-After"), Some("1"));
    let body = third.json();
    assert_eq!(body["code"], "overloaded", "{body}");
    assert!(
        body["error"].as_str().unwrap_or("").contains("streams"),
        "{body}"
    );
    for _ in 0..3 {
        let reply = server.get("/ping");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "pong");
    }

    // Release one: its stream completes, and the next stream gets the freed slot.
    first_gate.send(()).expect("producer waiting");
    first.expect_body(b"end\n");
    assert!(first.at_end());
    let mut fourth = Http::get(server.addr, "/held");
    assert_eq!(fourth.status, 200, "a slot is free again");
    fourth.expect_body(b"start\n");
    gate_of(&go).send(()).expect("producer waiting");
    fourth.expect_body(b"end\n");
    assert!(fourth.at_end());
    second_gate.send(()).expect("producer waiting");
    second.expect_body(b"end\n");
    assert!(second.at_end());
}

#[test]
fn a_finished_stream_frees_its_slot_before_the_client_sees_the_end() {
    // With one slot, stream after stream: each starts right after the previous one ended, so
    // the slot must be free by the time the client reads the end of the previous body.
    let mut settings = Settings::default();
    settings.workers = 2;
    settings.max_streams = 1;
    let app = App::new().with_settings(settings).get("/short", |_| {
        Response::stream("text/plain", |body| {
            body.send("a")?;
            body.send("b")
        })
    });
    let server = TestServer::start(app);
    for round in 0..200 {
        let mut http = Http::get(server.addr, "/short");
        let status = http.status;
        let body = String::from_utf8_lossy(&http.read_to_end()).into_owned();
        assert_eq!((status, body.as_str()), (200, "ab"), "round {round}");
    }
}

#[test]
fn sse_keep_alive_comments_flow_while_the_producer_is_idle() {
    let (gates, go) = Gates::new();
    let app = App::new().get("/quiet", move |_| {
        let gate = gates.open();
        Sse::new(move |events| {
            if wait(&gate) {
                events.send(Event::data("finally"))?;
            }
            Ok(())
        })
        .with_keep_alive(Duration::from_millis(200))
    });
    let server = TestServer::start(app);
    let mut http = Http::get(server.addr, "/quiet");
    assert_eq!(http.header("Content-Type"), Some("text/event-stream"));
    let gate = gate_of(&go);
    // The producer sends nothing until the test has seen a keep-alive comment.
    let first = http.next_event().expect("a keep-alive comment");
    assert!(
        first.data.is_none() && !first.comments.is_empty(),
        "a comment comes first: {first:?}"
    );
    gate.send(()).expect("producer waiting");
    let event = http.next_data_event().expect("the event");
    assert_eq!(event.data.as_deref(), Some("finally"));
    assert!(http.next_event().is_none());
}

/// `/three`: a stream of three pieces; reports how many the producer sent, or that it was
/// told the client had gone.
fn three_app() -> (App, Receiver<Result<usize, Disconnected>>) {
    let (report_tx, report) = mpsc::channel();
    let report_tx = Mutex::new(report_tx);
    let app = App::new().get("/ping", |_| "pong").get("/three", move |_| {
        let report = report_tx.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Response::stream("text/plain", move |body| {
            let outcome = ["one ", "two ", "three"]
                .iter()
                .try_for_each(|piece| body.send(piece));
            let _ = report.send(outcome.map(|()| 3));
            outcome
        })
    });
    (app, report)
}

#[test]
fn http_1_0_gets_a_close_delimited_stream() {
    let (app, report) = three_app();
    let server = TestServer::start(app);
    let mut http = Http::send(server.addr, b"GET /three HTTP/1.0\r\n\r\n");
    assert_eq!(http.status, 200);
    assert_eq!(
        http.header("Transfer-Encoding"),
        None,
        "HTTP/1.0 has no chunked encoding"
    );
    assert_eq!(http.header("Content-Length"), None);
    assert_eq!(http.framing, Framing::Close);
    assert_eq!(
        String::from_utf8_lossy(&http.read_to_end()),
        "one two three",
        "the raw body, unframed, ends when the server closes"
    );
    assert_eq!(
        report.recv_timeout(REPORT_LIMIT).expect("producer ended"),
        Ok(3)
    );
}

#[test]
fn head_on_a_stream_route_sends_the_head_only() {
    let (app, report) = three_app();
    let server = TestServer::start(app);
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream.set_read_timeout(Some(READ_LIMIT)).expect("timeout");
    stream
        .write_all(b"HEAD /three HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .expect("the server closes after the head");
    let text = String::from_utf8_lossy(&answer);
    let end = text.find("\r\n\r\n").expect("a complete head") + 4;
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(
        text[..end]
            .to_ascii_lowercase()
            .contains("content-type: text/plain\r\n"),
        "{text}"
    );
    assert_eq!(&text[end..], "", "no body after the head");
    // Nobody reads the body: the producer is told at once and stops.
    assert_eq!(
        report.recv_timeout(REPORT_LIMIT).expect("producer ended"),
        Err(Disconnected)
    );
    assert_eq!(server.get("/ping").text(), "pong");
}

#[test]
fn streams_pass_through_nginx_event_by_event() {
    let (app, go) = ordered_app(small_settings());
    let server = TestServer::start(app);
    let nginx = Nginx::start(&server.addr.to_string());

    // A plain request through the proxy.
    let mut http = Http::get(nginx.addr, "/ping");
    assert_eq!(http.status, 200, "{}", nginx.log());
    assert_eq!(http.read_to_end(), b"pong");

    // nginx runs with its defaults (`proxy_buffering on`); the server's
    // `X-Accel-Buffering: no` asks it not to buffer this response. Whatever nginx does, an
    // event it held back would never arrive: the producer sends event k+1 only after the
    // test has read event k through the proxy.
    assert_ordered_events(nginx.addr, &go, true);
}
