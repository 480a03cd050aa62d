//! Process-unique ids: request ids for logs and `X-Request-ID`, and the ids of OpenAI-style
//! completions (`chatcmpl-…`). One generator, so two ids never collide within a process.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A new id: 16 lowercase hex digits, unique within the process (a counter) and hard to guess
/// across processes (mixed with the clock), as logs and client-visible ids need.
pub(crate) fn new_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // SplitMix64 of time and a counter: a bijection of the counter for a fixed time, so ids made
    // in the same nanosecond still differ.
    let mut z = nanos
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    format!("{:016x}", z ^ (z >> 31))
}

/// The id of a request: the client's `X-Request-ID` when it is sane (1–128 characters of
/// `[A-Za-z0-9-_.:]`, so it cannot forge log lines), else a new one.
pub(crate) fn request_id(given: Option<&str>) -> String {
    if let Some(id) = given {
        let id = id.trim();
        let sane = |b: u8| b.is_ascii_alphanumeric() || b"-_.:".contains(&b);
        if !id.is_empty() && id.len() <= 128 && id.bytes().all(sane) {
            return id.to_string();
        }
    }
    new_id()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_hex() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| new_id()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids
            .iter()
            .all(|id| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())));
    }

    #[test]
    fn a_sane_client_id_is_kept_and_a_forged_one_replaced() {
        assert_eq!(request_id(Some(" abc-1.2:3_x ")), "abc-1.2:3_x");
        let forged = request_id(Some("a\nb"));
        assert_ne!(forged, "a\nb");
        assert_eq!(forged.len(), 16);
        assert_eq!(request_id(Some(&"x".repeat(129))).len(), 16);
    }
}
