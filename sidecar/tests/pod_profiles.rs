#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Writing seccomp profiles into a node's seccomp root.

use std::os::unix::fs::PermissionsExt;

use ironclaw_sidecar::pod::profiles::{ProfileError, sync};

const P: &str = r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[]}"#;

fn e(k: &str, c: &str) -> (String, String, String) {
    ("ns/ironclaw-seccomp-a".into(), k.into(), c.into())
}

#[test]
fn profiles_are_written_flat_0644_and_identical_ones_left_alone() {
    let root = tempfile::tempdir().unwrap();
    let r = sync(root.path(), &[e("ironclaw-ns-a-0123.json", P)]).unwrap();
    assert_eq!(r.written, ["ironclaw-ns-a-0123.json"]);
    let f = root.path().join("ironclaw-ns-a-0123.json");
    assert_eq!(std::fs::read_to_string(&f).unwrap(), P);
    assert_eq!(
        std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
        0o644
    );
    let r = sync(root.path(), &[e("ironclaw-ns-a-0123.json", P)]).unwrap();
    assert_eq!(r.unchanged, ["ironclaw-ns-a-0123.json"]);
    assert!(r.written.is_empty());
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1);
}

#[test]
fn bad_names_or_contents_write_nothing_and_name_the_key() {
    let root = tempfile::tempdir().unwrap();
    for (k, c) in [
        ("../escape.json", P),
        ("sub/dir.json", P),
        (".hidden.json", P),
        ("profile.txt", P),
        ("ok.json", "not json"),
        ("ok.json", r#"{"syscalls":[]}"#),
    ] {
        let err = sync(root.path(), &[e("good.json", P), e(k, c)]).unwrap_err();
        assert!(
            matches!(
                err,
                ProfileError::BadName { .. } | ProfileError::BadProfile { .. }
            ),
            "{err}"
        );
        assert!(err.to_string().contains(k), "{err}");
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0, "{k}");
    }
}
