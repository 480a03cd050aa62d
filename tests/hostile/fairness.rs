//! Issue #23, case 3: slow heads from many addresses in many networks cannot take every
//! connection slot. Eight addresses in eight /24 networks of 127.0.0.0/8 (all loopback on
//! Linux, none a trusted proxy) each hold 128 connections that send a request head a byte at a
//! time, reconnecting whenever the server closes one: the 1,024 regular slots. A client from a
//! ninth network still gets its requests answered.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::process::wait_until;
use crate::support::serve::ServeChild;

const PER_ADDRESS: usize = 128;
const ADDRESSES: u8 = 8;

/// A TCP connection from `source` to `server`, with a short timeout.
fn connect_from(source: Ipv4Addr, server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(IpAddr::V4(source), 0).into())?;
    socket.connect_timeout(&server.into(), Duration::from_secs(2))?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    Ok(stream)
}

/// One attacking address: opens its connections, starts a head on each, then sends a byte on
/// each every 300 ms, reopening those the server closed; `held` counts the open ones.
fn slow_heads(source: Ipv4Addr, server: SocketAddr, stop: &AtomicBool, held: &AtomicUsize) {
    let start = |_| {
        let mut socket = connect_from(source, server).ok()?;
        socket
            .write_all(b"GET /v2/models/iris HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .ok()?;
        Some(socket)
    };
    let mut sockets: Vec<Option<TcpStream>> = (0..PER_ADDRESS).map(start).collect();
    while !stop.load(Ordering::SeqCst) {
        for socket in &mut sockets {
            let alive = socket.as_mut().is_some_and(|s| s.write_all(b"a").is_ok());
            if !alive {
                *socket = start(0);
            }
        }
        held.store(sockets.iter().flatten().count(), Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `GET /v2/models/iris` from `source`; the status, if answered within 2 s.
fn valid_request(source: Ipv4Addr, server: SocketAddr) -> Option<u16> {
    let started = Instant::now();
    let mut socket = connect_from(source, server).ok()?;
    socket
        .write_all(b"GET /v2/models/iris HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut socket, &mut answer);
    let status = String::from_utf8_lossy(&answer)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())?;
    (started.elapsed() < Duration::from_secs(2)).then_some(status)
}

#[test]
fn slow_heads_from_eight_networks_leave_a_ninth_served() {
    let mut server = ServeChild::start(&[]);
    let addr = server.addr;
    let stop = AtomicBool::new(false);
    let held: Vec<AtomicUsize> = (0..ADDRESSES).map(|_| AtomicUsize::new(0)).collect();
    let statuses = std::thread::scope(|scope| {
        for (i, held) in held.iter().enumerate() {
            let source = Ipv4Addr::new(127, 0, i as u8 + 1, 2);
            let stop = &stop;
            scope.spawn(move || slow_heads(source, addr, stop, held));
        }
        let full = wait_until(Duration::from_secs(60), || {
            held.iter().map(|h| h.load(Ordering::SeqCst)).sum::<usize>() >= 1000
        });
        let statuses: Vec<Option<u16>> = (0..25)
            .map(|_| {
                let status = valid_request(Ipv4Addr::new(127, 0, 100, 1), addr);
                std::thread::sleep(Duration::from_millis(100));
                status
            })
            .collect();
        let holding: usize = held.iter().map(|h| h.load(Ordering::SeqCst)).sum();
        stop.store(true, Ordering::SeqCst);
        assert!(full, "the attack never held 1,000 connections: {holding}");
        // The attack was still on while the valid client was served.
        assert!(
            holding >= 1000,
            "the attacker held only {holding} connections"
        );
        statuses
    });
    // Before: 0 of 25 (503 from a reserved slot, which serves only health probes).
    let answered = statuses.iter().filter(|s| **s == Some(200)).count();
    assert!(answered >= 24, "{answered} of 25 answered: {statuses:?}");
    assert!(server.is_running(), "the server died: {}", server.stderr());
}
