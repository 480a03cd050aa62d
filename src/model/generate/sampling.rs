//! [`Sampling`]: how to pick each next token, and the sampler that does it.

use crate::model::logits::argmax;

/// How to pick each next token.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// Tokens to generate at most.
    pub max_tokens: usize,
    /// 0 picks the most likely token (greedy); higher values flatten the distribution.
    pub temperature: f64,
    /// Keep the smallest set of tokens whose probabilities add up to `top_p`.
    pub top_p: f64,
    /// Keep only the `top_k` most likely tokens (0 = all).
    pub top_k: usize,
    /// Stop before any of these strings; they are not part of the text.
    pub stop: Vec<String>,
    /// Seed of the sampler, for reproducible sampling. `None` seeds from the clock.
    pub seed: Option<u64>,
}

impl Default for Sampling {
    fn default() -> Sampling {
        Sampling {
            max_tokens: 16,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            stop: Vec::new(),
            seed: None,
        }
    }
}

/// Picks tokens from logits: greedy at temperature 0, else temperature, top-k and top-p.
pub(super) struct Sampler {
    temperature: f64,
    top_p: f64,
    top_k: usize,
    state: u64,
}

impl Sampler {
    pub(super) fn new(sampling: &Sampling) -> Sampler {
        let seed = sampling.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
        });
        Sampler {
            temperature: sampling.temperature,
            top_p: sampling.top_p,
            top_k: sampling.top_k,
            state: seed,
        }
    }

    /// SplitMix64: small, fast, and the same sequence for the same seed everywhere.
    pub(super) fn next_unit(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The index of the picked logit.
    pub(super) fn pick(&mut self, logits: &[f32]) -> u32 {
        if self.temperature <= 0.0 {
            return argmax(logits);
        }
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut ranked: Vec<(u32, f64)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, ((f64::from(l - max)) / self.temperature).exp()))
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if self.top_k > 0 {
            ranked.truncate(self.top_k);
        }
        let total: f64 = ranked.iter().map(|(_, p)| p).sum();
        let mut kept = 0.0;
        let mut cut = ranked.len();
        for (i, (_, p)) in ranked.iter().enumerate() {
            kept += p / total;
            if kept >= self.top_p {
                cut = i + 1;
                break;
            }
        }
        ranked.truncate(cut.max(1));
        let total: f64 = ranked.iter().map(|(_, p)| p).sum();
        let mut target = self.next_unit() * total;
        for (token, p) in &ranked {
            if target < *p {
                return *token;
            }
            target -= p;
        }
        ranked.last().map_or(0, |(token, _)| *token)
    }
}
