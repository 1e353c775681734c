//! [`WasmOperator`]: a component instance behind `sluice_core::Operator`.

use crate::bindings::OperatorWorld;
use crate::bindings::sluice::operator::{host, types};
use crate::pipe::CapturePipe;
use crate::runtime::{EPOCH_TICK, LoadedComponent};
use sluice_core::batch::{Batch, WatermarkMark};
use sluice_core::operator::{Collector, Operator, OperatorContext, OperatorError};
use std::time::Duration;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Per-operator resource limits, set from the job spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest linear memory the instance may grow to, in bytes (64 MiB by default).
    /// A `memory.grow` beyond it fails; a Rust guest then aborts with "memory allocation
    /// failed", reported as a memory-limit fault. Capped by
    /// [`RuntimeConfig::max_memory_per_instance`](crate::RuntimeConfig::max_memory_per_instance).
    pub max_memory_bytes: usize,
    /// Longest a single guest call (`init`, or `process` of one batch) may run (10 s by
    /// default). Enforced with epoch interruption, so the resolution is the 10 ms epoch
    /// tick: a call is stopped between `time_per_call` and `time_per_call + 10 ms`.
    pub time_per_call: Duration,
    /// Most elements any table may have (20,000 by default).
    pub max_table_elements: usize,
    /// Most core and component instances the component may create (50 by default).
    pub max_instances: usize,
    /// Most tables (20 by default).
    pub max_tables: usize,
    /// Most linear memories (4 by default).
    pub max_memories: usize,
    /// Bytes of the guest's stdout and of its stderr kept between two calls (64 KiB each
    /// by default; the oldest bytes are dropped beyond it, never failing the guest).
    pub output_capture_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_memory_bytes: 64 << 20,
            time_per_call: Duration::from_secs(10),
            max_table_elements: 20_000,
            max_instances: 50,
            max_tables: 20,
            max_memories: 4,
            output_capture_bytes: 64 << 10,
        }
    }
}

/// What the sandbox grants an operator beyond computing: by default nothing.
///
/// Whatever the grants, an operator never gets files, environment variables,
/// arguments, network access or timers (sleeping traps; see
/// [`WasmRuntime`](crate::WasmRuntime)), and its stdout and stderr go to the host's log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Let the operator read the host's wall clock and monotonic clock. Without this
    /// grant both clocks read 0 (the Unix epoch; a monotonic clock that never
    /// advances), which keeps an operator's output a function of its input, so that
    /// replays after a failure produce the same events. Default: false.
    pub clocks: bool,
}

/// A clock frozen at 0: the wall clock at the Unix epoch, the monotonic clock at its
/// origin.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Enforces [`Limits`] and remembers whether a memory growth was refused.
struct Limiter {
    max_memory: usize,
    max_table_elements: usize,
    max_instances: usize,
    max_tables: usize,
    max_memories: usize,
    /// `(current, desired)` of the last refused `memory.grow` in the current call.
    memory_refused: Option<(usize, usize)>,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.memory_refused = Some((current, desired));
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.max_table_elements)
    }

    fn instances(&self) -> usize {
        self.max_instances
    }

    fn tables(&self) -> usize {
        self.max_tables
    }

    fn memories(&self) -> usize {
        self.max_memories
    }
}

/// The store's data: the WASI sandbox, the limiter and the identity for logs.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    /// `OperatorContext`'s Display, for log lines and errors.
    label: String,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

impl host::Host for HostState {
    fn log(&mut self, level: host::LogLevel, message: String) {
        let op = self.label.as_str();
        match level {
            host::LogLevel::Trace => {
                tracing::trace!(target: "sluice::guest", operator = op, "{message}")
            }
            host::LogLevel::Debug => {
                tracing::debug!(target: "sluice::guest", operator = op, "{message}")
            }
            host::LogLevel::Info => {
                tracing::info!(target: "sluice::guest", operator = op, "{message}")
            }
            host::LogLevel::Warn => {
                tracing::warn!(target: "sluice::guest", operator = op, "{message}")
            }
            host::LogLevel::Error => {
                tracing::error!(target: "sluice::guest", operator = op, "{message}")
            }
        }
    }
}

/// A live instance: its store, bindings and captured output.
struct Instance {
    store: Store<HostState>,
    bindings: OperatorWorld,
    stdout: CapturePipe,
    stderr: CapturePipe,
}

/// How much of the guest's stderr a fault message quotes.
const STDERR_TAIL: usize = 4096;

/// A WASM operator component instance behind [`sluice_core::Operator`]: one per subtask.
///
/// [`Operator::open`] instantiates the component in a fresh [`Store`] (from the
/// pre-instantiated component, so it is cheap) and calls its `init` with the
/// configuration. [`Operator::process_batch`] moves the batch's columns into the call
/// (the host copies nothing; the canonical ABI copies each column once into the guest),
/// calls `process`, rebuilds the output [`Batch`] and carries the input's watermark
/// marks over through the returned origins; side outputs go to
/// [`Collector::collect_side`].
///
/// Every failure is an [`OperatorError`] naming the operator and subtask: a typed
/// guest error is [`OperatorError::Returned`]; a trap, a limit hit or a broken output is
/// [`OperatorError::Fault`], after which the instance is dropped and every later call
/// returns an error (it is never reused).
pub struct WasmOperator {
    component: LoadedComponent,
    config: Vec<(String, String)>,
    limits: Limits,
    grants: Grants,
    context: String,
    instance: Option<Instance>,
    /// Why the instance is gone, once it faulted.
    dead: Option<String>,
}

impl std::fmt::Debug for WasmOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmOperator")
            .field("component", &self.component.name())
            .field("context", &self.context)
            .field("limits", &self.limits)
            .field("open", &self.instance.is_some())
            .finish_non_exhaustive()
    }
}

enum CallError {
    Returned(types::OperatorError),
    Fault(String),
}

impl WasmOperator {
    /// An operator running `component` with `config` (the job spec's `(key, value)`
    /// pairs, handed to the guest's `init`) under `limits`. Nothing runs until
    /// [`Operator::open`].
    pub fn new(
        component: &LoadedComponent,
        config: Vec<(String, String)>,
        limits: Limits,
    ) -> WasmOperator {
        WasmOperator {
            component: component.clone(),
            config,
            limits,
            grants: Grants::default(),
            context: "operator (not opened)".to_string(),
            instance: None,
            dead: None,
        }
    }

    /// Grants the operator more than the default sandbox (see [`Grants`]). Takes effect
    /// at the next [`Operator::open`].
    pub fn with_grants(mut self, grants: Grants) -> WasmOperator {
        self.grants = grants;
        self
    }

    /// The limits this operator runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn fault(&self, message: impl Into<String>) -> OperatorError {
        OperatorError::Fault {
            context: self.context.clone(),
            message: message.into(),
        }
    }

    fn instantiate(&mut self) -> Result<Instance, String> {
        let stdout = CapturePipe::new(self.limits.output_capture_bytes);
        let stderr = CapturePipe::new(self.limits.output_capture_bytes);
        // Nothing inherited: no args, no env, no preopened directories, no network
        // (sockets denied), stdin closed; clocks frozen unless granted.
        let mut wasi = WasiCtx::builder();
        wasi.stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if !self.grants.clocks {
            wasi.wall_clock(FrozenClock).monotonic_clock(FrozenClock);
        }
        let wasi = wasi.build();
        let max_memory = self
            .limits
            .max_memory_bytes
            .min(self.component.runtime().config().max_memory_per_instance);
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter {
                max_memory,
                max_table_elements: self.limits.max_table_elements,
                max_instances: self.limits.max_instances,
                max_tables: self.limits.max_tables,
                max_memories: self.limits.max_memories,
                memory_refused: None,
            },
            label: self.context.clone(),
        };
        let mut store = Store::new(self.component.runtime().engine(), state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(self.deadline_ticks());
        let bindings = self
            .component
            .pre()
            .instantiate(&mut store)
            .map_err(|e| format!("cannot instantiate '{}': {e:#}", self.component.name()))?;
        Ok(Instance {
            store,
            bindings,
            stdout,
            stderr,
        })
    }

    fn deadline_ticks(&self) -> u64 {
        let tick = EPOCH_TICK.as_nanos();
        (self.limits.time_per_call.as_nanos().div_ceil(tick) as u64).max(1)
    }

    /// Runs one guest call with fresh limits, forwards its output to `tracing`, and turns
    /// a trap into a fault message (killing the instance).
    fn call<R>(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut Instance) -> wasmtime::Result<Result<R, types::OperatorError>>,
    ) -> Result<R, CallError> {
        if let Some(why) = &self.dead {
            return Err(CallError::Fault(format!(
                "the instance is unusable after an earlier fault ({why})"
            )));
        }
        let ticks = self.deadline_ticks();
        let Some(inst) = self.instance.as_mut() else {
            return Err(CallError::Fault(format!("{what} called before open")));
        };
        inst.store.data_mut().limiter.memory_refused = None;
        inst.store.set_epoch_deadline(ticks);
        let result = f(inst);
        let stderr_tail = forward_output(inst, &self.context);
        match result {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(CallError::Returned(e)),
            Err(e) => {
                let limiter = &inst.store.data().limiter;
                let refused = limiter
                    .memory_refused
                    .map(|(cur, want)| (cur, want, limiter.max_memory));
                let message = describe_trap(&e, what, &self.limits, refused, &stderr_tail);
                self.instance = None;
                self.dead = Some(message.clone());
                Err(CallError::Fault(message))
            }
        }
    }

    fn to_operator_error(&self, e: CallError) -> OperatorError {
        match e {
            CallError::Returned(e) => OperatorError::Returned {
                context: self.context.clone(),
                code: code_name(e.code).to_string(),
                message: e.message,
            },
            CallError::Fault(message) => self.fault(message),
        }
    }

    fn output_batch(
        &self,
        out: types::OutputBatch,
        input_marks: &[WatermarkMark],
        input_len: usize,
        which: &str,
    ) -> Result<Batch, OperatorError> {
        let types::OutputBatch { events, origins } = out;
        let mut batch = Batch::from_columns(
            events.timestamps,
            events.key_offsets,
            events.key_data,
            events.value_offsets,
            events.value_data,
        )
        .map_err(|e| self.fault(format!("returned an invalid {which}: {e}")))?;
        batch
            .remap_marks_from(input_marks, &origins, input_len)
            .map_err(|e| self.fault(format!("returned invalid origins for its {which}: {e}")))?;
        Ok(batch)
    }
}

fn code_name(code: types::ErrorCode) -> &'static str {
    match code {
        types::ErrorCode::InvalidConfig => "invalid-config",
        types::ErrorCode::InvalidInput => "invalid-input",
        types::ErrorCode::Internal => "internal",
    }
}

/// Sends what the guest wrote to stdout and stderr to `tracing`, line by line; returns
/// the last [`STDERR_TAIL`] bytes of stderr (for a fault message).
fn forward_output(inst: &Instance, label: &str) -> String {
    let (out, out_dropped) = inst.stdout.drain();
    let (err, err_dropped) = inst.stderr.drain();
    for (stream, bytes, dropped) in [("stdout", &out, out_dropped), ("stderr", &err, err_dropped)] {
        if dropped > 0 {
            tracing::warn!(target: "sluice::guest", operator = label, stream, "dropped {dropped} bytes of guest output over the capture limit");
        }
        for line in String::from_utf8_lossy(bytes).lines() {
            if !line.is_empty() {
                tracing::info!(target: "sluice::guest", operator = label, stream, "{line}");
            }
        }
    }
    let start = err.len().saturating_sub(STDERR_TAIL);
    String::from_utf8_lossy(&err[start..])
        .trim_end()
        .to_string()
}

fn mib(bytes: usize) -> String {
    if bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
    }
}

/// The guest's stderr for a fault message: std's hint about `RUST_BACKTRACE` (which
/// the guest cannot use) dropped.
fn quote_stderr(tail: &str) -> String {
    tail.lines()
        .filter(|l| !l.starts_with("note: run with `RUST_BACKTRACE=1`"))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

fn describe_trap(
    e: &wasmtime::Error,
    what: &str,
    limits: &Limits,
    memory_refused: Option<(usize, usize, usize)>,
    stderr_tail: &str,
) -> String {
    let trap = e.downcast_ref::<Trap>();
    let mut message = if trap == Some(&Trap::Interrupt) {
        format!(
            "{what} exceeded its time limit of {} ms per batch",
            limits.time_per_call.as_millis()
        )
    } else if let Some((current, desired, max)) = memory_refused {
        format!(
            "{what} exceeded its memory limit of {} (growing linear memory from {} to {} was refused)",
            mib(max),
            mib(current),
            mib(desired)
        )
    } else {
        match trap {
            Some(t) => format!("{what} trapped: {t}"),
            None => format!("{what} failed: {}", e.root_cause()),
        }
    };
    let stderr = quote_stderr(stderr_tail);
    if !stderr.is_empty() {
        message.push_str("; guest stderr: ");
        message.push_str(&stderr);
    }
    message
}

impl Operator for WasmOperator {
    fn open(&mut self, ctx: &OperatorContext) -> Result<(), OperatorError> {
        self.context = ctx.to_string();
        self.dead = None;
        let instance = self.instantiate().map_err(|m| self.fault(m))?;
        self.instance = Some(instance);
        let config = self.config.clone();
        let init = self.call("init", |inst| {
            inst.bindings
                .sluice_operator_operator()
                .call_init(&mut inst.store, &config)
        });
        init.map_err(|e| {
            // An operator whose init failed is not open: later calls are errors.
            self.instance = None;
            self.to_operator_error(e)
        })
    }

    fn process_batch(
        &mut self,
        batch: Batch,
        out: &mut dyn Collector,
    ) -> Result<(), OperatorError> {
        let input_len = batch.len();
        if input_len == 0 && self.instance.is_some() && self.dead.is_none() {
            // Only watermark marks (common after a key-by split): nothing for the guest.
            if !batch.is_void() {
                out.collect(batch);
            }
            return Ok(());
        }
        let (timestamps, key_offsets, key_data, value_offsets, value_data, marks) =
            batch.into_columns();
        let input = types::EventBatch {
            timestamps,
            key_offsets,
            key_data,
            value_offsets,
            value_data,
        };
        let output = self
            .call("process", |inst| {
                inst.bindings
                    .sluice_operator_operator()
                    .call_process(&mut inst.store, &input)
            })
            .map_err(|e| self.to_operator_error(e))?;
        let main = self.output_batch(output.main, &marks, input_len, "main output")?;
        let mut sides = Vec::with_capacity(output.side.len());
        for side in output.side {
            let which = format!("side output '{}'", side.name);
            sides.push((
                side.name,
                self.output_batch(side.batch, &marks, input_len, &which)?,
            ));
        }
        // A batch that carried only marks still moves the watermark on.
        if !main.is_void() {
            out.collect(main);
        }
        for (name, batch) in sides {
            if !batch.is_empty() {
                out.collect_side(&name, batch);
            }
        }
        Ok(())
    }
}
