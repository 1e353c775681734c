//! Version `b` of the hot-swap test operator (see `../test-swap-common/operator.rs`).

const VERSION: &str = "b";

include!("../../test-swap-common/operator.rs");
