//! What the child does between fork and exec. Everything is prepared by the parent; here only
//! raw syscalls on prepared data run (no allocation: the parent may be multi-threaded).
//! On failure the child reports which step failed over the control socket, then std reports
//! the errno from `spawn`.

use super::landlock;
use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;

/// Steps, reported by number when one fails.
pub const STEPS: &[&str] = &[
    "setsid",
    "mark inherited descriptors close-on-exec",
    "unshare user, mount and network namespaces",
    "write uid/gid maps",
    "mount plan",
    "bring up loopback in the network namespace",
    "create listeners in the network namespace",
    "set no_new_privs",
    "drop capabilities",
    "Landlock rules for the private mounts",
    "Landlock restrict_self",
    "install the seccomp filter",
    "hand descriptors to the supervisor",
    "chdir to the workspace",
];

#[derive(Debug)]
pub enum COp {
    MakePrivate,
    Clone { id: usize, path: CString, attr: u64 },
    Tmpfs { target: CString, opts: CString },
    Mkdir(CString),
    Attach { id: usize, target: CString },
    WriteFile { path: CString, contents: Vec<u8> },
    BindFile { src: CString, target: CString },
    Unlink(CString),
    Readonly(CString),
}

#[derive(Debug)]
pub struct ChildPlan {
    pub namespaces: bool,
    /// uid_map and gid_map contents.
    pub maps: Option<(Vec<u8>, Vec<u8>)>,
    pub ops: Vec<COp>,
    pub clones: Vec<RawFd>,
    pub listeners: Vec<libc::sockaddr_in>,
    /// Alias interfaces (`lo:N`) and their /32 addresses, for IPv4 grants outside 127/8.
    pub lo_aliases: Vec<([libc::c_char; libc::IFNAMSIZ], libc::sockaddr_in)>,
    pub listener_fds: Vec<RawFd>,
    pub drop_caps: bool,
    pub cap_last: u32,
    pub ruleset: Option<RawFd>,
    pub child_rules: Vec<(CString, u64)>,
    pub filter: Vec<libc::sock_filter>,
    pub supervised: bool,
    pub control: RawFd,
    pub cwd: CString,
}

/// Message kinds on the control socket.
pub const MSG_FDS: u32 = 1;
pub const MSG_ERR: u32 = 2;
pub const MAX_FDS: usize = 64;

fn fail(control: RawFd, step: usize) -> io::Error {
    let e = io::Error::last_os_error();
    let errno = e.raw_os_error().unwrap_or(0);
    let msg: [u32; 3] = [MSG_ERR, step as u32, errno as u32];
    // SAFETY: msg is a plain array; send on a socket descriptor.
    unsafe {
        libc::send(
            control,
            msg.as_ptr().cast(),
            std::mem::size_of_val(&msg),
            libc::MSG_NOSIGNAL,
        )
    };
    e
}

fn check(r: libc::c_long, control: RawFd, step: usize) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(fail(control, step))
    } else {
        Ok(r)
    }
}

fn write_file(path: &std::ffi::CStr, data: &[u8]) -> bool {
    // SAFETY: NUL-terminated path, valid buffer.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return false;
        }
        let ok = libc::write(fd, data.as_ptr().cast(), data.len()) == data.len() as isize;
        libc::close(fd);
        ok
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Clears the effective, permitted and inheritable capability sets (always permitted).
pub fn capset_none() -> libc::c_long {
    let mut hdr = CapHeader {
        version: 0x2008_0522,
        pid: 0,
    };
    let data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: version-3 header and two data structs, as capset(2) expects.
    unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) }
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

unsafe fn setattr(
    dfd: RawFd,
    path: *const libc::c_char,
    flags: libc::c_uint,
    set: u64,
) -> libc::c_long {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: attr valid for the call; caller passes a valid path pointer.
    unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dfd,
            path,
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    }
}

unsafe fn clone_tree(path: *const libc::c_char, recursive: bool) -> libc::c_long {
    let flags = OPEN_TREE_CLONE
        | libc::O_CLOEXEC as libc::c_uint
        | if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: path is a valid C string.
    unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path, flags) }
}

unsafe fn attach(fd: RawFd, target: *const libc::c_char) -> libc::c_long {
    // SAFETY: empty path with F_EMPTY_PATH; target is a valid C string.
    unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd,
            c"".as_ptr(),
            libc::AT_FDCWD,
            target,
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    }
}

impl ChildPlan {
    /// Runs in the forked child. Async-signal-safe apart from `io::Error` construction, which
    /// does not allocate for OS errors.
    pub fn run(&mut self) -> io::Result<()> {
        let c = self.control;
        // SAFETY: every call below is a raw syscall on data prepared by the parent.
        unsafe {
            check(libc::setsid() as libc::c_long, c, 0)?;
            check(
                libc::syscall(
                    libc::SYS_close_range,
                    3u32,
                    u32::MAX,
                    libc::CLOSE_RANGE_CLOEXEC,
                ),
                c,
                1,
            )?;
            if self.namespaces {
                check(
                    libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWNET)
                        as libc::c_long,
                    c,
                    2,
                )?;
                if let Some((uid_map, gid_map)) = &self.maps {
                    // A non-dumpable IronClaw (harden_supervisor) passes that on to this
                    // child, whose /proc/self files then belong to root: a normal user could
                    // not write its own maps. Dumpable only for these three writes.
                    let was = libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0);
                    if was == 0 {
                        libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0);
                    }
                    let ok = write_file(c"/proc/self/setgroups", b"deny")
                        && write_file(c"/proc/self/uid_map", uid_map)
                        && write_file(c"/proc/self/gid_map", gid_map);
                    if was == 0 {
                        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
                    }
                    if !ok {
                        return Err(fail(c, 3));
                    }
                }
                self.run_mounts()?;
                self.run_net()?;
            }
            check(
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) as libc::c_long,
                c,
                7,
            )?;
            if self.drop_caps {
                // No root magic at exec, no ambient capabilities, locked.
                check(
                    libc::prctl(libc::PR_SET_SECUREBITS, 0xEF, 0, 0, 0) as libc::c_long,
                    c,
                    8,
                )?;
                for cap in 0..=self.cap_last {
                    check(
                        libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) as libc::c_long,
                        c,
                        8,
                    )?;
                }
                check(
                    libc::prctl(
                        libc::PR_CAP_AMBIENT,
                        libc::PR_CAP_AMBIENT_CLEAR_ALL,
                        0,
                        0,
                        0,
                    ) as libc::c_long,
                    c,
                    8,
                )?;
                check(capset_none(), c, 8)?;
            }
            if let Some(rs) = self.ruleset {
                for (p, access) in &self.child_rules {
                    let fd = libc::open(p.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
                    if fd < 0 {
                        return Err(fail(c, 9));
                    }
                    if landlock::add_path_raw(rs, fd, *access).is_err() {
                        return Err(fail(c, 9));
                    }
                    libc::close(fd);
                }
                if landlock::restrict_self(rs).is_err() {
                    return Err(fail(c, 10));
                }
            }
            let mut notif: RawFd = -1;
            if !self.filter.is_empty() {
                let prog = libc::sock_fprog {
                    len: self.filter.len() as u16,
                    filter: self.filter.as_mut_ptr(),
                };
                let flags: libc::c_ulong = if self.supervised {
                    libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
                } else {
                    0
                };
                let r = check(
                    libc::syscall(
                        libc::SYS_seccomp,
                        libc::SECCOMP_SET_MODE_FILTER,
                        flags,
                        &prog,
                    ),
                    c,
                    11,
                )?;
                if self.supervised {
                    notif = r as RawFd;
                }
            }
            self.send_fds(notif)?;
            if notif >= 0 {
                libc::close(notif);
            }
            for fd in &self.listener_fds {
                if *fd >= 0 {
                    libc::close(*fd);
                }
            }
            check(libc::chdir(self.cwd.as_ptr()) as libc::c_long, c, 13)?;
        }
        Ok(())
    }

    unsafe fn run_mounts(&mut self) -> io::Result<()> {
        let c = self.control;
        for op in &self.ops {
            // SAFETY: raw mount syscalls on prepared C strings.
            unsafe {
                match op {
                    COp::MakePrivate => {
                        check(
                            libc::mount(
                                std::ptr::null(),
                                c"/".as_ptr(),
                                std::ptr::null(),
                                libc::MS_REC | libc::MS_PRIVATE,
                                std::ptr::null(),
                            ) as libc::c_long,
                            c,
                            4,
                        )?;
                    }
                    COp::Clone { id, path, attr } => {
                        let fd = check(clone_tree(path.as_ptr(), true), c, 4)? as RawFd;
                        check(
                            setattr(
                                fd,
                                c"".as_ptr(),
                                libc::AT_EMPTY_PATH as u32 | AT_RECURSIVE,
                                *attr,
                            ),
                            c,
                            4,
                        )?;
                        if let Some(slot) = self.clones.get_mut(*id) {
                            *slot = fd;
                        }
                    }
                    COp::Tmpfs { target, opts } => {
                        check(
                            libc::mount(
                                c"tmpfs".as_ptr(),
                                target.as_ptr(),
                                c"tmpfs".as_ptr(),
                                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                                opts.as_ptr().cast(),
                            ) as libc::c_long,
                            c,
                            4,
                        )?;
                    }
                    COp::Mkdir(p) => {
                        if libc::mkdir(p.as_ptr(), 0o755) < 0
                            && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST)
                        {
                            return Err(fail(c, 4));
                        }
                    }
                    COp::Attach { id, target } => {
                        let fd = self.clones.get(*id).copied().unwrap_or(-1);
                        check(attach(fd, target.as_ptr()), c, 4)?;
                        libc::close(fd);
                    }
                    COp::WriteFile { path, contents } => {
                        let fd = libc::open(
                            path.as_ptr(),
                            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                            0o644,
                        );
                        if fd < 0 || libc::write(fd, contents.as_ptr().cast(), contents.len()) < 0 {
                            return Err(fail(c, 4));
                        }
                        libc::close(fd);
                    }
                    COp::BindFile { src, target } => {
                        let fd = check(clone_tree(src.as_ptr(), false), c, 4)? as RawFd;
                        check(
                            setattr(
                                fd,
                                c"".as_ptr(),
                                libc::AT_EMPTY_PATH as u32,
                                MOUNT_ATTR_RDONLY
                                    | MOUNT_ATTR_NOEXEC
                                    | MOUNT_ATTR_NODEV
                                    | MOUNT_ATTR_NOSUID,
                            ),
                            c,
                            4,
                        )?;
                        check(attach(fd, target.as_ptr()), c, 4)?;
                        libc::close(fd);
                    }
                    COp::Unlink(p) => {
                        check(libc::unlink(p.as_ptr()) as libc::c_long, c, 4)?;
                    }
                    COp::Readonly(p) => {
                        check(
                            setattr(libc::AT_FDCWD, p.as_ptr(), 0, MOUNT_ATTR_RDONLY),
                            c,
                            4,
                        )?;
                    }
                }
            }
        }
        Ok(())
    }

    unsafe fn run_net(&mut self) -> io::Result<()> {
        let c = self.control;
        // SAFETY: raw socket syscalls on prepared data.
        unsafe {
            let s = check(
                libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
                    as libc::c_long,
                c,
                5,
            )? as RawFd;
            let mut ifr: libc::ifreq = std::mem::zeroed();
            ifr.ifr_name[0] = b'l' as libc::c_char;
            ifr.ifr_name[1] = b'o' as libc::c_char;
            check(
                libc::ioctl(s, libc::SIOCGIFFLAGS, &mut ifr) as libc::c_long,
                c,
                5,
            )?;
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            check(
                libc::ioctl(s, libc::SIOCSIFFLAGS, &ifr) as libc::c_long,
                c,
                5,
            )?;
            for (name, addr) in &self.lo_aliases {
                let mut a: libc::ifreq = std::mem::zeroed();
                a.ifr_name = *name;
                a.ifr_ifru.ifru_addr = *(addr as *const libc::sockaddr_in).cast::<libc::sockaddr>();
                check(libc::ioctl(s, libc::SIOCSIFADDR, &a) as libc::c_long, c, 5)?;
                let mut m: libc::ifreq = std::mem::zeroed();
                m.ifr_name = *name;
                let mut mask: libc::sockaddr_in = std::mem::zeroed();
                mask.sin_family = libc::AF_INET as libc::sa_family_t;
                mask.sin_addr.s_addr = u32::MAX;
                m.ifr_ifru.ifru_netmask =
                    *(&mask as *const libc::sockaddr_in).cast::<libc::sockaddr>();
                check(
                    libc::ioctl(s, libc::SIOCSIFNETMASK, &m) as libc::c_long,
                    c,
                    5,
                )?;
            }
            libc::close(s);
            for (i, addr) in self.listeners.iter().enumerate() {
                let fd = check(
                    libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0)
                        as libc::c_long,
                    c,
                    6,
                )? as RawFd;
                let one: libc::c_int = 1;
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_REUSEADDR,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as u32,
                );
                check(
                    libc::bind(
                        fd,
                        (addr as *const libc::sockaddr_in).cast(),
                        std::mem::size_of::<libc::sockaddr_in>() as u32,
                    ) as libc::c_long,
                    c,
                    6,
                )?;
                check(libc::listen(fd, 128) as libc::c_long, c, 6)?;
                if let Some(slot) = self.listener_fds.get_mut(i) {
                    *slot = fd;
                }
            }
        }
        Ok(())
    }

    unsafe fn send_fds(&self, notif: RawFd) -> io::Result<()> {
        let c = self.control;
        let mut fds = [0 as RawFd; MAX_FDS];
        let mut n = 0usize;
        if notif >= 0 {
            fds[n] = notif;
            n += 1;
        }
        for fd in &self.listener_fds {
            if n < MAX_FDS && *fd >= 0 {
                fds[n] = *fd;
                n += 1;
            }
        }
        let header: [u32; 3] = [MSG_FDS, u32::from(notif >= 0), n as u32];
        let mut iov = libc::iovec {
            iov_base: header.as_ptr() as *mut libc::c_void,
            iov_len: std::mem::size_of_val(&header),
        };
        // Control buffer for up to MAX_FDS descriptors, aligned for cmsghdr.
        #[repr(C, align(8))]
        struct Buf([u8; 512]);
        let mut buf = Buf([0; 512]);
        // SAFETY: msghdr/cmsghdr manipulation on stack buffers of sufficient size.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            if n > 0 {
                let len = libc::CMSG_SPACE((n * std::mem::size_of::<RawFd>()) as u32) as usize;
                msg.msg_control = buf.0.as_mut_ptr().cast();
                msg.msg_controllen = len;
                let cm = libc::CMSG_FIRSTHDR(&msg);
                (*cm).cmsg_level = libc::SOL_SOCKET;
                (*cm).cmsg_type = libc::SCM_RIGHTS;
                (*cm).cmsg_len = libc::CMSG_LEN((n * std::mem::size_of::<RawFd>()) as u32) as usize;
                std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cm).cast::<RawFd>(), n);
            }
            check(
                libc::sendmsg(c, &msg, libc::MSG_NOSIGNAL) as libc::c_long,
                c,
                12,
            )?;
        }
        Ok(())
    }
}
