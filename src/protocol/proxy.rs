//! The upstream LLM proxy: `/v1/...` requests whose `model` is `NAME/model`, where `NAME` is
//! an upstream declared with `--upstream NAME=URL`, are forwarded to that OpenAI-compatible
//! server with `model` set to `model`. Streams pass through event by event, as the upstream
//! produces them; when the client leaves, the upstream connection is closed.
//!
//! An upstream's failure reaches the client in our words: a 502 (or 504) naming the upstream
//! and the status or failure. Its error body and its URL, internal details that may hold
//! secrets, go to the log. A 4xx keeps its status (the request is the client's to fix); its
//! body passes only as JSON re-encoded in OpenAI's error shape, anything else (an HTML page)
//! becomes a short message of ours. A 1xx, which is no answer to relay, is a 502.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use serde_json::{json, Value};

use crate::{Error, ErrorKind, Request, Response, Result, Upstream};

/// Longest upstream error message passed on.
const MAX_MESSAGE_CHARS: usize = 1000;

/// Time allowed for an upstream to start answering, and between two reads of a stream.
const PROXY_TIMEOUT: Duration = Duration::from_secs(120);
/// Time allowed for an upstream to list its models.
const LIST_TIMEOUT: Duration = Duration::from_secs(2);
/// Time allowed for the start-up probe (a TLS handshake through a proxy included).
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest SSE event passed through; a longer one ends the stream with an error event.
const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// The upstream named by `model` (`NAME/rest`), with the upstream's own model name.
pub(super) fn route<'a>(
    upstreams: &'a [Upstream],
    model: &'a str,
) -> Option<(&'a Upstream, &'a str)> {
    let (name, rest) = model.split_once('/')?;
    let upstream = upstreams.iter().find(|u| u.name() == name)?;
    Some((upstream, rest))
}

/// The models each upstream lists, as `NAME/id`; an upstream that does not answer is skipped.
pub(super) fn list(upstreams: &[Upstream]) -> Vec<Value> {
    let mut data = Vec::new();
    for upstream in upstreams {
        let listed = upstream
            .get("/models")
            .send_within(LIST_TIMEOUT)
            .and_then(|reply| reply.json::<Value>());
        match listed {
            Ok(list) => {
                for model in list["data"].as_array().into_iter().flatten() {
                    if let Some(id) = model["id"].as_str() {
                        let mut entry = model.clone();
                        entry["id"] = json!(format!("{}/{id}", upstream.name()));
                        data.push(entry);
                    }
                }
            }
            Err(err) => crate::log::warn(&format!("cannot list models of {}", err.message())),
        }
    }
    data
}

/// Asks `upstream` for its models once, on a thread of its own, and logs what came of it: a
/// typo in the URL, a certificate that is not trusted or a host that does not answer shows in
/// the log at start-up, not at the first user's request.
pub fn probe(upstream: &Upstream) {
    let upstream = upstream.clone();
    let spawned = std::thread::Builder::new()
        .name("tinyserve-probe".into())
        .spawn(move || {
            let name = upstream.name();
            let url = upstream.url("/models");
            let listed = upstream
                .get("/models")
                .send_within(PROBE_TIMEOUT)
                .and_then(|reply| reply.json::<Value>());
            match listed {
                Ok(list) => {
                    let count = list["data"].as_array().map_or(0, Vec::len);
                    crate::log::info(&format!(
                        "upstream \"{name}\" ({url}) answered GET /models: {count} models"
                    ));
                }
                // The error was logged with its details where it was made.
                Err(err) => crate::log::warn(&format!(
                    "upstream \"{name}\" ({url}) did not answer GET /models: {}",
                    err.message()
                )),
            }
        });
    if let Err(err) = spawned {
        crate::log::warn(&format!("cannot probe an upstream: {err}"));
    }
}

/// Forwards `body` to `path` on `upstream` with `model` as the upstream's model name.
pub(super) fn forward(
    upstream: &Upstream,
    path: &str,
    mut body: Value,
    model: &str,
    req: &Request,
) -> Result<Response> {
    body["model"] = json!(model);
    let streaming = body["stream"].as_bool().unwrap_or(false);
    let call = upstream
        .post_json(path, &body)
        .with_header("X-Request-ID", req.request_id());
    let stream = call.start(PROXY_TIMEOUT)?;
    let status = stream.status();
    let content_type = stream
        .header("Content-Type")
        .unwrap_or("application/json")
        .to_string();
    if !(streaming && status == 200) {
        let text = stream.into_bytes()?;
        if status >= 500 {
            return Err(upstream.status_error(&call.url(), status, &text));
        }
        if status >= 400 {
            return Ok(client_error(upstream, status, &text));
        }
        return Ok(Response::new(status, &content_type, text));
    }
    let url = call.url();
    let upstream = upstream.clone();
    let reader = BufReader::new(stream);
    Ok(Response::stream("text/event-stream", move |out| {
        relay_events(reader, out, &upstream, &url)
    })
    .with_header("Cache-Control", "no-cache")
    .with_header("X-Accel-Buffering", "no"))
}

/// An upstream's 4xx with its status, in OpenAI's error shape: the upstream's own message,
/// type, param and code when its body is JSON in that shape (or has a `message` or `detail`),
/// else only the status in our words.
fn client_error(upstream: &Upstream, status: u16, body: &[u8]) -> Response {
    let name = upstream.name();
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().map(|v| match &v["error"] {
        Value::Object(_) => &v["error"],
        _ => v,
    });
    let text = |v: &Value| {
        v.as_str()
            .map(|s| s.chars().take(MAX_MESSAGE_CHARS).collect::<String>())
    };
    let message = error
        .and_then(|e| text(&e["message"]).or_else(|| text(&e["detail"])))
        .or_else(|| parsed.as_ref().and_then(|v| text(&v["error"])));
    let message =
        message.unwrap_or_else(|| format!("upstream \"{name}\" answered status {status}"));
    let field = |key: &str| {
        error
            .map(|e| &e[key])
            .and_then(|v| text(v).map(Value::String))
            .unwrap_or(Value::Null)
    };
    let kind = match field("type") {
        Value::Null => json!("invalid_request_error"),
        kind => kind,
    };
    let code = match (&parsed, field("code")) {
        (Some(_), code) => code,
        (None, _) => json!("upstream_error"),
    };
    let body =
        json!({"error": {"message": message, "type": kind, "param": field("param"), "code": code}});
    Response::new(status, "application/json", body.to_string().into_bytes())
}

/// Passes SSE events through one by one (an event ends at a blank line).
fn relay_events<R: BufRead>(
    mut reader: R,
    out: &mut crate::BodySender,
    upstream: &Upstream,
    url: &str,
) -> std::result::Result<(), crate::Disconnected> {
    let mut event = Vec::new();
    loop {
        let mut line = Vec::new();
        let mut limited = std::io::Read::take(&mut reader, (MAX_EVENT_BYTES + 1) as u64);
        let read = limited.read_until(b'\n', &mut line);
        match read {
            Ok(0) => break,
            Ok(_) if event.len() + line.len() > MAX_EVENT_BYTES => {
                let err = upstream.error(ErrorKind::BadGateway, url, "event too large", None);
                return send_error(out, &err);
            }
            Ok(_) => {
                let blank = line == b"\n" || line == b"\r\n";
                event.extend_from_slice(&line);
                if blank {
                    out.send(&event)?;
                    event.clear();
                }
            }
            Err(err) => {
                // Our own error (already logged by the upstream) or a read that broke.
                let err = match err.get_ref().and_then(|e| e.downcast_ref::<Error>()) {
                    Some(ours) => Error::new(ours.kind(), ours.public_message()),
                    None => {
                        let detail = err.to_string();
                        upstream.error(ErrorKind::BadGateway, url, "stream broke", Some(&detail))
                    }
                };
                return send_error(out, &err);
            }
        }
    }
    if !event.is_empty() {
        out.send(&event)?;
    }
    Ok(())
}

/// Ends a relayed stream with an error event in OpenAI's shape.
fn send_error(
    out: &mut crate::BodySender,
    err: &Error,
) -> std::result::Result<(), crate::Disconnected> {
    let body = json!({"error": {"message": err.public_message(), "type": "server_error", "param": null, "code": "upstream_error"}});
    out.send(format!("data: {body}\n\n"))
}
