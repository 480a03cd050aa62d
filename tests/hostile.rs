//! Hostile clients, as an attacker tries them against the real binary: each case asserts the
//! status it gets, that the server stays up, and that its peak RSS (from `/proc`) stays within
//! the bound the limits table of docs/deployment.md documents.

mod fairness;
mod language;
mod memory;
mod services;
mod transport;
