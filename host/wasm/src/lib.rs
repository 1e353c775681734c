//! Sluice's wasmtime embedding: runs WebAssembly operator components (world
//! `sluice:operator/operator-world@0.2.0`, see `wit/operator.wit`) behind
//! [`sluice_core::Operator`], with keyed state and timers over
//! [`sluice_core::state::KeyedStateStore`].
//!
//! - [`WasmRuntime`]: one per process. The wasmtime engine (component model, epoch
//!   interruption, pooling allocator), a thread ticking the epoch every 10 ms, and an
//!   on-disk cache of compiled components.
//! - [`WasmRuntime::load_component`]: compiles (or loads from the cache) and validates a
//!   `.wasm` file into a [`LoadedComponent`], ready to instantiate; [`LoadError`] says
//!   clearly what is wrong with a file that is not an operator.
//! - [`WasmOperator`]: one instance of a component per subtask, with [`Limits`] on memory
//!   and time, in a WASI sandbox that grants nothing (no files, env, args, network,
//!   timers; clocks frozen and randomness fixed unless [`Grants`] allow them; granted
//!   directories read-only); its stdout/stderr and `log`
//!   calls go to `tracing` (target `sluice::guest`, field `operator`).
//! - Keyed state and timers: given a [`KeyedStateStore`](sluice_core::state::KeyedStateStore)
//!   in [`Operator::initialize_state`](sluice_core::Operator::initialize_state) (a keyed
//!   input), a [`WasmOperator`] serves the guest's `keyed-state` and `timers` imports,
//!   each scoped to the key of the row (or timer) it names, fires event-time timers
//!   between rows where the watermark passes them and processing-time timers in
//!   `on_processing_time`, and cleans up expired state incrementally. Without one, those
//!   imports return a typed `not-keyed` error.
//!
//! ```no_run
//! use sluice_wasm::{Limits, WasmOperator, WasmRuntime};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = WasmRuntime::new(Default::default())?;
//! let component = runtime.load_component("flight_delays.wasm")?;
//! let config = vec![("delayed_threshold_minutes".to_string(), "15".to_string())];
//! let op = WasmOperator::new(&component, config, Limits::default());
//! // `op` is a `sluice_core::Operator`: the runtime calls open, process_batch, ...
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod cache;
mod guest_log;
mod headers;
mod operator;
mod pipe;
mod runtime;
mod state;

pub use cache::CacheOutcome;
pub use guest_log::GuestLog;
pub use operator::{DirGrant, FailurePolicy, Grants, Limits, WasmOperator};
pub use runtime::{LoadError, LoadedComponent, RuntimeConfig, RuntimeError, WasmRuntime};

/// The WIT package version this host implements.
pub const WIT_PACKAGE: &str = "sluice:operator@0.2.0";

/// The world every operator component implements.
pub const WORLD: &str = "sluice:operator/operator-world@0.2.0";

/// The export every operator component must have.
pub const OPERATOR_EXPORT: &str = "sluice:operator/operator@0.2.0";

/// Bindings generated from `wit/operator.wit`.
#[allow(missing_docs)]
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "operator-world",
    });
}
