#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Sandbox benchmarks, each against a baseline measured in the same run:
//! 1. start-to-exit of /usr/bin/true: plain fork/exec, IronClaw strict, bwrap (comparable policy);
//! 2. syscalls with no path under the strict filter vs no filter (getpid: cacheable verdict;
//!    fstat and ioctl(FIONREAD): rules that inspect arguments);
//! 3. a supervised open+close under strict vs unsandboxed.
//!
//! Run: cargo bench -p ironclaw-sandbox --bench sandbox

#[cfg(not(target_os = "linux"))]
fn main() {}

#[cfg(target_os = "linux")]
fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        child(&args[2..]);
        return;
    }
    bench::run();
}

/// Inner loops, printed as `name ns_per_call` lines (median of 15 batches).
#[cfg(target_os = "linux")]
fn child(args: &[String]) {
    use std::time::Instant;
    let n: usize = 100_000;
    let median = |f: &mut dyn FnMut()| -> f64 {
        let mut v: Vec<f64> = (0..15)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..n {
                    f();
                }
                t.elapsed().as_nanos() as f64 / n as f64
            })
            .collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[7]
    };
    // SAFETY: plain syscalls on valid arguments.
    unsafe {
        let g = median(&mut || {
            libc::syscall(libc::SYS_getpid);
        });
        println!("getpid {g:.1}");
        let mut st: libc::stat = std::mem::zeroed();
        let f = median(&mut || {
            libc::fstat(1, &mut st);
        });
        println!("fstat {f:.1}");
        let mut avail: libc::c_int = 0;
        let i = median(&mut || {
            libc::ioctl(0, libc::FIONREAD, &mut avail);
        });
        println!("ioctl {i:.1}");
        if let Some(p) = args.first() {
            let c = std::ffi::CString::new(p.as_str()).unwrap();
            let m = 5_000;
            let mut v: Vec<f64> = (0..9)
                .map(|_| {
                    let t = Instant::now();
                    for _ in 0..m {
                        let fd = libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                        libc::close(fd);
                    }
                    t.elapsed().as_nanos() as f64 / m as f64
                })
                .collect();
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            println!("open {:.1}", v[4]);
        }
    }
}

#[cfg(target_os = "linux")]
mod bench {
    use ironclaw_sandbox::{Mode, SandboxSpec, SpawnOptions, Violation, ViolationSink};
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    struct Null;
    impl ViolationSink for Null {
        fn report(&self, _: Violation) {}
    }

    fn median(mut v: Vec<Duration>) -> Duration {
        v.sort();
        v[v.len() / 2]
    }

    fn spec(dir: &Path, argv: Vec<std::ffi::OsString>) -> SandboxSpec {
        SandboxSpec {
            skill: "bench".into(),
            mode: Mode::Strict,
            argv,
            skill_dir: dir.join("skill"),
            workspace: dir.join("home/.ironclaw/workspace/skills/bench"),
            home: dir.join("home"),
            workspace_root: dir.join("home/.ironclaw/workspace"),
            grants: Default::default(),
            env: vec![],
            hidden_paths: vec![dir.join("home/.ironclaw")],
        }
    }

    fn parse(out: &[u8]) -> BTreeMap<String, f64> {
        String::from_utf8_lossy(out)
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect()
    }

    pub fn run() {
        let dir = tempfile::Builder::new()
            .prefix("ironclaw-bench")
            .tempdir_in("/var/tmp")
            .unwrap();
        std::fs::create_dir_all(dir.path().join("skill")).unwrap();
        let rounds = 41;
        let ws = dir.path().join("home/.ironclaw/workspace/skills/bench");
        std::fs::create_dir_all(&ws).unwrap();

        // 1. start-to-exit of /usr/bin/true, interleaved so noise hits all three alike.
        let s = spec(dir.path(), vec!["/usr/bin/true".into()]);
        let bwrap = Path::new("/usr/bin/bwrap").exists();
        let (mut plain, mut strict, mut bw) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let t = Instant::now();
            assert!(
                Command::new("/usr/bin/true")
                    .env_clear()
                    .status()
                    .unwrap()
                    .success()
            );
            plain.push(t.elapsed());
            let t = Instant::now();
            let st = ironclaw_sandbox::spawn(&s, Arc::new(Null))
                .unwrap()
                .wait()
                .unwrap();
            assert!(st.success());
            strict.push(t.elapsed());
            if bwrap {
                let t = Instant::now();
                let st = Command::new("/usr/bin/bwrap")
                    .args([
                        "--unshare-user",
                        "--unshare-net",
                        "--unshare-ipc",
                        "--new-session",
                        "--die-with-parent",
                    ])
                    .args([
                        "--cap-drop",
                        "ALL",
                        "--clearenv",
                        "--setenv",
                        "PATH",
                        "/usr/bin:/bin",
                    ])
                    .args([
                        "--ro-bind",
                        "/usr",
                        "/usr",
                        "--symlink",
                        "usr/bin",
                        "/bin",
                        "--symlink",
                        "usr/lib",
                        "/lib",
                    ])
                    .args([
                        "--symlink",
                        "usr/lib64",
                        "/lib64",
                        "--ro-bind",
                        "/etc",
                        "/etc",
                        "--proc",
                        "/proc",
                        "--dev",
                        "/dev",
                    ])
                    .args(["--tmpfs", "/tmp"])
                    .arg("--bind")
                    .arg(&ws)
                    .arg(&ws)
                    .arg("--chdir")
                    .arg(&ws)
                    .arg("/usr/bin/true")
                    .status()
                    .unwrap();
                assert!(st.success());
                bw.push(t.elapsed());
            }
        }
        let (p, s_, b) = (
            median(plain),
            median(strict),
            if bwrap { Some(median(bw)) } else { None },
        );
        println!("## start-to-exit of /usr/bin/true (median of {rounds})");
        println!("plain fork+exec      {:>9.1} µs", p.as_secs_f64() * 1e6);
        println!("ironclaw strict      {:>9.1} µs", s_.as_secs_f64() * 1e6);
        if let Some(b) = b {
            println!("bwrap (comparable)   {:>9.1} µs", b.as_secs_f64() * 1e6);
            println!(
                "ratio strict / bwrap {:>9.2}x",
                s_.as_secs_f64() / b.as_secs_f64()
            );
        }

        // 2 and 3. Syscalls in an unsandboxed child vs a strict-sandboxed child.
        let exe = std::env::current_exe().unwrap();
        let inside = dir.path().join("skill/bench-child");
        std::fs::copy(&exe, &inside).unwrap();
        let file = ws.join("data.txt");
        std::fs::write(&file, "x").unwrap();
        // Interleave unfiltered and sandboxed children so machine noise hits both alike.
        let mut base_runs: Vec<BTreeMap<String, f64>> = Vec::new();
        let mut filt_runs: Vec<BTreeMap<String, f64>> = Vec::new();
        for _ in 0..7 {
            let out = Command::new(&exe).arg("child").arg(&file).output().unwrap();
            base_runs.push(parse(&out.stdout));
            let sb = ironclaw_sandbox::spawn_with(
                &spec(
                    dir.path(),
                    vec![inside.clone().into(), "child".into(), file.clone().into()],
                ),
                Arc::new(Null),
                SpawnOptions {
                    stdin: Some(Stdio::null()),
                    stdout: Some(Stdio::piped()),
                    stderr: None,
                    ..Default::default()
                },
            )
            .unwrap();
            filt_runs.push(parse(&sb.wait_with_output().unwrap().stdout));
        }
        let med = |runs: &[BTreeMap<String, f64>]| -> BTreeMap<String, f64> {
            let mut m = BTreeMap::new();
            for k in runs[0].keys() {
                let mut v: Vec<f64> = runs.iter().filter_map(|r| r.get(k).copied()).collect();
                v.sort_by(|a, b| a.partial_cmp(b).unwrap());
                m.insert(k.clone(), v[v.len() / 2]);
            }
            m
        };
        let (base, filt) = (med(&base_runs), med(&filt_runs));
        println!("\n## syscall cost (median ns per call)");
        println!(
            "{:<28} {:>9} {:>9} {:>9} {:>7}",
            "call", "none", "strict", "added", "ratio"
        );
        for (k, label) in [
            ("getpid", "getpid (cached verdict)"),
            ("fstat", "fstat (rule inspects args)"),
            ("ioctl", "ioctl FIONREAD (args)"),
            ("open", "open+close (supervised)"),
        ] {
            if let (Some(a), Some(b)) = (base.get(k), filt.get(k)) {
                println!(
                    "{label:<28} {a:>9.1} {b:>9.1} {:>9.1} {:>6.2}x",
                    b - a,
                    b / a
                );
            }
        }
        println!(
            "\nrules in the strict filter: {}",
            ironclaw_sandbox::policy::syscalls::rule_table().len()
        );
    }
}
