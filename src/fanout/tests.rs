//! Unit tests of `fanout.rs`: URL splitting and pool sharing.

use super::Upstream;
use std::sync::Arc;
use std::time::Duration;

#[test]
fn clones_and_derived_upstreams_share_one_pool() {
    let base = Upstream::new("u", "http://127.0.0.1:9");
    let derived = base
        .clone()
        .with_header("Authorization", "Bearer k")
        .with_header("authorization", "Bearer k2")
        .with_appended_header("X-Tag", "a")
        .with_timeout(Duration::from_millis(300));
    assert!(Arc::ptr_eq(&base.pool, &derived.pool));
    assert!(Arc::ptr_eq(&base.pool, &base.clone().pool));
    assert_eq!(
        derived.inner.headers.get("Authorization"),
        Some("Bearer k2")
    );
    assert_eq!(derived.inner.headers.len(), 2);
    assert_eq!(derived.inner.timeout, Duration::from_millis(300));
    assert!(
        base.inner.headers.is_empty(),
        "the original keeps its own settings"
    );
    derived.count("ok");
    assert_eq!(
        base.outcomes()[0],
        ("ok", 1),
        "counts are shared with the pool"
    );
}

#[test]
fn call_urls_give_the_route_and_the_request_line() {
    let cases = [
        (
            "http://h:8080/v1",
            "/p?q=1",
            "h:8080",
            "GET /v1/p?q=1 HTTP/1.1",
            "host: h:8080",
        ),
        ("http://h", "", "h:80", "GET / HTTP/1.1", "host: h\r"),
        (
            "http://h",
            "?q=1",
            "h:80",
            "GET /?q=1 HTTP/1.1",
            "host: h\r",
        ),
        (
            "http://[::1]",
            "/x",
            "[::1]:80",
            "GET /x HTTP/1.1",
            "host: [::1]\r",
        ),
        (
            "https://[::1]:9000/",
            "/x",
            "[::1]:9000",
            "GET /x HTTP/1.1",
            "host: [::1]:9000",
        ),
    ];
    for (base, path, authority, line, host) in cases {
        let upstream = Upstream::new("u", base);
        let route = upstream.route().map(|r| r.authority()).ok();
        assert_eq!(route.as_deref(), Some(authority), "{base}");
        let call = upstream.get(path);
        let (bytes, _) = call
            .encode(&call.url())
            .unwrap_or_else(|err| panic!("{base} + {path}: {err}"));
        let text = String::from_utf8_lossy(&bytes).to_lowercase();
        assert!(
            text.starts_with(&line.to_lowercase()),
            "{base} + {path}: {text}"
        );
        assert!(text.contains(host), "{base} + {path}: {text}");
    }
    for bad in ["ftp://h", "h:80", "http://", "http://u:p@h/"] {
        let err = Upstream::new("u", bad).check_url().err();
        assert!(err.is_some(), "{bad}");
        let message = err.map(|e| e.message().to_string()).unwrap_or_default();
        assert!(message.starts_with("upstream \"u\": URL"), "{message}");
    }
}
