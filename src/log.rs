//! Logging to stderr: one access line per request (human or JSON lines) and error lines, each
//! with the request id when there is one.
//!
//! A field can hold what a client wrote (a decoded model name, a path, a message quoting the
//! input), so no field may end a line or start a forged one: in the human format every control
//! character (C0, DEL, C1) and the Unicode line and paragraph separators are written as
//! `\xNN` or `\u{NNNN}`, a backslash as `\\`, and a field that may hold spaces is quoted; in
//! JSON lines serde_json escapes C0 and the rest is written as `\uNNNN`.

use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `2026-11-25T18:31:32.123Z INFO 127.0.0.1 "GET /healthz" 200 15B 0.08ms rid=...`
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The least severe level that is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Failures only.
    Error = 0,
    /// Failures and warnings.
    Warn = 1,
    /// Also one line per request.
    Info = 2,
    /// Everything.
    Debug = 3,
}

static LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Info as u8);
static JSON: AtomicU8 = AtomicU8::new(0);

thread_local! {
    static REQUEST_ID: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Sets the process-wide level and format.
pub fn configure(level: LogLevel, format: LogFormat) {
    LEVEL.store(level as u8, Ordering::Relaxed);
    JSON.store(u8::from(format == LogFormat::Json), Ordering::Relaxed);
}

fn enabled(level: LogLevel) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

fn json() -> bool {
    JSON.load(Ordering::Relaxed) == 1
}

/// Runs `f` with `id` as the request id of log lines written on this thread.
pub(crate) fn with_request_id<T>(id: &str, f: impl FnOnce() -> T) -> T {
    REQUEST_ID.with(|slot| *slot.borrow_mut() = Some(id.to_string()));
    let result = f();
    REQUEST_ID.with(|slot| *slot.borrow_mut() = None);
    result
}

/// Writes an error line.
pub(crate) fn error(message: &str) {
    line(LogLevel::Error, message);
}

/// Writes a warning line.
pub(crate) fn warn(message: &str) {
    line(LogLevel::Warn, message);
}

/// Writes an informational line (start-up and shutdown steps), in the configured format.
pub fn info(message: &str) {
    line(LogLevel::Info, message);
}

fn line(level: LogLevel, message: &str) {
    if !enabled(level) {
        return;
    }
    let id = REQUEST_ID.with(|slot| slot.borrow().clone());
    let name = ["error", "warn", "info", "debug"][level as usize];
    let text = if json() {
        let mut object = serde_json::json!({"time": timestamp(SystemTime::now()), "level": name, "message": message});
        if let Some(id) = id {
            object["request_id"] = id.into();
        }
        json_line(&object)
    } else {
        let rid = id
            .map(|id| format!(" rid={}", escape(&id)))
            .unwrap_or_default();
        format!(
            "{} {}{rid} {}",
            timestamp(SystemTime::now()),
            name.to_ascii_uppercase(),
            escape(message)
        )
    };
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Whether `c` must not appear raw in a log line: a control character, or a Unicode line or
/// paragraph separator (which some log viewers break lines at).
fn is_unsafe(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// `text` with every unsafe character written as `\xNN` (below 0x100) or `\u{NNNN}`, and `\`
/// as `\\`, so a field can neither end the line nor be read as something it is not.
fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| is_unsafe(c) || c == '\\') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if is_unsafe(c) && (c as u32) < 0x100 => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if is_unsafe(c) => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A field for the human format that may hold spaces or quotes: escaped, and quoted (with `\"`
/// inside) unless it is a plain token.
fn quoted(text: &str) -> String {
    let escaped = escape(text);
    if !escaped.is_empty() && !escaped.contains([' ', '"', '=']) {
        return escaped.into_owned();
    }
    format!("\"{}\"", escaped.replace('"', "\\\""))
}

/// One JSON line: serde_json escapes C0 controls, `"` and `\`; DEL, C1 controls and the line
/// and paragraph separators, which it leaves raw, become `\uNNNN` (they can only occur inside
/// strings, so this keeps the JSON valid and equal).
fn json_line(value: &serde_json::Value) -> String {
    let text = value.to_string();
    if !text.chars().any(is_unsafe) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// One request, as the access log records it.
pub(crate) struct Access<'a> {
    pub(crate) client: Option<std::net::IpAddr>,
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) status: u16,
    pub(crate) bytes: u64,
    pub(crate) duration: Duration,
    pub(crate) request_id: &'a str,
    pub(crate) model: Option<&'a str>,
}

/// Writes the access line of a request (level info).
pub(crate) fn access(record: &Access<'_>) {
    if !enabled(LogLevel::Info) {
        return;
    }
    let client = record.client.map_or("-".to_string(), |ip| ip.to_string());
    let millis = record.duration.as_secs_f64() * 1000.0;
    let text = if json() {
        json_line(&serde_json::json!({
            "time": timestamp(SystemTime::now()),
            "level": "info",
            "client": client,
            "method": record.method,
            "path": record.path,
            "status": record.status,
            "bytes": record.bytes,
            "duration_ms": (millis * 1000.0).round() / 1000.0,
            "request_id": record.request_id,
            "model": record.model,
        }))
    } else {
        let model = record
            .model
            .map(|m| format!(" model={}", quoted(m)))
            .unwrap_or_default();
        format!(
            "{} INFO {client} \"{} {}\" {} {}B {millis:.3}ms rid={}{model}",
            timestamp(SystemTime::now()),
            escape(record.method).replace('"', "\\\""),
            escape(record.path).replace('"', "\\\""),
            record.status,
            record.bytes,
            escape(record.request_id)
        )
    };
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Calendar date and time of a Unix time: (year, month, day, hour, minute, second, weekday
/// with 0 = Thursday, as 1970-01-01 was).
pub(crate) fn civil(secs: u64) -> (i64, u32, u32, u64, u64, u64, usize) {
    let days = (secs / 86_400) as i64;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = days.rem_euclid(7) as usize;
    (
        year,
        month,
        day,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
        weekday,
    )
}

/// RFC 3339 UTC with milliseconds.
fn timestamp(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (y, mo, d, h, mi, s, _) = civil(since.as_secs());
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_character_can_end_or_fake_a_line() {
        let forged = "x\n2026-12-05T00:00:00.000Z INFO 203.0.113.1 \"GET /\" 200";
        assert_eq!(
            escape(forged),
            "x\\x0a2026-12-05T00:00:00.000Z INFO 203.0.113.1 \"GET /\" 200"
        );
        assert_eq!(
            escape("a\rb\u{1b}[31m\u{7f}\u{85}\u{2028}\\x0a"),
            "a\\x0db\\x1b[31m\\x7f\\x85\\u{2028}\\\\x0a"
        );
        assert_eq!(escape("iris"), "iris");
        assert_eq!(quoted("iris"), "iris");
        assert_eq!(quoted("a b\"c"), "\"a b\\\"c\"");
        for c in (0..0x110000)
            .filter_map(char::from_u32)
            .filter(|&c| is_unsafe(c))
        {
            let text = format!("a{c}b");
            assert!(!escape(&text).chars().any(is_unsafe), "{c:?}");
            let line = json_line(&serde_json::json!({ "f": text }));
            assert!(!line.chars().any(is_unsafe), "{c:?} in {line:?}");
            let back: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            assert_eq!(back["f"], text.as_str(), "{c:?}");
        }
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let at = UNIX_EPOCH + Duration::from_millis(784_111_777_042);
        assert_eq!(timestamp(at), "1994-11-06T08:49:37.042Z");
    }
}
