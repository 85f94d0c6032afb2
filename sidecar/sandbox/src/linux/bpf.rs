//! Compiles the policy rule table into a seccomp-bpf program (x86_64): an architecture check,
//! then a binary search over syscall numbers (so an allowed call costs O(log n) and only reads
//! the number, which lets the kernel cache its verdict), then per-syscall argument checks.

use super::sysnr;
use crate::policy::syscalls::{Action, Cond, EPERM, SyscallRule};

pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub const RET_ALLOW: u32 = 0x7fff_0000;
pub const RET_USER_NOTIF: u32 = 0x7fc0_0000;
pub const RET_ERRNO: u32 = 0x0005_0000;
pub const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const JA: u16 = 0x05;
const RET_K: u16 = 0x06;
const AND_K: u16 = 0x54;

/// How denied and supervised syscalls are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answers {
    /// A supervisor reads the notification fd: denials and supervised calls go to it.
    pub supervised: bool,
}

impl Answers {
    fn ret(self, a: Action) -> u32 {
        match a {
            Action::Allow => RET_ALLOW,
            Action::Deny if self.supervised => RET_USER_NOTIF,
            Action::Deny => RET_ERRNO | u32::from(EPERM),
            Action::Supervise if self.supervised => RET_USER_NOTIF,
            Action::Supervise => RET_ALLOW,
            Action::AllowIfSupervised if self.supervised => RET_ALLOW,
            Action::AllowIfSupervised => RET_ERRNO | u32::from(EPERM),
            Action::Errno(e) => RET_ERRNO | u32::from(e),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Ins {
    Raw(u16, u32),
    /// if A == k goto label
    Jeq(u32, usize),
    /// if A != k goto label
    Jne(u32, usize),
    /// if A >= k goto label
    Jge(u32, usize),
    Ja(usize),
    Label(usize),
}

struct Asm {
    ins: Vec<Ins>,
    labels: usize,
}

impl Asm {
    fn label(&mut self) -> usize {
        self.labels += 1;
        self.labels - 1
    }
    fn emit(&mut self, i: Ins) {
        self.ins.push(i);
    }
    fn assemble(&self) -> Result<Vec<libc::sock_filter>, String> {
        // First pass: positions.
        let mut pos = vec![usize::MAX; self.labels];
        let mut n = 0usize;
        for i in &self.ins {
            match i {
                Ins::Label(l) => pos[*l] = n,
                Ins::Raw(..) | Ins::Ja(_) => n += 1,
                Ins::Jeq(..) | Ins::Jne(..) | Ins::Jge(..) => n += 2,
            }
        }
        let mut out = Vec::with_capacity(n);
        let f = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
        for i in &self.ins {
            let ja = |from: usize, l: usize| -> Result<u32, String> {
                let to = pos[l];
                if to == usize::MAX || to < from + 1 {
                    return Err(format!("bad jump target {l}"));
                }
                u32::try_from(to - from - 1).map_err(|e| e.to_string())
            };
            match *i {
                Ins::Label(_) => {}
                Ins::Raw(c, k) => out.push(f(c, 0, 0, k)),
                Ins::Ja(l) => {
                    let off = ja(out.len(), l)?;
                    out.push(f(JA, 0, 0, off));
                }
                Ins::Jeq(k, l) | Ins::Jne(k, l) | Ins::Jge(k, l) => {
                    let (code, jt, jf) = match *i {
                        Ins::Jeq(..) => (JEQ_K, 0, 1),
                        Ins::Jne(..) => (JEQ_K, 1, 0),
                        _ => (JGE_K, 0, 1),
                    };
                    out.push(f(code, jt, jf, k));
                    let off = ja(out.len(), l)?;
                    out.push(f(JA, 0, 0, off));
                }
            }
        }
        if out.len() > 4096 {
            return Err(format!("filter has {} instructions (max 4096)", out.len()));
        }
        Ok(out)
    }
}

fn arg_offset(c: &Cond) -> u32 {
    16 + 8 * u32::from(c.arg) + if c.high { 4 } else { 0 }
}

/// Compiles `rules` (syscalls absent from it are denied). Names without a number on this
/// architecture are an error: the filter must be exactly the reviewed policy.
pub fn compile(rules: &[SyscallRule], answers: Answers) -> Result<Vec<libc::sock_filter>, String> {
    if !cfg!(target_arch = "x86_64") {
        return Err(format!("no syscall table for {}", std::env::consts::ARCH));
    }
    let mut a = Asm {
        ins: Vec::new(),
        labels: 0,
    };
    let deny = a.label();
    let kill = a.label();
    let mut entries: Vec<(u32, usize, &SyscallRule)> = Vec::new();
    for r in rules {
        let nr = sysnr::nr(r.name).ok_or_else(|| format!("unknown syscall {}", r.name))?;
        let nr = u32::try_from(nr).map_err(|e| e.to_string())?;
        let l = a.label();
        entries.push((nr, l, r));
    }
    entries.sort_by_key(|e| e.0);
    a.emit(Ins::Raw(LD_W_ABS, 4));
    a.emit(Ins::Jne(AUDIT_ARCH_X86_64, kill));
    a.emit(Ins::Raw(LD_W_ABS, 0));
    a.emit(Ins::Jge(X32_SYSCALL_BIT, deny));
    fn tree(a: &mut Asm, e: &[(u32, usize, &SyscallRule)], deny: usize) {
        if e.len() <= 3 {
            for (nr, l, _) in e {
                a.emit(Ins::Jeq(*nr, *l));
            }
            a.emit(Ins::Ja(deny));
            return;
        }
        let mid = e.len() / 2;
        let right = a.label();
        a.emit(Ins::Jge(e[mid].0, right));
        tree(a, &e[..mid], deny);
        a.emit(Ins::Label(right));
        tree(a, &e[mid..], deny);
    }
    tree(&mut a, &entries, deny);
    for (_, l, r) in &entries {
        a.emit(Ins::Label(*l));
        for (conds, act) in &r.when {
            let next = a.label();
            for c in conds {
                a.emit(Ins::Raw(LD_W_ABS, arg_offset(c)));
                if c.mask != u32::MAX {
                    a.emit(Ins::Raw(AND_K, c.mask));
                }
                a.emit(Ins::Jne(c.value, next));
            }
            a.emit(Ins::Raw(RET_K, answers.ret(*act)));
            a.emit(Ins::Label(next));
        }
        a.emit(Ins::Raw(RET_K, answers.ret(r.fallback)));
    }
    a.emit(Ins::Label(deny));
    a.emit(Ins::Raw(RET_K, answers.ret(Action::Deny)));
    a.emit(Ins::Label(kill));
    a.emit(Ins::Raw(RET_K, RET_KILL_PROCESS));
    a.assemble()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::syscalls::rule_table;

    /// A classic-BPF interpreter for the subset the compiler emits.
    fn run(prog: &[libc::sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, v) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&v.to_le_bytes());
        }
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = prog[pc];
            pc += 1;
            match i.code {
                LD_W_ABS => {
                    let o = i.k as usize;
                    acc = u32::from_le_bytes(data[o..o + 4].try_into().unwrap());
                }
                AND_K => acc &= i.k,
                JA => pc += i.k as usize,
                JEQ_K => pc += usize::from(if acc == i.k { i.jt } else { i.jf }),
                JGE_K => pc += usize::from(if acc >= i.k { i.jt } else { i.jf }),
                RET_K => return i.k,
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    fn nr(n: &str) -> u32 {
        sysnr::nr(n).unwrap() as u32
    }

    #[test]
    fn compiled_filter_matches_the_rule_table() {
        let sup = compile(&rule_table(), Answers { supervised: true }).unwrap();
        let plain = compile(&rule_table(), Answers { supervised: false }).unwrap();
        let x = AUDIT_ARCH_X86_64;
        let z = [0u64; 6];
        for (name, _) in crate::policy::syscall_allowlist() {
            let r = run(&sup, x, nr(name), [2, 1, 0, 0x1000, 0, 0]);
            assert!(r == RET_ALLOW || r == RET_USER_NOTIF, "{name}: {r:#x}");
        }
        assert_eq!(run(&sup, x, nr("getpid"), z), RET_ALLOW);
        assert_eq!(run(&sup, x, nr("openat"), z), RET_USER_NOTIF);
        assert_eq!(run(&plain, x, nr("openat"), z), RET_ALLOW);
        for (name, _) in crate::policy::always_denied() {
            if let Some(n) = sysnr::nr(name) {
                assert_eq!(run(&sup, x, n as u32, z), RET_USER_NOTIF, "{name}");
                assert_eq!(run(&plain, x, n as u32, z), RET_ERRNO | 1, "{name}");
            }
        }
        assert_eq!(run(&plain, x, nr("ptrace"), z), RET_ERRNO | 1);
        assert_eq!(run(&sup, x, nr("clone3"), z), RET_ERRNO | 38);
        // socket: inet stream/dgram only.
        assert_eq!(
            run(&plain, x, nr("socket"), [2, 1 | 0x80000, 0, 0, 0, 0]),
            RET_ALLOW
        );
        assert_eq!(run(&plain, x, nr("socket"), [10, 2, 0, 0, 0, 0]), RET_ALLOW);
        for (d, t) in [(1u64, 1u64), (16, 3), (17, 3), (2, 3), (10, 3), (2, 10)] {
            assert_eq!(
                run(&plain, x, nr("socket"), [d, t, 0, 0, 0, 0]),
                RET_ERRNO | 1,
                "{d}/{t}"
            );
        }
        // Unix stream sockets: allowed only under a supervisor (which decides each connect);
        // Unix datagram sockets go to the supervisor as a denial.
        assert_eq!(
            run(&sup, x, nr("socket"), [1, 1 | 0x80000, 0, 0, 0, 0]),
            RET_ALLOW
        );
        assert_eq!(
            run(&sup, x, nr("socket"), [1, 2, 0, 0, 0, 0]),
            RET_USER_NOTIF
        );
        // clone with namespace flags, ioctl TIOCSTI, personality changes, exec memfds.
        assert_eq!(
            run(&plain, x, nr("clone"), [0x11, 0, 0, 0, 0, 0]),
            RET_ALLOW
        );
        assert_eq!(
            run(&plain, x, nr("clone"), [0x1000_0011, 0, 0, 0, 0, 0]),
            RET_ERRNO | 1
        );
        assert_eq!(
            run(&plain, x, nr("ioctl"), [0, 0x5412, 0, 0, 0, 0]),
            RET_ERRNO | 1
        );
        assert_eq!(
            run(&plain, x, nr("ioctl"), [0, 0x5401, 0, 0, 0, 0]),
            RET_ALLOW
        );
        assert_eq!(
            run(&plain, x, nr("personality"), [0xffff_ffff, 0, 0, 0, 0, 0]),
            RET_ALLOW
        );
        assert_eq!(
            run(&plain, x, nr("personality"), [0x0040_0000, 0, 0, 0, 0, 0]),
            RET_ERRNO | 1
        );
        assert_eq!(
            run(&plain, x, nr("memfd_create"), [0, 1, 0, 0, 0, 0]),
            RET_ERRNO | 1
        );
        assert_eq!(
            run(&plain, x, nr("memfd_create"), [0, 9, 0, 0, 0, 0]),
            RET_ALLOW
        );
        // Other processes' priority, limits and scheduling are not the skill's.
        assert_eq!(
            run(&plain, x, nr("prlimit64"), [0, 7, 0, 0, 0, 0]),
            RET_ALLOW
        );
        assert_eq!(
            run(&plain, x, nr("prlimit64"), [1234, 7, 0, 0, 0, 0]),
            RET_ERRNO | 1
        );
        assert_eq!(
            run(&plain, x, nr("setpriority"), [0, 0, 5, 0, 0, 0]),
            RET_ALLOW
        );
        assert_eq!(
            run(&plain, x, nr("setpriority"), [2, 0, 5, 0, 0, 0]),
            RET_ERRNO | 1
        );
        assert_eq!(
            run(&plain, x, nr("setpriority"), [0, 1234, 5, 0, 0, 0]),
            RET_ERRNO | 1
        );
        assert_eq!(
            run(&plain, x, nr("sched_setaffinity"), [1234, 8, 0, 0, 0, 0]),
            RET_ERRNO | 1
        );
        // fstat stays off the supervisor; sendto without an address too.
        assert_eq!(
            run(&sup, x, nr("newfstatat"), [3, 0, 0, 0x1000, 0, 0]),
            RET_ALLOW
        );
        assert_eq!(
            run(&sup, x, nr("newfstatat"), [3, 0, 0, 0, 0, 0]),
            RET_USER_NOTIF
        );
        assert_eq!(run(&sup, x, nr("sendto"), z), RET_ALLOW);
        assert_eq!(
            run(&sup, x, nr("sendto"), [3, 0, 0, 0, 0x7fff_0000_0000, 0]),
            RET_USER_NOTIF
        );
        // Unknown numbers, x32 and foreign architectures.
        assert_eq!(run(&plain, x, 999, z), RET_ERRNO | 1);
        assert_eq!(run(&plain, x, 0x4000_0000 | nr("getpid"), z), RET_ERRNO | 1);
        assert_eq!(run(&plain, 0x4000_0003, nr("getpid"), z), RET_KILL_PROCESS);
    }

    #[test]
    fn allowed_calls_take_a_logarithmic_path() {
        let prog = compile(&rule_table(), Answers { supervised: true }).unwrap();
        // Count executed instructions for getpid.
        let mut steps = 0;
        let mut pc = 0usize;
        let mut acc = 0u32;
        let n = nr("getpid");
        loop {
            let i = prog[pc];
            pc += 1;
            steps += 1;
            match i.code {
                LD_W_ABS => acc = if i.k == 4 { AUDIT_ARCH_X86_64 } else { n },
                JA => pc += i.k as usize,
                JEQ_K => pc += usize::from(if acc == i.k { i.jt } else { i.jf }),
                JGE_K => pc += usize::from(if acc >= i.k { i.jt } else { i.jf }),
                RET_K => break,
                _ => unreachable!(),
            }
        }
        assert!(
            steps < 40,
            "{steps} instructions for getpid in a {}-instruction filter",
            prog.len()
        );
        assert!(prog.len() > 300);
    }

    #[test]
    fn every_policy_name_has_a_number() {
        for (n, _) in crate::policy::syscall_allowlist() {
            assert!(sysnr::nr(n).is_some(), "{n}");
        }
        assert_eq!(sysnr::name(sysnr::nr("openat").unwrap()), Some("openat"));
    }
}
