#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]
//! Shared set-up for the sandbox integration tests: a fake home with an IronClaw tree, the
//! probe installed as a skill, a recording violation sink.

use ironclaw_crds::Grants;
use ironclaw_sandbox::{Mode, SandboxSpec, SpawnOptions, Violation, ViolationSink};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

/// Tests run in parallel threads: a binary being copied (open for writing) in one thread is
/// inherited by a child forked in another until that child execs, and exec'ing the copy then
/// fails with ETXTBSY. Copies take this lock exclusively, forks share it.
pub static FORK_LOCK: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Runs `f` (which forks) while no test is writing a binary.
pub fn forking<T>(f: impl FnOnce() -> T) -> T {
    let _g = FORK_LOCK.read().unwrap_or_else(|e| e.into_inner());
    f()
}

#[derive(Default)]
pub struct Recorder(pub Mutex<Vec<Violation>>);

impl ViolationSink for Recorder {
    fn report(&self, v: Violation) {
        self.0.lock().unwrap().push(v);
    }
}

pub struct Home {
    pub tmp: tempfile::TempDir,
    pub home: PathBuf,
    pub ironclaw: PathBuf,
    pub ws_root: PathBuf,
    pub skill_dir: PathBuf,
    pub probe: PathBuf,
}

pub fn home(skill: &str) -> Home {
    // Not under /tmp: the skill gets a private /tmp, so a home there would be invisible anyway.
    let tmp = tempfile::Builder::new()
        .prefix("ironclaw-sbx")
        .tempdir_in("/var/tmp")
        .unwrap();
    let home = tmp.path().join("home");
    let ironclaw = home.join(".ironclaw");
    let ws_root = ironclaw.join("workspace");
    let skill_dir = ironclaw.join("skills").join(skill);
    std::fs::create_dir_all(&skill_dir).unwrap();
    std::fs::create_dir_all(ws_root.join("shared")).unwrap();
    std::fs::write(ws_root.join("shared/notes.txt"), "shared notes").unwrap();
    std::fs::create_dir_all(ws_root.join("skills/other")).unwrap();
    std::fs::write(ws_root.join("skills/other/secret.txt"), "other skill data").unwrap();
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::write(home.join(".ssh/id_ed25519"), "PRIVATE KEY").unwrap();
    std::fs::write(ironclaw.join("ironclaw.json"), "{\"config\":1}").unwrap();
    let probe = skill_dir.join("probe");
    {
        let _w = FORK_LOCK.write().unwrap_or_else(|e| e.into_inner());
        std::fs::copy(env!("CARGO_BIN_EXE_ironclaw-sandbox-probe"), &probe).unwrap();
    }
    Home {
        tmp,
        home,
        ironclaw,
        ws_root,
        skill_dir,
        probe,
    }
}

impl Home {
    pub fn spec(&self, skill: &str, mode: Mode, grants: Grants, args: &[&str]) -> SandboxSpec {
        let mut argv = vec![self.probe.clone().into_os_string()];
        argv.extend(args.iter().map(Into::into));
        SandboxSpec {
            skill: skill.into(),
            mode,
            argv,
            skill_dir: self.skill_dir.clone(),
            workspace: self.ws_root.join("skills").join(skill),
            home: self.home.clone(),
            workspace_root: self.ws_root.clone(),
            grants,
            env: vec![],
            hidden_paths: vec![self.ironclaw.clone()],
        }
    }
}

pub fn grants(items: &[&str]) -> Grants {
    let mut g = Grants::default();
    for item in items {
        if let Some(n) = item.strip_prefix("net=") {
            g.network.push(n.parse().unwrap());
        } else if let Some(e) = item.strip_prefix("env=") {
            g.env.push(e.parse().unwrap());
        } else if let Some(f) = item.strip_prefix("fs=") {
            g.filesystem.push(f.parse().unwrap());
        } else if *item == "shell" {
            g.shell = true;
        }
    }
    g
}

/// Runs the spec, returns (stdout+stderr, exit code, violations).
pub fn run(spec: &SandboxSpec) -> (String, i32, Vec<Violation>) {
    run_with_proxy(spec, None)
}

/// [`run`] with IronClaw's host proxy given (standard and audit-only modes).
pub fn run_with_proxy(
    spec: &SandboxSpec,
    host_proxy: Option<std::net::SocketAddrV4>,
) -> (String, i32, Vec<Violation>) {
    let rec = Arc::new(Recorder::default());
    let sb = forking(|| {
        ironclaw_sandbox::spawn_with(
            spec,
            rec.clone(),
            SpawnOptions {
                stdin: Some(Stdio::null()),
                stdout: Some(Stdio::piped()),
                stderr: Some(Stdio::piped()),
                host_proxy,
            },
        )
    })
    .unwrap();
    let out = sb.wait_with_output().unwrap();
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    let v = rec.0.lock().unwrap().clone();
    (s.trim().to_string(), out.status.code().unwrap_or(-1), v)
}
