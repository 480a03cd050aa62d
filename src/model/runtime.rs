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

/// Pinned ONNX Runtime version and wheel.
pub const ORT_VERSION: &str = "1.32.0";

/// The oldest ONNX Runtime minor version `ort` (built with `api-24`) accepts, for messages.
const MIN_VERSION: &str = "1.24";
/// The pinned wheel's file name on PyPI.
const WHEEL_FILE: &str = "onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl";
/// The pinned wheel's SHA-256, as PyPI lists it.
const WHEEL_SHA256: &str = "5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d";
/// The library inside the wheel.
const WHEEL_MEMBER: &str = "onnxruntime/capi/libonnxruntime.so.1.32.0";
/// The library's file name in the cache.
const LIB_FILE: &str = "libonnxruntime.so.1.32.0";
/// The cache subdirectory for this version.
const VERSION_DIR: &str = "onnxruntime-1.32.0";
/// `pip download` arguments after `python3`, before `-d <dir>`.
const PIP_ARGS: [&str; 11] = [
    "-m",
    "pip",
    "download",
    "--no-deps",
    "--only-binary=:all:",
    "--python-version",
    "3.11",
    "--platform",
    "manylinux_2_28_x86_64",
    "onnxruntime==1.32.0",
    "-d",
];
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
fn library_path(root: &Path) -> PathBuf {
    root.join(VERSION_DIR).join(LIB_FILE)
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
fn suggested_library_path() -> PathBuf {
    match process_cache_root() {
        Some(root) => library_path(&root),
        None => std::env::temp_dir().join(VERSION_DIR).join(LIB_FILE),
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
fn pip_command_line(dir: &Path) -> String {
    format!(
        "python3 {} {}",
        PIP_ARGS.join(" "),
        shell_quote(&dir.to_string_lossy())
    )
}

/// The complete shell command that fetches the pinned library to `lib`.
fn fetch_command_line(lib: &Path) -> String {
    let dir = lib.parent().unwrap_or(Path::new("."));
    let wheel = dir.join(WHEEL_FILE);
    format!(
        "{} && python3 -c {} {} {} {}",
        pip_command_line(dir),
        shell_quote(UNZIP_SCRIPT),
        shell_quote(&wheel.to_string_lossy()),
        WHEEL_MEMBER,
        shell_quote(&lib.to_string_lossy()),
    )
}

/// The advice every error ends with: how to get a working library by hand.
fn manual_fix(lib: &Path) -> String {
    format!(
        "Set ORT_DYLIB_PATH to a libonnxruntime.so of version >= {MIN_VERSION} (tinyserve pins {ORT_VERSION}). \
         To fetch the pinned one, run:\n  {}\nthen start tinyserve again with ORT_DYLIB_PATH={} \
         (the wheel's SHA-256 should be {WHEEL_SHA256}).",
        fetch_command_line(lib),
        shell_quote(&lib.to_string_lossy()),
    )
}

/// A startup error: `problem`, then the manual fix.
fn startup_error(problem: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Internal,
        format!("{problem}\n{}", manual_fix(&suggested_library_path())),
    )
}

/// Returns the cached library, fetching it first if it is missing.
fn cached_library() -> Result<PathBuf> {
    let Some(root) = process_cache_root() else {
        return Err(startup_error(
            "cannot find a cache directory for ONNX Runtime: none of TINYSERVE_CACHE_DIR, XDG_CACHE_HOME \
             and HOME is set. Set TINYSERVE_CACHE_DIR to a writable directory, or set ORT_DYLIB_PATH.",
        ));
    };
    let lib = library_path(&root);
    if lib.is_file() {
        return Ok(lib);
    }
    fetch(&lib)?;
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
fn fetch(lib: &Path) -> Result<()> {
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

    let mut pip_args: Vec<&OsStr> = PIP_ARGS.iter().map(OsStr::new).collect();
    pip_args.push(tmp.0.as_os_str());
    run_python(&pip_args, &pip_command_line(&tmp.0))?;

    let wheel = find_wheel(&tmp.0)?;
    let actual = sha256_file(&wheel).map_err(|e| io_error("read", &wheel, e))?;
    if actual != WHEEL_SHA256 {
        let _ = fs::remove_file(&wheel);
        return Err(startup_error(format!(
            "the wheel pip downloaded, {}, has SHA-256 {actual}, but the pinned onnxruntime {ORT_VERSION} wheel \
             ({WHEEL_FILE}) has SHA-256 {WHEEL_SHA256}; the file was deleted. Check which index pip uses \
             (PIP_INDEX_URL, PIP_FIND_LINKS, pip.conf), or set ORT_DYLIB_PATH to a libonnxruntime.so you trust.",
            wheel.display()
        )));
    }

    let part = tmp.0.join(format!("{LIB_FILE}.part"));
    let unzip_args = [
        OsStr::new("-c"),
        OsStr::new(UNZIP_SCRIPT),
        wheel.as_os_str(),
        OsStr::new(WHEEL_MEMBER),
        part.as_os_str(),
    ];
    let unzip_line = format!(
        "python3 -c {} {} {WHEEL_MEMBER} {}",
        shell_quote(UNZIP_SCRIPT),
        shell_quote(&wheel.to_string_lossy()),
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
fn find_wheel(dir: &Path) -> Result<PathBuf> {
    let exact = dir.join(WHEEL_FILE);
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
            "pip finished but left {} wheel files instead of {WHEEL_FILE} in {}.",
            wheels.len(),
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
            library_path(Path::new("/c")),
            PathBuf::from("/c/onnxruntime-1.32.0/libonnxruntime.so.1.32.0")
        );
        assert!(WHEEL_MEMBER.ends_with(LIB_FILE));
        assert!(VERSION_DIR.ends_with(ORT_VERSION) && WHEEL_FILE.contains(ORT_VERSION));
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
        assert!(message.contains(WHEEL_MEMBER), "{message}");
    }

    #[test]
    fn fetch_command_is_complete() {
        let line = fetch_command_line(Path::new("/c/onnxruntime-1.32.0/libonnxruntime.so.1.32.0"));
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
