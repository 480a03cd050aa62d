//! The server's lifecycle: bind, accept, and a graceful shutdown that drains the connections.
//!
//! One accept thread admits each new connection to a slot ([`super::slots`]) and starts its
//! thread ([`super::connection`]); a connection on a reserved slot serves only the health
//! probes, so a server that is merely full still looks alive. A shutdown stops accepting,
//! closes idle connections at once and lets busy ones finish, up to the drain timeout.

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::admission::Admission;
use super::connection::{serve_connection, Shared};
use super::forwarded::TrustedProxies;
use super::service::Service;
use super::slots::{Slot, Slots};
use super::wire::Limits;
use super::write;
use crate::{Result, ServerMetrics};

/// What the transport takes of the app's settings.
pub(crate) struct Config {
    /// The limits on reading a request.
    pub(crate) limits: Limits,
    /// Handlers running at once.
    pub(crate) workers: usize,
    /// Requests waiting for a worker turn.
    pub(crate) queue_capacity: usize,
    /// Streamed responses at once.
    pub(crate) max_streams: usize,
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_ip: usize,
    pub(crate) trusted_proxies: TrustedProxies,
    /// Longest pause while the client reads a response.
    pub(crate) write_timeout: Duration,
    /// How long a shutdown waits for requests in flight.
    pub(crate) drain_timeout: Duration,
    /// The metrics the server records into, shared with the app's `/metrics`.
    pub(crate) metrics: Arc<ServerMetrics>,
}

/// How long a connection on a reserved slot may take to send its request head: a health
/// probe sends it at once.
const RESERVED_HEAD_TIMEOUT: Duration = Duration::from_secs(2);

/// A running server. Dropping it does not stop it; call [`Server::shutdown`].
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// The accept thread, which drains the connections once a shutdown starts.
    accept: JoinHandle<()>,
}

/// Stops a running server from anywhere (another thread, a signal handler thread).
#[derive(Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl Server {
    /// Binds `addr` and serves `service` until shut down.
    pub(crate) fn start(
        service: impl Service,
        config: Config,
        addr: impl ToSocketAddrs,
    ) -> Result<Server> {
        let listener = listen(addr)?;
        let addr = listener.local_addr()?;
        let Config {
            limits,
            workers,
            queue_capacity,
            max_streams,
            max_connections,
            max_connections_per_ip,
            trusted_proxies,
            write_timeout,
            drain_timeout,
            metrics,
        } = config;
        let reserved_limits = Limits {
            head_timeout: limits.head_timeout.min(RESERVED_HEAD_TIMEOUT),
            ..limits.clone()
        };
        let shared = Arc::new(Shared {
            service: Box::new(service),
            limits,
            reserved_limits,
            write_timeout,
            drain_timeout,
            admission: Arc::new(Admission::new(
                workers,
                queue_capacity,
                max_streams,
                Arc::clone(&metrics),
            )),
            stopping: AtomicBool::new(false),
            slots: Slots::new(
                max_connections,
                max_connections_per_ip,
                trusted_proxies.clone(),
            ),
            trusted_proxies,
            metrics,
        });
        let accept_shared = Arc::clone(&shared);
        let accept = thread::Builder::new()
            .name("tinyserve-accept".into())
            .spawn(move || accept(&accept_shared, listener))?;
        Ok(Server {
            addr,
            shared,
            accept,
        })
    }

    /// The address the server listens on (with the real port when bound to port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle that stops this server; cheap to clone and send to other threads.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            shared: Arc::clone(&self.shared),
            addr: self.addr,
        }
    }

    /// Stops accepting, lets requests in flight finish, and waits until their connections have
    /// closed (or the drain timeout cut them off).
    pub fn shutdown(self) {
        self.shutdown_handle().shutdown();
        self.join();
    }

    /// Blocks until the server has been shut down (through a [`ShutdownHandle`]) and has stopped.
    pub fn join(self) {
        let _ = self.accept.join();
    }
}

impl ShutdownHandle {
    /// Starts the shutdown and returns at once: no new connections; idle connections close;
    /// requests in flight (streams included) are answered, then their connections close. What
    /// is still running after the drain timeout (`Settings::drain_timeout`) is cut off.
    pub fn shutdown(&self) {
        if self.shared.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wake the accept thread, blocked in accept(), with a throwaway connection.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        self.shared.slots.close_idle();
        self.shared.service.shutdown();
    }
}

/// Connections the kernel queues before `accept`: a burst of clients waits there instead of
/// being refused or retried after a second.
const LISTEN_BACKLOG: i32 = 1024;

/// Binds the first address that works, with SO_REUSEADDR and a deep accept queue.
fn listen(addr: impl ToSocketAddrs) -> std::io::Result<TcpListener> {
    let mut last = std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to bind");
    for addr in addr.to_socket_addrs()? {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        let bound = socket
            .set_reuse_address(true)
            .and_then(|()| socket.bind(&addr.into()))
            .and_then(|()| socket.listen(LISTEN_BACKLOG));
        match bound {
            Ok(()) => return Ok(socket.into()),
            Err(err) => last = err,
        }
    }
    Err(last)
}

fn accept(shared: &Arc<Shared>, listener: TcpListener) {
    for socket in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(socket) = socket else {
            // Out of file descriptors or a connection reset before accept: keep serving.
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        let slot = match shared.slots.admit(&socket) {
            Ok(slot) => slot,
            Err(err) => {
                shared.metrics.reject("connections");
                let _ = socket.set_write_timeout(Some(Duration::from_millis(200)));
                let _ = write::write_error(&socket, &err);
                let _ = socket.shutdown(Shutdown::Write);
                continue;
            }
        };
        shared
            .metrics
            .open_connections
            .fetch_add(1, Ordering::SeqCst);
        let conn_shared = Arc::clone(shared);
        let slot_of_thread = Arc::clone(&slot);
        // Handlers run on this thread: it gets the standard 2 MiB stack (address space; only
        // the pages a handler touches take memory).
        let spawned = thread::Builder::new()
            .name("tinyserve-conn".into())
            .stack_size(2 * 1024 * 1024)
            .spawn(move || {
                serve_connection(&conn_shared, socket, &slot_of_thread);
                conn_shared.forget(&slot_of_thread);
            });
        if spawned.is_err() {
            shared.forget(&slot);
        }
    }
    // Close the listening socket before draining: new connections are refused at once (a
    // proxy retries them on another replica) instead of waiting in the backlog, unanswered,
    // until the drain ends.
    drop(listener);
    drain(shared);
}

impl Shared {
    /// Frees a closed connection's slot.
    fn forget(&self, slot: &Slot) {
        self.slots.release(slot);
        self.metrics.open_connections.fetch_sub(1, Ordering::SeqCst);
    }
}

/// After accepting stops: wait for open connections to finish, up to the drain timeout; then
/// cut off what remains.
fn drain(shared: &Shared) {
    let deadline = Instant::now() + shared.drain_timeout;
    while shared.metrics.open_connections.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    shared.slots.close_all();
}
