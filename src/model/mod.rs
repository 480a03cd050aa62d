//! Models: the ONNX Runtime library, signatures, tensors and the registry of loaded models.

mod batch;
mod binary;
mod chat_template;
mod datatype;
mod decoder;
mod element;
mod generate;
mod json;
mod onnx;
mod options;
mod registry;
mod runner;
pub mod runtime;
mod sessions;
mod signature;
mod tensor;
mod tokenizer;

pub use chat_template::ChatTemplate;
pub use datatype::DataType;
pub use decoder::{
    CacheReservation, Decoder, DecoderLayout, KvCache, DEFAULT_CONTEXT, REQUIRED_FILES,
};
pub(crate) use element::schema as element_schema;
pub use element::TensorData;
pub use generate::{
    argmax, FinishReason, Generation, Generator, Prompt, Sampling, CONTEXT_BYTES, MAX_PROMPT_BYTES,
};
pub use json::OverLimit;
pub use onnx::Model;
pub use options::{ModelOptions, MAX_RESPONSE_BYTES, SMALL_MODEL_BYTES};
pub use registry::ModelRegistry;
pub use signature::{Signature, TensorSpec};
pub use tensor::Tensor;
pub use tokenizer::{Detokenizer, Tokenizer};
