//! HTTP/1.1 framing of outbound calls, by ureq-proto (the sans-IO core of ureq): a request
//! encoded into bytes, and an answer decoded from bytes as they arrive. No I/O here, so the
//! fan-out (every request written, then every answer read, on one thread), single calls, the
//! proxy's streams and the `CONNECT` to a forward proxy share one framing.

use ureq_proto::client::state::{RecvBody, RecvResponse};
use ureq_proto::client::{Call as Proto, RecvBodyResult, RecvResponseResult, SendRequestResult};
use ureq_proto::http;
use ureq_proto::BodyMode;

/// Longest answer head accepted (status line and headers).
pub(crate) const HEAD_LIMIT: usize = 64 * 1024;
/// Bytes decoded per step of a body.
const STEP: usize = 16 * 1024;

/// The bytes of a request to `target` (a URL; `host:port` for `CONNECT`), and its answer to
/// read. `headers` go as given; ureq-proto adds `Host` and frames the body by its length.
pub(crate) fn encode<'h>(
    method: &str,
    target: &str,
    headers: impl IntoIterator<Item = (&'h str, &'h str)>,
    body: Option<&[u8]>,
) -> Result<(Vec<u8>, Answer), String> {
    let mut uri: http::Uri = target.parse().map_err(|err| format!("{err}"))?;
    // `http://host?q` has no path: the request target is `/?q`.
    if let Some(query) = uri
        .path_and_query()
        .filter(|pq| pq.as_str().starts_with('?'))
    {
        let mut parts = uri.clone().into_parts();
        parts.path_and_query = Some(
            format!("/{}", query.as_str())
                .parse()
                .map_err(|err| format!("{err}"))?,
        );
        uri = http::Uri::from_parts(parts).map_err(|err| format!("{err}"))?;
    }
    let mut builder = http::Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    if let Some(body) = body {
        builder = builder.header("Content-Length", body.len().to_string());
    }
    let request = builder.body(()).map_err(|err| err.to_string())?;
    let mut send = Proto::new(request)
        .map_err(|err| err.to_string())?
        .proceed();
    let mut out = Output::default();
    while !send.can_proceed() {
        match out.write_with(|buf| send.write(buf)) {
            Ok(_) => {}
            // A line longer than the room: more room, within the limit.
            Err(ureq_proto::Error::OutputOverflow) if out.grow() => {}
            Err(ureq_proto::Error::OutputOverflow) => {
                return Err("request head does not fit".into())
            }
            Err(err) => return Err(err.to_string()),
        }
    }
    let recv = match send.proceed().map_err(|err| err.to_string())? {
        Some(SendRequestResult::RecvResponse(recv)) => recv,
        Some(SendRequestResult::SendBody(mut send)) => {
            let mut rest = body.unwrap_or_default();
            out.room = out.room.max(rest.len().min(BODY_STEP));
            loop {
                let mut used = 0;
                let n = out
                    .write_with(|buf| {
                        let (taken, n) = send.write(rest, buf)?;
                        used = taken;
                        Ok(n)
                    })
                    .map_err(|err| err.to_string())?;
                rest = &rest[used..];
                if rest.is_empty() && send.can_proceed() {
                    break;
                }
                if used == 0 && n == 0 && !rest.is_empty() && !out.grow() {
                    return Err("request body does not fit".into());
                }
            }
            send.proceed().ok_or("request body not sent whole")?
        }
        _ => return Err("unexpected request state".into()),
    };
    let bytes = out.bytes;
    Ok((bytes, Answer::new(recv)))
}

/// The request's bytes, written by ureq-proto straight into the vector's spare room: a
/// kilobyte at first (a typical head), more only when a step does not fit, up to
/// `LINE_LIMIT` (the longest header line, a long token or cookie); a body's steps as large as
/// the body, up to `BODY_STEP`.
struct Output {
    bytes: Vec<u8>,
    room: usize,
}

const LINE_LIMIT: usize = 16 * 1024;
/// Body bytes framed per step.
const BODY_STEP: usize = 64 * 1024;

impl Default for Output {
    fn default() -> Output {
        Output {
            bytes: Vec::new(),
            room: 1024,
        }
    }
}

impl Output {
    /// Offers `room` bytes to `write`, keeps the `n` it wrote.
    fn write_with(
        &mut self,
        write: impl FnOnce(&mut [u8]) -> Result<usize, ureq_proto::Error>,
    ) -> Result<usize, ureq_proto::Error> {
        let start = self.bytes.len();
        self.bytes.resize(start + self.room, 0);
        let written = write(&mut self.bytes[start..]);
        let n = *written.as_ref().unwrap_or(&0);
        self.bytes.truncate(start + n);
        written
    }

    /// More room for a step that did not fit; false at the limit.
    fn grow(&mut self) -> bool {
        if self.room >= LINE_LIMIT {
            return false;
        }
        self.room = (self.room * 4).min(LINE_LIMIT);
        true
    }
}

/// The state to read an answer to a `method` request to `target` with, for a request whose
/// bytes are already made (sent again on a new connection).
pub(crate) fn answer_to(method: &str, target: &str) -> Result<Answer, String> {
    encode(method, target, [], None).map(|(_, answer)| answer)
}

/// An answer being read: its head once complete, its body decoded as the bytes arrive.
pub(crate) struct Answer {
    phase: Phase,
    head: Option<http::Response<()>>,
    /// Bytes received and not yet used.
    input: Vec<u8>,
}

enum Phase {
    Head(Proto<RecvResponse>),
    Body(Proto<RecvBody>),
    /// The answer is whole; `close` when the connection cannot carry another.
    Done {
        close: bool,
    },
    Broken,
}

impl Answer {
    fn new(recv: Proto<RecvResponse>) -> Answer {
        Answer {
            phase: Phase::Head(recv),
            head: None,
            input: Vec::new(),
        }
    }

    pub(crate) fn has_head(&self) -> bool {
        self.head.is_some()
    }

    /// The status, 0 before the head.
    pub(crate) fn status(&self) -> u16 {
        self.head.as_ref().map_or(0, |head| head.status().as_u16())
    }

    /// A header of the answer's head.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.head.as_ref()?.headers().get(name)?.to_str().ok()
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done { .. })
    }

    /// Whether the connection may carry another request: the answer is whole, the upstream
    /// keeps it open, and it sent nothing more.
    pub(crate) fn is_reusable(&self) -> bool {
        matches!(self.phase, Phase::Done { close: false }) && self.input.is_empty()
    }

    /// Bytes after the end of the answer (a tunnel's first bytes, or unasked data).
    pub(crate) fn leftover(&self) -> &[u8] {
        &self.input
    }

    /// Takes bytes that arrived. Decoded body bytes are appended to `body`, which may hold
    /// `limit` bytes at most; more is an error, as is a head over HEAD_LIMIT.
    pub(crate) fn feed(
        &mut self,
        bytes: &[u8],
        body: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), String> {
        self.input.extend_from_slice(bytes);
        loop {
            match std::mem::replace(&mut self.phase, Phase::Broken) {
                Phase::Head(mut recv) => {
                    let (used, head) = recv
                        .try_response(&self.input, false)
                        .map_err(|err| format!("invalid answer head ({err})"))?;
                    self.input.drain(..used);
                    match head {
                        Some(head) => {
                            self.head = Some(head);
                            self.phase = match recv.proceed() {
                                Some(RecvResponseResult::RecvBody(body)) => Phase::Body(body),
                                Some(RecvResponseResult::Redirect(r)) => Phase::Done {
                                    close: r.proceed().must_close_connection(),
                                },
                                Some(RecvResponseResult::Cleanup(c)) => Phase::Done {
                                    close: c.must_close_connection(),
                                },
                                None => return Err("answer head incomplete".into()),
                            };
                        }
                        None => {
                            self.phase = Phase::Head(recv);
                            if self.input.len() > HEAD_LIMIT {
                                return Err(format!(
                                    "answer head larger than {} KiB",
                                    HEAD_LIMIT / 1024
                                ));
                            }
                            // A 1xx was skipped: the final head may be in the rest.
                            if used == 0 {
                                return Ok(());
                            }
                        }
                    }
                }
                Phase::Body(mut recv) => {
                    // Decoding never makes more bytes than it takes: room for the input, at
                    // most a step, is room enough.
                    let start = body.len();
                    body.resize(start + self.input.len().min(STEP), 0);
                    let read = recv.read(&self.input, &mut body[start..]);
                    let (used, n) = match read {
                        Ok(counts) => counts,
                        Err(err) => {
                            body.truncate(start);
                            return Err(format!("invalid answer body ({err})"));
                        }
                    };
                    body.truncate(start + n);
                    self.input.drain(..used);
                    if body.len() > limit {
                        return Err(format!("answer larger than {}", bytes_in_words(limit)));
                    }
                    let close_delimited = matches!(recv.body_mode(), BodyMode::CloseDelimited);
                    if !close_delimited && recv.can_proceed() {
                        self.phase = match recv.proceed() {
                            Some(RecvBodyResult::Redirect(r)) => Phase::Done {
                                close: r.proceed().must_close_connection(),
                            },
                            Some(RecvBodyResult::Cleanup(c)) => Phase::Done {
                                close: c.must_close_connection(),
                            },
                            None => return Err("answer body incomplete".into()),
                        };
                        continue;
                    }
                    self.phase = Phase::Body(recv);
                    if used == 0 && n == 0 {
                        return Ok(());
                    }
                }
                done @ Phase::Done { .. } => {
                    self.phase = done;
                    return Ok(());
                }
                Phase::Broken => return Err("answer already failed".into()),
            }
        }
    }

    /// The connection ended: the end of a close-delimited body, else an answer cut short.
    pub(crate) fn end(&mut self) -> Result<(), String> {
        match &self.phase {
            Phase::Done { .. } => Ok(()),
            Phase::Body(recv) if matches!(recv.body_mode(), BodyMode::CloseDelimited) => {
                self.phase = Phase::Done { close: true };
                Ok(())
            }
            _ => Err("connection closed before the whole answer".into()),
        }
    }
}

/// `64 MiB`, `16 KiB`, `100 bytes`.
pub(crate) fn bytes_in_words(n: usize) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::{encode, Answer};

    fn fresh() -> Answer {
        encode("GET", "http://example.test/x", [], None)
            .map(|(_, answer)| answer)
            .unwrap_or_else(|err| panic!("encode: {err}"))
    }

    #[test]
    fn a_request_is_encoded_with_host_and_length() {
        let headers = [("Accept", "*/*")];
        let (bytes, _) = encode("POST", "http://example.test:81/p?q=1", headers, Some(b"{}"))
            .unwrap_or_else(|err| panic!("encode: {err}"));
        let text = String::from_utf8_lossy(&bytes).to_lowercase();
        assert!(text.starts_with("post /p?q=1 http/1.1\r\n"), "{text}");
        assert!(text.contains("host: example.test:81\r\n"), "{text}");
        assert!(text.contains("content-length: 2\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n{}"), "{text}");
    }

    #[test]
    fn long_header_lines_and_large_bodies_are_encoded_whole() {
        let token = "t".repeat(10_000);
        let body = vec![b'x'; 200_000];
        let headers = [("Authorization", token.as_str())];
        let (bytes, _) = encode("POST", "http://example.test/p", headers, Some(&body))
            .unwrap_or_else(|err| panic!("encode: {err}"));
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains(&format!("authorization: {token}\r\n")),
            "no token"
        );
        assert!(text.contains("content-length: 200000\r\n"));
        assert!(bytes.ends_with(&body) && bytes.len() < body.len() + token.len() + 200);
        let too_long = "t".repeat(super::LINE_LIMIT + 1);
        let headers = [("Authorization", too_long.as_str())];
        let err = encode("GET", "http://example.test/", headers, None).err();
        assert_eq!(err.as_deref(), Some("request head does not fit"));
    }

    #[test]
    fn chunked_answers_are_joined_byte_by_byte() {
        let whole = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nTrailer: x\r\n\r\n";
        let mut answer = fresh();
        let mut body = Vec::new();
        for byte in whole {
            assert!(!answer.is_done());
            answer
                .feed(&[*byte], &mut body, 100)
                .unwrap_or_else(|err| panic!("{err}"));
        }
        assert!(answer.is_done() && answer.is_reusable());
        assert_eq!(body, b"Wikipedia");
    }

    #[test]
    fn hostile_answers_fail_without_panic() {
        let huge_chunk =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFF\r\n";
        let mut answer = fresh();
        let mut body = Vec::new();
        assert!(answer.feed(huge_chunk, &mut body, 100).is_ok());
        assert!(answer.feed(&[b'x'; 200], &mut body, 100).is_err());
        let mut answer = fresh();
        assert!(answer
            .feed(b"HTTP/1.1 200 OK\r\nX: ", &mut Vec::new(), 100)
            .is_ok());
        let long = vec![b'a'; super::HEAD_LIMIT + 1];
        assert!(answer.feed(&long, &mut Vec::new(), 100).is_err());
        let mut answer = fresh();
        assert!(answer
            .feed(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                &mut Vec::new(),
                100
            )
            .is_err());
    }

    #[test]
    fn interim_answers_are_skipped_and_close_delimited_bodies_end_with_the_connection() {
        let mut answer = fresh();
        let mut body = Vec::new();
        let bytes = b"HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.0 200 OK\r\n\r\nabc";
        answer
            .feed(bytes, &mut body, 100)
            .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!((answer.status(), answer.is_done()), (200, false));
        answer.end().unwrap_or_else(|err| panic!("{err}"));
        assert!(answer.is_done() && !answer.is_reusable());
        assert_eq!(body, b"abc");
    }
}
