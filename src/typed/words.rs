//! JSON values in words, and paths into them: what the validator's messages are made of.

use serde_json::Value;

/// Whether `value` is of one of `types` (a JSON Schema `type`: a name or a list of names).
pub(super) fn type_fits(types: &Value, value: &Value) -> bool {
    let fits = |name: &str| match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        _ => true,
    };
    match types {
        Value::String(name) => fits(name),
        Value::Array(names) => names.iter().filter_map(Value::as_str).any(fits),
        _ => true,
    }
}

/// `types` in a message: `a string`, `an object or null`.
pub(super) fn describe_types(types: &Value) -> String {
    let name = |t: &str| match t {
        "null" => "null".to_string(),
        "integer" | "array" | "object" => format!("an {t}"),
        other => format!("a {other}"),
    };
    match types {
        Value::String(t) => name(t),
        Value::Array(list) => list
            .iter()
            .filter_map(Value::as_str)
            .map(name)
            .collect::<Vec<_>>()
            .join(" or "),
        other => other.to_string(),
    }
}

/// The kind of a value, for messages: `a string`, `an integer`, `null`...
pub(super) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Equality as JSON Schema means it: `1` equals `1.0`.
pub(super) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// A value in a message: scalars as JSON (long strings cut), containers by kind.
pub(super) fn short(value: &Value) -> String {
    match value {
        Value::String(text) if text.chars().count() > 40 => {
            let cut: String = text.chars().take(40).collect();
            format!("{}...", serde_json::to_string(&cut).unwrap_or_default())
        }
        Value::Array(_) | Value::Object(_) => kind(value).to_string(),
        scalar => scalar.to_string(),
    }
}

/// A name in a message, as a JSON string: `"top_k"`.
pub(super) fn quote(name: &str) -> String {
    serde_json::to_string(name).unwrap_or_default()
}

/// `word`, with an `s` unless `n` is 1.
pub(super) fn plural(n: u64, word: &str) -> String {
    match n {
        1 => word.to_string(),
        _ => format!("{word}s"),
    }
}

/// Appends `key` to `path`: `.key` (no dot at the start) for an identifier, else `["key"]`.
pub(super) fn push_key(path: &mut String, key: &str) {
    let identifier = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match (identifier, path.is_empty()) {
        (true, true) => path.push_str(key),
        (true, false) => {
            path.push('.');
            path.push_str(key);
        }
        (false, _) => {
            path.push('[');
            path.push_str(&quote(key));
            path.push(']');
        }
    }
}

/// How deep a path goes: `""` 0, `a` 1, `a[1].b` 3.
pub(super) fn path_depth(path: &str) -> usize {
    let steps = path.matches(['.', '[']).count();
    match path.starts_with('[') || path.is_empty() {
        true => steps,
        false => steps + 1,
    }
}
