//! How a request's body is delimited, by the rules of RFC 9112 (sections 3.2, 6 and 7): the
//! checks on the head that leave no two readings of where a request ends, and an incremental
//! decoder of chunked bodies.
//!
//! A request whose framing is ambiguous is refused with 400 and its connection closed, since a
//! proxy in front may have read it differently (request smuggling):
//! - `Transfer-Encoding` together with `Content-Length`;
//! - any transfer coding but a single `chunked` (several `Transfer-Encoding` headers are one list);
//! - `Transfer-Encoding` on an HTTP/1.0 request;
//! - `Content-Length` values that differ, or that are not plain digits;
//! - an HTTP/1.1 request without exactly one `Host`;
//! - a chunk size other than hexadecimal digits (no sign, no spaces around it), optionally
//!   followed by `;` extensions.
//!
//! Trailer fields after the last chunk are read and dropped, counted against the head limits
//! (bytes and fields) left over by the head.

use super::head::Head;
use crate::{Error, ErrorKind};

/// How a request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `Content-Length` bytes (0 when neither header is present). A length that does not fit
    /// in `usize` is `usize::MAX`: certainly over any limit.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

impl Framing {
    /// Whether a body follows the head.
    pub(crate) fn has_body(self) -> bool {
        self != Framing::Length(0)
    }
}

/// The framing of a request, or why its head is refused (400, then close).
pub(crate) fn framing(head: &Head) -> Result<Framing, Error> {
    if head.minor_version >= 1 {
        match head.headers.get_all("Host").count() {
            1 => {}
            0 => return Err(Error::bad_request("HTTP/1.1 request without a Host header")),
            _ => return Err(Error::bad_request("more than one Host header")),
        }
    }
    let mut codings = head.headers.get_all("Transfer-Encoding").peekable();
    if codings.peek().is_some() {
        if head.minor_version == 0 {
            return Err(Error::bad_request(
                "Transfer-Encoding is not allowed in an HTTP/1.0 request",
            ));
        }
        if head.headers.get_all("Content-Length").next().is_some() {
            return Err(Error::bad_request(
                "both Transfer-Encoding and Content-Length: the body's end is ambiguous",
            ));
        }
        // Several headers form one comma-separated list (RFC 9110 section 5.3); empty
        // elements are allowed and ignored.
        let list: Vec<&str> = codings
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .filter(|coding| !coding.is_empty())
            .collect();
        return match list.as_slice() {
            [only] if only.eq_ignore_ascii_case("chunked") => Ok(Framing::Chunked),
            _ => Err(Error::bad_request(format!(
                "unsupported Transfer-Encoding {:?}: only chunked is accepted",
                list.join(", ")
            ))),
        };
    }
    let mut lengths = head.headers.get_all("Content-Length");
    let Some(first) = lengths.next() else {
        return Ok(Framing::Length(0));
    };
    if lengths.any(|value| value != first) {
        return Err(Error::bad_request("conflicting Content-Length headers"));
    }
    let text = first.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::bad_request(format!("bad Content-Length {text:?}")));
    }
    Ok(Framing::Length(text.parse().unwrap_or(usize::MAX)))
}

/// Longest chunk-size line (size and extensions) accepted.
pub(crate) const MAX_CHUNK_LINE: usize = 4096;

/// Decodes a chunked body as its bytes arrive, under a body limit and a trailer budget.
#[derive(Debug)]
pub(crate) struct ChunkedDecoder {
    state: State,
    max_body: usize,
    /// Trailer bytes still allowed (line terminators included; the final empty line is free).
    trailer_bytes: usize,
    /// Trailer fields still allowed.
    trailer_fields: usize,
    /// The head limits, for the message when the trailers go over them.
    head_limits: (usize, usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, with this many bytes to go.
    Data(usize),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer fields until an empty line.
    Trailer,
    /// The body has ended.
    Done,
}

impl ChunkedDecoder {
    /// A decoder refusing bodies over `max_body` bytes (413), and trailers over
    /// `trailer_bytes` bytes or `trailer_fields` fields (431): what the head limits leave after
    /// the head. `head_limits` (bytes, fields) are named in that error.
    pub(crate) fn new(
        max_body: usize,
        trailer_bytes: usize,
        trailer_fields: usize,
        head_limits: (usize, usize),
    ) -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size,
            max_body,
            trailer_bytes,
            trailer_fields,
            head_limits,
        }
    }

    /// Whether the whole body, trailers included, has been decoded.
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes what it can of `input`, appending chunk data to `body`, and returns how many
    /// bytes of `input` it used. It stops at the end of the body (then [`Self::is_done`]) or
    /// where `input` ends inside a line: the caller keeps the unused bytes, adds more and calls
    /// again. The unused bytes are never more than one line, at most [`MAX_CHUNK_LINE`] or the
    /// trailer budget.
    pub(crate) fn decode(&mut self, input: &[u8], body: &mut Vec<u8>) -> Result<usize, Error> {
        let mut used = 0;
        loop {
            let rest = &input[used..];
            match self.state {
                State::Done => return Ok(used),
                State::Size => {
                    let Some(line) = line(rest, MAX_CHUNK_LINE, || {
                        Error::bad_request(format!(
                            "chunk size line longer than {MAX_CHUNK_LINE} bytes"
                        ))
                    })?
                    else {
                        return Ok(used);
                    };
                    used += line.len() + 2;
                    let size = chunk_size(line)?;
                    self.state = if size == 0 {
                        State::Trailer
                    } else if size > self.max_body.saturating_sub(body.len()) {
                        return Err(Error::payload_too_large(self.max_body));
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    if rest.is_empty() {
                        return Ok(used);
                    }
                    let n = left.min(rest.len());
                    body.extend_from_slice(&rest[..n]);
                    used += n;
                    self.state = if n == left {
                        State::DataEnd
                    } else {
                        State::Data(left - n)
                    };
                }
                State::DataEnd => {
                    let crlf = b"\r\n";
                    let n = rest.len().min(2);
                    if rest[..n] != crlf[..n] {
                        return Err(Error::bad_request("chunk data not followed by CRLF"));
                    }
                    if n < 2 {
                        return Ok(used);
                    }
                    used += 2;
                    self.state = State::Size;
                }
                State::Trailer => {
                    let max = self.trailer_bytes.saturating_sub(2);
                    let limits = self.head_limits;
                    let Some(line) = line(rest, max, || too_large_trailers(limits))? else {
                        return Ok(used);
                    };
                    used += line.len() + 2;
                    if line.is_empty() {
                        self.state = State::Done;
                        continue;
                    }
                    if self.trailer_fields == 0 {
                        return Err(too_large_trailers(limits));
                    }
                    self.trailer_fields -= 1;
                    self.trailer_bytes -= line.len() + 2;
                    check_trailer_field(line)?;
                }
            }
        }
    }
}

/// The line at the start of `input` (without its CRLF), `None` when its end has not arrived
/// yet, or `too_long()` when no CRLF comes within `max` bytes.
fn line(input: &[u8], max: usize, too_long: impl Fn() -> Error) -> Result<Option<&[u8]>, Error> {
    let window = &input[..input.len().min(max.saturating_add(2))];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(end) => Ok(Some(&input[..end])),
        None if input.len() >= max.saturating_add(2) => Err(too_long()),
        None => Ok(None),
    }
}

/// `chunk-size [ chunk-ext ]`: hexadecimal digits, then nothing or `;` extensions (optionally
/// after spaces or tabs); the extensions are ignored but may hold no control characters.
fn chunk_size(line: &[u8]) -> Result<usize, Error> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let (size_text, rest) = line.split_at(digits);
    let bad = || {
        Error::bad_request(format!(
            "bad chunk size line {:?}: expected hexadecimal digits, optionally followed by ;extensions",
            String::from_utf8_lossy(&line[..line.len().min(64)])
        ))
    };
    if size_text.is_empty() {
        return Err(bad());
    }
    let after_space = rest.iter().position(|b| !matches!(b, b' ' | b'\t'));
    match after_space {
        None if rest.is_empty() => {}
        Some(at) if rest[at] == b';' => {
            if rest.iter().any(|&b| is_control(b)) {
                return Err(bad());
            }
        }
        _ => return Err(bad()),
    }
    let mut size = 0usize;
    for &digit in size_text {
        let value = usize::from((digit as char).to_digit(16).unwrap_or(0) as u8);
        // A size past usize is over any body limit.
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(value))
            .unwrap_or(usize::MAX);
    }
    Ok(size)
}

fn is_control(byte: u8) -> bool {
    (byte < 0x20 && byte != b'\t') || byte == 0x7f
}

/// A trailer field: `name: value`, the name a token, the value free of control characters.
fn check_trailer_field(line: &[u8]) -> Result<(), Error> {
    let is_token = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    let ok = match line.iter().position(|&b| b == b':') {
        Some(colon) => {
            colon > 0
                && line[..colon].iter().all(is_token)
                && !line[colon + 1..].iter().any(|&b| is_control(b))
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::bad_request("malformed trailer field"))
    }
}

fn too_large_trailers((bytes, fields): (usize, usize)) -> Error {
    Error::new(
        ErrorKind::HeadersTooLarge,
        format!(
            "request head and trailer fields exceed the limit of {bytes} bytes or {fields} headers"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Instant;

    fn head(minor_version: u8, headers: &[(&str, &str)]) -> Head {
        Head {
            method: "POST".to_string(),
            target: "/".to_string(),
            minor_version,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            len: 0,
            started: Instant::now(),
        }
    }

    fn refused(minor_version: u8, headers: &[(&str, &str)]) -> String {
        match framing(&head(minor_version, headers)) {
            Ok(framing) => panic!("{headers:?} accepted as {framing:?}"),
            Err(err) => {
                assert_eq!(err.status(), 400, "{headers:?}");
                err.to_string()
            }
        }
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let host = ("Host", "x");
        let ok = |minor, headers: &[(&str, &str)]| framing(&head(minor, headers)).ok();
        assert_eq!(ok(1, &[host]), Some(Framing::Length(0)));
        assert_eq!(
            ok(0, &[]),
            Some(Framing::Length(0)),
            "HTTP/1.0 needs no Host"
        );
        assert_eq!(
            ok(1, &[host, ("content-length", "12")]),
            Some(Framing::Length(12))
        );
        assert_eq!(
            ok(1, &[host, ("Content-Length", "5"), ("Content-Length", "5")]),
            Some(Framing::Length(5))
        );
        assert_eq!(
            ok(1, &[host, ("Content-Length", "99999999999999999999999")]),
            Some(Framing::Length(usize::MAX))
        );
        for te in ["chunked", "Chunked", " chunked ", "chunked,", ", chunked"] {
            assert_eq!(
                ok(1, &[host, ("Transfer-Encoding", te)]),
                Some(Framing::Chunked),
                "{te:?}"
            );
        }

        assert!(refused(1, &[]).contains("without a Host"));
        assert!(refused(1, &[host, host]).contains("more than one Host"));
        let both = [
            host,
            ("Content-Length", "5"),
            ("Transfer-Encoding", "chunked"),
        ];
        assert!(refused(1, &both).contains("both Transfer-Encoding and Content-Length"));
        let ten = [("Transfer-Encoding", "chunked")];
        assert!(refused(0, &ten).contains("HTTP/1.0"));
        for te in [
            &[
                ("Transfer-Encoding", "chunked"),
                ("Transfer-Encoding", "gzip"),
            ][..],
            &[("Transfer-Encoding", "gzip, chunked")],
            &[("Transfer-Encoding", "chunked, chunked")],
            &[("Transfer-Encoding", "chunked;q=1")],
            &[("Transfer-Encoding", "identity")],
            &[("Transfer-Encoding", "")],
            &[("Transfer-Encoding", "xchunked")],
        ] {
            let mut headers = vec![host];
            headers.extend_from_slice(te);
            assert!(refused(1, &headers).contains("Transfer-Encoding"), "{te:?}");
        }
        for length in ["-5", "+5", "5 5", "0x10", "", "5,5"] {
            assert!(refused(1, &[host, ("Content-Length", length)]).contains("Content-Length"));
        }
        let differ = [host, ("Content-Length", "5"), ("Content-Length", "6")];
        assert!(refused(1, &differ).contains("conflicting"));
    }

    #[test]
    fn chunk_sizes_are_hex_digits_then_extensions() {
        for (line, size) in [
            ("b", 11),
            ("B", 11),
            ("000b", 11),
            ("b;name=value", 11),
            ("b ;name", 11),
            ("b\t; a=\"q\"", 11),
            ("0", 0),
            ("fFfF", 0xffff),
            ("10000000000000000", usize::MAX),
        ] {
            assert_eq!(chunk_size(line.as_bytes()).ok(), Some(size), "{line:?}");
        }
        for line in [
            "+b", "  b  ", " b", "b ", "b\t", "-1", "0x5", "", ";ext", "b;\u{1}", "b\r", "g",
        ] {
            let err = chunk_size(line.as_bytes()).expect_err(line);
            assert_eq!(err.status(), 400, "{line:?}");
        }
    }

    /// Decodes `input` fed in pieces of `step` bytes, as a socket delivers them.
    fn decode_in_steps(
        decoder: &mut ChunkedDecoder,
        input: &[u8],
        step: usize,
    ) -> Result<(Vec<u8>, usize), Error> {
        let mut body = Vec::new();
        let (mut fed, mut used) = (0, 0);
        while !decoder.is_done() && fed < input.len() {
            fed = (fed + step.max(1)).min(input.len());
            used += decoder.decode(&input[used..fed], &mut body)?;
        }
        Ok((body, used))
    }

    fn decoder() -> ChunkedDecoder {
        ChunkedDecoder::new(1024, 100, 3, (16 * 1024, 100))
    }

    #[test]
    fn chunked_bodies_decode_and_stop_at_their_end() {
        let input = b"5;x=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\n\r\nGET / HTTP/1.1\r\n";
        for step in [1, 2, 7, input.len()] {
            let mut decoder = decoder();
            let (body, used) = decode_in_steps(&mut decoder, input, step).expect("decodes");
            assert_eq!(body, b"hello world");
            assert!(decoder.is_done());
            assert_eq!(&input[used..], b"GET / HTTP/1.1\r\n", "step {step}");
        }
    }

    #[test]
    fn chunked_bodies_are_refused_past_their_limits() {
        let status = |input: &[u8]| {
            decode_in_steps(&mut decoder(), input, 3)
                .map(|_| 200)
                .unwrap_or_else(|e| e.status())
        };
        assert_eq!(status(b"401\r\n"), 413, "a chunk over the body limit");
        assert_eq!(
            status(b"400\r\n"),
            200,
            "a chunk at the body limit, to come"
        );
        assert_eq!(status(b"200\r\n"), 200);
        let over = [b"200\r\n".as_slice(), &[b'a'; 0x200], b"\r\n201\r\n"].concat();
        assert_eq!(status(&over), 413, "chunks adding up past the limit");
        assert_eq!(status(b"1\r\nab\r\n"), 400, "data longer than its size");
        assert_eq!(status(b"1\r\na\n"), 400, "a bare LF after the data");
        assert_eq!(status(b"1\na\r\n"), 400, "a bare LF after the size");
        assert_eq!(
            status(&[b'0'; MAX_CHUNK_LINE + 2]),
            400,
            "an endless size line"
        );
        // Trailers: 100 bytes and 3 fields in this decoder's budget.
        assert_eq!(status(b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"), 200);
        assert_eq!(status(b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n"), 431);
        let long = format!("0\r\nA: {}\r\n\r\n", "a".repeat(95));
        assert_eq!(
            status(long.as_bytes()),
            200,
            "a trailer line of exactly 100 bytes"
        );
        let long = format!("0\r\nA: {}\r\n\r\n", "a".repeat(96));
        assert_eq!(status(long.as_bytes()), 431, "101 bytes");
        let endless = format!("0\r\nA: {}", "a".repeat(4096));
        assert_eq!(status(endless.as_bytes()), 431, "an endless trailer line");
        assert_eq!(status(b"0\r\nno colon\r\n\r\n"), 400);
        assert_eq!(status(b"0\r\nBad Name: 1\r\n\r\n"), 400);
        assert_eq!(status(b"0\r\nA: \x01\r\n\r\n"), 400);
    }

    /// A body, how it is cut into chunks, an extension for each chunk and trailer fields.
    fn chunked_parts() -> impl Strategy<Value = (Vec<u8>, Vec<usize>, Vec<String>, Vec<String>)> {
        (
            proptest::collection::vec(any::<u8>(), 0..600),
            proptest::collection::vec(1usize..200, 0..20),
            proptest::collection::vec("(;[a-z]{1,5}(=[a-z0-9]{1,5})?)?", 20),
            proptest::collection::vec("[A-Za-z-]{1,10}: [ -~]{0,10}", 0..3),
        )
    }

    fn encode(body: &[u8], cuts: &[usize], extensions: &[String], trailers: &[String]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = body;
        let mut cuts = cuts.iter().cycle();
        let mut extensions = extensions.iter().cycle();
        while !rest.is_empty() {
            let n = cuts.next().copied().unwrap_or(1).min(rest.len());
            let ext = extensions.next().map_or("", String::as_str);
            out.extend_from_slice(format!("{n:x}{ext}\r\n").as_bytes());
            out.extend_from_slice(&rest[..n]);
            out.extend_from_slice(b"\r\n");
            rest = &rest[n..];
        }
        out.extend_from_slice(b"0\r\n");
        for trailer in trailers {
            out.extend_from_slice(format!("{trailer}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_chunked_decoder(
            input in proptest::collection::vec(any::<u8>(), 0..2000),
            step in 1usize..64,
        ) {
            let mut decoder = ChunkedDecoder::new(512, 64, 2, (1024, 10));
            if let Ok((body, used)) = decode_in_steps(&mut decoder, &input, step) {
                prop_assert!(used <= input.len());
                prop_assert!(body.len() <= 512);
            }
        }

        #[test]
        fn valid_chunked_bodies_round_trip(
            (body, cuts, extensions, trailers) in chunked_parts(),
            step in 1usize..300,
        ) {
            let mut input = encode(&body, &cuts, &extensions, &trailers);
            let end = input.len();
            input.extend_from_slice(b"POST /next HTTP/1.1\r\n");
            let mut decoder = ChunkedDecoder::new(600, 1000, 10, (1024, 10));
            let (decoded, used) = decode_in_steps(&mut decoder, &input, step)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(decoder.is_done());
            prop_assert_eq!(decoded, body);
            prop_assert_eq!(used, end, "the next request is left unread");
        }
    }
}
