//! The `tinyserve` command: a thin layer over the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tinyserve::app::ApiKey;
use tinyserve::http::TrustedProxies;
use tinyserve::log::{LogFormat, LogLevel, Logger};
use tinyserve::model::{
    ControlMode, Model, ModelOptions, ModelRegistry, ModelRepository, TensorSpec, Watcher,
};
use tinyserve::{protocol, App, Settings, Upstream};

#[derive(Parser)]
#[command(
    name = "tinyserve",
    version,
    about = "Serve a folder of ONNX models over HTTP"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every NAME.onnx, NAME/VERSION/model.onnx (and decoder folder NAME/) of a folder: health probes, KServe v2, /models/NAME/predict and the OpenAI-compatible /v1.
    Serve(Box<ServeArgs>),
    /// Print a model's inputs and outputs with their datatypes and shapes.
    Inspect {
        /// The .onnx file.
        file: PathBuf,
    },
    /// Run one inference without a server and print the outputs as JSON.
    Predict {
        /// The .onnx file.
        file: PathBuf,
        /// `{"inputs": {"NAME": nested array}}`, or a bare nested array for a single-input model.
        #[arg(long)]
        input: String,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Folder of .onnx files and decoder folders [default: the bundled models/ folder]
    #[arg(long)]
    models: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free one) [default: the PORT environment variable, as
    /// Knative and KServe set it, else 8000]
    #[arg(long)]
    port: Option<u16>,
    /// Listen while the models load, answering the probes: /healthz and /v2/health/live 200,
    /// /readyz, /v2/health/ready and /v2/models/NAME/ready 503 (anything else 404); without it
    /// nothing listens until the models are loaded. `listening on` is printed once they are.
    #[arg(long)]
    probe_while_loading: bool,
    /// Serve the one model at --models (a .onnx file whatever its name, a folder holding one,
    /// or a decoder folder) under this name: KServe's storage initializer puts the model at
    /// /mnt/models and the runtime names it `{{.Name}}`.
    #[arg(long, value_name = "NAME")]
    model_name: Option<String>,
    /// `none`: load every model of --models (Triton's default); `explicit`: load only the
    /// --load-model ones, then what POST /v2/repository/models/NAME/load asks for.
    #[arg(long, value_enum, default_value = "none")]
    model_control_mode: ControlModeArg,
    /// With --model-control-mode explicit, a model to load at start-up (repeatable).
    #[arg(long = "load-model", value_name = "NAME")]
    load_models: Vec<String>,
    /// Poll --models every second: new and changed models load (once their files are the same
    /// at two polls, and after a warm-up run) and replace the old ones without a failed
    /// request; removed ones stop being served. Decoder and encoder folders too.
    #[arg(long)]
    watch: bool,
    /// Exit at start-up when any model fails to load (without it, such a model is UNAVAILABLE
    /// in the repository index, /v2/health/ready says 503, and the others serve).
    #[arg(long)]
    exit_on_error: bool,
    /// Handlers running at once (worker turns) [default: 256]
    #[arg(long)]
    workers: Option<usize>,
    /// Largest request body in bytes; larger bodies get 413.
    #[arg(long, default_value_t = Settings::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Requests waiting for a worker turn; beyond it requests get 503.
    #[arg(long, default_value_t = Settings::default().queue_capacity)]
    queue_capacity: usize,
    /// Open connections; when all are taken a new connection takes the slot of the one idle
    /// longest, else one of 16 reserved slots that answer only the health probes, else 503.
    #[arg(long, default_value_t = Settings::default().max_connections)]
    max_connections: usize,
    /// Open connections from one client address (IPv6: one /64), the trusted proxies
    /// (--forwarded-allow-ips) exempt; beyond it 503. 0 turns the cap off.
    #[arg(long, default_value_t = Settings::default().max_connections_per_ip)]
    max_connections_per_ip: usize,
    /// Streamed responses at once; beyond it streams get 503 [default: workers / 2]
    #[arg(long)]
    max_streams: Option<usize>,
    /// Largest request line plus headers, in bytes; larger gets 431.
    #[arg(long, default_value_t = Settings::default().max_head_bytes)]
    max_head_bytes: usize,
    /// Most headers in a request; more gets 431.
    #[arg(long, default_value_t = Settings::default().max_headers)]
    max_headers: usize,
    /// Seconds allowed to receive a request head; then 408 and close. A new connection that
    /// sends nothing in this time is closed.
    #[arg(long, default_value_t = Settings::default().head_timeout.as_secs())]
    head_timeout: u64,
    /// Seconds allowed to receive a whole request, head and body, from its first byte; then
    /// 408 and close.
    #[arg(long, default_value_t = Settings::default().request_timeout.as_secs())]
    request_timeout: u64,
    /// Seconds a body read or a response write may stall before the connection closes.
    #[arg(long, default_value_t = Settings::default().io_timeout.as_secs())]
    io_timeout: u64,
    /// Seconds an idle keep-alive connection stays open.
    #[arg(long, default_value_t = Settings::default().keep_alive_timeout.as_secs())]
    keep_alive_timeout: u64,
    /// ONNX Runtime sessions per model (1 = a lock per model) [default: one per core for
    /// model files under 1 MiB, else 1]
    #[arg(long)]
    sessions_per_model: Option<usize>,
    /// ONNX Runtime intra-op threads per session [default: cores / sessions]
    #[arg(long)]
    intra_threads: Option<usize>,
    /// Dynamic batching (repeatable): `N` for every model with a dynamic first dimension, or
    /// `MODEL=N` for one model; concurrent requests are run together, up to N rows. Off by
    /// default, except for embedding models: their requests' texts run together, up to 256,
    /// without a wait (`MODEL=1` turns that off).
    #[arg(long = "max-batch-size", value_name = "[MODEL=]N")]
    max_batch_size: Vec<String>,
    /// How long the first request of a batch waits for others, in microseconds.
    #[arg(long, default_value_t = 500)]
    batch_timeout_us: u64,
    /// Largest answer to one inference, in bytes; a request whose outputs cannot fit gets 400.
    #[arg(long, default_value_t = tinyserve::model::MAX_RESPONSE_BYTES)]
    max_response_bytes: usize,
    /// Bytes of KV cache all generations of one decoder folder may hold together: each
    /// reserves (prompt + max_tokens) × layers × kv_heads × head_size × 8 bytes before it
    /// starts; 400 when one alone needs more, 503 while others hold it [default: no budget;
    /// each generation is bounded by the model's context, their number by --workers]
    #[arg(long)]
    kv_cache_bytes: Option<u64>,
    /// An OpenAI-compatible provider (repeatable): `/v1` requests for model `NAME/model` go to
    /// URL (such as https://api.openai.com/v1). Options after commas: `key-env=VAR`, its
    /// `Authorization: Bearer` token from the environment variable VAR; `ca=FILE`, a PEM CA
    /// bundle trusted besides the platform's roots (and SSL_CERT_FILE / SSL_CERT_DIR);
    /// `deadline=SECS`, the longest a streamed answer may take in all [default: 600].
    /// HTTPS_PROXY, HTTP_PROXY and NO_PROXY choose a forward proxy.
    #[arg(
        long = "upstream",
        value_name = "NAME=URL[,key-env=VAR][,ca=FILE][,deadline=SECS]"
    )]
    upstreams: Vec<String>,
    /// Peers whose X-Forwarded-* / Forwarded headers are trusted: IPs, CIDRs, or `*` (any
    /// peer: only safe when the server is reachable through the proxy alone).
    #[arg(long, default_value = "127.0.0.1,::1")]
    forwarded_allow_ips: String,
    /// The path prefix the proxy serves the API under (such as /api), used in generated links.
    #[arg(long, default_value = "")]
    root_path: String,
    /// Access and error log format on stderr.
    #[arg(long, value_enum, default_value = "human")]
    log_format: LogFormatArg,
    /// Least severe log level written (info includes one line per request).
    #[arg(long, value_enum, default_value = "info")]
    log_level: LogLevelArg,
    /// Seconds to keep serving after SIGTERM/SIGINT with /readyz answering 503, so load
    /// balancers stop sending before the listener closes.
    #[arg(long, default_value_t = 5.0)]
    shutdown_grace: f64,
    /// Seconds requests in flight (streams included) get to finish after the listener closes.
    #[arg(long, default_value_t = Settings::default().drain_timeout.as_secs())]
    drain_timeout: u64,
    /// An origin allowed to call from a browser (repeatable; `*` for any). Off by default.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    cors_origins: Vec<String>,
    /// Require `Authorization: Bearer <key>` on everything but the health probes; the key is
    /// read from this environment variable.
    #[arg(long, value_name = "VAR")]
    api_key_env: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ControlModeArg {
    None,
    Explicit,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormatArg {
    Human,
    Json,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogLevelArg {
    Error,
    Warn,
    Info,
    Debug,
}

/// glibc's malloc serves an allocation from its heaps, where freed memory stays, unless it is
/// at least the mmap threshold; each large free raises that threshold (up to 32 MiB), so after
/// a few large requests their buffers stay with the process: 400 MB after bursts of 6-10 MB
/// bodies (docs/hostile-clients.md). A fixed threshold of 1 MiB gives every large buffer back
/// when freed. It can only be set before the process starts (`mallopt` needs unsafe code), so
/// the server starts itself again with `MALLOC_MMAP_THRESHOLD_` set, unless the environment
/// already sets it or any malloc tunable.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_freed_memory() {
    use std::os::unix::process::CommandExt;
    const THRESHOLD: &str = "MALLOC_MMAP_THRESHOLD_";
    if std::env::var_os(THRESHOLD).is_some() || std::env::var_os("GLIBC_TUNABLES").is_some() {
        return;
    }
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_default();
    // Returns only if the exec failed: then the server runs with glibc's defaults.
    let _ = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .env(THRESHOLD, "1048576")
        .exec();
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_freed_memory() {}

fn main() -> ExitCode {
    return_freed_memory();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Inspect { file } => inspect(&file),
        Command::Predict { file, input } => predict(&file, &input),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", err.chain());
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> tinyserve::Result<()> {
    let dir = args.models.clone().unwrap_or_else(bundled_models);
    let mut options = ModelOptions::default();
    options.sessions = args.sessions_per_model;
    options.intra_threads = args.intra_threads;
    options.batch_timeout = Duration::from_micros(args.batch_timeout_us);
    options.max_response_bytes = args.max_response_bytes;
    options.kv_cache_bytes = args.kv_cache_bytes;
    for spec in &args.max_batch_size {
        let bad = || {
            tinyserve::Error::bad_request(format!("--max-batch-size {spec}: expected N or MODEL=N"))
        };
        match spec.split_once('=') {
            Some((model, n)) => {
                let n = n.parse().map_err(|_| bad())?;
                options.batch_overrides.insert(model.to_string(), n);
            }
            None => options.max_batch_size = spec.parse().map_err(|_| bad())?,
        }
    }
    let port = match args.port {
        Some(port) => port,
        None => port_from_env()?,
    };
    let mut settings = Settings::default();
    if let Some(workers) = args.workers {
        settings.workers = workers.max(1);
    }
    settings.max_body_bytes = args.max_body_bytes;
    settings.queue_capacity = args.queue_capacity;
    settings.max_connections = args.max_connections;
    settings.max_connections_per_ip = args.max_connections_per_ip;
    settings.max_streams = args.max_streams;
    settings.max_head_bytes = args.max_head_bytes;
    settings.max_headers = args.max_headers;
    settings.head_timeout = Duration::from_secs(args.head_timeout);
    settings.request_timeout = Duration::from_secs(args.request_timeout);
    settings.io_timeout = Duration::from_secs(args.io_timeout);
    settings.keep_alive_timeout = Duration::from_secs(args.keep_alive_timeout);
    settings.drain_timeout = Duration::from_secs(args.drain_timeout);
    settings.trusted_proxies = TrustedProxies::parse(&args.forwarded_allow_ips)?;
    if !args.root_path.is_empty() && !root_path_ok(&args.root_path) {
        return Err(tinyserve::Error::bad_request(format!(
            "--root-path {:?}: expected a path such as /api",
            args.root_path
        )));
    }
    settings.root_path = args.root_path.trim_end_matches('/').to_string();
    settings.cors_origins = args.cors_origins.clone();
    settings.access_log = matches!(args.log_level, LogLevelArg::Info | LogLevelArg::Debug);
    if let Some(var) = &args.api_key_env {
        let key = std::env::var(var)
            .ok()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                tinyserve::Error::bad_request(format!(
                    "--api-key-env {var}: the variable is not set"
                ))
            })?;
        settings.api_key = Some(ApiKey::new(key));
    }
    let level = match args.log_level {
        LogLevelArg::Error => LogLevel::Error,
        LogLevelArg::Warn => LogLevel::Warn,
        LogLevelArg::Info => LogLevel::Info,
        LogLevelArg::Debug => LogLevel::Debug,
    };
    let format = match args.log_format {
        LogFormatArg::Human => LogFormat::Human,
        LogFormatArg::Json => LogFormat::Json,
    };
    // Installed once, before anything logs; a second logger cannot be there yet.
    let _ = Logger::new(level, format).install();
    let loading = match args.probe_while_loading {
        true => Some(loading_server(settings.clone(), &args.host, port)?),
        false => None,
    };
    let repository = open_repository(&args, &dir, &options)?;
    let models = repository.registry();
    // The loaded server takes over the port the probes were answered on.
    let port = match loading {
        Some(server) => {
            let port = server.addr().port();
            server.shutdown();
            port
        }
        None => port,
    };
    let upstreams = args
        .upstreams
        .iter()
        .map(|spec| parse_upstream(spec))
        .collect::<tinyserve::Result<Vec<Upstream>>>()?;
    for upstream in &upstreams {
        protocol::probe_upstream(upstream);
    }
    let ready = protocol::Readiness::new(true);
    let app = App::new().with_settings(settings);
    let app = protocol::mount_repository(app, &repository, &ready, &upstreams);
    let server = app.bind((args.host.as_str(), port))?;
    #[cfg_attr(not(feature = "language-models"), allow(unused_mut))]
    let mut names: Vec<String> = models.iter().map(|m| m.name().to_string()).collect();
    #[cfg(feature = "language-models")]
    names.extend(models.decoders().map(|d| {
        let layout = d.layout();
        format!(
            "{} (decoder, context {}, KV cache up to {} bytes per stream)",
            d.name(),
            layout.context,
            layout.cache_bytes()
        )
    }));
    #[cfg(feature = "language-models")]
    names.extend(models.encoders().map(|e| {
        format!(
            "{} (embeddings, dimension {}, up to {} tokens per input)",
            e.name(),
            e.dimension(),
            e.max_length()
        )
    }));
    log::info!(
        "loaded {} model(s) from {}: {}",
        names.len(),
        dir.display(),
        names.join(", ")
    );
    for (name, why) in repository.failures() {
        log::warn!("model \"{name}\" is UNAVAILABLE: {why}");
    }
    let _watcher = match args.watch {
        true => Some(Watcher::start(&repository, Duration::from_secs(1))?),
        false => None,
    };
    let grace = Duration::from_secs_f64(args.shutdown_grace.max(0.0));
    stop_on_signals(&server, &ready, grace)?;
    tinyserve::log::listening(server.addr());
    server.join();
    log::info!("stopped");
    Ok(())
}

/// The models: the one of --model-name, or the repository at `dir` in the control mode asked
/// for; with --exit-on-error, the first model that failed to load is the error.
fn open_repository(
    args: &ServeArgs,
    dir: &Path,
    options: &ModelOptions,
) -> tinyserve::Result<ModelRepository> {
    let explicit = args.model_control_mode == ControlModeArg::Explicit;
    if let Some(name) = &args.model_name {
        if args.watch || explicit || !args.load_models.is_empty() {
            return Err(tinyserve::Error::bad_request(
                "--model-name serves one model: it cannot be combined with --watch, \
                 --model-control-mode explicit or --load-model",
            ));
        }
        let registry = ModelRegistry::load_one_with(dir, name, options)?;
        return Ok(ModelRepository::from_registry(registry));
    }
    if !explicit && !args.load_models.is_empty() {
        return Err(tinyserve::Error::bad_request(
            "--load-model needs --model-control-mode explicit (without it every model loads)",
        ));
    }
    let mode = match explicit {
        true => ControlMode::Explicit,
        false => ControlMode::All,
    };
    let repository = ModelRepository::open(dir, options, mode, &args.load_models)?;
    if args.exit_on_error {
        if let Some((name, why)) = repository.failures().into_iter().next() {
            return Err(tinyserve::Error::new(
                tinyserve::ErrorKind::Internal,
                format!("model \"{name}\": {why}"),
            ));
        }
    }
    Ok(repository)
}

/// SIGTERM or SIGINT: readiness turns 503 at once; after `grace` the listener closes and
/// requests in flight get the drain timeout to finish; then `serve` returns (exit code 0).
/// A second signal exits at once.
fn stop_on_signals(
    server: &tinyserve::Server,
    ready: &protocol::Readiness,
    grace: Duration,
) -> tinyserve::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    let (handle, ready) = (server.shutdown_handle(), ready.clone());
    std::thread::Builder::new()
        .name("tinyserve-signals".into())
        .spawn(move || {
            let mut seen = 0;
            for signal in signals.forever() {
                seen += 1;
                if seen > 1 {
                    log::info!("second signal: exiting now");
                    std::process::exit(128 + signal);
                }
                ready.set(false);
                log::info!(
                    "signal {signal}: not ready; closing the listener in {:.1} s, then draining",
                    grace.as_secs_f64()
                );
                let handle = handle.clone();
                let _ = std::thread::Builder::new()
                    .name("tinyserve-drain".into())
                    .spawn(move || {
                        std::thread::sleep(grace);
                        handle.shutdown();
                    });
            }
        })?;
    Ok(())
}

/// A server for the time the models load: the liveness probes answer 200, the readiness
/// probes 503 `not_ready`, so an orchestrator neither restarts a slow-loading server nor sends
/// it traffic (KServe's v2 health protocol: live means the server answers, ready that its
/// models are loaded).
fn loading_server(
    settings: Settings,
    host: &str,
    port: u16,
) -> tinyserve::Result<tinyserve::Server> {
    fn not_ready(_: &tinyserve::Request) -> tinyserve::Result<tinyserve::Json<serde_json::Value>> {
        Err(tinyserve::Error::new(
            tinyserve::ErrorKind::NotReady,
            "models are loading",
        ))
    }
    App::new()
        .with_settings(settings)
        .get("/healthz", |_| {
            tinyserve::Json(serde_json::json!({"status": "ok"}))
        })
        .get("/v2/health/live", |_| {
            tinyserve::Json(serde_json::json!({"live": true}))
        })
        .get("/readyz", not_ready)
        .get("/v2/health/ready", not_ready)
        .get("/v2/models/<name>/ready", not_ready)
        .bind((host, port))
}

/// The port in the `PORT` environment variable (Knative and KServe set it to the container's
/// port), else 8000.
fn port_from_env() -> tinyserve::Result<u16> {
    match std::env::var("PORT") {
        Ok(text) if !text.trim().is_empty() => text.trim().parse().map_err(|_| {
            tinyserve::Error::bad_request(format!(
                "PORT={text:?}: expected a port number (0 to 65535)"
            ))
        }),
        _ => Ok(8000),
    }
}

/// A `--root-path` such as `/api`: it ends up in generated links, so nothing else.
fn root_path_ok(path: &str) -> bool {
    path.starts_with('/')
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-._~".contains(&b))
}

/// `NAME=URL[,key-env=VAR][,ca=FILE][,deadline=SECS]`: the key comes from the environment,
/// never from the command line; the URL is checked and the CA file read now.
fn parse_upstream(spec: &str) -> tinyserve::Result<Upstream> {
    let bad = |why: &str| tinyserve::Error::bad_request(format!("--upstream {spec}: {why}"));
    let (name, rest) = spec
        .split_once('=')
        .ok_or_else(|| bad("expected NAME=URL"))?;
    let mut parts = rest.split(',');
    let url = parts.next().unwrap_or_default();
    if name.is_empty() || name.contains('/') {
        return Err(bad("expected NAME=URL with a NAME without '/'"));
    }
    // LLM providers can take minutes for a long completion.
    let mut upstream = Upstream::new(name, url).with_timeout(Duration::from_secs(300));
    upstream.check_url().map_err(|err| {
        bad(err
            .message()
            .trim_start_matches(&format!("upstream \"{name}\": ")))
    })?;
    for option in parts {
        upstream = match option.split_once('=') {
            Some(("key-env", var)) => {
                let key = std::env::var(var)
                    .map_err(|_| bad(&format!("environment variable {var} is not set")))?;
                upstream.with_header("Authorization", format!("Bearer {key}"))
            }
            Some(("ca", file)) => upstream
                .with_ca_file(file)
                .map_err(|err| bad(err.message()))?,
            Some(("deadline", secs)) => match secs.parse::<f64>() {
                Ok(secs) if secs > 0.0 && secs.is_finite() => {
                    upstream.with_stream_deadline(Duration::from_secs_f64(secs))
                }
                _ => return Err(bad("deadline= expects a number of seconds")),
            },
            _ => {
                return Err(bad(&format!(
                    "unknown option {option:?} (key-env=VAR, ca=FILE, deadline=SECS)"
                )))
            }
        };
    }
    Ok(upstream)
}

/// `./models` when run from a checkout, else the folder next to the crate's manifest.
fn bundled_models() -> PathBuf {
    let here = PathBuf::from("models");
    if here.is_dir() {
        here
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
    }
}

fn load_one(file: &Path) -> tinyserve::Result<Model> {
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut options = ModelOptions::default();
    options.sessions = Some(1);
    Model::load(&name, file, &options)
}

fn inspect(file: &Path) -> tinyserve::Result<()> {
    let model = load_one(file)?;
    println!("model {} ({})", model.name(), file.display());
    let print = |title: &str, specs: &[TensorSpec]| {
        println!("{title}:");
        for spec in specs {
            println!(
                "  {:<20} {:<6} {}",
                spec.name,
                spec.datatype.as_str(),
                spec.shape_text()
            );
        }
    };
    print("inputs", &model.signature().inputs);
    print("outputs", &model.signature().outputs);
    Ok(())
}

fn predict(file: &Path, input: &str) -> tinyserve::Result<()> {
    let model = load_one(file)?;
    let body = serde_json::from_str(input).map_err(tinyserve::Error::from_json)?;
    let outputs = protocol::predict(&model, body)?;
    println!("{outputs}");
    Ok(())
}
