//! Hostile-skill probe: tries one escape per invocation and prints the outcome on one line:
//! `ok …` when the attempt worked, `errno N` when the kernel refused it. Used by
//! tests/hostile.rs (run inside the sandbox as the skill's entrypoint).

#[cfg(not(target_os = "linux"))]
fn main() {}

#[cfg(target_os = "linux")]
fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    // `in-place SKILL_DIR WORKSPACE HOME WORKSPACE_ROOT PROXY_PORT CHECK…`: apply the pod
    // exec wrapper's policy to this process first.
    if args.first().map(String::as_str) == Some("in-place") && args.len() > 6 {
        let policy = ironclaw_sandbox::InPlacePolicy {
            skill: "probe".into(),
            skill_dir: args[1].clone().into(),
            workspace: args[2].clone().into(),
            home: args[3].clone().into(),
            workspace_root: args[4].clone().into(),
            grants: Default::default(),
            proxy_port: args[5].parse().unwrap_or(0),
        };
        if let Err(e) = ironclaw_sandbox::apply_in_place(&policy) {
            println!("apply failed: {e}");
            return;
        }
        args.drain(..6);
    }
    // `nested-strict SKILL_DIR HOME CHECK…`: this process (e.g. a normal user) starts the probe
    // in strict mode itself, then prints the violations it saw.
    if args.first().map(String::as_str) == Some("nested-strict") && args.len() > 3 {
        nested(&args);
        return;
    }
    let out = linux::run(&args);
    println!("{out}");
}

#[cfg(target_os = "linux")]
#[allow(clippy::unwrap_used, clippy::expect_used)]
fn nested(args: &[String]) {
    use std::sync::{Arc, Mutex};
    struct Sink(Mutex<Vec<ironclaw_sandbox::Violation>>);
    impl ironclaw_sandbox::ViolationSink for Sink {
        fn report(&self, v: ironclaw_sandbox::Violation) {
            self.0.lock().unwrap().push(v);
        }
    }
    let skill_dir = std::path::PathBuf::from(&args[1]);
    let home = std::path::PathBuf::from(&args[2]);
    let ironclaw = home.join(".ironclaw");
    let mut argv = vec![skill_dir.join("probe").into_os_string()];
    argv.extend(args[3..].iter().map(Into::into));
    let spec = ironclaw_sandbox::SandboxSpec {
        skill: "nested".into(),
        mode: ironclaw_sandbox::Mode::Strict,
        argv,
        skill_dir,
        workspace: ironclaw.join("workspace/skills/nested"),
        home: home.clone(),
        workspace_root: ironclaw.join("workspace"),
        grants: Default::default(),
        env: vec![],
        hidden_paths: vec![ironclaw],
    };
    // As IronClaw does at start-up: not dumpable (its children inherit that until exec).
    if let Err(e) = ironclaw_sandbox::harden_supervisor() {
        println!("HARDEN FAILED {e}");
        return;
    }
    let sink = Arc::new(Sink(Mutex::new(Vec::new())));
    match ironclaw_sandbox::spawn(&spec, sink.clone()) {
        Ok(sb) => {
            let st = sb.wait().unwrap();
            for v in sink.0.lock().unwrap().iter() {
                println!("VIOLATION {v:?}");
            }
            println!("EXIT {}", st.code().unwrap_or(-1));
        }
        Err(e) => println!("SPAWN FAILED {e}"),
    }
}

#[cfg(target_os = "linux")]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod linux {
    use std::ffi::CString;
    use std::io::{Read, Write};

    fn errno() -> i32 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }
    fn res(r: i64) -> String {
        if r < 0 {
            format!("errno {}", errno())
        } else {
            format!("ok {r}")
        }
    }
    fn io_res<T>(r: std::io::Result<T>) -> String {
        match r {
            Ok(_) => "ok".into(),
            Err(e) => format!("errno {}", e.raw_os_error().unwrap_or(-1)),
        }
    }
    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    pub fn run(a: &[String]) -> String {
        let arg = |i: usize| a.get(i).map(String::as_str).unwrap_or("");
        // SAFETY (whole match): raw syscalls with valid arguments, in a throwaway process.
        unsafe {
            match arg(0) {
                "read" => match std::fs::read(arg(1)) {
                    Ok(b) => format!("ok {}", String::from_utf8_lossy(&b).trim()),
                    Err(e) => format!("errno {}", e.raw_os_error().unwrap_or(-1)),
                },
                "write" => io_res(std::fs::write(arg(1), b"written by the skill\n")),
                "stat" => io_res(std::fs::metadata(arg(1))),
                "ls" => io_res(std::fs::read_dir(arg(1))),
                "exec" => {
                    let argv: Vec<CString> = a[1..].iter().map(|s| c(s)).collect();
                    let mut p: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
                    p.push(std::ptr::null());
                    libc::execv(p[0], p.as_ptr());
                    format!("errno {}", errno())
                }
                "copy-exec" => {
                    if let Err(e) = std::fs::copy(arg(1), arg(2)) {
                        return format!("copy errno {}", e.raw_os_error().unwrap_or(-1));
                    }
                    let _ = std::fs::set_permissions(
                        arg(2),
                        std::os::unix::fs::PermissionsExt::from_mode(0o755),
                    );
                    let p = c(arg(2));
                    let argv = [
                        p.as_ptr(),
                        c"-c".as_ptr(),
                        c"echo PWNED".as_ptr(),
                        std::ptr::null(),
                    ];
                    libc::execv(p.as_ptr(), argv.as_ptr());
                    format!("errno {}", errno())
                }
                "connect" => {
                    let addr: std::net::SocketAddr =
                        format!("{}:{}", arg(1), arg(2)).parse().unwrap();
                    match std::net::TcpStream::connect_timeout(
                        &addr,
                        std::time::Duration::from_secs(5),
                    ) {
                        Ok(mut s) => {
                            let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                            let _ = s.write_all(b"ping\n");
                            let mut buf = [0u8; 64];
                            let n = s.read(&mut buf).unwrap_or(0);
                            format!("ok {}", String::from_utf8_lossy(&buf[..n]).trim())
                        }
                        Err(e) => format!("errno {}", e.raw_os_error().unwrap_or(-1)),
                    }
                }
                "connect-name" => {
                    use std::net::ToSocketAddrs;
                    match format!("{}:{}", arg(1), arg(2)).to_socket_addrs() {
                        Ok(mut it) => match it.next() {
                            Some(addr) => match std::net::TcpStream::connect(addr) {
                                Ok(mut s) => {
                                    let _ =
                                        s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                                    let _ = s.write_all(b"ping\n");
                                    let mut buf = [0u8; 64];
                                    let n = s.read(&mut buf).unwrap_or(0);
                                    format!(
                                        "ok {addr} {}",
                                        String::from_utf8_lossy(&buf[..n]).trim()
                                    )
                                }
                                Err(e) => format!("errno {}", e.raw_os_error().unwrap_or(-1)),
                            },
                            None => "resolve-empty".into(),
                        },
                        Err(e) => format!("resolve-failed {e}"),
                    }
                }
                "udp" => {
                    let s = std::net::UdpSocket::bind("0.0.0.0:0");
                    match s {
                        Ok(s) => io_res(s.send_to(b"x", format!("{}:{}", arg(1), arg(2)))),
                        Err(e) => format!("errno {}", e.raw_os_error().unwrap_or(-1)),
                    }
                }
                "dns" => {
                    use std::net::ToSocketAddrs;
                    match format!("{}:80", arg(1)).to_socket_addrs() {
                        Ok(mut it) => format!("ok {:?}", it.next()),
                        Err(e) => format!("failed {e}"),
                    }
                }
                "unix" => io_res(std::os::unix::net::UnixStream::connect(arg(1))),
                // A socket of its own in its workspace (the current directory): bind, connect.
                "unix-own" => {
                    let _ = std::fs::remove_file("own.sock");
                    match std::os::unix::net::UnixListener::bind("own.sock") {
                        Ok(_l) => io_res(std::os::unix::net::UnixStream::connect("own.sock")),
                        Err(e) => format!("bind errno {}", e.raw_os_error().unwrap_or(-1)),
                    }
                }
                "unix-abstract" => {
                    use std::os::linux::net::SocketAddrExt;
                    let a = std::os::unix::net::SocketAddr::from_abstract_name(arg(1).as_bytes())
                        .unwrap();
                    io_res(std::os::unix::net::UnixStream::connect_addr(&a))
                }
                "socket" => {
                    let d: i32 = arg(1).parse().unwrap();
                    let t: i32 = arg(2).parse().unwrap();
                    res(libc::socket(d, t, 0) as i64)
                }
                "listen" => io_res(std::net::TcpListener::bind(format!("127.0.0.1:{}", arg(1)))),
                "kill" => res(libc::kill(arg(1).parse().unwrap(), 0) as i64),
                "tgkill" => {
                    let t: libc::c_long = arg(1).parse().unwrap();
                    res(libc::syscall(libc::SYS_tgkill, t, t, 0))
                }
                "tkill" => {
                    let t: libc::c_long = arg(1).parse().unwrap();
                    res(libc::syscall(libc::SYS_tkill, t, 0))
                }
                "pidfd-kill" => {
                    let t: libc::c_long = arg(1).parse().unwrap();
                    let fd = libc::syscall(libc::SYS_pidfd_open, t, 0);
                    if fd < 0 {
                        return format!("pidfd_open errno {}", errno());
                    }
                    res(libc::syscall(libc::SYS_pidfd_send_signal, fd, 0, 0, 0))
                }
                // The runtime's own use: a signal to one of this process's threads.
                "tgkill-self" => {
                    let me = libc::getpid() as libc::c_long;
                    let tid = libc::syscall(libc::SYS_gettid);
                    res(libc::syscall(libc::SYS_tgkill, me, tid, 0))
                }
                "tiocsti" => {
                    let ch: libc::c_char = b'x' as libc::c_char;
                    res(libc::ioctl(0, libc::TIOCSTI, &ch) as i64)
                }
                "memfd" => {
                    let fd = libc::memfd_create(c"x".as_ptr(), libc::MFD_CLOEXEC);
                    if fd < 0 {
                        return format!("errno {}", errno());
                    }
                    let bin = std::fs::read(arg(1)).unwrap_or_default();
                    libc::write(fd, bin.as_ptr().cast(), bin.len());
                    let argv = [
                        c"sh".as_ptr(),
                        c"-c".as_ptr(),
                        c"echo PWNED".as_ptr(),
                        std::ptr::null(),
                    ];
                    let envp = [std::ptr::null::<libc::c_char>()];
                    libc::fexecve(fd, argv.as_ptr(), envp.as_ptr());
                    format!("exec errno {}", errno())
                }
                "env" => match std::env::var(arg(1)) {
                    Ok(v) => format!("ok {v}"),
                    Err(_) => "unset".into(),
                },
                "caps" => {
                    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
                    let v: Vec<&str> = s
                        .lines()
                        .filter(|l| {
                            l.starts_with("Cap")
                                || l.starts_with("NoNewPrivs")
                                || l.starts_with("Seccomp:")
                        })
                        .collect();
                    format!("ok {}", v.join(";").replace('\t', " "))
                }
                "fds" => {
                    let mut v: Vec<String> = std::fs::read_dir("/proc/self/fd")
                        .map(|rd| {
                            rd.flatten()
                                .map(|e| e.file_name().to_string_lossy().into_owned())
                                .collect()
                        })
                        .unwrap_or_default();
                    v.sort();
                    format!("ok {}", v.join(","))
                }
                "session" => format!("ok {}", i32::from(libc::getsid(0) == libc::getpid())),
                "whoami" => format!(
                    "ok {} {}",
                    libc::getuid(),
                    std::env::current_dir().unwrap().display()
                ),
                "sys" => sys(arg(1), arg(2)),
                other => format!("unknown check {other:?}"),
            }
        }
    }

    unsafe fn sys(name: &str, a1: &str) -> String {
        let ppid = unsafe { libc::getppid() };
        let target: i32 = a1.parse().unwrap_or(ppid);
        // SAFETY: raw syscalls with harmless arguments; each is expected to be refused.
        let r: i64 = unsafe {
            match name {
                "ptrace" => libc::ptrace(libc::PTRACE_ATTACH, target, 0, 0),
                "unshare" => libc::unshare(libc::CLONE_NEWUSER) as i64,
                "setns" => libc::setns(0, 0) as i64,
                "mount" => libc::mount(
                    c"none".as_ptr(),
                    c"/tmp".as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    std::ptr::null(),
                ) as i64,
                "umount" => libc::umount2(c"/tmp".as_ptr(), 0) as i64,
                "bpf" => libc::syscall(libc::SYS_bpf, 0, 0, 0),
                "perf_event_open" => libc::syscall(libc::SYS_perf_event_open, 0, 0, -1, -1, 0),
                "keyctl" => libc::syscall(libc::SYS_keyctl, 0, 0, 0, 0, 0),
                "add_key" => {
                    libc::syscall(libc::SYS_add_key, c"user".as_ptr(), c"k".as_ptr(), 0, 0, 0)
                }
                "userfaultfd" => libc::syscall(libc::SYS_userfaultfd, 0),
                "io_uring_setup" => libc::syscall(libc::SYS_io_uring_setup, 1, 0),
                "kexec_load" => libc::syscall(libc::SYS_kexec_load, 0, 0, 0, 0),
                "init_module" => libc::syscall(libc::SYS_init_module, 0, 0, 0),
                "personality" => libc::personality(0x0040000) as i64,
                "clone3" => libc::syscall(libc::SYS_clone3, 0, 0),
                "clone_newuser" => libc::syscall(
                    libc::SYS_clone,
                    libc::CLONE_NEWUSER as i64 | libc::SIGCHLD as i64,
                    0,
                    0,
                    0,
                    0,
                ),
                "process_vm_readv" => {
                    let mut b = [0u8; 8];
                    let l = libc::iovec {
                        iov_base: b.as_mut_ptr().cast(),
                        iov_len: 8,
                    };
                    let r = libc::iovec {
                        iov_base: 0x1000 as *mut libc::c_void,
                        iov_len: 8,
                    };
                    libc::process_vm_readv(target, &l, 1, &r, 1, 0) as i64
                }
                "pidfd_getfd" => libc::syscall(libc::SYS_pidfd_getfd, 0, 0, 0),
                // Harmless if it got through: reads the limit, re-sets the current priority.
                "prlimit64" => {
                    let mut old: libc::rlimit = std::mem::zeroed();
                    libc::syscall(
                        libc::SYS_prlimit64,
                        target,
                        libc::RLIMIT_NOFILE,
                        std::ptr::null::<libc::rlimit>(),
                        &mut old,
                    )
                }
                "setpriority" => {
                    let cur = libc::getpriority(libc::PRIO_PROCESS, target as libc::id_t);
                    libc::setpriority(libc::PRIO_PROCESS, target as libc::id_t, cur) as i64
                }
                "kcmp" => libc::syscall(libc::SYS_kcmp, target, libc::getpid(), 0, 0, 0),
                other => return format!("unknown syscall {other}"),
            }
        };
        if r < 0 {
            format!("errno {}", errno())
        } else {
            format!("ok {r}")
        }
    }
}
