//! Pure translations from grants to rules. Nothing here touches the system: callers pass in
//! what they observed (which paths exist, which files are shells), so every translation is a
//! unit-tested function that compiles on every OS.

pub mod sbpl;
pub mod syscalls;

pub use syscalls::{always_denied, syscall_allowlist};

use crate::SandboxError;
use ironclaw_crds::{Access, Grants, Host, NetworkGrant};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Component, Path, PathBuf};

// ---------------------------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------------------------

/// PATH given to every skill.
pub const SKILL_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";
/// LANG given to every skill.
pub const SKILL_LANG: &str = "C.UTF-8";

/// Names IronClaw sets itself; a granted variable of the same name is dropped.
pub const RESERVED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "TMPDIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// The complete environment of a skill: nothing inherited, the granted variables (each checked
/// again against the grants: fail closed), then PATH, HOME (= the workspace), LANG and, when a
/// proxy is given, the proxy variables.
pub fn env_plan(
    granted: &[(String, String)],
    grants: &Grants,
    workspace: &Path,
    tmpdir: Option<&Path>,
    proxy: Option<SocketAddrV4>,
) -> Result<Vec<(String, String)>, SandboxError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in granted {
        if !grants.allows_env(k) {
            return Err(SandboxError::spec(
                "env",
                format!("variable {k:?} is not covered by the skill's env grants"),
            ));
        }
        if k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(SandboxError::spec(
                "env",
                format!("variable {k:?} has '=' in its name or a NUL byte"),
            ));
        }
        if RESERVED_ENV.contains(&k.as_str()) || out.iter().any(|(o, _)| o == k) {
            continue;
        }
        out.push((k.clone(), v.clone()));
    }
    out.push(("PATH".into(), SKILL_PATH.into()));
    out.push(("HOME".into(), workspace.to_string_lossy().into_owned()));
    out.push(("LANG".into(), SKILL_LANG.into()));
    if let Some(t) = tmpdir {
        out.push(("TMPDIR".into(), t.to_string_lossy().into_owned()));
    }
    if let Some(p) = proxy {
        let url = format!("http://{p}");
        for k in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            out.push((k.into(), url.clone()));
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Filesystem rights (Landlock bit values, so the Linux side passes them through unchanged)
// ---------------------------------------------------------------------------------------------

/// A set of filesystem rights; the bit values are Landlock's `LANDLOCK_ACCESS_FS_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FsAccess(pub u64);

impl FsAccess {
    pub const EXECUTE: FsAccess = FsAccess(1 << 0);
    pub const WRITE_FILE: FsAccess = FsAccess(1 << 1);
    pub const READ_FILE: FsAccess = FsAccess(1 << 2);
    pub const READ_DIR: FsAccess = FsAccess(1 << 3);
    pub const REMOVE_DIR: FsAccess = FsAccess(1 << 4);
    pub const REMOVE_FILE: FsAccess = FsAccess(1 << 5);
    pub const MAKE_CHAR: FsAccess = FsAccess(1 << 6);
    pub const MAKE_DIR: FsAccess = FsAccess(1 << 7);
    pub const MAKE_REG: FsAccess = FsAccess(1 << 8);
    pub const MAKE_SOCK: FsAccess = FsAccess(1 << 9);
    pub const MAKE_FIFO: FsAccess = FsAccess(1 << 10);
    pub const MAKE_BLOCK: FsAccess = FsAccess(1 << 11);
    pub const MAKE_SYM: FsAccess = FsAccess(1 << 12);
    pub const REFER: FsAccess = FsAccess(1 << 13);
    pub const TRUNCATE: FsAccess = FsAccess(1 << 14);
    pub const IOCTL_DEV: FsAccess = FsAccess(1 << 15);

    pub const NONE: FsAccess = FsAccess(0);
    /// Every right Landlock ABI 5+ handles.
    pub const ALL: FsAccess = FsAccess((1 << 16) - 1);
    /// Rights that apply to a single file (Landlock refuses directory rights on a file rule).
    pub const FILE_RIGHTS: FsAccess = FsAccess(1 | (1 << 1) | (1 << 2) | (1 << 14) | (1 << 15));
    pub const READ: FsAccess = FsAccess((1 << 2) | (1 << 3));
    pub const READ_EXEC: FsAccess = FsAccess(1 | (1 << 2) | (1 << 3));
    /// Read-write without execute and without device nodes.
    pub const READ_WRITE: FsAccess = FsAccess(
        (1 << 1)
            | (1 << 2)
            | (1 << 3)
            | (1 << 4)
            | (1 << 5)
            | (1 << 7)
            | (1 << 8)
            | (1 << 9)
            | (1 << 10)
            | (1 << 12)
            | (1 << 13)
            | (1 << 14),
    );
    /// A device file that is read and written (`/dev/null`).
    pub const DEV_RW: FsAccess = FsAccess((1 << 1) | (1 << 2) | (1 << 15));

    pub const fn union(self, o: FsAccess) -> FsAccess {
        FsAccess(self.0 | o.0)
    }
    pub const fn intersects(self, o: FsAccess) -> bool {
        self.0 & o.0 != 0
    }
    pub const fn contains(self, o: FsAccess) -> bool {
        self.0 & o.0 == o.0
    }
}

/// One Landlock path-beneath rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsRule {
    pub path: PathBuf,
    pub access: FsAccess,
}

/// System locations readable by every skill (directories or files). Absent ones are skipped.
pub const SYSTEM_READ: &[&str] = &[
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/bin",
    "/sbin",
    "/proc",
    "/sys/devices/system/cpu",
    "/etc/ld.so.cache",
    "/etc/ld.so.preload",
    "/etc/locale.alias",
    "/etc/selinux",
    "/sys/fs/selinux",
    "/selinux",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/resolv.conf",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/protocols",
    "/etc/services",
    "/etc/mime.types",
    "/etc/os-release",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/alternatives",
    "/etc/environment",
    "/dev/urandom",
    "/dev/random",
    "/dev/zero",
];

/// Device files a skill may write (output sinks).
pub const SYSTEM_DEV_RW: &[&str] = &["/dev/null", "/dev/full"];

/// Directories whose executables get a per-file execute right (shells left out).
pub const EXEC_DIRS: &[&str] = &["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"];

/// File names that are shells wherever they are found (in addition to `/etc/shells`). The
/// sandbox identifies shells by inode, so a hard link or an alternatives symlink is caught too.
pub const SHELL_NAMES: &[&str] = &[
    "sh", "bash", "rbash", "dash", "ash", "zsh", "ksh", "ksh93", "mksh", "lksh", "pdksh", "oksh",
    "yash", "posh", "busybox", "toybox", "csh", "tcsh", "bsd-csh", "fish", "elvish", "nu", "xonsh",
    "pwsh", "rc", "es", "sash", "tmux", "screen", "script",
];

/// Landlock rules for a skill: system paths read-only, the skill folder read + execute, its
/// workspace read-write (never execute), the filesystem grants, device sinks, and execute on
/// exactly the files in `exec_files` (built by [`exec_files`], shells excluded).
///
/// `tmp` is the private /tmp (read-write, never execute). Grants are resolved with
/// [`ironclaw_crds::FsGrant::resolve`].
pub fn fs_rules(
    skill_dir: &Path,
    workspace: &Path,
    home: &Path,
    workspace_root: &Path,
    grants: &Grants,
    tmp: Option<&Path>,
    exec_files: &[PathBuf],
) -> Vec<FsRule> {
    let mut rules: Vec<FsRule> = Vec::new();
    for p in SYSTEM_READ {
        rules.push(FsRule {
            path: PathBuf::from(p),
            access: FsAccess::READ,
        });
    }
    for p in SYSTEM_DEV_RW {
        rules.push(FsRule {
            path: PathBuf::from(p),
            access: FsAccess::DEV_RW,
        });
    }
    for f in exec_files {
        rules.push(FsRule {
            path: f.clone(),
            access: FsAccess::EXECUTE.union(FsAccess::READ_FILE),
        });
    }
    rules.push(FsRule {
        path: skill_dir.to_path_buf(),
        access: FsAccess::READ_EXEC,
    });
    rules.push(FsRule {
        path: workspace.to_path_buf(),
        access: FsAccess::READ_WRITE,
    });
    if let Some(t) = tmp {
        rules.push(FsRule {
            path: t.to_path_buf(),
            access: FsAccess::READ_WRITE,
        });
    }
    for g in &grants.filesystem {
        rules.push(FsRule {
            path: g.resolve(home, workspace_root),
            access: match g.access {
                Access::Ro => FsAccess::READ,
                Access::Rw => FsAccess::READ_WRITE,
            },
        });
    }
    rules
}

/// A file seen in an executable directory, identified by `(device, inode)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenFile {
    pub path: PathBuf,
    pub id: (u64, u64),
    /// Regular file with an execute bit.
    pub executable: bool,
}

/// The files that get an execute right: every executable in `seen` whose inode is not a
/// shell's, unless the skill holds the shell grant. `shells` are inode ids of shells.
pub fn exec_files(seen: &[SeenFile], shells: &[(u64, u64)], shell_granted: bool) -> Vec<PathBuf> {
    seen.iter()
        .filter(|f| f.executable && (shell_granted || !shells.contains(&f.id)))
        .map(|f| f.path.clone())
        .collect()
}

/// What a path-taking call asks for, as logged in FILESYSTEM_BLOCK's `access`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessKind {
    /// Metadata only (stat, access, readlink, chdir).
    Stat,
    Read,
    Write,
    Create,
    Remove,
    Execute,
}

impl AccessKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessKind::Stat => "stat",
            AccessKind::Read => "read",
            AccessKind::Write => "write",
            AccessKind::Create => "create",
            AccessKind::Remove => "delete",
            AccessKind::Execute => "execute",
        }
    }
    fn needs(self) -> FsAccess {
        match self {
            AccessKind::Stat => FsAccess::ALL,
            AccessKind::Read => FsAccess::READ,
            AccessKind::Write => FsAccess::WRITE_FILE.union(FsAccess::TRUNCATE),
            AccessKind::Create => FsAccess(
                FsAccess::MAKE_REG.0
                    | FsAccess::MAKE_DIR.0
                    | FsAccess::MAKE_SYM.0
                    | FsAccess::MAKE_FIFO.0
                    | FsAccess::MAKE_SOCK.0,
            ),
            AccessKind::Remove => FsAccess::REMOVE_FILE.union(FsAccess::REMOVE_DIR),
            AccessKind::Execute => FsAccess::EXECUTE,
        }
    }
}

/// `child` equals `parent` or lies below it, component-wise.
pub fn within(child: &Path, parent: &Path) -> bool {
    child.starts_with(parent)
}

/// Whether `path` (absolute, normalised, symlinks resolved) may be accessed as `kind` under
/// `rules` (Landlock semantics: the union of every rule on the path or above it), with
/// `hidden` paths masked: below a hidden path only rules that lie inside it count. Metadata
/// (`Stat`) is also allowed on the ancestors of a rule path, which a path walk must traverse.
pub fn fs_allows(rules: &[FsRule], hidden: &[PathBuf], path: &Path, kind: AccessKind) -> bool {
    let mask = hidden
        .iter()
        .filter(|h| within(path, h))
        .max_by_key(|h| h.components().count());
    let mut granted = FsAccess::NONE;
    for r in rules {
        if !within(path, &r.path) {
            continue;
        }
        if let Some(h) = mask
            && !(within(&r.path, h) && r.path != *h)
        {
            continue;
        }
        granted = granted.union(r.access);
    }
    if granted.intersects(kind.needs()) {
        return true;
    }
    kind == AccessKind::Stat
        && rules.iter().any(|r| {
            within(&r.path, path) && mask.is_none_or(|h| within(&r.path, h) && r.path != *h)
        })
}

/// Lexical normalisation of an absolute path: drops `.`, resolves `..` (never above `/`).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Mount plan (the skill's private mount namespace)
// ---------------------------------------------------------------------------------------------

/// A path made visible again inside the skill's mount namespace (a clone of the original
/// mount re-attached at the same place, after hidden paths and the private /tmp are mounted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposed {
    pub path: PathBuf,
    pub noexec: bool,
    pub rdonly: bool,
}

/// One step of the mount plan, executed in order in the child after `unshare`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountOp {
    /// `mount --make-rprivate /`: nothing propagates back to the host.
    MakePrivate,
    /// Take a detached clone of `path` (before anything is hidden) as clone number `id`, with
    /// noexec/nosuid/nodev or read-only added.
    Clone {
        id: usize,
        path: PathBuf,
        noexec: bool,
        rdonly: bool,
    },
    /// A fresh tmpfs at `target` (nosuid, nodev, noexec).
    Tmpfs { target: PathBuf, mode: u32 },
    /// `mkdir` inside a tmpfs, to create a mount point.
    Mkdir(PathBuf),
    /// Attach clone `id` at `target`.
    Attach { id: usize, target: PathBuf },
    /// Write a small file (e.g. the hosts file) at `path`.
    WriteFile { path: PathBuf, contents: Vec<u8> },
    /// Bind `src` over the file `target` read-only, noexec, nodev.
    BindFile { src: PathBuf, target: PathBuf },
    /// Remove a staging file.
    Unlink(PathBuf),
    /// Make the mount at `target` read-only.
    Readonly(PathBuf),
}

/// Where the hosts file is staged before it is bound over /etc/hosts.
pub const HOSTS_STAGING: &str = "/tmp/.ironclaw-hosts";

/// The mount plan: make everything private; hide each hidden path (and /tmp) under a fresh
/// tmpfs; re-expose the workspace, the skill folder and the filesystem grants at their own
/// paths (noexec for everything writable); bind the hosts file; mask the shells.
///
/// Layers are processed from the shallowest path to the deepest, so a path exposed inside a
/// hidden one is re-attached on top of the tmpfs, and a hidden path inside an exposed one is
/// masked on top of the clone. A path both hidden and exposed stays hidden.
pub fn mount_plan(
    exposed: &[Exposed],
    hidden: &[PathBuf],
    private_tmp: bool,
    hosts: Option<&str>,
    masked_files: &[PathBuf],
) -> Vec<MountOp> {
    enum Layer<'a> {
        Hide(&'a Path, u32),
        Expose(usize, &'a Exposed),
    }
    let tmp = PathBuf::from("/tmp");
    let mut hides: Vec<(&Path, u32, bool)> = Vec::new();
    if private_tmp {
        hides.push((tmp.as_path(), 0o1777, false));
    }
    for h in hidden {
        if hides.iter().any(|(o, _, _)| within(h, o)) {
            continue;
        }
        hides.push((h.as_path(), 0o755, true));
    }
    let mut layers: Vec<(usize, u8, Layer)> = Vec::new();
    for (p, mode, _) in &hides {
        layers.push((p.components().count(), 0, Layer::Hide(p, *mode)));
    }
    let mut ops = vec![MountOp::MakePrivate];
    let mut id = 0;
    let mut kept: Vec<&Exposed> = Vec::new();
    for e in exposed {
        if hidden.contains(&e.path) || kept.iter().any(|k| k.path == e.path) {
            continue;
        }
        kept.push(e);
    }
    for e in kept {
        ops.push(MountOp::Clone {
            id,
            path: e.path.clone(),
            noexec: e.noexec,
            rdonly: e.rdonly,
        });
        layers.push((e.path.components().count(), 1, Layer::Expose(id, e)));
        id += 1;
    }
    layers.sort_by_key(|(depth, kind, _)| (*depth, *kind));
    let mut tmpfs_done: Vec<&Path> = Vec::new();
    for (_, _, layer) in &layers {
        match layer {
            Layer::Hide(p, mode) => {
                ops.push(MountOp::Tmpfs {
                    target: p.to_path_buf(),
                    mode: *mode,
                });
                tmpfs_done.push(p);
            }
            Layer::Expose(id, e) => {
                // Innermost tmpfs already mounted above this path: create the mount point.
                if let Some(t) = tmpfs_done
                    .iter()
                    .filter(|t| within(&e.path, t) && e.path != **t)
                    .max_by_key(|t| t.components().count())
                {
                    let mut cur = t.to_path_buf();
                    if let Ok(rest) = e.path.strip_prefix(t) {
                        for c in rest.components() {
                            cur.push(c);
                            let op = MountOp::Mkdir(cur.clone());
                            if !ops.contains(&op) {
                                ops.push(op);
                            }
                        }
                    }
                }
                ops.push(MountOp::Attach {
                    id: *id,
                    target: e.path.clone(),
                });
            }
        }
    }
    if let Some(h) = hosts
        && private_tmp
    {
        ops.push(MountOp::WriteFile {
            path: PathBuf::from(HOSTS_STAGING),
            contents: h.as_bytes().to_vec(),
        });
        ops.push(MountOp::BindFile {
            src: PathBuf::from(HOSTS_STAGING),
            target: PathBuf::from("/etc/hosts"),
        });
        ops.push(MountOp::Unlink(PathBuf::from(HOSTS_STAGING)));
    }
    for m in masked_files {
        ops.push(MountOp::BindFile {
            src: PathBuf::from("/dev/null"),
            target: m.clone(),
        });
    }
    for (p, _, ro) in &hides {
        if *ro {
            ops.push(MountOp::Readonly(p.to_path_buf()));
        }
    }
    ops
}

/// The paths a skill sees again inside its mount namespace: its folder (read + execute), its
/// workspace (noexec) and each filesystem grant (`:rw` noexec, `:ro` read-only and noexec).
pub fn exposed_paths(
    skill_dir: &Path,
    workspace: &Path,
    home: &Path,
    workspace_root: &Path,
    grants: &Grants,
) -> Vec<Exposed> {
    let mut v = vec![
        Exposed {
            path: skill_dir.to_path_buf(),
            noexec: false,
            rdonly: false,
        },
        Exposed {
            path: workspace.to_path_buf(),
            noexec: true,
            rdonly: false,
        },
    ];
    for g in &grants.filesystem {
        v.push(Exposed {
            path: g.resolve(home, workspace_root),
            noexec: true,
            rdonly: g.access == Access::Ro,
        });
    }
    v
}

// ---------------------------------------------------------------------------------------------
// Network plan
// ---------------------------------------------------------------------------------------------

/// The HTTP proxy listener inside every skill's network namespace.
pub const PROXY_LISTEN: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 3128);

/// Listeners inside the skill's network namespace and its hosts file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetPlan {
    pub proxy: SocketAddrV4,
    /// One listener per granted `name:port`; the name maps to the listener's address.
    pub forwards: Vec<(NetworkGrant, SocketAddrV4)>,
    pub hosts_file: String,
    /// Addresses outside 127/8 of IPv4 grants, added to `lo` in the skill's namespace so the
    /// skill connects to the granted address itself and reaches IronClaw's listener.
    pub extra_addrs: Vec<Ipv4Addr>,
}

/// Loopback address number `i` for forwarded names: 127.0.0.2, 127.0.0.3, … 127.0.1.2, …
fn forward_addr(i: usize) -> Ipv4Addr {
    let i = i as u32;
    Ipv4Addr::new(127, ((i / 250) % 250) as u8, 0, (i % 250 + 2) as u8)
}

/// Assigns each granted host name a loopback address (one address per name, shared by its
/// ports) and writes the hosts file that maps the names for the skill. Wildcard grants have
/// no forward (HTTP through the proxy only); IP grants are reached through the HTTP proxy.
pub fn net_plan(grants: &Grants) -> NetPlan {
    let mut forwards: Vec<(NetworkGrant, SocketAddrV4)> = Vec::new();
    let mut extra_addrs: Vec<Ipv4Addr> = Vec::new();
    // IPv4 grants listen on the granted address itself (IPv6 grants: through the HTTP proxy).
    for g in &grants.network {
        if let Host::Ip(std::net::IpAddr::V4(ip)) = &g.host {
            let sa = SocketAddrV4::new(*ip, g.port);
            if sa == PROXY_LISTEN || forwards.iter().any(|(_, a)| *a == sa) {
                continue;
            }
            if !ip.is_loopback() && !extra_addrs.contains(ip) {
                extra_addrs.push(*ip);
            }
            forwards.push((g.clone(), sa));
        }
    }
    let used: Vec<Ipv4Addr> = forwards.iter().map(|(_, a)| *a.ip()).collect();
    let mut names: BTreeMap<String, Ipv4Addr> = BTreeMap::new();
    let mut next = 0usize;
    for g in &grants.network {
        if let Host::Name(n) = &g.host {
            let addr = match names.get(n) {
                Some(a) => *a,
                None => {
                    let mut a = forward_addr(next);
                    while used.contains(&a) {
                        next += 1;
                        a = forward_addr(next);
                    }
                    next += 1;
                    names.insert(n.clone(), a);
                    a
                }
            };
            let sa = SocketAddrV4::new(addr, g.port);
            if !forwards.iter().any(|(_, a)| *a == sa) {
                forwards.push((g.clone(), sa));
            }
        }
    }
    let mut hosts =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    let mut by_addr: Vec<(&String, &Ipv4Addr)> = names.iter().collect();
    by_addr.sort_by_key(|(_, a)| **a);
    for (n, a) in by_addr {
        hosts.push_str(&format!("{a}\t{n}\n"));
    }
    NetPlan {
        proxy: PROXY_LISTEN,
        forwards,
        hosts_file: hosts,
        extra_addrs,
    }
}

/// Whether a direct connection from inside the skill to `addr:port` reaches one of IronClaw's
/// listeners (and so is not a NETWORK_BLOCK).
pub fn net_allows(plan: &NetPlan, addr: std::net::IpAddr, port: u16) -> bool {
    let target = match addr {
        std::net::IpAddr::V4(a) => a,
        std::net::IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(a) => a,
            None => return false,
        },
    };
    let sa = SocketAddrV4::new(target, port);
    sa == plan.proxy || plan.forwards.iter().any(|(_, a)| *a == sa)
}

#[cfg(test)]
mod tests;
