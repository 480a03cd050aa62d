//! `GET /healthz` (the process is up) and `GET /readyz` (models loaded, not shutting down): a
//! group without the API key, so a probe needs no secret wherever the routes are mounted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::model::ModelRepository;
use crate::{Error, ErrorKind, Group, Json, Result, RouteDoc};

/// Whether the server should receive traffic. Cheap to clone; clones share one flag.
/// Shutdown turns it off first, so load balancers stop sending before the server stops.
#[derive(Debug, Clone)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// A flag starting at `ready`.
    pub fn new(ready: bool) -> Readiness {
        Readiness(Arc::new(AtomicBool::new(ready)))
    }

    /// Sets the flag.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    /// Reads the flag.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// `Ok` when ready, else a 503 `not_ready` error.
    pub(crate) fn check(&self) -> Result<()> {
        if self.is_ready() {
            Ok(())
        } else {
            Err(Error::new(ErrorKind::NotReady, "server is not ready"))
        }
    }
}

/// `Ok` when the server is ready and every model that should be loaded is, else a 503
/// `not_ready` error naming the first model that is not and why.
pub(super) fn serving(ready: &Readiness, repository: &ModelRepository) -> Result<()> {
    ready.check()?;
    let failures = repository.failures();
    match failures.first() {
        None => Ok(()),
        Some((name, why)) => Err(Error::new(
            ErrorKind::NotReady,
            format!(
                "{} model(s) not ready; model \"{name}\": {why}",
                failures.len()
            ),
        )),
    }
}

pub(super) fn group(ready: &Readiness, repository: &ModelRepository) -> Group {
    let (ready, repository) = (ready.clone(), repository.clone());
    Group::new()
        .without_key()
        .get("/healthz", |_| Json(serde_json::json!({"status": "ok"})))
        .get("/readyz", move |_| {
            serving(&ready, &repository).map(|()| Json(serde_json::json!({"status": "ready"})))
        })
        .document(
            "GET",
            "/healthz",
            RouteDoc::new("Liveness: the process is up")
                .with_tag("Health")
                .with_response(status("ok"))
                .with_errors(&[]),
        )
        .document(
            "GET",
            "/readyz",
            RouteDoc::new("Readiness: models loaded, not shutting down")
                .with_description(
                    "503 `not_ready` while a model that should be loaded is not (it failed \
                     to load: see `POST /v2/repository/index`), and from the moment a \
                     shutdown starts.",
                )
                .with_tag("Health")
                .with_response(status("ready"))
                .with_errors(&[503]),
        )
}

fn status(value: &str) -> serde_json::Value {
    serde_json::json!({"type": "object", "required": ["status"],
        "properties": {"status": {"const": value}}})
}
