//! Hello world answers (that the README's snippet is examples/hello.rs, byte for byte, is
//! checked in tests/readme.rs).

use tinyserve::App;

use crate::support::TestServer;

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
