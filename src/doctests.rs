//! The Rust blocks of README.md and `docs/*.md` as doc tests: `cargo test --doc` compiles each
//! one, and runs those not marked `no_run` (the ones that serve until stopped are). Blocks in
//! other languages carry their language (`bash`, `json`, `text`, `nginx`, `toml`...), so
//! rustdoc skips them. `lib.rs` declares this module under `#[cfg(doctest)]`: nothing here is
//! part of the library.

/// README.md.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct Readme;

/// docs/library.md: the library guide.
#[cfg(doctest)]
#[doc = include_str!("../docs/library.md")]
pub struct LibraryGuide;

/// docs/protocols.md: the routes of `tinyserve serve`.
#[cfg(doctest)]
#[doc = include_str!("../docs/protocols.md")]
pub struct Protocols;

/// docs/deployment.md: nginx, Kubernetes, systemd, Docker, limits.
#[cfg(doctest)]
#[doc = include_str!("../docs/deployment.md")]
pub struct Deployment;

/// docs/benchmarks.md: every measured table.
#[cfg(doctest)]
#[doc = include_str!("../docs/benchmarks.md")]
pub struct Benchmarks;

/// docs/design.md: design decisions.
#[cfg(doctest)]
#[doc = include_str!("../docs/design.md")]
pub struct Design;

/// docs/testing.md: what the tests prove.
#[cfg(doctest)]
#[doc = include_str!("../docs/testing.md")]
pub struct Testing;

/// docs/fanout.md: outbound calls.
#[cfg(doctest)]
#[doc = include_str!("../docs/fanout.md")]
pub struct FanOutDesign;

/// docs/hostile-clients.md: attacks and their fixes.
#[cfg(doctest)]
#[doc = include_str!("../docs/hostile-clients.md")]
pub struct HostileClients;

/// docs/language-models.md: decoder folders.
#[cfg(doctest)]
#[doc = include_str!("../docs/language-models.md")]
pub struct LanguageModels;

/// docs/conformance.md: the ONNX backend node suite through HTTP.
#[cfg(doctest)]
#[doc = include_str!("../docs/conformance.md")]
pub struct Conformance;

/// docs/scaling.md: replicas and cores for a load, limits, KServe's autoscaling.
#[cfg(doctest)]
#[doc = include_str!("../docs/scaling.md")]
pub struct Scaling;
