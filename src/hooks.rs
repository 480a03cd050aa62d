//! Hooks: code that runs around the handlers of an app or of a [`Group`](crate::Group), as
//! Flask's `before_request`, `after_request` and `errorhandler` do.
//!
//! A request goes through, in order:
//! 1. the built-in checks on the head, set by [`crate::Settings`]: a CORS preflight is
//!    answered, a missing API key refused;
//! 2. the app's before hooks, then its group's, in the order registered; the first that
//!    answers ends the request there;
//! 3. the handler (or the router's 404 or 405);
//! 4. an error handler, when the response is an error ([`Response::error_code`]): the group's
//!    first, then the app's; one selected by code before one selected by status;
//! 5. the group's after hooks, then the app's, each in the reverse order of registration (the
//!    first registered sees the response last, as in Flask); then the CORS headers;
//! 6. the access log's record, once the answer is written (its bytes and time known then),
//!    with the model the response records ([`Response::with_model`]).
//!
//! Steps 1 and 2 run on the request head, before the server reads the body or sends
//! `100 Continue`: a refused request costs no upload, and a before hook sees an empty
//! [`Request::body`]. Steps 4 and 5 run on every answer of the app, the early ones of steps 1
//! and 2 included; not on those the transport gives before a request exists (400 for a
//! malformed head, 408, 413, 431, and 503 when the server is full).
//!
//! Each step runs once per request. A hook that panics becomes a 500, as a handler does.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::{Error, Headers, IntoResponse, Request, Response};

type Before = Arc<dyn Fn(&Request) -> Option<Response> + Send + Sync>;
type After = Arc<dyn Fn(&Request, Response) -> Response + Send + Sync>;
type OnError = Arc<dyn Fn(&Request, Response) -> Response + Send + Sync>;

/// Which error responses an error handler takes: those of a status (`404`) or those of an
/// error code (`"unauthorized"`, `"invalid_body"`; see [`crate::ErrorKind::code`]).
///
/// # Example
/// ```
/// use tinyserve::hooks::ErrorMatch;
/// assert_eq!(ErrorMatch::from(404), ErrorMatch::Status(404));
/// assert_eq!(ErrorMatch::from("unauthorized"), ErrorMatch::Code("unauthorized".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorMatch {
    /// Every error response with this status.
    Status(u16),
    /// Every error response with this code.
    Code(String),
}

impl From<u16> for ErrorMatch {
    fn from(status: u16) -> ErrorMatch {
        ErrorMatch::Status(status)
    }
}

impl From<String> for ErrorMatch {
    fn from(code: String) -> ErrorMatch {
        ErrorMatch::Code(code)
    }
}

impl From<&str> for ErrorMatch {
    fn from(code: &str) -> ErrorMatch {
        ErrorMatch::Code(code.to_string())
    }
}

/// The hooks of an app or a group.
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    before: Vec<Before>,
    after: Vec<After>,
    errors: Vec<(ErrorMatch, OnError)>,
}

impl Hooks {
    pub(crate) fn add_before<F, R>(&mut self, hook: F)
    where
        F: Fn(&Request) -> Option<R> + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.before
            .push(Arc::new(move |req| hook(req).map(R::into_response)));
    }

    pub(crate) fn add_after<F>(&mut self, hook: F)
    where
        F: Fn(&Request, Response) -> Response + Send + Sync + 'static,
    {
        self.after.push(Arc::new(hook));
    }

    pub(crate) fn add_error<F, R>(&mut self, which: ErrorMatch, handler: F)
    where
        F: Fn(&Request, Response) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        let handler: OnError = Arc::new(move |req, res| handler(req, res).into_response());
        self.errors.push((which, handler));
    }

    /// The hooks of a group nested in one with `self`'s: the outer before hooks first, its
    /// after hooks last, its error handlers after the inner ones.
    pub(crate) fn around(&self, inner: &Hooks) -> Hooks {
        Hooks {
            before: self.before.iter().chain(&inner.before).cloned().collect(),
            after: self.after.iter().chain(&inner.after).cloned().collect(),
            errors: inner.errors.iter().chain(&self.errors).cloned().collect(),
        }
    }

    /// The first before hook's answer, if one answers.
    pub(crate) fn run_before(&self, req: &Request) -> Option<Response> {
        self.before.iter().find_map(|hook| {
            catch_unwind(AssertUnwindSafe(|| hook(req)))
                .unwrap_or_else(|panic| Some(panicked(req, "a before hook", &*panic)))
        })
    }

    /// The response after every after hook, the last registered first.
    pub(crate) fn run_after(&self, req: &Request, mut response: Response) -> Response {
        for hook in self.after.iter().rev() {
            response = catch_unwind(AssertUnwindSafe(|| hook(req, response)))
                .unwrap_or_else(|panic| panicked(req, "an after hook", &*panic));
        }
        response
    }

    /// Whether an error handler takes `response`.
    pub(crate) fn takes(&self, response: &Response) -> bool {
        self.error_handler(response).is_some()
    }

    /// Runs the error handler that takes `response`, if any. The error's own headers (`Allow`,
    /// `WWW-Authenticate`, `Retry-After`) stay unless the handler sets them.
    pub(crate) fn run_error(&self, req: &Request, response: Response) -> Response {
        let Some(handler) = self.error_handler(&response) else {
            return response;
        };
        let handler = Arc::clone(handler);
        let kept: Headers = response
            .headers()
            .iter()
            .filter(|(name, _)| !name.eq_ignore_ascii_case("Content-Type"))
            .collect();
        let mut answer = catch_unwind(AssertUnwindSafe(|| handler(req, response)))
            .unwrap_or_else(|panic| panicked(req, "an error handler", &*panic));
        for (name, value) in kept {
            if !answer.headers().contains(&name) {
                answer.headers_mut().append(name, value);
            }
        }
        answer
    }

    /// The handler for `response`'s error code, else for its status.
    fn error_handler(&self, response: &Response) -> Option<&OnError> {
        let code = response.error_code()?;
        let by = |which: &ErrorMatch| self.errors.iter().find(|(selector, _)| selector == which);
        by(&ErrorMatch::Code(code.to_string()))
            .or_else(|| by(&ErrorMatch::Status(response.status())))
            .map(|(_, handler)| handler)
    }
}

/// The 500 for code that panicked while answering `req`; the panic's message goes to the log.
pub(crate) fn panicked(req: &Request, what: &str, panic: &(dyn std::any::Any + Send)) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    let message = format!(
        "{what} for {} {} panicked: {message}",
        req.method(),
        req.path()
    );
    Response::from_error(&Error::internal(message))
}
