//! The engine, the epoch ticker, component loading and validation.

use crate::bindings::{OperatorWorld, OperatorWorldPre};
use crate::cache::{CacheOutcome, DiskCache, content_key};
use crate::operator::HostState;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the background thread advances the engine's epoch; the unit of
/// [`Limits::time_per_call`](crate::Limits::time_per_call) deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Process-wide settings of a [`WasmRuntime`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Root of the compiled-component cache (entries go to `<dir>/compiled/`); `None`
    /// disables the cache. Default: [`RuntimeConfig::default_cache_dir`].
    pub cache_dir: Option<PathBuf>,
    /// Use wasmtime's pooling allocator (instance slots reserved up front, ~15 µs
    /// instantiation instead of ~25 µs). If reserving the pool fails (for example under
    /// a virtual-memory ulimit) the runtime falls back to on-demand allocation, with a
    /// warning. Default: true.
    pub pooling: bool,
    /// Pool size: how many operator instances can be live at once in this process
    /// (instantiating one more fails with an error until one is dropped). Each slot
    /// reserves address space for one linear memory (a few GiB of *virtual* memory,
    /// nothing resident until used). Default: 256.
    pub max_instances: u32,
    /// The largest linear memory any instance may have, in bytes; per-operator
    /// [`Limits::max_memory_bytes`](crate::Limits::max_memory_bytes) above it are capped
    /// to it. Default: 1 GiB.
    pub max_memory_per_instance: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: Self::default_cache_dir(),
            pooling: true,
            max_instances: 256,
            max_memory_per_instance: 1 << 30,
        }
    }
}

impl RuntimeConfig {
    /// `$SLUICE_CACHE_DIR`, else `$XDG_CACHE_HOME/sluice`, else `$HOME/.cache/sluice`;
    /// `None` if none of them is set.
    pub fn default_cache_dir() -> Option<PathBuf> {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        var("SLUICE_CACHE_DIR")
            .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("sluice")))
            .or_else(|| var("HOME").map(|d| d.join(".cache").join("sluice")))
    }

    /// A configuration with the cache at `dir` and other settings at their defaults.
    pub fn with_cache_dir(dir: impl Into<PathBuf>) -> Self {
        RuntimeConfig {
            cache_dir: Some(dir.into()),
            ..Self::default()
        }
    }
}

/// The runtime could not be created.
#[derive(Debug, thiserror::Error)]
#[error("cannot create the WebAssembly runtime: {0}")]
pub struct RuntimeError(String);

/// Why a `.wasm` file could not be loaded as a Sluice operator. Every message names the
/// file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file is missing or unreadable.
    #[error("cannot read operator '{path}': {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not WebAssembly at all (no `\0asm` header).
    #[error("'{path}' is not a WebAssembly file (it does not start with the \\0asm header)")]
    NotWasm {
        /// The file.
        path: String,
    },
    /// The file is a core WebAssembly module, not a component.
    #[error(
        "'{path}' is a core WebAssembly module, not a component: build it for wasm32-wasip2 \
         (`cargo build --release --target wasm32-wasip2`) or wrap it with \
         `wasm-tools component new`"
    )]
    CoreModule {
        /// The file.
        path: String,
    },
    /// The component is malformed (truncated, corrupt) or uses features this host lacks.
    #[error("'{path}' is not a valid WebAssembly component: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// The compiler's error.
        message: String,
    },
    /// The component does not implement `sluice:operator/operator-world@0.2.0`.
    #[error("'{path}' does not implement the Sluice operator world ({world}): {message}")]
    WrongWorld {
        /// The file.
        path: String,
        /// The expected world.
        world: &'static str,
        /// What is missing or mismatched.
        message: String,
    },
    /// The component imports something the host does not provide.
    #[error("'{path}' imports something the Sluice host does not provide: {message}")]
    UnsupportedImport {
        /// The file.
        path: String,
        /// Which import, and why.
        message: String,
    },
}

struct Inner {
    engine: Engine,
    /// Runtimes whose engines meter fuel or cap the wasm stack differently, by
    /// `(fuel, max stack bytes)`: made on first use (see [`WasmRuntime::variant`]).
    variants: std::sync::Mutex<std::collections::HashMap<(bool, Option<usize>), WasmRuntime>>,
    linker: Linker<HostState>,
    cache: Option<DiskCache>,
    config: RuntimeConfig,
    compilations: AtomicU64,
    stop: Arc<AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Engine settings beyond the runtime's: fuel metering, and the wasm stack's size.
type Variant = (bool, Option<usize>);

/// The WebAssembly runtime: one per process, cheap to clone (shared).
///
/// Holds the wasmtime [`Engine`] (component model, epoch interruption, pooling
/// allocator), the [`Linker`] with the host's imports (WASI p2, sandboxed per instance,
/// and `sluice:operator`'s `host`, `keyed-state` and `timers`), the compiled-component cache, and a background thread
/// that ticks the epoch every [`EPOCH_TICK`] until the last clone is dropped.
#[derive(Clone)]
pub struct WasmRuntime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for WasmRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmRuntime")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

fn engine_config(rc: &RuntimeConfig, pooling: bool, variant: Variant) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.consume_fuel(variant.0);
    if let Some(bytes) = variant.1 {
        config.max_wasm_stack(bytes);
    }
    if pooling {
        let n = rc.max_instances.max(1);
        let mut pool = PoolingAllocationConfig::new();
        // A Rust wasm32-wasip2 component has one main module plus a few shim modules
        // (core instances), one memory and a couple of tables.
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(10))
            .total_memories(n)
            .total_tables(n.saturating_mul(4))
            .total_stacks(n)
            .max_core_instances_per_component(20)
            .max_memories_per_component(2)
            .max_tables_per_component(8)
            .max_memory_size(rc.max_memory_per_instance)
            .table_elements(100_000);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

impl WasmRuntime {
    /// Creates the engine, the linker and the epoch thread.
    ///
    /// Errors: wasmtime rejects the configuration on this machine, or the thread cannot
    /// be spawned.
    pub fn new(config: RuntimeConfig) -> Result<WasmRuntime, RuntimeError> {
        Self::build(config, (false, None))
    }

    /// The runtime for operators whose limits ask for fuel metering (`fuel`: wasmtime's
    /// deterministic count of executed instructions, checked per call) or a wasm stack
    /// of `max_stack` bytes (wasmtime's default is 512 KiB): both are settings of an
    /// engine, so each combination gets its own engine (without the pooling
    /// allocator), made on first use and kept. The default combination is this runtime.
    ///
    /// Errors: wasmtime refuses the settings (a stack size it cannot honour, say).
    pub fn variant(
        &self,
        fuel: bool,
        max_stack: Option<usize>,
    ) -> Result<WasmRuntime, RuntimeError> {
        if !fuel && max_stack.is_none() {
            return Ok(self.clone());
        }
        let mut variants = self
            .inner
            .variants
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(rt) = variants.get(&(fuel, max_stack)) {
            return Ok(rt.clone());
        }
        let config = RuntimeConfig {
            pooling: false,
            ..self.inner.config.clone()
        };
        let rt = Self::build(config, (fuel, max_stack))?;
        variants.insert((fuel, max_stack), rt.clone());
        Ok(rt)
    }

    fn build(config: RuntimeConfig, variant: Variant) -> Result<WasmRuntime, RuntimeError> {
        let engine = match Engine::new(&engine_config(&config, config.pooling, variant)) {
            Ok(e) => e,
            Err(e) if config.pooling => {
                tracing::warn!(
                    "the pooling instance allocator is unavailable ({e:#}); \
                     falling back to on-demand allocation"
                );
                Engine::new(&engine_config(&config, false, variant))
                    .map_err(|e| RuntimeError(format!("{e:#}")))?
            }
            Err(e) => return Err(RuntimeError(format!("{e:#}"))),
        };
        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| RuntimeError(format!("{e:#}")))?;
        OperatorWorld::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| RuntimeError(format!("{e:#}")))?;
        forbid_sleeping(&mut linker).map_err(|e| RuntimeError(format!("{e:#}")))?;

        let stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("sluice-wasm-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| RuntimeError(format!("spawning the epoch thread: {e}")))?;
        }
        let cache = config
            .cache_dir
            .as_deref()
            .map(|d| DiskCache::new(d, &engine));
        Ok(WasmRuntime {
            inner: Arc::new(Inner {
                engine,
                variants: Default::default(),
                linker,
                cache,
                config,
                compilations: AtomicU64::new(0),
                stop,
            }),
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The configuration the runtime was created with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// How many components this runtime has compiled (cache misses) so far.
    pub fn compilations(&self) -> u64 {
        self.inner.compilations.load(Ordering::Relaxed)
    }

    /// Reads `path` and loads it as an operator: see [`WasmRuntime::load_component_bytes`].
    pub fn load_component(&self, path: impl AsRef<Path>) -> Result<LoadedComponent, LoadError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.display().to_string(),
            source,
        })?;
        self.load_component_bytes(&path.display().to_string(), &bytes)
    }

    /// Compiles `wasm` (or loads it from the cache) and checks that it implements
    /// `sluice:operator/operator-world@0.2.0` with imports the host provides. `name`
    /// (a path, an upload's name) is used in error messages.
    pub fn load_component_bytes(
        &self,
        name: &str,
        wasm: &[u8],
    ) -> Result<LoadedComponent, LoadError> {
        let path = || name.to_string();
        if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
            return Err(LoadError::NotWasm { path: path() });
        }
        // Version field: 1 for a core module; a component has layer 1 in bytes 6..8.
        if wasm[4..8] == [1, 0, 0, 0] {
            return Err(LoadError::CoreModule { path: path() });
        }
        let key = content_key(wasm);
        let (component, cache) = self.compile_cached(&key, name, wasm)?;
        check_exports(&self.inner.engine, &component).map_err(|message| LoadError::WrongWorld {
            path: path(),
            world: crate::WORLD,
            message,
        })?;
        let instance_pre = self.inner.linker.instantiate_pre(&component).map_err(|e| {
            LoadError::UnsupportedImport {
                path: path(),
                message: format!("{e:#}"),
            }
        })?;
        let pre = OperatorWorldPre::new(instance_pre).map_err(|e| LoadError::WrongWorld {
            path: path(),
            world: crate::WORLD,
            message: format!("{e:#}"),
        })?;
        let ty = component.component_type();
        let engine = &self.inner.engine;
        let exports = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
        let imports = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
        Ok(LoadedComponent {
            inner: Arc::new(LoadedInner {
                name: name.to_string(),
                sha256: key,
                exports,
                imports,
                cache,
                pre,
                runtime: self.clone(),
            }),
        })
    }

    fn compile_cached(
        &self,
        key: &str,
        name: &str,
        wasm: &[u8],
    ) -> Result<(Component, CacheOutcome), LoadError> {
        let engine = &self.inner.engine;
        let mut outcome = CacheOutcome::Compiled;
        if let Some(cache) = &self.inner.cache {
            match cache.load(engine, key) {
                Ok(Some(c)) => return Ok((c, CacheOutcome::Hit)),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(
                        "compiled-component cache entry does not load, recompiling: {e}"
                    );
                    outcome = CacheOutcome::Recompiled;
                }
            }
        }
        self.inner.compilations.fetch_add(1, Ordering::Relaxed);
        let component = Component::new(engine, wasm).map_err(|e| LoadError::Invalid {
            path: name.to_string(),
            message: format!("{e:#}"),
        })?;
        match &self.inner.cache {
            Some(cache) => {
                if let Err(e) = cache.store(key, &component) {
                    tracing::warn!("cannot store '{name}' in the compiled-component cache: {e}");
                    outcome = CacheOutcome::CompiledUncached;
                }
            }
            None => outcome = CacheOutcome::CompiledUncached,
        }
        Ok((component, outcome))
    }
}

/// Replaces WASI's timers (`subscribe-duration`, `subscribe-instant` of
/// `wasi:clocks/monotonic-clock`) with functions that trap: epoch deadlines interrupt
/// only guest code, so a guest blocked in a host sleep would hold its thread past its
/// time limit. An operator that sleeps (`std::thread::sleep`) fails with a clear fault.
fn forbid_sleeping(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use wasmtime::component::Resource;
    use wasmtime_wasi::p2::DynPollable;
    linker.allow_shadowing(true);
    let mut clock = linker.instance("wasi:clocks/monotonic-clock@0.2.12")?;
    for name in ["subscribe-duration", "subscribe-instant"] {
        clock.func_wrap(
            name,
            move |_store, (_t,): (u64,)| -> wasmtime::Result<(Resource<DynPollable>,)> {
                Err(wasmtime::format_err!(
                    "the operator tried to sleep or wait on a timer (wasi:clocks {name}), which \
                 Sluice operators may not do"
                ))
            },
        )?;
    }
    linker.allow_shadowing(false);
    Ok(())
}

/// Checks the component's exports against the world's, naming what is missing.
fn check_exports(engine: &Engine, component: &Component) -> Result<(), String> {
    let ty = component.component_type();
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    if exports.iter().any(|e| e == crate::OPERATOR_EXPORT) {
        return Ok(());
    }
    let other_version = exports
        .iter()
        .find(|e| e.starts_with("sluice:operator/operator@"));
    Err(match other_version {
        Some(v) => format!(
            "it exports '{v}', but this host implements '{}'",
            crate::OPERATOR_EXPORT
        ),
        None => format!(
            "it does not export '{}' (it exports: {})",
            crate::OPERATOR_EXPORT,
            if exports.is_empty() {
                "nothing".to_string()
            } else {
                exports.join(", ")
            }
        ),
    })
}

struct LoadedInner {
    name: String,
    sha256: String,
    exports: Vec<String>,
    imports: Vec<String>,
    cache: CacheOutcome,
    pre: OperatorWorldPre<HostState>,
    runtime: WasmRuntime,
}

/// A compiled, validated operator component, pre-instantiated (imports resolved) and
/// ready to instantiate cheaply, once per subtask. Cheap to clone.
#[derive(Clone)]
pub struct LoadedComponent {
    inner: Arc<LoadedInner>,
}

impl std::fmt::Debug for LoadedComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedComponent")
            .field("name", &self.inner.name)
            .field("sha256", &self.inner.sha256)
            .field("cache", &self.inner.cache)
            .finish_non_exhaustive()
    }
}

impl LoadedComponent {
    /// The name given at load time (usually the file's path).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// SHA-256 of the component's bytes, lowercase hex: its content address.
    pub fn sha256(&self) -> &str {
        &self.inner.sha256
    }

    /// The names of the component's exports (interfaces and functions), as
    /// `sluice:operator/operator@0.2.0`.
    pub fn exports(&self) -> &[String] {
        &self.inner.exports
    }

    /// The names of the component's imports (all provided by the host), as
    /// `wasi:io/streams@0.2.6` or `sluice:operator/host@0.2.0`.
    pub fn imports(&self) -> &[String] {
        &self.inner.imports
    }

    /// Whether it came from the compiled-component cache.
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.inner.cache
    }

    pub(crate) fn pre(&self) -> &OperatorWorldPre<HostState> {
        &self.inner.pre
    }

    pub(crate) fn runtime(&self) -> &WasmRuntime {
        &self.inner.runtime
    }
}
