//! Checks a JSON value against the JSON Schema of a type, as schemars writes it, and lists
//! every mistake with its path.
//!
//! The keywords checked: `$ref` (to `#/components/schemas/NAME`), `type`, `enum`, `const`;
//! `properties`, `required`, `additionalProperties`, `minProperties`, `maxProperties`;
//! `items`, `prefixItems`, `minItems`, `maxItems`, `uniqueItems`; `minLength`, `maxLength`
//! (in characters), `pattern`; `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`,
//! `multipleOf`, and the integer `format`s (`uint8` ... `int64`) as ranges; `allOf`, `anyOf`,
//! `oneOf`, `not`. Other keywords are annotations here; serde still checks what it reads.
//! `integer` means a JSON number written without a fraction or exponent, as serde reads one.

use std::collections::HashMap;

use regex::Regex;
use serde_json::{Map, Number, Value};

use super::words::{
    describe_types, json_eq, kind, path_depth, plural, push_key, quote, short, type_fits,
};
use crate::FieldError;

/// Where `$ref`s point: the OpenAPI document's component schemas.
pub(crate) const REF_PREFIX: &str = "#/components/schemas/";

/// At most this many mistakes are listed; a last entry counts the rest.
pub(crate) const MAX_LISTED: usize = 100;

/// `$ref` hops and nesting followed before giving up on a schema that loops.
const MAX_DEPTH: usize = 512;

/// A type's schema and the component schemas it refers to, with its patterns compiled.
#[derive(Debug)]
pub(crate) struct Validator {
    root: Value,
    components: Map<String, Value>,
    patterns: HashMap<String, Regex>,
}

/// The mistakes found so far: the first [`MAX_LISTED`], and how many in all.
#[derive(Default)]
struct Mistakes {
    listed: Vec<FieldError>,
    total: usize,
}

impl Mistakes {
    fn push(&mut self, path: &str, message: String) {
        self.total += 1;
        if self.listed.len() < MAX_LISTED {
            self.listed.push(FieldError::new(path, message));
        }
    }
}

impl Validator {
    /// Compiles the patterns of `root` and `components`; an invalid one is an error naming it.
    pub(crate) fn new(root: Value, components: Map<String, Value>) -> Result<Validator, String> {
        let mut patterns = HashMap::new();
        let mut pending: Vec<&Value> = vec![&root];
        pending.extend(components.values());
        while let Some(schema) = pending.pop() {
            if let Some(Value::String(pattern)) = schema.get("pattern") {
                let regex = Regex::new(pattern)
                    .map_err(|err| format!("pattern {pattern:?} is not a valid regex: {err}"))?;
                patterns.insert(pattern.clone(), regex);
            }
            pending.extend(subschemas(schema));
        }
        Ok(Validator {
            root,
            components,
            patterns,
        })
    }

    /// The schema, usually a `$ref` into [`Validator::components`].
    pub(crate) fn root(&self) -> &Value {
        &self.root
    }

    /// The component schemas, by name.
    pub(crate) fn components(&self) -> &Map<String, Value> {
        &self.components
    }

    /// Every mistake of `value`, in the order of the schema's fields; empty when it fits.
    /// Past [`MAX_LISTED`], one last entry at `""` counts the mistakes left out.
    pub(crate) fn validate(&self, value: &Value) -> Vec<FieldError> {
        let mut mistakes = Mistakes::default();
        self.check(&self.root, value, &mut String::new(), &mut mistakes, 0);
        let mut listed = mistakes.listed;
        if mistakes.total > listed.len() {
            let more = mistakes.total - listed.len();
            listed.push(FieldError::new(
                "",
                format!("{more} more mistakes not listed"),
            ));
        }
        listed
    }

    /// The component schema a `$ref` points to.
    fn target(&self, schema: &Map<String, Value>) -> Option<&Value> {
        let name = schema.get("$ref")?.as_str()?.strip_prefix(REF_PREFIX)?;
        self.components.get(&decode_ref_name(name))
    }

    fn resolve(&self, schema: &Value) -> Option<&Value> {
        self.target(schema.as_object()?)
    }

    fn check(
        &self,
        schema: &Value,
        value: &Value,
        path: &mut String,
        out: &mut Mistakes,
        depth: usize,
    ) {
        if depth > MAX_DEPTH {
            out.push(path, "the schema nests too deep to check".into());
            return;
        }
        let schema = match schema {
            Value::Bool(true) => return,
            Value::Bool(false) => return out.push(path, "no value is allowed here".into()),
            Value::Object(schema) => schema,
            _ => return,
        };
        if let Some(Value::String(reference)) = schema.get("$ref") {
            match self.target(schema) {
                Some(target) => self.check(target, value, path, out, depth + 1),
                None => out.push(
                    path,
                    format!("the schema refers to {reference}, which is not defined"),
                ),
            }
        }
        if let Some(types) = schema.get("type") {
            if !type_fits(types, value) {
                return out.push(
                    path,
                    format!("expected {}, got {}", describe_types(types), kind(value)),
                );
            }
        }
        if let Some(Value::Array(allowed)) = schema.get("enum") {
            if !allowed.iter().any(|a| json_eq(a, value)) {
                let list: Vec<String> = allowed.iter().map(short).collect();
                return out.push(
                    path,
                    format!("expected one of {}, got {}", list.join(", "), short(value)),
                );
            }
        }
        if let Some(expected) = schema.get("const") {
            if !json_eq(expected, value) {
                return out.push(
                    path,
                    format!("expected {}, got {}", short(expected), short(value)),
                );
            }
        }
        match value {
            Value::String(text) => self.check_string(schema, text, path, out),
            Value::Number(number) => check_number(schema, number, path, out),
            Value::Array(items) => self.check_array(schema, items, path, out, depth),
            Value::Object(object) => self.check_object(schema, object, path, out, depth),
            Value::Bool(_) | Value::Null => {}
        }
        if let Some(Value::Array(all)) = schema.get("allOf") {
            for branch in all {
                self.check(branch, value, path, out, depth + 1);
            }
        }
        for (keyword, exactly_one) in [("anyOf", false), ("oneOf", true)] {
            if let Some(Value::Array(branches)) = schema.get(keyword) {
                self.check_branches(branches, exactly_one, value, path, out, depth);
            }
        }
        if let Some(not) = schema.get("not") {
            if self.trial(not, value, path, depth).is_empty() {
                out.push(path, "matches a shape that is not allowed here".into());
            }
        }
    }

    /// The mistakes `value` would have against `schema`, without reporting them.
    fn trial(&self, schema: &Value, value: &Value, path: &str, depth: usize) -> Vec<FieldError> {
        let mut mistakes = Mistakes::default();
        self.check(
            schema,
            value,
            &mut path.to_string(),
            &mut mistakes,
            depth + 1,
        );
        mistakes.listed
    }

    /// `anyOf` / `oneOf`. When no branch fits, the mistakes reported are those of the branch
    /// that takes this kind of value (an `Option`'s inner type for anything but `null`), or of
    /// the one that got furthest into the value; with none of this kind, one mistake here.
    fn check_branches(
        &self,
        branches: &[Value],
        exactly_one: bool,
        value: &Value,
        path: &str,
        out: &mut Mistakes,
        depth: usize,
    ) {
        let results: Vec<Vec<FieldError>> = branches
            .iter()
            .map(|b| self.trial(b, value, path, depth))
            .collect();
        let fitting = results.iter().filter(|r| r.is_empty()).count();
        if fitting == 1 || (fitting > 1 && !exactly_one) {
            return;
        }
        if fitting > 1 {
            return out.push(path, "matches more than one of the allowed shapes".into());
        }
        let best = branches
            .iter()
            .zip(&results)
            .filter(|(branch, _)| self.takes_kind(branch, value, depth))
            .map(|(_, mistakes)| mistakes)
            .max_by_key(|mistakes| {
                let furthest = mistakes
                    .iter()
                    .map(|m| path_depth(&m.path))
                    .min()
                    .unwrap_or(0);
                (furthest, std::cmp::Reverse(mistakes.len()))
            });
        match best {
            Some(mistakes) => {
                for mistake in mistakes {
                    out.push(&mistake.path, mistake.message.clone());
                }
            }
            None => {
                let kinds: Vec<String> = branches.iter().map(|b| self.describe(b, depth)).collect();
                out.push(
                    path,
                    format!("expected {}, got {}", kinds.join(" or "), kind(value)),
                );
            }
        }
    }

    /// Whether `schema` takes values of `value`'s kind at all (its `type`, `const` or `enum`).
    fn takes_kind(&self, schema: &Value, value: &Value, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        if let Some(target) = self.resolve(schema) {
            return self.takes_kind(target, value, depth + 1);
        }
        if let Some(types) = schema.get("type") {
            return type_fits(types, value);
        }
        if let Some(expected) = schema.get("const") {
            return kind(expected) == kind(value);
        }
        if let Some(Value::Array(allowed)) = schema.get("enum") {
            return allowed.iter().any(|a| kind(a) == kind(value));
        }
        for keyword in ["anyOf", "oneOf"] {
            if let Some(Value::Array(branches)) = schema.get(keyword) {
                return branches
                    .iter()
                    .any(|b| self.takes_kind(b, value, depth + 1));
            }
        }
        true
    }

    /// A branch in a message: its type, or its constant.
    fn describe(&self, schema: &Value, depth: usize) -> String {
        match (
            self.resolve(schema),
            schema.get("type"),
            schema.get("const"),
        ) {
            (Some(target), _, _) if depth < MAX_DEPTH => self.describe(target, depth + 1),
            (_, Some(types), _) => describe_types(types),
            (_, _, Some(constant)) => short(constant),
            _ => "another shape".into(),
        }
    }

    fn check_string(
        &self,
        schema: &Map<String, Value>,
        text: &str,
        path: &str,
        out: &mut Mistakes,
    ) {
        let length = text.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
            if length < min {
                out.push(
                    path,
                    format!(
                        "expected at least {min} {}, got {length}",
                        plural(min, "character")
                    ),
                );
            }
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
            if length > max {
                out.push(
                    path,
                    format!(
                        "expected at most {max} {}, got {length}",
                        plural(max, "character")
                    ),
                );
            }
        }
        if let Some(Value::String(pattern)) = schema.get("pattern") {
            if self
                .patterns
                .get(pattern)
                .is_some_and(|regex| !regex.is_match(text))
            {
                out.push(
                    path,
                    format!("expected text matching the pattern {pattern:?}"),
                );
            }
        }
    }

    fn check_array(
        &self,
        schema: &Map<String, Value>,
        items: &[Value],
        path: &mut String,
        out: &mut Mistakes,
        depth: usize,
    ) {
        let count = items.len() as u64;
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
            if count < min {
                out.push(
                    path,
                    format!(
                        "expected at least {min} {}, got {count}",
                        plural(min, "item")
                    ),
                );
            }
        }
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
            if count > max {
                out.push(
                    path,
                    format!(
                        "expected at most {max} {}, got {count}",
                        plural(max, "item")
                    ),
                );
            }
        }
        if schema.get("uniqueItems") == Some(&Value::Bool(true)) {
            let repeated =
                (1..items.len()).find(|&i| items[..i].iter().any(|seen| json_eq(seen, &items[i])));
            if let Some(i) = repeated {
                out.push(
                    path,
                    format!("expected unique items, item {i} repeats an earlier one"),
                );
            }
        }
        let prefix = match schema.get("prefixItems") {
            Some(Value::Array(prefix)) => prefix.as_slice(),
            _ => &[],
        };
        for (i, item) in items.iter().enumerate() {
            let item_schema = match prefix.get(i) {
                Some(schema) => schema,
                None => match schema.get("items") {
                    Some(Value::Bool(false)) => {
                        out.push(
                            path,
                            format!("expected at most {} items, got {count}", prefix.len()),
                        );
                        break;
                    }
                    Some(items) => items,
                    None => continue,
                },
            };
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            self.check(item_schema, item, path, out, depth + 1);
            path.truncate(len);
        }
    }

    fn check_object(
        &self,
        schema: &Map<String, Value>,
        object: &Map<String, Value>,
        path: &mut String,
        out: &mut Mistakes,
        depth: usize,
    ) {
        let empty = Map::new();
        let properties = match schema.get("properties") {
            Some(Value::Object(properties)) => properties,
            _ => &empty,
        };
        let required: Vec<&str> = match schema.get("required") {
            Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        for (name, property) in properties {
            match object.get(name) {
                Some(value) => self.at_key(property, value, name, path, out, depth),
                None if required.contains(&name.as_str()) => {
                    out.push(path, format!("missing field {}", quote(name)));
                }
                None => {}
            }
        }
        for name in required
            .iter()
            .filter(|n| !properties.contains_key(**n) && !object.contains_key(**n))
        {
            out.push(path, format!("missing field {}", quote(name)));
        }
        let additional = schema.get("additionalProperties");
        for (name, value) in object
            .iter()
            .filter(|(name, _)| !properties.contains_key(*name))
        {
            match additional {
                Some(Value::Bool(false)) => {
                    let len = path.len();
                    push_key(path, name);
                    let known: Vec<String> = properties.keys().take(10).map(|k| quote(k)).collect();
                    let message = match known.is_empty() {
                        true => format!("unknown field {}: no fields are allowed", quote(name)),
                        false => format!(
                            "unknown field {}, expected one of {}",
                            quote(name),
                            known.join(", ")
                        ),
                    };
                    out.push(path, message);
                    path.truncate(len);
                }
                Some(extra) => self.at_key(extra, value, name, path, out, depth),
                None => {}
            }
        }
        let count = object.len() as u64;
        if let Some(min) = schema.get("minProperties").and_then(Value::as_u64) {
            if count < min {
                out.push(
                    path,
                    format!(
                        "expected at least {min} {}, got {count}",
                        plural(min, "field")
                    ),
                );
            }
        }
        if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64) {
            if count > max {
                out.push(
                    path,
                    format!(
                        "expected at most {max} {}, got {count}",
                        plural(max, "field")
                    ),
                );
            }
        }
    }

    fn at_key(
        &self,
        schema: &Value,
        value: &Value,
        key: &str,
        path: &mut String,
        out: &mut Mistakes,
        depth: usize,
    ) {
        let len = path.len();
        push_key(path, key);
        self.check(schema, value, path, out, depth + 1);
        path.truncate(len);
    }
}

/// The subschemas of `schema` (where patterns may be).
fn subschemas(schema: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for keyword in ["items", "additionalProperties", "not"] {
        out.extend(schema.get(keyword));
    }
    for keyword in ["prefixItems", "allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(list)) = schema.get(keyword) {
            out.extend(list);
        }
    }
    if let Some(Value::Object(properties)) = schema.get("properties") {
        out.extend(properties.values());
    }
    out
}

/// A `numbers`' checks: range, multiple, and the range of an integer `format`.
fn check_number(schema: &Map<String, Value>, number: &Number, path: &str, out: &mut Mistakes) {
    let Some(x) = number.as_f64() else { return };
    /// A bound keyword: its name, whether `x` is within it, and the words for a message.
    type Bound = (&'static str, fn(f64, f64) -> bool, &'static str);
    const BOUNDS: [Bound; 4] = [
        ("minimum", |x, b| x >= b, "at least"),
        ("maximum", |x, b| x <= b, "at most"),
        ("exclusiveMinimum", |x, b| x > b, "more than"),
        ("exclusiveMaximum", |x, b| x < b, "less than"),
    ];
    for (key, fits, words) in BOUNDS {
        let Some(bound) = schema.get(key) else {
            continue;
        };
        if bound.as_f64().is_some_and(|b| !fits(x, b)) {
            out.push(path, format!("expected {words} {bound}, got {number}"));
        }
    }
    if let Some(step) = schema.get("multipleOf") {
        let whole = |q: f64| (q - q.round()).abs() <= 1e-9;
        if step.as_f64().is_some_and(|s| s > 0.0 && !whole(x / s)) {
            out.push(path, format!("expected a multiple of {step}, got {number}"));
        }
    }
    if let Some(Value::String(format)) = schema.get("format") {
        let range: Option<(i128, i128)> = match format.as_str() {
            "int8" => Some((i8::MIN.into(), i8::MAX.into())),
            "int16" => Some((i16::MIN.into(), i16::MAX.into())),
            "int32" => Some((i32::MIN.into(), i32::MAX.into())),
            "int64" | "int" => Some((i64::MIN.into(), i64::MAX.into())),
            "uint8" => Some((0, u8::MAX.into())),
            "uint16" => Some((0, u16::MAX.into())),
            "uint32" => Some((0, u32::MAX.into())),
            "uint64" | "uint" => Some((0, u64::MAX.into())),
            _ => None,
        };
        let value = number
            .as_i64()
            .map(i128::from)
            .or(number.as_u64().map(i128::from));
        if let (Some((min, max)), Some(value)) = (range, value) {
            if value < min || value > max {
                out.push(
                    path,
                    format!("expected an integer from {min} to {max} ({format}), got {number}"),
                );
            }
        }
    }
}

/// A `$ref` name as JSON Pointer writes it (`~1` for `/`, `~0` for `~`), decoded.
fn decode_ref_name(name: &str) -> String {
    name.replace("~1", "/").replace("~0", "~")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn mistakes(schema: Value, components: Value, value: Value) -> Vec<(String, String)> {
        let components = components.as_object().cloned().unwrap_or_default();
        let validator = Validator::new(schema, components).expect("valid schema");
        validator
            .validate(&value)
            .into_iter()
            .map(|m| (m.path, m.message))
            .collect()
    }

    fn item() -> Value {
        json!({"Item": {"type": "object", "additionalProperties": false, "required": ["text"],
            "properties": {
                "text": {"type": "string", "minLength": 1, "maxLength": 3},
                "weight": {"type": "number", "minimum": 0, "default": 1.0}}}})
    }

    fn score() -> Value {
        let mut components = item();
        components["Score"] = json!({"type": "object", "additionalProperties": false,
            "required": ["items", "top_k"],
            "properties": {
                "items": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}},
                "top_k": {"type": "integer", "format": "uint32", "minimum": 1, "maximum": 100},
                "note": {"type": ["string", "null"], "pattern": "^[a-z]+$"}}});
        components
    }

    #[test]
    fn every_mistake_is_listed_with_its_path() {
        let body = json!({"items": [{"text": "ok"}, {"text": "", "weight": -1}, {"weight": 2}],
            "top_k": 500, "extra": true, "note": "ABC"});
        let got = mistakes(json!({"$ref": "#/components/schemas/Score"}), score(), body);
        let paths: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "items[1].text",
                "items[1].weight",
                "items[2]",
                "top_k",
                "note",
                "extra"
            ],
            "{got:?}"
        );
        assert_eq!(got[0].1, "expected at least 1 character, got 0");
        assert_eq!(got[1].1, "expected at least 0, got -1");
        assert_eq!(got[2].1, "missing field \"text\"");
        assert_eq!(got[3].1, "expected at most 100, got 500");
        assert!(got[5]
            .1
            .starts_with("unknown field \"extra\", expected one of \"items\""));
    }

    #[test]
    fn a_missing_field_of_the_body_is_reported_at_the_empty_path() {
        let got = mistakes(
            json!({"$ref": "#/components/schemas/Score"}),
            score(),
            json!({"items": []}),
        );
        assert_eq!(
            got,
            [("".to_string(), "missing field \"top_k\"".to_string())]
        );
        let got = mistakes(
            json!({"$ref": "#/components/schemas/Score"}),
            score(),
            json!([1]),
        );
        assert_eq!(
            got,
            [(
                "".to_string(),
                "expected an object, got an array".to_string()
            )]
        );
    }

    #[test]
    fn lengths_count_characters_not_bytes() {
        let schema = json!({"type": "string", "maxLength": 3});
        assert!(
            mistakes(schema.clone(), json!({}), json!("héé")).is_empty(),
            "5 bytes, 3 characters"
        );
        assert!(mistakes(schema.clone(), json!({}), json!("🦀🦀🦀")).is_empty());
        assert_eq!(
            mistakes(schema, json!({}), json!("🦀🦀🦀🦀"))[0].1,
            "expected at most 3 characters, got 4"
        );
    }

    #[test]
    fn integers_are_written_without_a_fraction_and_fit_their_format() {
        let schema = json!({"type": "integer", "format": "uint8"});
        assert!(mistakes(schema.clone(), json!({}), json!(255)).is_empty());
        assert_eq!(
            mistakes(schema.clone(), json!({}), json!(1.5))[0].1,
            "expected an integer, got a number"
        );
        assert_eq!(
            mistakes(schema, json!({}), json!(256))[0].1,
            "expected an integer from 0 to 255 (uint8), got 256"
        );
    }

    #[test]
    fn an_option_reports_the_mistakes_of_its_inner_type() {
        let schema = json!({"anyOf": [{"$ref": "#/components/schemas/Item"}, {"type": "null"}]});
        assert!(mistakes(schema.clone(), item(), json!(null)).is_empty());
        let got = mistakes(schema.clone(), item(), json!({"text": "long"}));
        assert_eq!(
            got,
            [(
                "text".to_string(),
                "expected at most 3 characters, got 4".to_string()
            )]
        );
        let got = mistakes(schema, item(), json!(7));
        assert_eq!(got[0].1, "expected an object or null, got an integer");
    }

    #[test]
    fn enums_consts_and_tagged_variants() {
        let schema = json!({"oneOf": [
            {"type": "string", "enum": ["low", "high"]},
            {"type": "object", "required": ["Custom"], "additionalProperties": false,
             "properties": {"Custom": {"type": "number", "maximum": 1}}}]});
        assert!(mistakes(schema.clone(), json!({}), json!("low")).is_empty());
        assert_eq!(
            mistakes(schema.clone(), json!({}), json!("mid"))[0].1,
            "expected one of \"low\", \"high\", got \"mid\""
        );
        let got = mistakes(schema, json!({}), json!({"Custom": 2}));
        assert_eq!(
            got,
            [(
                "Custom".to_string(),
                "expected at most 1, got 2".to_string()
            )]
        );
    }

    #[test]
    fn odd_keys_are_quoted_and_lists_are_capped() {
        let schema = json!({"type": "object", "additionalProperties": {"type": "integer"}});
        let got = mistakes(schema, json!({}), json!({"two words": "x"}));
        assert_eq!(got[0].0, "[\"two words\"]");
        let many = Value::Array(vec![json!("x"); 150]);
        let got = mistakes(
            json!({"type": "array", "items": {"type": "integer"}}),
            json!({}),
            many,
        );
        assert_eq!(got.len(), MAX_LISTED + 1);
        assert_eq!(
            got[MAX_LISTED],
            ("".to_string(), "50 more mistakes not listed".to_string())
        );
    }

    #[test]
    fn a_bad_pattern_is_refused_and_a_ref_loop_ends() {
        assert!(Validator::new(json!({"pattern": "("}), Map::new()).is_err());
        let loop_ = json!({"A": {"$ref": "#/components/schemas/A"}});
        let got = mistakes(json!({"$ref": "#/components/schemas/A"}), loop_, json!(1));
        assert_eq!(got[0].1, "the schema nests too deep to check");
    }
}
