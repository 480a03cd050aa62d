//! Reading a completion request: the body's fields, the prompt and the sampling parameters.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::model::Sampling;
use crate::Error;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Text,
    Chat,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
pub(super) struct Message {
    pub(super) role: String,
    pub(super) content: Content,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
pub(super) struct Part {
    #[serde(rename = "type")]
    pub(super) kind: String,
    pub(super) text: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct StreamOptions {
    #[serde(default)]
    pub(super) include_usage: bool,
}

#[derive(Deserialize)]
pub(super) struct CompletionRequest {
    pub(super) model: String,
    pub(super) prompt: Option<OneOrMany>,
    pub(super) messages: Option<Vec<Message>>,
    pub(super) max_tokens: Option<u64>,
    pub(super) max_completion_tokens: Option<u64>,
    pub(super) temperature: Option<f64>,
    pub(super) top_p: Option<f64>,
    pub(super) top_k: Option<u64>,
    pub(super) stop: Option<OneOrMany>,
    pub(super) seed: Option<u64>,
    pub(super) n: Option<u64>,
    #[serde(default)]
    pub(super) stream: bool,
    pub(super) stream_options: Option<StreamOptions>,
}

/// Upper bound on `max_tokens`: a request cannot hold a worker for an unbounded time.
pub(super) const MAX_TOKENS_LIMIT: u64 = 4096;

/// Just the `model` of a request, read without building the rest (the prompt of a local model
/// is parsed straight into [`CompletionRequest`], never into a `Value` tree).
#[derive(Deserialize)]
pub(super) struct Route {
    #[serde(default, deserialize_with = "string_or_nothing")]
    pub(super) model: Option<String>,
}

/// A string as itself, anything else as `None` (skipped without being kept).
pub(super) fn string_or_nothing<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("any value")
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut a: A,
        ) -> Result<Self::Value, A::Error> {
            while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut a: A,
        ) -> Result<Self::Value, A::Error> {
            while a
                .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                .is_some()
            {}
            Ok(None)
        }
    }
    d.deserialize_any(Visitor)
}

/// The messages as the chat template reads them: `{"role", "content"}` objects, the content
/// a string (text parts joined). Contents over [`crate::model::MAX_PROMPT_BYTES`] in all are
/// a 400 before the template and the tokenizer run.
pub(super) fn messages_json(messages: Option<&[Message]>) -> Result<Vec<Value>, Error> {
    let messages = messages
        .filter(|m| !m.is_empty())
        .ok_or_else(|| Error::invalid_input("\"messages\" must be a non-empty array"))?;
    let mut out = Vec::with_capacity(messages.len());
    let mut total = 0usize;
    for message in messages {
        total = total.saturating_add(message.role.len());
        total = total.saturating_add(match &message.content {
            Content::Text(text) => text.len(),
            Content::Parts(parts) => parts
                .iter()
                .map(|p| p.text.as_ref().map_or(0, String::len))
                .sum(),
        });
        if total > crate::model::MAX_PROMPT_BYTES {
            return Err(Error::invalid_input(format!(
                "the messages are over {} bytes, the prompt limit",
                crate::model::MAX_PROMPT_BYTES
            )));
        }
    }
    for message in messages {
        let content = match &message.content {
            Content::Text(text) => text.clone(),
            Content::Parts(parts) => {
                let mut text = String::new();
                for part in parts {
                    match (part.kind.as_str(), &part.text) {
                        ("text", Some(piece)) => text.push_str(piece),
                        _ => {
                            return Err(Error::invalid_input(format!(
                                "unsupported content part type \"{}\"",
                                part.kind
                            )))
                        }
                    }
                }
                text
            }
        };
        out.push(json!({"role": message.role, "content": content}));
    }
    Ok(out)
}

pub(super) fn text_prompt(prompt: Option<OneOrMany>) -> Result<String, Error> {
    match prompt {
        Some(OneOrMany::One(text)) => Ok(text),
        Some(OneOrMany::Many(mut texts)) if texts.len() == 1 => Ok(texts.remove(0)),
        Some(OneOrMany::Many(_)) => Err(Error::bad_request(
            "only one prompt per request is supported",
        )),
        None => Err(Error::invalid_input("\"prompt\" is required")),
    }
}

/// The chat template: one `Role: content` line per message, then `Assistant:`.
pub(super) fn chat_prompt(messages: Option<&[Message]>) -> Result<String, Error> {
    let messages = messages
        .filter(|m| !m.is_empty())
        .ok_or_else(|| Error::invalid_input("\"messages\" must be a non-empty array"))?;
    let mut prompt = String::new();
    for message in messages {
        let role = match message.role.as_str() {
            "system" | "developer" => "System",
            "user" => "User",
            "assistant" => "Assistant",
            other => {
                return Err(Error::invalid_input(format!(
                    "unknown message role \"{other}\""
                )))
            }
        };
        prompt.push_str(role);
        prompt.push_str(": ");
        match &message.content {
            Content::Text(text) => prompt.push_str(text),
            Content::Parts(parts) => {
                for part in parts {
                    match (part.kind.as_str(), &part.text) {
                        ("text", Some(text)) => prompt.push_str(text),
                        _ => {
                            return Err(Error::invalid_input(format!(
                                "unsupported content part type \"{}\"",
                                part.kind
                            )))
                        }
                    }
                }
            }
        }
        prompt.push('\n');
        // Past the cap the generator refuses it anyway: stop copying.
        if prompt.len() > crate::model::MAX_PROMPT_BYTES {
            break;
        }
    }
    prompt.push_str("Assistant:");
    Ok(prompt)
}

/// The sampling parameters; `templated`: a chat rendered by a model's own template, which
/// ends its turns with an end-of-sequence token rather than a `\nUser:` line.
pub(super) fn sampling(
    request: &CompletionRequest,
    kind: Kind,
    templated: bool,
) -> Result<Sampling, Error> {
    let default_max = if kind == Kind::Chat { 128 } else { 16 };
    let max_tokens = request
        .max_completion_tokens
        .or(request.max_tokens)
        .unwrap_or(default_max);
    if !(1..=MAX_TOKENS_LIMIT).contains(&max_tokens) {
        return Err(Error::invalid_input(format!(
            "max_tokens must be between 1 and {MAX_TOKENS_LIMIT}, got {max_tokens}"
        )));
    }
    let temperature = request.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(Error::invalid_input(format!(
            "temperature must be between 0 and 2, got {temperature}"
        )));
    }
    let top_p = request.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(Error::invalid_input(format!(
            "top_p must be in (0, 1], got {top_p}"
        )));
    }
    if request.n.is_some_and(|n| n != 1) {
        return Err(Error::invalid_input("only n = 1 is supported"));
    }
    let mut stop = match &request.stop {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s.clone()],
        Some(OneOrMany::Many(list)) => list.clone(),
    };
    if stop.len() > 4 {
        return Err(Error::invalid_input(format!(
            "at most 4 stop sequences, got {}",
            stop.len()
        )));
    }
    if kind == Kind::Chat && !templated {
        stop.push("\nUser:".to_string());
    }
    Ok(Sampling {
        max_tokens: max_tokens as usize,
        temperature,
        top_p,
        top_k: usize::try_from(request.top_k.unwrap_or(0)).unwrap_or(usize::MAX),
        stop,
        seed: request.seed,
    })
}
