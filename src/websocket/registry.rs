//! The open WebSockets of one server: their cap, their gauge, and a graceful shutdown that
//! reaches each of them.

use std::collections::HashMap;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::{Error, ErrorKind, ServerMetrics};

/// The open WebSockets, at most `max_open`.
pub(crate) struct Sockets {
    table: Mutex<Table>,
    max_open: usize,
    stopping: AtomicBool,
    metrics: Arc<ServerMetrics>,
}

#[derive(Default)]
struct Table {
    /// Each open socket's clone (once its session started), to end its reads on shutdown.
    open: HashMap<u64, Option<TcpStream>>,
    next_id: u64,
}

/// One open WebSocket's place, freed when dropped.
pub(crate) struct Permit {
    id: u64,
    sockets: Arc<Sockets>,
}

impl Sockets {
    pub(crate) fn new(max_open: usize, metrics: Arc<ServerMetrics>) -> Sockets {
        Sockets {
            table: Mutex::new(Table::default()),
            max_open,
            stopping: AtomicBool::new(false),
            metrics,
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for one more socket; 503 when `max_open` are open, or the server is stopping.
    pub(crate) fn admit(self: &Arc<Self>) -> Result<Permit, Error> {
        let mut table = self.table();
        if self.is_stopping() {
            return Err(Error::new(
                ErrorKind::NotReady,
                "the server is shutting down",
            ));
        }
        if table.open.len() >= self.max_open {
            self.metrics.reject("websockets");
            return Err(Error::overloaded(format!(
                "too many open WebSockets (limit {})",
                self.max_open
            )));
        }
        table.next_id += 1;
        let id = table.next_id;
        table.open.insert(id, None);
        self.metrics.open_websockets.fetch_add(1, Ordering::SeqCst);
        Ok(Permit {
            id,
            sockets: Arc::clone(self),
        })
    }

    /// Starts a graceful shutdown: no new sockets, and every open one stops reading, so its
    /// session sends close 1001 and ends.
    pub(crate) fn shutdown(&self) {
        let table = self.table();
        self.stopping.store(true, Ordering::SeqCst);
        for socket in table.open.values().flatten() {
            let _ = socket.shutdown(Shutdown::Read);
        }
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

impl Permit {
    /// Ties the socket to this place, so that a shutdown reaches it.
    pub(crate) fn watch(&self, socket: &TcpStream) {
        let Ok(clone) = socket.try_clone() else {
            return;
        };
        let mut table = self.sockets.table();
        if self.sockets.is_stopping() {
            let _ = clone.shutdown(Shutdown::Read);
        }
        table.open.insert(self.id, Some(clone));
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.sockets.table().open.remove(&self.id);
        self.sockets
            .metrics
            .open_websockets
            .fetch_sub(1, Ordering::SeqCst);
    }
}
