//! Who the client really is behind a reverse proxy: `X-Forwarded-*` and RFC 7239 `Forwarded`,
//! trusted only from configured proxy addresses.
//!
//! One precedence rule, the one nginx's usual configuration (and `deploy/nginx/`) implies:
//! nginx writes `X-Forwarded-For` (appending the peer with `$proxy_add_x_forwarded_for`),
//! `X-Forwarded-Proto`, `-Host` and `-Prefix`, and passes any `Forwarded` header the client
//! sent through untouched. So when a request carries `X-Forwarded-For`, the `X-Forwarded-*`
//! headers are the whole truth and `Forwarded` is ignored, field by field as well (a client's
//! `Forwarded: proto=https` cannot stand in for a missing `X-Forwarded-Proto`). Only a request
//! without `X-Forwarded-For`, from a proxy that speaks RFC 7239 alone, is read from
//! `Forwarded` (such a proxy must drop the client's `X-Forwarded-*`).

use std::net::{IpAddr, SocketAddr};

use crate::Headers;

/// Addresses whose forwarding headers are believed: single IPs, CIDR ranges, or `*` (any peer:
/// dangerous unless the server is reachable only through the proxy).
///
/// # Example
/// ```
/// use tinyserve::http::TrustedProxies;
/// let trusted = TrustedProxies::parse("127.0.0.1, ::1, 10.0.0.0/8")?;
/// assert!(trusted.contains("10.1.2.3".parse().unwrap()));
/// assert!(!trusted.contains("192.168.0.1".parse().unwrap()));
/// # Ok::<(), tinyserve::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedProxies {
    any: bool,
    nets: Vec<(IpAddr, u8)>,
}

impl Default for TrustedProxies {
    /// Loopback only: a proxy on the same machine.
    fn default() -> TrustedProxies {
        TrustedProxies {
            any: false,
            nets: vec![
                (IpAddr::from([127, 0, 0, 1]), 32),
                (IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]), 128),
            ],
        }
    }
}

impl TrustedProxies {
    /// Trusts nobody: forwarding headers are always ignored.
    pub fn none() -> TrustedProxies {
        TrustedProxies {
            any: false,
            nets: Vec::new(),
        }
    }

    /// Parses a comma-separated list of IPs, CIDRs (`10.0.0.0/8`) or `*`.
    pub fn parse(list: &str) -> crate::Result<TrustedProxies> {
        let mut trusted = TrustedProxies::none();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item == "*" {
                trusted.any = true;
                continue;
            }
            let bad =
                || crate::Error::bad_request(format!("not an IP address or CIDR range: {item:?}"));
            let (ip, bits) = match item.split_once('/') {
                Some((ip, bits)) => (ip, Some(bits)),
                None => (item, None),
            };
            let ip: IpAddr = ip.parse().map_err(|_| bad())?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                Some(bits) => bits
                    .parse::<u8>()
                    .ok()
                    .filter(|&b| b <= max)
                    .ok_or_else(bad)?,
                None => max,
            };
            trusted.nets.push((ip, bits));
        }
        Ok(trusted)
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.any || self.nets.iter().any(|&(net, bits)| in_net(ip, net, bits))
    }
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// Where a request came from, after believing what trusted proxies say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    pub(crate) client: Option<IpAddr>,
    pub(crate) scheme: String,
    pub(crate) host: Option<String>,
    pub(crate) prefix: Option<String>,
}

impl Origin {
    /// Resolves the client, scheme, host and path prefix of a request from `peer`.
    pub(crate) fn resolve(
        peer: Option<SocketAddr>,
        headers: &Headers,
        trusted: &TrustedProxies,
    ) -> Origin {
        let header = |name: &str| headers.get(name).map(str::trim);
        // Repeated lines of a list header are one list, in order (RFC 9110 section 5.3): a client
        // must not hide in a second `X-Forwarded-For` line what a proxy appended to the first.
        let list = |name: &str| -> Option<String> {
            let mut lines = headers.get_all(name).peekable();
            lines.peek()?;
            Some(lines.map(str::trim).collect::<Vec<_>>().join(", "))
        };
        let mut origin = Origin {
            client: peer.map(|p| p.ip()),
            scheme: "http".to_string(),
            host: header("Host").map(str::to_string),
            prefix: None,
        };
        let Some(peer) = peer.filter(|p| trusted.contains(p.ip())) else {
            return origin;
        };
        let x_forwarded_for = list("X-Forwarded-For");
        let forwarded = match x_forwarded_for {
            Some(_) => Vec::new(),
            None => list("Forwarded")
                .map(|value| parse_forwarded(&value))
                .unwrap_or_default(),
        };
        let hops: Vec<IpAddr> = match &x_forwarded_for {
            Some(list) => list.split(',').filter_map(|h| parse_ip(h.trim())).collect(),
            None => forwarded.iter().filter_map(|e| e.for_ip).collect(),
        };
        // The right-most hop that is not a trusted proxy is the client; if all are trusted, the first.
        let mut client = peer.ip();
        for hop in hops.iter().rev() {
            client = *hop;
            if !trusted.contains(*hop) {
                break;
            }
        }
        origin.client = Some(client);
        // The nearest proxy that says anything about the scheme or host is believed.
        let proto = forwarded.iter().rev().find_map(|e| e.proto.clone());
        if let Some(proto) = proto.or_else(|| list("X-Forwarded-Proto").as_deref().map(last_item)) {
            if proto.eq_ignore_ascii_case("https") || proto.eq_ignore_ascii_case("http") {
                origin.scheme = proto.to_ascii_lowercase();
            }
        }
        let host = forwarded.iter().rev().find_map(|e| e.host.clone());
        if let Some(host) = host.or_else(|| list("X-Forwarded-Host").as_deref().map(last_item)) {
            if is_host(&host) {
                origin.host = Some(host);
            }
        }
        if let Some(prefix) = list("X-Forwarded-Prefix").as_deref().map(last_item) {
            if is_prefix(&prefix) {
                origin.prefix = Some(prefix.trim_end_matches('/').to_string());
            }
        }
        origin
    }
}

fn last_item(value: &str) -> String {
    value.rsplit(',').next().unwrap_or("").trim().to_string()
}

/// A host header value: name or address, optional port; nothing that could inject markup.
fn is_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
}

/// A path prefix such as `/api/v1`.
pub(crate) fn is_prefix(prefix: &str) -> bool {
    prefix.starts_with('/')
        && prefix.len() <= 256
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-._~".contains(&b))
}

#[derive(Debug, Default)]
struct ForwardedElement {
    for_ip: Option<IpAddr>,
    proto: Option<String>,
    host: Option<String>,
}

/// RFC 7239: `for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8::1]:4711"`.
fn parse_forwarded(value: &str) -> Vec<ForwardedElement> {
    value
        .split(',')
        .map(|element| {
            let mut parsed = ForwardedElement::default();
            for pair in element.split(';') {
                let Some((key, val)) = pair.split_once('=') else {
                    continue;
                };
                let val = val.trim().trim_matches('"');
                match key.trim().to_ascii_lowercase().as_str() {
                    "for" => parsed.for_ip = parse_ip(val),
                    "proto" => parsed.proto = Some(val.to_string()),
                    "host" => parsed.host = Some(val.to_string()),
                    _ => {}
                }
            }
            parsed
        })
        .collect()
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]:80`.
fn parse_ip(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            text.strip_prefix('[')
                .and_then(|t| t.split(']').next())
                .and_then(|t| t.parse().ok())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(list: &[(&str, &str)]) -> Headers {
        list.iter().copied().collect()
    }

    fn peer(ip: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(
            ip.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
            5000,
        ))
    }

    #[test]
    fn untrusted_peers_cannot_spoof() {
        let h = headers(&[
            ("X-Forwarded-For", "6.6.6.6"),
            ("X-Forwarded-Proto", "https"),
        ]);
        let origin = Origin::resolve(peer("203.0.113.9"), &h, &TrustedProxies::default());
        assert_eq!(origin.client, "203.0.113.9".parse().ok());
        assert_eq!(origin.scheme, "http");
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let trusted = TrustedProxies::parse("127.0.0.1,10.0.0.0/8")
            .unwrap_or_else(|_| TrustedProxies::none());
        let h = headers(&[
            ("X-Forwarded-For", "6.6.6.6, 198.51.100.7, 10.1.1.1"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Prefix", "/api/"),
        ]);
        let origin = Origin::resolve(peer("127.0.0.1"), &h, &trusted);
        assert_eq!(origin.client, "198.51.100.7".parse().ok());
        assert_eq!(origin.scheme, "https");
        assert_eq!(origin.prefix.as_deref(), Some("/api"));
    }

    #[test]
    fn rfc_7239_forwarded_is_understood() {
        let h = headers(&[(
            "Forwarded",
            "for=198.51.100.7;proto=https;host=example.com, for=\"[2001:db8::1]:4711\"",
        )]);
        let origin = Origin::resolve(peer("::1"), &h, &TrustedProxies::default());
        assert_eq!(origin.client, "2001:db8::1".parse().ok());
        assert_eq!(origin.host.as_deref(), Some("example.com"));
    }

    #[test]
    fn with_x_forwarded_for_a_client_forwarded_header_is_ignored() {
        // What nginx sends when the client added its own `Forwarded`: nginx sets the
        // X-Forwarded-* headers and passes `Forwarded` through.
        let h = headers(&[
            ("X-Forwarded-For", "203.0.113.7"),
            ("Forwarded", "for=6.6.6.6;proto=https;host=evil.example"),
            ("Host", "models.example.com"),
        ]);
        let origin = Origin::resolve(peer("127.0.0.1"), &h, &TrustedProxies::default());
        assert_eq!(origin.client, "203.0.113.7".parse().ok());
        assert_eq!(origin.scheme, "http");
        assert_eq!(origin.host.as_deref(), Some("models.example.com"));
    }

    #[test]
    fn repeated_lines_are_one_list_read_from_the_right() {
        // The client sent the first line itself; a proxy that adds a line of its own rather
        // than append to the first wrote the second.
        let trusted = TrustedProxies::default();
        let mut h = Headers::new();
        h.append("X-Forwarded-For", "6.6.6.6");
        h.append("X-Forwarded-For", "203.0.113.7");
        let origin = Origin::resolve(peer("127.0.0.1"), &h, &trusted);
        assert_eq!(origin.client, "203.0.113.7".parse().ok());
        let mut h = Headers::new();
        h.append("Forwarded", "for=6.6.6.6;proto=http");
        h.append("Forwarded", "for=198.51.100.7;proto=https");
        let origin = Origin::resolve(peer("127.0.0.1"), &h, &trusted);
        assert_eq!(origin.client, "198.51.100.7".parse().ok());
        assert_eq!(origin.scheme, "https");
    }

    #[test]
    fn cidrs_and_star() {
        let t = TrustedProxies::parse("192.168.0.0/16").unwrap_or_else(|_| TrustedProxies::none());
        assert!(t.contains("192.168.4.4".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))));
        assert!(!t.contains("192.169.0.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))));
        assert!(TrustedProxies::parse("*").is_ok_and(|t| t.contains(IpAddr::from([8, 8, 8, 8]))));
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
    }
}
