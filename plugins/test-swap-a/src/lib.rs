//! Version `a` of the hot-swap test operator (see `../test-swap-common/operator.rs`).

const VERSION: &str = "a";

include!("../../test-swap-common/operator.rs");
