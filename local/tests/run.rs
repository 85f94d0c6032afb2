//! `ironclaw skill run` end to end under the real strict sandbox (seccomp, Landlock, namespaces)
//! with the real egress proxy on 127.0.0.1: refusals, pass-through, env filtering, violations in
//! the audit log, network through the proxy, auto-suspension.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ironclaw_e2e::{TempHome, make_skill, stderr};
use std::io::{Read, Write};
use std::net::TcpListener;

fn home() -> TempHome {
    TempHome::new(env!("CARGO_BIN_EXE_ironclaw"))
}

/// A one-shot HTTP origin on 127.0.0.1 answering every request with `body`.
fn origin(body: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn not_allowlisted_never_runs_and_output_and_status_pass_through() {
    let h = home();
    let marker = h.root().join("ran");
    let src = make_skill(
        h.root(),
        "echo",
        "{}",
        &format!(
            "import sys\nopen({:?},'w')\nprint('out', sys.argv[1:])\nprint('err', file=sys.stderr)\nsys.exit(7)\n",
            h.root().join("workspace/skills/echo/ran").display()
        ),
    );
    h.ok(&["skill", "install", src.to_str().unwrap()]);
    let o = h.run(&["skill", "run", "echo"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not on the allowlist"),
        "{}",
        stderr(&o)
    );
    assert!(!marker.exists());
    assert_eq!(h.events_of("ALLOWLIST_DENY").len(), 1);
    assert_eq!(h.events_of("SKILL_CALL")[0]["authorised"], false);

    h.ok(&["allowlist", "grant", "echo"]);
    let o = h.run(&["skill", "run", "echo", "--", "a b", "c"]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out ['a b', 'c']\n");
    assert!(stderr(&o).contains("err"));
    assert!(
        h.root().join("workspace/skills/echo/ran").exists(),
        "own workspace must be writable"
    );
    assert_eq!(h.events_of("SKILL_CALL")[1]["authorised"], true);
}

#[test]
fn only_granted_env_reaches_the_skill_and_secrets_need_exact_grants() {
    let h = home();
    let src = make_skill(
        h.root(),
        "envy",
        r#"{"env":["APP_*","GITHUB_TOKEN"]}"#,
        "import os\nprint(sorted(k for k in os.environ if k.startswith(('APP_','GITHUB','AWS','IRONCLAW'))))\n",
    );
    h.ok(&["skill", "install", src.to_str().unwrap()]);
    h.ok(&["allowlist", "grant", "envy", "--env", "APP_*"]);
    std::fs::write(h.root().join(".env"), "APP_FROM_DOTENV=1\n").unwrap();
    let o = h
        .cmd(&["skill", "run", "envy"])
        .env("APP_MODE", "x")
        .env("APP_API_KEY", "secret")
        .env("GITHUB_TOKEN", "secret")
        .env("AWS_REGION", "eu")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "['APP_FROM_DOTENV', 'APP_MODE']"
    );
    // GITHUB_TOKEN was requested but not granted: logged as a pending grant.
    let v = h.events_of("ALLOWLIST_VIOLATION");
    assert_eq!(
        (v[0]["action"].as_str(), v[0]["resource"].as_str()),
        (Some("env"), Some("GITHUB_TOKEN"))
    );
    h.ok(&["allowlist", "grant", "envy", "--env", "GITHUB_TOKEN"]);
    let o = h
        .cmd(&["skill", "run", "envy"])
        .env("GITHUB_TOKEN", "t")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("GITHUB_TOKEN"));
    // Values never reach the audit log.
    assert!(
        !std::fs::read_to_string(h.root().join("audit.log"))
            .unwrap()
            .contains("secret")
    );
}

#[test]
fn violations_are_blocked_logged_and_suspend_the_skill() {
    let h = home();
    std::fs::create_dir_all(h.root().join("workspace/shared")).unwrap();
    std::fs::write(h.root().join("workspace/shared/n.txt"), "shared").unwrap();
    std::fs::create_dir_all(h.root().join("workspace/skills/other")).unwrap();
    std::fs::write(h.root().join("workspace/skills/other/secret"), "x").unwrap();
    let py = format!(
        r#"import os, socket, errno
def t(name, f):
    try:
        f(); print(name, 'ok')
    except OSError as e:
        print(name, errno.errorcode[e.errno])
t('shared-read', lambda: open({shared:?}).read())
t('shared-write', lambda: open({shared:?}, 'a'))
t('other-skill', lambda: open({other:?}).read())
t('ironclaw-home', lambda: open({allow:?}).read())
t('shell', lambda: os.execv('/bin/sh', ['sh', '-c', 'true']))
t('direct-connect', lambda: socket.create_connection(('93.184.216.34', 80), timeout=2))
"#,
        shared = h.root().join("workspace/shared/n.txt"),
        other = h.root().join("workspace/skills/other/secret"),
        allow = h.root().join("allowlist.json"),
    );
    let src = make_skill(
        h.root(),
        "probe",
        r#"{"filesystem":["~/.ironclaw/workspace/shared:ro"]}"#,
        &py,
    );
    h.ok(&["skill", "install", src.to_str().unwrap()]);
    h.ok(&[
        "allowlist",
        "grant",
        "probe",
        "--filesystem",
        "~/.ironclaw/workspace/shared:ro",
    ]);
    h.ok(&[
        "config",
        "set",
        "security.autoSuspend.violationsPerWindow",
        "8",
    ]);
    let o = h.run(&["skill", "run", "probe"]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    for line in [
        "shared-read ok",
        "shared-write EACCES",
        "other-skill EACCES",
        "ironclaw-home EACCES",
        "shell EACCES",
    ] {
        assert!(
            out.contains(line),
            "missing {line:?} in:\n{out}\n{}",
            stderr(&o)
        );
    }
    assert!(out.contains("direct-connect E"), "{out}");
    assert!(!out.contains("direct-connect ok"));
    let fs: Vec<String> = h
        .events_of("FILESYSTEM_BLOCK")
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["access"].as_str().unwrap(),
                e["resource"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        fs.iter()
            .any(|e| e.starts_with("write ") && e.ends_with("shared/n.txt")),
        "{fs:?}"
    );
    assert!(
        fs.iter().any(|e| e.ends_with("skills/other/secret")),
        "{fs:?}"
    );
    assert!(fs.iter().any(|e| e.ends_with("allowlist.json")), "{fs:?}");
    assert!(fs.iter().any(|e| e.starts_with("execute ")), "{fs:?}");
    let net = h.events_of("NETWORK_BLOCK");
    assert_eq!(net[0]["resource"], "93.184.216.34:80");
    assert_eq!(net[0]["blocked"], true);
    assert!(h.events_of("SKILL_SUSPENDED").is_empty());

    // A second run pushes it over 8 violations in the window: suspended, killed, then refused.
    let _ = h.run(&["skill", "run", "probe"]);
    let s = h.events_of("SKILL_SUSPENDED");
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0]["violations"], 8);
    let o = h.run(&["skill", "run", "probe"]);
    assert!(
        !o.status.success() && stderr(&o).contains("is suspended until"),
        "{}",
        stderr(&o)
    );
    assert!(!String::from_utf8_lossy(&o.stdout).contains("shared-read"));
    let s = h.events_of("SKILL_SUSPENDED");
    assert_eq!(s.len(), 2);
    // The refusal names the suspension it hit: same end, same count.
    assert_eq!(
        (&s[1]["until"], &s[1]["violations"]),
        (&s[0]["until"], &s[0]["violations"])
    );
    assert!(
        s[1]["until"].as_str().unwrap().len() == "2026-04-06T11:23:01.447Z".len(),
        "{s:?}"
    );
    let list: serde_json::Value =
        serde_json::from_str(&h.ok(&["skill", "list", "--json"])).unwrap();
    assert_eq!(list[0]["suspended"], true);
    h.ok(&["allowlist", "unsuspend", "probe"]);
    assert!(
        String::from_utf8_lossy(&h.run(&["skill", "run", "probe"]).stdout)
            .contains("shared-read ok")
    );
}

#[test]
fn network_only_through_the_proxy_and_only_to_grants() {
    let h = home();
    let granted = origin("granted-origin");
    let other = origin("other-origin");
    let py = format!(
        r#"import os, socket, urllib.request
print('proxy', os.environ.get('HTTP_PROXY'))
op = urllib.request.build_opener(urllib.request.ProxyHandler({{'http': os.environ['HTTP_PROXY']}}))
for port in ({granted}, {other}):
    try:
        print(port, op.open('http://127.0.0.1:%d/' % port, timeout=5).read().decode())
    except Exception as e:
        print(port, 'refused', getattr(e, 'code', e))
# Raw TCP to the granted address reaches the origin through its forward listener.
s = socket.create_connection(('127.0.0.1', {granted}), timeout=5)
s.sendall(b'GET / HTTP/1.0\r\n\r\n')
print('raw', b''.join(iter(lambda: s.recv(4096), b'')).decode().split('\r\n\r\n')[-1])
"#
    );
    let src = make_skill(
        h.root(),
        "net",
        &format!(r#"{{"network":["127.0.0.1:{granted}"]}}"#),
        &py,
    );
    h.ok(&["skill", "install", src.to_str().unwrap()]);
    h.ok(&[
        "allowlist",
        "grant",
        "net",
        "--network",
        &format!("127.0.0.1:{granted}"),
    ]);
    let o = h.run(&["skill", "run", "net"]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        out.contains(&format!("{granted} granted-origin")),
        "{out}\n{}",
        stderr(&o)
    );
    assert!(out.contains(&format!("{other} refused 403")), "{out}");
    assert!(out.contains("raw granted-origin"), "{out}");
    let net = h.events_of("NETWORK_BLOCK");
    assert_eq!(net.len(), 1, "{net:?}");
    assert_eq!(net[0]["resource"], format!("127.0.0.1:{other}"));
    assert_eq!(
        net[0]["granted"],
        serde_json::json!([format!("127.0.0.1:{granted}")])
    );
}

#[test]
fn audit_only_blocks_nothing_logs_everything_and_suggest_prints_the_grant() {
    let h = home();
    std::fs::create_dir_all(h.root().join("data")).unwrap();
    let data = h.root().join("data/in.txt");
    std::fs::write(&data, "d").unwrap();
    let out_file = h.root().join("data/out.txt");
    let py = format!(
        "import os\nprint(open({data:?}).read())\nopen({out:?}, 'w').write('x')\nos.execv('/bin/sh', ['sh', '-c', 'echo shell-ran'])\n",
        data = data,
        out = out_file
    );
    let src = make_skill(h.root(), "learn", "{}", &py);
    h.ok(&["skill", "install", src.to_str().unwrap()]);
    h.ok(&["allowlist", "grant", "learn"]);
    h.ok(&["config", "set", "security.sandbox.mode", "audit-only"]);
    let o = h.run(&["skill", "run", "learn"]);
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        stdout.contains("d\n") && stdout.contains("shell-ran"),
        "audit-only must not block: {stdout}\n{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("audit-only"),
        "no warning: {}",
        stderr(&o)
    );
    let fs = h.events_of("FILESYSTEM_BLOCK");
    assert!(fs.iter().all(|e| e["blocked"] == false), "{fs:?}");
    let suggestion = h.ok(&["allowlist", "suggest", "learn"]);
    let line = suggestion.lines().next().unwrap();
    assert!(
        line.starts_with("ironclaw allowlist grant learn "),
        "{suggestion}"
    );
    assert!(
        line.contains(&format!("--filesystem '{}:ro'", data.display())),
        "{suggestion}"
    );
    assert!(
        line.contains(&format!("--filesystem '{}:rw'", out_file.display())),
        "{suggestion}"
    );
    assert!(line.contains("--shell"), "{suggestion}");
}
