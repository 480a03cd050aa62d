//! Logging through the [`log`] facade: the application chooses the logger.
//!
//! tinyserve writes nothing itself. It emits records through the `log` crate, as Rust
//! libraries do, and whatever logger the application installed (`env_logger`, `fern`, a
//! `tracing` bridge, or tinyserve's own [`Logger`]) decides where they go and how they look:
//! - target `tinyserve`: errors (a 500's whole cause chain, a panicking handler), warnings and
//!   start-up steps, with the request's id as the key-value `request_id` when there is one;
//! - target `tinyserve::access`: one record per request at level info (when
//!   [`Settings::access_log`](crate::Settings::access_log) is on), the message
//!   `GET /path 200 0.083ms id=...` and the fields as key-values: `client`, `method`, `path`,
//!   `status`, `bytes`, `duration_ms`, `request_id`, for model routes `model`, and for a
//!   WebSocket (logged when it closes) `messages_in` and `messages_out`.
//!
//! Without a logger nothing is written. The `tinyserve` command installs [`Logger`], which
//! writes human lines or JSON lines on stderr (`--log-format`); a library user can install it
//! too:
//!
//! ```no_run
//! use tinyserve::log::{LogFormat, LogLevel, Logger};
//!
//! Logger::new(LogLevel::Info, LogFormat::Json).install()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cell::RefCell;
use std::net::IpAddr;
use std::time::Duration;

use log::kv::{self, Key, Value, VisitSource};
use log::Level;

mod logger;

pub(crate) use logger::escape;
pub use logger::Logger;

/// The target of error, warning and start-up records.
pub const TARGET: &str = "tinyserve";

/// The target of the access records, one per request.
pub const ACCESS_TARGET: &str = "tinyserve::access";

/// How [`Logger`] writes lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `2026-11-25T18:31:32.123Z INFO 127.0.0.1 "GET /healthz" 200 15B 0.080ms rid=...`
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The least severe level [`Logger`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Failures only.
    Error = 0,
    /// Failures and warnings.
    Warn = 1,
    /// Also one line per request.
    Info = 2,
    /// Everything.
    Debug = 3,
}

impl From<LogLevel> for log::LevelFilter {
    fn from(level: LogLevel) -> log::LevelFilter {
        match level {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
        }
    }
}

thread_local! {
    static REQUEST_ID: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f` with `id` as the request id of records emitted on this thread.
pub(crate) fn with_request_id<T>(id: &str, f: impl FnOnce() -> T) -> T {
    REQUEST_ID.with(|slot| *slot.borrow_mut() = Some(id.to_string()));
    let result = f();
    REQUEST_ID.with(|slot| *slot.borrow_mut() = None);
    result
}

/// Emits an error record (target `tinyserve`).
pub(crate) fn error(message: &str) {
    line(Level::Error, message);
}

/// Emits a warning record (target `tinyserve`).
pub(crate) fn warn(message: &str) {
    line(Level::Warn, message);
}

/// Prints `listening on http://ADDR` on stdout and flushes it: the one line a script or a
/// test waits for before it connects. [`crate::App::run`] and `tinyserve serve` print it here,
/// once the socket accepts connections.
pub fn listening(addr: std::net::SocketAddr) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on http://{addr}");
    let _ = out.flush();
}

/// Emits an informational record on target `tinyserve`, with the current request's id as
/// the key-value `request_id` when there is one: the same as
/// `log::info!(target: "tinyserve", "{message}")` outside a request.
pub fn info(message: &str) {
    line(Level::Info, message);
}

fn line(level: Level, message: &str) {
    if !log::log_enabled!(target: TARGET, level) {
        return;
    }
    REQUEST_ID.with(|slot| match slot.borrow().as_deref() {
        Some(id) => log::log!(target: TARGET, level, request_id = id; "{message}"),
        None => log::log!(target: TARGET, level, "{message}"),
    });
}

/// One request, as the access log records it.
pub(crate) struct Access<'a> {
    pub(crate) client: Option<IpAddr>,
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) status: u16,
    pub(crate) bytes: u64,
    pub(crate) duration: Duration,
    pub(crate) request_id: &'a str,
    pub(crate) model: Option<&'a str>,
    /// A WebSocket's messages received and sent.
    pub(crate) messages: Option<(u64, u64)>,
}

impl Access<'_> {
    /// Milliseconds, rounded to microseconds.
    fn duration_ms(&self) -> f64 {
        (self.duration.as_secs_f64() * 1_000_000.0).round() / 1000.0
    }
}

/// The fields of an access record, in the order of the JSON line; `model` only when there is
/// one.
impl kv::Source for Access<'_> {
    fn visit<'kvs>(&'kvs self, visitor: &mut dyn VisitSource<'kvs>) -> Result<(), kv::Error> {
        let client = match &self.client {
            Some(ip) => Value::from_display(ip),
            None => Value::from("-"),
        };
        visitor.visit_pair(Key::from("client"), client)?;
        visitor.visit_pair(Key::from("method"), Value::from(self.method))?;
        visitor.visit_pair(Key::from("path"), Value::from(self.path))?;
        visitor.visit_pair(Key::from("status"), Value::from(self.status))?;
        visitor.visit_pair(Key::from("bytes"), Value::from(self.bytes))?;
        visitor.visit_pair(Key::from("duration_ms"), Value::from(self.duration_ms()))?;
        visitor.visit_pair(Key::from("request_id"), Value::from(self.request_id))?;
        if let Some(model) = self.model {
            visitor.visit_pair(Key::from("model"), Value::from(model))?;
        }
        if let Some((received, sent)) = self.messages {
            visitor.visit_pair(Key::from("messages_in"), Value::from(received))?;
            visitor.visit_pair(Key::from("messages_out"), Value::from(sent))?;
        }
        Ok(())
    }
}

/// Emits the access record of a request (target `tinyserve::access`, level info).
pub(crate) fn access(record: &Access<'_>) {
    if !log::log_enabled!(target: ACCESS_TARGET, Level::Info) {
        return;
    }
    log::logger().log(
        &log::Record::builder()
            .level(Level::Info)
            .target(ACCESS_TARGET)
            .module_path_static(Some(module_path!()))
            .file_static(Some(file!()))
            .line(Some(line!()))
            .key_values(record)
            .args(format_args!(
                "{} {} {} {:.3}ms id={}",
                escape(record.method),
                escape(record.path),
                record.status,
                record.duration_ms(),
                escape(record.request_id)
            ))
            .build(),
    );
}
