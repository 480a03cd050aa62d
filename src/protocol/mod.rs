//! The built-in APIs over a [`ModelRegistry`]: health probes, the KServe Open Inference
//! Protocol v2, a Flask-style predict route, the OpenAI-compatible `/v1`, metrics and the web
//! pages, mounted together as one route group by [`mount`].

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
use crate::{App, Group, Request, Upstream};

/// Adds every built-in route for `models` to `app`: `/healthz`, `/readyz`, the v2 protocol
/// under `/v2`, the OpenAI-compatible API under `/v1` (for byte-level language models, and
/// `/v1/embeddings` with text-embeddings-inference's `/embed` for encoder folders),
/// `/metrics`, `GET /models`, `POST /models/<name>/predict` and, when exactly one model is
/// loaded, `POST /predict`; and the self-documentation of [`crate::pages::mount`]:
/// `/openapi.json`, `/docs`, and the demo pages `/` and `/models/<name>`.
///
/// The routes come as one [`Group`] mounted at the root, so the app's hooks and API key cover
/// them as they cover the app's own routes; `/healthz` and `/readyz` are a group
/// [without the key](Group::without_key), so a probe needs no secret (the v2 health routes
/// are public through [`crate::Settings::public_paths`]).
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
/// server runs: the v2, predict and `/v1` routes (generation, `GET /v1/models`, embeddings
/// and `/embed`) and `/metrics` take the models of the moment at each request, and Triton's
/// model repository extension (`/v2/repository/...`) and statistics extension
/// (`/v2/models/NAME/stats`) are added. The OpenAPI document and the web pages describe the
/// models of the moment too.
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
    app.mount("/", group(repository, ready, upstreams))
}

/// The built-in routes as one group: the health probes (without the key), v2 with the
/// repository extension, `/v1` with the embeddings, `/metrics`, predict, and the pages, in
/// that order (the OpenAPI document's). `/metrics` and the pages are built from the app the
/// group is mounted on: its server metrics, its route catalog and settings.
fn group(repository: &ModelRepository, ready: &Readiness, upstreams: &[Upstream]) -> Group {
    let current = openai::CurrentGenerators::new(repository);
    let openai = openai::mount(Group::new(), &current, upstreams);
    #[cfg(feature = "language-models")]
    let openai = embeddings::mount(openai, repository);
    let listed = upstreams.to_vec();
    let documented = repository.clone();
    Group::new()
        .mount("/", health::group(ready, repository))
        .mount("/", v2::mount(Group::new(), repository, ready))
        .mount("/", repository::mount(Group::new(), repository))
        .mount("/", openai)
        .with_app(move |app| metrics::group(app, &current, &listed))
        .mount("/", predict::mount(Group::new(), repository))
        .with_app(move |app| crate::pages::live_group(app, &documented))
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
