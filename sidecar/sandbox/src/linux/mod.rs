//! Linux enforcement: namespaces, Landlock, seccomp-bpf and the supervisor.

mod bpf;
mod child;
mod landlock;
mod supervisor;
mod sysnr;

use crate::policy::{self, FsAccess, MountOp, NetPlan, SeenFile};
use crate::{InPlacePolicy, KernelSupport, Mode, SandboxError, SandboxSpec, ViolationSink};
use child::{COp, ChildPlan};
use std::ffi::CString;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, mpsc};
use std::time::Duration;

/// The skill's network, created inside its network namespace and handed to IronClaw.
#[derive(Debug)]
pub struct Network {
    /// `127.0.0.1:3128` inside the skill's namespace; HTTP_PROXY/HTTPS_PROXY point at it.
    pub http_proxy: TcpListener,
    /// One listener per granted `name:port` (e.g. `127.0.0.2:993`); the name maps to that
    /// address for the skill (/etc/hosts in its mount namespace).
    pub forwards: Vec<(ironclaw_crds::NetworkGrant, TcpListener)>,
}

/// A running sandboxed skill.
#[derive(Debug)]
pub struct Sandboxed {
    child: Child,
    network: Option<Network>,
    supervisor_done: Option<mpsc::Receiver<()>>,
}

impl Sandboxed {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Kills the skill and everything in its session (its process group: the skill runs in
    /// its own session, so this reaches the children it did not detach further).
    pub fn kill(&mut self) -> Result<(), SandboxError> {
        let pgid = self.pid();
        // SAFETY: signalling our own child's process group.
        if unsafe { libc::kill(-pgid, libc::SIGKILL) } < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ESRCH) {
                return Err(SandboxError::io(
                    format!("killing skill process group {pgid}"),
                    e,
                ));
            }
        }
        Ok(())
    }

    /// The network listeners (strict mode only); `None` after the first call.
    pub fn take_network(&mut self) -> Option<Network> {
        self.network.take()
    }

    /// Waits for the skill to exit, then briefly for the supervisor to drain its last reports.
    pub fn wait(mut self) -> Result<ExitStatus, SandboxError> {
        let st = self
            .child
            .wait()
            .map_err(|e| SandboxError::io("waiting for the skill", e))?;
        self.drain();
        Ok(st)
    }

    /// Like [`Sandboxed::wait`], collecting piped stdout/stderr (see [`SpawnOptions`]).
    pub fn wait_with_output(mut self) -> Result<Output, SandboxError> {
        let rx = self.supervisor_done.take();
        let out = self
            .child
            .wait_with_output()
            .map_err(|e| SandboxError::io("waiting for the skill", e))?;
        if let Some(rx) = rx {
            let _ = rx.recv_timeout(Duration::from_millis(500));
        }
        Ok(out)
    }

    fn drain(&mut self) {
        if let Some(rx) = self.supervisor_done.take() {
            let _ = rx.recv_timeout(Duration::from_millis(500));
        }
    }
}

/// How to start a skill beyond its spec. Default: stdio inherited (passed through), no host
/// proxy.
#[derive(Debug, Default)]
pub struct SpawnOptions {
    pub stdin: Option<Stdio>,
    pub stdout: Option<Stdio>,
    pub stderr: Option<Stdio>,
    /// Standard and audit-only modes: IronClaw's egress proxy on the host (HTTP_PROXY and
    /// HTTPS_PROXY point at it; in audit-only mode connects to it are not reported). Strict
    /// mode ignores it: the proxy listener lives in the skill's own network namespace.
    pub host_proxy: Option<std::net::SocketAddrV4>,
}

/// Makes the calling process (IronClaw) non-dumpable, so a skill running as the same user
/// cannot read its memory or /proc details even without Landlock. Call once at start-up.
pub fn harden_supervisor() -> Result<(), SandboxError> {
    // SAFETY: plain prctl.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } < 0 {
        return Err(SandboxError::io(
            "prctl(PR_SET_DUMPABLE, 0)",
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// [`probe`] once per process (creating a throwaway network namespace per spawn would double
/// the cost of starting a skill).
fn probe_cached() -> Result<KernelSupport, SandboxError> {
    static CACHE: std::sync::OnceLock<KernelSupport> = std::sync::OnceLock::new();
    if let Some(k) = CACHE.get() {
        return Ok(k.clone());
    }
    let k = probe()?;
    Ok(CACHE.get_or_init(|| k).clone())
}

/// What the kernel offers. Never fails on a missing feature: it reports it.
pub fn probe() -> Result<KernelSupport, SandboxError> {
    let mut k = KernelSupport {
        landlock_abi: landlock::abi(),
        ..KernelSupport::default()
    };
    let avail = |action: u32| {
        // SAFETY: SECCOMP_GET_ACTION_AVAIL reads one u32.
        unsafe { libc::syscall(libc::SYS_seccomp, 2u32, 0u32, &action as *const u32) == 0 }
    };
    k.seccomp_filter = avail(bpf::RET_ERRNO) && avail(bpf::RET_ALLOW);
    k.seccomp_user_notif = avail(bpf::RET_USER_NOTIF);
    // SAFETY: a bad fd distinguishes "exists" (EBADF) from ENOSYS.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            -1,
            c"".as_ptr(),
            0u32,
            std::ptr::null::<u8>(),
            0usize,
        )
    };
    k.mount_api = !(r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS));
    // SAFETY: the child only calls unshare and _exit (async-signal-safe).
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            let r = libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWNET);
            libc::_exit(if r == 0 { 0 } else { 1 });
        }
        if pid > 0 {
            let mut st = 0;
            libc::waitpid(pid, &mut st, 0);
            k.namespaces = libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0;
        } else {
            return Err(SandboxError::io(
                "fork for the namespace probe",
                io::Error::last_os_error(),
            ));
        }
    }
    Ok(k)
}

fn cstr(p: &Path, field: &'static str) -> Result<CString, SandboxError> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| SandboxError::spec(field, format!("{} contains a NUL byte", p.display())))
}

fn validate(spec: &SandboxSpec) -> Result<(), SandboxError> {
    ironclaw_crds::grants::validate_skill_name(&spec.skill)
        .map_err(|e| SandboxError::spec("skill", e.to_string()))?;
    let first = spec
        .argv
        .first()
        .ok_or_else(|| SandboxError::spec("argv", "empty: the entrypoint is missing"))?;
    if !Path::new(first).is_absolute() {
        return Err(SandboxError::spec(
            "argv",
            format!("argv[0] {first:?} is not an absolute path"),
        ));
    }
    for (field, p) in [
        ("skill_dir", &spec.skill_dir),
        ("workspace", &spec.workspace),
        ("home", &spec.home),
        ("workspace_root", &spec.workspace_root),
    ] {
        if !p.is_absolute() {
            return Err(SandboxError::spec(
                field,
                format!("{} is not an absolute path", p.display()),
            ));
        }
    }
    if !spec.skill_dir.is_dir() {
        return Err(SandboxError::spec(
            "skill_dir",
            format!("{} is not a directory", spec.skill_dir.display()),
        ));
    }
    for h in &spec.hidden_paths {
        if h.exists() && !h.is_dir() {
            return Err(SandboxError::spec(
                "hidden_paths",
                format!(
                    "{} is not a directory (only directories can be hidden)",
                    h.display()
                ),
            ));
        }
        if !h.is_absolute() {
            return Err(SandboxError::spec(
                "hidden_paths",
                format!("{} is not an absolute path", h.display()),
            ));
        }
    }
    Ok(())
}

fn make_workspace(ws: &Path) -> Result<(), SandboxError> {
    std::fs::create_dir_all(ws)
        .map_err(|e| SandboxError::io(format!("creating workspace {}", ws.display()), e))?;
    std::fs::set_permissions(ws, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| SandboxError::io(format!("chmod 0700 {}", ws.display()), e))
}

type Scan = (Vec<SeenFile>, Vec<(u64, u64)>);

/// [`scan_uncached`], reused while the scanned directories and /etc/shells are unchanged
/// (same modification times): a long-running gateway scans once.
fn scan_system() -> Scan {
    static CACHE: std::sync::Mutex<Option<(Vec<Option<std::time::SystemTime>>, Scan)>> =
        std::sync::Mutex::new(None);
    let stamp: Vec<Option<std::time::SystemTime>> = policy::EXEC_DIRS
        .iter()
        .chain(&["/etc/shells"])
        .map(|d| std::fs::metadata(d).and_then(|m| m.modified()).ok())
        .collect();
    if let Ok(guard) = CACHE.lock()
        && let Some((st, scan)) = guard.as_ref()
        && *st == stamp
    {
        return scan.clone();
    }
    let scan = scan_uncached();
    if let Ok(mut guard) = CACHE.lock() {
        *guard = Some((stamp, scan.clone()));
    }
    scan
}

/// Executables in the system directories, and the inode ids of shells.
fn scan_uncached() -> Scan {
    // read_dir gives the type and inode without a stat per file; every regular file is a
    // candidate (an execute right on a file without an x bit is harmless: exec still needs it).
    let mut seen = Vec::new();
    for d in policy::EXEC_DIRS {
        let Ok(dev) = std::fs::metadata(d).map(|m| m.dev()) else {
            continue;
        };
        let Ok(rd) = std::fs::read_dir(d) else {
            continue;
        };
        for e in rd.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            seen.push(SeenFile {
                path: e.path(),
                id: (dev, std::os::unix::fs::DirEntryExt::ino(&e)),
                executable: true,
            });
        }
    }
    let mut shells: Vec<(u64, u64)> = Vec::new();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(s) = std::fs::read_to_string("/etc/shells") {
        candidates.extend(
            s.lines()
                .map(str::trim)
                .filter(|l| l.starts_with('/'))
                .map(PathBuf::from),
        );
    }
    for d in policy::EXEC_DIRS.iter().chain(&["/bin", "/sbin"]) {
        for n in policy::SHELL_NAMES {
            candidates.push(Path::new(d).join(n));
        }
    }
    for c in candidates {
        if let Ok(md) = std::fs::metadata(&c)
            && !shells.contains(&(md.dev(), md.ino()))
        {
            shells.push((md.dev(), md.ino()));
        }
    }
    (seen, shells)
}

/// ELF interpreters, which the kernel opens for execution for every dynamic program.
fn interpreters() -> Vec<PathBuf> {
    [
        "/lib64/ld-linux-x86-64.so.2",
        "/lib/ld-linux-aarch64.so.1",
        "/lib/ld-musl-x86_64.so.1",
    ]
    .iter()
    .filter_map(|p| std::fs::canonicalize(p).ok())
    .collect()
}

fn canon(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

fn to_cops(ops: &[MountOp]) -> Result<(Vec<COp>, usize), SandboxError> {
    let mut out = Vec::new();
    let mut clones = 0;
    for op in ops {
        out.push(match op {
            MountOp::MakePrivate => COp::MakePrivate,
            MountOp::Clone {
                id,
                path,
                noexec,
                rdonly,
            } => {
                clones = clones.max(id + 1);
                let mut attr = child::MOUNT_ATTR_NOSUID | child::MOUNT_ATTR_NODEV;
                if *noexec {
                    attr |= child::MOUNT_ATTR_NOEXEC;
                }
                if *rdonly {
                    attr |= child::MOUNT_ATTR_RDONLY;
                }
                COp::Clone {
                    id: *id,
                    path: cstr(path, "filesystem")?,
                    attr,
                }
            }
            MountOp::Tmpfs { target, mode } => COp::Tmpfs {
                target: cstr(target, "hidden_paths")?,
                opts: CString::new(format!("mode={mode:o},size=64m"))
                    .map_err(|e| SandboxError::Setup(e.to_string()))?,
            },
            MountOp::Mkdir(p) => COp::Mkdir(cstr(p, "filesystem")?),
            MountOp::Attach { id, target } => COp::Attach {
                id: *id,
                target: cstr(target, "filesystem")?,
            },
            MountOp::WriteFile { path, contents } => COp::WriteFile {
                path: cstr(path, "network")?,
                contents: contents.clone(),
            },
            MountOp::BindFile { src, target } => COp::BindFile {
                src: cstr(src, "filesystem")?,
                target: cstr(target, "filesystem")?,
            },
            MountOp::Unlink(p) => COp::Unlink(cstr(p, "filesystem")?),
            MountOp::Readonly(p) => COp::Readonly(cstr(p, "hidden_paths")?),
        });
    }
    Ok((out, clones))
}

fn sockaddr(a: std::net::SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: all-zero sockaddr_in is valid.
    let mut s: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    s.sin_family = libc::AF_INET as libc::sa_family_t;
    s.sin_port = a.port().to_be();
    s.sin_addr.s_addr = u32::from(*a.ip()).to_be();
    s
}

fn cap_last() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// What the control socket delivered.
enum Control {
    Fds {
        notif: Option<OwnedFd>,
        listeners: Vec<OwnedFd>,
    },
    Failed {
        step: usize,
        errno: i32,
    },
}

fn recv_control(sock: &OwnedFd) -> Option<Control> {
    let mut header = [0u32; 3];
    let mut iov = libc::iovec {
        iov_base: header.as_mut_ptr().cast(),
        iov_len: std::mem::size_of_val(&header),
    };
    #[repr(C, align(8))]
    struct Buf([u8; 512]);
    let mut buf = Buf([0; 512]);
    // SAFETY: msghdr over stack buffers; descriptors received are owned below.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = buf.0.as_mut_ptr().cast();
        msg.msg_controllen = buf.0.len();
        let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n <= 0 {
            return None;
        }
        let mut fds: Vec<OwnedFd> = Vec::new();
        let mut cm = libc::CMSG_FIRSTHDR(&msg);
        while !cm.is_null() {
            if (*cm).cmsg_level == libc::SOL_SOCKET && (*cm).cmsg_type == libc::SCM_RIGHTS {
                let bytes = (*cm).cmsg_len - libc::CMSG_LEN(0) as usize;
                let count = bytes / std::mem::size_of::<RawFd>();
                let data = libc::CMSG_DATA(cm).cast::<RawFd>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            cm = libc::CMSG_NXTHDR(&msg, cm);
        }
        match header[0] {
            child::MSG_FDS => {
                let mut it = fds.into_iter();
                let notif = if header[1] == 1 { it.next() } else { None };
                Some(Control::Fds {
                    notif,
                    listeners: it.collect(),
                })
            }
            child::MSG_ERR => Some(Control::Failed {
                step: header[1] as usize,
                errno: header[2] as i32,
            }),
            _ => None,
        }
    }
}

fn socketpair() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds is a 2-element array.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r < 0 {
        return Err(SandboxError::io(
            "socketpair for the sandbox control channel",
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: two new descriptors we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Runs a skill in its sandbox with stdio passed through.
pub fn spawn(spec: &SandboxSpec, sink: Arc<dyn ViolationSink>) -> Result<Sandboxed, SandboxError> {
    spawn_with(spec, sink, SpawnOptions::default())
}

/// [`spawn`] with chosen standard streams.
pub fn spawn_with(
    spec: &SandboxSpec,
    sink: Arc<dyn ViolationSink>,
    stdio: SpawnOptions,
) -> Result<Sandboxed, SandboxError> {
    validate(spec)?;
    if spec.mode == Mode::Strict {
        let missing = probe_cached()?.missing_for_strict();
        if !missing.is_empty() {
            return Err(SandboxError::Unsupported { missing });
        }
    }
    make_workspace(&spec.workspace)?;
    let strict = spec.mode == Mode::Strict;
    let supervised = spec.mode != Mode::Standard;
    let tmp = PathBuf::from("/tmp");
    let net = strict.then(|| policy::net_plan(&spec.grants));
    if net
        .as_ref()
        .is_some_and(|n| n.forwards.len() + 2 > child::MAX_FDS)
    {
        return Err(SandboxError::spec(
            "grants.network",
            format!("more than {} host:port grants", child::MAX_FDS - 2),
        ));
    }
    let env = policy::env_plan(
        &spec.env,
        &spec.grants,
        &spec.workspace,
        strict.then_some(tmp.as_path()),
        net.as_ref().map(|n| n.proxy).or(stdio.host_proxy),
    )?;

    // Filesystem policy (strict and audit-only: the latter reports against it).
    // Strict mode masks every shell inode in the skill's mount namespace (noexec, nodev, and
    // its bytes unreadable), so execute rights can be given per directory; audit-only mode has
    // no mount namespace and reports against per-file rights.
    let (seen, shells) = scan_system();
    let mut exec = if strict {
        policy::EXEC_DIRS.iter().map(PathBuf::from).collect()
    } else {
        policy::exec_files(&seen, &shells, spec.grants.shell)
    };
    exec.extend(interpreters());
    let rules = policy::fs_rules(
        &spec.skill_dir,
        &spec.workspace,
        &spec.home,
        &spec.workspace_root,
        &spec.grants,
        Some(&tmp),
        &exec,
    );
    let exec_set: std::collections::HashSet<PathBuf> = exec.iter().cloned().collect();
    let hidden: Vec<PathBuf> = spec
        .hidden_paths
        .iter()
        .filter(|h| h.exists())
        .map(|h| canon(h))
        .collect();
    let masked: Vec<PathBuf> = if spec.grants.shell {
        Vec::new()
    } else {
        seen.iter()
            .filter(|f| shells.contains(&f.id))
            .map(|f| f.path.clone())
            .collect()
    };

    let mut plan = ChildPlan {
        namespaces: strict,
        maps: None,
        ops: Vec::new(),
        clones: Vec::new(),
        listeners: Vec::new(),
        lo_aliases: Vec::new(),
        listener_fds: Vec::new(),
        drop_caps: strict,
        cap_last: cap_last(),
        ruleset: None,
        child_rules: Vec::new(),
        filter: Vec::new(),
        supervised,
        control: -1,
        cwd: cstr(&spec.workspace, "workspace")?,
    };
    let mut ruleset_keep: Option<landlock::Ruleset> = None;
    if strict {
        // SAFETY: getters without side effects.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        plan.maps = Some((
            format!("{uid} {uid} 1\n").into_bytes(),
            format!("{gid} {gid} 1\n").into_bytes(),
        ));
        let exposed = policy::exposed_paths(
            &spec.skill_dir,
            &spec.workspace,
            &spec.home,
            &spec.workspace_root,
            &spec.grants,
        )
        .into_iter()
        .filter(|e| e.path.exists())
        .collect::<Vec<_>>();
        let netp = net
            .as_ref()
            .ok_or_else(|| SandboxError::Setup("network plan missing".into()))?;
        let ops = policy::mount_plan(&exposed, &hidden, true, Some(&netp.hosts_file), &masked);
        let (cops, nclones) = to_cops(&ops)?;
        plan.ops = cops;
        plan.clones = vec![-1; nclones];
        plan.listeners = std::iter::once(netp.proxy)
            .chain(netp.forwards.iter().map(|(_, a)| *a))
            .map(sockaddr)
            .collect();
        plan.listener_fds = vec![-1; plan.listeners.len()];
        for (i, ip) in netp.extra_addrs.iter().enumerate() {
            let label = format!("lo:{}", i + 1);
            let mut name = [0 as libc::c_char; libc::IFNAMSIZ];
            for (d, b) in name.iter_mut().zip(label.bytes().take(libc::IFNAMSIZ - 1)) {
                *d = b as libc::c_char;
            }
            plan.lo_aliases
                .push((name, sockaddr(std::net::SocketAddrV4::new(*ip, 0))));
        }

        let rs = landlock::Ruleset::new(
            FsAccess::ALL.0,
            landlock::NET_BIND_TCP | landlock::NET_CONNECT_TCP,
            landlock::SCOPE_ABSTRACT_UNIX_SOCKET | landlock::SCOPE_SIGNAL,
        )
        .map_err(|e| SandboxError::io("landlock_create_ruleset", e))?;
        for r in &rules {
            if r.path == tmp || r.path == Path::new("/etc/hosts") {
                plan.child_rules
                    .push((cstr(&r.path, "filesystem")?, r.access.0));
                continue;
            }
            if exec_set.contains(&r.path) && !strict {
                rs.add_file(&cstr(&r.path, "filesystem")?, r.access.0)
                    .map_err(|e| {
                        SandboxError::io(format!("Landlock rule for {}", r.path.display()), e)
                    })?;
                continue;
            }
            rs.add_path(&cstr(&r.path, "filesystem")?, r.access.0)
                .map_err(|e| {
                    SandboxError::io(format!("Landlock rule for {}", r.path.display()), e)
                })?;
        }
        let mut ports: Vec<u16> = vec![netp.proxy.port()];
        ports.extend(netp.forwards.iter().map(|(_, a)| a.port()));
        ports.sort_unstable();
        ports.dedup();
        for p in ports {
            rs.add_port(p, landlock::NET_CONNECT_TCP)
                .map_err(|e| SandboxError::io(format!("Landlock TCP rule for port {p}"), e))?;
        }
        plan.ruleset = Some(rs.raw());
        ruleset_keep = Some(rs);
    }
    if supervised {
        plan.filter = bpf::compile(
            &policy::syscalls::rule_table(),
            bpf::Answers { supervised: true },
        )
        .map_err(SandboxError::Setup)?;
    }

    let (parent_sock, child_sock) = socketpair()?;
    plan.control = child_sock.as_raw_fd();

    // Supervisor policy: resolved (canonical) paths, as the supervisor resolves symlinks.
    let sup_rules: Vec<policy::FsRule> = rules
        .iter()
        .filter(|r| strict || !exec_set.contains(&r.path))
        .map(|r| policy::FsRule {
            path: if r.path == tmp {
                r.path.clone()
            } else {
                canon(&r.path)
            },
            access: r.access,
        })
        .collect();
    let mut sup_hidden = hidden.clone();
    sup_hidden.extend(masked.iter().cloned());
    let sup_policy = supervisor::Policy {
        enforce: strict,
        rules: sup_rules,
        hidden: sup_hidden,
        exec: exec_set,
        host_proxy: stdio.host_proxy,
        net: net.clone(),
    };
    let (ctl_tx, ctl_rx) = mpsc::channel::<Result<Vec<OwnedFd>, (usize, i32)>>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name(format!("ironclaw-supervisor-{}", spec.skill))
        .spawn(move || {
            match recv_control(&parent_sock) {
                Some(Control::Fds { notif, listeners }) => {
                    let _ = ctl_tx.send(Ok(listeners));
                    if let Some(n) = notif {
                        supervisor::run(n, sup_policy, sink);
                    }
                }
                Some(Control::Failed { step, errno }) => {
                    let _ = ctl_tx.send(Err((step, errno)));
                }
                None => {}
            }
            let _ = done_tx.send(());
        })
        .map_err(|e| SandboxError::io("starting the supervisor thread", e))?;

    let argv0 = spec.argv[0].clone();
    let mut cmd = Command::new(&argv0);
    cmd.args(&spec.argv[1..])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)));
    if let Some(s) = stdio.stdin {
        cmd.stdin(s);
    }
    if let Some(s) = stdio.stdout {
        cmd.stdout(s);
    }
    if let Some(s) = stdio.stderr {
        cmd.stderr(s);
    }
    // SAFETY: the closure only runs raw syscalls on data prepared above (see child.rs).
    unsafe {
        cmd.pre_exec(move || plan.run());
    }
    let spawned = cmd.spawn();
    drop(child_sock);
    drop(ruleset_keep);
    let child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let detail = match ctl_rx.recv_timeout(Duration::from_secs(2)) {
                Ok(Err((step, errno))) => format!(
                    "{} failed: {}",
                    child::STEPS.get(step).copied().unwrap_or("setup"),
                    io::Error::from_raw_os_error(errno)
                ),
                _ => format!("starting {}: {e}", Path::new(&argv0).display()),
            };
            return Err(SandboxError::Setup(detail));
        }
    };
    let listeners = match ctl_rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(l)) => l,
        Ok(Err((step, errno))) => {
            return Err(SandboxError::Setup(format!(
                "{} failed: {}",
                child::STEPS.get(step).copied().unwrap_or("setup"),
                io::Error::from_raw_os_error(errno)
            )));
        }
        Err(_) => {
            return Err(SandboxError::Setup(
                "the sandboxed child did not report its descriptors".into(),
            ));
        }
    };
    let network = match &net {
        Some(plan) => Some(network_from(plan, listeners)?),
        None => None,
    };
    Ok(Sandboxed {
        child,
        network,
        supervisor_done: Some(done_rx),
    })
}

fn network_from(plan: &NetPlan, listeners: Vec<OwnedFd>) -> Result<Network, SandboxError> {
    if listeners.len() != plan.forwards.len() + 1 {
        return Err(SandboxError::Setup(format!(
            "expected {} listeners from the sandbox, got {}",
            plan.forwards.len() + 1,
            listeners.len()
        )));
    }
    let mut it = listeners.into_iter().map(TcpListener::from);
    let http_proxy = it
        .next()
        .ok_or_else(|| SandboxError::Setup("no proxy listener".into()))?;
    let forwards = plan
        .forwards
        .iter()
        .map(|(g, _)| g.clone())
        .zip(it)
        .collect();
    Ok(Network {
        http_proxy,
        forwards,
    })
}

/// For the in-pod exec wrapper: restricts the calling process (and what it execs) with
/// Landlock (filesystem per grants, TCP connect only to `proxy_port`, no TCP bind, signal and
/// abstract-socket scopes), no capabilities, no_new_privs and the seccomp filter (denials
/// answer EPERM; no supervisor). Call from a single-threaded process, then exec the skill.
/// Fails closed when the kernel lacks Landlock ABI 6 or seccomp.
pub fn apply_in_place(policy_in: &InPlacePolicy) -> Result<(), SandboxError> {
    let k = probe()?;
    let mut missing = Vec::new();
    if k.landlock_abi.is_none_or(|v| v < crate::MIN_LANDLOCK_ABI) {
        missing.push(format!("Landlock ABI {}+", crate::MIN_LANDLOCK_ABI));
    }
    if !k.seccomp_filter {
        missing.push("seccomp-bpf filters".into());
    }
    if !policy::syscalls::arch_supported() {
        missing.push(format!(
            "a seccomp syscall table for {}",
            std::env::consts::ARCH
        ));
    }
    if !missing.is_empty() {
        return Err(SandboxError::Unsupported { missing });
    }
    let (seen, shells) = scan_system();
    let mut exec = policy::exec_files(&seen, &shells, policy_in.grants.shell);
    exec.extend(interpreters());
    let rules = policy::fs_rules(
        &policy_in.skill_dir,
        &policy_in.workspace,
        &policy_in.home,
        &policy_in.workspace_root,
        &policy_in.grants,
        Some(Path::new("/tmp")),
        &exec,
    );
    let rs = landlock::Ruleset::new(
        FsAccess::ALL.0,
        landlock::NET_BIND_TCP | landlock::NET_CONNECT_TCP,
        landlock::SCOPE_ABSTRACT_UNIX_SOCKET | landlock::SCOPE_SIGNAL,
    )
    .map_err(|e| SandboxError::io("landlock_create_ruleset", e))?;
    let exec_set: std::collections::HashSet<&PathBuf> = exec.iter().collect();
    for r in &rules {
        if exec_set.contains(&r.path) {
            rs.add_file(&cstr(&r.path, "filesystem")?, r.access.0)
                .map_err(|e| {
                    SandboxError::io(format!("Landlock rule for {}", r.path.display()), e)
                })?;
            continue;
        }
        rs.add_path(&cstr(&r.path, "filesystem")?, r.access.0)
            .map_err(|e| SandboxError::io(format!("Landlock rule for {}", r.path.display()), e))?;
    }
    rs.add_port(policy_in.proxy_port, landlock::NET_CONNECT_TCP)
        .map_err(|e| SandboxError::io("Landlock TCP rule for the proxy port", e))?;
    let mut filter = bpf::compile(
        &policy::syscalls::rule_table(),
        bpf::Answers { supervised: false },
    )
    .map_err(SandboxError::Setup)?;
    let last = cap_last();
    // SAFETY: prctl/capset/seccomp on prepared data; failures are reported.
    unsafe {
        let os = |what: &str| SandboxError::io(what.to_string(), io::Error::last_os_error());
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
            return Err(os("prctl(PR_SET_NO_NEW_PRIVS)"));
        }
        // Bounding-set drops need CAP_SETPCAP; without it the process has no capabilities to
        // lose, and capset below clears whatever it has.
        libc::prctl(libc::PR_SET_SECUREBITS, 0xEF, 0, 0, 0);
        for cap in 0..=last {
            libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
        }
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
        if child::capset_none() < 0 {
            return Err(os("capset (drop all capabilities)"));
        }
        landlock::restrict_self(rs.raw())
            .map_err(|e| SandboxError::io("landlock_restrict_self", e))?;
        let prog = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_mut_ptr(),
        };
        if libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_TSYNC,
            &prog,
        ) < 0
        {
            return Err(os("seccomp(SECCOMP_SET_MODE_FILTER)"));
        }
    }
    Ok(())
}
