//! tinyserve: a Flask-style model server.
#![forbid(unsafe_code)]

mod app;
mod catalog;
pub mod docs;
mod error;
mod fanout;
mod headers;
pub mod http;
mod ids;
pub mod log;
mod metrics;
pub mod model;
pub mod protocol;
mod request;
mod response;
mod router;
mod sse;
mod stream;

pub use app::{ApiKey, App, Settings, DEFAULT_WORKERS};
pub use catalog::{RouteCatalog, RouteDoc, RouteInfo};
pub use error::{Error, ErrorKind, Result};
pub use fanout::{Call, FanOut, Upstream, UpstreamReply, DEFAULT_FANOUT_THREADS};
pub use headers::Headers;
pub use http::TrustedProxies;
pub use http::{Server, ShutdownHandle};
pub use log::{LogFormat, LogLevel};
pub use metrics::{Histogram, ServerMetrics};
pub use request::Request;
pub use response::{IntoResponse, Json, Response};
pub use sse::{Event, EventSender, Sse};
pub use stream::{BodySender, Disconnected};
