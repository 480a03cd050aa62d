//! One integration-test binary: real servers on port 0, real HTTP, real ONNX Runtime.

mod support;

mod app;
mod batching;
mod cli;
mod conformance;
mod decoder;
mod docs;
mod embeddings;
mod generation;
mod hostile;
mod http;
mod https;
mod kserve;
mod logging;
mod models;
mod openai;
mod outbound;
mod platforms;
mod production;
mod python;
mod readme;
mod repository;
mod streaming;
mod typed;
mod websocket;
