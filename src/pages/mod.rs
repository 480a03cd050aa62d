//! A self-documenting server: the OpenAPI 3.1 document (`GET /openapi.json`), a readable docs
//! page (`GET /docs`), and a demo page for each model (`GET /` lists them, `GET
//! /models/<name>` is one), all generated from the app's route catalog and its loaded models.
//!
//! Every page is self-contained: its HTML, CSS and JavaScript are compiled into the binary, so
//! it works offline, and every URL it uses starts with the request's
//! [`root_path`](crate::Request::root_path), so it works behind `--root-path` or a proxy's
//! `X-Forwarded-Prefix`. The OpenAPI document is built at each request from the shared
//! catalog: routes added after mounting show up too.
//!
//! A model's example request is read from `NAME.example.json` next to `NAME.onnx` (a predict
//! body, `{"inputs": {"input": [[5.1, 3.5, 1.4, 0.2]]}}`), when that file exists and fits the
//! signature; otherwise one is made from the signature.

mod html;
pub mod openapi;
mod schema;

use std::sync::Arc;

use serde_json::json;

pub use openapi::OPENAI_TAG;

use crate::model::{ModelRegistry, ModelRepository};
use crate::{App, Group, Json, Request, RouteCatalog, RouteDoc};
use schema::ModelInfo;

/// What the docs routes serve: the catalog, and the models with their examples.
#[derive(Clone)]
struct Site {
    catalog: RouteCatalog,
    models: Models,
    /// Whether the demo pages (`/`, `/models/<name>`) are mounted, for the page header.
    demos: bool,
    /// The routes the app's API key guards, for the 401 answers.
    auth: openapi::Auth,
}

/// Adds `GET /openapi.json`, `GET /docs`, `GET /` (the models, with links to their demos and
/// to the docs) and `GET /models/<name>` (a model's demo page: a form for a regular model, a
/// streaming chat for a byte-level language model or a decoder folder, an embeddings
/// comparison for an encoder folder) to `app`.
///
/// `tinyserve serve` mounts it through [`protocol::mount`](crate::protocol::mount). The demo
/// pages call `POST /models/<name>/predict`, `POST /v1/chat/completions` and
/// `POST /v1/embeddings`, so mount the built-in routes too for them to work.
///
/// # Example
/// ```no_run
/// use tinyserve::{pages, model::ModelRegistry, App};
/// let models = ModelRegistry::load_dir("models")?;
/// let app = App::new().get("/hello", |_| "Hello!");
/// pages::mount(app, &models).run("127.0.0.1:8000")?;
/// # Ok::<(), tinyserve::Error>(())
/// ```
pub fn mount(app: App, models: &ModelRegistry) -> App {
    let pages = group(&app, models);
    app.mount("/", pages)
}

/// The routes of [`mount`] as a group, for the app `app` (whose routes it documents).
pub(crate) fn group(app: &App, models: &ModelRegistry) -> Group {
    site_group(app, Models::Fixed(Arc::new(Described::of(models))))
}

/// The routes of [`mount`] over a repository whose models may change while the server runs:
/// the document and the pages describe the models of the moment at each request.
pub(crate) fn live_group(app: &App, repository: &ModelRepository) -> Group {
    site_group(app, Models::Live(repository.clone()))
}

fn site_group(app: &App, models: Models) -> Group {
    let site = Site {
        catalog: app.catalog(),
        models,
        demos: true,
        auth: auth(app),
    };
    html::demos(docs(Group::new(), &site), &site)
}

/// Where the pages find the models: a registry described once, or a repository described
/// again at each request (a model loaded, replaced or unloaded shows at once).
#[derive(Clone)]
enum Models {
    Fixed(Arc<Described>),
    Live(ModelRepository),
}

impl Models {
    /// The models as they are now.
    fn now(&self) -> Arc<Described> {
        match self {
            Models::Fixed(described) => Arc::clone(described),
            Models::Live(repository) => Arc::new(Described::of(&repository.registry())),
        }
    }
}

/// The models with their examples, and the decoder and encoder folders (each with a demo page
/// of its own).
#[derive(Default)]
struct Described {
    infos: Vec<ModelInfo>,
    folders: Vec<Folder>,
}

impl Described {
    fn of(models: &ModelRegistry) -> Described {
        Described {
            infos: models.iter().map(ModelInfo::new).collect(),
            folders: Folder::all(models),
        }
    }
}

/// Adds only `GET /openapi.json` and `GET /docs`, documenting whatever routes `app` has
/// (and those added later): for apps that serve no models.
///
/// # Example
/// ```
/// use tinyserve::catalog::RouteDoc;
/// use tinyserve::{pages, App};
/// let app = App::new()
///     .get("/hello", |_| "Hello!")
///     .document("GET", "/hello", RouteDoc::new("Say hello"));
/// let app = pages::mount_openapi(app);
/// let routes = app.catalog().routes();
/// assert!(routes.iter().any(|r| r.pattern == "/openapi.json"));
/// ```
pub fn mount_openapi(app: App) -> App {
    let site = Site {
        catalog: app.catalog(),
        models: Models::Fixed(Arc::new(Described::default())),
        demos: false,
        auth: auth(&app),
    };
    app.mount("/", docs(Group::new(), &site))
}

/// `GET /openapi.json` and `GET /docs`.
fn docs(group: Group, site: &Site) -> Group {
    let (openapi_site, docs_site) = (site.clone(), site.clone());
    group
        .get("/openapi.json", move |req: &Request| {
            Json(openapi::build(
                &openapi_site.catalog,
                &openapi_site.models.now().infos,
                req.root_path(),
                &openapi_site.auth,
            ))
        })
        .document(
            "GET",
            "/openapi.json",
            RouteDoc::new("This API as an OpenAPI 3.1 document")
                .with_description(
                    "Every route of the server, with a concrete predict and v2 infer path per \
                 loaded model whose schemas come from the model's signature. `servers` \
                 follows `--root-path` and a trusted `X-Forwarded-Prefix`.",
                )
                .with_tag("Docs")
                .with_response(
                    json!({"type": "object", "required": ["openapi", "info", "paths"],
                "properties": {"openapi": {"const": "3.1.0"}}}),
                )
                .with_errors(&[]),
        )
        .get("/docs", move |req: &Request| html::docs(&docs_site, req))
        .document(
            "GET",
            "/docs",
            RouteDoc::new("This API as a web page")
                .with_description("Rendered in the browser from `openapi.json`; works offline.")
                .with_tag("Docs")
                .with_response(html())
                .with_errors(&[]),
        )
}

/// A model folder served through `/v1` rather than the predict routes: its demo is a chat (a
/// decoder) or an embeddings comparison (an encoder).
#[derive(Debug, Clone)]
enum Folder {
    Decoder {
        name: String,
    },
    // Encoder folders load with the `language-models` feature only.
    #[cfg_attr(not(feature = "language-models"), allow(dead_code))]
    Encoder {
        name: String,
        detail: String,
    },
}

impl Folder {
    /// The registry's decoder and encoder folders.
    fn all(models: &ModelRegistry) -> Vec<Folder> {
        #[cfg_attr(not(feature = "language-models"), allow(unused_mut))]
        let mut folders: Vec<Folder> = models
            .decoder_names()
            .map(|name| Folder::Decoder {
                name: name.to_string(),
            })
            .collect();
        #[cfg(feature = "language-models")]
        folders.extend(models.encoders().map(|encoder| Folder::Encoder {
            name: encoder.name().to_string(),
            detail: format!(
                "{}-dimensional vectors, texts up to {} tokens",
                encoder.dimension(),
                encoder.max_length()
            ),
        }));
        folders
    }

    fn name(&self) -> &str {
        match self {
            Folder::Decoder { name } | Folder::Encoder { name, .. } => name,
        }
    }
}

/// What the app's settings say about its API key (read when the docs are mounted: set the
/// key before mounting).
fn auth(app: &App) -> openapi::Auth {
    let settings = app.settings();
    openapi::Auth {
        public: settings
            .api_key
            .as_ref()
            .map(|_| settings.public_paths.clone()),
    }
}

/// The schema of a 200 `text/html` answer.
fn html() -> serde_json::Value {
    json!({"type": "string", "contentMediaType": "text/html"})
}

/// Percent-encodes all but RFC 3986's unreserved characters, for a path segment.
pub(crate) fn encode_segment(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn model_names_are_percent_encoded() {
        assert_eq!(super::encode_segment("my model/v1"), "my%20model%2Fv1");
        assert_eq!(super::encode_segment("iris-2.0_x~"), "iris-2.0_x~");
    }
}
