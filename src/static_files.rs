//! Static files: a folder served at a prefix ([`App::static_files`]), with validators for
//! caches, and no way out of the folder.
//!
//! A request's path below the prefix is checked segment by segment, each decoded on its own:
//! `.` and `..` (`%2e%2e` included), a backslash, a NUL or a `:` give 400; an encoded `/`
//! (`%2F`) does not match the route (404); a hidden name (`.env`, `.git/`) gives 404. The file
//! found is then resolved (symbolic links followed) and must still lie in the folder, else
//! 404. A folder is never listed (404).

use std::fs::{File, Metadata};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use crate::{App, Error, Request, Response};

/// Files up to this size are answered whole, with `Content-Length`; larger ones are streamed.
const WHOLE_UP_TO: u64 = 4 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

impl App {
    /// Serves the files under `dir` at `prefix`: `GET prefix/a/b.css` answers `dir/a/b.css`
    /// with its content type (from its extension), `ETag` and `Last-Modified`, and 304 to a
    /// request whose `If-None-Match` (or `If-Modified-Since`) still holds; `HEAD` too. Nothing
    /// outside `dir` is reachable, through `..`, encoded separators, backslashes or symbolic
    /// links, and folders are not listed: see [`crate::static_files`].
    ///
    /// # Example
    /// ```
    /// let dir = std::env::temp_dir().join(format!("tinyserve-doc-static-{}", std::process::id()));
    /// std::fs::create_dir_all(dir.join("css"))?;
    /// std::fs::write(dir.join("css/site.css"), "body { margin: 0 }")?;
    ///
    /// let app = tinyserve::App::new().static_files("/static", &dir);
    /// let client = app.test_client();
    /// let res = client.get("/static/css/site.css");
    /// assert_eq!(res.header("Content-Type"), Some("text/css; charset=utf-8"));
    /// assert_eq!(client.get("/static/../Cargo.toml").status(), 400);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn static_files(self, prefix: &str, dir: impl Into<PathBuf>) -> App {
        let pattern = format!("{}/<path..>", prefix.trim_end_matches('/'));
        self.get(&pattern, handler(dir.into()))
    }
}

/// The handler of a `<path..>` route serving `dir`.
pub(crate) fn handler(dir: PathBuf) -> impl Fn(&Request) -> Response + Send + Sync + 'static {
    move |req| match serve(&dir, req) {
        Ok(response) => response,
        Err(err) => Response::from_error(&err),
    }
}

fn serve(dir: &Path, req: &Request) -> crate::Result<Response> {
    let relative = req.param("path").unwrap_or_default();
    let not_found = || Error::not_found(req.path());
    let mut path = dir.to_path_buf();
    for segment in relative.split('/') {
        if matches!(segment, "" | "." | "..") || segment.contains(['\\', '\0', ':']) {
            return Err(Error::bad_request(format!(
                "path segment {segment:?} is not allowed in a static file's path"
            )));
        }
        if segment.starts_with('.') {
            return Err(not_found());
        }
        path.push(segment);
    }
    let root = dir.canonicalize().map_err(|_| not_found())?;
    let file = path.canonicalize().map_err(|_| not_found())?;
    if !file.starts_with(&root) {
        return Err(not_found());
    }
    let meta = std::fs::metadata(&file).map_err(|_| not_found())?;
    if !meta.is_file() {
        return Err(not_found());
    }
    let (etag, modified) = validators(&meta);
    let headers = |res: Response| {
        let res = res
            .with_header("ETag", etag.clone())
            .with_header("Cache-Control", "no-cache");
        match &modified {
            Some(date) => res.with_header("Last-Modified", date.clone()),
            None => res,
        }
    };
    if is_fresh(req, &etag, &meta) {
        return Ok(headers(Response::empty(304)));
    }
    let content_type = content_type(&file);
    if meta.len() <= WHOLE_UP_TO {
        let bytes = std::fs::read(&file).map_err(|_| not_found())?;
        return Ok(headers(Response::new(200, content_type, bytes)));
    }
    let mut opened = File::open(&file).map_err(|_| not_found())?;
    let streamed = Response::stream(content_type, move |body| {
        let mut buffer = vec![0u8; CHUNK];
        loop {
            match opened.read(&mut buffer) {
                Ok(0) | Err(_) => return Ok(()),
                Ok(n) => body.send(&buffer[..n])?,
            }
        }
    });
    Ok(headers(streamed))
}

/// The `ETag` (size and modification time) and `Last-Modified` of a file.
fn validators(meta: &Metadata) -> (String, Option<String>) {
    let modified = meta.modified().ok();
    let nanos = modified
        .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let etag = format!("\"{:x}-{:x}\"", meta.len(), nanos);
    (etag, modified.map(httpdate::fmt_http_date))
}

/// Whether the client's copy is current: `If-None-Match` names the `ETag` (or is `*`); or,
/// without `If-None-Match`, `If-Modified-Since` is no earlier than the modification time.
fn is_fresh(req: &Request, etag: &str, meta: &Metadata) -> bool {
    if let Some(tags) = req.header("If-None-Match") {
        return tags
            .split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag);
    }
    let since = req
        .header("If-Modified-Since")
        .and_then(|date| httpdate::parse_http_date(date.trim()).ok());
    match (since, meta.modified().ok()) {
        (Some(since), Some(modified)) => {
            let secs =
                |t: std::time::SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            secs(modified) <= secs(since)
        }
        _ => false,
    }
}

/// The content type for a file's extension; `application/octet-stream` when unknown.
fn content_type(path: &Path) -> &'static str {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match extension.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" | "md" => "text/plain; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "mp3" => "audio/mpeg",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        _ => "application/octet-stream",
    }
}
