//! Static files: content types, validators and 304, HEAD, nested folders, and every way out
//! of the folder refused.

use std::path::{Path, PathBuf};

use tinyserve::{App, Request};

use crate::support::wire::Conn;
use crate::support::{scratch_dir, TestServer};

const SECRET: &str = "TOP-SECRET-0451";

/// `root/public` is served; beside it a secret file and folder, reached from inside by
/// symbolic links.
fn tree(what: &str) -> PathBuf {
    let root = scratch_dir(what);
    let public = root.join("public");
    let write = |path: PathBuf, text: &str| {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    };
    write(public.join("index.html"), "<h1>hello</h1>");
    write(public.join("sub/deeper/app.js"), "console.log(1)");
    write(public.join("data.unknownext"), "bytes");
    write(public.join(".env"), SECRET);
    write(root.join("secret.txt"), SECRET);
    write(root.join("secret-dir/secret.txt"), SECRET);
    link(&root.join("secret.txt"), &public.join("link-out.txt"));
    link(&root.join("secret-dir"), &public.join("dir-out"));
    link(&public.join("index.html"), &public.join("sub/link-in.html"));
    public
}

#[cfg(unix)]
fn link(target: &Path, at: &Path) {
    std::os::unix::fs::symlink(target, at).expect("symlink");
}

#[cfg(not(unix))]
fn link(_target: &Path, _at: &Path) {}

#[test]
fn files_come_with_their_type_validators_and_304() {
    let public = tree("static-validators");
    let app = App::new().static_files("/static", &public);
    let client = app.test_client();

    let page = client.get("/static/index.html");
    assert_eq!(page.status(), 200);
    assert_eq!(
        page.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.text(), "<h1>hello</h1>");
    let js = client.get("/static/sub/deeper/app.js");
    assert_eq!(
        (js.status(), js.header("Content-Type")),
        (200, Some("text/javascript; charset=utf-8"))
    );
    assert_eq!(
        client.get("/static/data.unknownext").header("Content-Type"),
        Some("application/octet-stream")
    );
    if cfg!(unix) {
        assert_eq!(
            client.get("/static/sub/link-in.html").text(),
            "<h1>hello</h1>",
            "a link inside"
        );
    }

    let etag = page.header("ETag").expect("ETag").to_string();
    let modified = page
        .header("Last-Modified")
        .expect("Last-Modified")
        .to_string();
    assert!(modified.ends_with(" GMT"), "{modified}");
    let conditional = |name: &str, value: &str| {
        client.send(Request::new("GET", "/static/index.html").with_header(name, value))
    };
    let fresh = conditional("If-None-Match", &etag);
    assert_eq!((fresh.status(), fresh.body().len()), (304, 0));
    assert_eq!(fresh.header("ETag"), Some(etag.as_str()));
    assert_eq!(
        conditional("If-None-Match", &format!("\"other\", W/{etag}")).status(),
        304
    );
    assert_eq!(conditional("If-None-Match", "\"other\"").status(), 200);
    assert_eq!(conditional("If-Modified-Since", &modified).status(), 304);
    assert_eq!(
        conditional("If-Modified-Since", "Thu, 01 Jan 1970 00:00:00 GMT").status(),
        200
    );

    // A file past the size answered whole comes streamed, whole.
    std::fs::write(public.join("big.bin"), vec![7u8; 5 * 1024 * 1024]).expect("write");
    let big = client.get("/static/big.bin");
    assert_eq!((big.status(), big.body().len()), (200, 5 * 1024 * 1024));
    let _ = std::fs::remove_dir_all(public.parent().expect("root"));
}

#[test]
fn head_on_the_wire_has_the_length_and_no_body() {
    let public = tree("static-head");
    let server = TestServer::start(App::new().static_files("/static/", &public));
    let reply = Conn::request(
        server.addr,
        b"HEAD /static/index.html HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .reply();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("Content-Length"), Some("14"));
    assert!(reply.body.is_empty());
    // A 304 carries no body and no Content-Length: a length there would describe another
    // answer (RFC 9110, 8.6), and a cache that trusts it would store an empty file.
    let etag = reply.header("ETag").expect("an ETag").to_string();
    let request =
        format!("GET /static/index.html HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n");
    let fresh = Conn::request(server.addr, request.as_bytes()).reply();
    assert_eq!(fresh.status, 304);
    assert_eq!(fresh.header("Content-Length"), None);
    assert!(fresh.body.is_empty());
    let get = server.get("/static/sub/deeper/app.js");
    assert_eq!((get.status, get.text().as_str()), (200, "console.log(1)"));
    assert_eq!(
        server
            .request("POST", "/static/index.html", &[], b"")
            .status,
        405
    );
    let _ = std::fs::remove_dir_all(public.parent().expect("root"));
}

/// Each path, sent as these very bytes: 400 or 404, never the secret.
#[test]
fn no_path_leads_out_of_the_folder() {
    let public = tree("static-escape");
    let server = TestServer::start(App::new().static_files("/static", &public));
    let app = App::new().static_files("/static", &public);
    let client = app.test_client();
    let attempts = [
        "/static/../secret.txt",
        "/static/sub/../../secret.txt",
        "/static/sub/deeper/../../../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/%2E%2E/secret.txt",
        "/static/sub/%2e%2e/%2e%2e/secret.txt",
        "/static/.%2e/secret.txt",
        "/static/..%2fsecret.txt",
        "/static/%2e%2e%2fsecret.txt",
        "/static/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/static/..%5csecret.txt",
        "/static/..\\secret.txt",
        "/static/sub\\..\\..\\secret.txt",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        &format!("/static/{}", public.join("../secret.txt").display()),
        "/static/link-out.txt",
        "/static/dir-out/secret.txt",
        "/static/.env",
        "/static/sub",
        "/static/sub/",
        "/static/",
        "/static/C:%5cWindows",
        "/static/index.html%00.js",
    ];
    for path in attempts {
        let wire = Conn::get(server.addr, path).reply();
        let local = client.get(path);
        for (status, body) in [(wire.status, wire.text()), (local.status(), local.text())] {
            assert!(matches!(status, 400 | 404), "{path}: {status} {body}");
            assert!(!body.contains(SECRET), "{path} leaked the secret");
        }
    }
    // The same server still serves the folder.
    assert_eq!(server.get("/static/index.html").status, 200);
    let _ = std::fs::remove_dir_all(public.parent().expect("root"));
}
