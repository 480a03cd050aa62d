//! `poll-probe`: a measurement, not a design to copy. The same `GET /fanout` as `serve` (3 GETs
//! to the mock upstream), but the handler's thread makes all three itself, multiplexed with
//! poll(2) on pooled keep-alive connections: no call threads, no hand-offs. It understands only
//! what the mock answers (a head and a Content-Length body) and panics on anything else. It
//! measures how little CPU a fan-out request can cost on blocking threads when the calls do not
//! each need a thread of their own (see the README's design decisions).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::Mutex;

use serde_json::{json, Value};
use tinyserve::{App, Json, Request, Settings};

use crate::{AnyResult, FANOUT_CALLS};

/// The length of the first complete response in `buf`, if there is one.
fn complete(buf: &[u8]) -> Option<(usize, usize)> {
    let head = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = std::str::from_utf8(&buf[..head]).ok()?.to_ascii_lowercase();
    let length: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())?;
    (buf.len() >= head + length).then_some((head, head + length))
}

pub fn serve(upstream: &str, port: u16) -> AnyResult<()> {
    let host = upstream.trim_start_matches("http://").to_string();
    let idle: &'static Mutex<Vec<TcpStream>> = Box::leak(Box::default());
    let mut settings = Settings::default();
    settings.workers = 512;
    let app = App::new()
        .with_settings(settings)
        .get("/fanout", move |_: &Request| {
            let mut conns: Vec<TcpStream> = {
                let mut idle = idle.lock().expect("pool");
                let at = idle.len().saturating_sub(FANOUT_CALLS);
                idle.split_off(at)
            };
            while conns.len() < FANOUT_CALLS {
                let conn = TcpStream::connect(&host).expect("connect");
                conn.set_nodelay(true).expect("nodelay");
                conns.push(conn);
            }
            for (i, conn) in conns.iter_mut().enumerate() {
                let head = format!("GET /item/{i} HTTP/1.1\r\nHost: {host}\r\n\r\n");
                conn.write_all(head.as_bytes()).expect("send");
            }
            let mut bufs: Vec<Vec<u8>> =
                (0..FANOUT_CALLS).map(|_| Vec::with_capacity(512)).collect();
            let mut items: Vec<Value> = vec![Value::Null; FANOUT_CALLS];
            let mut missing = FANOUT_CALLS;
            while missing > 0 {
                let mut fds: Vec<libc::pollfd> = conns
                    .iter()
                    .zip(&items)
                    .map(|(c, item)| libc::pollfd {
                        fd: if item.is_null() { c.as_raw_fd() } else { -1 },
                        events: libc::POLLIN,
                        revents: 0,
                    })
                    .collect();
                // SAFETY: `fds` is a valid array of FANOUT_CALLS pollfd structs.
                unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 5000) };
                for (i, fd) in fds.iter().enumerate() {
                    if fd.revents == 0 || fd.fd < 0 {
                        continue;
                    }
                    let mut chunk = [0u8; 4096];
                    let n = conns[i].read(&mut chunk).expect("read");
                    assert!(n > 0, "the upstream closed the connection");
                    bufs[i].extend_from_slice(&chunk[..n]);
                    if let Some((head, end)) = complete(&bufs[i]) {
                        items[i] = serde_json::from_slice(&bufs[i][head..end]).expect("json");
                        missing -= 1;
                    }
                }
            }
            idle.lock().expect("pool").extend(conns);
            Json(json!({ "items": items }))
        });
    let server = app.bind(("127.0.0.1", port))?;
    println!("listening on http://{}", server.addr());
    std::io::stdout().flush()?;
    server.join();
    Ok(())
}
