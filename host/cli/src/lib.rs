//! The `sluice` command's library: turns a job spec into a running job with the real
//! connectors and the WASM runtime ([`job`]), and watches it ([`progress`]). The
//! binary is a thin layer of argument parsing over it; the end-to-end tests use it too.

#![warn(missing_docs)]

pub mod build;
pub mod client;
pub mod control;
pub mod job;
pub mod kafka;
pub mod progress;
pub mod serve;
