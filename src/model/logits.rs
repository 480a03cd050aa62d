//! Reading a language model's logits, shared by the sampler and the decoder's greedy loop.

/// The index of the largest logit, the lowest on ties (as NumPy's `argmax`).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &value) in logits.iter().enumerate() {
        if value > logits[best] {
            best = i;
        }
    }
    best as u32
}
