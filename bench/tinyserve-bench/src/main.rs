//! The tinyserve side of the benchmark (see bench/README.md). Subcommands:
//!
//! - `serve`: the same API as the Python baselines on one tinyserve `App`: every built-in route
//!   of `tinyserve serve` (so `POST /models/<name>/predict` over the same models), plus
//!   `GET /fanout` (3 parallel GETs to the mock upstream, written as the README's fan-out
//!   section shows: `FanOut::shared()?.run_for(req, calls, deadline)`, nothing sized) and
//!   `GET /sse` (20 events, 10 ms apart), and `GET /bench/upstream`: the TLS handshakes made so
//!   far on the mock upstream's pool (`Upstream::tls_handshakes`), for the HTTPS fan-out.
//! - `upstream`: the mock service the fan-out calls: answers every GET after `--delay-ms`.
//!   Thread per connection on `std::net`: the cheapest server to write that never queues a
//!   call behind another (each of the 768 connections a c=256 fan-out holds gets its own
//!   sleeping thread), so the upstream costs every server under test the same little CPU.
//! - `sse-load`: the load generator for the streaming scenario: N connections, each running
//!   one stream after another, recording time to the first event and the whole stream. wrk
//!   and oha report only whole-response latency.
//! - `floor`: tinyserve's own in-process floor: `Model::infer` in a loop (no HTTP, no JSON).
//!
//! Every subcommand that serves prints `listening on http://ADDR` once it accepts connections;
//! `sse-load` and `floor` print one JSON object.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use tinyserve::model::{Model, ModelOptions, ModelRegistry, Tensor};
use tinyserve::{protocol, App, Event, FanOut, Json, Request, Settings, Sse, Upstream};

/// Calls per fan-out request, and events per stream: the scenario, shared with the baselines.
const FANOUT_CALLS: usize = 3;
const SSE_EVENTS: usize = 20;
const SSE_GAP: Duration = Duration::from_millis(10);
/// How long `sse-load` lets the streams running at the deadline finish.
const GRACE: Duration = Duration::from_secs(1);

#[derive(Parser)]
#[command(about = "tinyserve's side of bench/run")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the built-in routes plus /fanout and /sse.
    Serve {
        #[arg(long)]
        models: PathBuf,
        /// Base URL of the mock upstream (http://127.0.0.1:PORT, or https:// through a TLS front).
        #[arg(long)]
        upstream: String,
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Handler threads: a fan-out or a stream holds one while it waits.
        #[arg(long, default_value_t = 512)]
        workers: usize,
        /// Streams at once (each holds a worker).
        #[arg(long, default_value_t = 384)]
        max_streams: usize,
        /// ONNX Runtime sessions per model [default: tinyserve's]
        #[arg(long)]
        sessions: Option<usize>,
        /// ONNX Runtime intra-op threads per session [default: tinyserve's]
        #[arg(long)]
        intra: Option<usize>,
    },
    /// The mock upstream: every GET answered after --delay-ms with a small JSON body.
    Upstream {
        #[arg(long, default_value_t = 0)]
        port: u16,
        #[arg(long, default_value_t = 50)]
        delay_ms: u64,
    },
    /// Drive GET URL (an SSE stream) from N connections for a fixed time; print JSON.
    SseLoad {
        url: String,
        #[arg(long)]
        connections: usize,
        #[arg(long)]
        seconds: f64,
        /// Events a complete stream has.
        #[arg(long, default_value_t = SSE_EVENTS)]
        events: usize,
    },
    /// In-process time of Model::infer on one row; print JSON.
    Floor {
        model: PathBuf,
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Threads calling Model::infer at once, for the throughput measurement.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Sessions in the model's pool (as `--sessions-per-model`).
        #[arg(long, default_value_t = 2)]
        sessions: usize,
        /// ONNX Runtime intra-op threads per session (as `--intra-threads`).
        #[arg(long, default_value_t = 1)]
        intra: usize,
    },
}

fn main() {
    let outcome = match Cli::parse().command {
        Command::Serve {
            models,
            upstream,
            port,
            workers,
            max_streams,
            sessions,
            intra,
        } => serve(
            &models,
            &upstream,
            (port, workers, max_streams),
            (sessions, intra),
        ),
        Command::Upstream { port, delay_ms } => {
            mock_upstream(port, Duration::from_millis(delay_ms))
        }
        Command::SseLoad {
            url,
            connections,
            seconds,
            events,
        } => sse_load(&url, connections, Duration::from_secs_f64(seconds), events),
        Command::Floor {
            model,
            seconds,
            threads,
            sessions,
            intra,
        } => floor(
            &model,
            Duration::from_secs_f64(seconds),
            threads,
            sessions,
            intra,
        ),
    };
    if let Err(err) = outcome {
        eprintln!("error: {err}");
        std::process::exit(1);
    }
}

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

/// `sizes`: port, workers, streams; `onnx`: sessions and intra-op threads.
fn serve(
    models: &Path,
    upstream: &str,
    sizes: (u16, usize, usize),
    onnx: (Option<usize>, Option<usize>),
) -> AnyResult<()> {
    let (port, workers, max_streams) = sizes;
    let mut options = ModelOptions::default();
    options.sessions = onnx.0;
    options.intra_threads = onnx.1;
    let models = ModelRegistry::load_dir_with(models, &options)?;
    let mut settings = Settings::default();
    settings.workers = workers;
    settings.max_streams = Some(max_streams);
    settings.max_connections = 4096;
    let ready = protocol::Readiness::new(true);
    let app = protocol::mount(App::new().with_settings(settings), &models, &ready);

    let mock = Upstream::new("mock", upstream);
    // A clone shares the pool: the handshakes its connections made, for the HTTPS scenario.
    let counted = mock.clone();
    let app = app
        .get("/fanout", move |req: &Request| -> tinyserve::Result<_> {
            let calls = (0..FANOUT_CALLS)
                .map(|i| mock.get(&format!("/item/{i}")))
                .collect();
            let mut items = Vec::with_capacity(FANOUT_CALLS);
            for reply in FanOut::shared()?.run_for(req, calls, Duration::from_secs(1)) {
                items.push(reply?.json::<Value>()?);
            }
            Ok(Json(json!({ "items": items })))
        })
        .get("/bench/upstream", move |_: &Request| {
            Json(json!({ "tls_handshakes": counted.tls_handshakes() }))
        })
        .get("/sse", |_: &Request| events())
        // The same stream as an OpenAI-compatible upstream's, for measuring the LLM proxy
        // (`tinyserve serve --upstream NAME=http://THIS/llm`) against local streams.
        .post("/llm/chat/completions", |_: &Request| events());
    let server = app.bind(("127.0.0.1", port))?;
    println!("listening on http://{}", server.addr());
    std::io::stdout().flush()?;
    server.join();
    Ok(())
}

/// SSE_EVENTS events, SSE_GAP apart.
fn events() -> Sse {
    Sse::new(|events| {
        for i in 0..SSE_EVENTS {
            if i > 0 {
                thread::sleep(SSE_GAP);
            }
            events.send(Event::data(format!("token {i}")).with_id(i.to_string()))?;
        }
        Ok(())
    })
}

fn mock_upstream(port: u16, delay: Duration) -> AnyResult<()> {
    // A deep accept queue, as every server under test has: with std's 128, the hundreds of
    // connections a c=256 fan-out opens at once overflow it, and a dropped connection attempt
    // is retried only a second later (past a fan-out's deadline).
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())?;
    socket.listen(4096)?;
    let listener: TcpListener = socket.into();
    println!("listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let _ = thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || answer_after(stream, delay));
    }
    Ok(())
}

/// Keep-alive loop of one upstream connection: read a request head (GET: no body), sleep,
/// answer `{"item": "<path>"}`.
fn answer_after(stream: TcpStream, delay: Duration) {
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut close = false;
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            close |= lower.starts_with("connection:") && lower.contains("close");
        }
        thread::sleep(delay);
        let body = json!({ "item": path }).to_string();
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        if writer
            .write_all(format!("{head}{body}").as_bytes())
            .is_err()
            || close
        {
            return;
        }
    }
}

/// One finished stream: time to the first body byte (the first event), whole stream, and
/// whether it was a 200 with every event.
struct Sample {
    ttfb: Duration,
    total: Duration,
    ok: bool,
    /// Which connection ran it, and when it ended (from the start of the run).
    connection: usize,
    ended: Duration,
}

fn sse_load(url: &str, connections: usize, duration: Duration, events: usize) -> AnyResult<()> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("sse-load: expected an http:// URL")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (rest[..i].to_string(), rest[i..].to_string()),
        None => (rest.to_string(), "/".to_string()),
    };
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    // Connections that finished their last stream after the deadline (not cut off).
    let finished: Arc<Mutex<Vec<usize>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = started + duration;
    for connection in 0..connections {
        let (host, path) = (host.clone(), path.clone());
        let (samples, errors, stop) = (samples.clone(), errors.clone(), stop.clone());
        let finished = finished.clone();
        thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let mut conn: Option<BufReader<TcpStream>> = None;
                while !stop.load(Ordering::Relaxed) {
                    let reader = match conn.take() {
                        Some(reader) => reader,
                        None => match TcpStream::connect(&host) {
                            Ok(stream) => {
                                let _ = stream.set_nodelay(true);
                                let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
                                BufReader::new(stream)
                            }
                            Err(err) => {
                                errors.lock().unwrap().push(format!("connect: {err}"));
                                thread::sleep(Duration::from_millis(10));
                                continue;
                            }
                        },
                    };
                    match one_stream(reader, &host, &path, events) {
                        Ok((mut sample, reader)) => {
                            sample.connection = connection;
                            sample.ended = started.elapsed();
                            samples.lock().unwrap().push(sample);
                            conn = reader;
                        }
                        Err(err) => errors.lock().unwrap().push(err.to_string()),
                    }
                }
                finished.lock().unwrap().push(connection);
            })?;
    }
    // No stream starts after the deadline; the ones running then get a grace period to end,
    // so that no connection loses the stream it was in the middle of.
    thread::sleep(deadline.saturating_duration_since(Instant::now()));
    stop.store(true, Ordering::Relaxed);
    let grace = started + duration + GRACE;
    while finished.lock().unwrap().len() < connections && Instant::now() < grace {
        thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed();
    let samples = std::mem::take(&mut *samples.lock().unwrap());
    let errors = std::mem::take(&mut *errors.lock().unwrap());
    let finished = std::mem::take(&mut *finished.lock().unwrap());
    let good: Vec<&Sample> = samples.iter().filter(|s| s.ok).collect();
    let bad = samples.len() - good.len();
    // Streams per second, connection by connection: its complete streams over the time it was
    // busy with them: until its last stream ended, or until now if one was still running (cut
    // off: a queued or stalled stream). Summed over the connections. Little's law would need
    // every stream's latency, which a cut-off stream does not have.
    let mut busy = vec![(0usize, elapsed); connections];
    for &connection in &finished {
        busy[connection].1 = Duration::ZERO;
    }
    for s in &good {
        busy[s.connection].0 += 1;
    }
    for s in &samples {
        if finished.contains(&s.connection) {
            busy[s.connection].1 = busy[s.connection].1.max(s.ended);
        }
    }
    let rps: f64 = busy
        .iter()
        .filter(|(n, until)| *n > 0 && !until.is_zero())
        .map(|(n, until)| *n as f64 / until.as_secs_f64())
        .sum();
    let micros = |mut v: Vec<Duration>| -> Value {
        v.sort();
        let pick = |q: f64| -> Value {
            if v.is_empty() {
                Value::Null
            } else {
                let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
                json!(v[i].as_secs_f64() * 1e6)
            }
        };
        json!({ "p50": pick(0.50), "p90": pick(0.90), "p99": pick(0.99), "max": pick(1.0) })
    };
    let mut first_errors: Vec<&String> = errors.iter().take(3).collect();
    first_errors.dedup();
    let report = json!({
        "requests": good.len(),
        "seconds": elapsed.as_secs_f64(),
        "rps": rps,
        "cut_off": connections - finished.len(),
        "errors": errors.len() + bad,
        "error_examples": first_errors,
        "latency_us": micros(good.iter().map(|s| s.total).collect()),
        "ttfb_us": micros(good.iter().map(|s| s.ttfb).collect()),
    });
    println!("{report}");
    std::io::stdout().flush()?;
    // Streams still running (cut off) belong to no one now: exit without waiting for them.
    std::process::exit(0);
}

/// Sends one GET and reads the whole response (chunked, sized or close-delimited). Returns the
/// sample and the connection when it can be reused.
fn one_stream(
    mut reader: BufReader<TcpStream>,
    host: &str,
    path: &str,
    events: usize,
) -> AnyResult<(Sample, Option<BufReader<TcpStream>>)> {
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n");
    let sent = Instant::now();
    reader.get_mut().write_all(request.as_bytes())?;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("bad status line")?;
    let (mut chunked, mut length, mut close) = (false, None::<usize>, line.starts_with("HTTP/1.0"));
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err("connection closed in the head".into());
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("transfer-encoding:") {
            chunked = value.contains("chunked");
        } else if let Some(value) = lower.strip_prefix("content-length:") {
            length = value.trim().parse().ok();
        } else if let Some(value) = lower.strip_prefix("connection:") {
            close = value.contains("close");
        }
    }
    let mut body = Vec::new();
    let mut ttfb = None;
    let mut first = |got: usize| {
        if got > 0 && ttfb.is_none() {
            ttfb = Some(sent.elapsed());
        }
    };
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)?;
            if size == 0 {
                line.clear();
                reader.read_line(&mut line)?; // the blank line after the last chunk
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            first(size);
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf)?;
        }
    } else if let Some(length) = length {
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
        first(length);
    } else {
        close = true;
        let mut buf = [0u8; 4096];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            first(n);
            body.extend_from_slice(&buf[..n]);
        }
    }
    let total = sent.elapsed();
    let seen = body.windows(5).filter(|w| w == b"data:").count();
    let sample = Sample {
        ttfb: ttfb.unwrap_or(total),
        total,
        ok: status == 200 && seen == events,
        connection: 0,
        ended: Duration::ZERO,
    };
    Ok((sample, if close { None } else { Some(reader) }))
}

/// Median time of one `Model::infer` on a batch-1 input; then calls per second with `threads`
/// threads sharing the model's pool of `sessions` sessions.
fn floor(
    path: &Path,
    seconds: Duration,
    threads: usize,
    sessions: usize,
    intra: usize,
) -> AnyResult<()> {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut options = ModelOptions::default();
    options.sessions = Some(sessions.max(1));
    options.intra_threads = Some(intra.max(1));
    let model = Arc::new(Model::load(&name, path, &options)?);
    let spec = model.signature().inputs[0].clone();
    let width = spec
        .shape
        .iter()
        .skip(1)
        .map(|&d| d.max(1) as usize)
        .product();
    let row: Vec<f32> = (0..width).map(|i| (i % 7) as f32 * 0.5).collect();
    let input = Tensor::from_json(&spec, &json!([row]), None, None)?;
    for _ in 0..50 {
        model.infer(vec![input.clone()])?;
    }
    let mut times = Vec::new();
    let end = Instant::now() + seconds;
    while Instant::now() < end {
        let t = Instant::now();
        model.infer(vec![input.clone()])?;
        times.push(t.elapsed());
    }
    times.sort();
    let median = times[times.len() / 2];
    let calls = Arc::new(Mutex::new(0u64));
    let end = Instant::now() + seconds;
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (model, input, calls) = (model.clone(), input.clone(), calls.clone());
            thread::spawn(move || {
                let mut n = 0u64;
                while Instant::now() < end {
                    if model.infer(vec![input.clone()]).is_ok() {
                        n += 1;
                    }
                }
                *calls.lock().unwrap() += n;
            })
        })
        .collect();
    for handle in handles {
        let _ = handle.join();
    }
    let rps = *calls.lock().unwrap() as f64 / started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({
            "model": name,
            "per_call_us": median.as_secs_f64() * 1e6,
            "calls": times.len(),
            "threads": threads,
            "sessions": sessions,
            "intra_threads": intra,
            "throughput_rps": rps,
        })
    );
    Ok(())
}
