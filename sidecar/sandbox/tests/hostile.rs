#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The hostile-skill suite: every escape from the issue, run by a real program under the real
//! kernel sandbox (strict mode), must fail with the asserted errno AND be reported.

mod common;
use common::*;
use ironclaw_sandbox::{Mode, Violation};

#[test]
fn smoke_whoami() {
    let h = home("smoke");
    let (out, code, v) = run(&h.spec("smoke", Mode::Strict, grants(&[]), &["whoami"]));
    assert_eq!(code, 0, "{out} {v:?}");
    assert!(out.starts_with("ok "), "{out}");
    let _ = Violation::Syscall { name: String::new() };
}
