//! A panicking handler is a 500 without details, and its worker survives.

use serde_json::json;

use crate::support::TestServer;

use super::{app, assert_serving};

#[test]
fn panicking_handler_is_500_without_details_and_the_worker_survives() {
    let server = TestServer::start(
        app()
            .with_workers(1)
            .get("/panic", |_| -> &'static str { panic!("secret detail 42") })
            .get("/panic-string", |req| -> String {
                panic!("formatted secret {}", req.path())
            }),
    );
    for path in ["/panic", "/panic-string", "/panic"] {
        let reply = server.get(path);
        assert_eq!(reply.status, 500, "{path}");
        assert_eq!(reply.header("Content-Type"), Some("application/json"));
        assert_eq!(
            reply.json(),
            json!({"error": "internal server error", "code": "internal"})
        );
        assert!(
            !reply.text().contains("secret"),
            "panic text leaked: {}",
            reply.text()
        );
        // The only worker survived the panic.
        assert_serving(&server);
    }
}
