//! The HTML pages: `/docs`, `/` and `/models/<name>`. Each is one self-contained response:
//! the layout, style and script embedded in the binary, plus a JSON config the script reads.

use serde_json::{json, Value};

use super::schema::ModelInfo;
use super::{encode_segment, html, Folder, Site};
use crate::model::{DataType, TensorSpec};
use crate::{Error, Group, Request, Response, Result, RouteDoc};

const LAYOUT: &str = include_str!("assets/layout.html");
const STYLE: &str = include_str!("assets/style.css");
const COMMON_JS: &str = include_str!("assets/common.js");
const INDEX_HTML: &str = include_str!("assets/index.html");
const DOCS_HTML: &str = include_str!("assets/docs.html");
const DOCS_JS: &str = include_str!("assets/docs.js");
const PREDICT_HTML: &str = include_str!("assets/predict.html");
const PREDICT_JS: &str = include_str!("assets/predict.js");
const CHAT_HTML: &str = include_str!("assets/chat.html");
const CHAT_JS: &str = include_str!("assets/chat.js");
const EMBED_HTML: &str = include_str!("assets/embed.html");
const EMBED_JS: &str = include_str!("assets/embed.js");

/// `GET /` and `GET /models/<name>`.
pub(super) fn demos(group: Group, site: &Site) -> Group {
    let (index_site, model_site) = (site.clone(), site.clone());
    group
        .get("/", move |req: &Request| index(&index_site, req))
        .document(
            "GET",
            "/",
            RouteDoc::new("Demo pages: the loaded models")
                .with_description("Links to each model's demo page and to the API docs.")
                .with_tag("Docs")
                .with_response(html())
                .with_errors(&[]),
        )
        .get("/models/<name>", move |req: &Request| {
            model(&model_site, req)
        })
        .document(
            "GET",
            "/models/<name>",
            RouteDoc::new("A model's demo page")
                .with_description(
                    "A form built from the model's signature, pre-filled with a valid \
                     example, that calls the predict route (class probabilities as bars); for \
                     a byte-level language model or a decoder folder, a chat that streams its \
                     answer; for an encoder folder, texts embedded and compared by cosine \
                     similarity. A plain model's JSON metadata is `GET /v2/models/{name}`.",
                )
                .with_tag("Docs")
                .with_response(html())
                .with_errors(&[404]),
        )
}

/// `GET /docs`.
pub(super) fn docs(site: &Site, req: &Request) -> Response {
    let config = json!({"root": req.root_path()});
    page(site, req, "API docs", DOCS_HTML, &config, DOCS_JS)
}

/// `GET /`: the models, each linking to its demo.
fn index(site: &Site, req: &Request) -> Response {
    let root = escape(req.root_path());
    let described = site.models.now();
    let mut entries: Vec<(&str, &str, String)> = Vec::new();
    for info in &described.infos {
        let kind = match (
            info.generative,
            classifier_output(&info.model.signature().outputs),
        ) {
            (true, _) => "chat",
            (false, Some(_)) => "classifier",
            (false, None) => "form",
        };
        let sig = info.model.signature();
        let text = format!("{} → {}", specs_text(&sig.inputs), specs_text(&sig.outputs));
        entries.push((info.model.name(), kind, text));
    }
    for folder in &described.folders {
        let (kind, text) = match folder {
            Folder::Decoder { .. } => ("chat", "decoder folder: /v1/chat/completions".to_string()),
            Folder::Encoder { detail, .. } => ("embeddings", format!("encoder folder: {detail}")),
        };
        entries.push((folder.name(), kind, text));
    }
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let mut items = String::new();
    for (name, kind, text) in entries {
        items.push_str(&format!(
            "<li><a class=\"model\" href=\"{root}/models/{href}\">{name}</a> \
             <span class=\"badge\">{kind}</span><div class=\"sig\">{text}</div></li>\n",
            href = escape(&encode_segment(name)),
            name = escape(name),
            text = escape(&text),
        ));
    }
    if items.is_empty() {
        items.push_str("<li>No model is loaded.</li>");
    }
    let body = fill(INDEX_HTML, &[("models", &items), ("root", &root)]);
    page(
        site,
        req,
        "Models",
        &body,
        &json!({"root": req.root_path()}),
        "",
    )
}

/// `GET /models/<name>`: the model's demo.
fn model(site: &Site, req: &Request) -> Result<Response> {
    let name = req.param("name").unwrap_or_default();
    let described = site.models.now();
    if let Some(folder) = described.folders.iter().find(|f| f.name() == name) {
        return Ok(folder_demo(site, req, folder));
    }
    let info = described
        .infos
        .iter()
        .find(|info| info.model.name() == name)
        .ok_or_else(|| Error::model_not_found(name))?;
    let root = req.root_path();
    let encoded = encode_segment(name);
    let sig = info.model.signature();
    let config = json!({
        "root": root,
        "model": {"name": name, "inputs": sig.inputs, "outputs": sig.outputs},
        "example": example_of(info),
        "classifier": classifier_output(&sig.outputs),
        "predict": format!("{root}/models/{encoded}/predict"),
        "chat": format!("{root}/v1/chat/completions"),
    });
    let title = format!("{name} demo");
    let name = escape(name);
    let (body, script) = match info.generative {
        true => (
            fill(
                CHAT_HTML,
                &[("name", &name), ("kind", "A byte-level language model")],
            ),
            CHAT_JS,
        ),
        false => (fill(PREDICT_HTML, &[("name", &name)]), PREDICT_JS),
    };
    Ok(page(site, req, &title, &body, &config, script))
}

/// The demo of a decoder folder (a chat) or an encoder folder (embeddings compared).
fn folder_demo(site: &Site, req: &Request, folder: &Folder) -> Response {
    let root = req.root_path();
    let name = folder.name();
    let config = json!({
        "root": root,
        "model": {"name": name},
        "chat": format!("{root}/v1/chat/completions"),
        "embeddings": format!("{root}/v1/embeddings"),
    });
    let title = format!("{name} demo");
    let name = escape(name);
    let (body, script) = match folder {
        Folder::Decoder { .. } => (
            fill(
                CHAT_HTML,
                &[
                    ("name", &name),
                    ("kind", "A language model (a decoder folder)"),
                ],
            ),
            CHAT_JS,
        ),
        Folder::Encoder { detail, .. } => (
            fill(EMBED_HTML, &[("name", &name), ("detail", &escape(detail))]),
            EMBED_JS,
        ),
    };
    page(site, req, &title, &body, &config, script)
}

fn example_of(info: &ModelInfo) -> Value {
    info.example
        .as_ref()
        .and_then(|e| e.get("inputs"))
        .cloned()
        .unwrap_or(Value::Null)
}

/// The output that looks like class probabilities: FP32 `[batch, k]` with a static `k` > 1.
/// The page still checks that each row sums to about 1 before drawing bars.
fn classifier_output(outputs: &[TensorSpec]) -> Option<&str> {
    outputs
        .iter()
        .find(|s| s.datatype == DataType::Fp32 && s.shape.len() == 2 && s.shape[1] > 1)
        .map(|s| s.name.as_str())
}

fn specs_text(specs: &[TensorSpec]) -> String {
    let parts: Vec<String> = specs
        .iter()
        .map(|s| format!("{} {} {}", s.name, s.datatype, s.shape_text()))
        .collect();
    parts.join(", ")
}

/// The layout around `body`, with the config as JSON and the common script before `script`.
fn page(
    site: &Site,
    req: &Request,
    title: &str,
    body: &str,
    config: &Value,
    script: &str,
) -> Response {
    let root = escape(req.root_path());
    let mut nav = String::new();
    if site.demos {
        nav.push_str(&format!("<a href=\"{root}/\">Models</a>"));
    }
    nav.push_str(&format!(
        "<a href=\"{root}/docs\">API docs</a><a href=\"{root}/openapi.json\">openapi.json</a>"
    ));
    let script = format!("{COMMON_JS}\n{script}");
    let html = fill(
        LAYOUT,
        &[
            ("title", &escape(title)),
            ("style", STYLE),
            ("nav", &nav),
            ("body", body),
            ("config", &script_json(config)),
            ("script", &script),
        ],
    );
    Response::html(html).with_header("Cache-Control", "no-cache")
}

/// Replaces each `{{key}}` of `template` in one pass: inserted text is never scanned again.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let key = after.find("}}").map(|end| &after[..end]);
        match key.and_then(|k| values.iter().find(|(name, _)| *name == k)) {
            Some((key, value)) => {
                out.push_str(value);
                rest = &after[key.len() + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// JSON that is safe inside `<script>`: no `<`, `>` or `&` appear literally.
fn script_json(value: &Value) -> String {
    value
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_replaces_known_keys_once() {
        let out = fill("<{{a}}|{{b}}|{{c}}>", &[("a", "{{b}}"), ("b", "2")]);
        assert_eq!(out, "<{{b}}|2|{{c}}>");
    }

    #[test]
    fn script_json_cannot_close_the_script() {
        let text = script_json(&json!({"name": "</script><b>&"}));
        assert!(!text.contains('<') && !text.contains('&'));
        let back: Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(back["name"], "</script><b>&");
    }

    #[test]
    fn escape_html() {
        assert_eq!(
            escape("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
    }
}
