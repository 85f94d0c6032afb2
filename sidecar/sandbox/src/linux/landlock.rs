//! Landlock through its three syscalls. Rules on paths that exist on the host are added in the
//! parent; rules on what the child mounts itself (private /tmp, /etc/hosts) are added in the
//! child after fork, where only raw syscalls on prepared data are allowed — hence no wrapper
//! crate here. Strict mode needs ABI 6 and fails closed below it (no best-effort).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

#[repr(C)]
struct NetPortAttr {
    allowed_access: u64,
    port: u64,
}

const CREATE_RULESET_VERSION: u32 = 1;
const RULE_PATH_BENEATH: libc::c_int = 1;
const RULE_NET_PORT: libc::c_int = 2;
pub const NET_BIND_TCP: u64 = 1;
pub const NET_CONNECT_TCP: u64 = 2;
pub const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1;
pub const SCOPE_SIGNAL: u64 = 2;
/// Directory-only rights are refused on a file rule.
const FILE_RIGHTS: u64 = crate::policy::FsAccess::FILE_RIGHTS.0;

/// The Landlock ABI version, `None` when Landlock is not enabled.
pub fn abi() -> Option<u32> {
    // SAFETY: the version query takes no pointer.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(r).ok().filter(|v| *v > 0)
}

/// A ruleset under construction.
pub struct Ruleset {
    fd: OwnedFd,
}

impl Ruleset {
    pub fn new(fs: u64, net: u64, scoped: u64) -> io::Result<Ruleset> {
        let attr = RulesetAttr {
            handled_access_fs: fs,
            handled_access_net: net,
            scoped,
        };
        // SAFETY: attr is a valid, fully initialised struct of the size passed.
        let r = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &attr as *const RulesetAttr,
                std::mem::size_of::<RulesetAttr>(),
                0u32,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = RawFd::try_from(r).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
        // SAFETY: the kernel returned a new file descriptor we own.
        Ok(Ruleset {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Adds a rule for an open `O_PATH` descriptor; rights are narrowed to file rights when it
    /// is not a directory.
    pub fn add_path_fd(&self, path_fd: RawFd, access: u64) -> io::Result<()> {
        add_path_raw(self.raw(), path_fd, access)
    }

    /// Opens `path` and adds a rule. Returns `Ok(false)` when the path does not exist.
    pub fn add_path(&self, path: &CStr, access: u64) -> io::Result<bool> {
        // SAFETY: path is NUL-terminated.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::EACCES) => Ok(false),
                _ => Err(e),
            };
        }
        // SAFETY: fd is a new descriptor we own.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        self.add_path_fd(owned.as_raw_fd(), access)?;
        Ok(true)
    }

    /// Adds a rule for a path known to be a regular file (no type check: file rights only).
    /// Missing files are skipped.
    pub fn add_file(&self, path: &CStr, access: u64) -> io::Result<bool> {
        // SAFETY: path is NUL-terminated.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        if fd < 0 {
            return Ok(false);
        }
        // SAFETY: fd is a new descriptor we own.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let attr = PathBeneathAttr {
            allowed_access: access & FILE_RIGHTS,
            parent_fd: owned.as_raw_fd(),
        };
        // SAFETY: attr is valid for the duration of the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                self.raw(),
                RULE_PATH_BENEATH,
                &attr as *const PathBeneathAttr,
                0u32,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(true)
    }

    pub fn add_port(&self, port: u16, access: u64) -> io::Result<()> {
        let attr = NetPortAttr {
            allowed_access: access,
            port: u64::from(port),
        };
        // SAFETY: attr is valid for the duration of the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                self.raw(),
                RULE_NET_PORT,
                &attr as *const NetPortAttr,
                0u32,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Adds a path-beneath rule (async-signal-safe: usable after fork).
pub fn add_path_raw(ruleset: RawFd, path_fd: RawFd, access: u64) -> io::Result<()> {
    // SAFETY: an all-zero stat is valid; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: path_fd is an open descriptor and st is writable.
    if unsafe { libc::fstat(path_fd, &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let allowed = if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        access
    } else {
        access & FILE_RIGHTS
    };
    if allowed == 0 {
        return Ok(());
    }
    let attr = PathBeneathAttr {
        allowed_access: allowed,
        parent_fd: path_fd,
    };
    // SAFETY: attr is valid for the duration of the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset,
            RULE_PATH_BENEATH,
            &attr as *const PathBeneathAttr,
            0u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Enforces the ruleset on the calling thread (needs no_new_privs). Async-signal-safe.
pub fn restrict_self(ruleset: RawFd) -> io::Result<()> {
    // SAFETY: plain syscall on a descriptor.
    let r = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0u32) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
