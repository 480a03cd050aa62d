//! Server-Sent Events: `text/event-stream` responses made of [`Event`]s.

use std::time::Duration;

use serde::Serialize;

use crate::stream::{BodySender, Disconnected, Stream};
use crate::Response;

/// Default interval of `:` keep-alive comments on an idle stream.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One Server-Sent Event.
///
/// # Example
/// ```
/// use tinyserve::Event;
/// let event = Event::data("line one\nline two").with_event("token").with_id("7");
/// assert_eq!(event.to_string(), "event: token\nid: 7\ndata: line one\ndata: line two\n\n");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    data: Option<String>,
    event: Option<String>,
    id: Option<String>,
    retry: Option<u64>,
}

impl Event {
    /// An event carrying `data`; multi-line data becomes several `data:` lines.
    pub fn data(data: impl Into<String>) -> Event {
        Event {
            data: Some(data.into()),
            ..Event::default()
        }
    }

    /// An event whose data is `value` as JSON.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Event {
        Event::data(serde_json::to_string(value).unwrap_or_else(|_| "null".into()))
    }

    /// Sets the event type (`event:`).
    pub fn with_event(mut self, event: impl Into<String>) -> Event {
        self.event = Some(event.into());
        self
    }

    /// Sets the event id (`id:`).
    pub fn with_id(mut self, id: impl Into<String>) -> Event {
        self.id = Some(id.into());
        self
    }

    /// Sets the client's reconnection delay (`retry:`), in milliseconds.
    pub fn with_retry(mut self, millis: u64) -> Event {
        self.retry = Some(millis);
        self
    }
}

/// Field values cannot contain line breaks: they would end the field early.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(event) = &self.event {
            writeln!(f, "event: {}", one_line(event))?;
        }
        if let Some(id) = &self.id {
            writeln!(f, "id: {}", one_line(id))?;
        }
        if let Some(retry) = self.retry {
            writeln!(f, "retry: {retry}")?;
        }
        if let Some(data) = &self.data {
            // Most data (JSON above all) has no carriage return: no copy then.
            let normalized = match data.contains('\r') {
                true => std::borrow::Cow::Owned(data.replace("\r\n", "\n").replace('\r', "\n")),
                false => std::borrow::Cow::Borrowed(data.as_str()),
            };
            for line in normalized.split('\n') {
                writeln!(f, "data: {line}")?;
            }
        }
        writeln!(f)
    }
}

/// Sends events from a streaming handler.
pub struct EventSender<'a> {
    body: &'a mut BodySender,
}

impl EventSender<'_> {
    /// Sends one event, flushed at once. Fails when the client has gone.
    pub fn send(&mut self, event: Event) -> Result<(), Disconnected> {
        self.body.send(event.to_string())
    }

    /// Sends several events at once (`Event`s formatted one after another): one write.
    pub(crate) fn send_formatted(&mut self, events: &str) -> Result<(), Disconnected> {
        self.body.send(events)
    }

    /// Sends a `:` comment line (ignored by clients).
    pub fn comment(&mut self, text: &str) -> Result<(), Disconnected> {
        self.body.send(format!(": {}\n\n", one_line(text)))
    }
}

/// A Server-Sent Events response.
///
/// # Example
/// ```
/// use tinyserve::{Event, Sse};
/// let res = Sse::new(|events| {
///     for token in ["Hello", ",", " world"] {
///         events.send(Event::data(token))?;
///     }
///     Ok(())
/// })
/// .into_response();
/// assert_eq!(res.header("Content-Type"), Some("text/event-stream"));
/// ```
pub struct Sse {
    stream: Stream,
}

impl Sse {
    /// An SSE response whose events `produce` sends, from a thread of its own that holds the
    /// request's worker turn until it returns.
    pub fn new<F>(produce: F) -> Sse
    where
        F: FnOnce(&mut EventSender<'_>) -> Result<(), Disconnected> + Send + 'static,
    {
        let mut stream = Stream::new(Box::new(move |body: &mut BodySender| {
            produce(&mut EventSender { body })
        }));
        stream.keep_alive = Some((DEFAULT_KEEP_ALIVE, b":\n\n".to_vec()));
        Sse { stream }
    }

    /// Sets the interval of keep-alive comments on an idle stream (default 15 s).
    pub fn with_keep_alive(mut self, every: Duration) -> Sse {
        self.stream.keep_alive = Some((every, b":\n\n".to_vec()));
        self
    }

    /// The response: `text/event-stream`, not cached, not buffered by nginx.
    pub fn into_response(self) -> Response {
        Response::from_stream(200, "text/event-stream", self.stream)
            .with_header("Cache-Control", "no-cache")
            .with_header("X-Accel-Buffering", "no")
    }
}

impl crate::IntoResponse for Sse {
    fn into_response(self) -> Response {
        Sse::into_response(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_line_data_becomes_several_data_lines() {
        assert_eq!(
            Event::data("a\r\nb\rc\n").to_string(),
            "data: a\ndata: b\ndata: c\ndata: \n\n"
        );
    }

    #[test]
    fn fields_cannot_inject_lines() {
        let event = Event::data("x")
            .with_event("a\nevent: b")
            .with_id("1\r2")
            .with_retry(5);
        assert_eq!(
            event.to_string(),
            "event: a event: b\nid: 1 2\nretry: 5\ndata: x\n\n"
        );
    }

    #[test]
    fn json_data_is_one_line() {
        assert_eq!(
            Event::json(&serde_json::json!({"a": "b\nc"})).to_string(),
            "data: {\"a\":\"b\\nc\"}\n\n"
        );
    }
}
