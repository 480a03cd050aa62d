//! Unit tests of generation and sampling.
use super::*;
use crate::model::argmax;

fn assemble(bytes: &[u8], stop: &[&str]) -> (Vec<String>, bool) {
    let stop: Vec<String> = stop.iter().map(|s| s.to_string()).collect();
    let mut text = TextAssembler::new(&stop);
    let mut pieces = Vec::new();
    for &b in bytes {
        let (piece, stopped) = text.push(b);
        if !piece.is_empty() {
            pieces.push(piece);
        }
        if stopped {
            return (pieces, true);
        }
    }
    let rest = text.finish();
    if !rest.is_empty() {
        pieces.push(rest);
    }
    (pieces, false)
}

#[test]
fn multibyte_characters_come_out_whole() {
    let (pieces, _) = assemble("a€b".as_bytes(), &[]);
    assert_eq!(pieces, ["a", "€", "b"]);
}

#[test]
fn invalid_bytes_become_replacement_characters_and_unfinished_ones_are_dropped() {
    let (pieces, _) = assemble(&[b'a', 0xff, b'b', 0xe2, 0x82], &[]);
    assert_eq!(pieces.concat(), "a\u{FFFD}b");
}

#[test]
fn stop_strings_are_held_back_and_cut() {
    let (pieces, stopped) = assemble(b"hello\nUser: hi", &["\nUser:"]);
    assert!(stopped);
    assert_eq!(pieces.concat(), "hello");
    let (pieces, stopped) = assemble(b"a\nUb", &["\nUser:"]);
    assert!(!stopped);
    assert_eq!(pieces.concat(), "a\nUb");
}

#[test]
fn greedy_takes_the_first_of_equal_maxima() {
    assert_eq!(argmax(&[0.0, 2.0, 2.0, 1.0]), 1);
}

#[test]
fn sampling_is_reproducible_with_a_seed_and_respects_top_k() {
    let logits: Vec<f32> = (0..256).map(|i| (i % 7) as f32).collect();
    let sampling = Sampling {
        seed: Some(7),
        top_k: 3,
        ..Sampling::default()
    };
    let picks = |s: &Sampling| {
        let mut sampler = Sampler::new(s);
        (0..50).map(|_| sampler.pick(&logits)).collect::<Vec<u32>>()
    };
    assert_eq!(picks(&sampling), picks(&sampling));
    let top3: Vec<u32> = vec![6, 13, 20];
    assert!(picks(&sampling).iter().all(|t| top3.contains(t)));
}

#[test]
fn a_tiny_top_p_is_greedy() {
    let logits: Vec<f32> = (0..256).map(|i| if i == 42 { 5.0 } else { 0.0 }).collect();
    let sampling = Sampling {
        seed: Some(1),
        top_p: 0.01,
        ..Sampling::default()
    };
    let mut sampler = Sampler::new(&sampling);
    assert!((0..20).all(|_| sampler.pick(&logits) == 42));
}
