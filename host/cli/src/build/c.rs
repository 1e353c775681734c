//! `sluice build` for C: Debian's clang 14 (which targets only WASI preview 1, with
//! wasi-libc) compiles the operator with the C SDK and the bindings that wit-bindgen's C
//! generator makes from the WIT; the core module then gets the world's component type
//! and becomes a component with the WASI preview-1 reactor adapter (from the crate
//! `wasi-preview1-component-adapter-provider`, matching the host's wasmtime). Bindings,
//! metadata and adapter are done in process (`wit-bindgen-c`, `wit-component`), so only
//! clang, lld and wasi-libc need installing.

use super::{find_tool, run};
use std::path::Path;
use std::process::Command;

const SDK_H: &str = include_str!("../../../../guest-sdk/c/sluice.h");
const SDK_C: &str = include_str!("../../../../guest-sdk/c/sluice.c");

/// What to install when clang or its WebAssembly parts are missing (Debian).
const INSTALL: &str = "apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32 (Debian's clang 14 with wasi-libc)";

/// The world's C bindings (`operator_world.h` / `.c`), generated from the WIT in `wit`
/// into `dir`. Returns the parsed package and its world, for the component metadata.
fn bindings(wit: &Path, dir: &Path) -> Result<(wit_parser::Resolve, wit_parser::WorldId), String> {
    let mut resolve = wit_parser::Resolve::default();
    let (pkg, _) = resolve
        .push_dir(wit)
        .map_err(|e| format!("reading the WIT package: {e:#}"))?;
    let world = resolve
        .select_world(&[pkg], Some("operator-world"))
        .map_err(|e| format!("the WIT package: {e:#}"))?;
    let opts = wit_bindgen_c::Opts {
        // The component type is embedded with wit-component below.
        no_object_file: true,
        ..Default::default()
    };
    let mut files = wit_bindgen_core::Files::default();
    opts.build()
        .generate(&mut resolve, world, &mut files)
        .map_err(|e| format!("generating the C bindings: {e:#}"))?;
    for (name, text) in files.iter() {
        std::fs::write(dir.join(name), text).map_err(|e| format!("{name}: {e}"))?;
    }
    // The bindings call this to link the component type's object file, which the
    // metadata embedded below replaces.
    std::fs::write(
        dir.join("component_type.c"),
        "void __component_type_object_force_link_operator_world(void) {}\n",
    )
    .map_err(|e| format!("component_type.c: {e}"))?;
    Ok((resolve, world))
}

/// Builds `<src>/*.c` (with `app.c`) and the SDK into the component `out`; `support`
/// holds the WIT package (`support/wit`) and receives the SDK and bindings.
pub fn build(src: &Path, support: &Path, out: &Path) -> Result<(), String> {
    let clang = find_tool("clang", Some("SLUICE_CLANG"), &[], INSTALL)?;
    let io = |e: std::io::Error| format!("{}: {e}", support.display());
    std::fs::write(support.join("sluice.h"), SDK_H).map_err(io)?;
    std::fs::write(support.join("sluice.c"), SDK_C).map_err(io)?;
    let (resolve, world) = bindings(&support.join("wit"), support)?;
    let mut sources: Vec<_> = std::fs::read_dir(src)
        .map_err(|e| format!("{}: {e}", src.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "c"))
        .collect();
    sources.sort();
    let core = support.join("core.wasm");
    run(
        Command::new(clang)
            .args(["--target=wasm32-wasi", "-O2", "-mexec-model=reactor"])
            .args(["-Wall", "-Werror=implicit-function-declaration"])
            .arg("-I")
            .arg(support)
            .arg("-I")
            .arg(src)
            .args(&sources)
            .arg(support.join("sluice.c"))
            .arg(support.join("operator_world.c"))
            .arg(support.join("component_type.c"))
            // Debian's libc.a carries debug info that would make the module megabytes.
            .arg("-Wl,--strip-debug")
            .arg("-o")
            .arg(&core),
        &format!("clang (if it or its wasm32-wasi parts are missing: {INSTALL})"),
    )?;
    let mut module = std::fs::read(&core).map_err(|e| format!("{}: {e}", core.display()))?;
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
        false,
    )
    .map_err(|e| format!("embedding the component type: {e:#}"))?;
    let component = wit_component::ComponentEncoder::default()
        .module(&module)
        .and_then(|e| {
            e.adapter(
                wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
                wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
            )
        })
        .and_then(|e| e.validate(true).encode())
        .map_err(|e| {
            format!(
                "making the component (does app.c define sluice_init and sluice_process?): {e:#}"
            )
        })?;
    std::fs::write(out, component).map_err(|e| format!("{}: {e}", out.display()))
}
