//! The built-in APIs over a [`ModelRegistry`]: health probes, the KServe Open Inference
//! Protocol v2, and a Flask-style predict route.

#[cfg(feature = "language-models")]
mod embeddings;
mod health;
mod metrics;
mod openai;
mod predict;
mod proxy;
mod repository;
mod v2;

pub use health::Readiness;
pub use openai::Generators;
pub use predict::run as predict;
pub use proxy::probe as probe_upstream;

use crate::model::{ModelRegistry, ModelRepository};
use crate::{App, Request, Upstream};

/// Adds every built-in route for `models` to `app`: `/healthz`, `/readyz`, the v2 protocol
/// under `/v2`, the OpenAI-compatible API under `/v1` (for byte-level language models, and
/// `/v1/embeddings` with text-embeddings-inference's `/embed` for encoder folders),
/// `/metrics`, `GET /models`, `POST /models/<name>/predict` and, when exactly one model is
/// loaded, `POST /predict`; and the self-documentation of [`crate::docs::mount`]:
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
    let repository = ModelRepository::from_registry(models.clone());
    mount_repository(app, &repository, ready, upstreams)
}

/// [`mount_with_upstreams`] over a [`ModelRepository`] whose models may change while the
/// server runs: the v2 and predict routes take the models of the moment at each request,
/// and Triton's model repository extension (`/v2/repository/...`) and statistics extension
/// (`/v2/models/NAME/stats`) are added. The `/v1` routes (generation and embeddings) and the
/// OpenAPI document serve the models loaded when this is called.
///
/// # Example
/// ```no_run
/// use tinyserve::model::{ControlMode, ModelOptions, ModelRepository};
/// use tinyserve::{protocol, App};
/// let repository = ModelRepository::open("models", &ModelOptions::default(), ControlMode::All, &[])?;
/// let ready = protocol::Readiness::new(true);
/// protocol::mount_repository(App::new(), &repository, &ready, &[]).run("127.0.0.1:8000")?;
/// # Ok::<(), tinyserve::Error>(())
/// ```
pub fn mount_repository(
    app: App,
    repository: &ModelRepository,
    ready: &Readiness,
    upstreams: &[Upstream],
) -> App {
    let models = repository.registry();
    let generators = Generators::from_registry(&models);
    let app = health::mount(app, ready, repository);
    let app = v2::mount(app, repository, ready);
    let app = repository::mount(app, repository);
    let app = openai::mount(app, &models, &generators, upstreams);
    #[cfg(feature = "language-models")]
    let app = embeddings::mount(app, &models);
    let app = metrics::mount(app, repository, &generators, upstreams);
    let app = predict::mount(app, repository);
    crate::docs::mount(app, &models)
}

/// A handler that calls `f` with the models of the moment: a request keeps them to its end.
fn with<R: 'static>(
    repository: &ModelRepository,
    f: fn(&ModelRegistry, &Request) -> R,
) -> impl Fn(&Request) -> R + Send + Sync + 'static {
    let repository = repository.clone();
    move |req| f(&repository.registry(), req)
}

/// A handler that calls `f` with the repository.
fn with_repository<R: 'static>(
    repository: &ModelRepository,
    f: fn(&ModelRepository, &Request) -> R,
) -> impl Fn(&Request) -> R + Send + Sync + 'static {
    let repository = repository.clone();
    move |req| f(&repository, req)
}
