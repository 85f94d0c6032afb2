#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Several real processes writing one log, and a writer killed with SIGKILL under load.
//!
//! The writer processes are this test binary re-executed with `IRONCLAW_AUDIT_CHILD` set: the
//! same test function then runs the writer role and reports each event id on stdout only after
//! `append` has returned (i.e. after the event was acknowledged as durable).

mod audit_support;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_support::*;
use ironclaw_sidecar::audit::read::{self, Query};
use ironclaw_sidecar::audit::{AuditConfig, AuditLog, list_rotated};

const CHILD: &str = "IRONCLAW_AUDIT_CHILD";
const CHILD_PATH: &str = "IRONCLAW_AUDIT_CHILD_PATH";
const CHILD_COUNT: &str = "IRONCLAW_AUDIT_CHILD_COUNT";

fn child_cfg() -> AuditConfig {
    AuditConfig {
        path: PathBuf::from(std::env::var(CHILD_PATH).unwrap()),
        max_size_mb: 1,
        keep_days: 90,
        compress: true,
    }
}

/// Writer role: `threads` threads append `count` events each (0 = until killed) and print
/// `ACK <pid> <thread> <n> <eventId>` after each acknowledged append.
fn run_child(threads: u64) {
    let count: u64 = std::env::var(CHILD_COUNT).unwrap().parse().unwrap();
    let log = Arc::new(AuditLog::open(child_cfg()).unwrap());
    let pid = std::process::id();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut n = 0u64;
                while count == 0 || n < count {
                    let ev =
                        load_event(&format!("sess_p{pid}t{t}"), n).field("pad", "p".repeat(700));
                    let id = log.append(ev).unwrap().event_id;
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {pid} {t} {n} {id}").unwrap();
                    out.flush().unwrap();
                    n += 1;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    log.wait_maintenance();
}

fn spawn_child(test: &str, path: &Path, count: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env(CHILD_PATH, path)
        .env(CHILD_COUNT, count.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Reads a child's ACK lines on a thread; the handle yields them once the pipe closes.
fn collect_acks(child: &mut Child) -> std::thread::JoinHandle<Vec<(u32, u64, u64, String)>> {
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        let mut acks = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest may print "test NAME ... " without a newline before the first ACK.
            let Some(at) = line.find("ACK ") else {
                continue;
            };
            let rest = &line[at + 4..];
            let p: Vec<&str> = rest.split(' ').collect();
            // A line cut by SIGKILL mid-print is not an acknowledgement we can use.
            if p.len() != 4 || p[3].len() != 32 {
                continue;
            }
            acks.push((
                p[0].parse().unwrap(),
                p[1].parse().unwrap(),
                p[2].parse().unwrap(),
                p[3].to_string(),
            ));
        }
        acks
    })
}

/// Every record of every file (plain ones parsed line by line), each line checked.
fn all_records_checked(cfg: &AuditConfig) -> Vec<ironclaw_sidecar::audit::Record> {
    for r in list_rotated(&cfg.path).unwrap() {
        if r.has_plain {
            parse_file(&r.plain);
        }
    }
    parse_file(&cfg.path);
    let recs = read::query(cfg, &Query::default()).unwrap();
    for r in &recs {
        assert_valid(r);
    }
    recs
}

#[test]
fn several_processes_append_without_interleaving_or_loss() {
    if std::env::var_os(CHILD).is_some() {
        run_child(4);
        return;
    }
    let dir = temp_dir();
    let cfg = AuditConfig {
        max_size_mb: 1,
        ..config(dir.path())
    };
    // Create the directory first so the children race only on appends.
    drop(AuditLog::open(cfg.clone()).unwrap());
    let mut children: Vec<Child> = (0..4)
        .map(|_| {
            spawn_child(
                "several_processes_append_without_interleaving_or_loss",
                &cfg.path,
                300,
            )
        })
        .collect();
    let readers: Vec<_> = children.iter_mut().map(collect_acks).collect();
    for c in &mut children {
        assert!(c.wait().unwrap().success());
    }
    let acks: Vec<_> = readers
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(acks.len(), 4 * 4 * 300);
    let recs = all_records_checked(&cfg);
    assert_eq!(recs.len(), acks.len());
    let ids = unique_ids(&recs);
    assert_eq!(
        ids,
        acks.iter().map(|a| a.3.clone()).collect::<HashSet<_>>()
    );
    assert!(
        list_rotated(&cfg.path).unwrap().len() >= 2,
        "rotation across processes expected"
    );
    // Each writer thread's events appear in its own order.
    let mut per: HashMap<String, Vec<u64>> = HashMap::new();
    for r in &recs {
        per.entry(r.session_id.clone())
            .or_default()
            .push(r.fields["n"].as_u64().unwrap());
    }
    assert_eq!(per.len(), 16);
    for ns in per.values() {
        assert_eq!(ns, &(0..300).collect::<Vec<_>>());
    }
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_event_and_tears_no_line() {
    if std::env::var_os(CHILD).is_some() {
        run_child(4);
        return;
    }
    let dir = temp_dir();
    let cfg = AuditConfig {
        max_size_mb: 1,
        ..config(dir.path())
    };
    let mut acked: Vec<(u32, u64, u64, String)> = Vec::new();
    for round in 0..3 {
        let mut child = spawn_child(
            "kill_9_under_load_loses_no_acknowledged_event_and_tears_no_line",
            &cfg.path,
            0,
        );
        let reader = collect_acks(&mut child);
        // Let it write (and rotate) for a while, then SIGKILL it mid-flight.
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(700 + 300 * round) {
            std::thread::sleep(Duration::from_millis(50));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let acks = reader.join().unwrap();
        assert!(
            acks.len() > 100,
            "round {round}: only {} events acknowledged",
            acks.len()
        );
        acked.extend(acks);

        // Every line parses (a torn tail may be present only as an unterminated last line,
        // which readers skip); every acknowledged event is there exactly once.
        let recs = read::query(&cfg, &Query::default()).unwrap();
        let ids = unique_ids(&recs);
        for a in &acked {
            assert!(
                ids.contains(&a.3),
                "round {round}: acknowledged event {} lost",
                a.3
            );
        }
        // Reopen: repairs the tail, finishes interrupted gzip, and appends cleanly.
        let log = AuditLog::open(cfg.clone()).unwrap();
        log.wait_maintenance();
        assert_eq!(log.maintenance_error(), None);
        let r = log.append(load_event("sess_after", round)).unwrap();
        drop(log);
        let recs = all_records_checked(&cfg);
        let ids = unique_ids(&recs);
        assert!(ids.contains(&r.event_id));
        for a in &acked {
            assert!(
                ids.contains(&a.3),
                "round {round}: acknowledged event {} lost after reopen",
                a.3
            );
        }
        for rf in list_rotated(&cfg.path).unwrap() {
            assert!(rf.has_gz && !rf.has_plain, "left uncompressed: {rf:?}");
        }
        let leftovers: Vec<_> = std::fs::read_dir(cfg.path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains(".tmp."))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
