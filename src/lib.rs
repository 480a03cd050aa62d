//! tinyserve: a Flask-style model server.
#![forbid(unsafe_code)]

mod app;
mod catalog;
pub mod docs;
#[cfg(doctest)]
mod doctests;
mod error;
mod fanout;
mod forwarded;
mod framing;
mod ids;
pub mod log;
mod metrics;
pub mod model;
pub mod protocol;
mod request;
mod response;
mod router;
mod server;
mod slots;
mod sse;
mod stream;
mod wire;

pub use app::{ApiKey, App, Settings, DEFAULT_WORKERS};
pub use catalog::{RouteCatalog, RouteDoc, RouteInfo};
pub use error::{Error, ErrorKind, Result};
pub use fanout::{Call, FanOut, Upstream, UpstreamReply, DEFAULT_FANOUT_THREADS};
pub use forwarded::TrustedProxies;
pub use log::{LogFormat, LogLevel};
pub use metrics::{Histogram, ServerMetrics};
pub use request::Request;
pub use response::{IntoResponse, Json, Response};
pub use server::{Server, ShutdownHandle};
pub use sse::{Event, EventSender, Sse};
pub use stream::{BodySender, Disconnected};
