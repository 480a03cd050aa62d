//! Unit tests of locating, fetching and loading the ONNX Runtime library.
use super::fetch::sha256_file;
use super::*;
use std::fs;

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
