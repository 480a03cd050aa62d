//! [`Logger`]: the `log` implementation the `tinyserve` command installs, writing human or
//! JSON lines on stderr.
//!
//! A field can hold what a client wrote (a decoded model name, a path, a message quoting the
//! input), so no field may end a line or start a forged one: in the human format every control
//! character (C0, DEL, C1) and the Unicode line and paragraph separators are written as
//! `\xNN` or `\u{NNNN}`, a backslash as `\\`, and a field that may hold spaces is quoted; in
//! JSON lines serde_json escapes C0 and the rest is written as `\uNNNN`.

use std::borrow::Cow;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use log::kv::{self, Key, Source, Value, VisitSource};
use log::{LevelFilter, Log, Metadata, Record};

use super::{LogFormat, LogLevel, ACCESS_TARGET, TARGET};

/// Writes every record at or above a level as one line on stderr, in tinyserve's human or
/// JSON format: access records as `TIME INFO CLIENT "METHOD PATH" STATUS BYTESB MSms rid=ID
/// [model=NAME] [messages_in=N messages_out=N]` (or their fields as a JSON object), other records as `TIME LEVEL [rid=ID]
/// MESSAGE` (records of other crates name their target).
///
/// # Example
///
/// ```no_run
/// use tinyserve::log::{LogFormat, LogLevel, Logger};
///
/// Logger::new(LogLevel::Info, LogFormat::Human).install()?;
/// tinyserve::App::new().get("/", |_| "hi").run("127.0.0.1:8000")?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Logger {
    level: LevelFilter,
    format: LogFormat,
}

impl Logger {
    /// A logger writing records at `level` and above in `format`.
    pub fn new(level: LogLevel, format: LogFormat) -> Logger {
        Logger {
            level: level.into(),
            format,
        }
    }

    /// Makes this the process's logger and sets `log`'s maximum level to its level; fails if
    /// a logger is installed already.
    pub fn install(self) -> Result<(), log::SetLoggerError> {
        log::set_boxed_logger(Box::new(self))?;
        log::set_max_level(self.level);
        Ok(())
    }

    /// The line for `record`, without the newline.
    fn format(&self, record: &Record<'_>) -> String {
        let json = self.format == LogFormat::Json;
        let kvs = record.key_values();
        if record.target() == ACCESS_TARGET {
            let fields = Fields::of(kvs);
            if fields.status.is_some() {
                return if json {
                    access_json(&fields)
                } else {
                    access_human(&fields)
                };
            }
        }
        let time = timestamp(SystemTime::now());
        let level = record.level().as_str().to_ascii_lowercase();
        let request_id = text(kvs, "request_id");
        let own = record.target() == TARGET || record.target().starts_with("tinyserve::");
        if json {
            let mut object = serde_json::json!({"time": time, "level": level});
            if !own {
                object["target"] = record.target().into();
            }
            object["message"] = record.args().to_string().into();
            if let Some(id) = request_id {
                object["request_id"] = id.into();
            }
            return json_line(&object);
        }
        let rid = request_id
            .map(|id| format!(" rid={}", escape(&id)))
            .unwrap_or_default();
        let target = if own {
            String::new()
        } else {
            format!(" {}:", escape(record.target()))
        };
        let message = record.args().to_string();
        format!(
            "{time} {}{rid}{target} {}",
            level.to_ascii_uppercase(),
            escape(&message)
        )
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = self.format(record);
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        }
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// The value of `key` as text (a string as it is, a number as written by `Display`).
fn text(kvs: &dyn Source, key: &str) -> Option<String> {
    kvs.get(Key::from_str(key)).map(|value| value.to_string())
}

/// The fields of an access record, gathered in one pass over its key-values.
#[derive(Default)]
struct Fields<'kvs> {
    client: Option<Value<'kvs>>,
    method: Option<Value<'kvs>>,
    path: Option<Value<'kvs>>,
    status: Option<Value<'kvs>>,
    bytes: Option<Value<'kvs>>,
    duration_ms: Option<Value<'kvs>>,
    request_id: Option<Value<'kvs>>,
    model: Option<Value<'kvs>>,
    messages_in: Option<Value<'kvs>>,
    messages_out: Option<Value<'kvs>>,
}

impl<'kvs> VisitSource<'kvs> for Fields<'kvs> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), kv::Error> {
        let slot = match key.as_str() {
            "client" => &mut self.client,
            "method" => &mut self.method,
            "path" => &mut self.path,
            "status" => &mut self.status,
            "bytes" => &mut self.bytes,
            "duration_ms" => &mut self.duration_ms,
            "request_id" => &mut self.request_id,
            "model" => &mut self.model,
            "messages_in" => &mut self.messages_in,
            "messages_out" => &mut self.messages_out,
            _ => return Ok(()),
        };
        *slot = Some(value);
        Ok(())
    }
}

impl<'kvs> Fields<'kvs> {
    fn of(kvs: &'kvs dyn Source) -> Fields<'kvs> {
        let mut fields = Fields::default();
        let _ = kvs.visit(&mut fields);
        fields
    }

    /// A string field as it is, anything else as `Display` writes it; empty when missing.
    fn text(value: &Option<Value<'kvs>>) -> Cow<'kvs, str> {
        match value {
            Some(v) => v
                .to_borrowed_str()
                .map_or_else(|| Cow::Owned(v.to_string()), Cow::Borrowed),
            None => Cow::Borrowed(""),
        }
    }

    fn number(value: &Option<Value<'kvs>>) -> u64 {
        value.as_ref().and_then(Value::to_u64).unwrap_or(0)
    }

    fn millis(&self) -> f64 {
        self.duration_ms
            .as_ref()
            .and_then(Value::to_f64)
            .unwrap_or(0.0)
    }
}

/// `2026-11-25T18:31:32.123Z INFO 127.0.0.1 "GET /healthz" 200 15B 0.080ms rid=... model=...`
fn access_human(fields: &Fields<'_>) -> String {
    let model = fields
        .model
        .as_ref()
        .map(|_| format!(" model={}", quoted(&Fields::text(&fields.model))))
        .unwrap_or_default();
    let messages = match (&fields.messages_in, &fields.messages_out) {
        (Some(_), Some(_)) => format!(
            " messages_in={} messages_out={}",
            Fields::number(&fields.messages_in),
            Fields::number(&fields.messages_out)
        ),
        _ => String::new(),
    };
    format!(
        "{} INFO {} \"{} {}\" {} {}B {:.3}ms rid={}{model}{messages}",
        timestamp(SystemTime::now()),
        escape(&Fields::text(&fields.client)),
        escape(&Fields::text(&fields.method)).replace('"', "\\\""),
        escape(&Fields::text(&fields.path)).replace('"', "\\\""),
        Fields::number(&fields.status),
        Fields::number(&fields.bytes),
        fields.millis(),
        escape(&Fields::text(&fields.request_id))
    )
}

fn access_json(fields: &Fields<'_>) -> String {
    let mut line = serde_json::json!({
        "time": timestamp(SystemTime::now()),
        "level": "info",
        "client": Fields::text(&fields.client),
        "method": Fields::text(&fields.method),
        "path": Fields::text(&fields.path),
        "status": Fields::number(&fields.status),
        "bytes": Fields::number(&fields.bytes),
        "duration_ms": fields.millis(),
        "request_id": Fields::text(&fields.request_id),
        "model": fields.model.as_ref().map(|_| Fields::text(&fields.model)),
    });
    if fields.messages_in.is_some() {
        line["messages_in"] = Fields::number(&fields.messages_in).into();
        line["messages_out"] = Fields::number(&fields.messages_out).into();
    }
    json_line(&line)
}

/// Whether `c` must not appear raw in a log line: a control character, or a Unicode line or
/// paragraph separator (which some log viewers break lines at).
fn is_unsafe(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// `text` with every unsafe character written as `\xNN` (below 0x100) or `\u{NNNN}`, and `\`
/// as `\\`, so a field can neither end the line nor be read as something it is not.
pub(crate) fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| is_unsafe(c) || c == '\\') {
        return Cow::Borrowed(text);
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
    Cow::Owned(out)
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

/// Calendar date and time of a Unix time: (year, month, day, hour, minute, second).
fn civil(secs: u64) -> (i64, u32, u32, u64, u64, u64) {
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
    (
        year,
        month,
        day,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    )
}

/// RFC 3339 UTC with milliseconds.
fn timestamp(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (y, mo, d, h, mi, s) = civil(since.as_secs());
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::log::Access;

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

    /// The line `logger` writes for `record`, without its timestamp.
    fn untimed(logger: Logger, record: &Record<'_>) -> String {
        let line = logger.format(record);
        match line.strip_prefix("{\"time\":\"") {
            Some(rest) => rest
                .split_once("\",")
                .map_or(line.clone(), |(_, r)| r.to_string()),
            None => line
                .split_once(' ')
                .map_or(line.clone(), |(_, r)| r.to_string()),
        }
    }

    #[test]
    fn access_records_keep_the_human_and_json_lines() {
        let access = Access {
            client: Some([127, 0, 0, 1].into()),
            method: "POST",
            path: "/models/ir\nis/predict",
            status: 200,
            bytes: 15,
            duration: Duration::from_micros(83),
            request_id: "abc",
            model: Some("ir is"),
            messages: None,
        };
        let record = Record::builder()
            .target(ACCESS_TARGET)
            .level(log::Level::Info)
            .key_values(&access)
            .args(format_args!("ignored"))
            .build();
        let human = Logger::new(LogLevel::Info, LogFormat::Human);
        assert_eq!(
            untimed(human, &record),
            "INFO 127.0.0.1 \"POST /models/ir\\x0ais/predict\" 200 15B 0.083ms rid=abc model=\"ir is\""
        );
        let json = Logger::new(LogLevel::Info, LogFormat::Json);
        assert_eq!(
            untimed(json, &record),
            r#""level":"info","client":"127.0.0.1","method":"POST","path":"/models/ir\nis/predict","status":200,"bytes":15,"duration_ms":0.083,"request_id":"abc","model":"ir is"}"#
        );
    }

    #[test]
    fn a_websocket_access_record_counts_its_messages() {
        let access = Access {
            client: None,
            method: "GET",
            path: "/ws",
            status: 101,
            bytes: 7,
            duration: Duration::from_millis(2),
            request_id: "w",
            model: None,
            messages: Some((3, 4)),
        };
        let record = Record::builder()
            .target(ACCESS_TARGET)
            .level(log::Level::Info)
            .key_values(&access)
            .args(format_args!("ignored"))
            .build();
        let human = Logger::new(LogLevel::Info, LogFormat::Human);
        assert_eq!(
            untimed(human, &record),
            "INFO - \"GET /ws\" 101 7B 2.000ms rid=w messages_in=3 messages_out=4"
        );
        let json = Logger::new(LogLevel::Info, LogFormat::Json);
        assert!(
            untimed(json, &record).ends_with(r#""model":null,"messages_in":3,"messages_out":4}"#)
        );
    }

    #[test]
    fn other_records_carry_the_request_id_and_foreign_targets() {
        let pairs = [("request_id", "r1")];
        let record = Record::builder()
            .target(TARGET)
            .level(log::Level::Error)
            .key_values(&pairs)
            .args(format_args!("boom\nline"))
            .build();
        let human = Logger::new(LogLevel::Info, LogFormat::Human);
        assert_eq!(untimed(human, &record), "ERROR rid=r1 boom\\x0aline");
        let json = Logger::new(LogLevel::Info, LogFormat::Json);
        assert_eq!(
            untimed(json, &record),
            r#""level":"error","message":"boom\nline","request_id":"r1"}"#
        );
        let foreign = Record::builder()
            .target("tokenizers::models")
            .level(log::Level::Warn)
            .args(format_args!("holes"))
            .build();
        assert_eq!(untimed(human, &foreign), "WARN tokenizers::models: holes");
        assert!(!human.enabled(&Metadata::builder().level(log::Level::Debug).build()));
    }
}
