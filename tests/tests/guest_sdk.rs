//! The Rust guest SDK's own unit tests (it lives outside this workspace because it is
//! built for wasm32-wasip2), run natively so that `cargo test --workspace` covers them.

use sluice_tests::plugins::{cargo_command, repo_root};

#[test]
fn guest_sdk_unit_tests_pass() {
    let root = repo_root();
    let out = cargo_command()
        .arg("test")
        .arg("--quiet")
        .arg("--manifest-path")
        .arg(root.join("guest-sdk/rust/Cargo.toml"))
        .arg("--target-dir")
        .arg(root.join("guest-sdk/rust/target"))
        .output()
        .expect("run cargo test for the guest SDK");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the guest SDK's tests failed:\n{text}"
    );
    let passed: u32 = text
        .lines()
        .filter_map(|l| l.split("test result: ok. ").nth(1))
        .filter_map(|rest| rest.split(' ').next()?.parse::<u32>().ok())
        .sum();
    assert!(passed > 0, "no tests ran:\n{text}");
}
