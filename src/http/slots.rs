//! Connection slots: which connections may be open, and which gives way when all are taken.
//!
//! Each open connection holds a slot (and a thread). Slots cannot be hoarded by silence:
//! - `max_connections` regular slots; when all are taken, a new connection takes the slot of
//!   the connection idle longest (one that has sent nothing yet, or waits between requests),
//!   which is closed at once. A connection busy with a request is never taken.
//! - When none is idle, the newcomer takes the slot of a connection still sending its request
//!   head: the oldest head of the network (IPv4 /24, IPv6 /64) that has the most heads in
//!   progress. Heads sent slowly from many addresses cannot hold every slot: a normal client
//!   sends its head in one packet, so the slowest and the most numerous give way first.
//! - When none is idle or sending a head, the newcomer gets one of [`RESERVED_SLOTS`], which
//!   serve only the health probes (the settings' `public_paths`), one request each; past
//!   those, 503 at once.
//! - One client address may hold at most `max_connections_per_ip` slots (IPv6 counted by /64),
//!   unless it is a trusted proxy, whose connections carry many clients.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::TrustedProxies;
use crate::Error;

/// Connections beyond `max_connections` that answer only the health probes.
pub(crate) const RESERVED_SLOTS: usize = 16;

/// The open connections and the rules for admitting one more.
pub(crate) struct Slots {
    table: Mutex<Table>,
    epoch: Instant,
    max_regular: usize,
    /// 0: no cap.
    max_per_client: usize,
    trusted: TrustedProxies,
}

#[derive(Default)]
struct Table {
    open: HashMap<u64, Arc<Slot>>,
    regular: usize,
    reserved: usize,
    /// Open connections per capped client address; an address leaves the map at 0.
    per_client: HashMap<IpAddr, usize>,
    next_id: u64,
}

/// One open connection's slot.
pub(crate) struct Slot {
    id: u64,
    /// A clone of the connection's socket, to close it from another thread.
    socket: TcpStream,
    /// Milliseconds since the table's epoch, plus one, since the connection became idle
    /// (waiting for a request's first byte); 0 while a request is read, handled or answered.
    idle_since: AtomicU64,
    /// The same, since a request head started to arrive; 0 when no head is being read.
    head_since: AtomicU64,
    /// The peer's network (IPv4 /24, IPv6 /64), whose heads in progress are counted together.
    network: Option<IpAddr>,
    epoch: Instant,
    reserved: bool,
    /// The address counted against the per-client cap; none when the cap does not apply.
    client: Option<IpAddr>,
}

impl Slot {
    /// Marks the connection idle: waiting for a request's first byte.
    pub(crate) fn set_idle(&self) {
        self.head_since.store(0, Ordering::SeqCst);
        self.idle_since.store(self.now(), Ordering::SeqCst);
    }

    /// Marks the connection as sending a request head: its first byte has come.
    pub(crate) fn set_reading_head(&self) {
        self.head_since.store(self.now(), Ordering::SeqCst);
        self.idle_since.store(0, Ordering::SeqCst);
    }

    /// Marks the connection busy: a request's body is being read, or it is handled or answered.
    pub(crate) fn set_busy(&self) {
        self.idle_since.store(0, Ordering::SeqCst);
        self.head_since.store(0, Ordering::SeqCst);
    }

    /// Milliseconds since the epoch, plus one (0 means "not in that state").
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    fn is_idle(&self) -> bool {
        self.idle_since.load(Ordering::SeqCst) != 0
    }

    /// Whether this is a reserved slot, which serves the health probes only.
    pub(crate) fn is_reserved(&self) -> bool {
        self.reserved
    }
}

impl Slots {
    /// `max_regular` regular slots (plus the reserved ones); at most `max_per_client` per
    /// client address not in `trusted` (0: no cap).
    pub(crate) fn new(max_regular: usize, max_per_client: usize, trusted: TrustedProxies) -> Slots {
        Slots {
            table: Mutex::new(Table::default()),
            epoch: Instant::now(),
            max_regular,
            max_per_client,
            trusted,
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection, marked idle: a free regular one, else the slot of the
    /// connection idle longest (closed now), else a free reserved one. The error (503) says
    /// why there is none.
    pub(crate) fn admit(&self, socket: &TcpStream) -> Result<Arc<Slot>, Error> {
        let handle = socket
            .try_clone()
            .map_err(|_| Error::overloaded("cannot take the connection"))?;
        let peer = socket.peer_addr().ok().map(|peer| peer.ip().to_canonical());
        let client = peer
            .filter(|&ip| self.max_per_client > 0 && !self.trusted.contains(ip))
            .map(client_key);
        let network = peer.map(network_key);
        let mut table = self.table();
        if let Some(ip) = client {
            if table.per_client.get(&ip).copied().unwrap_or(0) >= self.max_per_client {
                return Err(Error::overloaded(format!(
                    "too many open connections from one address (limit {})",
                    self.max_per_client
                )));
            }
        }
        let reserved = if table.regular < self.max_regular {
            false
        } else if let Some(evicted) = table.evict_idlest().or_else(|| table.evict_slowest_head()) {
            evicted.reserved
        } else if table.reserved < RESERVED_SLOTS {
            true
        } else {
            return Err(Error::overloaded("too many open connections"));
        };
        table.next_id += 1;
        let slot = Arc::new(Slot {
            id: table.next_id,
            socket: handle,
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            network,
            epoch: self.epoch,
            reserved,
            client,
        });
        slot.set_idle();
        table.insert(Arc::clone(&slot));
        Ok(slot)
    }

    /// Frees a closed connection's slot (unless an eviction already did).
    pub(crate) fn release(&self, slot: &Slot) {
        self.table().remove(slot.id);
    }

    /// Stops reading on every idle connection, so its thread ends (a graceful shutdown).
    pub(crate) fn close_idle(&self) {
        for slot in self.table().open.values().filter(|slot| slot.is_idle()) {
            let _ = slot.socket.shutdown(Shutdown::Read);
        }
    }

    /// Closes every connection (the end of a drain).
    pub(crate) fn close_all(&self) {
        for slot in self.table().open.values() {
            let _ = slot.socket.shutdown(Shutdown::Both);
        }
    }
}

impl Table {
    fn insert(&mut self, slot: Arc<Slot>) {
        *self.count(slot.reserved) += 1;
        if let Some(ip) = slot.client {
            *self.per_client.entry(ip).or_insert(0) += 1;
        }
        self.open.insert(slot.id, slot);
    }

    fn remove(&mut self, id: u64) -> Option<Arc<Slot>> {
        let slot = self.open.remove(&id)?;
        *self.count(slot.reserved) -= 1;
        if let Some(ip) = slot.client {
            if let Some(n) = self.per_client.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    self.per_client.remove(&ip);
                }
            }
        }
        Some(slot)
    }

    fn count(&mut self, reserved: bool) -> &mut usize {
        match reserved {
            true => &mut self.reserved,
            false => &mut self.regular,
        }
    }

    /// Closes the connection idle longest (the oldest of those idle since the same
    /// millisecond), if any, and frees its slot at once.
    fn evict_idlest(&mut self) -> Option<Arc<Slot>> {
        let id = self
            .open
            .values()
            .filter(|slot| slot.is_idle())
            .min_by_key(|slot| (slot.idle_since.load(Ordering::SeqCst), slot.id))?
            .id;
        let slot = self.remove(id)?;
        let _ = slot.socket.shutdown(Shutdown::Both);
        Some(slot)
    }
}

impl Table {
    /// Closes the connection that has been sending its head longest, among those of the
    /// network with the most heads in progress, if any connection is sending one; frees its slot.
    fn evict_slowest_head(&mut self) -> Option<Arc<Slot>> {
        let mut heads: HashMap<Option<IpAddr>, (usize, u64, u64)> = HashMap::new();
        for slot in self.open.values() {
            let since = slot.head_since.load(Ordering::SeqCst);
            if since == 0 {
                continue;
            }
            let entry = heads.entry(slot.network).or_insert((0, u64::MAX, 0));
            entry.0 += 1;
            if (since, slot.id) < (entry.1, entry.2) {
                (entry.1, entry.2) = (since, slot.id);
            }
        }
        // The most heads; among equals, the network whose oldest head is oldest.
        let (_, _, id) = heads
            .into_values()
            .max_by_key(|&(count, since, id)| (count, std::cmp::Reverse((since, id))))?;
        let slot = self.remove(id)?;
        let _ = slot.socket.shutdown(Shutdown::Both);
        Some(slot)
    }
}

/// The network a peer's heads in progress are counted under: IPv4 by /24, IPv6 by /64.
fn network_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) & 0xffff_ff00).into()),
        IpAddr::V6(_) => client_key(ip),
    }
}

/// The address a client is counted under: IPv4 as is, IPv6 by its /64 (one subscriber's
/// network, where an attacker has 2^64 addresses).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(network))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_counted_by_their_64_bit_prefix() {
        let key = |s: &str| client_key(s.parse().expect("an address"));
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::2"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("192.0.2.7").to_string(), "192.0.2.7");
        let net = |s: &str| network_key(s.parse().expect("an address")).to_string();
        assert_eq!(net("127.0.3.2"), "127.0.3.0");
        assert_eq!(net("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::");
    }
}
