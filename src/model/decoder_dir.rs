//! What makes a folder a decoder folder. Checked in every build, so that a build without the
//! `language-models` feature refuses such a folder instead of skipping it.

use std::path::Path;

/// The files that make a folder a decoder folder; the first is the model.
pub const REQUIRED_FILES: [&str; 2] = ["model.onnx", "tokenizer.json"];

/// Whether `dir` looks like a decoder folder (it has any of [`REQUIRED_FILES`]). Checked in
/// every build, so that a build without the `language-models` feature refuses such a folder
/// instead of skipping it.
pub(crate) fn is_decoder_dir(dir: &Path) -> bool {
    dir.is_dir() && REQUIRED_FILES.iter().any(|f| dir.join(f).is_file())
}

/// Which of [`REQUIRED_FILES`] `dir` lacks, for the error that names them (decoder and encoder
/// folders need the same two).
#[cfg(feature = "language-models")]
pub(crate) fn missing_files(dir: &Path) -> Vec<&'static str> {
    REQUIRED_FILES
        .iter()
        .copied()
        .filter(|f| !dir.join(f).is_file())
        .collect()
}
