//! The upstream LLM proxy: `/v1/...` requests whose `model` is `NAME/model`, where `NAME` is
//! an upstream declared with `--upstream NAME=URL`, are forwarded to that OpenAI-compatible
//! server with `model` set to `model`. Streams pass through event by event, as the upstream
//! produces them; when the client leaves, the upstream connection is closed.
//!
//! An upstream's failure reaches the client in our words: a 502 (or 504) naming the upstream
//! and the status or failure. Its error body and its URL, internal details that may hold
//! secrets, go to the log. A 4xx is passed through (the request is the client's to fix), and a
//! 1xx, which is no answer to relay, is a 502.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use serde_json::{json, Value};

use crate::{Error, ErrorKind, Request, Response, Result, Upstream};

/// Time allowed for an upstream to start answering, and between two reads of a stream.
const PROXY_TIMEOUT: Duration = Duration::from_secs(120);
/// Time allowed for an upstream to list its models.
const LIST_TIMEOUT: Duration = Duration::from_secs(2);
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
    let mut response = call.start(PROXY_TIMEOUT, streaming)?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("Content-Type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    if !(streaming && status == 200) {
        let text = response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_vec()
            .map_err(|err| upstream_error(upstream, &call.url(), &err))?;
        if status >= 500 {
            return Err(upstream.status_error(&call.url(), status, &text));
        }
        // The upstream's own answer, errors included (4xx are the client's to fix).
        return Ok(Response::new(status, &content_type, text));
    }
    let url = call.url();
    let upstream = upstream.clone();
    let reader = BufReader::new(response.into_body().into_reader());
    Ok(Response::stream("text/event-stream", move |out| {
        relay_events(reader, out, &upstream, &url)
    })
    .with_header("Cache-Control", "no-cache")
    .with_header("X-Accel-Buffering", "no"))
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
                let detail = err.to_string();
                let what = stream_failure(&err);
                let err = upstream.error(ErrorKind::BadGateway, url, what, Some(&detail));
                return send_error(out, &err);
            }
        }
    }
    if !event.is_empty() {
        out.send(&event)?;
    }
    Ok(())
}

/// What became of a stream whose read failed, in our words (ureq's go to the log).
fn stream_failure(err: &std::io::Error) -> &'static str {
    let ureq_timeout = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<ureq::Error>())
        .is_some_and(|e| matches!(e, ureq::Error::Timeout(_)));
    let io_timeout = matches!(
        err.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    );
    match ureq_timeout || io_timeout {
        true => "stream stalled past the read timeout",
        false => "stream broke",
    }
}

/// Ends a relayed stream with an error event in OpenAI's shape.
fn send_error(
    out: &mut crate::BodySender,
    err: &Error,
) -> std::result::Result<(), crate::Disconnected> {
    let body = json!({"error": {"message": err.public_message(), "type": "server_error", "param": null, "code": "upstream_error"}});
    out.send(format!("data: {body}\n\n"))
}

/// The 502 for a body that could not be read: ureq's words go to the log.
fn upstream_error(upstream: &Upstream, url: &str, err: &ureq::Error) -> Error {
    let detail = err.to_string();
    upstream.error(
        ErrorKind::BadGateway,
        url,
        "the answer broke off",
        Some(&detail),
    )
}
