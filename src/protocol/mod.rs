//! The built-in APIs over a [`ModelRegistry`]: health probes, the KServe Open Inference
//! Protocol v2, and a Flask-style predict route.

#[cfg(feature = "language-models")]
mod embeddings;
mod health;
mod metrics;
mod openai;
mod predict;
mod proxy;
mod v2;

pub use health::Readiness;
pub use openai::Generators;
pub use predict::run as predict;
pub use proxy::probe as probe_upstream;

use crate::model::ModelRegistry;
use crate::{App, Request, Upstream};

/// Adds every built-in route for `models` to `app`: `/healthz`, `/readyz`, the v2 protocol
/// under `/v2`, the OpenAI-compatible API under `/v1` (for byte-level language models, and
/// `/v1/embeddings` with text-embeddings-inference's `/embed` for encoder folders),
/// `/metrics`, `GET /models`, `POST /models/<name>/predict` and, when exactly one model is
/// loaded, `POST /predict`; and the self-documentation of [`crate::pages::mount`]:
/// `/openapi.json`, `/docs`, and the demo pages `/` and `/models/<name>`.
///
/// # Example
/// ```no_run
/// use tinyserve::{model::ModelRegistry, protocol, App};
/// let models = ModelRegistry::load_dir("models")?;
/// let ready = protocol::Readiness::new(true);
/// protocol::mount(App::new(), &models, &ready).run("127.0.0.1:8000")?;
/// # Ok::<(), tinyserve::Error>(())
/// ```
pub fn mount(app: App, models: &ModelRegistry, ready: &Readiness) -> App {
    mount_with_upstreams(app, models, ready, &[])
}

/// [`mount`], with upstream OpenAI-compatible providers: a `/v1` request whose `model` is
/// `NAME/model` goes to the upstream called `NAME`, and `GET /v1/models` lists their models.
pub fn mount_with_upstreams(
    app: App,
    models: &ModelRegistry,
    ready: &Readiness,
    upstreams: &[Upstream],
) -> App {
    let generators = Generators::from_registry(models);
    let app = health::mount(app, ready);
    let app = v2::mount(app, models, ready);
    let app = openai::mount(app, models, &generators, upstreams);
    #[cfg(feature = "language-models")]
    let app = embeddings::mount(app, models);
    let app = metrics::mount(app, models, &generators, upstreams);
    let app = predict::mount(app, models);
    crate::pages::mount(app, models)
}

/// A handler that calls `f` with its own clone of the registry.
fn with<R: 'static>(
    models: &ModelRegistry,
    f: fn(&ModelRegistry, &Request) -> R,
) -> impl Fn(&Request) -> R + Send + Sync + 'static {
    let models = models.clone();
    move |req| f(&models, req)
}
