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
use std::fs::{self, File};
use std::io::{self, Read};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Once, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use ort::environment::Environment;
use sha2::{Digest, Sha256};

use crate::{Error, ErrorKind, Result};

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

/// A fresh, uniquely named directory in `parent` whose name starts with `.fetch-`; removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(parent: &Path) -> io::Result<TempDir> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut attempt = 0u32;
        loop {
            let path = parent.join(format!(".fetch-{}-{nanos}-{attempt}", std::process::id()));
            match fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir(path)),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => {
                    attempt += 1
                }
                Err(err) => return Err(err),
            }
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Fetches the pinned wheel with pip, verifies it and unpacks the library atomically to `lib`.
fn fetch(wheel: &Wheel, lib: &Path) -> Result<()> {
    let dir = lib.parent().unwrap_or(Path::new("."));
    let io_error = |what: &str, path: &Path, err: io::Error| {
        startup_error(format!(
            "could not {what} {}: {err}. Set TINYSERVE_CACHE_DIR to a writable directory, or set ORT_DYLIB_PATH.",
            path.display()
        ))
    };
    fs::create_dir_all(dir).map_err(|e| io_error("create the cache directory", dir, e))?;

    // Serialize fetchers across processes; the rename below keeps readers safe even without the lock.
    let lock_path = dir.join(".lock");
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| io_error("create the lock file", &lock_path, e))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            eprintln!(
                "waiting for another process to fetch ONNX Runtime {ORT_VERSION} into {}",
                lib.display()
            );
            lock.lock().map_err(|e| io_error("lock", &lock_path, e))?;
        }
        // Locking unsupported (some network filesystems): fetch unlocked; the rename is still atomic.
        Err(fs::TryLockError::Error(_)) => {}
    }
    if lib.is_file() {
        return Ok(()); // another process fetched it while we waited
    }
    // Whoever held the lock before us and left a `.fetch-*` directory behind has crashed.
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(".fetch-") {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }

    eprintln!(
        "fetching ONNX Runtime {ORT_VERSION} with pip into {}",
        lib.display()
    );
    let tmp = TempDir::new(dir).map_err(|e| io_error("create a temporary directory in", dir, e))?;

    let pip_args = pip_args(wheel);
    let mut args: Vec<&OsStr> = pip_args.iter().map(OsStr::new).collect();
    args.push(tmp.0.as_os_str());
    run_python(&args, &pip_command_line(wheel, &tmp.0))?;

    let file = find_wheel(wheel, &tmp.0)?;
    let actual = sha256_file(&file).map_err(|e| io_error("read", &file, e))?;
    if actual != wheel.sha256 {
        let _ = fs::remove_file(&file);
        return Err(startup_error(format!(
            "the wheel pip downloaded, {}, has SHA-256 {actual}, but the pinned onnxruntime {ORT_VERSION} wheel \
             ({}) has SHA-256 {}; the file was deleted. Check which index pip uses \
             (PIP_INDEX_URL, PIP_FIND_LINKS, pip.conf), or set ORT_DYLIB_PATH to a library you trust.",
            file.display(),
            wheel.file,
            wheel.sha256,
        )));
    }

    let part = tmp.0.join(format!("{}.part", wheel.library));
    let unzip_args = [
        OsStr::new("-c"),
        OsStr::new(UNZIP_SCRIPT),
        file.as_os_str(),
        OsStr::new(wheel.member),
        part.as_os_str(),
    ];
    let unzip_line = format!(
        "python3 -c {} {} {} {}",
        shell_quote(UNZIP_SCRIPT),
        shell_quote(&file.to_string_lossy()),
        wheel.member,
        shell_quote(&part.to_string_lossy())
    );
    run_python(&unzip_args, &unzip_line)?;
    File::open(&part)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_error("sync", &part, e))?;
    fs::rename(&part, lib).map_err(|e| io_error("move the library into place at", lib, e))?;
    drop(tmp);
    drop(lock);
    Ok(())
}

/// Runs `python3 <args>`, capturing its output; `line` is the command as shown in errors.
fn run_python(args: &[&OsStr], line: &str) -> Result<()> {
    let output = Command::new("python3")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|err| {
            startup_error(format!(
                "could not run python3 to fetch ONNX Runtime {ORT_VERSION}: {err}. Install Python 3 with pip, \
                 or set ORT_DYLIB_PATH."
            ))
        })?;
    if output.status.success() {
        return Ok(());
    }
    let text = if output.stderr.iter().any(|b| !b.is_ascii_whitespace()) {
        String::from_utf8_lossy(&output.stderr)
    } else {
        String::from_utf8_lossy(&output.stdout)
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(12)..].join("\n  ");
    Err(startup_error(format!(
        "could not fetch ONNX Runtime {ORT_VERSION}: `{line}` failed ({}):\n  {tail}\n\
         Check pip's network and index settings (HTTPS_PROXY, PIP_INDEX_URL, pip.conf).",
        output.status
    )))
}

/// The one wheel pip left in `dir`.
fn find_wheel(wheel: &Wheel, dir: &Path) -> Result<PathBuf> {
    let exact = dir.join(wheel.file);
    if exact.is_file() {
        return Ok(exact);
    }
    let wheels: Vec<PathBuf> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension() == Some(OsStr::new("whl")))
                .collect()
        })
        .unwrap_or_default();
    match <[PathBuf; 1]>::try_from(wheels) {
        // A differently named wheel can only pass if its hash is the pinned one.
        Ok([wheel]) => Ok(wheel),
        Err(wheels) => Err(startup_error(format!(
            "pip finished but left {} wheel files instead of {} in {}.",
            wheels.len(),
            wheel.file,
            dir.display()
        ))),
    }
}

/// The lowercase hex SHA-256 of a file.
fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
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
mod tests {
    use super::*;

    fn os(s: &str) -> Option<&OsStr> {
        Some(OsStr::new(s))
    }

    #[test]
    fn tinyserve_cache_dir_wins() {
        let root = cache_root(os("/srv/cache"), os("/xdg"), os("/home/u"));
        assert_eq!(root, Some(PathBuf::from("/srv/cache")));
    }

    #[test]
    fn xdg_cache_home_comes_next() {
        let root = cache_root(None, os("/xdg"), os("/home/u"));
        assert_eq!(root, Some(PathBuf::from("/xdg/tinyserve")));
    }

    #[test]
    fn home_is_the_fallback() {
        let root = cache_root(None, None, os("/home/u"));
        assert_eq!(root, Some(PathBuf::from("/home/u/.cache/tinyserve")));
    }

    #[test]
    fn empty_values_count_as_unset() {
        let root = cache_root(os(""), os(""), os("/home/u"));
        assert_eq!(root, Some(PathBuf::from("/home/u/.cache/tinyserve")));
        assert_eq!(cache_root(os(""), os(""), os("")), None);
        assert_eq!(cache_root(None, None, None), None);
    }

    #[test]
    fn relative_xdg_cache_home_is_ignored() {
        let root = cache_root(None, os("relative/cache"), os("/home/u"));
        assert_eq!(root, Some(PathBuf::from("/home/u/.cache/tinyserve")));
        assert_eq!(cache_root(None, os("relative"), None), None);
    }

    #[test]
    fn library_lives_in_a_versioned_directory() {
        assert_eq!(
            library_path(Path::new("/c"), &WHEELS[0]),
            PathBuf::from("/c/onnxruntime-1.32.0/libonnxruntime.so.1.32.0")
        );
        assert!(VERSION_DIR.ends_with(ORT_VERSION));
        for wheel in &WHEELS {
            assert!(wheel.member.ends_with(wheel.library), "{wheel:?}");
            assert!(wheel.library.contains(ORT_VERSION), "{wheel:?}");
            assert!(wheel.file.contains(ORT_VERSION), "{wheel:?}");
            assert!(wheel.file.contains(wheel.platform), "{wheel:?}");
            assert_eq!(wheel.sha256.len(), 64, "{wheel:?}");
        }
    }

    #[test]
    fn each_supported_target_has_one_wheel_and_others_get_one_line() {
        let mut targets: Vec<&str> = WHEELS.iter().map(|w| w.target).collect();
        targets.sort_unstable();
        targets.dedup();
        assert_eq!(targets.len(), WHEELS.len(), "one wheel per target");
        // This crate's own CI builds on x86-64 Linux, aarch64 Linux and (checked) macOS arm64.
        assert_eq!(pinned_wheel().is_some(), !TARGET.is_empty());
        let line = unsupported_target();
        assert!(!line.contains('\n'), "{line}");
        for wheel in &WHEELS {
            assert!(line.contains(wheel.target), "{line}");
        }
        assert!(line.contains("ORT_DYLIB_PATH"), "{line}");
    }

    #[test]
    fn missing_library_is_an_error_not_a_panic() {
        let path = Path::new("/nonexistent/tinyserve-test/libonnxruntime.so");
        let err = load(path, Origin::EnvVar).map(|_| ()).err();
        let err = err.as_ref().map(|e| (e.kind(), e.message().to_owned()));
        let Some((kind, message)) = err else {
            panic!("loading a missing library succeeded");
        };
        assert_eq!(kind, ErrorKind::Internal);
        assert!(
            message.contains("/nonexistent/tinyserve-test/libonnxruntime.so"),
            "{message}"
        );
        assert!(message.contains("ORT_DYLIB_PATH"), "{message}");
        assert!(message.contains(">= 1.24"), "{message}");
        assert!(
            message.contains("python3 -m pip download --no-deps --only-binary=:all:"),
            "{message}"
        );
        let member = pinned_wheel().map_or("", |w| w.member);
        assert!(message.contains(member), "{message}");
    }

    #[test]
    fn fetch_command_is_complete() {
        let line = fetch_command_line(
            &WHEELS[0],
            Path::new("/c/onnxruntime-1.32.0/libonnxruntime.so.1.32.0"),
        );
        assert_eq!(
            line,
            "python3 -m pip download --no-deps --only-binary=:all: --python-version 3.11 \
             --platform manylinux_2_28_x86_64 onnxruntime==1.32.0 -d /c/onnxruntime-1.32.0 \
             && python3 -c 'import sys, shutil, zipfile; z = zipfile.ZipFile(sys.argv[1]); \
             d = open(sys.argv[3], \"wb\"); shutil.copyfileobj(z.open(sys.argv[2]), d); d.close()' \
             /c/onnxruntime-1.32.0/onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl \
             onnxruntime/capi/libonnxruntime.so.1.32.0 /c/onnxruntime-1.32.0/libonnxruntime.so.1.32.0"
        );
    }

    #[test]
    fn quiet_catch_unwind_catches_and_restores() {
        let outcome = quiet_catch_unwind(|| -> u8 { panic!("boom") });
        let payload = outcome
            .err()
            .and_then(|p| p.downcast_ref::<&str>().map(|s| (*s).to_owned()));
        assert_eq!(payload.as_deref(), Some("boom"));
        assert!(!QUIET.with(Cell::get));
        assert_eq!(quiet_catch_unwind(|| 7).ok(), Some(7));
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("/a/b.so"), "/a/b.so");
        assert_eq!(shell_quote("/a b"), "'/a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn sha256_is_lowercase_hex() -> std::io::Result<()> {
        let dir = std::env::temp_dir().join(format!("tinyserve-sha-{}", std::process::id()));
        fs::create_dir_all(&dir)?;
        let file = dir.join("abc");
        fs::write(&file, b"abc")?;
        let hash = sha256_file(&file);
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(
            hash?,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        Ok(())
    }
}
