//! Arbitrary bytes into the server's frame reader: every connection ends (a close frame with a
//! protocol code, or the end of stream), no handler panics (that would close with 1011), a
//! frame announcing more than the limit is refused before its payload, and the server goes on
//! echoing.

use std::io::{Read, Write};
use std::net::Shutdown;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tinyserve::Settings;

use super::{assert_echo, echo_app, exchange, open, upgrade_request};
use crate::support::TestServer;

/// The frames the server wrote (it does not mask): (opcode, payload), until the bytes end.
fn server_frames(mut raw: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while raw.len() >= 2 {
        let (len, start) = match raw[1] & 0x7f {
            126 if raw.len() >= 4 => (usize::from(u16::from_be_bytes([raw[2], raw[3]])), 4),
            127 if raw.len() >= 10 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&raw[2..10]);
                (
                    usize::try_from(u64::from_be_bytes(n)).unwrap_or(usize::MAX),
                    10,
                )
            }
            126 | 127 => break,
            n => (usize::from(n), 2),
        };
        if raw.len() - start < len {
            break;
        }
        frames.push((raw[0] & 0x0f, raw[start..start + len].to_vec()));
        raw = &raw[start + len..];
    }
    frames
}

/// A client frame: header bits as given, masked with a fixed key when `masked`.
fn frame(first: u8, masked: bool, length: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mask_bit = if masked { 0x80 } else { 0 };
    match length {
        0..=125 => out.push(mask_bit | length as u8),
        126..=0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(length as u16).to_be_bytes());
        }
        _ => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&length.to_be_bytes());
        }
    }
    let key = [0x37u8, 0xfa, 0x21, 0x3d];
    if masked {
        out.extend_from_slice(&key);
    }
    out.extend(
        payload
            .iter()
            .zip(key.iter().cycle())
            .map(|(b, k)| match masked {
                true => b ^ k,
                false => *b,
            }),
    );
    out
}

/// Frames with arbitrary header bits, opcodes, lengths (the announced one may lie) and
/// payloads; or plain arbitrary bytes.
fn client_bytes() -> impl Strategy<Value = Vec<u8>> {
    let one = (
        any::<u8>(),
        any::<bool>(),
        prop_oneof![0u64..140, 120u64..70_000, any::<u64>()],
        proptest::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(first, masked, length, payload)| frame(first, masked, length, &payload));
    prop_oneof![
        proptest::collection::vec(one, 1..6).prop_map(|frames| frames.concat()),
        proptest::collection::vec(any::<u8>(), 0..2048),
    ]
}

#[test]
fn arbitrary_bytes_end_the_socket_cleanly_and_the_server_keeps_echoing() {
    let server = TestServer::start(echo_app(Settings::default()));
    let addr = server.addr;
    let mut runner = TestRunner::new(Config {
        cases: 200,
        failure_persistence: None,
        ..Config::default()
    });
    // Close codes seen over all cases: the cases reach the frame reader's refusals.
    let seen = std::sync::Mutex::new(std::collections::BTreeSet::new());
    let result = runner.run(&client_bytes(), |bytes| {
        let (head, mut socket, mut raw) =
            exchange(addr, upgrade_request("/ws/echo", "").as_bytes());
        prop_assert!(head.starts_with("HTTP/1.1 101 "), "{}", head);
        // The server may close while the bytes are still going out.
        let _ = socket.write_all(&bytes);
        let _ = socket.shutdown(Shutdown::Write);
        let mut chunk = [0u8; 8192];
        loop {
            match socket.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&chunk[..n]),
                // A reset after the server closed with our bytes unread is an end too.
                Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(err) => return Err(TestCaseError::fail(format!("no end: {err}"))),
            }
        }
        for (opcode, payload) in server_frames(&raw) {
            if opcode == 0x8 && payload.len() >= 2 {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                seen.lock().map(|mut s| s.insert(code)).unwrap_or_default();
                prop_assert!(
                    [1000, 1002, 1007, 1008, 1009].contains(&code) || (3000..5000).contains(&code),
                    "closed with {} ({})",
                    code,
                    String::from_utf8_lossy(&payload[2..])
                );
            }
        }
        Ok(())
    });
    if let Err(err) = result {
        panic!("{err}");
    }
    let seen = seen.into_inner().unwrap_or_default();
    assert!(
        seen.contains(&1002) && seen.contains(&1009),
        "protocol errors and oversized frames among the cases: {seen:?}"
    );
    let mut client = open(addr, "/ws/echo");
    assert_echo(&mut client, "still echoing");
}

#[test]
fn a_frame_announcing_more_than_the_limit_is_refused_before_its_payload() {
    let server = TestServer::start(echo_app(Settings::default()));
    for length in [(1 << 20) + 1, 1 << 40, u64::MAX >> 1] {
        let (head, mut socket, mut raw) =
            exchange(server.addr, upgrade_request("/ws/echo", "").as_bytes());
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        // Only the header: the payload never comes, so a close proves it was not awaited.
        socket
            .write_all(&frame(0x82, true, length, &[]))
            .expect("write the header");
        let mut chunk = [0u8; 256];
        while server_frames(&raw).is_empty() {
            let n = socket.read(&mut chunk).expect("read the close frame");
            assert!(n > 0, "closed without a close frame");
            raw.extend_from_slice(&chunk[..n]);
        }
        let (opcode, payload) = &server_frames(&raw)[0];
        assert_eq!(*opcode, 0x8, "a close frame");
        assert_eq!(
            &payload[..2],
            &1009u16.to_be_bytes(),
            "{length}: {payload:?}"
        );
    }
}

#[test]
fn rfc_6455_violations_close_with_their_codes() {
    let server = TestServer::start(echo_app(Settings::default()));
    let cases: [(&str, Vec<u8>, u16); 6] = [
        (
            "text that is not UTF-8",
            frame(0x81, true, 2, &[0xff, 0xfe]),
            1007,
        ),
        ("an unmasked frame", frame(0x81, false, 2, b"hi"), 1002),
        ("a fragmented ping", frame(0x09, true, 1, b"p"), 1002),
        ("a reserved bit", frame(0xc1, true, 2, b"hi"), 1002),
        (
            "a continuation with nothing to continue",
            frame(0x80, true, 1, b"x"),
            1002,
        ),
        (
            "a ping over 125 bytes",
            frame(0x89, true, 126, &[0; 126]),
            1002,
        ),
    ];
    for (what, bytes, code) in cases {
        let (head, mut socket, mut raw) =
            exchange(server.addr, upgrade_request("/ws/echo", "").as_bytes());
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        socket.write_all(&bytes).expect("write the frame");
        let mut chunk = [0u8; 256];
        while server_frames(&raw).is_empty() {
            let n = socket.read(&mut chunk).expect("read the close frame");
            assert!(n > 0, "{what}: closed without a close frame");
            raw.extend_from_slice(&chunk[..n]);
        }
        let (opcode, payload) = &server_frames(&raw)[0];
        assert_eq!(*opcode, 0x8, "{what}: a close frame");
        assert_eq!(&payload[..2], &code.to_be_bytes(), "{what}: {payload:?}");
    }
    let mut client = open(server.addr, "/ws/echo");
    assert_echo(&mut client, "still echoing");
}
