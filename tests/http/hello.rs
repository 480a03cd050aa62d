//! Hello world: the README's snippet is examples/hello.rs, and it answers.

use tinyserve::App;

use crate::support::{repo, TestServer};

/// The first ```rust block after the `## Hello world` heading, with a final newline per line.
fn hello_snippet(readme: &str) -> Option<String> {
    let mut lines = readme.lines().skip_while(|line| {
        !(line.trim_start().starts_with('#') && line.to_ascii_lowercase().contains("hello world"))
    });
    lines.next()?;
    let mut lines = lines.skip_while(|line| !line.trim_start().starts_with("```rust"));
    lines.next()?;
    let mut snippet = String::new();
    for line in lines {
        if line.trim_start().starts_with("```") {
            return Some(snippet);
        }
        snippet.push_str(line);
        snippet.push('\n');
    }
    None
}

#[test]
fn hello_snippet_is_the_first_rust_block_after_the_heading() {
    let readme = "# tinyserve\n\n```rust\nnot this\n```\n\n## Hello world\n\nText.\n\n\
                  ```toml\n[x]\n```\n\n```rust\nfn main() {}\n```\n\n```rust\nnor this\n```\n";
    assert_eq!(hello_snippet(readme).as_deref(), Some("fn main() {}\n"));
    assert_eq!(hello_snippet("## Hello world\n\nno code\n"), None);
}

/// Fails until README.md exists: its hello-world snippet must be examples/hello.rs, byte for byte.
#[test]
fn readme_hello_world_is_examples_hello() {
    let path = repo("README.md");
    let readme = std::fs::read_to_string(&path).unwrap_or_else(|err| {
        panic!(
            "{} should exist and show examples/hello.rs under `## Hello world`: {err}",
            path.display()
        )
    });
    let snippet = hello_snippet(&readme)
        .expect("README.md: a `## Hello world` heading followed by a ```rust block");
    let example =
        std::fs::read_to_string(repo("examples/hello.rs")).expect("read examples/hello.rs");
    assert_eq!(
        snippet, example,
        "README's hello-world snippet and examples/hello.rs differ"
    );
}

#[test]
fn hello_world_route_answers_plain_text() {
    let server = TestServer::start(App::new().get("/", |_| "Hello, world!"));
    let reply = server.get("/");
    assert_eq!(reply.status, 200);
    let content_type = reply.header("Content-Type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain"),
        "Content-Type {content_type:?}"
    );
    assert_eq!(reply.text(), "Hello, world!");
    server.get("/nope").assert_error(404, "not_found", "/nope");
    assert_eq!(server.get("/").text(), "Hello, world!");
}
