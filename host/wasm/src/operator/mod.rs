//! [`WasmOperator`]: a component instance behind `sluice_core::Operator`.

use crate::bindings::OperatorWorld;
use crate::bindings::sluice::operator::{host, types};
use crate::pipe::CapturePipe;
use crate::runtime::{EPOCH_TICK, LoadedComponent};
use crate::state::{CallKind, Scope};
pub use failure::FailurePolicy;
use sluice_core::batch::{Batch, Headers, WatermarkMark};
use sluice_core::operator::FailureKind;
use sluice_core::operator::{Collector, Operator, OperatorContext, OperatorError, StateContext};
use sluice_core::state::{Clock, KeyedStateStore, TimeDomain, Timer, system_clock};
use std::sync::Arc;
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
    /// Most events one call may emit, main and side outputs together (1,000,000 by
    /// default); more is a limit fault.
    pub max_output_events: usize,
    /// Most bytes of keys and values one call may emit (256 MiB by default); more is a
    /// limit fault.
    pub max_output_bytes: usize,
    /// Lines the guest may log a second, stdout, stderr and `log` together (100 by
    /// default, in bursts of up to ten seconds' worth); more are dropped and counted.
    pub max_log_lines_per_second: u32,
    /// Fuel per call (wasmtime's deterministic count of executed instructions), for
    /// metering that does not depend on the machine's speed; running out is a limit
    /// fault. Needs a component loaded from [`WasmRuntime::variant`](crate::WasmRuntime::variant)
    /// with fuel. Default: none (only `time_per_call` bounds a call).
    pub fuel_per_call: Option<u64>,
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
            max_output_events: 1_000_000,
            max_output_bytes: 256 << 20,
            max_log_lines_per_second: 100,
            fuel_per_call: None,
        }
    }
}

/// What the sandbox grants an operator beyond computing: by default nothing
/// (`grants` in the job spec, one capability at a time).
///
/// Whatever the grants, an operator never gets arguments, UDP, name lookups, listening
/// sockets or timers (sleeping traps; see [`WasmRuntime`](crate::WasmRuntime)), never
/// writes files, and its stdout and stderr go to the job's log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Let the operator read the host's wall clock and monotonic clock. Without this
    /// grant both clocks read 0 (the Unix epoch; a monotonic clock that never
    /// advances), which keeps an operator's output a function of its input, so that
    /// replays after a failure produce the same events. Default: false.
    pub clocks: bool,
    /// Let the operator draw real randomness (`wasi:random`). Without this grant it
    /// gets the same fixed byte sequence on every start, for the same reason as the
    /// clocks. Default: false.
    pub random: bool,
    /// Environment variables it sees, `(name, value)`. Default: none (the host's
    /// environment is never passed on).
    pub env: Vec<(String, String)>,
    /// Directories it may read, each preopened read-only at a guest path. Default:
    /// none.
    pub dirs: Vec<DirGrant>,
    /// The TCP addresses it may connect to (by address: no name lookups). Default:
    /// none, and no network at all.
    pub network: Vec<std::net::SocketAddr>,
}

/// A host directory an operator may read (never write), seen at `guest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    /// The directory on the host.
    pub host: std::path::PathBuf,
    /// Where the guest sees it, e.g. `/data`.
    pub guest: String,
}

/// What an operator without the `random` grant draws: a fixed sequence.
const FIXED_RANDOMNESS: [u8; 16] = *b"sluice-no-random";

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

/// The store's data: the WASI sandbox, the limiter, the identity for logs, and what the
/// `keyed-state` and `timers` imports work on (see [`crate::state`]).
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    /// `OperatorContext`'s Display, for log lines and errors.
    label: String,
    /// The keyed state and timers, when the operator's input is keyed.
    pub(crate) keyed: Option<KeyedStateStore>,
    /// Processing time, for `timers.processing-time`.
    pub(crate) clock: Clock,
    /// The operator's current watermark (the last one applied).
    pub(crate) watermark: i64,
    /// The running call's batch, against which imports resolve rows.
    pub(crate) scope: Scope,
    /// How many more lines the guest may log now.
    log_budget: LogBudget,
    /// The job's guest log, if it has one (else lines go to `tracing`).
    guest_log: Option<Arc<crate::GuestLog>>,
}

impl HostState {
    /// Sends one line the guest wrote (on `stream`, or at a log level) to the job's
    /// guest log, or to `tracing` when there is none; `false` when the rate limit
    /// dropped it.
    fn guest_line(&mut self, stream: &str, text: &str, level: tracing::Level) -> bool {
        if !self.log_budget.allow() {
            return false;
        }
        let op = self.label.as_str();
        match &self.guest_log {
            Some(log) => log.line(op, stream, text),
            None => match level {
                tracing::Level::ERROR => {
                    tracing::error!(target: "sluice::guest", operator = op, stream, "{text}")
                }
                tracing::Level::WARN => {
                    tracing::warn!(target: "sluice::guest", operator = op, stream, "{text}")
                }
                tracing::Level::INFO => {
                    tracing::info!(target: "sluice::guest", operator = op, stream, "{text}")
                }
                tracing::Level::DEBUG => {
                    tracing::debug!(target: "sluice::guest", operator = op, stream, "{text}")
                }
                _ => tracing::trace!(target: "sluice::guest", operator = op, stream, "{text}"),
            },
        }
        true
    }
}

/// A token bucket for the lines a guest logs (stdout, stderr and the `log` import
/// together): `per_second` lines a second, bursts up to ten seconds' worth; lines beyond
/// are dropped and counted, and the count is logged once the guest's call is over.
struct LogBudget {
    per_second: f64,
    tokens: f64,
    last: std::time::Instant,
    dropped: u64,
}

impl LogBudget {
    fn new(per_second: u32) -> Self {
        let per_second = per_second as f64;
        LogBudget {
            per_second,
            tokens: per_second * 10.0,
            last: std::time::Instant::now(),
            dropped: 0,
        }
    }

    /// Whether one more line may go out now.
    fn allow(&mut self) -> bool {
        let now = std::time::Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refill).min(self.per_second * 10.0);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.dropped += 1;
            false
        }
    }
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
        let (name, level) = match level {
            host::LogLevel::Trace => ("trace", tracing::Level::TRACE),
            host::LogLevel::Debug => ("debug", tracing::Level::DEBUG),
            host::LogLevel::Info => ("info", tracing::Level::INFO),
            host::LogLevel::Warn => ("warn", tracing::Level::WARN),
            host::LogLevel::Error => ("error", tracing::Level::ERROR),
        };
        self.guest_line(name, &message, level);
    }
}

/// Most timers delivered in one `on-timers` call.
const TIMER_BATCH: usize = 1024;

/// Entries the incremental TTL cleanup examines after a batch of `rows` rows (Flink's
/// `cleanupIncrementally`, which examines a few entries per state access).
fn cleanup_budget(rows: usize) -> usize {
    (8 + rows / 4).min(256)
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

mod failure;

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
///
/// **Keyed state and timers.** When [`Operator::initialize_state`] hands it a
/// [`KeyedStateStore`] (the operator's input is keyed), the guest's `keyed-state` and
/// `timers` imports work on that store, scoped to the key of the row they name, and
/// [`Operator::keyed_state`] returns it for snapshots. Event-time timers fire where the
/// watermark passes them: at the watermark marks inside batches (the batch is split
/// there: the rows before, then `on-timers`, then the rest) and in
/// [`Operator::process_watermark`] (before the watermark is forwarded); processing-time
/// timers fire in [`Operator::on_processing_time`]. Timers are delivered in batches, in
/// order, looping while the guest registers timers that are already due. After each
/// batch, a few entries are examined for expired state
/// ([`KeyedStateStore::cleanup_expired`]). Without a keyed store, state and timer calls
/// return a typed `not-keyed` error to the guest, and batches take the stateless path,
/// which costs nothing more than before.
pub struct WasmOperator {
    component: LoadedComponent,
    config: Vec<(String, String)>,
    limits: Limits,
    grants: Grants,
    context: String,
    instance: Option<Instance>,
    /// Why the instance is gone, once it faulted.
    dead: Option<String>,
    /// The keyed store while no instance holds it (before `open`, after a fault).
    parked_keyed: Option<KeyedStateStore>,
    /// Processing time (from the [`StateContext`]; the system clock by default).
    clock: Clock,
    /// The watermark while no instance holds it.
    parked_watermark: i64,
    /// What a failed call leads to.
    policy: FailurePolicy,
    /// Who it is (from `open`), for dead-letter records.
    identity: Option<OperatorContext>,
    /// The kind of the last failed call's failure.
    last_failure: Option<FailureKind>,
    /// Where what the guest prints and logs goes (default: `tracing`).
    guest_log: Option<Arc<crate::GuestLog>>,
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
            parked_keyed: None,
            clock: system_clock(),
            parked_watermark: i64::MIN,
            policy: FailurePolicy::Fail,
            identity: None,
            last_failure: None,
            guest_log: None,
        }
    }

    /// Sends what the guest prints and logs to the job's `log` instead of `tracing`.
    pub fn with_guest_log(mut self, log: Arc<crate::GuestLog>) -> WasmOperator {
        self.guest_log = Some(log);
        self
    }

    /// Sets what a failed call leads to (see [`FailurePolicy`]; default: fail the job).
    pub fn with_failure_policy(mut self, policy: FailurePolicy) -> WasmOperator {
        self.policy = policy;
        self
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
            .allow_tcp(!self.grants.network.is_empty())
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if !self.grants.network.is_empty() {
            // Connecting to a granted address, and the implicit bind that comes with it;
            // nothing else (no listening, no explicit binds).
            let granted = Arc::new(self.grants.network.clone());
            wasi.socket_addr_check(move |addr, used| {
                let ok = match used {
                    wasmtime_wasi::sockets::SocketAddrUse::TcpConnect => granted.contains(&addr),
                    wasmtime_wasi::sockets::SocketAddrUse::TcpBind => {
                        addr.ip().is_unspecified() && addr.port() == 0
                    }
                    _ => false,
                };
                Box::pin(async move { ok })
            });
        }
        if !self.grants.clocks {
            wasi.wall_clock(FrozenClock).monotonic_clock(FrozenClock);
        }
        if !self.grants.random {
            let fixed = || wasmtime_wasi::Deterministic::new(FIXED_RANDOMNESS.to_vec());
            wasi.secure_random(fixed())
                .insecure_random(fixed())
                .insecure_random_seed(0);
        }
        wasi.envs(&self.grants.env);
        for d in &self.grants.dirs {
            wasi.preopened_dir(&d.host, &d.guest, wasmtime_wasi::FsPerms::ReadOnly)
                .map_err(|e| {
                    format!(
                        "cannot open the directory granted to it, {} (as {}): {e}",
                        d.host.display(),
                        d.guest
                    )
                })?;
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
            keyed: self.parked_keyed.take(),
            clock: self.clock.clone(),
            watermark: self.parked_watermark,
            scope: Scope::outside(),
            log_budget: LogBudget::new(self.limits.max_log_lines_per_second),
            guest_log: self.guest_log.clone(),
        };
        let mut store = Store::new(self.component.runtime().engine(), state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(self.deadline_ticks());
        if let Some(fuel) = self.limits.fuel_per_call {
            // Instantiation (start functions) runs on the first call's fuel.
            store.set_fuel(fuel).map_err(|e| {
                format!(
                    "cannot meter its fuel ({e}): the component was not loaded for fuel metering"
                )
            })?;
        }
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
        if let Some(fuel) = self.limits.fuel_per_call
            && let Err(e) = inst.store.set_fuel(fuel)
        {
            return Err(CallError::Fault(format!(
                "cannot meter its fuel ({e}): the component was not loaded for fuel metering"
            )));
        }
        let result = f(inst);
        let stderr_tail = forward_output(inst, &self.context);
        match result {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                self.last_failure = Some(FailureKind::Error);
                Err(CallError::Returned(e))
            }
            Err(e) => {
                let limiter = &inst.store.data().limiter;
                let refused = limiter
                    .memory_refused
                    .map(|(cur, want)| (cur, want, limiter.max_memory));
                let limit_hit = refused.is_some()
                    || matches!(
                        e.downcast_ref::<Trap>(),
                        Some(Trap::Interrupt | Trap::OutOfFuel | Trap::StackOverflow)
                    );
                self.last_failure = Some(if limit_hit {
                    FailureKind::Limit
                } else {
                    FailureKind::Trap
                });
                let message = describe_trap(&e, what, &self.limits, refused, &stderr_tail);
                self.park_instance_state();
                self.instance = None;
                self.dead = Some(message.clone());
                Err(CallError::Fault(message))
            }
        }
    }

    /// Starts a fresh instance and calls its `init` with the configuration; the keyed
    /// store and watermark move over from the old one (on `open`, and after a failed
    /// call under a tolerant policy: an instance is never reused after a failure).
    fn start_instance(&mut self) -> Result<(), OperatorError> {
        self.park_instance_state();
        self.instance = None;
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
            self.park_instance_state();
            self.instance = None;
            self.to_operator_error(e)
        })
    }

    /// Moves the keyed store and watermark out of the instance (which is going away).
    fn park_instance_state(&mut self) {
        if let Some(inst) = self.instance.as_mut() {
            let hs = inst.store.data_mut();
            if hs.keyed.is_some() {
                self.parked_keyed = hs.keyed.take();
            }
            self.parked_watermark = hs.watermark;
        }
    }

    /// The live instance's host state, if there is a usable instance.
    fn live_state(&mut self) -> Option<&mut HostState> {
        if self.dead.is_some() {
            return None;
        }
        self.instance.as_mut().map(|i| i.store.data_mut())
    }

    fn is_keyed(&self) -> bool {
        self.dead.is_none()
            && self
                .instance
                .as_ref()
                .is_some_and(|i| i.store.data().keyed.is_some())
    }

    /// Calls `process` on `input` in a batch scope whose marks are `marks` (swapped in
    /// for the call and back out) and whose keys are `keys` (the same batch, for a keyed
    /// operator). The call's limit is left in the scope. Inlined: the stateless hot path
    /// must not move its (large) result through another frame.
    #[inline(always)]
    fn run_process(
        &mut self,
        input: &types::EventBatch,
        keys: Option<&Arc<types::EventBatch>>,
        headers: Option<(&Arc<Headers>, usize)>,
        marks: &mut Vec<WatermarkMark>,
    ) -> Result<types::ProcessOutput, OperatorError> {
        let len = input.timestamps.len() as u32;
        self.call("process", |inst| {
            let hs = inst.store.data_mut();
            let s = &mut hs.scope;
            s.kind = CallKind::Batch;
            s.len = len;
            s.limit = len;
            s.base_watermark = hs.watermark;
            std::mem::swap(&mut s.marks, marks);
            if let Some(keys) = keys {
                s.batch = Some(keys.clone());
            }
            if let Some((h, base)) = headers {
                s.headers = Some(h.clone());
                s.headers_base = base as u32;
            }
            let r = inst
                .bindings
                .sluice_operator_operator()
                .call_process(&mut inst.store, input);
            let s = &mut inst.store.data_mut().scope;
            s.kind = CallKind::Outside;
            std::mem::swap(&mut s.marks, marks);
            if keys.is_some() {
                s.batch = None;
            }
            if headers.is_some() {
                s.headers = None;
            }
            r
        })
        .map_err(|e| self.to_operator_error(e))
        .and_then(|output| self.check_output(output, "process"))
    }

    /// Checks what one call emitted against the output limits.
    fn check_output(
        &mut self,
        output: types::ProcessOutput,
        what: &str,
    ) -> Result<types::ProcessOutput, OperatorError> {
        let batches = std::iter::once(&output.main).chain(output.side.iter().map(|s| &s.batch));
        let (mut events, mut bytes) = (0usize, 0usize);
        for b in batches {
            events += b.events.timestamps.len();
            bytes += b.events.key_data.len() + b.events.value_data.len();
        }
        let over = if events > self.limits.max_output_events {
            Some(format!(
                "{events} events, more than its limit of {} per call (limits.max_output_events)",
                self.limits.max_output_events
            ))
        } else if bytes > self.limits.max_output_bytes {
            Some(format!(
                "{} of keys and values, more than its limit of {} per call (limits.max_output_bytes)",
                mib(bytes),
                mib(self.limits.max_output_bytes)
            ))
        } else {
            None
        };
        match over {
            None => Ok(output),
            Some(why) => {
                self.last_failure = Some(FailureKind::Limit);
                Err(self.fault(format!("{what} emitted {why}")))
            }
        }
    }

    /// The limit the last call ended with (its length if it did not change).
    fn last_limit(&mut self) -> usize {
        self.live_state().map_or(0, |hs| hs.scope.limit as usize)
    }

    /// Delivers `due` timers of `domain` through `on-timers` and adds what the guest
    /// emitted to `outs`; under a tolerant policy, a failure is handled there.
    fn fire(
        &mut self,
        due: Vec<Timer>,
        domain: TimeDomain,
        outs: &mut Outputs,
    ) -> Result<(), OperatorError> {
        if self.policy == FailurePolicy::Fail {
            return self.fire_call(&due, domain, outs);
        }
        self.fire_tolerant(due, domain, outs)
    }

    /// One `on-timers` call for `due`.
    fn fire_call(
        &mut self,
        due: &[Timer],
        domain: TimeDomain,
        outs: &mut Outputs,
    ) -> Result<(), OperatorError> {
        let n = due.len();
        let mut timers = types::TimerBatch {
            domain: match domain {
                TimeDomain::EventTime => types::TimeDomain::EventTime,
                TimeDomain::ProcessingTime => types::TimeDomain::ProcessingTime,
            },
            times: Vec::with_capacity(n),
            key_offsets: Vec::with_capacity(n + 1),
            key_data: Vec::new(),
        };
        timers.key_offsets.push(0);
        for t in due {
            timers.times.push(t.time);
            timers.key_data.extend_from_slice(&t.key);
            timers.key_offsets.push(timers.key_data.len() as u32);
        }
        let timers = Arc::new(timers);
        let output = self
            .call("on-timers", |inst| {
                let s = &mut inst.store.data_mut().scope;
                s.kind = CallKind::Timers;
                s.len = n as u32;
                s.limit = n as u32;
                s.timers = Some(timers.clone());
                let r = inst
                    .bindings
                    .sluice_operator_operator()
                    .call_on_timers(&mut inst.store, &timers);
                let s = &mut inst.store.data_mut().scope;
                s.kind = CallKind::Outside;
                s.timers = None;
                r
            })
            .map_err(|e| self.to_operator_error(e))
            .and_then(|output| self.check_output(output, "on-timers"))?;
        let limit = self.last_limit();
        self.add_output(outs, output, &[], limit, n)
    }

    /// Fires the timers of `domain` due at `time`, batch by batch, until none is due
    /// (the guest may register due timers while handling them).
    fn fire_due(
        &mut self,
        domain: TimeDomain,
        time: i64,
        outs: &mut Outputs,
    ) -> Result<(), OperatorError> {
        loop {
            let Some(store) = self.live_state().and_then(|hs| hs.keyed.as_mut()) else {
                return Ok(());
            };
            if store.next_timer(domain).is_none_or(|t| t > time) {
                return Ok(());
            }
            let due = store
                .pop_due_timers(domain, time, TIMER_BATCH)
                .map_err(|e| self.fault(format!("cannot read its timers: {e}")))?;
            self.fire(due, domain, outs)?;
        }
    }

    /// Moves the watermark to `watermark` (if higher) and fires the event-time timers it
    /// passes.
    fn advance_watermark(
        &mut self,
        watermark: i64,
        outs: &mut Outputs,
    ) -> Result<(), OperatorError> {
        if let Some(hs) = self.live_state() {
            hs.watermark = hs.watermark.max(watermark);
        }
        self.fire_due(TimeDomain::EventTime, watermark, outs)
    }

    /// Checks a call's output against its input (`len` rows or timers, of which the
    /// guest may handle `limit`) and adds it to `outs`.
    fn add_output(
        &self,
        outs: &mut Outputs,
        output: types::ProcessOutput,
        marks: &[WatermarkMark],
        limit: usize,
        len: usize,
    ) -> Result<(), OperatorError> {
        if limit < len {
            let beyond = std::iter::once(&output.main.origins)
                .chain(output.side.iter().map(|s| &s.batch.origins))
                .filter_map(|o| o.last())
                .any(|&o| o as usize >= limit);
            if beyond {
                return Err(self.fault(format!(
                    "emitted events for input at or after its call's limit of {limit} rows \
                     (of {len}): a timer it registered is due before them, so the call had \
                     to stop there (see timers.register-timer in wit/operator.wit)"
                )));
            }
        }
        // Everything is checked before anything is added: a failed call adds nothing.
        let main = self.output_batch(output.main, marks, limit, "main output")?;
        let mut sides = Vec::with_capacity(output.side.len());
        for side in output.side {
            let which = format!("side output '{}'", side.name);
            sides.push((
                side.name,
                self.output_batch(side.batch, marks, limit, &which)?,
            ));
        }
        outs.append_main(main);
        for (name, batch) in sides {
            outs.append_side(name, batch);
        }
        Ok(())
    }

    /// `process_batch` for a keyed operator, or any operator with a tolerant failure
    /// policy: the batch in segments between the watermark marks where event-time timers
    /// are due, with the timers fired in between.
    fn process_segmented(
        &mut self,
        batch: Batch,
        out: &mut dyn Collector,
    ) -> Result<(), OperatorError> {
        let n = batch.len();
        let mut batch = batch;
        let headers = batch.take_headers().map(Arc::new);
        let (timestamps, key_offsets, key_data, value_offsets, value_data, marks) =
            batch.into_columns();
        let full = Arc::new(types::EventBatch {
            timestamps,
            key_offsets,
            key_data,
            value_offsets,
            value_data,
        });
        let mut outs = Outputs::default();
        let (mut pos, mut mi) = (0usize, 0usize);
        loop {
            // The marks before row `pos`: fire what they pass, then carry them on.
            while let Some(m) = marks.get(mi).filter(|m| m.row as usize <= pos) {
                self.advance_watermark(m.watermark, &mut outs)?;
                outs.push_mark(m.watermark);
                mi += 1;
            }
            if pos == n {
                break;
            }
            // This call ends at the first mark that passes a registered timer (the guest
            // may lower that by registering one a mark passes sooner).
            let next_timer = self
                .live_state()
                .and_then(|hs| hs.keyed.as_ref())
                .and_then(|s| s.next_timer(TimeDomain::EventTime));
            let end = next_timer
                .and_then(|t| marks[mi..].iter().find(|m| m.watermark >= t))
                .map_or(n, |m| m.row as usize);
            let segment = Segment {
                full: &full,
                headers: headers.as_ref(),
                pos,
                end,
                marks: &marks[mi..],
            };
            let (done, passed) = if self.policy == FailurePolicy::Fail {
                self.run_segment(&segment, &mut outs)?
            } else {
                self.run_segment_tolerant(segment, &mut outs)?
            };
            mi += passed;
            pos += done.max(1);
        }
        if let Some(store) = self.live_state().and_then(|hs| hs.keyed.as_mut()) {
            store
                .cleanup_expired(cleanup_budget(n))
                .map_err(|e| self.fault(format!("cannot clean up expired state: {e}")))?;
        }
        outs.flush(out);
        Ok(())
    }

    /// One `process` call for the rows `seg.pos..seg.end`; adds its output to `outs`.
    /// Returns the rows it handled (fewer when a timer it registered is due sooner) and
    /// the marks among them it passed.
    fn run_segment(
        &mut self,
        seg: &Segment<'_>,
        outs: &mut Outputs,
    ) -> Result<(usize, usize), OperatorError> {
        let (pos, end) = (seg.pos, seg.end);
        let segment = if pos == 0 && end == seg.full.timestamps.len() {
            seg.full.clone()
        } else {
            Arc::new(slice(seg.full, pos, end))
        };
        let mut seg_marks: Vec<WatermarkMark> = seg
            .marks
            .iter()
            .take_while(|m| (m.row as usize) < end)
            .map(|m| WatermarkMark {
                row: m.row - pos as u32,
                watermark: m.watermark,
            })
            .collect();
        let output = self.run_process(
            &segment,
            Some(&segment),
            seg.headers.map(|h| (h, pos)),
            &mut seg_marks,
        )?;
        let limit = self.last_limit();
        let passed = seg_marks.partition_point(|m| (m.row as usize) < limit);
        self.add_output(outs, output, &seg_marks[..passed], limit, end - pos)?;
        if let Some(last) = seg_marks[..passed].last()
            && let Some(hs) = self.live_state()
        {
            hs.watermark = hs.watermark.max(last.watermark);
        }
        Ok((limit, passed))
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
        types::ErrorCode::State => "state",
    }
}

/// Rows `from..to` of `b`, as a batch of their own.
fn slice(b: &types::EventBatch, from: usize, to: usize) -> types::EventBatch {
    let rebase = |offsets: &[u32]| -> Vec<u32> {
        let base = offsets[from];
        offsets[from..=to].iter().map(|o| o - base).collect()
    };
    let bytes = |offsets: &[u32], data: &[u8]| -> Vec<u8> {
        data[offsets[from] as usize..offsets[to] as usize].to_vec()
    };
    types::EventBatch {
        timestamps: b.timestamps[from..to].to_vec(),
        key_offsets: rebase(&b.key_offsets),
        key_data: bytes(&b.key_offsets, &b.key_data),
        value_offsets: rebase(&b.value_offsets),
        value_data: bytes(&b.value_offsets, &b.value_data),
    }
}

/// Rows `pos..end` of a batch (`full`), with the marks from the first not yet passed
/// (rows relative to `full`) and the batch's headers.
struct Segment<'a> {
    full: &'a Arc<types::EventBatch>,
    headers: Option<&'a Arc<Headers>>,
    pos: usize,
    end: usize,
    marks: &'a [WatermarkMark],
}

/// What the calls for one input (a batch, a watermark, a processing-time tick) emitted,
/// put together in order, with the watermark marks carried between them.
#[derive(Default)]
struct Outputs {
    main: Option<Batch>,
    sides: Vec<(String, Batch)>,
    /// The last mark pushed: a side output that starts later starts at it.
    last_mark: Option<i64>,
    /// Failed calls handled under the failure policy, to report.
    failures: Vec<sluice_core::operator::OperatorFailure>,
}

impl Outputs {
    /// The watermark advanced to `watermark` after what was added so far.
    fn push_mark(&mut self, watermark: i64) {
        self.main
            .get_or_insert_with(Batch::new)
            .push_watermark(watermark);
        for (_, b) in &mut self.sides {
            b.push_watermark(watermark);
        }
        self.last_mark = Some(watermark);
    }

    fn append_main(&mut self, b: Batch) {
        append(&mut self.main, b);
    }

    fn append_side(&mut self, name: String, b: Batch) {
        match self.sides.iter_mut().find(|(n, _)| *n == name) {
            Some((_, into)) => {
                let mut slot = Some(std::mem::take(into));
                append(&mut slot, b);
                *into = slot.expect("append keeps the batch");
            }
            None => {
                let mut slot = self.last_mark.map(|w| {
                    let mut start = Batch::new();
                    start.push_watermark(w);
                    start
                });
                append(&mut slot, b);
                self.sides
                    .push((name, slot.expect("append keeps the batch")));
            }
        }
    }

    /// Sends everything to `out`: the main output if it has events or marks, each side
    /// output that has events.
    fn flush(self, out: &mut dyn Collector) {
        for f in self.failures {
            out.report_failure(f);
        }
        if let Some(main) = self.main
            && !main.is_void()
        {
            out.collect(main);
        }
        for (name, batch) in self.sides {
            if !batch.is_empty() {
                out.collect_side(&name, batch);
            }
        }
    }
}

/// Appends `b` (rows and marks) to `into`; moves it when `into` holds no rows yet.
fn append(into: &mut Option<Batch>, mut b: Batch) {
    match into {
        None => *into = Some(b),
        Some(a) if a.is_empty() => {
            // Only marks so far, all before row 0: they go before `b`'s.
            let mut marks = a.take_marks();
            for m in b.take_marks() {
                match marks.last_mut() {
                    Some(last) if m.watermark <= last.watermark => {}
                    Some(last) if last.row == m.row => last.watermark = m.watermark,
                    _ => marks.push(m),
                }
            }
            b.set_marks(marks)
                .expect("marks before row 0 then b's own stay in order");
            *into = Some(b);
        }
        Some(a) => {
            let marks = b.marks();
            let mut mi = 0;
            for r in 0..b.len() {
                while let Some(m) = marks.get(mi).filter(|m| m.row as usize <= r) {
                    a.push_watermark(m.watermark);
                    mi += 1;
                }
                a.push_from(&b, r);
            }
            for m in &marks[mi..] {
                a.push_watermark(m.watermark);
            }
        }
    }
}

/// Sends what the guest wrote to stdout and stderr to `tracing`, line by line; returns
/// the last [`STDERR_TAIL`] bytes of stderr (for a fault message).
fn forward_output(inst: &mut Instance, label: &str) -> String {
    let (out, out_dropped) = inst.stdout.drain();
    let (err, err_dropped) = inst.stderr.drain();
    let hs = inst.store.data_mut();
    for (stream, bytes, dropped) in [("stdout", &out, out_dropped), ("stderr", &err, err_dropped)] {
        if dropped > 0 {
            tracing::warn!(target: "sluice::guest", operator = label, stream, "dropped {dropped} bytes of guest output over the capture limit");
        }
        for line in String::from_utf8_lossy(bytes).lines() {
            if !line.is_empty() {
                hs.guest_line(stream, line, tracing::Level::INFO);
            }
        }
    }
    if hs.log_budget.dropped > 0 {
        let note = format!(
            "dropped {} lines of guest output over the limit of {} lines a second",
            hs.log_budget.dropped, hs.log_budget.per_second
        );
        tracing::warn!(target: "sluice::guest", operator = label, "{note}");
        if let Some(log) = &hs.guest_log {
            log.line(label, "host", &note);
        }
        hs.log_budget.dropped = 0;
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
    } else if trap == Some(&Trap::OutOfFuel) {
        format!(
            "{what} ran out of its fuel of {} per call (limits.fuel)",
            limits.fuel_per_call.unwrap_or_default()
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
    // The guest's call stack at the trap (function names where the component kept its
    // name section), innermost first.
    if let Some(bt) = e.downcast_ref::<wasmtime::WasmBacktrace>()
        && !bt.frames().is_empty()
    {
        message.push('\n');
        message.push_str(bt.to_string().trim_end());
    }
    message
}

impl Operator for WasmOperator {
    fn initialize_state(&mut self, state: StateContext) -> Result<(), OperatorError> {
        self.clock = state.clock;
        match self.instance.as_mut() {
            Some(inst) => {
                let hs = inst.store.data_mut();
                hs.keyed = state.keyed;
                hs.clock = self.clock.clone();
            }
            None => self.parked_keyed = state.keyed,
        }
        Ok(())
    }

    fn keyed_state(&mut self) -> Option<&mut KeyedStateStore> {
        match self.instance.as_mut() {
            Some(inst) if inst.store.data().keyed.is_some() => inst.store.data_mut().keyed.as_mut(),
            _ => self.parked_keyed.as_mut(),
        }
    }

    fn take_keyed_state(&mut self) -> Option<KeyedStateStore> {
        if let Some(inst) = self.instance.as_mut()
            && let Some(store) = inst.store.data_mut().keyed.take()
        {
            return Some(store);
        }
        self.parked_keyed.take()
    }

    fn next_processing_timer(&self) -> Option<i64> {
        if self.dead.is_some() {
            return None;
        }
        self.instance
            .as_ref()?
            .store
            .data()
            .keyed
            .as_ref()?
            .next_timer(TimeDomain::ProcessingTime)
    }

    fn on_processing_time(
        &mut self,
        now: i64,
        out: &mut dyn Collector,
    ) -> Result<(), OperatorError> {
        let mut outs = Outputs::default();
        let r = self.fire_due(TimeDomain::ProcessingTime, now, &mut outs);
        self.end_journal();
        outs.flush(out);
        self.count_failure(&r, out);
        r
    }

    fn process_watermark(
        &mut self,
        watermark: i64,
        out: &mut dyn Collector,
    ) -> Result<(), OperatorError> {
        if self.is_keyed() {
            // Timers first, then the watermark (as Flink's timer service does).
            let mut outs = Outputs::default();
            let r = self.advance_watermark(watermark, &mut outs);
            self.end_journal();
            outs.flush(out);
            self.count_failure(&r, out);
            r?;
        } else if let Some(hs) = self.live_state() {
            hs.watermark = hs.watermark.max(watermark);
        }
        out.collect_watermark(watermark);
        Ok(())
    }

    fn open(&mut self, ctx: &OperatorContext) -> Result<(), OperatorError> {
        self.context = ctx.to_string();
        self.identity = Some(ctx.clone());
        self.start_instance()
    }

    fn process_batch(
        &mut self,
        batch: Batch,
        out: &mut dyn Collector,
    ) -> Result<(), OperatorError> {
        let r = if self.is_keyed() || self.policy != FailurePolicy::Fail {
            self.process_segmented(batch, out)
        } else {
            self.process_stateless(batch, out)
        };
        self.end_journal();
        self.count_failure(&r, out);
        r
    }
}

impl WasmOperator {
    /// `process_batch` of an operator that is not keyed, under the `fail` policy: the
    /// whole batch in one call, its columns moved in.
    fn process_stateless(
        &mut self,
        batch: Batch,
        out: &mut dyn Collector,
    ) -> Result<(), OperatorError> {
        let input_len = batch.len();
        if input_len == 0 && self.instance.is_some() && self.dead.is_none() {
            // Only watermark marks (common after a key-by split): nothing for the guest.
            if let Some(w) = batch.last_watermark()
                && let Some(hs) = self.live_state()
            {
                hs.watermark = hs.watermark.max(w);
            }
            if !batch.is_void() {
                out.collect(batch);
            }
            return Ok(());
        }
        let mut batch = batch;
        let headers = batch.take_headers().map(Arc::new);
        let (timestamps, key_offsets, key_data, value_offsets, value_data, marks) =
            batch.into_columns();
        let input = types::EventBatch {
            timestamps,
            key_offsets,
            key_data,
            value_offsets,
            value_data,
        };
        // The marks go into the call's scope (for `current-watermark`) and come back.
        let mut marks = marks;
        let output =
            self.run_process(&input, None, headers.as_ref().map(|h| (h, 0)), &mut marks)?;
        if let Some(last) = marks.last()
            && let Some(hs) = self.live_state()
        {
            hs.watermark = hs.watermark.max(last.watermark);
        }
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
