//! Models: the ONNX Runtime library, signatures, tensors and the registry of loaded models.

mod batch;
mod binary;
mod chat_template;
mod decoder;
mod generate;
mod json;
mod registry;
pub mod runtime;
mod sessions;
mod signature;
mod tensor;
mod tokenizer;

pub use chat_template::ChatTemplate;
pub use decoder::{
    argmax, CacheReservation, Decoder, DecoderLayout, KvCache, DEFAULT_CONTEXT, REQUIRED_FILES,
};
pub use generate::{
    FinishReason, Generation, Generator, Prompt, Sampling, CONTEXT_BYTES, MAX_PROMPT_BYTES,
};
pub use registry::{Model, ModelOptions, ModelRegistry, MAX_RESPONSE_BYTES, SMALL_MODEL_BYTES};
pub use signature::{DataType, Signature, TensorSpec};
pub use tensor::{OverLimit, Tensor, TensorData};
pub use tokenizer::{Detokenizer, Tokenizer};
