//! Unit tests of the decoder layout and the decoder.
#![allow(clippy::unwrap_used)]
use super::*;
use crate::model::{DataType, TensorSpec};
use serde_json::json;

fn spec(name: &str, datatype: DataType, shape: &[i64]) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        datatype,
        shape: shape.to_vec(),
    }
}

/// An Optimum-style signature with `layers` layers of [batch, kv, past, size] caches.
fn signature(layers: usize, kv: i64, size: i64, positions: bool) -> Signature {
    let mut inputs = vec![
        spec("input_ids", DataType::Int64, &[-1, -1]),
        spec("attention_mask", DataType::Int64, &[-1, -1]),
    ];
    if positions {
        inputs.push(spec("position_ids", DataType::Int64, &[-1, -1]));
    }
    let mut outputs = vec![spec("logits", DataType::Fp32, &[-1, -1, 100])];
    for i in 0..layers {
        for kind in ["key", "value"] {
            inputs.push(spec(
                &format!("past_key_values.{i}.{kind}"),
                DataType::Fp32,
                &[-1, kv, -1, size],
            ));
            outputs.push(spec(
                &format!("present.{i}.{kind}"),
                DataType::Fp32,
                &[-1, kv, -1, size],
            ));
        }
    }
    Signature { inputs, outputs }
}

#[test]
fn reads_layers_grouped_query_heads_and_head_size() {
    let config = json!({"num_attention_heads": 8, "max_position_embeddings": 4096});
    let layout = DecoderLayout::from_signature(&signature(3, 2, 64, true), &config).unwrap();
    assert_eq!(
        layout,
        DecoderLayout {
            layers: 3,
            heads: 8,
            kv_heads: 2,
            head_size: 64,
            vocab: Some(100),
            has_position_ids: true,
            context: 4096,
        }
    );
    assert_eq!(layout.cache_bytes(), 4096 * 3 * 2 * 64 * 4 * 2);
}

#[test]
fn position_ids_are_optional_and_symbolic_dims_come_from_config_json() {
    let config = json!({"num_attention_heads": 4, "num_key_value_heads": 4, "hidden_size": 128});
    let layout = DecoderLayout::from_signature(&signature(1, -1, -1, false), &config).unwrap();
    assert!(!layout.has_position_ids);
    assert_eq!(
        (layout.heads, layout.kv_heads, layout.head_size),
        (4, 4, 32)
    );
    assert_eq!(layout.context, DEFAULT_CONTEXT);
    let err = DecoderLayout::from_signature(&signature(1, -1, -1, false), &json!({})).unwrap_err();
    assert!(err.message().contains("num_key_value_heads"), "{err}");
}

#[test]
fn a_half_match_names_everything_missing() {
    let mut half = signature(2, 2, 16, true);
    half.outputs.retain(|s| s.name != "present.1.value");
    half.inputs.retain(|s| s.name != "attention_mask");
    half.inputs[2].datatype = DataType::Fp16;
    let err = DecoderLayout::from_signature(&half, &json!({})).unwrap_err();
    assert_eq!(
        err.message(),
        "not a decoder with a cache in Optimum's layout: missing input \"attention_mask\"; \
         input \"past_key_values.0.key\": expected FP32, got FP16; missing output \"present.1.value\""
    );
}

#[test]
fn a_model_without_a_cache_is_told_how_to_export_one() {
    let mut plain = signature(0, 2, 16, false);
    plain
        .inputs
        .push(spec("token_type_ids", DataType::Int64, &[-1, -1]));
    let err = DecoderLayout::from_signature(&plain, &json!({})).unwrap_err();
    assert!(
        err.message().contains("--task text-generation-with-past"),
        "{err}"
    );
    assert!(
        err.message()
            .contains("unsupported input \"token_type_ids\""),
        "{err}"
    );
}

#[test]
fn heads_must_be_a_multiple_of_kv_heads() {
    let err = DecoderLayout::from_signature(
        &signature(1, 3, 16, true),
        &json!({"num_attention_heads": 4}),
    )
    .unwrap_err();
    assert!(err.message().contains("not a multiple"), "{err}");
}

#[test]
fn a_decoder_is_shared_by_threads_and_a_cache_moves_between_them() {
    fn shared<T: Send + Sync>() {}
    fn movable<T: Send>() {}
    shared::<Decoder>();
    movable::<KvCache>();
}

#[test]
fn argmax_takes_the_lowest_index_on_ties() {
    assert_eq!(argmax(&[0.5, 2.0, 2.0, -1.0]), 1);
    assert_eq!(argmax(&[]), 0);
}
