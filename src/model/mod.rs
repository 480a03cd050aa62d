//! Models: the ONNX Runtime library, signatures, tensors, the registry of loaded models and
//! the repository that changes it while the server runs (versions, load and unload, watch).
//!
//! Decoder folders (a Hugging Face tokenizer, a chat template and a model with a KV cache)
//! need the `language-models` feature (on by default); without it a registry that finds one
//! fails to load, saying so. So do encoder folders (sentence-transformers' layout), served as
//! embedding models.

mod batch;
mod binary;
#[cfg(feature = "language-models")]
mod chat_template;
mod datatype;
#[cfg(feature = "language-models")]
mod decoder;
mod decoder_dir;
mod element;
#[cfg(feature = "language-models")]
mod encoder;
mod generate;
mod json;
mod logits;
mod onnx;
mod options;
mod registry;
mod repository;
mod runner;
pub mod runtime;
mod sessions;
mod signature;
mod tensor;
#[cfg(feature = "language-models")]
mod tokenizer;

#[cfg(feature = "language-models")]
pub use chat_template::ChatTemplate;
pub use datatype::DataType;
#[cfg(feature = "language-models")]
pub use decoder::{CacheReservation, Decoder, DecoderLayout, KvCache, DEFAULT_CONTEXT};
pub use decoder_dir::REQUIRED_FILES;
pub(crate) use element::schema as element_schema;
pub use element::TensorData;
#[cfg(feature = "language-models")]
pub use encoder::{Encoder, Pooling, MAX_RUN_TOKENS};
#[cfg(not(feature = "language-models"))]
pub use generate::CacheReservation;
pub use generate::{
    FinishReason, Generation, Generator, Prompt, Sampling, CONTEXT_BYTES, MAX_PROMPT_BYTES,
};
pub use json::OverLimit;
pub use logits::argmax;
pub use onnx::Model;
pub use options::{ModelOptions, ENCODER_BATCH_TEXTS, MAX_RESPONSE_BYTES, SMALL_MODEL_BYTES};
pub use registry::ModelRegistry;
pub use repository::{
    ControlMode, IndexEntry, ModelRepository, ModelState, ModelStats, Timings, VersionPolicy,
    Watcher,
};
pub use signature::{Signature, TensorSpec};
pub use tensor::Tensor;
#[cfg(feature = "language-models")]
pub use tokenizer::{Detokenizer, Tokenizer};
