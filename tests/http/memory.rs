//! Memory: the process stays bounded under huge bodies and endless headers.

use std::io::Write;
use std::net::SocketAddr;
use std::thread;

use crate::support::wire::Conn;
use crate::support::{Reply, TestServer};

use super::{app, assert_serving, heavy, open};

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/self/status");
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .expect("VmRSS value in kB");
    kib * 1024
}

/// 20 hostile requests at once: 10 declare a 1 TB body, 10 send an endless header; each client
/// streams 8 MiB. Returns the RSS growth measured while all 20 connections are still open (so a
/// server buffering what it receives would be caught holding it), and the 20 replies.
fn hostile_round(addr: SocketAddr) -> (u64, Vec<Reply>) {
    const STREAMED: usize = 8 * 1024 * 1024;
    let before = rss_bytes();
    let writers: Vec<_> = (0..20)
        .map(|i| {
            thread::spawn(move || {
                let conn = open(addr);
                let mut stream = conn.writer();
                let head: &[u8] = if i % 2 == 0 {
                    b"POST /len HTTP/1.1\r\nHost: test\r\nContent-Length: 1000000000000\r\n\r\n"
                } else {
                    b"GET / HTTP/1.1\r\nHost: test\r\nX-Endless: "
                };
                let filler = [b'a'; 64 * 1024];
                // The server refuses early and closes: write errors are expected.
                if stream.write_all(head).is_ok() {
                    for _ in 0..STREAMED / filler.len() {
                        if stream.write_all(&filler).is_err() {
                            break;
                        }
                    }
                }
                conn
            })
        })
        .collect();
    let mut conns: Vec<Conn> = writers
        .into_iter()
        .map(|writer| writer.join().expect("hostile client"))
        .collect();
    let growth = rss_bytes().saturating_sub(before);
    let replies = conns.iter_mut().map(Conn::response).collect();
    (growth, replies)
}

#[test]
fn memory_stays_bounded_under_huge_bodies_and_headers() {
    let _heavy = heavy();
    let server = TestServer::start(app());
    assert_serving(&server);
    const LIMIT: u64 = 64 * 1024 * 1024;
    // Other test modules share this process: retry a noisy measurement. A server that buffers
    // what it receives grows by ~160 MiB on every round, so it fails all three.
    let mut growths = Vec::new();
    for _ in 0..3 {
        let (growth, replies) = hostile_round(server.addr);
        for (i, reply) in replies.iter().enumerate() {
            if i % 2 == 0 {
                reply.assert_error(413, "payload_too_large", "limit");
            } else {
                reply.assert_error(431, "headers_too_large", "limit");
            }
        }
        assert_serving(&server);
        growths.push(growth);
        if growth < LIMIT {
            break;
        }
    }
    let last = growths.last().copied().unwrap_or(u64::MAX);
    assert!(
        last < LIMIT,
        "RSS grew by {:?} MiB under 20 hostile requests",
        growths
            .iter()
            .map(|g| g / (1024 * 1024))
            .collect::<Vec<_>>()
    );
}
