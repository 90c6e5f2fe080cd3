//! The tests' own Python: a virtual environment under `target/` with the PyPI packages some
//! tests need, pinned, created on first use and reused after. A fresh machine needs only
//! `python3` (with its standard `venv` module) and the network to PyPI; nothing is installed
//! by hand, and nothing outside `target/` is touched.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Every package a test needs, pinned (one environment for all of them).
pub const REQUIREMENTS: &[&str] = &[
    "cryptography==48.0.0",
    "schemathesis==4.32.5",
    // The console's browser test (console.rs) drives Chromium's chromedriver with it.
    "selenium==4.27.1",
];

/// The virtual environment's directory.
fn venv_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("test-venv")
}

/// The path of the environment's `python`, creating the environment and installing
/// [`REQUIREMENTS`] when they are not there yet. Test binaries (and nextest's processes) that
/// call it at once take turns through a lock file; a failure says what to do.
pub fn venv_python() -> PathBuf {
    let dir = venv_dir();
    let python = dir.join("bin").join("python");
    let marker = dir.join("statemanager-requirements.txt");
    let wanted = REQUIREMENTS.join("\n");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(wanted.as_str()) {
        return python;
    }
    std::fs::create_dir_all(env!("CARGO_TARGET_TMPDIR")).expect("target tmp dir");
    let lock_path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("test-venv.lock");
    let lock = std::fs::File::create(&lock_path).expect("venv lock file");
    lock.lock().expect("venv lock");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(wanted.as_str()) {
        return python;
    }
    if !python.exists() {
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&dir),
            "python3 -m venv",
        );
    }
    eprintln!(
        "installing {} into {}",
        REQUIREMENTS.join(" "),
        dir.display()
    );
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(REQUIREMENTS),
        "pip install",
    );
    std::fs::write(&marker, wanted).expect("venv marker");
    python
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run it ({e}); the tests need python3"));
    assert!(
        out.status.success(),
        "{what} failed (the tests need python3 with its venv module and PyPI):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
