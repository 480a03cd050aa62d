//! [`DecoderLayout`]: the shape of a decoder's KV cache, read from its inputs and outputs.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::model::{DataType, Signature, TensorSpec};
use crate::{Error, ErrorKind, Result};

/// The context length assumed when neither `config.json` nor `tokenizer_config.json` names one.
pub const DEFAULT_CONTEXT: usize = 2048;

/// The `config.json` keys that name the context length, by architecture family.
pub(super) const CONTEXT_KEYS: [&str; 3] = ["max_position_embeddings", "n_positions", "n_ctx"];

/// The shape of a decoder's cache, read from its inputs and outputs (and `config.json` for
/// what they cannot tell).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecoderLayout {
    /// Transformer layers: one `past_key_values.{i}.key`/`.value` pair each.
    pub layers: usize,
    /// Query heads: `config.json`'s `num_attention_heads`, else `kv_heads`.
    pub heads: usize,
    /// Key/value heads, the second dimension of the past tensors (fewer than `heads` for
    /// grouped-query attention).
    pub kv_heads: usize,
    /// Elements per head, the last dimension of the past tensors.
    pub head_size: usize,
    /// The last dimension of `logits`, when fixed.
    pub vocab: Option<usize>,
    /// Whether the model takes `position_ids`.
    pub has_position_ids: bool,
    /// The longest sequence (prompt + generated tokens) the model takes: `config.json`'s
    /// `max_position_embeddings` (or `n_positions`, `n_ctx`), else `tokenizer_config.json`'s
    /// `model_max_length`, else [`DEFAULT_CONTEXT`].
    pub context: usize,
}

impl DecoderLayout {
    /// Reads the layout from a session's signature. `config` is `config.json` (an empty object
    /// when absent), used for the query heads and the context, and for the key/value heads and
    /// head size when the export left those dimensions symbolic.
    ///
    /// Fails naming everything missing or wrong when the signature half-matches, such as
    /// `missing output "present.1.value"; input "past_key_values.0.key": expected FP32, got FP16`.
    pub fn from_signature(signature: &Signature, config: &Value) -> Result<DecoderLayout> {
        let mut problems = Vec::new();
        let layers = layer_count(signature, &mut problems);
        for name in ["input_ids", "attention_mask", "position_ids"] {
            match signature.input(name) {
                Some(spec) => expect_type(spec, "input", DataType::Int64, 2, &mut problems),
                None if name == "position_ids" => {}
                None => problems.push(format!("missing input \"{name}\"")),
            }
        }
        let mut vocab = None;
        match signature.output("logits") {
            Some(spec) => {
                expect_type(spec, "output", DataType::Fp32, 3, &mut problems);
                vocab = spec.shape.get(2).and_then(|&d| usize::try_from(d).ok());
            }
            None => problems.push("missing output \"logits\"".into()),
        }
        let mut dims = BTreeSet::new();
        for i in 0..layers {
            for kind in ["key", "value"] {
                let past = format!("past_key_values.{i}.{kind}");
                let present = format!("present.{i}.{kind}");
                for (outlet, name, spec) in [
                    ("input", &past, signature.input(&past)),
                    ("output", &present, signature.output(&present)),
                ] {
                    match spec {
                        Some(spec) => {
                            expect_type(spec, outlet, DataType::Fp32, 4, &mut problems);
                            dims.insert((spec.shape.get(1).copied(), spec.shape.get(3).copied()));
                        }
                        None => problems.push(format!("missing {outlet} \"{name}\"")),
                    }
                }
            }
        }
        let known = |name: &str| {
            ["input_ids", "attention_mask", "position_ids"].contains(&name)
                || name.starts_with("past_key_values.")
        };
        for spec in signature.inputs.iter().filter(|s| !known(&s.name)) {
            problems.push(format!("unsupported input \"{}\"", spec.name));
        }
        if dims.len() > 1 {
            problems.push(format!(
                "the cache tensors disagree on [kv_heads, head_size]: {}",
                dims.iter()
                    .map(|(h, s)| format!("[{}, {}]", h.unwrap_or(-1), s.unwrap_or(-1)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !problems.is_empty() {
            return Err(layout_error(problems.join("; ")));
        }
        let number = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| config.get(*k).and_then(Value::as_u64))
                .and_then(|n| usize::try_from(n).ok())
                .filter(|&n| n > 0)
        };
        let fixed = |d: Option<i64>| d.and_then(|d| usize::try_from(d).ok()).filter(|&d| d > 0);
        let (kv_dim, size_dim) = dims.into_iter().next().unwrap_or((None, None));
        let heads_config = number(&["num_attention_heads", "n_head"]);
        let kv_heads = fixed(kv_dim)
            .or_else(|| number(&["num_key_value_heads"]))
            .or(heads_config)
            .ok_or_else(|| {
                layout_error(
                    "the cache's head count is symbolic and config.json has no num_key_value_heads"
                        .into(),
                )
            })?;
        let head_size = fixed(size_dim)
            .or_else(|| number(&["head_dim"]))
            .or_else(|| Some(number(&["hidden_size", "n_embd"])? / heads_config?))
            .ok_or_else(|| {
                layout_error(
                    "the cache's head size is symbolic and config.json has no head_dim".into(),
                )
            })?;
        let heads = heads_config.unwrap_or(kv_heads);
        if heads % kv_heads != 0 {
            return Err(layout_error(format!(
                "{heads} attention heads (config.json) are not a multiple of the cache's {kv_heads} key/value heads"
            )));
        }
        Ok(DecoderLayout {
            layers,
            heads,
            kv_heads,
            head_size,
            vocab,
            has_position_ids: signature.input("position_ids").is_some(),
            context: number(&CONTEXT_KEYS).unwrap_or(DEFAULT_CONTEXT),
        })
    }

    /// The most memory one stream's cache takes, in bytes: context × layers × kv_heads ×
    /// head_size × 4 bytes (FP32) × 2 (keys and values).
    ///
    /// # Example
    /// ```
    /// use tinyserve::model::DecoderLayout;
    /// let layout = DecoderLayout {
    ///     layers: 2, heads: 4, kv_heads: 2, head_size: 32, vocab: Some(1024),
    ///     has_position_ids: true, context: 1024,
    /// };
    /// assert_eq!(layout.cache_bytes(), 1024 * 2 * 2 * 32 * 4 * 2);
    /// ```
    pub fn cache_bytes(&self) -> u64 {
        [
            self.context,
            self.layers,
            self.kv_heads,
            self.head_size,
            4,
            2,
        ]
        .iter()
        .map(|&n| n as u64)
        .product()
    }
}

/// The number of layers: the `past_key_values.{i}.*` inputs must number 0..n without gaps.
fn layer_count(signature: &Signature, problems: &mut Vec<String>) -> usize {
    let indices: BTreeSet<usize> = signature
        .inputs
        .iter()
        .filter_map(|s| s.name.strip_prefix("past_key_values."))
        .filter_map(|rest| rest.split('.').next()?.parse().ok())
        .collect();
    match indices.last() {
        None => {
            problems.push(
                "no \"past_key_values.{i}.key\" inputs: export the model with its cache \
                 (optimum-cli export onnx --task text-generation-with-past)"
                    .into(),
            );
            0
        }
        Some(&last) => last + 1,
    }
}

fn expect_type(
    spec: &TensorSpec,
    outlet: &str,
    datatype: DataType,
    rank: usize,
    problems: &mut Vec<String>,
) {
    if spec.datatype != datatype {
        problems.push(format!(
            "{outlet} \"{}\": expected {datatype}, got {}",
            spec.name, spec.datatype
        ));
    } else if spec.shape.len() != rank {
        problems.push(format!(
            "{outlet} \"{}\": expected {rank} dimensions, got {}",
            spec.name,
            spec.shape_text()
        ));
    }
}

fn layout_error(reason: String) -> Error {
    Error::new(
        ErrorKind::Internal,
        format!("not a decoder with a cache in Optimum's layout: {reason}"),
    )
}
