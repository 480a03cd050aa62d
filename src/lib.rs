//! tinyserve: a Flask-style web framework and model server on blocking threads.
//!
//! A handler is a plain function from a [`Request`] to anything that becomes a [`Response`]
//! (text, [`Json`], a `(status, body)` pair, a [`Result`]); an [`App`] maps methods and paths
//! to handlers and binds to an address:
//!
//! ```no_run
//! use tinyserve::App;
//!
//! App::new()
//!     .get("/", |_| "Hello, world!")
//!     .run("127.0.0.1:8000")?;
//! # Ok::<(), tinyserve::Error>(())
//! ```
//!
//! # The modules
//! - **The handler API**, re-exported at the top: [`App`] and [`Settings`] ([`app`]), route
//!   groups ([`Group`]), hooks before and after the handlers and error handlers ([`hooks`]),
//!   static files ([`static_files`]), a [`TestClient`] that runs requests through the app
//!   without a socket,
//!   [`Request`], [`Response`] and [`Json`], [`Headers`], [`Error`] and [`Result`], streamed
//!   bodies ([`stream`], [`Disconnected`]) and Server-Sent Events ([`Sse`], [`Event`]), the route
//!   documentation behind `/openapi.json` ([`catalog`]); typed routes whose body is checked
//!   and documented from its type ([`typed`], [`FieldError`]); WebSocket routes
//!   ([`websocket`], [`App::websocket`]).
//! - **The transport**, [`http`]: the server's lifecycle ([`Server`]), admission (worker turns,
//!   the queue, 503s), the connection loop, the HTTP/1.1 wire format and forwarded headers.
//!   A handler author may skip it.
//! - **Services** beside it: outbound calls and fan-out ([`fanout`]: [`Upstream`], [`Call`],
//!   [`FanOut`]), request metrics ([`metrics`]) and the log ([`log`]).
//! - **The model server** built on the above: [`model`] (ONNX models loaded from a folder,
//!   tensors, batching), [`protocol`] (the KServe v2, predict, OpenAI and health routes) and
//!   [`pages`] (the web pages: the OpenAPI document, the docs page and the demo pages; the
//!   markdown documentation is the repository's `docs/` folder).
#![forbid(unsafe_code)]

pub mod app;
pub mod catalog;
#[cfg(doctest)]
mod doctests;
mod error;
pub mod fanout;
mod group;
mod headers;
pub mod hooks;
pub mod http;
mod ids;
mod layers;
pub mod log;
pub mod metrics;
pub mod model;
pub mod pages;
pub mod protocol;
mod request;
mod response;
mod router;
mod serving;
pub mod sse;
pub mod static_files;
pub mod stream;
mod test_client;
pub mod typed;
pub mod websocket;

pub use app::{App, Settings};
pub use error::{Error, ErrorKind, FieldError, Result};
pub use fanout::{Call, FanOut, Upstream};
pub use group::Group;
pub use headers::Headers;
pub use http::Server;
pub use request::Request;
pub use response::{IntoResponse, Json, Response};
pub use sse::{Event, Sse};
pub use stream::Disconnected;
pub use test_client::{TestClient, TestResponse};

// Short paths for the crate's own code; outside it these are reached through their modules.
pub(crate) use catalog::{RouteCatalog, RouteDoc, RouteInfo};
pub(crate) use http::TrustedProxies;
pub(crate) use metrics::{Histogram, ServerMetrics};
pub(crate) use sse::EventSender;
pub(crate) use stream::BodySender;
