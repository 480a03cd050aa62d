//! Text generation in the library: a sink that fails stops generation at once.

use tinyserve::model::{FinishReason, Generator, ModelRegistry, Sampling};

use crate::support::repo;

fn bytelm() -> Generator {
    let models = ModelRegistry::load_dir(repo("models")).expect("load models");
    Generator::new(models.get("bytelm").expect("bytelm")).expect("bytelm generates")
}

#[test]
fn a_failing_sink_stops_generation_within_one_token() {
    let generator = bytelm();
    let sampling = Sampling {
        max_tokens: 4096,
        temperature: 0.0,
        ..Sampling::default()
    };
    for stop_after in [1u64, 3, 10] {
        let (tokens_before, cancelled_before) = (
            generator.tokens_generated(),
            generator.generations_cancelled(),
        );
        let mut pieces = 0;
        let outcome = generator
            .generate("The ", &sampling, |_| {
                pieces += 1;
                if pieces > stop_after {
                    Err(tinyserve::Disconnected)
                } else {
                    Ok(())
                }
            })
            .expect("generate");
        let generated = generator.tokens_generated() - tokens_before;
        assert_eq!(outcome.finish_reason, FinishReason::Cancelled);
        // The greedy text after "The " is ASCII without stop strings, so every token is one
        // piece: the token whose piece failed to send is the last one generated.
        assert_eq!(generated, stop_after + 1, "tokens generated");
        assert_eq!(outcome.completion_tokens as u64, generated);
        assert_eq!(generator.generations_cancelled(), cancelled_before + 1);
    }
}

#[test]
fn greedy_generation_is_deterministic_and_counts_tokens() {
    let generator = bytelm();
    let sampling = Sampling {
        max_tokens: 24,
        temperature: 0.0,
        ..Sampling::default()
    };
    let first = generator
        .generate("def ", &sampling, |_| Ok(()))
        .expect("generate");
    let second = generator
        .generate("def ", &sampling, |_| Ok(()))
        .expect("generate");
    assert_eq!(first, second);
    assert_eq!(first.finish_reason, FinishReason::Length);
    assert_eq!(first.completion_tokens, 24);
    assert_eq!(first.prompt_tokens, 4);
}
