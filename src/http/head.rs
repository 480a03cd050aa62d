//! A request head: the request line and header fields, parsed by httparse into owned values.

use std::time::Instant;

use crate::Headers;

/// A parsed request head.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) minor_version: u8,
    pub(crate) headers: Headers,
    /// Bytes of the request line and headers.
    pub(crate) len: usize,
    /// When the request's first byte arrived: the whole-request deadline counts from here.
    pub(crate) started: Instant,
}

impl Head {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// Whether the client wants the connection kept open after this request.
    pub(crate) fn wants_keep_alive(&self) -> bool {
        let connection = self.header("Connection").unwrap_or("").to_ascii_lowercase();
        if self.minor_version == 0 {
            connection.contains("keep-alive")
        } else {
            !connection.contains("close")
        }
    }
}

/// Headers parsed into an array on the stack; heads with more are parsed again into one of
/// `max_headers` on the heap.
const STACK_HEADERS: usize = 32;

/// Parses a request head: its length and the owned head once complete.
pub(super) fn parse_head(buf: &[u8], max_headers: usize) -> httparse::Result<(usize, Head)> {
    fn parse<'b>(
        buf: &'b [u8],
        headers: &mut [httparse::Header<'b>],
    ) -> httparse::Result<(usize, Head)> {
        let mut parsed = httparse::Request::new(headers);
        Ok(match parsed.parse(buf)? {
            // httparse accepts a bare LF as a line end (RFC 9112 allows it); a proxy in front
            // that does not could read the head differently, so it is refused.
            httparse::Status::Complete(len) if has_bare_lf(&buf[..len]) => {
                return Err(httparse::Error::NewLine)
            }
            httparse::Status::Complete(len) => httparse::Status::Complete((
                len,
                Head {
                    method: parsed.method.unwrap_or("GET").to_string(),
                    target: parsed.path.unwrap_or("/").to_string(),
                    minor_version: parsed.version.unwrap_or(1),
                    headers: parsed
                        .headers
                        .iter()
                        .map(|h| {
                            let value = String::from_utf8_lossy(h.value).into_owned();
                            (h.name.to_string(), value)
                        })
                        .collect(),
                    len,
                    started: Instant::now(),
                },
            )),
            httparse::Status::Partial => httparse::Status::Partial,
        })
    }
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    match parse(buf, &mut stack[..max_headers.min(STACK_HEADERS)]) {
        Err(httparse::Error::TooManyHeaders) if max_headers > STACK_HEADERS => {
            parse(buf, &mut vec![httparse::EMPTY_HEADER; max_headers])
        }
        result => result,
    }
}

/// Whether `head` has a line ending in LF alone, without CR.
fn has_bare_lf(head: &[u8]) -> bool {
    head.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A request head as the parser should read it back.
    fn head_parts() -> impl Strategy<Value = (String, String, u8, Vec<(String, String)>)> {
        (
            "[A-Z]{1,10}",
            "/[A-Za-z0-9/._~%?=&-]{0,60}",
            0u8..=1,
            proptest::collection::vec(
                (
                    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}",
                    "([!-~]([ -~]{0,40}[!-~])?)?",
                ),
                0..40,
            ),
        )
    }

    #[test]
    fn a_bare_lf_line_end_is_refused() {
        let head = b"GET / HTTP/1.1\r\nHost: a\nX-Hidden: b\r\n\r\n";
        assert!(matches!(
            parse_head(head, 10),
            Err(httparse::Error::NewLine)
        ));
        let head = b"GET / HTTP/1.1\nHost: a\n\n";
        assert!(parse_head(head, 10).is_err());
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert!(matches!(
            parse_head(head, 10),
            Ok(httparse::Status::Complete(_))
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_head_parser(
            input in proptest::collection::vec(any::<u8>(), 0..600),
            max_headers in 0usize..50,
        ) {
            if let Ok(httparse::Status::Complete((len, head))) = parse_head(&input, max_headers) {
                prop_assert!(len <= input.len());
                prop_assert!(head.headers.len() <= max_headers);
                let _ = super::super::framing::framing(&head);
            }
        }

        #[test]
        fn arbitrary_header_lines_never_panic_the_head_parser(
            lines in proptest::collection::vec("[ -~\\t]{0,40}", 0..20),
        ) {
            let input = format!("GET / HTTP/1.1\r\n{}\r\n\r\n", lines.join("\r\n"));
            if let Ok(httparse::Status::Complete((_, head))) = parse_head(input.as_bytes(), 100) {
                let _ = super::super::framing::framing(&head);
            }
        }

        #[test]
        fn valid_heads_round_trip((method, target, minor, headers) in head_parts()) {
            let mut text = format!("{method} {target} HTTP/1.{minor}\r\n");
            for (name, value) in &headers {
                text.push_str(&format!("{name}: {value}\r\n"));
            }
            text.push_str("\r\n");
            let mut input = text.clone().into_bytes();
            input.extend_from_slice(b"next request");
            let parsed = parse_head(&input, 40).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let httparse::Status::Complete((len, head)) = parsed else {
                return Err(TestCaseError::fail("partial"));
            };
            prop_assert_eq!(len, text.len());
            prop_assert_eq!(head.len, text.len());
            prop_assert_eq!(head.method, method);
            prop_assert_eq!(head.target, target);
            prop_assert_eq!(head.minor_version, minor);
            prop_assert_eq!(head.headers, headers.into_iter().collect::<Headers>());
            // Every prefix is incomplete, never an error.
            for cut in 0..text.len() {
                prop_assert!(matches!(
                    parse_head(&input[..cut], 40),
                    Ok(httparse::Status::Partial)
                ));
            }
        }
    }
}
