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

/// `prompt` or `stop`: one string or a list of them, the list read up to its limit (past it,
/// the parse stops with an error rather than keep building strings).
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// The most messages a chat may hold (OpenAI's limit, "array too long. Expected an array
/// with maximum length 2048").
pub(super) const MAX_MESSAGES: usize = 2048;

/// The most stop sequences (OpenAI: "up to 4 sequences").
pub(super) const MAX_STOPS: usize = 4;

/// The most bytes all stop sequences may hold together: each generated piece of text is
/// searched for them, and text that could still grow into one is held back.
pub(super) const MAX_STOP_BYTES: usize = 1024;

/// A message's `role`: one of the roles the chat templates know; anything else is refused while
/// the body is read, before it is pasted into a template.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Role {
    System,
    Developer,
    User,
    Assistant,
}

impl Role {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Role, D::Error> {
        let role = std::borrow::Cow::<'de, str>::deserialize(d)?;
        match &*role {
            "system" => Ok(Role::System),
            "developer" => Ok(Role::Developer),
            "user" => Ok(Role::User),
            "assistant" => Ok(Role::Assistant),
            other => Err(serde::de::Error::custom(format_args!(
                "unknown message role {:?}, expected system, developer, user or assistant",
                clip(other)
            ))),
        }
    }
}

#[derive(Deserialize)]
pub(super) struct Message {
    pub(super) role: Role,
    pub(super) content: Content,
}

/// A message's text: a string, or text parts joined as they are read (no part is kept).
pub(super) struct Content(pub(super) String);

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Content, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Content;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or an array of text parts")
            }
            fn visit_str<E>(self, v: &str) -> Result<Content, E> {
                Ok(Content(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Content, E> {
                Ok(Content(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Content, A::Error> {
                let mut text = String::new();
                while let Some(part) = a.next_element::<Part>()? {
                    match (part.kind.as_str(), part.text) {
                        ("text", Some(piece)) => text.push_str(&piece),
                        (kind, _) => {
                            return Err(serde::de::Error::custom(format_args!(
                                "unsupported content part type {:?}",
                                clip(kind)
                            )))
                        }
                    }
                }
                Ok(Content(text))
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[derive(Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

/// At most 64 characters of what a client wrote, for an error message.
fn clip(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}

/// `messages`, read up to [`MAX_MESSAGES`].
fn bounded_messages<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<Message>>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Option<Vec<Message>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an array of messages")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut a: A,
        ) -> Result<Self::Value, A::Error> {
            let mut messages = Vec::new();
            while let Some(message) = a.next_element::<Message>()? {
                if messages.len() == MAX_MESSAGES {
                    return Err(serde::de::Error::custom(format_args!(
                        "\"messages\" holds more than {MAX_MESSAGES} messages, the limit"
                    )));
                }
                messages.push(message);
            }
            Ok(Some(messages))
        }
    }
    d.deserialize_any(Visitor)
}

/// `prompt` (at most one string) or `stop` (at most [`MAX_STOPS`]).
fn strings_up_to<'de, D: serde::Deserializer<'de>>(
    d: D,
    max: usize,
    too_many: &'static str,
) -> Result<Option<OneOrMany>, D::Error> {
    struct Visitor {
        max: usize,
        too_many: &'static str,
    }
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Option<OneOrMany>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string or an array of strings")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(OneOrMany::One(v.to_owned())))
        }
        fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(OneOrMany::One(v)))
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut a: A,
        ) -> Result<Self::Value, A::Error> {
            let mut list = Vec::new();
            while let Some(text) = a.next_element::<String>()? {
                if list.len() == self.max {
                    return Err(serde::de::Error::custom(self.too_many));
                }
                list.push(text);
            }
            Ok(Some(OneOrMany::Many(list)))
        }
    }
    d.deserialize_any(Visitor { max, too_many })
}

fn prompt_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<OneOrMany>, D::Error> {
    strings_up_to(d, 1, "only one prompt per request is supported")
}

fn stop_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<OneOrMany>, D::Error> {
    strings_up_to(
        d,
        MAX_STOPS,
        "at most 4 stop sequences (\"stop\"), the limit",
    )
}

#[derive(Deserialize)]
pub(super) struct StreamOptions {
    #[serde(default)]
    pub(super) include_usage: bool,
}

#[derive(Deserialize)]
pub(super) struct CompletionRequest {
    pub(super) model: String,
    #[serde(default, deserialize_with = "prompt_list")]
    pub(super) prompt: Option<OneOrMany>,
    #[serde(default, deserialize_with = "bounded_messages")]
    pub(super) messages: Option<Vec<Message>>,
    pub(super) max_tokens: Option<u64>,
    pub(super) max_completion_tokens: Option<u64>,
    pub(super) temperature: Option<f64>,
    pub(super) top_p: Option<f64>,
    pub(super) top_k: Option<u64>,
    #[serde(default, deserialize_with = "stop_list")]
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
    let total = messages
        .iter()
        .fold(0usize, |total, m| total.saturating_add(m.content.0.len()));
    if total > crate::model::MAX_PROMPT_BYTES {
        return Err(Error::invalid_input(format!(
            "the messages are over {} bytes, the prompt limit",
            crate::model::MAX_PROMPT_BYTES
        )));
    }
    Ok(messages
        .iter()
        .map(|m| json!({"role": m.role.as_str(), "content": m.content.0}))
        .collect())
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
        let role = match message.role {
            Role::System | Role::Developer => "System",
            Role::User => "User",
            Role::Assistant => "Assistant",
        };
        prompt.push_str(role);
        prompt.push_str(": ");
        prompt.push_str(&message.content.0);
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
    let stop_bytes: usize = stop.iter().map(String::len).sum();
    if stop.len() > MAX_STOPS || stop_bytes > MAX_STOP_BYTES {
        return Err(Error::invalid_input(format!(
            "the stop sequences are {} strings of {stop_bytes} bytes in all, over the limit of \
             {MAX_STOPS} strings and {MAX_STOP_BYTES} bytes",
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
