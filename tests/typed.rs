//! Typed routes (issue #22): `examples/typed.rs`'s app on a real server, bodies with many
//! mistakes answered with all of them at their paths, the OpenAPI document derived from the
//! types, checked by openapi-spec-validator and fuzzed by schemathesis.

use std::process::Command;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tinyserve::catalog::RouteDoc;
use tinyserve::{App, Json, Request};

use crate::docs::live::{after, assert_ok, CHECKS};
use crate::support::process::run;
use crate::support::python::python_env;
use crate::support::{repo, TestApp, TestServer};

/// The example itself: its `app()` is what `cargo run --example typed` serves.
#[allow(dead_code)]
#[path = "../examples/typed.rs"]
mod example;

/// Another `Item`, for a second route: the document must keep both, under two names.
mod labels {
    use super::*;

    /// A label and how sure it is.
    #[derive(Debug, Deserialize, Serialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct Item {
        #[schemars(regex(pattern = r"^[a-z]+(-[a-z]+)*$"))]
        pub label: String,
        pub confidence: Option<f32>,
    }
}

/// The example's app, plus a second typed route whose types clash by name with the first's,
/// one with a summary and an error status added by hand, and a typed GET.
fn app() -> App {
    example::app()
        .post_typed("/labels", |_: &Request, items: Vec<labels::Item>| {
            Json(items.len())
        })
        .document(
            "POST",
            "/labels",
            RouteDoc::new("Count labels").with_errors(&[404]),
        )
        .get_typed("/labels/known", |_| {
            Json(vec![labels::Item {
                label: "cat".into(),
                confidence: Some(0.5),
            }])
        })
}

fn mistakes(reply: &crate::support::Reply) -> Vec<(String, String)> {
    let body = reply.json();
    let list = body["errors"].as_array().cloned().unwrap_or_default();
    list.iter()
        .map(|e| {
            let text = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (text("path"), text("message"))
        })
        .collect()
}

#[test]
fn every_mistake_is_answered_at_once_with_its_path() {
    let client = TestApp(example::app());
    let body = json!({
        "items": [{"text": "fine"}, {"text": "", "weight": -1}, {"weight": 2}],
        "top_k": 0,
        "extra": true,
    });
    let reply = client.post_json("/score", &body);
    reply.assert_error(400, "invalid_body", "5 mistakes");
    assert_eq!(
        mistakes(&reply),
        [
            ("items[1].text", "expected at least 1 character, got 0"),
            ("items[1].weight", "expected at least 0.0, got -1"),
            ("items[2]", "missing field \"text\""),
            ("top_k", "expected at least 1, got 0"),
            (
                "extra",
                "unknown field \"extra\", expected one of \"items\", \"top_k\""
            ),
        ]
        .map(|(p, m)| (p.to_string(), m.to_string()))
    );

    // A missing field of the body itself is reported at the body's path, "".
    let reply = client.post_json("/score", &json!({"items": [{"text": "x", "weight": "2"}]}));
    assert_eq!(
        mistakes(&reply),
        [
            ("items[0].weight", "expected a number, got a string"),
            ("", "missing field \"top_k\""),
        ]
        .map(|(p, m)| (p.to_string(), m.to_string()))
    );

    // Not an object, not JSON, not declared as JSON: one mistake, invalid_json, 415.
    let reply = client.post_json("/score", &json!([1, 2]));
    assert_eq!(mistakes(&reply)[0].1, "expected an object, got an array");
    client
        .request(
            "POST",
            "/score",
            &[("Content-Type", "application/json")],
            b"{\"items\": [",
        )
        .assert_error(400, "invalid_json", "EOF");
    client
        .request("POST", "/score", &[("Content-Type", "text/plain")], b"{}")
        .assert_error(415, "unsupported_media_type", "application/json");

    // The client goes on serving, and a valid body gets its scores.
    let valid = json!({"items": [{"text": "abcd"}, {"text": "ab12", "weight": 3}, {"text": "x"}],
        "top_k": 2});
    let reply = client.post_json("/score", &valid);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json(), json!({"scores": [1.5, 1.0]}));
    assert_eq!(
        client.post_json("/score", &valid).body,
        reply.body,
        "deterministic"
    );
}

#[test]
fn lengths_count_characters_and_big_bodies_get_413() {
    let client = TestApp(example::app());
    let body = |text: String| json!({"items": [{"text": text}], "top_k": 1});
    // 1000 characters of two and four bytes each are within the limit of 1000.
    for text in ["é".repeat(1000), "🦀".repeat(1000)] {
        let reply = client.post_json("/score", &body(text));
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let reply = client.post_json("/score", &body("🦀".repeat(1001)));
    assert_eq!(
        mistakes(&reply),
        [(
            "items[0].text".to_string(),
            "expected at most 1000 characters, got 1001".to_string()
        )]
    );
    let huge = format!(
        "{{\"items\": [], \"top_k\": 1, \"pad\": \"{}\"}}",
        "x".repeat(tinyserve::typed::MAX_TYPED_BODY_BYTES)
    );
    client
        .request(
            "POST",
            "/score",
            &[("Content-Type", "application/json")],
            huge.as_bytes(),
        )
        .assert_error(413, "payload_too_large", "1048576 bytes");
}

#[test]
fn the_document_shows_the_schemas_of_the_types() {
    let client = TestApp(app());
    let doc = client.get("/openapi.json").json();
    let op = &doc["paths"]["/score"]["post"];
    let media = &op["requestBody"]["content"]["application/json"];
    assert_eq!(
        media["schema"],
        json!({"$ref": "#/components/schemas/Score"})
    );
    assert_eq!(media["example"]["top_k"], 2, "from #[schemars(example)]");
    let schemas = &doc["components"]["schemas"];
    let score = &schemas["Score"];
    assert_eq!(score["required"], json!(["items", "top_k"]));
    assert_eq!(score["additionalProperties"], false);
    let top_k = &score["properties"]["top_k"];
    assert_eq!(
        (&top_k["type"], &top_k["minimum"], &top_k["maximum"]),
        (&json!("integer"), &json!(1), &json!(100))
    );
    let item_ref = &score["properties"]["items"]["items"]["$ref"];
    let item = &schemas[item_ref
        .as_str()
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
        .unwrap_or_default()];
    assert_eq!(item["required"], json!(["text"]), "weight has a default");
    let text = &item["properties"]["text"];
    assert_eq!(
        (&text["minLength"], &text["maxLength"]),
        (&json!(1), &json!(1000))
    );
    let weight = &item["properties"]["weight"];
    assert_eq!(
        (&weight["minimum"], &weight["default"]),
        (&json!(0.0), &json!(1.0))
    );
    assert!(
        text["description"]
            .as_str()
            .is_some_and(|d| d.contains("characters")),
        "doc comments are descriptions: {text}"
    );
    let answer = &op["responses"]["200"]["content"]["application/json"]["schema"];
    assert_eq!(answer, &json!({"$ref": "#/components/schemas/Scores"}));
    assert_eq!(
        schemas["Scores"]["properties"]["scores"]["items"]["type"],
        "number"
    );
    let statuses: Vec<&String> = op["responses"]
        .as_object()
        .map_or(vec![], |r| r.keys().collect());
    assert_eq!(
        statuses,
        ["200", "400", "408", "413", "415", "431", "500", "503"]
    );
    assert_eq!(
        doc["components"]["schemas"]["Error"]["properties"]["errors"]["items"]["required"],
        json!(["path", "message"])
    );

    // The second `Item` keeps its own name apart; the hand-written summary and status add to
    // what the types give.
    let labels = &doc["paths"]["/labels"]["post"];
    assert_eq!(labels["summary"], "Count labels");
    assert!(labels["responses"]["404"].is_object());
    assert!(labels["responses"]["415"].is_object());
    let list = &labels["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(list["type"], "array");
    let other = list["items"]["$ref"].as_str().unwrap_or_default();
    assert_ne!(other, item_ref.as_str().unwrap_or_default(), "{list}");
    let other = &schemas[other.trim_start_matches("#/components/schemas/")];
    assert_eq!(
        other["properties"]["label"]["pattern"],
        "^[a-z]+(-[a-z]+)*$"
    );
    let known = &doc["paths"]["/labels/known"]["get"]["responses"]["200"]["content"];
    assert_eq!(known["application/json"]["schema"]["type"], "array");

    // The pattern is checked too.
    let reply = client.post_json("/labels", &json!([{"label": "Cat"}, {"label": "big-cat"}]));
    assert_eq!(
        mistakes(&reply),
        [(
            "[0].label".to_string(),
            "expected text matching the pattern \"^[a-z]+(-[a-z]+)*$\"".to_string()
        )]
    );
}

#[test]
fn the_typed_document_passes_openapi_spec_validator() {
    let python = python_env();
    let server = TestServer::start(app());
    let mut command = Command::new(&python);
    command.arg(repo("tests/python/openapi_check.py")).args([
        "--url",
        &server.url(""),
        "--server",
        "/",
    ]);
    let out = run(command, Duration::from_secs(120));
    assert_ok(&out, "openapi_check.py", "");
    for needle in [
        "ok    openapi-spec-validator: valid OpenAPI 3.1.0",
        "ok    every request and response schema is a valid JSON Schema 2020-12",
        "ok    POST /score: the example request fits its schema",
        "all checks passed",
    ] {
        assert!(
            out.stdout.contains(needle),
            "missing {needle:?}:\n{}",
            out.stdout
        );
    }
}

#[test]
fn schemathesis_finds_no_failure_in_typed_routes() {
    let st = python_env().with_file_name("st");
    let server = TestServer::start(app());
    let base = server.url("");
    let workdir = repo("target/schemathesis-typed");
    std::fs::create_dir_all(&workdir).expect("create target/schemathesis-typed");
    let mut command = Command::new(&st);
    command
        .current_dir(&workdir)
        .args(["--no-color", "run"])
        .arg(format!("{base}/openapi.json"))
        .args(["--url", &base, "--checks", CHECKS]);
    command.args(["--mode", "all", "--max-examples", "50", "--seed", "7"]);
    command.args(["--workers", "1", "--request-timeout", "30"]);
    let out = run(command, Duration::from_secs(600));
    assert_ok(&out, "st run", "");
    let cases = after(&out.stdout, "Test cases:");
    assert!(
        cases.contains("generated") && !cases.contains("fail") && !cases.contains("error"),
        "test cases {cases:?}:\n{}",
        out.stdout
    );
    let tested: usize = after(&out.stdout, "Tested:").parse().unwrap_or(0);
    println!("schemathesis: {tested} operations, {cases}");
    // Every operation but GET /openapi.json, which schemathesis loads the document from.
    assert_eq!(tested, 4, "{}", out.stdout);
}

#[test]
fn the_untyped_json_reader_is_unchanged() {
    #[derive(Deserialize)]
    struct Sum {
        a: f64,
        b: f64,
    }
    let app = App::new().post("/sum", |req: &Request| -> tinyserve::Result<Json<Value>> {
        let Sum { a, b } = req.json()?;
        Ok(Json(json!({"sum": a + b})))
    });
    let client = TestApp(app);
    let reply = client.post_json("/sum", &json!({"a": 1, "b": 2, "extra": 3}));
    assert_eq!(reply.json(), json!({"sum": 3.0}), "unknown fields ignored");
    let reply = client.post_json("/sum", &json!({"a": 1}));
    reply.assert_error(400, "invalid_body", "missing field `b`");
    assert!(reply.json().get("errors").is_none());
}
