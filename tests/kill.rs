//! Kills a running job with SIGKILL at random moments and restarts it, for the
//! exactly-once tests.

use serde_yaml_ng::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The newest complete checkpoint id of `job` in `storage`, if any.
pub fn newest_checkpoint(storage: &Path, job: &str) -> Option<u64> {
    std::fs::read_dir(storage.join(job))
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let id = name.strip_prefix("chk-")?.parse().ok()?;
            e.path().join("_metadata").exists().then_some(id)
        })
        .max()
}

/// A small deterministic generator (xorshift) for the kill moments.
struct Rng(u64);
impl Rng {
    fn next_ms(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        lo + self.0 % (hi - lo)
    }
}

/// Runs `sluice run spec` (`sluice`: the binary) and kills it with SIGKILL at a random moment (`rng`), ten
/// times, each time restarting it; then runs it to its end. Returns the checkpoint each
/// killed attempt started from (the newest complete one when it started).
pub fn kill_ten_times(
    sluice: &Path,
    spec: &Path,
    job: &str,
    storage: &Path,
    cache: &Path,
) -> Vec<Option<u64>> {
    let seed = std::env::var("SLUICE_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("{job}: kill moments seeded with SLUICE_KILL_SEED={seed}");
    let mut rng = Rng(seed);
    let run = || {
        Command::new(sluice)
            .args(["run", spec.to_str().unwrap(), "--quiet"])
            .env("SLUICE_CACHE_DIR", cache)
            // Control sockets per test: the tests run jobs of the same name at once.
            .env("XDG_RUNTIME_DIR", cache.join("run"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sluice")
    };
    let mut restored_from = Vec::new();
    while restored_from.len() < 10 {
        let before = newest_checkpoint(storage, job);
        let mut child = run();
        // The kill moment counts from when the job is running (`sluice: job '…' ready`),
        // not from the process start: on a loaded machine, loading the operators alone
        // can take longer than the whole window.
        let (ready, said) = ready_signal(child.stderr.take().expect("piped stderr"));
        let t = Instant::now();
        while ready.recv_timeout(Duration::from_millis(10)).is_err()
            && child.try_wait().unwrap().is_none()
        {
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "{job} was not ready after 120 s"
            );
        }
        let wait = Duration::from_millis(rng.next_ms(600, 2_000));
        let t = Instant::now();
        while t.elapsed() < wait && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(10));
        }
        // With a checkpoint to restore, the kill waits until the job said that it
        // restored it (downloading state can take a while on a loaded machine).
        let t = Instant::now();
        while before.is_some()
            && !said.lock().unwrap().contains("sluice: restored from ")
            && child.try_wait().unwrap().is_none()
        {
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "{job} did not say within 120 s that it restored checkpoint {before:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "sluice failed: {status}");
            panic!(
                "{job} finished before it was killed ten times ({}): use more input",
                restored_from.len()
            );
        }
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        check_said(&said, before);
        restored_from.push(before);
    }
    let before = newest_checkpoint(storage, job);
    let out = run().wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the last run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if let Err(e) = said_right(&String::from_utf8_lossy(&out.stderr), before) {
        panic!("{e}");
    }
    eprintln!("{job}: 10 kills; each attempt started from checkpoint {restored_from:?}");
    // Attempts resumed from checkpoints (how many depends on the machine's speed).
    assert!(
        restored_from.iter().flatten().count() >= 3,
        "attempts should resume from checkpoints: {restored_from:?}"
    );
    // The finished job deleted its checkpoints.
    assert_eq!(newest_checkpoint(storage, job), None);
    restored_from
}

/// What `sluice run` wrote to stderr so far.
type Said = std::sync::Arc<std::sync::Mutex<String>>;

/// A receiver that gets `()` when `sluice run` writes its "ready" line to `stderr`
/// (read to its end on a thread, so the pipe never fills), and what it wrote.
fn ready_signal(stderr: std::process::ChildStderr) -> (std::sync::mpsc::Receiver<()>, Said) {
    let (tx, rx) = std::sync::mpsc::channel();
    let said = Said::default();
    let keep = said.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("' ready in ") {
                let _ = tx.send(());
            }
            let mut said = keep.lock().unwrap();
            said.push_str(&line);
            said.push('\n');
        }
    });
    (rx, said)
}

/// Whether a run that started while checkpoint `newest` was the newest complete one
/// said, in `text` (its stderr), that it restored from it (and said nothing of a restore
/// when there was none), with no terminal colour codes in the pipe. The error says what
/// is wrong, with the text.
fn said_right(text: &str, newest: Option<u64>) -> Result<(), String> {
    let line = text.lines().find(|l| l.contains("sluice: restored from "));
    let ok = match newest {
        Some(id) => line.is_some_and(|l| {
            l.contains(&format!("restored from checkpoint {id} "))
                && l.contains("the sources resume after the ")
        }),
        None => line.is_none(),
    };
    if !ok {
        return Err(format!(
            "started with newest checkpoint {newest:?}, the run said:\n{text}"
        ));
    }
    if text.contains('\x1b') {
        return Err(format!("colour codes in a pipe:\n{text}"));
    }
    Ok(())
}

/// [`said_right`] of a killed run, allowing its stderr reader a moment to reach the
/// pipe's end.
fn check_said(said: &Said, newest: Option<u64>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Err(e) = said_right(&said.lock().unwrap(), newest) {
        assert!(Instant::now() < deadline, "{e}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sets `spec`'s checkpoints (every 500 ms, 2 retained, under `dir/checkpoints`) and
/// RocksDB state (under `dir/state`), as the kill tests run jobs.
pub fn checkpoint_every_500ms(spec: &mut Value, dir: &Path) {
    spec["checkpoints"] = serde_yaml_ng::from_str(&format!(
        "{{interval: 500ms, retain: 2, storage: {}}}",
        dir.join("checkpoints").display()
    ))
    .expect("YAML");
    spec["state"] = serde_yaml_ng::from_str(&format!(
        "{{backend: rocksdb, dir: {}}}",
        dir.join("state").display()
    ))
    .expect("YAML");
}
