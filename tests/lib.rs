//! Shared helpers for the end-to-end tests.

pub mod flights;
pub mod payments;
pub mod plugins;
