//! Models through the real runtime: every datatype, every validation error, the Iris and add_mul
//! fixtures, the binary tensor data extension, the registry. These check routes, JSON and
//! statuses, so they call the app through its test client ([`TestApp`]); the session pool
//! under load runs on a real server.

use serde_json::{json, Value};

use crate::support::{Reply, TestApp};

mod binary;
mod datatypes;
mod fixtures;
mod pool;
mod registry;
mod rejections;
mod validation;

/// The shape of a rectangular nested array.
fn shape_of(value: &Value) -> Vec<usize> {
    let mut shape = Vec::new();
    let mut current = value;
    while let Value::Array(items) = current {
        shape.push(items.len());
        match items.first() {
            Some(first) => current = first,
            None => break,
        }
    }
    shape
}

/// Asserts a 200 JSON reply and returns its body.
fn ok_json(reply: &Reply) -> Value {
    assert_eq!(reply.status, 200, "status; body: {}", reply.text());
    assert_eq!(
        reply.header("Content-Type"),
        Some("application/json"),
        "content type; body: {}",
        reply.text()
    );
    reply.json()
}

/// The output called `name` of a v2 infer response.
fn output<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["outputs"]
        .as_array()
        .expect("outputs is an array")
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no output {name:?} in {body}"))
}

/// `POST /v2/models/<model>/infer` with one input.
fn infer_one(client: &TestApp, model: &str, datatype: &str, shape: Value, data: Value) -> Reply {
    client.post_json(
        &format!("/v2/models/{model}/infer"),
        &json!({"inputs": [{"name": "x", "shape": shape, "datatype": datatype, "data": data}]}),
    )
}
