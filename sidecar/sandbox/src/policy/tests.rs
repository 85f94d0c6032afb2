use super::*;
use ironclaw_crds::Grants;

fn grants(json: &str) -> Grants {
    // Parse through the textual forms, as the CLI and CRDs do.
    let v: Vec<&str> = json.split_whitespace().collect();
    let mut g = Grants::default();
    for item in v {
        if let Some(n) = item.strip_prefix("net=") {
            g.network.push(n.parse().unwrap());
        } else if let Some(e) = item.strip_prefix("env=") {
            g.env.push(e.parse().unwrap());
        } else if let Some(f) = item.strip_prefix("fs=") {
            g.filesystem.push(f.parse().unwrap());
        } else if item == "shell" {
            g.shell = true;
        } else {
            panic!("bad test grant {item}");
        }
    }
    g
}

#[test]
fn env_plan_starts_empty_and_adds_only_granted_and_ironclaw_variables() {
    let g = grants("env=IMAP_* env=GITHUB_TOKEN");
    let env = env_plan(
        &[
            ("IMAP_USER".into(), "me".into()),
            ("GITHUB_TOKEN".into(), "t".into()),
            ("IMAP_USER".into(), "dup".into()),
        ],
        &g,
        Path::new("/w"),
        Some(Path::new("/tmp")),
        Some(PROXY_LISTEN),
    )
    .unwrap();
    let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "IMAP_USER",
            "GITHUB_TOKEN",
            "PATH",
            "HOME",
            "LANG",
            "TMPDIR",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "http_proxy",
            "https_proxy"
        ]
    );
    assert!(env.contains(&("HOME".into(), "/w".into())));
    assert!(env.contains(&("HTTPS_PROXY".into(), "http://127.0.0.1:3128".into())));
    assert!(env.contains(&("IMAP_USER".into(), "me".into())));
    // A secret-looking name under a pattern is refused, naming the field and the variable.
    let e = env_plan(
        &[("IMAP_API_KEY".into(), "x".into())],
        &g,
        Path::new("/w"),
        None,
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("`env`") && e.contains("IMAP_API_KEY"), "{e}");
    // IronClaw's own variables win over a granted one of the same name.
    let g = grants("env=PATH");
    let env = env_plan(
        &[("PATH".into(), "/evil".into())],
        &g,
        Path::new("/w"),
        None,
        None,
    )
    .unwrap();
    assert_eq!(env.iter().filter(|(k, _)| k == "PATH").count(), 1);
    assert!(env.contains(&("PATH".into(), SKILL_PATH.into())));
    assert!(!env.iter().any(|(k, _)| k.contains("PROXY")));
}

#[test]
fn fs_rules_translate_grants_and_never_give_execute_to_writable_places() {
    let g = grants("fs=~/.ironclaw/workspace/shared:ro fs=notes:rw fs=/srv/data:rw");
    let rules = fs_rules(
        Path::new("/opt/skills/s"),
        Path::new("/h/.ironclaw/workspace/skills/s"),
        Path::new("/h"),
        Path::new("/h/.ironclaw/workspace"),
        &g,
        Some(Path::new("/tmp")),
        &[PathBuf::from("/usr/bin/ls")],
    );
    let find = |p: &str| {
        rules
            .iter()
            .find(|r| r.path == Path::new(p))
            .unwrap()
            .access
    };
    assert_eq!(find("/h/.ironclaw/workspace/shared"), FsAccess::READ);
    assert_eq!(find("/h/.ironclaw/workspace/notes"), FsAccess::READ_WRITE);
    assert_eq!(find("/srv/data"), FsAccess::READ_WRITE);
    assert_eq!(
        find("/h/.ironclaw/workspace/skills/s"),
        FsAccess::READ_WRITE
    );
    assert_eq!(find("/opt/skills/s"), FsAccess::READ_EXEC);
    assert_eq!(
        find("/usr/bin/ls"),
        FsAccess::EXECUTE.union(FsAccess::READ_FILE)
    );
    assert_eq!(find("/usr"), FsAccess::READ);
    assert_eq!(find("/dev/null"), FsAccess::DEV_RW);
    for r in &rules {
        if r.access.intersects(FsAccess::WRITE_FILE) {
            assert!(!r.access.intersects(FsAccess::EXECUTE), "{r:?}");
        }
        assert!(
            !r.access
                .intersects(FsAccess::MAKE_CHAR.union(FsAccess::MAKE_BLOCK)),
            "{r:?}"
        );
    }
    // Nothing in /etc beyond the listed files, never the whole of it.
    assert!(!rules.iter().any(|r| r.path == Path::new("/etc")));
}

#[test]
fn exec_files_leave_out_shells_by_inode_unless_granted() {
    let seen = vec![
        SeenFile {
            path: "/usr/bin/ls".into(),
            id: (1, 10),
            executable: true,
        },
        SeenFile {
            path: "/usr/bin/dash".into(),
            id: (1, 20),
            executable: true,
        },
        SeenFile {
            path: "/usr/bin/innocent-name".into(),
            id: (1, 20),
            executable: true,
        },
        SeenFile {
            path: "/usr/bin/README".into(),
            id: (1, 30),
            executable: false,
        },
    ];
    assert_eq!(
        exec_files(&seen, &[(1, 20)], false),
        vec![PathBuf::from("/usr/bin/ls")]
    );
    assert_eq!(exec_files(&seen, &[(1, 20)], true).len(), 3);
}

#[test]
fn fs_allows_follows_landlock_union_and_hidden_masks() {
    let rules = vec![
        FsRule {
            path: "/usr".into(),
            access: FsAccess::READ,
        },
        FsRule {
            path: "/usr/bin/ls".into(),
            access: FsAccess::EXECUTE.union(FsAccess::READ_FILE),
        },
        FsRule {
            path: "/h".into(),
            access: FsAccess::READ,
        },
        FsRule {
            path: "/h/.ironclaw/workspace/skills/s".into(),
            access: FsAccess::READ_WRITE,
        },
        FsRule {
            path: "/h/.ironclaw".into(),
            access: FsAccess::READ_WRITE,
        },
    ];
    let hidden = vec![PathBuf::from("/h/.ironclaw")];
    let a = |p: &str, k| fs_allows(&rules, &hidden, Path::new(p), k);
    assert!(a("/usr/lib/libc.so", AccessKind::Read));
    assert!(!a("/usr/lib/libc.so", AccessKind::Write));
    assert!(a("/usr/bin/ls", AccessKind::Execute));
    assert!(!a("/usr/bin/dash", AccessKind::Execute));
    assert!(a("/h/notes.txt", AccessKind::Read));
    // Hidden even though /h (ro) and /h/.ironclaw (rw) are granted...
    assert!(!a("/h/.ironclaw/ironclaw.json", AccessKind::Read));
    assert!(!a(
        "/h/.ironclaw/workspace/skills/other/x",
        AccessKind::Read
    ));
    // ...but what lies strictly inside it and is granted stays reachable.
    assert!(a(
        "/h/.ironclaw/workspace/skills/s/out.txt",
        AccessKind::Write
    ));
    assert!(!a(
        "/h/.ironclaw/workspace/skills/s/tool",
        AccessKind::Execute
    ));
    // Path walks may stat ancestors of granted paths, nothing else.
    assert!(a("/h/.ironclaw/workspace", AccessKind::Stat));
    assert!(!a("/h/.ironclaw/workspace", AccessKind::Read));
    assert!(!a("/etc/shadow", AccessKind::Stat));
    assert!(!a("/root/.ssh/id_rsa", AccessKind::Read));
}

#[test]
fn normalize_is_lexical_and_never_climbs_above_root() {
    assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
    assert_eq!(
        normalize(Path::new("/../../etc//passwd")),
        PathBuf::from("/etc/passwd")
    );
}

#[test]
fn mount_plan_hides_then_reexposes_inside_and_masks_on_top_of_outer_grants() {
    let exposed = vec![
        Exposed {
            path: "/h/.ironclaw/workspace/skills/s".into(),
            noexec: true,
            rdonly: false,
        },
        Exposed {
            path: "/h".into(),
            noexec: true,
            rdonly: true,
        },
        Exposed {
            path: "/tmp/skill".into(),
            noexec: false,
            rdonly: false,
        },
        Exposed {
            path: "/h/.ironclaw".into(),
            noexec: true,
            rdonly: true,
        },
    ];
    let ops = mount_plan(
        &exposed,
        &["/h/.ironclaw".into(), "/h/.ironclaw/inner".into()],
        true,
        Some("127.0.0.2\tx\n"),
        &["/usr/bin/dash".into()],
    );
    use MountOp::*;
    let want = vec![
        MakePrivate,
        Clone {
            id: 0,
            path: "/h/.ironclaw/workspace/skills/s".into(),
            noexec: true,
            rdonly: false,
        },
        Clone {
            id: 1,
            path: "/h".into(),
            noexec: true,
            rdonly: true,
        },
        Clone {
            id: 2,
            path: "/tmp/skill".into(),
            noexec: false,
            rdonly: false,
        },
        Tmpfs {
            target: "/tmp".into(),
            mode: 0o1777,
        },
        Attach {
            id: 1,
            target: "/h".into(),
        },
        Tmpfs {
            target: "/h/.ironclaw".into(),
            mode: 0o755,
        },
        Mkdir("/tmp/skill".into()),
        Attach {
            id: 2,
            target: "/tmp/skill".into(),
        },
        Mkdir("/h/.ironclaw/workspace".into()),
        Mkdir("/h/.ironclaw/workspace/skills".into()),
        Mkdir("/h/.ironclaw/workspace/skills/s".into()),
        Attach {
            id: 0,
            target: "/h/.ironclaw/workspace/skills/s".into(),
        },
        WriteFile {
            path: HOSTS_STAGING.into(),
            contents: b"127.0.0.2\tx\n".to_vec(),
        },
        BindFile {
            src: HOSTS_STAGING.into(),
            target: "/etc/hosts".into(),
        },
        Unlink(HOSTS_STAGING.into()),
        BindFile {
            src: "/dev/null".into(),
            target: "/usr/bin/dash".into(),
        },
        Readonly("/h/.ironclaw".into()),
    ];
    assert_eq!(ops, want);
}

#[test]
fn exposed_paths_are_noexec_when_writable() {
    let g = grants("fs=shared:ro fs=~/x:rw");
    let e = exposed_paths(
        Path::new("/sd"),
        Path::new("/ws"),
        Path::new("/h"),
        Path::new("/wr"),
        &g,
    );
    assert_eq!(
        e[0],
        Exposed {
            path: "/sd".into(),
            noexec: false,
            rdonly: false
        }
    );
    assert_eq!(
        e[1],
        Exposed {
            path: "/ws".into(),
            noexec: true,
            rdonly: false
        }
    );
    assert_eq!(
        e[2],
        Exposed {
            path: "/wr/shared".into(),
            noexec: true,
            rdonly: true
        }
    );
    assert_eq!(
        e[3],
        Exposed {
            path: "/h/x".into(),
            noexec: true,
            rdonly: false
        }
    );
}

#[test]
fn net_plan_maps_each_name_to_its_own_loopback_address() {
    let g = grants(
        "net=imap.gmail.com:993 net=smtp.gmail.com:587 net=imap.gmail.com:143 net=*.example.com:443 net=10.0.0.5:5432 net=127.0.0.2:6379 net=127.0.0.1:3128 net=[2001:db8::1]:443",
    );
    let p = net_plan(&g);
    let addrs: Vec<String> = p.forwards.iter().map(|(g, a)| format!("{g}={a}")).collect();
    assert_eq!(
        addrs,
        [
            "10.0.0.5:5432=10.0.0.5:5432",
            "127.0.0.2:6379=127.0.0.2:6379",
            "imap.gmail.com:993=127.0.0.3:993",
            "smtp.gmail.com:587=127.0.0.4:587",
            "imap.gmail.com:143=127.0.0.3:143"
        ]
    );
    assert_eq!(p.extra_addrs, vec![Ipv4Addr::new(10, 0, 0, 5)]);
    assert!(
        p.hosts_file
            .contains("127.0.0.3\timap.gmail.com\n127.0.0.4\tsmtp.gmail.com\n")
    );
    assert!(p.hosts_file.starts_with("127.0.0.1\tlocalhost\n"));
    assert!(net_allows(&p, "127.0.0.1".parse().unwrap(), 3128));
    assert!(net_allows(&p, "127.0.0.3".parse().unwrap(), 993));
    assert!(net_allows(&p, "10.0.0.5".parse().unwrap(), 5432));
    assert!(!net_allows(&p, "127.0.0.3".parse().unwrap(), 587));
    assert!(!net_allows(&p, "1.1.1.1".parse().unwrap(), 443));
    assert!(!net_allows(&p, "::1".parse().unwrap(), 3128));
    assert_eq!(forward_addr(250), Ipv4Addr::new(127, 1, 0, 2));
}
