//! Self-documentation: the OpenAPI document's per-model schemas, examples, streams, errors and
//! servers; routes documented through the library; the docs and demo pages. `live` runs the
//! real tools: openapi-spec-validator, schemathesis and headless Chromium.

pub(crate) mod live;

use std::time::Duration;

use serde_json::{json, Value};
use tinyserve::catalog::RouteDoc;
use tinyserve::{pages, App, Json, Request};

use crate::support::serve::ServeChild;
use crate::support::{TestApp, TestServer};

fn openapi(app: &TestApp) -> Value {
    let reply = app.get("/openapi.json");
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

fn op<'a>(doc: &'a Value, path: &str, method: &str) -> &'a Value {
    let op = &doc["paths"][path][method];
    assert!(op.is_object(), "no {method} {path} in the document");
    op
}

fn request_media(op: &Value) -> &Value {
    &op["requestBody"]["content"]["application/json"]
}

/// The JSON Schema of one element of input `name` in a model's predict request.
fn predict_element<'a>(doc: &'a Value, model: &str, name: &str) -> &'a Value {
    let op = op(doc, &format!("/models/{model}/predict"), "post");
    let mut schema = &request_media(op)["schema"]["properties"]["inputs"]["properties"][name];
    while schema["type"] == "array" {
        schema = &schema["items"];
    }
    schema
}

#[test]
fn per_model_schemas_have_the_signature_and_a_working_example() {
    let app = TestApp::models("models");
    let doc = openapi(&app);
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["servers"], json!([{"url": "/"}]));

    let predict = op(&doc, "/models/iris/predict", "post");
    let example = json!({"inputs": {"input": [[5.1, 3.5, 1.4, 0.2]]}});
    assert_eq!(request_media(predict)["example"], example);
    let input = &request_media(predict)["schema"]["properties"]["inputs"];
    assert_eq!(input["required"], json!(["input"]));
    assert_eq!(input["additionalProperties"], false);
    let rows = &input["properties"]["input"];
    assert_eq!(
        (&rows["type"], &rows["minItems"]),
        (&json!("array"), &json!(1))
    );
    assert!(
        rows.get("maxItems").is_none(),
        "a dynamic batch is unbounded: {rows}"
    );
    assert_eq!(
        (&rows["items"]["minItems"], &rows["items"]["maxItems"]),
        (&json!(4), &json!(4))
    );
    let max = f64::from(f32::MAX);
    assert_eq!(
        predict_element(&doc, "iris", "input"),
        &json!({"type": "number", "minimum": -max, "maximum": max})
    );
    let outputs = &predict["responses"]["200"]["content"]["application/json"]["schema"]
        ["properties"]["outputs"];
    assert_eq!(outputs["required"], json!(["probabilities", "label"]));
    // The rank is the model's; the dimensions are open, since ONNX Runtime does not hold a
    // model to the output dimensions it declares (the declared ones are in the description).
    let probabilities = &outputs["properties"]["probabilities"];
    assert_eq!(
        probabilities["items"]["items"]["type"],
        json!(["number", "null"])
    );
    assert!(
        probabilities["items"].get("maxItems").is_none(),
        "{probabilities}"
    );
    assert!(probabilities["description"]
        .as_str()
        .is_some_and(|d| d.starts_with("FP32 [-1, 3] as the model declares it")));
    assert_eq!(outputs["properties"]["label"]["items"]["type"], "integer");

    let infer = op(&doc, "/v2/models/iris/infer", "post");
    let v2_example = json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
        "data": [5.1, 3.5, 1.4, 0.2]}]});
    assert_eq!(request_media(infer)["example"], v2_example);
    let item = &request_media(infer)["schema"]["properties"]["inputs"]["items"]["oneOf"][0];
    assert_eq!(item["properties"]["name"]["const"], "input");
    assert_eq!(item["properties"]["datatype"]["const"], "FP32");

    // The examples are valid: the app answers them, and iris says setosa.
    let reply = app.post_json("/models/iris/predict", &example);
    assert_eq!(reply.json()["outputs"]["label"], json!([0]));
    let reply = app.post_json("/v2/models/iris/infer", &v2_example);
    assert_eq!(reply.status, 200, "{}", reply.text());

    // A byte-level language model takes bytes.
    let token = predict_element(&doc, "bytelm", "input_ids");
    assert_eq!(
        (&token["minimum"], &token["maximum"]),
        (&json!(0), &json!(255))
    );

    // The generic routes stay, with their path parameters declared.
    let generic = op(&doc, "/models/{name}/predict", "post");
    assert_eq!(
        generic["parameters"],
        json!([{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}])
    );
    for (path, method) in [
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/v2", "get"),
        ("/v2/models/{name}", "get"),
        ("/v2/models/{name}/versions/{version}/infer", "post"),
        ("/v1/models", "get"),
        ("/v1/completions", "post"),
        ("/metrics", "get"),
        ("/models", "get"),
        ("/predict", "post"),
        ("/openapi.json", "get"),
        ("/docs", "get"),
        ("/", "get"),
        ("/models/{name}", "get"),
    ] {
        assert!(!op(&doc, path, method)["summary"]
            .as_str()
            .unwrap_or("")
            .is_empty());
    }
}

#[test]
fn element_schemas_follow_each_datatype() {
    let app = TestApp::models("models/tests/dtypes");
    let doc = openapi(&app);
    let int = |min: Value, max: Value| json!({"type": "integer", "minimum": min, "maximum": max});
    let cases = [
        ("bool", json!({"type": "boolean"})),
        ("uint8", int(json!(0), json!(255))),
        ("uint16", int(json!(0), json!(65535))),
        ("uint32", int(json!(0), json!(4294967295u64))),
        ("uint64", int(json!(0), json!(u64::MAX))),
        ("int8", int(json!(-128), json!(127))),
        ("int16", int(json!(-32768), json!(32767))),
        ("int32", int(json!(i32::MIN), json!(i32::MAX))),
        ("int64", int(json!(i64::MIN), json!(i64::MAX))),
        (
            "fp16",
            json!({"type": "number", "minimum": -65504, "maximum": 65504}),
        ),
        ("fp64", json!({"type": "number"})),
    ];
    for (ty, expected) in cases {
        let model = format!("echo_{ty}");
        assert_eq!(predict_element(&doc, &model, "x"), &expected, "{model}");
        // The generated example is valid for the model.
        let op = op(&doc, &format!("/models/{model}/predict"), "post");
        let reply = app.post_json(
            &format!("/models/{model}/predict"),
            &request_media(op)["example"],
        );
        assert_eq!(reply.status, 200, "{model}: {}", reply.text());
    }
    let output = &op(&doc, "/models/echo_fp32/predict", "post")["responses"]["200"]["content"]
        ["application/json"]["schema"]["properties"]["outputs"]["properties"]["y"]["items"]
        ["items"];
    assert_eq!(
        output["type"],
        json!(["number", "null"]),
        "NaN is written as null"
    );
}

#[test]
fn static_shapes_bound_every_dimension() {
    let app = TestApp::models("models/tests/multi");
    let doc = openapi(&app);
    let media = request_media(op(&doc, "/models/add_mul/predict", "post"));
    let inputs = &media["schema"]["properties"]["inputs"];
    assert_eq!(inputs["required"], json!(["a", "b"]));
    let a = &inputs["properties"]["a"];
    assert_eq!((&a["minItems"], &a["maxItems"]), (&json!(2), &json!(2)));
    assert_eq!(
        (&a["items"]["minItems"], &a["items"]["maxItems"]),
        (&json!(3), &json!(3))
    );
    let reply = app.post_json("/models/add_mul/predict", &media["example"]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let infer = request_media(op(&doc, "/v2/models/add_mul/infer", "post"));
    let list = &infer["schema"]["properties"]["inputs"];
    assert_eq!(
        (&list["minItems"], &list["maxItems"]),
        (&json!(2), &json!(2))
    );
    let reply = app.post_json("/v2/models/add_mul/infer", &infer["example"]);
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[test]
fn streams_errors_and_text_answers_are_described() {
    let app = TestApp::models("models");
    let doc = openapi(&app);
    let chat = &op(&doc, "/v1/chat/completions", "post")["responses"];
    let event = &chat["200"]["content"]["text/event-stream"]["schema"];
    for field in ["data", "event", "id", "retry"] {
        assert!(
            event["properties"][field].is_object(),
            "event field {field}: {event}"
        );
    }
    // An event holds a JSON chunk (or an error), and the last one is the `[DONE]` sentinel.
    let data = &event["properties"]["data"]["anyOf"];
    assert_eq!(data[0]["contentMediaType"], "application/json");
    assert_eq!(
        data[0]["contentSchema"]["anyOf"][0]["properties"]["object"]["const"],
        "chat.completion.chunk"
    );
    assert_eq!(
        data[0]["contentSchema"]["anyOf"][1],
        json!({"$ref": "#/components/schemas/OpenAIError"})
    );
    assert_eq!(data[1]["const"], "[DONE]");
    let answer = &chat["200"]["content"]["application/json"]["schema"];
    assert_eq!(
        answer["properties"]["object"]["const"], "chat.completion",
        "stream: false is JSON"
    );

    // Each operation lists the statuses it answers, with their bodies: OpenAI's shape for what
    // a /v1 route answers itself, tinyserve's for what the app answers on any route.
    let openai = json!({"$ref": "#/components/schemas/OpenAIError"});
    let either = json!({"anyOf": [openai, {"$ref": "#/components/schemas/Error"}]});
    let error = json!({"$ref": "#/components/schemas/Error"});
    let statuses = |responses: &Value| -> Vec<String> {
        responses
            .as_object()
            .map_or(vec![], |r| r.keys().cloned().collect())
    };
    let body = |response: &Value| response["content"]["application/json"]["schema"].clone();
    assert_eq!(
        statuses(chat),
        ["200", "400", "404", "408", "413", "415", "431", "500", "503"]
    );
    assert_eq!(body(&chat["400"]), either);
    assert_eq!(body(&chat["404"]), openai);
    assert_eq!(body(&chat["413"]), error);
    assert_eq!(chat["503"]["headers"]["Retry-After"]["required"], true);

    let predict = &op(&doc, "/models/iris/predict", "post")["responses"];
    assert_eq!(
        statuses(predict),
        ["200", "400", "408", "413", "415", "431", "500", "503"],
        "a loaded model's own path never answers 404"
    );
    for status in ["400", "415", "500", "503"] {
        assert_eq!(body(&predict[status]), error, "{status}");
    }
    assert_eq!(
        statuses(&op(&doc, "/models/{name}/predict", "post")["responses"]),
        ["200", "400", "404", "408", "413", "415", "431", "500", "503"]
    );
    let ready = &op(&doc, "/readyz", "get")["responses"];
    assert_eq!(
        statuses(ready),
        ["200", "400", "408", "413", "431", "500", "503"]
    );
    assert_eq!(
        ready["503"]["headers"]["Retry-After"]["required"], false,
        "not_ready comes without Retry-After"
    );
    assert_eq!(
        doc["components"]["schemas"]["Error"]["required"],
        json!(["error", "code"])
    );
    assert_eq!(
        doc["components"]["responses"]["MethodNotAllowed"]["headers"]["Allow"]["required"],
        true
    );

    // Binary tensor data: an infer answer may be application/octet-stream with the length of
    // its JSON part in a header.
    let infer = &op(&doc, "/v2/models/iris/infer", "post")["responses"]["200"];
    assert!(
        infer["content"]["application/octet-stream"].is_object(),
        "{infer}"
    );
    assert!(infer["content"]["application/json"].is_object(), "{infer}");
    assert_eq!(
        infer["headers"]["Inference-Header-Content-Length"]["required"],
        false
    );
    let metrics = &op(&doc, "/metrics", "get")["responses"]["200"]["content"];
    assert!(
        metrics["text/plain; version=0.0.4"].is_object(),
        "{metrics}"
    );
    let page = &op(&doc, "/docs", "get")["responses"]["200"]["content"];
    assert!(page["text/html"].is_object(), "{page}");
}

#[test]
fn a_binary_answer_matches_its_documentation() {
    let app = TestApp::models("models");
    let doc = openapi(&app);
    let documented = &op(&doc, "/v2/models/iris/infer", "post")["responses"]["200"];
    let body = json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
        "data": [5.1, 3.5, 1.4, 0.2]}], "parameters": {"binary_data_output": true}});
    let reply = app.post_json("/v2/models/iris/infer", &body);
    assert_eq!(reply.status, 200);
    let media = reply.header("Content-Type").unwrap_or_default().to_string();
    assert!(
        documented["content"][&media].is_object(),
        "{media} is undocumented"
    );
    let length: usize = reply
        .header("Inference-Header-Content-Length")
        .and_then(|v| v.parse().ok())
        .expect("the header is documented for binary answers");
    let bytes = reply.body.clone();
    let header: Value = serde_json::from_slice(&bytes[..length]).expect("a JSON part");
    // The JSON part fits the model's documented answer.
    let outputs = &documented["content"]["application/json"]["schema"]["properties"]["outputs"]
        ["items"]["oneOf"];
    let probabilities = &outputs[0]["properties"];
    assert_eq!(probabilities["name"]["const"], header["outputs"][0]["name"]);
    assert_eq!(probabilities["shape"]["maxItems"], 2);
    assert_eq!(header["outputs"][0]["shape"], json!([1, 3]));
    let sizes: u64 = header["outputs"].as_array().map_or(0, |o| {
        o.iter()
            .filter_map(|t| t["parameters"]["binary_data_size"].as_u64())
            .sum()
    });
    assert_eq!(length as u64 + sizes, bytes.len() as u64);
}

#[test]
fn an_api_key_adds_401_to_the_guarded_operations() {
    let server = ServeChild::builder()
        .models(crate::support::repo("models"))
        .args(["--api-key-env", "TINYSERVE_DOCS_KEY"])
        .env("TINYSERVE_DOCS_KEY", "sesame")
        .start();
    let url = server.url("/openapi.json");
    let mut res = ureq::get(&url)
        .header("Authorization", "Bearer sesame")
        .call()
        .unwrap_or_else(|err| panic!("GET {url}: {err}"));
    let doc: Value = res.body_mut().read_json().expect("JSON");
    let predict = &op(&doc, "/models/iris/predict", "post")["responses"]["401"];
    assert_eq!(predict["headers"]["WWW-Authenticate"]["required"], true);
    assert_eq!(doc["security"], json!([{"apiKey": []}]));
    assert_eq!(
        doc["components"]["securitySchemes"]["apiKey"]["scheme"],
        "bearer"
    );
    let health = op(&doc, "/healthz", "get");
    assert!(
        health["responses"].get("401").is_none(),
        "the probes are public"
    );
    assert_eq!(health["security"], json!([]));
    // What the document says is what the server does.
    let agent = crate::support::agent(Duration::from_secs(30));
    let reply = agent
        .post(server.url("/models/iris/predict"))
        .send_json(json!({"inputs": {"input": [[5.1, 3.5, 1.4, 0.2]]}}))
        .expect("a response");
    assert_eq!(reply.status().as_u16(), 401);
    assert_eq!(
        reply
            .headers()
            .get("WWW-Authenticate")
            .map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );
    let reply = agent
        .get(server.url("/healthz"))
        .call()
        .expect("a response");
    assert_eq!(reply.status().as_u16(), 200);
}

#[test]
fn routes_added_through_the_library_are_documented() {
    let app = App::new()
        .post("/echo", |req: &Request| req.json::<Value>().map(Json))
        .document(
            "POST",
            "/echo",
            RouteDoc::new("Echo a JSON value")
                .with_tag("Mine")
                .with_request(json!({"type": "object"}))
                .with_example(json!({"hello": "world"}))
                .with_response(json!({"type": "object"})),
        )
        .get("/secret", |_| "hidden")
        .document("GET", "/secret", RouteDoc::new("Secret").with_hidden());
    // Routes added after mounting show up too: the catalog is shared.
    let app = pages::mount_openapi(app)
        .get("/later/<id>", |req: &Request| {
            req.param("id").unwrap_or("").to_string()
        })
        .document("GET", "/later/<id>", RouteDoc::new("Added after the docs"));
    let app = TestApp(app);
    let doc = openapi(&app);
    let echo = op(&doc, "/echo", "post");
    assert_eq!(echo["summary"], "Echo a JSON value");
    assert_eq!(echo["tags"], json!(["Mine"]));
    assert_eq!(request_media(echo)["example"], json!({"hello": "world"}));
    assert_eq!(
        op(&doc, "/later/{id}", "get")["parameters"][0]["name"],
        "id"
    );
    assert!(
        doc["paths"].get("/secret").is_none(),
        "hidden routes are left out"
    );
    assert!(
        doc["paths"].get("/").is_none(),
        "mount_openapi adds no demo pages"
    );
    let page = app.get("/docs");
    assert_eq!(
        page.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        !page.text().contains(">Models</a>"),
        "no link to demo pages that do not exist"
    );
}

#[test]
fn servers_and_page_urls_follow_the_root_path() {
    // A trusted proxy's prefix (loopback is trusted by default).
    let server = TestServer::models("models");
    let reply = server.request(
        "GET",
        "/openapi.json",
        &[("X-Forwarded-Prefix", "/proxy")],
        b"",
    );
    assert_eq!(reply.json()["servers"], json!([{"url": "/proxy"}]));

    // `tinyserve serve --root-path /api`, with or without the prefix in the request path.
    let server = ServeChild::start(&["--root-path", "/api"]);
    let get = |path: &str| {
        let url = server.url(path);
        let mut res = ureq::get(&url)
            .call()
            .unwrap_or_else(|err| panic!("GET {url}: {err}"));
        res.body_mut().read_to_string().expect("body")
    };
    for path in ["/api/openapi.json", "/openapi.json"] {
        let doc: Value = serde_json::from_str(&get(path)).expect("JSON");
        assert_eq!(doc["servers"], json!([{"url": "/api"}]), "{path}");
    }
    let page = get("/api/models/iris");
    assert!(
        page.contains(r#""predict":"/api/models/iris/predict""#),
        "{page}"
    );
    assert!(page.contains(r#"href="/api/docs""#), "{page}");
    assert!(get("/api/").contains(r#"href="/api/models/bytelm""#));
}

#[test]
fn pages_are_self_contained_html_next_to_the_json_routes() {
    let app = TestApp::models("models");
    let pages = [
        "/",
        "/docs",
        "/models/iris",
        "/models/bytelm",
        "/models/tinychat",
        "/models/tinyembed",
    ];
    for path in pages {
        let reply = app.get(path);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        assert_eq!(
            reply.header("Content-Type"),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
        let html = reply.text();
        for external in [
            "http://",
            "https://",
            "<script src",
            "<link rel=\"stylesheet\"",
        ] {
            assert!(
                !html.contains(external),
                "{path} loads something external: {external}"
            );
        }
    }
    let index = app.get("/").text();
    for link in [
        r#"href="/models/iris""#,
        r#"href="/models/bytelm""#,
        r#"href="/models/tinychat""#,
        r#"href="/models/tinyembed""#,
        r#"href="/docs""#,
    ] {
        assert!(index.contains(link), "{link} missing from the index");
    }
    let iris = app.get("/models/iris").text();
    assert!(
        iris.contains(r#""example":{"input":[[5.1,3.5,1.4,0.2]]}"#),
        "{iris}"
    );
    assert!(app
        .get("/models/bytelm")
        .text()
        .contains(r#""chat":"/v1/chat/completions""#));
    // A decoder folder's demo is a chat; an encoder folder's compares embeddings.
    let chat = app.get("/models/tinychat").text();
    assert!(chat.contains(r#""chat":"/v1/chat/completions""#), "{chat}");
    assert!(chat.contains(r#"id="chat-form""#), "{chat}");
    let embed = app.get("/models/tinyembed").text();
    assert!(
        embed.contains(r#""embeddings":"/v1/embeddings""#),
        "{embed}"
    );
    assert!(embed.contains("64-dimensional vectors"), "{embed}");
    app.get("/models/nope")
        .assert_error(404, "model_not_found", "nope");
    // The JSON routes next to the pages are unchanged.
    assert_eq!(app.get("/models").json()["models"][0]["name"], "bytelm");
    assert_eq!(app.get("/v2/models/iris").json()["name"], "iris");
}
