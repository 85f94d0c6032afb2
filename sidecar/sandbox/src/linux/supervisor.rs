//! The supervisor: reads seccomp user notifications, reports violations to the sink, answers.
//!
//! Strict mode: denied syscalls, paths outside the grants and direct connects are reported
//! and answered with an error (the supervisor's answer is the kernel's answer, so a denial
//! cannot be raced). Allowed paths continue and stay subject to Landlock, which is the
//! enforcement; the supervisor exists so that blocked attempts can be seen. Audit-only mode:
//! everything is reported and continues.

use super::sysnr;
use crate::policy::{self, AccessKind, FsRule, NetPlan};
use crate::{Violation, ViolationSink};
use std::ffi::OsStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What the supervisor checks against.
pub struct Policy {
    pub enforce: bool,
    pub rules: Vec<FsRule>,
    /// Hidden paths and masked shells (resolved paths).
    pub hidden: Vec<PathBuf>,
    /// Files with a per-file execute right (kept apart: a set lookup, not a rule scan).
    pub exec: std::collections::HashSet<PathBuf>,
    pub net: Option<NetPlan>,
    /// Audit-only mode: IronClaw's proxy on the host.
    pub host_proxy: Option<std::net::SocketAddrV4>,
}

enum Answer {
    Continue,
    Errno(i32),
}

pub fn run(fd: OwnedFd, policy: Policy, sink: Arc<dyn ViolationSink>) {
    let raw = fd.as_raw_fd();
    loop {
        let mut pfd = libc::pollfd {
            fd: raw,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, -1) };
        if r < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return;
        }
        if pfd.revents & libc::POLLIN == 0 {
            // POLLHUP: no task uses the filter any more.
            return;
        }
        // SAFETY: zeroed notification buffer as the kernel requires.
        let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: ioctl with a correctly sized buffer.
        if unsafe { libc::ioctl(raw, libc::SECCOMP_IOCTL_NOTIF_RECV as _, &mut req) } < 0 {
            continue;
        }
        let answer = handle(raw, &req, &policy, sink.as_ref());
        // SAFETY: zeroed response, then filled.
        let mut resp: libc::seccomp_notif_resp = unsafe { std::mem::zeroed() };
        resp.id = req.id;
        match answer {
            Answer::Continue => resp.flags = libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
            Answer::Errno(e) => resp.error = -e,
        }
        // SAFETY: ioctl with a valid response; ENOENT (the task died) is ignored.
        unsafe { libc::ioctl(raw, libc::SECCOMP_IOCTL_NOTIF_SEND as _, &resp) };
    }
}

fn id_valid(fd: i32, id: u64) -> bool {
    // SAFETY: ioctl reading a u64.
    unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_ID_VALID as _, &id) == 0 }
}

fn read_mem(pid: u32, addr: u64, buf: &mut [u8]) -> usize {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: local buffer is writable for its length; remote is only read by the kernel.
    let n = unsafe { libc::process_vm_readv(pid as i32, &local, 1, &remote, 1, 0) };
    usize::try_from(n).unwrap_or(0)
}

/// Reads a NUL-terminated string, page by page (a string may end just before unmapped memory).
fn read_cstr(pid: u32, addr: u64) -> Option<Vec<u8>> {
    if addr == 0 {
        return None;
    }
    let mut out = Vec::new();
    let mut a = addr;
    while out.len() < 4096 {
        let chunk = (4096 - (a % 4096)) as usize;
        let mut buf = vec![0u8; chunk];
        let n = read_mem(pid, a, &mut buf);
        if n == 0 {
            return None;
        }
        if let Some(z) = buf[..n].iter().position(|b| *b == 0) {
            out.extend_from_slice(&buf[..z]);
            return Some(out);
        }
        out.extend_from_slice(&buf[..n]);
        a += n as u64;
    }
    None
}

fn readlink(p: &Path) -> Option<PathBuf> {
    std::fs::read_link(p).ok()
}

/// Resolves `path` as the task `pid` sees it: relative to its cwd or `dirfd`, with `/proc/self`
/// meaning the task, and symlinks followed in its own mount namespace (via /proc/PID/root).
/// Also returns whether the path is known to exist (`None`: not checked).
fn resolve(pid: u32, dirfd: Option<i32>, raw: &[u8], follow_last: bool) -> (PathBuf, Option<bool>) {
    let p = Path::new(OsStr::from_bytes(raw));
    let base = if p.is_absolute() {
        PathBuf::from("/")
    } else {
        match dirfd {
            Some(fd) if fd != libc::AT_FDCWD => {
                readlink(&PathBuf::from(format!("/proc/{pid}/fd/{fd}"))).unwrap_or_default()
            }
            _ => readlink(&PathBuf::from(format!("/proc/{pid}/cwd"))).unwrap_or_default(),
        }
    };
    let joined = if raw.is_empty() { base } else { base.join(p) };
    if let Some((fast, exists)) = fast_resolve(&joined, follow_last) {
        return (fast, exists.then_some(true));
    }
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    let mut pending: Vec<std::ffi::OsString> = joined
        .components()
        .rev()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(n.to_os_string()),
            std::path::Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut out = PathBuf::from("/");
    let mut links = 0;
    while let Some(c) = pending.pop() {
        if c == ".." {
            out.pop();
            continue;
        }
        let cand = out.join(&c);
        // /proc/self and /proc/thread-self name the task, not the supervisor.
        if cand == Path::new("/proc/self") || cand == Path::new("/proc/thread-self") {
            out = PathBuf::from(format!("/proc/{pid}"));
            continue;
        }
        let last = pending.is_empty();
        if (!last || follow_last) && links < 40 {
            let inside = root.join(cand.strip_prefix("/").unwrap_or(&cand));
            if let Some(t) = readlink(&inside) {
                // /proc/PID/{fd,cwd,exe} entries are magic links; keep them as they are.
                if !cand.starts_with("/proc") || !t.is_absolute() {
                    links += 1;
                    if t.is_absolute() {
                        out = PathBuf::from("/");
                    }
                    for tc in t.components().rev() {
                        match tc {
                            std::path::Component::Normal(n) => pending.push(n.to_os_string()),
                            std::path::Component::ParentDir => pending.push("..".into()),
                            _ => {}
                        }
                    }
                    continue;
                }
            }
        }
        out = cand;
    }
    (out, None)
}

/// One kernel path walk in the supervisor's own mount namespace, which matches the skill's
/// everywhere except its private /tmp and /proc/self (handled by the slow walk).
fn fast_resolve(path: &Path, follow: bool) -> Option<(PathBuf, bool)> {
    let n = policy::normalize(path);
    if n.starts_with("/tmp") || n.starts_with("/proc") {
        return None;
    }
    let open = |p: &Path, nofollow: bool| -> Option<PathBuf> {
        let c = std::ffi::CString::new(p.as_os_str().as_bytes()).ok()?;
        let flags = libc::O_PATH | libc::O_CLOEXEC | if nofollow { libc::O_NOFOLLOW } else { 0 };
        // SAFETY: NUL-terminated path; the descriptor is closed below.
        let fd = unsafe { libc::open(c.as_ptr(), flags) };
        if fd < 0 {
            return None;
        }
        let r = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok();
        // SAFETY: fd was opened above.
        unsafe { libc::close(fd) };
        r.filter(|r| r.is_absolute())
    };
    if let Some(r) = open(&n, !follow) {
        return Some((r, true));
    }
    // Not there (yet): resolve the directory, keep the last name.
    let parent = open(n.parent()?, false)?;
    Some((parent.join(n.file_name()?), false))
}

/// `(path arg, dirfd arg, access)` for each path-taking syscall. Access `None` means "from the
/// open flags" (argument given separately).
fn path_args(name: &str) -> &'static [(usize, Option<usize>, AccessKind)] {
    use AccessKind::*;
    match name {
        "open" | "openat" | "openat2" | "creat" => &[],
        "stat" | "lstat" | "statfs" | "access" | "readlink" | "chdir" | "getxattr"
        | "lgetxattr" | "listxattr" | "llistxattr" => &[(0, None, Stat)],
        "newfstatat" | "statx" | "faccessat" | "faccessat2" | "readlinkat" => &[(1, Some(0), Stat)],
        "inotify_add_watch" => &[(1, None, Read)],
        "truncate" | "chmod" | "chown" | "lchown" | "utime" | "utimes" => &[(0, None, Write)],
        "fchmodat" | "fchmodat2" | "fchownat" | "utimensat" | "futimesat" => &[(1, Some(0), Write)],
        "mkdir" => &[(0, None, Create)],
        "mkdirat" => &[(1, Some(0), Create)],
        "rmdir" | "unlink" => &[(0, None, Remove)],
        "unlinkat" => &[(1, Some(0), Remove)],
        "rename" => &[(0, None, Remove), (1, None, Create)],
        "renameat" | "renameat2" => &[(1, Some(0), Remove), (3, Some(2), Create)],
        "link" => &[(0, None, Read), (1, None, Create)],
        "linkat" => &[(1, Some(0), Read), (3, Some(2), Create)],
        "symlink" => &[(1, None, Create)],
        "symlinkat" => &[(2, Some(1), Create)],
        "execve" => &[(0, None, Execute)],
        "execveat" => &[(1, Some(0), Execute)],
        _ => &[],
    }
}

fn open_kind(flags: u64) -> AccessKind {
    let f = flags as i32;
    if f & libc::O_PATH != 0 {
        AccessKind::Stat
    } else if f & (libc::O_WRONLY | libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC) != 0 {
        AccessKind::Write
    } else {
        AccessKind::Read
    }
}

/// Where glibc looks for nscd (`_PATH_NSCDSOCKET`; `/var/run` is usually a link to `/run`).
const NSCD_SOCKETS: &[&str] = &["/var/run/nscd/socket", "/run/nscd/socket"];

fn handle(fd: i32, req: &libc::seccomp_notif, policy: &Policy, sink: &dyn ViolationSink) -> Answer {
    let deny = |e: i32| {
        if policy.enforce {
            Answer::Errno(e)
        } else {
            Answer::Continue
        }
    };
    let nr = libc::c_long::from(req.data.nr);
    let name = sysnr::name(nr).unwrap_or("unknown");
    let args = req.data.args;
    let pid = req.pid;
    if policy::syscalls::PATH_SYSCALLS.contains(&name) {
        let mut checks: Vec<(usize, Option<usize>, AccessKind)> = path_args(name).to_vec();
        match name {
            "open" => checks.push((0, None, open_kind(args[1]))),
            "creat" => checks.push((0, None, AccessKind::Write)),
            "openat" => checks.push((1, Some(0), open_kind(args[2]))),
            "openat2" => {
                let mut how = [0u8; 8];
                let flags = if read_mem(pid, args[2], &mut how) == 8 {
                    u64::from_le_bytes(how)
                } else {
                    0
                };
                checks.push((1, Some(0), open_kind(flags)));
            }
            _ => {}
        }
        for (pa, da, kind) in checks {
            let raw = match read_cstr(pid, args[pa]) {
                Some(r) => r,
                None if name == "utimensat" => Vec::new(),
                None => continue,
            };
            if !id_valid(fd, req.id) {
                return Answer::Errno(libc::ENOENT);
            }
            let dirfd = da.map(|i| args[i] as i32);
            let follow = !matches!(
                name,
                "lstat"
                    | "readlink"
                    | "readlinkat"
                    | "lchown"
                    | "unlink"
                    | "unlinkat"
                    | "rmdir"
                    | "rename"
                    | "renameat"
                    | "renameat2"
                    | "symlink"
                    | "symlinkat"
            );
            let (path, known) = resolve(pid, dirfd, &raw, follow);
            // A path that exists neither for the skill nor on the host fails with ENOENT by
            // itself; reporting it would only count a program's search path as violations.
            let creates = matches!(kind, AccessKind::Write | AccessKind::Create);
            if !creates && known.is_none() && !exists(pid, &path) {
                continue;
            }
            if !fs_ok(policy, pid, &path, kind) {
                let v = if kind == AccessKind::Execute {
                    Violation::Exec { path }
                } else {
                    Violation::Filesystem {
                        path,
                        access: kind.as_str().to_owned(),
                    }
                };
                sink.report(v);
                return deny(libc::EACCES);
            }
        }
        return Answer::Continue;
    }
    if name == "connect" || name == "sendto" {
        let (ptr, len) = if name == "connect" {
            (args[1], args[2])
        } else {
            (args[4], args[5])
        };
        let mut buf = [0u8; 128];
        let len = (len as usize).min(buf.len());
        let n = read_mem(pid, ptr, &mut buf[..len]);
        if !id_valid(fd, req.id) {
            return Answer::Errno(libc::ENOENT);
        }
        let family = if n >= 2 {
            u16::from_ne_bytes([buf[0], buf[1]])
        } else {
            0
        };
        let dest = match i32::from(family) {
            libc::AF_INET if n >= 8 => Some((
                IpAddr::V4(Ipv4Addr::new(buf[4], buf[5], buf[6], buf[7])),
                u16::from_be_bytes([buf[2], buf[3]]),
            )),
            libc::AF_INET6 if n >= 24 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&buf[8..24]);
                Some((
                    IpAddr::V6(Ipv6Addr::from(a)),
                    u16::from_be_bytes([buf[2], buf[3]]),
                ))
            }
            libc::AF_UNIX => {
                let raw = buf.get(2..n).unwrap_or(&[]);
                if raw.first() == Some(&0) {
                    // Abstract name (no file): Landlock's scope refuses those outside the
                    // sandbox; report the attempt as `@name`.
                    let end = raw[1..]
                        .iter()
                        .position(|b| *b == 0)
                        .map_or(raw.len(), |z| z + 1);
                    let mut shown = b"@".to_vec();
                    shown.extend_from_slice(&raw[1..end]);
                    sink.report(Violation::Filesystem {
                        path: PathBuf::from(OsStr::from_bytes(&shown)),
                        access: "connect".into(),
                    });
                    return deny(libc::EACCES);
                }
                let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
                let (path, known) = resolve(pid, None, &raw[..end], true);
                if NSCD_SOCKETS.iter().any(|p| path == Path::new(p)) {
                    // glibc's name-service cache probe, made on every name lookup: answered
                    // as if nscd were not running, and not counted (like clone3's ENOSYS).
                    return deny(libc::ENOENT);
                }
                // A socket the skill may write to — in its own workspace, its private /tmp or
                // a `:rw` grant — is its own to use.
                if fs_ok(policy, pid, &path, AccessKind::Write) {
                    return Answer::Continue;
                }
                // A socket path that exists neither for the skill nor on the host fails with
                // ENOENT by itself (as for the path-taking calls above).
                if known.is_none() && !exists(pid, &path) {
                    return Answer::Continue;
                }
                sink.report(Violation::Filesystem {
                    path,
                    access: "connect".into(),
                });
                return deny(libc::EACCES);
            }
            _ => None,
        };
        if let Some((ip, port)) = dest {
            let ok = match &policy.net {
                Some(plan) => policy::net_allows(plan, ip, port),
                // Audit-only: only IronClaw's proxy on the host is not a bypass.
                None => policy
                    .host_proxy
                    .is_some_and(|p| IpAddr::V4(*p.ip()) == ip && p.port() == port),
            };
            if !ok {
                sink.report(Violation::Network {
                    host: ip.to_string(),
                    port,
                });
                return deny(libc::EACCES);
            }
        }
        return Answer::Continue;
    }
    if policy::syscalls::SIGNAL_SUPERVISED.contains(&name) {
        // The target: a pid (kill, rt_sigqueueinfo), a thread-group id (tgkill,
        // rt_tgsigqueueinfo), a thread id (tkill), or the process behind a pidfd.
        let target = if name == "pidfd_send_signal" {
            pidfd_target(pid, args[0] as i32).unwrap_or(0)
        } else {
            args[0] as i32
        };
        if !id_valid(fd, req.id) {
            return Answer::Errno(libc::ESRCH);
        }
        if target > 0 && outside(policy, pid, target) {
            sink.report(Violation::Syscall { name: name.into() });
            return deny(libc::EPERM);
        }
        return Answer::Continue;
    }
    let shown = if name == "socket" {
        let fam = match args[0] as i32 {
            libc::AF_UNIX => "AF_UNIX".to_string(),
            libc::AF_NETLINK => "AF_NETLINK".to_string(),
            libc::AF_PACKET => "AF_PACKET".to_string(),
            libc::AF_INET => "AF_INET".to_string(),
            libc::AF_INET6 => "AF_INET6".to_string(),
            n => format!("family {n}"),
        };
        let raw = if args[1] as i32 & 0xf == libc::SOCK_RAW {
            ", SOCK_RAW"
        } else {
            ""
        };
        format!("socket({fam}{raw})")
    } else if name == "ioctl" {
        match args[1] as u32 {
            0x5412 => "ioctl(TIOCSTI)".to_owned(),
            0x541C => "ioctl(TIOCLINUX)".to_owned(),
            n => format!("ioctl({n:#x})"),
        }
    } else {
        name.to_owned()
    };
    sink.report(Violation::Syscall { name: shown });
    deny(libc::EPERM)
}

fn fs_ok(policy: &Policy, pid: u32, path: &Path, kind: AccessKind) -> bool {
    // /proc/<other pid>/…: another process's details (environ, mem, fds) are not the skill's.
    if let Ok(rest) = path.strip_prefix("/proc")
        && let Some(first) = rest.components().next()
    {
        let s = first.as_os_str().to_string_lossy();
        if let Ok(n) = s.parse::<u32>() {
            let own = n == pid || tgid(pid) == Some(n);
            if !own && rest.components().count() > 1 {
                return false;
            }
        }
    }
    if kind == AccessKind::Execute
        && policy.exec.contains(path)
        && !policy.hidden.iter().any(|h| policy::within(path, h))
    {
        return true;
    }
    policy::fs_allows(&policy.rules, &policy.hidden, path, kind)
}

/// Whether `target` is outside the skill's sandbox: in strict mode, not in its user namespace;
/// in audit-only mode (no namespaces), IronClaw itself.
fn outside(policy: &Policy, pid: u32, target: i32) -> bool {
    if target as u32 == std::process::id() {
        return true;
    }
    if !policy.enforce {
        return false;
    }
    let ns = |p: String| std::fs::read_link(format!("/proc/{p}/ns/user")).ok();
    match (ns(pid.to_string()), ns(target.to_string())) {
        (Some(a), Some(b)) => a != b,
        // A process whose namespace IronClaw cannot read is not one of the skill's children.
        (Some(_), None) => Path::new(&format!("/proc/{target}")).exists(),
        // The task is gone: the kernel answers by itself.
        (None, _) => false,
    }
}

fn exists(pid: u32, path: &Path) -> bool {
    let inside =
        PathBuf::from(format!("/proc/{pid}/root")).join(path.strip_prefix("/").unwrap_or(path));
    std::fs::symlink_metadata(inside).is_ok() || std::fs::symlink_metadata(path).is_ok()
}

/// The pid a pidfd of process `pid` refers to (`Pid:` in its fdinfo; -1 once it exited).
fn pidfd_target(pid: u32, fd: i32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|v| v.trim().parse().ok())
}

fn tgid(pid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_flags_map_to_access() {
        assert_eq!(open_kind(libc::O_RDONLY as u64), AccessKind::Read);
        assert_eq!(
            open_kind((libc::O_WRONLY | libc::O_CREAT) as u64),
            AccessKind::Write
        );
        assert_eq!(open_kind(libc::O_RDWR as u64), AccessKind::Write);
        assert_eq!(
            open_kind((libc::O_PATH | libc::O_DIRECTORY) as u64),
            AccessKind::Stat
        );
        assert_eq!(
            path_args("renameat2"),
            &[
                (1, Some(0), AccessKind::Remove),
                (3, Some(2), AccessKind::Create)
            ]
        );
        assert_eq!(path_args("execve"), &[(0, None, AccessKind::Execute)]);
    }

    #[test]
    fn paths_resolve_as_the_task_sees_them() {
        let pid = std::process::id();
        let cwd = std::env::current_dir().unwrap();
        // Relative to the task's cwd; /proc/self means the task, not the supervisor.
        assert_eq!(
            resolve(pid, None, b"Cargo.toml", true).0,
            cwd.join("Cargo.toml")
        );
        assert_eq!(
            resolve(pid, None, b"/proc/self/environ", true).0,
            PathBuf::from(format!("/proc/{pid}/environ"))
        );
        // Symlinks are followed (merged /usr: /bin -> usr/bin), `..` is resolved.
        let bin = resolve(pid, None, b"/bin/../bin/ls", true).0;
        assert_eq!(bin, std::fs::canonicalize("/bin/ls").unwrap());
        // A file that does not exist yet keeps its name under the resolved directory.
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink("/etc", &link).unwrap();
        assert_eq!(
            resolve(
                pid,
                None,
                link.join("new-file").as_os_str().as_bytes(),
                true
            )
            .0,
            PathBuf::from("/etc/new-file")
        );
        // lstat-like calls do not follow the last link.
        assert_eq!(
            resolve(pid, None, link.as_os_str().as_bytes(), false).0,
            link
        );
    }

    #[test]
    fn proc_of_other_processes_is_not_the_skill_s() {
        let p = Policy {
            enforce: true,
            rules: vec![FsRule {
                path: "/proc".into(),
                access: crate::policy::FsAccess::READ,
            }],
            hidden: vec![],
            exec: Default::default(),
            net: None,
            host_proxy: None,
        };
        let me = std::process::id();
        assert!(fs_ok(
            &p,
            me,
            Path::new(&format!("/proc/{me}/status")),
            AccessKind::Read
        ));
        assert!(!fs_ok(
            &p,
            me,
            Path::new("/proc/1/environ"),
            AccessKind::Read
        ));
        assert!(fs_ok(&p, me, Path::new("/proc/cpuinfo"), AccessKind::Read));
    }
}
