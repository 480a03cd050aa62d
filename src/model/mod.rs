//! Models: the ONNX Runtime library, signatures, tensors and the registry of loaded models.

mod binary;
mod registry;
pub mod runtime;
mod signature;
mod tensor;

pub use registry::{Model, ModelOptions, ModelRegistry};
pub use signature::{DataType, Signature, TensorSpec};
pub use tensor::{Tensor, TensorData};
