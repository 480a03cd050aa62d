//! Fetching the pinned `onnxruntime` wheel with pip, checking its SHA-256 and unpacking the
//! library into the cache atomically.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

// The pins and the command lines stay in runtime.rs: the start-up error messages print
// them too, for someone fetching the library by hand.
use super::{
    pip_args, pip_command_line, shell_quote, startup_error, Wheel, ORT_VERSION, UNZIP_SCRIPT,
};
use crate::Result;

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
pub(super) fn fetch(wheel: &Wheel, lib: &Path) -> Result<()> {
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
pub(super) fn sha256_file(path: &Path) -> io::Result<String> {
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
