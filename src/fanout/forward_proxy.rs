//! Forward proxies, as curl and Python's requests read them from the environment:
//! `HTTPS_PROXY` for `https://` upstreams, `HTTP_PROXY` for `http://` ones (each in upper or
//! lower case, lower case first), `NO_PROXY` for the hosts to reach directly. Every call goes
//! through the proxy in an HTTP `CONNECT` tunnel (as ureq does), with the credentials of the
//! proxy's URL as `Proxy-Authorization: Basic`. As with curl, a loopback host goes through the
//! proxy unless `NO_PROXY` names it.

use std::net::IpAddr;

use base64::Engine;

use crate::{Error, Result};

/// A forward proxy: `http://[user[:password]@]host[:port]` (port 1080 by default, as curl).
///
/// # Example
/// ```
/// use tinyserve::fanout::Proxy;
/// let proxy = Proxy::new("http://alice:s3cret@proxy.internal:3128")?;
/// assert_eq!(proxy.to_string(), "proxy.internal:3128");
/// # Ok::<(), tinyserve::Error>(())
/// ```
#[derive(Clone)]
pub struct Proxy {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `user:password`, base64-encoded.
    pub(crate) credentials: Option<String>,
    /// `host:port`, for messages: never the credentials.
    pub(crate) shown: String,
}

impl std::fmt::Display for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("at", &self.shown)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// The proxy at `url`; a scheme other than `http://` (or none) is an error.
    pub fn new(url: &str) -> Result<Proxy> {
        let bad = |why: &str| Error::bad_request(format!("proxy URL: {why}"));
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => {
                return Err(bad(&format!(
                    "{scheme}:// proxies are not supported, only http://"
                )))
            }
            None => url,
        };
        let rest = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, rest),
        };
        let (host, port) =
            split_host_port(hostport, 1080).ok_or_else(|| bad("expected http://host:port"))?;
        let credentials = userinfo.map(|userinfo| {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            let plain = format!("{}:{}", percent_decode(user), percent_decode(password));
            base64::engine::general_purpose::STANDARD.encode(plain)
        });
        let shown = match host.contains(':') {
            true => format!("[{host}]:{port}"),
            false => format!("{host}:{port}"),
        };
        Ok(Proxy {
            host,
            port,
            credentials,
            shown,
        })
    }

    /// The proxy the environment names for a `scheme` (`http` or `https`) upstream at `host`,
    /// `None` when there is none or `NO_PROXY` names the host; an error for a proxy URL that
    /// does not parse (naming the variable).
    pub fn from_env(scheme: &str, host: &str) -> Result<Option<Proxy>> {
        let var = |name: &str| {
            [name.to_ascii_lowercase(), name.to_string()]
                .into_iter()
                .find_map(|name| {
                    std::env::var(&name)
                        .ok()
                        .filter(|v| !v.trim().is_empty())
                        .map(|v| (name, v))
                })
        };
        let chosen = match scheme {
            "https" => var("HTTPS_PROXY"),
            _ => var("HTTP_PROXY"),
        }
        .or_else(|| var("ALL_PROXY"));
        let Some((name, url)) = chosen else {
            return Ok(None);
        };
        if let Some((_, no_proxy)) = var("NO_PROXY") {
            if bypasses(&no_proxy, host) {
                return Ok(None);
            }
        }
        Proxy::new(url.trim())
            .map(Some)
            .map_err(|err| Error::bad_request(format!("{name}: {}", err.message())))
    }
}

/// `host[:port]`, IPv6 in brackets; the host without brackets.
pub(crate) fn split_host_port(hostport: &str, default_port: u16) -> Option<(String, u16)> {
    let (host, port) = match hostport.strip_prefix('[') {
        Some(v6) => {
            let (host, rest) = v6.split_once(']')?;
            match rest.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if rest.is_empty() => (host, None),
                None => return None,
            }
        }
        None => match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        },
    };
    let port = match port {
        Some(port) => port.parse().ok()?,
        None => default_port,
    };
    (!host.is_empty()).then(|| (host.to_ascii_lowercase(), port))
}

/// curl's rules for `NO_PROXY`: a comma-separated list; `*` alone matches every host; a name
/// matches itself and its subdomains (a leading dot is ignored); an IP address matches itself,
/// and `addr/bits` matches a network. Ports are ignored.
pub(crate) fn bypasses(no_proxy: &str, host: &str) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let ip = host.parse::<IpAddr>().ok();
    no_proxy
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let entry = entry.to_ascii_lowercase();
            if let (Some(ip), Some((net, bits))) = (ip, entry.split_once('/')) {
                return match (net.parse::<IpAddr>(), bits.parse::<u8>()) {
                    (Ok(net), Ok(bits)) => in_network(ip, net, bits),
                    _ => false,
                };
            }
            let entry = entry.trim_start_matches('[');
            let entry = match entry.split_once(']') {
                Some((v6, _)) => v6.to_string(),
                // `name:port` (not an IPv6 address): the port is ignored.
                None if entry.matches(':').count() == 1 => {
                    entry.split(':').next().unwrap_or_default().to_string()
                }
                None => entry.to_string(),
            };
            let entry = entry.trim_start_matches('.');
            if let (Some(ip), Ok(entry_ip)) = (ip, entry.parse::<IpAddr>()) {
                return ip == entry_ip;
            }
            host == entry || host.ends_with(&format!(".{entry}"))
        })
}

fn in_network(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// `%XX` escapes decoded (credentials in a URL are percent-encoded).
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::{bypasses, Proxy};

    #[test]
    fn no_proxy_follows_curl() {
        let list = "localhost, .internal.example,10.0.0.0/8, ::1,api.test:8080";
        assert!(bypasses(list, "localhost"));
        assert!(bypasses(list, "internal.example"));
        assert!(bypasses(list, "a.internal.example"));
        assert!(!bypasses(list, "xinternal.example"));
        assert!(bypasses(list, "10.1.2.3"));
        assert!(!bypasses(list, "11.1.2.3"));
        assert!(bypasses(list, "[::1]"));
        assert!(bypasses(list, "api.test"));
        // Loopback is proxied unless named, as with curl.
        assert!(!bypasses(list, "127.0.0.1"));
        assert!(bypasses("*", "anything.example"));
        assert!(!bypasses("", "anything.example"));
    }

    #[test]
    fn proxy_urls_carry_credentials_but_never_show_them() {
        let proxy =
            Proxy::new("http://us%40er:p%3Ass@127.0.0.1:3128/").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(proxy.to_string(), "127.0.0.1:3128");
        assert_eq!(proxy.credentials.as_deref(), Some("dXNAZXI6cDpzcw=="));
        assert!(!format!("{proxy:?}").contains("dXN"));
        assert_eq!(Proxy::new("proxy.example").map(|p| p.port).ok(), Some(1080));
        assert!(Proxy::new("socks5://127.0.0.1:1080").is_err());
        assert!(Proxy::new("http://:80").is_err());
    }
}
