//! JSON Schemas and example requests generated from a model's signature: what the predict
//! and v2 infer routes accept and answer for that model.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::model::{DataType, Generator, Model, Tensor, TensorSpec};

/// Examples larger than this many elements are left out (a `[1, 3, 224, 224]` image input
/// would make every page and the OpenAPI document megabytes long).
const MAX_EXAMPLE_ELEMENTS: usize = 4096;

/// What the docs know about one loaded model, computed once when the docs are mounted.
#[derive(Debug, Clone)]
pub(crate) struct ModelInfo {
    pub model: Arc<Model>,
    /// A byte-level language model ([`Generator::fits`]): its demo is a chat.
    pub generative: bool,
    /// A valid predict body (`{"inputs": {...}}`), when one could be made.
    pub example: Option<Value>,
}

impl ModelInfo {
    /// Reads the model's example file (`NAME.example.json` next to `NAME.onnx`) or makes an
    /// example from the signature.
    pub fn new(model: &Arc<Model>) -> ModelInfo {
        let generative = Generator::fits(model);
        let example = match example_file(model) {
            Some(example) if fits(model, &example) => Some(example),
            _ => generated_example(model, generative),
        };
        ModelInfo {
            model: Arc::clone(model),
            generative,
            example,
        }
    }

    /// The example as a v2 infer body: each input flat with its shape.
    pub fn infer_example(&self) -> Option<Value> {
        let inputs = self.example.as_ref()?.get("inputs")?.as_object()?;
        let mut list = Vec::new();
        for spec in &self.model.signature().inputs {
            let tensor = Tensor::from_json(spec, inputs.get(&spec.name)?, None, None).ok()?;
            list.push(json!({
                "name": spec.name,
                "shape": tensor.shape,
                "datatype": spec.datatype.as_str(),
                "data": tensor.to_flat_json(),
            }));
        }
        Some(json!({ "inputs": list }))
    }

    /// JSON Schema of one element of input `spec` (token ids of a language model are bytes).
    fn input_element(&self, spec: &TensorSpec) -> Value {
        if self.generative {
            return json!({"type": "integer", "minimum": 0, "maximum": 255,
                "description": "a UTF-8 byte: this is a byte-level language model"});
        }
        element(spec.datatype)
    }

    /// `POST /models/NAME/predict` request body.
    pub fn predict_request(&self) -> Value {
        let mut properties = Map::new();
        for spec in &self.model.signature().inputs {
            let schema = nested(&spec.shape, self.input_element(spec), true);
            properties.insert(spec.name.clone(), described(schema, spec));
        }
        json!({
            "type": "object",
            "required": ["inputs"],
            "properties": {"inputs": {
                "type": "object",
                "required": names(&self.model.signature().inputs),
                "properties": properties,
                "additionalProperties": false,
            }},
        })
    }

    /// `POST /models/NAME/predict` 200 body.
    pub fn predict_response(&self) -> Value {
        let mut properties = Map::new();
        for spec in &self.model.signature().outputs {
            properties.insert(spec.name.clone(), output_nested(spec));
        }
        json!({
            "type": "object",
            "required": ["outputs"],
            "properties": {"outputs": {
                "type": "object",
                "required": names(&self.model.signature().outputs),
                "properties": properties,
            }},
        })
    }

    /// `POST /v2/models/NAME/infer` request body.
    pub fn infer_request(&self) -> Value {
        let inputs = &self.model.signature().inputs;
        let items: Vec<Value> = inputs
            .iter()
            .map(|spec| {
                let element = self.input_element(spec);
                let mut flat =
                    json!({"type": "array", "items": element, "description": "row-major"});
                if spec.shape.iter().all(|&d| d >= 0) {
                    let count: i64 = spec.shape.iter().product();
                    flat["minItems"] = json!(count);
                    flat["maxItems"] = json!(count);
                }
                json!({
                    "type": "object",
                    "required": ["name", "shape", "datatype", "data"],
                    "properties": {
                        "name": {"const": spec.name},
                        "shape": shape_schema(&spec.shape),
                        "datatype": {"const": spec.datatype.as_str()},
                        "data": {"anyOf": [flat, nested(&spec.shape, element, true)]},
                        "parameters": {"type": "object"},
                    },
                })
            })
            .collect();
        json!({
            "type": "object",
            "required": ["inputs"],
            "properties": {
                "id": {"type": "string", "description": "echoed in the answer"},
                "parameters": {"type": "object", "properties": {
                    "binary_data_output": {"type": "boolean"}}},
                "inputs": {"type": "array", "minItems": inputs.len(), "maxItems": inputs.len(),
                    "items": {"oneOf": items}},
                "outputs": {"type": "array", "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"enum": names(&self.model.signature().outputs)},
                        "parameters": {"type": "object", "properties": {
                            "binary_data": {"type": "boolean"}}},
                    },
                }},
            },
        })
    }

    /// `POST /v2/models/NAME/infer` 200 JSON body.
    pub fn infer_response(&self) -> Value {
        let items: Vec<Value> = self
            .model
            .signature()
            .outputs
            .iter()
            .map(|spec| {
                json!({
                    "type": "object",
                    "required": ["name", "datatype", "shape"],
                    "properties": {
                        "name": {"const": spec.name},
                        "datatype": {"const": spec.datatype.as_str()},
                        "shape": output_shape(spec),
                        "data": {"type": "array", "items": output_element(spec.datatype),
                            "description": "flat, row-major; absent for a binary output"},
                        "parameters": {"type": "object", "properties": {
                            "binary_data_size": {"type": "integer", "minimum": 0}}},
                    },
                })
            })
            .collect();
        json!({
            "type": "object",
            "required": ["model_name", "model_version", "outputs"],
            "properties": {
                "model_name": {"const": self.model.name()},
                "model_version": {"const": "1"},
                "id": {"type": "string"},
                "outputs": {"type": "array", "items": {"oneOf": items}},
            },
        })
    }
}

/// JSON Schema of one element of `datatype`: booleans, integers with the type's range,
/// numbers that stay finite in the type.
pub(crate) fn element(datatype: DataType) -> Value {
    crate::model::element_schema(datatype)
}

/// An output element: floats may be `null`, which stands for NaN or an infinity.
fn output_element(datatype: DataType) -> Value {
    if datatype.is_float() {
        json!({"type": ["number", "null"],
            "description": "null stands for NaN or an infinity, which JSON cannot write"})
    } else {
        element(datatype)
    }
}

/// Nested arrays for `shape` around `element`: static dimensions fix the length, dynamic
/// ones (`-1`) leave it open. In an input, a dynamic dimension other than the last needs at
/// least one item (an empty array would hide the dimensions inside it).
pub(crate) fn nested(shape: &[i64], element: Value, input: bool) -> Value {
    let mut schema = element;
    for (axis, &dim) in shape.iter().enumerate().rev() {
        let mut array = json!({"type": "array", "items": schema});
        if dim >= 0 {
            array["minItems"] = json!(dim);
            array["maxItems"] = json!(dim);
        } else if input && axis + 1 < shape.len() {
            array["minItems"] = json!(1);
        }
        schema = array;
    }
    schema
}

/// Why an output's schema leaves its dimensions open.
const OUTPUT_DIMENSIONS: &str = "ONNX Runtime does not hold a model to the output dimensions \
    it declares (NonZero, Compress, Unique, or a reduction over an `axes` input, answer other \
    sizes), so only the rank is fixed";

/// Why a `[]` output may be anything.
const OUTPUT_UNKNOWN: &str = "a 0-d output, or one whose shape the model does not declare \
    (ONNX Runtime reports both as `[]`): a bare value or nested arrays of any depth";

/// An output in a predict answer: nested arrays of the declared rank, each dimension open;
/// for a declared `[]`, a bare value or nested arrays.
fn output_nested(spec: &TensorSpec) -> Value {
    let element = output_element(spec.datatype);
    let (mut schema, why) = match spec.shape.is_empty() {
        true => (
            json!({"anyOf": [element, {"type": "array"}]}),
            OUTPUT_UNKNOWN,
        ),
        false => (
            nested(&vec![-1; spec.shape.len()], element, false),
            OUTPUT_DIMENSIONS,
        ),
    };
    schema["description"] = json!(format!(
        "{} {} as the model declares it; {why}",
        spec.datatype,
        spec.shape_text()
    ));
    schema
}

/// An output's v2 `shape`: as many dimensions as declared (any number for a declared `[]`).
fn output_shape(spec: &TensorSpec) -> Value {
    let mut schema = json!({"type": "array", "items": {"type": "integer", "minimum": 0}});
    let why = match spec.shape.is_empty() {
        true => OUTPUT_UNKNOWN,
        false => {
            schema["minItems"] = json!(spec.shape.len());
            schema["maxItems"] = json!(spec.shape.len());
            OUTPUT_DIMENSIONS
        }
    };
    schema["description"] = json!(format!(
        "{} as the model declares it; {why}",
        spec.shape_text()
    ));
    schema
}

/// An input's v2 `shape`: one non-negative integer per dimension, `prefixItems` fixing the
/// static ones (a tool that does not read `prefixItems` still gets the rank and the range).
fn shape_schema(shape: &[i64]) -> Value {
    let dims: Vec<Value> = shape
        .iter()
        .map(|&d| match d >= 0 {
            true => json!({"const": d}),
            false => json!({"type": "integer", "minimum": 0}),
        })
        .collect();
    let mut schema = json!({"type": "array", "items": {"type": "integer", "minimum": 0},
        "minItems": shape.len(), "maxItems": shape.len(),
        "description": format!("{shape:?}; -1 is any size")});
    if !dims.is_empty() {
        // JSON Schema wants at least one item in `prefixItems`.
        schema["prefixItems"] = Value::Array(dims);
    }
    schema
}

fn described(mut schema: Value, spec: &TensorSpec) -> Value {
    schema["description"] = json!(format!("{} {}", spec.datatype, spec.shape_text()));
    schema
}

fn names(specs: &[TensorSpec]) -> Vec<String> {
    specs.iter().map(|s| s.name.clone()).collect()
}

/// `NAME.example.json` beside the model file: a predict body written by hand.
fn example_file(model: &Model) -> Option<Value> {
    let path: PathBuf = model.path().with_extension("example.json");
    let text = std::fs::read_to_string(&path).ok()?;
    match serde_json::from_str(&text) {
        Ok(value) => Some(value),
        Err(err) => {
            crate::log::warn(&format!("{}: not JSON ({err}); ignored", path.display()));
            None
        }
    }
}

/// An example made from the signature: dynamic dimensions of 1, and for a language model
/// the bytes of "Hello".
fn generated_example(model: &Model, generative: bool) -> Option<Value> {
    let mut inputs = Map::new();
    for spec in &model.signature().inputs {
        let value = if generative {
            json!([b"Hello".to_vec()])
        } else {
            let count: usize = spec.shape.iter().map(|&d| d.max(1) as usize).product();
            if count > MAX_EXAMPLE_ELEMENTS {
                return None;
            }
            let leaf = match spec.datatype {
                DataType::Bool => json!(true),
                float if float.is_float() => json!(0.5),
                _ => json!(1),
            };
            spec.shape.iter().rev().fold(leaf, |inner, &d| {
                Value::Array(vec![inner; d.max(1) as usize])
            })
        };
        inputs.insert(spec.name.clone(), value);
    }
    Some(json!({ "inputs": inputs }))
}

/// Whether the example file's `example` is a valid predict body for `model` (else logged).
fn fits(model: &Model, example: &Value) -> bool {
    let check = || -> Result<(), String> {
        let inputs = example
            .get("inputs")
            .and_then(Value::as_object)
            .ok_or("expected {\"inputs\": {...}}")?;
        for spec in &model.signature().inputs {
            let data = inputs
                .get(&spec.name)
                .ok_or(format!("missing input \"{}\"", spec.name))?;
            Tensor::from_json(spec, data, None, None).map_err(|err| err.message().to_string())?;
        }
        match inputs.keys().find(|k| model.signature().input(k).is_none()) {
            Some(unknown) => Err(format!("unknown input \"{unknown}\"")),
            None => Ok(()),
        }
    };
    check()
        .map_err(|why| {
            let path = model.path().with_extension("example.json");
            crate::log::warn(&format!("{}: {why}; ignored", path.display()));
        })
        .is_ok()
}
