//! The connections to one upstream: ureq agents, each with its own pool of idle connections,
//! and a resolver that does not start a thread per call.
//!
//! Two costs of ureq 3 with hundreds of calls in flight, measured (see docs/design.md's
//! decisions), and what is done about them:
//! - its pool is one list under one lock, scanned whole (twice) on every call, so its cost
//!   grows with the idle connections kept: the connections are split over [`SHARDS`] agents,
//!   a thread always using the same one (its connections stay its own, warm);
//! - it resolves the host on every call, before looking in the pool, and with a timeout set it
//!   does so on a new thread: an IP address is taken as it is, a name is resolved at most once
//!   per [`RESOLVED_FOR`].

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// Agents per upstream.
const SHARDS: usize = 32;
/// Idle connections each agent keeps: 1,024 per upstream in all, enough for 256 requests
/// making 3 calls each to one upstream to find a connection ready.
const IDLE_PER_SHARD: usize = 32;
/// ureq's buffers per connection, in and out (its default is 128 KiB each): an upstream
/// answer larger than this is read in several system calls, not refused.
const BUFFER_BYTES: usize = 16 * 1024;
/// How long a resolved host name is used before it is resolved again.
const RESOLVED_FOR: Duration = Duration::from_secs(5);

/// ureq agents for one upstream; cheap to share.
pub(crate) struct Connections {
    agents: Vec<ureq::Agent>,
}

impl Connections {
    /// Agents whose every call is bounded by `connect` to connect and `timeout` in all.
    pub(crate) fn new(connect: Duration, timeout: Duration) -> Connections {
        let resolver = Arc::new(CachingResolver::default());
        let agents = (0..SHARDS)
            .map(|_| {
                let config = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_connect(Some(connect))
                    .timeout_global(Some(timeout))
                    .max_idle_connections(IDLE_PER_SHARD)
                    .max_idle_connections_per_host(IDLE_PER_SHARD)
                    .input_buffer_size(BUFFER_BYTES)
                    .output_buffer_size(BUFFER_BYTES)
                    .build();
                ureq::Agent::with_parts(
                    config,
                    DefaultConnector::default(),
                    SharedResolver(Arc::clone(&resolver)),
                )
            })
            .collect();
        Connections { agents }
    }

    /// The calling thread's agent.
    pub(crate) fn agent(&self) -> &ureq::Agent {
        thread_local! {
            static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
        }
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let shard = SHARD.with(|shard| {
            if shard.get() == usize::MAX {
                shard.set(NEXT.fetch_add(1, Ordering::Relaxed));
            }
            shard.get()
        });
        &self.agents[shard % self.agents.len()]
    }
}

/// IP addresses as they are; names through ureq's resolver, remembered for RESOLVED_FOR.
#[derive(Debug, Default)]
struct CachingResolver {
    last: Mutex<Option<(String, Instant, Vec<SocketAddr>)>>,
}

#[derive(Debug)]
struct SharedResolver(Arc<CachingResolver>);

impl Resolver for SharedResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let host = uri.host().unwrap_or_default();
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some("https") => 443,
            _ => 80,
        });
        let mut addrs = self.empty();
        if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse() {
            addrs.push(SocketAddr::new(ip, port));
            return Ok(addrs);
        }
        let key = format!("{host}:{port}");
        let cached = self.0.last.lock().ok().and_then(|last| match &*last {
            Some((k, at, found)) if *k == key && at.elapsed() < RESOLVED_FOR => Some(found.clone()),
            _ => None,
        });
        let found = match cached {
            Some(found) => found,
            None => {
                let found: Vec<SocketAddr> = DefaultResolver::default()
                    .resolve(uri, config, timeout)?
                    .iter()
                    .copied()
                    .collect();
                if let Ok(mut last) = self.0.last.lock() {
                    *last = Some((key, Instant::now(), found.clone()));
                }
                found
            }
        };
        for addr in found {
            addrs.push(addr);
        }
        Ok(addrs)
    }
}
