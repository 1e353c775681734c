//! Shared helpers for the end-to-end tests.

pub mod bench;
pub mod flights;
pub mod kafka;
pub mod kill;
pub mod payments;
pub mod plugins;
pub mod sdk;
pub mod server;
