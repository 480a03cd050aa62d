//! The machines users have: every pinned ONNX Runtime wheel (Linux x86-64, Linux aarch64,
//! macOS arm64) still exists on the package index with its pinned SHA-256 and library member.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tinyserve::model::runtime::{Wheel, ORT_VERSION, WHEELS};

use crate::support::process::run;

/// Where verified wheels are kept between runs (outside the checkout, so a fresh clone in CI
/// reuses them): `$TINYSERVE_WHEEL_CACHE`, else `~/.cache/tinyserve-wheels`.
fn wheel_cache() -> PathBuf {
    match std::env::var_os("TINYSERVE_WHEEL_CACHE").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME").expect("HOME is set");
            PathBuf::from(home).join(".cache").join("tinyserve-wheels")
        }
    }
}

fn sha256(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    Some(format!("{:x}", Sha256::digest(&bytes)))
}

/// The wheel, downloaded with pip exactly as tinyserve's own fetch does, unless the cache
/// already holds a file with the pinned hash.
fn downloaded(wheel: &Wheel) -> PathBuf {
    let dir = wheel_cache().join(wheel.platform);
    let path = dir.join(wheel.file);
    if sha256(&path).as_deref() == Some(wheel.sha256) {
        return path;
    }
    std::fs::create_dir_all(&dir).expect("create the wheel cache");
    let mut pip = Command::new("python3");
    pip.args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--python-version", "3.11", "--platform", wheel.platform])
        .arg(format!("onnxruntime=={ORT_VERSION}"))
        .arg("-d")
        .arg(&dir);
    let out = run(pip, Duration::from_secs(600));
    assert!(
        out.success,
        "pip cannot download the pinned wheel for {}: {}",
        wheel.target,
        out.report()
    );
    path
}

#[test]
fn every_pinned_wheel_exists_with_its_hash_and_library() {
    for wheel in &WHEELS {
        let path = downloaded(wheel);
        assert_eq!(
            sha256(&path).as_deref(),
            Some(wheel.sha256),
            "{}: {} is not the pinned file (pip left {:?})",
            wheel.target,
            wheel.file,
            std::fs::read_dir(path.parent().expect("a directory"))
                .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
        );
        let mut check = Command::new("python3");
        check
            .args([
                "-c",
                "import sys, zipfile; info = zipfile.ZipFile(sys.argv[1]).getinfo(sys.argv[2]); \
                 print(info.file_size)",
            ])
            .arg(&path)
            .arg(wheel.member);
        let out = run(check, Duration::from_secs(60));
        assert!(
            out.success,
            "{}: no {} in {}: {}",
            wheel.target,
            wheel.member,
            wheel.file,
            out.report()
        );
        let size: u64 = out.stdout.trim().parse().unwrap_or(0);
        assert!(
            size > 1 << 20,
            "{}: {} is {size} bytes",
            wheel.target,
            wheel.member
        );
    }
}
