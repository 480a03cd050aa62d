//! Writing answers: a whole completion, or a stream of OpenAI chunks ending with `[DONE]`.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use super::errors::{error_body, log_if_internal};
use super::request::Kind;
use crate::model::{Generation, Generator, Prompt, Sampling};
use crate::{Event, EventSender};

/// One completion being answered: the parts of every answer (whole or streamed) that identify
/// it.
pub(super) struct Completion {
    pub(super) id: String,
    pub(super) created: u64,
    pub(super) model: String,
    pub(super) kind: Kind,
}

impl Completion {
    pub(super) fn usage(generation: &Generation) -> Value {
        json!({
            "prompt_tokens": generation.prompt_tokens,
            "completion_tokens": generation.completion_tokens,
            "total_tokens": generation.prompt_tokens + generation.completion_tokens,
        })
    }

    pub(super) fn full_answer(&self, generation: &Generation) -> Value {
        let reason = generation.finish_reason.as_str();
        let choice = match self.kind {
            Kind::Text => {
                json!({"index": 0, "text": generation.text, "logprobs": null, "finish_reason": reason})
            }
            Kind::Chat => json!({
                "index": 0,
                "message": {"role": "assistant", "content": generation.text},
                "logprobs": null,
                "finish_reason": reason,
            }),
        };
        json!({
            "id": self.id,
            "object": if self.kind == Kind::Chat { "chat.completion" } else { "text_completion" },
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": Completion::usage(generation),
        })
    }

    /// One streamed chunk; `piece` is new text, `reason` is set on the last chunk only. Typed
    /// rather than a `Value`: one is written per token.
    pub(super) fn chunk<'a>(
        &'a self,
        piece: Option<&'a str>,
        role: bool,
        reason: Option<&'a str>,
    ) -> Chunk<'a> {
        let choice = match self.kind {
            Kind::Text => Choice::Text {
                index: 0,
                text: piece.unwrap_or(""),
                logprobs: None,
                finish_reason: reason,
            },
            Kind::Chat => Choice::Chat {
                index: 0,
                delta: Delta {
                    role: role.then_some("assistant"),
                    content: piece,
                },
                logprobs: None,
                finish_reason: reason,
            },
        };
        Chunk {
            id: &self.id,
            object: match self.kind {
                Kind::Chat => "chat.completion.chunk",
                Kind::Text => "text_completion",
            },
            created: self.created,
            model: &self.model,
            choices: [choice],
        }
    }
}

/// A streamed chunk, in the field order OpenAI writes.
#[derive(Serialize)]
pub(super) struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice<'a>; 1],
}

#[derive(Serialize)]
#[serde(untagged)]
enum Choice<'a> {
    Text {
        index: u32,
        text: &'a str,
        logprobs: Option<()>,
        finish_reason: Option<&'a str>,
    },
    Chat {
        index: u32,
        delta: Delta<'a>,
        logprobs: Option<()>,
        finish_reason: Option<&'a str>,
    },
}

#[derive(Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
}

/// A fast model's token events, written a few at a time: while tokens come less than
/// [`FAST_STEP`] apart, up to [`TOKENS_PER_WRITE`] share one write, so the socket write and
/// the reader's wake-up are paid once for them (on bench/decoder.py's model, 100 µs a token,
/// that write was a seventh of the server's CPU per token). The first token, and every token of
/// a slower model, is written at once; a held token waits at most for three more steps.
struct TokenWrites<'s, 'e> {
    events: &'s mut EventSender<'e>,
    held: String,
    count: usize,
    last: Option<Instant>,
}

const FAST_STEP: Duration = Duration::from_micros(500);
const TOKENS_PER_WRITE: usize = 4;

impl<'s, 'e> TokenWrites<'s, 'e> {
    fn new(events: &'s mut EventSender<'e>) -> TokenWrites<'s, 'e> {
        TokenWrites {
            events,
            held: String::new(),
            count: 0,
            last: None,
        }
    }

    fn send(&mut self, event: Event) -> Result<(), crate::Disconnected> {
        let now = Instant::now();
        let fast = self
            .last
            .is_some_and(|last| now.duration_since(last) < FAST_STEP);
        self.last = Some(now);
        self.held.push_str(&event.to_string());
        self.count += 1;
        match fast && self.count < TOKENS_PER_WRITE {
            true => Ok(()),
            false => self.flush(),
        }
    }

    fn flush(&mut self) -> Result<(), crate::Disconnected> {
        if self.count == 0 {
            return Ok(());
        }
        self.count = 0;
        let sent = self.events.send_formatted(&self.held);
        self.held.clear();
        sent
    }
}

/// Streams a generation as OpenAI chunks, ending with `data: [DONE]`.
pub(super) fn stream(
    generator: &Generator,
    prompt: &Prompt,
    sampling: &Sampling,
    call: &Completion,
    include_usage: bool,
    events: &mut EventSender<'_>,
) -> Result<(), crate::Disconnected> {
    if call.kind == Kind::Chat {
        events.send(Event::json(&call.chunk(Some(""), true, None)))?;
    }
    let mut tokens = TokenWrites::new(events);
    let outcome = generator.generate_from(prompt, sampling, |piece| {
        tokens.send(Event::json(&call.chunk(Some(piece), false, None)))
    });
    let flushed = tokens.flush();
    match outcome {
        Ok(generation) if generation.finish_reason == crate::model::FinishReason::Cancelled => {
            return Err(crate::Disconnected)
        }
        Ok(generation) => {
            flushed?;
            let reason = generation.finish_reason.as_str();
            let last = match call.kind {
                Kind::Text => call.chunk(Some(""), false, Some(reason)),
                Kind::Chat => call.chunk(None, false, Some(reason)),
            };
            events.send(Event::json(&last))?;
            if include_usage {
                let mut usage = serde_json::to_value(call.chunk(None, false, None))
                    .unwrap_or_else(|_| json!({}));
                usage["choices"] = json!([]);
                usage["usage"] = Completion::usage(&generation);
                events.send(Event::json(&usage))?;
            }
        }
        Err(err) => {
            log_if_internal(&err);
            flushed?;
            events.send(Event::json(&error_body(&err)))?;
        }
    }
    events.send(Event::data("[DONE]"))
}
