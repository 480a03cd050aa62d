//! Decoder folders in Hugging Face Optimum's layout (issue #15), through the library: the
//! bundled `models/tinychat` and the test folder `models/tests/decoders/minimal` (no
//! `position_ids`, multi-head attention, GPT-2 config names, no chat template) against the
//! Python reference `models/decoder_reference.py` (onnxruntime, tokenizers, Jinja2): the chat
//! template, the tokenizer, the KV-cache loop, the server's token generator and the load
//! errors. The HTTP routes are tested in `tests/openai.rs`.
//!
//! Expected outputs come from the reference at run time, never written down here, so the model
//! can be regenerated.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use tinyserve::model::{argmax, ChatTemplate, Decoder, Detokenizer};

use crate::support::process::run;
use crate::support::python::python_env;
use crate::support::{repo, scratch_dir};

const TINYCHAT: &str = "models/tinychat";
const MINIMAL: &str = "models/tests/decoders/minimal";

/// The folder loaded as a model named after it (`tinychat`, `minimal`).
fn load(folder: &str) -> Decoder {
    let name = folder.rsplit('/').next().unwrap_or(folder);
    Decoder::load(name, &repo(folder)).unwrap_or_else(|err| panic!("load {folder}: {err}"))
}

fn tinychat() -> Decoder {
    load(TINYCHAT)
}

/// `models/decoder_reference.py FOLDER ARGS --json`, parsed.
fn reference(folder: &str, args: &[&str]) -> Value {
    let mut command = Command::new(python_env());
    command
        .arg(repo("models/decoder_reference.py"))
        .arg(repo(folder))
        .args(args)
        .arg("--json");
    let out = run(command, Duration::from_secs(120));
    assert!(out.success, "decoder_reference.py failed: {}", out.report());
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|err| panic!("reference output is not JSON ({err}): {}", out.stdout))
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list of ids: {value}"))
        .iter()
        .map(|id| {
            id.as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .expect("an id")
        })
        .collect()
}

fn conversations() -> Vec<Value> {
    vec![
        json!([{"role": "user", "content": "What is assert?"}]),
        json!([{"role": "system", "content": "  Answer briefly.\n"},
               {"role": "user", "content": "What is lambda?"}]),
        json!([{"role": "user", "content": "Hi"},
               {"role": "assistant", "content": " Hello! Ask me about Python. "},
               {"role": "user", "content": "naïve → 😀 \"quotes\" {{ braces }} {% raw %}"}]),
    ]
}

/// Renders every conversation of [`conversations`] plus one whose roles do not alternate, with
/// and without `add_generation_prompt`, by `template` (a Jinja file; `None` for the folder's
/// own, or its plain format) both here and in the reference, and asserts equal text, or equal
/// `raise_exception` messages.
fn assert_renders_as_reference(folder: &str, template: Option<&str>) {
    let decoder = load(folder);
    let tokenizer = decoder.tokenizer();
    let own;
    let chat = match template {
        Some(path) => {
            let source = std::fs::read_to_string(repo(path)).expect("read the template");
            own = ChatTemplate::new(Some(&source), tokenizer.bos_token(), tokenizer.eos_token())
                .expect("compile");
            &own
        }
        None => decoder.chat_template(),
    };
    assert_eq!(chat.is_plain(), folder == MINIMAL);
    let mut all = conversations();
    all.push(json!([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]));
    let batch = Value::Array(all.clone()).to_string();
    let path = template.map(|t| repo(t).display().to_string());
    for generation_prompt in [true, false] {
        let mut args = vec!["--messages", batch.as_str(), "--render-only"];
        if !generation_prompt {
            args.push("--no-generation-prompt");
        }
        if let Some(path) = &path {
            args.extend(["--template", path.as_str()]);
        }
        let expected = reference(folder, &args);
        let expected = expected.as_array().expect("one result per conversation");
        assert_eq!(expected.len(), all.len());
        for (messages, expected) in all.iter().zip(expected) {
            let rendered = chat.render(messages.as_array().expect("a list"), generation_prompt);
            let context = format!("{template:?}, {messages}, {generation_prompt}");
            match (
                &rendered,
                expected["prompt"].as_str(),
                expected["error"].as_str(),
            ) {
                (Ok(text), Some(prompt), _) => assert_eq!(text, prompt, "{context}"),
                (Err(err), None, Some(message)) => {
                    assert_eq!(err.status(), 400, "{context}");
                    assert_eq!(
                        err.message(),
                        format!("chat template: {message}"),
                        "{context}"
                    );
                }
                _ => panic!("{context}: minijinja gave {rendered:?}, Jinja2 {expected}"),
            }
        }
    }
}

/// The folder's own template, with its `raise_exception` for roles that do not alternate.
#[test]
fn the_chat_template_renders_as_jinja2_does() {
    assert_renders_as_reference(TINYCHAT, None);
}

/// A folder without a template gets the documented plain format, the reference's too.
#[test]
fn a_folder_without_a_template_gets_the_plain_format() {
    assert_renders_as_reference(MINIMAL, None);
}

/// Templates in the styles of ChatML (Qwen), Llama 3 (a filter inside `+`), Mistral (namespace,
/// `raise_exception`, `messages[1:]`, `is defined`) and Zephyr (plain blocks that rely on
/// `trim_blocks` and `lstrip_blocks`).
#[test]
fn well_known_template_styles_render_as_jinja2_does() {
    for name in ["chatml", "llama3", "mistral", "zephyr"] {
        assert_renders_as_reference(
            TINYCHAT,
            Some(&format!("models/tests/templates/{name}.jinja")),
        );
    }
}

/// The bundled model and the minimal one (no `position_ids`, so positions come from the mask
/// inside the graph; an integer `eos_token_id`; the plain format).
#[test]
fn greedy_generation_equals_the_reference_token_for_token() {
    for folder in [TINYCHAT, MINIMAL] {
        assert_greedy_equals_reference(folder);
    }
}

fn assert_greedy_equals_reference(folder: &str) {
    let decoder = load(folder);
    let tokenizer = decoder.tokenizer();
    for messages in conversations() {
        let expected = reference(
            folder,
            &["--messages", &messages.to_string(), "--max-tokens", "40"],
        );
        let (prompt, prompt_ids) = decoder
            .chat_prompt(messages.as_array().expect("a list"))
            .expect("render and encode");
        assert_eq!(prompt, expected["prompt"].as_str().expect("prompt"));
        assert_eq!(
            prompt_ids,
            ids(&expected["prompt_ids"]),
            "{folder} {messages}"
        );
        let tokens = decoder.greedy(&prompt_ids, 40).expect("generate");
        assert_eq!(tokens, ids(&expected["tokens"]), "{folder} {messages}");
        assert!(!tokens.is_empty());

        // Streamed through the detokenizer, the pieces add up to the reference's text.
        let mut detokenizer = Detokenizer::new();
        let mut text = String::new();
        for &id in &tokens {
            text += &detokenizer.push(tokenizer, id).expect("detokenize");
        }
        text += &detokenizer.finish(tokenizer).expect("detokenize");
        assert_eq!(text, expected["text"].as_str().expect("text"));
    }
    for prompt in ["The \"finally\" clause", "A class is"] {
        let expected = reference(folder, &["--prompt", prompt, "--max-tokens", "40"]);
        let prompt_ids = decoder.completion_prompt(prompt).expect("encode");
        assert_eq!(prompt_ids, ids(&expected["prompt_ids"]));
        let tokens = decoder.greedy(&prompt_ids, 40).expect("generate");
        assert_eq!(tokens, ids(&expected["tokens"]), "{folder} {prompt:?}");
        if expected["finish_reason"] == "stop" {
            assert!(tokens.len() < 40);
        }
    }
}

#[test]
fn the_minimal_layout_is_read_from_gpt2_config_names() {
    let decoder = load(MINIMAL);
    let layout = decoder.layout();
    assert_eq!(
        (
            layout.layers,
            layout.heads,
            layout.kv_heads,
            layout.head_size
        ),
        (1, 2, 2, 32)
    );
    assert_eq!((layout.context, layout.has_position_ids), (1024, false));
    assert_eq!(decoder.tokenizer().eos_ids(), &[1]);
    let mut cache = decoder.cache().expect("cache");
    decoder.forward(&mut cache, &[7, 8, 9]).expect("prompt");
    decoder.forward(&mut cache, &[10]).expect("step");
    assert_eq!((cache.len(), cache.last_fed()), (4, 1));
    assert_eq!(cache.past_shapes(), vec![vec![1, 2, 4, 32]; 2]);
}

/// Rust's `tokenizers` (with `fancy-regex` for the pre-tokenizer's pattern) splits text as
/// Python's (built with Oniguruma) does, over scripts, whitespace runs, digits, contractions,
/// emoji sequences, combining marks and special tokens.
#[test]
fn the_tokenizer_encodes_as_the_python_tokenizers_does() {
    let decoder = tinychat();
    let text = "Ünïcödé façade — naïve café; 日本語のテキスト, Ελληνικά, русский, عربى.\n\
                Emoji 👩‍👩‍👧 🇫🇷 e\u{301}, tabs\t\tand   spaces   \n\n\r\n  trailing  \n\
                12345678 3.14159 1e-9 0x1F; it's we'll I'M they'd\n\
                def f(x):\n    return x**2  # comment\n\
                <|user|>\nWhat is assert?<|end|>\n<|assistant|>\n";
    let expected = reference(TINYCHAT, &["--prompt", text, "--max-tokens", "0"]);
    let ids = decoder.completion_prompt(text).expect("encode");
    assert_eq!(ids, self::ids(&expected["prompt_ids"]));
    assert!(ids.len() > 100, "{}", ids.len());
    assert_eq!(
        decoder.tokenizer().decode(&ids, false).expect("decode"),
        text
    );
}

#[test]
fn each_step_feeds_one_token_and_the_cache_grows_by_one_position() {
    let decoder = tinychat();
    let layout = decoder.layout().clone();
    assert_eq!(
        (
            layout.layers,
            layout.heads,
            layout.kv_heads,
            layout.head_size
        ),
        (2, 4, 2, 32)
    );
    assert_eq!(
        (layout.context, layout.vocab, layout.has_position_ids),
        (1024, Some(1024), true)
    );
    assert_eq!(layout.cache_bytes(), 1024 * 2 * 2 * 32 * 4 * 2);

    let prompt = decoder
        .tokenizer()
        .encode("The with statement", false)
        .expect("encode");
    let mut cache = decoder.cache().expect("cache");
    let mut logits = decoder.forward(&mut cache, &prompt).expect("prompt");
    assert_eq!(
        (cache.last_fed(), cache.len(), cache.runs()),
        (prompt.len(), prompt.len(), 1)
    );
    let mut sequence = prompt.clone();
    for step in 1..=300 {
        let next = argmax(&logits);
        sequence.push(next);
        logits = decoder.forward(&mut cache, &[next]).expect("step");
        assert_eq!(cache.last_fed(), 1, "step {step}");
        assert_eq!(cache.len(), prompt.len() + step);
        let position = i64::try_from(cache.len()).expect("small");
        for shape in cache.past_shapes() {
            assert_eq!(shape, [1, 2, position, 32]);
        }
    }
    assert_eq!(cache.past_shapes().len(), 4);
    assert_eq!(cache.runs(), 301);

    // The cached steps give what one run over the whole sequence gives.
    let mut whole = decoder.cache().expect("cache");
    let expected = decoder.forward(&mut whole, &sequence).expect("whole");
    let diff = expected
        .iter()
        .zip(&logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(diff < 1e-3, "cached and uncached logits differ by {diff}");
}

#[test]
fn a_request_beyond_the_context_is_a_400_naming_the_limit() {
    let decoder = tinychat();
    decoder
        .check_fits(1000, 24)
        .expect("exactly the context fits");
    let err = decoder
        .check_fits(1000, 25)
        .expect_err("one past the context");
    assert_eq!(err.status(), 400);
    assert_eq!(
        err.message(),
        "the prompt (1000 tokens) plus max_tokens (25) exceed model \"tinychat\"'s context of 1024 tokens \
         (the limit that bounds a stream's KV cache to 1048576 bytes)"
    );
    let long = vec![7; 1025];
    let mut cache = decoder.cache().expect("cache");
    let err = decoder.forward(&mut cache, &long).expect_err("too long");
    assert_eq!(err.status(), 400);
}

/// A copy of `models/tinychat` without the files in `leave_out`, with `model` as model.onnx.
fn folder(what: &str, model: &str, leave_out: &[&str]) -> std::path::PathBuf {
    let dir = scratch_dir(what);
    let source = repo("models/tinychat");
    for entry in std::fs::read_dir(&source).expect("read models/tinychat") {
        let name = entry.expect("entry").file_name();
        let name = name.to_str().expect("utf-8 name");
        if !leave_out.contains(&name) && name != "model.onnx" {
            std::fs::copy(source.join(name), dir.join(name)).expect("copy");
        }
    }
    std::fs::copy(repo(model), dir.join("model.onnx")).expect("copy the model");
    dir
}

#[test]
fn a_folder_missing_tokenizer_json_fails_naming_it() {
    let dir = folder(
        "no-tokenizer",
        "models/tinychat/model.onnx",
        &["tokenizer.json"],
    );
    assert!(Decoder::is_decoder_dir(&dir));
    let err = Decoder::load("broken", &dir).expect_err("no tokenizer.json");
    let message = err.message().to_string();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(message.contains(&dir.display().to_string()), "{message}");
    assert!(message.contains("missing tokenizer.json"), "{message}");
    assert!(!Decoder::is_decoder_dir(Path::new(&repo("models"))));
}

#[test]
fn a_model_without_a_cache_fails_naming_what_is_missing() {
    let dir = folder("no-cache", "models/bytelm.onnx", &[]);
    let err = Decoder::load("bytelm", &dir).expect_err("bytelm has no cache");
    let message = err.message().to_string();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        message.contains("--task text-generation-with-past"),
        "{message}"
    );
    assert!(
        message.contains("missing input \"attention_mask\""),
        "{message}"
    );
}

/// The server's token-level loop ([`Generator::for_decoder`]): a sink that fails stops the
/// generation at once (the client left), and greedy output through it equals
/// [`Decoder::greedy`]'s, with usage in tokens and stop strings cut.
#[test]
fn the_token_generator_stops_when_the_sink_fails_and_cuts_stop_strings() {
    use std::sync::Arc;
    use tinyserve::model::{FinishReason, Generator, Sampling};
    let decoder = Arc::new(tinychat());
    let generator = Generator::for_decoder(decoder.clone());
    let prompt = decoder.completion_prompt("The ").expect("encode");
    let greedy = decoder.greedy(&prompt, 60).expect("greedy");
    let expected = decoder.tokenizer().decode(&greedy, true).expect("decode");
    let sampling = Sampling {
        max_tokens: 60,
        temperature: 0.0,
        ..Sampling::default()
    };
    let out = generator
        .generate("The ", &sampling, |_| Ok(()))
        .expect("generate");
    assert_eq!(out.text, expected);
    assert_eq!(
        (out.prompt_tokens, out.completion_tokens),
        (prompt.len(), 60)
    );
    assert_eq!(out.finish_reason, FinishReason::Length);

    // A stop string in the middle of the greedy text: the text ends before it.
    let cut = expected.len() / 2;
    let stop: String = expected[cut..].chars().take(3).collect();
    let first = expected.find(&stop).expect("the stop string occurs");
    let stopped = Sampling {
        stop: vec![stop.clone()],
        ..sampling.clone()
    };
    let out = generator
        .generate("The ", &stopped, |_| Ok(()))
        .expect("generate");
    assert_eq!(out.text, expected[..first], "stop {stop:?}");
    assert_eq!(out.finish_reason, FinishReason::Stop);

    // A sink that fails after 3 pieces: generation stops there.
    let tokens_before = generator.tokens_generated();
    let long = Sampling {
        max_tokens: 1000,
        ..sampling
    };
    let mut pieces = 0;
    let out = generator
        .generate("The ", &long, |_| {
            pieces += 1;
            if pieces > 3 {
                Err(tinyserve::Disconnected)
            } else {
                Ok(())
            }
        })
        .expect("generate");
    assert_eq!(out.finish_reason, FinishReason::Cancelled);
    assert_eq!(generator.generations_cancelled(), 1);
    let generated = generator.tokens_generated() - tokens_before;
    assert!(
        (4..=10).contains(&generated),
        "{generated} tokens for 4 pieces"
    );
}

/// `--kv-cache-bytes` (ModelOptions::kv_cache_bytes): a generation reserves (prompt +
/// max_tokens) × the bytes of one position before it starts; one that alone exceeds the budget
/// is a 400 naming it, one that does not fit beside those running is a 503, and a dropped
/// reservation gives its bytes back.
#[test]
fn the_kv_cache_budget_is_reserved_before_a_generation_and_given_back() {
    use std::sync::Arc;
    let mut options = tinyserve::model::ModelOptions::default();
    let per_token = 2 * 2 * 32 * 4 * 2; // layers × kv_heads × head_size × 4 B × 2
    options.kv_cache_bytes = Some(100 * per_token);
    let decoder =
        Arc::new(Decoder::load_with("tinychat", &repo(TINYCHAT), &options).expect("load tinychat"));
    assert_eq!(decoder.cache_bytes_per_token(), per_token);
    let err = decoder.reserve(10, 91).expect_err("101 positions");
    assert_eq!(err.status(), 400);
    assert!(
        err.message()
            .contains("over model \"tinychat\"'s budget of 102400 bytes"),
        "{}",
        err.message()
    );
    let first = decoder.reserve(10, 50).expect("60 positions fit");
    assert_eq!(first.bytes(), 60 * per_token);
    let err = decoder.reserve(10, 31).expect_err("41 more do not");
    assert_eq!(err.status(), 503);
    assert!(err
        .message()
        .contains("held by the generations running now"));
    let second = decoder.reserve(10, 30).expect("40 more do");
    assert_eq!(decoder.cache_reserved(), 100 * per_token);
    drop(first);
    assert_eq!(decoder.cache_reserved(), 40 * per_token);
    drop(second);
    assert_eq!(decoder.cache_reserved(), 0);
    let err = decoder.reserve(1000, 25).expect_err("beyond the context");
    assert!(err.message().contains("context of 1024 tokens"));
}
