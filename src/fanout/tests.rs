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
fn call_urls_split_into_authority_and_target() {
    let cases = [
        ("http://h:8080/v1", "/p?q=1", "h:8080", "/v1/p?q=1"),
        ("http://h", "", "h:80", "/"),
        ("http://h", "?q=1", "h:80", "/?q=1"),
        ("http://[::1]", "/x", "[::1]:80", "/x"),
        ("http://[::1]:9000/", "/x", "[::1]:9000", "/x"),
    ];
    for (base, path, authority, target) in cases {
        let call = Upstream::new("u", base).get(path);
        let split = call.split_url().map(|(_, target)| target).ok();
        assert_eq!(split.as_deref(), Some(target), "{base} + {path}");
        assert_eq!(call.authority().ok().as_deref(), Some(authority), "{base}");
    }
    assert!(Upstream::new("u", "https://h")
        .get("/")
        .split_url()
        .is_err());
}
