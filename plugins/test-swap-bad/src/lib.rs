//! Version `bad` of the hot-swap test operator (see `../test-swap-common/operator.rs`).

const VERSION: &str = "bad";

include!("../../test-swap-common/operator.rs");
