//! Helpers for IronClaw's end-to-end tests: a throw-away `IRONCLAW_HOME`, running the real
//! `ironclaw` binary in it, and reading back its audit log (every record checked against
//! `docs/audit-events.schema.json`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary IronClaw home and the binary under test.
pub struct TempHome {
    pub dir: tempfile::TempDir,
    pub bin: PathBuf,
}

impl TempHome {
    /// A fresh home under /var/tmp (a real disk, readable by the sandbox's unprivileged tests).
    pub fn new(bin: &str) -> TempHome {
        let dir = tempfile::Builder::new()
            .prefix("ironclaw-e2e-")
            .tempdir_in("/var/tmp")
            .unwrap();
        TempHome {
            dir,
            bin: PathBuf::from(bin),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A command for `ironclaw ARGS` with IRONCLAW_HOME set and nothing inherited that matters.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .env("IRONCLAW_HOME", self.root())
            .env_remove("RUST_LOG");
        c
    }

    /// Runs `ironclaw ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs and asserts success, returning stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "ironclaw {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// Every audit record, each validated against the committed JSON Schema.
    pub fn events(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.root().join("audit.log")).unwrap_or_default();
        text.lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("torn or invalid audit line {l:?}: {e}"));
                ironclaw_sidecar::audit::schema::validate(&v)
                    .unwrap_or_else(|e| panic!("audit line fails the schema: {e}\n{l}"));
                v
            })
            .collect()
    }

    /// Records of one event type.
    pub fn events_of(&self, event: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == event)
            .collect()
    }
}

/// Text of a command's stderr.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes an executable file.
pub fn write_exec(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Creates a skill folder with a manifest and a Python entrypoint `bin/main.py`.
pub fn make_skill(dir: &Path, name: &str, requests: &str, python: &str) -> PathBuf {
    let src = dir.join(format!("src-{name}"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("skill.json"),
        format!(r#"{{"name":"{name}","version":"1.0.0","entrypoint":["bin/main.py"],"requests":{requests}}}"#),
    )
    .unwrap();
    write_exec(
        &src.join("bin/main.py"),
        &format!("#!/usr/bin/python3 -Su\n{python}"),
    );
    src
}
