//! The app's day-one tools (issue #26): hooks, route groups, the test client, static files,
//! and `examples/blueprint.rs`. The test client where the socket adds nothing; a real server
//! on port 0 where it matters (the body left unread, the bytes on the wire).

mod blueprint;
mod groups;
mod hooks;
mod static_files;
mod test_client;
