//! One integration-test binary: real servers on port 0, real HTTP, real ONNX Runtime.

mod support;

mod cli;
mod http;
mod models;
mod openai;
mod outbound;
mod python;
mod streaming;
