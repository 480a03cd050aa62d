//! The registry: broken and empty folders fail naming what is wrong; clones share the models.

use std::path::PathBuf;
use std::sync::Arc;

use tinyserve::model::ModelRegistry;

use crate::support::{repo, scratch_dir};

#[test]
fn broken_model_folder_fails_naming_the_file() {
    let err =
        ModelRegistry::load_dir(repo("models/tests/broken")).expect_err("broken folder loads");
    assert!(
        err.message().contains("not_a_model.onnx"),
        "message should name the file: {}",
        err.message()
    );
}

/// A fresh empty directory under the system temp dir, removed on drop.
struct EmptyDir(PathBuf);

impl EmptyDir {
    fn new() -> EmptyDir {
        EmptyDir(scratch_dir("empty"))
    }
}

impl Drop for EmptyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn empty_model_folder_fails_saying_so() {
    let dir = EmptyDir::new();
    // A file that is not .onnx does not count as a model.
    std::fs::write(dir.0.join("README.md"), "not a model").expect("write file");
    let err = ModelRegistry::load_dir(&dir.0).expect_err("empty folder loads");
    assert!(
        err.message().contains("no .onnx files"),
        "message: {}",
        err.message()
    );
    assert!(
        err.message().contains(&*dir.0.to_string_lossy()),
        "message should name the folder: {}",
        err.message()
    );

    let missing = dir.0.join("missing");
    let err = ModelRegistry::load_dir(&missing).expect_err("missing folder loads");
    assert!(
        err.message().contains(&*missing.to_string_lossy()),
        "message should name the folder: {}",
        err.message()
    );
}

#[test]
fn registry_clones_share_models() {
    let models = ModelRegistry::load_dir(repo("models")).expect("load models");
    let names: Vec<&str> = models.iter().map(|m| m.name()).collect();
    assert_eq!(names, ["bytelm", "iris"]);
    assert_eq!(models.len(), 2);
    let clone = models.clone();
    let a = models.get("iris").expect("iris");
    let b = clone.get("iris").expect("iris in clone");
    assert!(Arc::ptr_eq(&a, &b), "clones share the loaded model");
    let err = clone.get("nope").expect_err("unknown model");
    assert_eq!(err.status(), 404);
    assert!(err.message().contains("\"nope\""), "{}", err.message());
}
