//! A connection to an upstream: TCP, through a forward proxy's `CONNECT` tunnel when the
//! environment names one, and TLS for `https://`. Opened within a deadline that covers every
//! step (host-name lookup, connect, tunnel, handshake); read with a timeout per wait.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use super::forward_proxy::Proxy;
use super::http1;
use super::trust;

/// How long a resolved host name is used before it is looked up again.
const RESOLVED_FOR: Duration = Duration::from_secs(5);

/// An open connection, plain or TLS.
pub(crate) struct Conn {
    stream: Stream,
    /// The read timeout set on the socket (`None`: non-blocking).
    timeout: Option<Duration>,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match &self.stream {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => &tls.sock,
        }
    }

    /// Reads what has arrived, waiting `wait` at most (`None`: only what is already here).
    pub(crate) fn read_within(
        &mut self,
        buf: &mut [u8],
        wait: Option<Duration>,
    ) -> io::Result<usize> {
        if wait != self.timeout {
            let tcp = self.tcp();
            match wait {
                Some(wait) => {
                    if self.timeout.is_none() {
                        tcp.set_nonblocking(false)?;
                    }
                    tcp.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
                }
                None => tcp.set_nonblocking(true)?,
            }
            self.timeout = wait;
        }
        self.read(buf)
    }

    /// Whether an idle connection is still open with nothing to read: the upstream has not
    /// closed it nor sent anything unasked (one `recv` that neither blocks nor consumes).
    pub(crate) fn is_quiet(&self) -> bool {
        matches!(crate::http::peek(self.tcp()), Err(err) if err.kind() == io::ErrorKind::WouldBlock)
    }

    /// Sets the timeout of writes.
    pub(crate) fn set_write_timeout(&self, timeout: Duration) {
        let _ = self
            .tcp()
            .set_write_timeout(Some(timeout.max(Duration::from_millis(1))));
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.stream {
            Stream::Plain(tcp) => tcp.read(buf),
            Stream::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.stream {
            Stream::Plain(tcp) => tcp.write(buf),
            Stream::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.stream {
            Stream::Plain(tcp) => tcp.flush(),
            Stream::Tls(tls) => tls.flush(),
        }
    }
}

/// Why a connection could not be opened: a deadline, or a failure in words (for the client)
/// with details (for the log).
pub(crate) enum OpenError {
    Deadline,
    Failed(String, Option<String>),
}

fn failed(what: impl Into<String>) -> OpenError {
    OpenError::Failed(what.into(), None)
}

/// Where an upstream is and how it is reached: fixed when the upstream is made.
pub(crate) struct Route {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `Some` for `https://`.
    pub(crate) tls: Option<Arc<ClientConfig>>,
    pub(crate) proxy: Option<Proxy>,
    /// The last lookup of the host connected to (the proxy's, when there is one).
    resolved: Mutex<Option<(Instant, Vec<SocketAddr>)>>,
    /// TLS handshakes made, for tests and the benchmark (one per kept-alive connection).
    handshakes: std::sync::atomic::AtomicU64,
}

impl Route {
    pub(crate) fn new(
        host: String,
        port: u16,
        tls: Option<Arc<ClientConfig>>,
        proxy: Option<Proxy>,
    ) -> Route {
        Route {
            host,
            port,
            tls,
            proxy,
            resolved: Mutex::new(None),
            handshakes: Default::default(),
        }
    }

    pub(crate) fn handshakes(&self) -> u64 {
        self.handshakes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `host:port` as a request target and `Host` value (IPv6 in brackets).
    pub(crate) fn authority(&self) -> String {
        match self.host.contains(':') {
            true => format!("[{}]:{}", self.host, self.port),
            false => format!("{}:{}", self.host, self.port),
        }
    }

    /// Opens a connection by `until`: lookup, connect, tunnel, handshake.
    pub(crate) fn open(&self, until: Instant, connect_limit: Duration) -> Result<Conn, OpenError> {
        let (host, port) = match &self.proxy {
            Some(proxy) => (proxy.host.as_str(), proxy.port),
            None => (self.host.as_str(), self.port),
        };
        let addrs = self.resolve(host, port, until)?;
        let mut tcp =
            connect_any(&addrs, until, connect_limit).map_err(|err| match &self.proxy {
                Some(proxy) => match err {
                    OpenError::Failed(what, detail) => {
                        OpenError::Failed(format!("proxy {}: {what}", proxy.shown), detail)
                    }
                    deadline => deadline,
                },
                None => err,
            })?;
        let _ = tcp.set_nodelay(true);
        if let Some(proxy) = &self.proxy {
            self.tunnel(&mut tcp, proxy, until)?;
        }
        let stream = match &self.tls {
            None => Stream::Plain(tcp),
            Some(config) => Stream::Tls(Box::new(self.handshake(tcp, config, until)?)),
        };
        // Blocking, with whatever read timeout the steps above left: `read_within` sets its
        // own on the first read (a wait is never zero).
        Ok(Conn {
            stream,
            timeout: Some(Duration::ZERO),
        })
    }

    /// The addresses of `host`, looked up on a thread of its own so that `until` bounds it
    /// (std's lookup has no timeout), and remembered for RESOLVED_FOR.
    fn resolve(&self, host: &str, port: u16, until: Instant) -> Result<Vec<SocketAddr>, OpenError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let lock = || self.resolved.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, addrs)) = &*lock() {
            if at.elapsed() < RESOLVED_FOR {
                return Ok(addrs.clone());
            }
        }
        let (tx, rx) = mpsc::channel();
        let name = format!("{host}:{port}");
        std::thread::Builder::new()
            .name("tinyserve-resolve".into())
            .spawn(move || {
                let _ = tx.send(name.to_socket_addrs().map(|a| a.collect::<Vec<_>>()));
            })
            .map_err(|err| {
                OpenError::Failed("cannot look up the host".into(), Some(err.to_string()))
            })?;
        let left = until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Ok(addrs)) if !addrs.is_empty() => {
                *lock() = Some((Instant::now(), addrs.clone()));
                Ok(addrs)
            }
            Ok(Ok(_)) => Err(failed(format!("host not found: {host}"))),
            Ok(Err(err)) => Err(OpenError::Failed(
                format!("host not found: {host}"),
                Some(err.to_string()),
            )),
            Err(_) => Err(OpenError::Deadline),
        }
    }

    /// `CONNECT host:port` through the proxy; a 2xx opens the tunnel.
    fn tunnel(&self, tcp: &mut TcpStream, proxy: &Proxy, until: Instant) -> Result<(), OpenError> {
        let target = self.authority();
        let authorization = proxy.credentials.as_ref().map(|c| format!("Basic {c}"));
        let headers = [("Host", target.as_str())]
            .into_iter()
            .chain(authorization.as_deref().map(|a| ("Proxy-Authorization", a)));
        let refused = |what: String| failed(format!("proxy {}: {what}", proxy.shown));
        let (request, answer) = http1::encode("CONNECT", &target, headers, None)
            .map_err(|err| refused(format!("cannot ask for a tunnel ({err})")))?;
        set_timeouts(tcp, until)?;
        tcp.write_all(&request)
            .map_err(|err| io_error(err, "proxy"))?;
        let mut answer = answer;
        let mut buf = [0u8; 4096];
        while !answer.has_head() {
            set_timeouts(tcp, until)?;
            let n = tcp.read(&mut buf).map_err(|err| io_error(err, "proxy"))?;
            if n == 0 {
                return Err(refused(
                    "closed the connection instead of answering CONNECT".into(),
                ));
            }
            // A refusal's body is read only as far as it came with the head.
            answer
                .feed(&buf[..n], &mut Vec::new(), usize::MAX)
                .map_err(|err| refused(format!("invalid answer to CONNECT ({err})")))?;
        }
        match answer.status() {
            200..=299 if answer.is_done() && answer.leftover().is_empty() => Ok(()),
            200..=299 => Err(refused("sent bytes after opening the tunnel".into())),
            status => Err(refused(format!(
                "refused the tunnel to {target} (status {status})"
            ))),
        }
    }

    fn handshake(
        &self,
        mut tcp: TcpStream,
        config: &Arc<ClientConfig>,
        until: Instant,
    ) -> Result<StreamOwned<ClientConnection, TcpStream>, OpenError> {
        let name = ServerName::try_from(self.host.clone())
            .map_err(|_| failed(format!("{} is not a valid TLS server name", self.host)))?;
        let mut tls = ClientConnection::new(Arc::clone(config), name)
            .map_err(|err| failed(format!("TLS setup failed ({err})")))?;
        while tls.is_handshaking() {
            set_timeouts(&tcp, until)?;
            if let Err(err) = tls.complete_io(&mut tcp) {
                return Err(match trust::describe(&err, &self.host) {
                    Some(what) => OpenError::Failed(what, Some(err.to_string())),
                    None => io_error(err, "TLS handshake"),
                });
            }
        }
        self.handshakes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(StreamOwned::new(tls, tcp))
    }
}

/// Sets read and write timeouts to what is left until `until`; past it, the deadline.
fn set_timeouts(tcp: &TcpStream, until: Instant) -> Result<(), OpenError> {
    let left = until.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(OpenError::Deadline);
    }
    tcp.set_read_timeout(Some(left))
        .and_then(|()| tcp.set_write_timeout(Some(left)))
        .map_err(|err| io_error(err, "connection"))
}

fn io_error(err: io::Error, during: &str) -> OpenError {
    match err.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => OpenError::Deadline,
        io::ErrorKind::ConnectionRefused => failed("connection refused"),
        io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof => OpenError::Failed(
            format!("{during}: connection closed"),
            Some(err.to_string()),
        ),
        _ => OpenError::Failed(format!("{during} failed"), Some(err.to_string())),
    }
}

/// Connects to the first address that answers, each try bounded by `limit` and `until`.
fn connect_any(
    addrs: &[SocketAddr],
    until: Instant,
    limit: Duration,
) -> Result<TcpStream, OpenError> {
    let mut last = OpenError::Deadline;
    for addr in addrs {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(OpenError::Deadline);
        }
        match TcpStream::connect_timeout(addr, left.min(limit)) {
            Ok(tcp) => return Ok(tcp),
            Err(err) => last = io_error(err, "connect"),
        }
    }
    Err(last)
}
