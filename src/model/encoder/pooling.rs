//! Pooling: one vector per text from the encoder's token vectors, as sentence-transformers'
//! `Pooling` module computes it, and the L2 normalization of its `Normalize` module.

use serde_json::Value;

/// How token vectors become one vector, as `1_Pooling/config.json` names the modes
/// (`pooling_mode_cls_token`, `pooling_mode_max_tokens`, `pooling_mode_mean_tokens`,
/// `pooling_mode_mean_sqrt_len_tokens`, `pooling_mode_lasttoken`). Several modes on at once
/// are concatenated in this order, as sentence-transformers does.
///
/// # Example
/// ```
/// use tinyserve::model::Pooling;
/// let modes = Pooling::from_config(&serde_json::json!({"pooling_mode_cls_token": true}));
/// assert_eq!(modes, Ok(vec![Pooling::Cls]));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pooling {
    /// The first token's vector (`[CLS]`).
    Cls,
    /// The largest value of each dimension over the tokens.
    Max,
    /// The mean over the tokens (padding left out by the attention mask).
    Mean,
    /// The sum over the tokens divided by the square root of their count.
    MeanSqrtLen,
    /// The last token's vector.
    LastToken,
}

impl Pooling {
    /// Every mode, in the order sentence-transformers concatenates them, with its config key.
    const KEYS: [(Pooling, &'static str); 5] = [
        (Pooling::Cls, "pooling_mode_cls_token"),
        (Pooling::Max, "pooling_mode_max_tokens"),
        (Pooling::Mean, "pooling_mode_mean_tokens"),
        (Pooling::MeanSqrtLen, "pooling_mode_mean_sqrt_len_tokens"),
        (Pooling::LastToken, "pooling_mode_lasttoken"),
    ];

    /// The modes `1_Pooling/config.json` turns on; mean when it turns on none (or the file is
    /// absent: pass an empty object). A mode tinyserve does not compute
    /// (`pooling_mode_weightedmean_tokens`) is an error naming it.
    pub fn from_config(config: &Value) -> Result<Vec<Pooling>, String> {
        if config.get("pooling_mode_weightedmean_tokens") == Some(&Value::Bool(true)) {
            return Err(
                "pooling_mode_weightedmean_tokens is not supported (cls, max, mean, \
                        mean_sqrt_len and lasttoken are)"
                    .into(),
            );
        }
        let modes: Vec<Pooling> = Pooling::KEYS
            .iter()
            .filter(|(_, key)| config.get(*key) == Some(&Value::Bool(true)))
            .map(|(mode, _)| *mode)
            .collect();
        Ok(if modes.is_empty() {
            vec![Pooling::Mean]
        } else {
            modes
        })
    }

    /// The config key that turns this mode on.
    pub fn key(self) -> &'static str {
        Pooling::KEYS
            .iter()
            .find(|(mode, _)| *mode == self)
            .map_or("", |(_, key)| key)
    }
}

/// The pooled vector of one text: `hidden` holds its `tokens` token vectors of `width` values
/// each, row after row (the padding after them is not passed); `modes` concatenated.
pub(crate) fn pool(hidden: &[f32], width: usize, modes: &[Pooling], out: &mut Vec<f32>) {
    let rows = hidden.chunks_exact(width.max(1));
    let count = rows.len();
    for mode in modes {
        match mode {
            Pooling::Cls => out.extend_from_slice(hidden.get(..width).unwrap_or_default()),
            Pooling::LastToken => out.extend_from_slice(
                hidden
                    .get(width * count.saturating_sub(1)..width * count)
                    .unwrap_or_default(),
            ),
            Pooling::Max => {
                let mut max = vec![f32::NEG_INFINITY; width];
                for row in rows.clone() {
                    for (m, &v) in max.iter_mut().zip(row) {
                        *m = m.max(v);
                    }
                }
                out.extend(max);
            }
            Pooling::Mean | Pooling::MeanSqrtLen => {
                let mut sum = vec![0f64; width];
                for row in rows.clone() {
                    for (s, &v) in sum.iter_mut().zip(row) {
                        *s += f64::from(v);
                    }
                }
                let n = count.max(1) as f64;
                let divisor = if *mode == Pooling::Mean { n } else { n.sqrt() };
                out.extend(sum.iter().map(|s| (s / divisor) as f32));
            }
        }
    }
}

/// Scales `vector` to length 1 (a zero vector stays zero), as sentence-transformers'
/// `Normalize` module (`torch.nn.functional.normalize`, epsilon 1e-12).
pub(crate) fn normalize(vector: &mut [f32]) {
    let norm = vector
        .iter()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        .sqrt()
        .max(1e-12);
    for v in vector {
        *v = (f64::from(*v) / norm) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Three tokens of width 2.
    const HIDDEN: [f32; 6] = [1.0, -2.0, 3.0, 0.0, -1.0, 8.0];

    fn pooled(modes: &[Pooling]) -> Vec<f32> {
        let mut out = Vec::new();
        pool(&HIDDEN, 2, modes, &mut out);
        out
    }

    #[test]
    fn each_mode_follows_sentence_transformers() {
        assert_eq!(pooled(&[Pooling::Cls]), [1.0, -2.0]);
        assert_eq!(pooled(&[Pooling::LastToken]), [-1.0, 8.0]);
        assert_eq!(pooled(&[Pooling::Max]), [3.0, 8.0]);
        assert_eq!(pooled(&[Pooling::Mean]), [1.0, 2.0]);
        let root = 3f64.sqrt();
        let expected = [(3.0 / root) as f32, (6.0 / root) as f32];
        assert_eq!(pooled(&[Pooling::MeanSqrtLen]), expected);
        assert_eq!(
            pooled(&[Pooling::Cls, Pooling::Mean]),
            [1.0, -2.0, 1.0, 2.0]
        );
    }

    #[test]
    fn the_config_turns_modes_on_in_sentence_transformers_order() {
        let config = json!({"pooling_mode_mean_tokens": true, "pooling_mode_cls_token": true,
            "pooling_mode_max_tokens": false});
        assert_eq!(
            Pooling::from_config(&config),
            Ok(vec![Pooling::Cls, Pooling::Mean])
        );
        assert_eq!(Pooling::from_config(&json!({})), Ok(vec![Pooling::Mean]));
        let weighted = json!({"pooling_mode_weightedmean_tokens": true});
        assert!(Pooling::from_config(&weighted)
            .expect_err("weightedmean is refused")
            .contains("weightedmean"));
        assert_eq!(
            Pooling::MeanSqrtLen.key(),
            "pooling_mode_mean_sqrt_len_tokens"
        );
    }

    #[test]
    fn normalizing_gives_length_one_and_keeps_zero() {
        let mut v = [3.0, 4.0];
        normalize(&mut v);
        assert_eq!(v, [0.6, 0.8]);
        let mut zero = [0.0, 0.0];
        normalize(&mut zero);
        assert_eq!(zero, [0.0, 0.0]);
    }
}
