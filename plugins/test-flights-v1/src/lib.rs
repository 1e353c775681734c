//! Version `v1` of the flights operator of the hot-swap test (see
//! `../test-flights-common/traced.rs`).

const VERSION: &str = "v1";

#[path = "../../flight-delays/src/operator.rs"]
mod flights;

include!("../../test-flights-common/traced.rs");
