//! The seccomp policy as reviewed data: the allowlist (a comment per group, firecracker
//! style), the always-denied list, and the rule table the BPF compiler and the operator's OCI
//! profile generator both consume. Pure: names only, no syscall numbers.

/// Builds a flat `(name, group comment)` table from groups.
macro_rules! groups {
    ($( $comment:literal => [ $($name:ident),* $(,)? ] ; )*) => {
        &[ $( $( (stringify!($name), $comment), )* )* ]
    };
}

/// Syscalls an ordinary program may make. Entries marked in [`arg_rules`] are allowed only
/// with safe arguments; entries in [`PATH_SYSCALLS`] and [`NET_SUPERVISED`] are passed to the
/// supervisor (which reports and answers) when one runs.
static ALLOWLIST: &[(&str, &str)] = groups! {
    "file descriptors: read, write, seek, duplicate, close" => [
        read, write, readv, writev, pread64, pwrite64, preadv, pwritev, preadv2, pwritev2,
        lseek, close, close_range, dup, dup2, dup3, fcntl, flock, fsync, fdatasync, syncfs,
        sync_file_range, ftruncate, fallocate, fadvise64, sendfile, splice, tee, vmsplice,
        copy_file_range, pipe, pipe2, ioctl, fstat, fstatfs, getdents64, getdents, fchmod,
        fchown, fchdir, fgetxattr, flistxattr, readahead,
    ];
    "paths (supervised: the supervisor logs FILESYSTEM_BLOCK; Landlock enforces)" => [
        open, openat, openat2, creat, stat, lstat, newfstatat, statx, statfs, access,
        faccessat, faccessat2, readlink, readlinkat, truncate, mkdir, mkdirat, rmdir, unlink,
        unlinkat, rename, renameat, renameat2, link, linkat, symlink, symlinkat, chmod,
        fchmodat, fchmodat2, chown, lchown, fchownat, utime, utimes, utimensat, futimesat,
        chdir, getcwd, getxattr, lgetxattr, listxattr, llistxattr, inotify_add_watch,
    ];
    "program execution (supervised; Landlock grants execute per file, shells excluded)" => [
        execve, execveat,
    ];
    "memory" => [
        brk, mmap, munmap, mremap, mprotect, msync, mincore, madvise, mlock, mlock2, munlock,
        mlockall, munlockall, membarrier, memfd_create, pkey_alloc, pkey_free, pkey_mprotect,
        mseal,
    ];
    "processes and threads (clone without namespace flags; clone3 answers ENOSYS)" => [
        clone, fork, vfork, exit, exit_group, wait4, waitid, getpid, getppid, gettid, getpgid,
        setpgid, getpgrp, getsid, setsid, set_tid_address, set_robust_list, get_robust_list,
        rseq, arch_prctl, prctl, sched_yield, sched_getaffinity, sched_setaffinity,
        sched_getparam, sched_setparam, sched_getscheduler, sched_setscheduler,
        sched_get_priority_max, sched_get_priority_min, sched_rr_get_interval, sched_getattr,
        sched_setattr, getpriority, setpriority, getrlimit, setrlimit, prlimit64, getrusage,
        times, personality, capget, getcpu, restart_syscall, pidfd_open, pidfd_send_signal,
        seccomp, landlock_create_ruleset, landlock_add_rule, landlock_restrict_self,
    ];
    "credentials (read; set calls cannot gain anything without capabilities)" => [
        getuid, geteuid, getgid, getegid, getresuid, getresgid, getgroups, setuid, setgid,
        setreuid, setregid, setresuid, setresgid, setfsuid, setfsgid, setgroups, umask,
    ];
    "signals (Landlock scopes signals to the sandbox)" => [
        rt_sigaction, rt_sigprocmask, rt_sigreturn, rt_sigpending, rt_sigtimedwait,
        rt_sigsuspend, rt_sigqueueinfo, rt_tgsigqueueinfo, sigaltstack, kill, tkill, tgkill,
        signalfd, signalfd4, pause,
    ];
    "time and timers" => [
        clock_gettime, clock_getres, clock_nanosleep, gettimeofday, time, nanosleep,
        timer_create, timer_settime, timer_gettime, timer_getoverrun, timer_delete,
        timerfd_create, timerfd_settime, timerfd_gettime, alarm, getitimer, setitimer,
    ];
    "waiting and events" => [
        futex, futex_waitv, poll, ppoll, select, pselect6, epoll_create, epoll_create1,
        epoll_ctl, epoll_wait, epoll_pwait, epoll_pwait2, eventfd, eventfd2, inotify_init,
        inotify_init1, inotify_rm_watch,
    ];
    "sockets (socket: AF_INET/AF_INET6 stream and datagram only; connect and sendto with an address supervised)" => [
        socket, socketpair, connect, accept, accept4, bind, listen, shutdown, getsockname,
        getpeername, setsockopt, getsockopt, sendto, recvfrom, sendmsg, recvmsg, sendmmsg,
        recvmmsg,
    ];
    "system information" => [
        uname, sysinfo, getrandom, sync,
    ];
};

/// Denied always, whatever the grants (listed for review; everything not on the allowlist is
/// denied too). Denied calls answer EPERM and are reported as ALLOWLIST_VIOLATION.
static ALWAYS_DENIED: &[(&str, &str)] = groups! {
    "debugging and inspecting other processes" => [
        ptrace, process_vm_readv, process_vm_writev, pidfd_getfd, kcmp, process_madvise,
        process_mrelease,
    ];
    "mounts and filesystems" => [
        mount, umount2, pivot_root, chroot, fsopen, fsconfig, fsmount, fspick, open_tree,
        move_mount, mount_setattr, quotactl, quotactl_fd, name_to_handle_at,
        open_by_handle_at, mknod, mknodat, swapon, swapoff, fanotify_init, fanotify_mark,
    ];
    "namespaces (clone with CLONE_NEW* flags is denied by argument)" => [
        unshare, setns,
    ];
    "kernel attack surface: eBPF, perf, keyrings, userfaultfd, io_uring" => [
        bpf, perf_event_open, keyctl, add_key, request_key, userfaultfd, io_uring_setup,
        io_uring_enter, io_uring_register,
    ];
    "kernel images and modules" => [
        kexec_load, kexec_file_load, init_module, finit_module, delete_module,
    ];
    "system administration" => [
        reboot, sethostname, setdomainname, settimeofday, clock_settime, clock_adjtime,
        adjtimex, acct, syslog, vhangup, iopl, ioperm, modify_ldt, uselib, ustat, sysfs,
        lookup_dcookie, nfsservctl, migrate_pages, move_pages, mbind, set_mempolicy,
        get_mempolicy, set_mempolicy_home_node,
    ];
};

/// Denied by argument: syscalls on the allowlist whose dangerous forms the filter refuses.
/// (name, what is refused)
static ARG_DENIALS: &[(&str, &str)] = &[
    (
        "socket",
        "every family but AF_INET/AF_INET6 (AF_NETLINK, AF_PACKET, …), SOCK_RAW, and AF_UNIX other than stream sockets under a supervisor (whose connects it decides by path)",
    ),
    (
        "clone",
        "namespace flags (CLONE_NEWNS/NEWUSER/NEWNET/NEWPID/NEWIPC/NEWUTS/NEWCGROUP)",
    ),
    (
        "clone3",
        "always ENOSYS, so the C library falls back to clone",
    ),
    ("ioctl", "TIOCSTI and TIOCLINUX (terminal input injection)"),
    ("personality", "every persona change (querying is allowed)"),
    (
        "memfd_create",
        "without MFD_NOEXEC_SEAL (no executable memfds)",
    ),
];

/// The allowlist: `(syscall, group comment)`.
pub fn syscall_allowlist() -> &'static [(&'static str, &'static str)] {
    ALLOWLIST
}

/// The always-denied list: `(syscall, group comment)`.
pub fn always_denied() -> &'static [(&'static str, &'static str)] {
    ALWAYS_DENIED
}

/// Allowlisted syscalls refused with some arguments: `(syscall, what is refused)`.
pub fn argument_denials() -> &'static [(&'static str, &'static str)] {
    ARG_DENIALS
}

/// Path-taking syscalls the supervisor sees (it reads the path, reports FILESYSTEM_BLOCK and
/// answers). `newfstatat`/`statx` with `AT_EMPTY_PATH` (fstat) bypass the supervisor.
pub const PATH_SYSCALLS: &[&str] = &[
    "open",
    "openat",
    "openat2",
    "creat",
    "stat",
    "lstat",
    "newfstatat",
    "statx",
    "statfs",
    "access",
    "faccessat",
    "faccessat2",
    "readlink",
    "readlinkat",
    "truncate",
    "mkdir",
    "mkdirat",
    "rmdir",
    "unlink",
    "unlinkat",
    "rename",
    "renameat",
    "renameat2",
    "link",
    "linkat",
    "symlink",
    "symlinkat",
    "chmod",
    "fchmodat",
    "fchmodat2",
    "chown",
    "lchown",
    "fchownat",
    "utime",
    "utimes",
    "utimensat",
    "futimesat",
    "chdir",
    "getxattr",
    "lgetxattr",
    "listxattr",
    "llistxattr",
    "inotify_add_watch",
    "execve",
    "execveat",
];

/// Network syscalls the supervisor sees: `connect`, and `sendto` with a destination address.
pub const NET_SUPERVISED: &[&str] = &["connect", "sendto"];

/// Signal syscalls the supervisor sees: a signal aimed outside the sandbox is reported
/// (Landlock's signal scope refuses it either way). `tgkill`/`tkill` are how language runtimes
/// preempt their own threads, but only every few milliseconds at most: a supervisor round
/// trip (tens of microseconds) on each is not a hot path.
pub const SIGNAL_SUPERVISED: &[&str] = &[
    "kill",
    "tkill",
    "tgkill",
    "rt_sigqueueinfo",
    "rt_tgsigqueueinfo",
    "pidfd_send_signal",
];

/// What the filter does with one syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    /// Denied: EPERM, reported through the supervisor when one runs.
    Deny,
    /// Passed to the supervisor (when one runs; otherwise allowed and enforced by Landlock
    /// and the network namespace alone).
    Supervise,
    /// A fixed errno, not reported (`clone3` → ENOSYS).
    Errno(u16),
    /// Allowed when a supervisor runs (it then sees what the call leads to, e.g. the
    /// `connect` of a Unix socket), denied like `Deny` otherwise.
    AllowIfSupervised,
}

/// `(low or high 32 bits of argument `arg` & mask) == value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cond {
    pub arg: u8,
    pub high: bool,
    pub mask: u32,
    pub value: u32,
}

/// One syscall's rules: the first entry whose conditions all hold decides; otherwise
/// `fallback`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyscallRule {
    pub name: &'static str,
    pub when: Vec<(Vec<Cond>, Action)>,
    pub fallback: Action,
}

pub const ENOSYS: u16 = 38;
pub const EPERM: u16 = 1;

const AF_UNIX: u32 = 1;
const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;
const SOCK_STREAM: u32 = 1;
const SOCK_DGRAM: u32 = 2;
const SOCK_TYPE_MASK: u32 = 0xf;
const CLONE_NS_MASK: u32 = 0x7E02_0000;
const TIOCSTI: u32 = 0x5412;
const TIOCLINUX: u32 = 0x541C;
const MFD_NOEXEC_SEAL: u32 = 0x8;
const AT_EMPTY_PATH: u32 = 0x1000;

fn c(arg: u8, mask: u32, value: u32) -> Cond {
    Cond {
        arg,
        high: false,
        mask,
        value,
    }
}

/// The rule table: one entry per allowlisted syscall (plus `clone3`). Syscalls absent from
/// the table are denied.
pub fn rule_table() -> Vec<SyscallRule> {
    let mut rules: Vec<SyscallRule> = Vec::new();
    for (name, _) in ALLOWLIST {
        let simple = |a: Action| SyscallRule {
            name,
            when: Vec::new(),
            fallback: a,
        };
        let rule = match *name {
            "socket" => {
                let mut when = Vec::new();
                for fam in [AF_INET, AF_INET6] {
                    for ty in [SOCK_STREAM, SOCK_DGRAM] {
                        when.push((
                            vec![c(0, u32::MAX, fam), c(1, SOCK_TYPE_MASK, ty)],
                            Action::Allow,
                        ));
                    }
                }
                // Unix stream sockets: creating one is harmless; where it connects is what
                // matters, and the supervisor decides each `connect` by path (glibc opens one
                // on every name lookup to probe nscd). Without a supervisor: denied.
                when.push((
                    vec![c(0, u32::MAX, AF_UNIX), c(1, SOCK_TYPE_MASK, SOCK_STREAM)],
                    Action::AllowIfSupervised,
                ));
                SyscallRule {
                    name,
                    when,
                    fallback: Action::Deny,
                }
            }
            "clone" => SyscallRule {
                name,
                when: vec![(vec![c(0, CLONE_NS_MASK, 0)], Action::Allow)],
                fallback: Action::Deny,
            },
            "ioctl" => SyscallRule {
                name,
                when: vec![
                    (vec![c(1, u32::MAX, TIOCSTI)], Action::Deny),
                    (vec![c(1, u32::MAX, TIOCLINUX)], Action::Deny),
                ],
                fallback: Action::Allow,
            },
            "setpriority" => SyscallRule {
                name,
                when: vec![(vec![c(0, u32::MAX, 0), c(1, u32::MAX, 0)], Action::Allow)],
                fallback: Action::Deny,
            },
            "prlimit64" | "sched_setaffinity" | "sched_setparam" | "sched_setscheduler"
            | "sched_setattr" => SyscallRule {
                name,
                when: vec![(vec![c(0, u32::MAX, 0)], Action::Allow)],
                fallback: Action::Deny,
            },
            "personality" => SyscallRule {
                name,
                when: vec![(vec![c(0, u32::MAX, u32::MAX)], Action::Allow)],
                fallback: Action::Deny,
            },
            "memfd_create" => SyscallRule {
                name,
                when: vec![(vec![c(1, MFD_NOEXEC_SEAL, MFD_NOEXEC_SEAL)], Action::Allow)],
                fallback: Action::Deny,
            },
            "newfstatat" => SyscallRule {
                name,
                when: vec![(vec![c(3, AT_EMPTY_PATH, AT_EMPTY_PATH)], Action::Allow)],
                fallback: Action::Supervise,
            },
            "statx" => SyscallRule {
                name,
                when: vec![(vec![c(2, AT_EMPTY_PATH, AT_EMPTY_PATH)], Action::Allow)],
                fallback: Action::Supervise,
            },
            "sendto" => SyscallRule {
                name,
                when: vec![(
                    vec![
                        c(4, u32::MAX, 0),
                        Cond {
                            arg: 4,
                            high: true,
                            mask: u32::MAX,
                            value: 0,
                        },
                    ],
                    Action::Allow,
                )],
                fallback: Action::Supervise,
            },
            n if PATH_SYSCALLS.contains(&n)
                || NET_SUPERVISED.contains(&n)
                || SIGNAL_SUPERVISED.contains(&n) =>
            {
                simple(Action::Supervise)
            }
            _ => simple(Action::Allow),
        };
        rules.push(rule);
    }
    rules.push(SyscallRule {
        name: "clone3",
        when: Vec::new(),
        fallback: Action::Errno(ENOSYS),
    });
    rules
}

/// Whether this CPU architecture has a syscall number table (see the Linux BPF compiler).
pub fn arch_supported() -> bool {
    cfg!(all(target_os = "linux", target_arch = "x86_64"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn allow_and_deny_lists_are_disjoint_and_unique() {
        let allow: HashSet<&str> = ALLOWLIST.iter().map(|(n, _)| *n).collect();
        assert_eq!(allow.len(), ALLOWLIST.len(), "duplicate in the allowlist");
        for (n, _) in ALWAYS_DENIED {
            assert!(!allow.contains(n), "{n} is both allowed and always denied");
        }
        for n in PATH_SYSCALLS.iter().chain(NET_SUPERVISED) {
            assert!(allow.contains(n), "supervised {n} is not on the allowlist");
        }
    }

    #[test]
    fn the_issue_s_always_denied_calls_are_listed_and_not_allowed() {
        let denied: HashSet<&str> = always_denied().iter().map(|(n, _)| *n).collect();
        for n in [
            "ptrace",
            "mount",
            "umount2",
            "unshare",
            "setns",
            "bpf",
            "perf_event_open",
            "keyctl",
            "add_key",
            "userfaultfd",
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
            "kexec_load",
            "init_module",
            "finit_module",
            "process_vm_readv",
            "process_vm_writev",
            "pidfd_getfd",
            "kcmp",
        ] {
            assert!(
                denied.contains(n),
                "{n} missing from the always-denied list"
            );
            assert!(rule_table().iter().all(|r| r.name != n), "{n} has a rule");
        }
    }

    #[test]
    fn rules_deny_dangerous_arguments() {
        let t = rule_table();
        let get = |n: &str| t.iter().find(|r| r.name == n).unwrap().clone();
        let clone3 = get("clone3");
        assert_eq!(clone3.fallback, Action::Errno(ENOSYS));
        let sock = get("socket");
        assert_eq!(sock.fallback, Action::Deny);
        assert_eq!(sock.when.len(), 5);
        assert!(sock.when[..4].iter().all(|(cs, a)| {
            *a == Action::Allow
                && cs
                    .iter()
                    .any(|c| c.arg == 0 && (c.value == AF_INET || c.value == AF_INET6))
        }));
        // Unix: stream sockets only, and only when a supervisor decides their connects.
        assert_eq!(
            sock.when[4],
            (
                vec![c(0, u32::MAX, AF_UNIX), c(1, SOCK_TYPE_MASK, SOCK_STREAM)],
                Action::AllowIfSupervised
            )
        );
        let clone = get("clone");
        assert_eq!(clone.when[0].0[0].mask, CLONE_NS_MASK);
        assert_eq!(clone.fallback, Action::Deny);
        let ioctl = get("ioctl");
        assert!(
            ioctl
                .when
                .iter()
                .any(|(cs, a)| *a == Action::Deny && cs[0].value == TIOCSTI)
        );
        assert_eq!(get("openat").fallback, Action::Supervise);
        assert_eq!(get("execve").fallback, Action::Supervise);
        assert_eq!(get("getpid").fallback, Action::Allow);
        assert_eq!(get("getpid").when, vec![]);
        // fstat via newfstatat(AT_EMPTY_PATH) stays off the supervisor.
        assert_eq!(get("newfstatat").when[0].1, Action::Allow);
        assert_eq!(get("memfd_create").fallback, Action::Deny);
        for n in [
            "setpriority",
            "prlimit64",
            "sched_setaffinity",
            "sched_setattr",
        ] {
            assert_eq!(get(n).fallback, Action::Deny, "{n}");
            assert!(get(n).when[0].0.iter().all(|c| c.value == 0), "{n}");
        }
    }

    #[test]
    fn every_group_has_a_comment_and_argument_denials_name_allowlisted_calls() {
        for (n, c) in ALLOWLIST.iter().chain(ALWAYS_DENIED) {
            assert!(!c.is_empty(), "{n}");
        }
        let allow: HashSet<&str> = ALLOWLIST.iter().map(|(n, _)| *n).collect();
        for (n, _) in argument_denials() {
            assert!(allow.contains(n) || *n == "clone3", "{n}");
        }
    }
}
