//! The ONNX backend node test suite through the HTTP API (issue #11).
