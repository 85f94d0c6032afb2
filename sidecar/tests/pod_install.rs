#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `ironclaw-sidecar install-wrapper DIR`.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ironclaw-sidecar");

#[test]
fn install_wrapper_copies_itself_read_only_executable_and_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("install-wrapper")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dest = dir.path().join("ironclaw-sidecar");
    let meta = std::fs::metadata(&dest).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o555);
    assert_eq!(std::fs::read(&dest).unwrap(), std::fs::read(BIN).unwrap());
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "no temporary file left behind");
    let help = Command::new(&dest).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("install-wrapper"));
}

#[test]
fn install_wrapper_into_a_missing_dir_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let out = Command::new(BIN)
        .arg("install-wrapper")
        .arg(&missing)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("nope"), "{e}");
}
