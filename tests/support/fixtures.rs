//! The model fixtures (`models/tests/fixtures/*.json`) and comparing numbers in nested JSON
//! arrays.

use serde_json::Value;

use super::repo;

/// The cases of `models/tests/fixtures/<name>.json`.
pub fn fixture(name: &str) -> Vec<Value> {
    let path = repo(&format!("models/tests/fixtures/{name}.json"));
    let text = std::fs::read_to_string(&path).expect("read fixture");
    let cases: Vec<Value> = serde_json::from_str(&text).expect("fixture is a JSON list");
    assert!(!cases.is_empty(), "{} has no cases", path.display());
    cases
}

/// Row-major leaves of nested arrays.
pub fn flatten(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.iter().flat_map(flatten).collect(),
        scalar => vec![scalar.clone()],
    }
}

/// The numbers of a nested array, flattened, as f64.
pub fn floats(value: &Value) -> Vec<f64> {
    flatten(value)
        .iter()
        .map(|v| v.as_f64().unwrap_or_else(|| panic!("{v} is not a number")))
        .collect()
}

/// Asserts `got` (any nesting) equals `expected` (any nesting) element-wise within `tolerance`.
pub fn assert_close(got: &Value, expected: &Value, tolerance: f64, what: &str) {
    let (got, expected) = (floats(got), floats(expected));
    assert_eq!(got.len(), expected.len(), "{what}: element count");
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert!(
            (g - e).abs() <= tolerance,
            "{what}: element {i} is {g}, expected {e} (tolerance {tolerance})"
        );
    }
}
