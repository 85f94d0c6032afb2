//! Audit log benchmark (not a test). Run:
//!
//! ```text
//! cargo bench -p ironclaw-sidecar --bench audit
//! ```
//!
//! Every figure is measured against a baseline in the same run, on the same disk (a directory
//! under the workspace's `target/`, or `$IRONCLAW_BENCH_DIR`), rounds alternating between
//! baseline and ours; medians over rounds are reported.
//!
//! (a) one producer, each event durable before the next: `AuditLog::append` vs a plain
//!     `write` + `fdatasync` loop of an equally long line.
//! (b) 16 producers, each waiting for its durable acknowledgement: `AuditLog::append` vs a minimal
//!     group-commit loop (mutex + condvar leader/follower, one write + fdatasync per batch).
//! (c) (b) again (3x as many events) with `maxSizeMb = 1` and gzip on, so the log rotates every
//!     ~3700 events: events/s vs (b), rotations done, the gzip backlog (rotated files not yet
//!     gzipped) at the end of the run and how long it took to drain.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ironclaw_sidecar::audit::{AuditConfig, AuditLog, Event, EventType, list_rotated};
use serde_json::json;

const PRODUCERS: usize = 16;

fn bench_dir() -> PathBuf {
    let base = std::env::var_os("IRONCLAW_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/audit-bench"));
    std::fs::create_dir_all(&base).unwrap();
    base
}

fn event(n: u64) -> Event {
    Event::new(EventType::AllowlistViolation, "sess_7fxQ3abcde")
        .skill("himalaya")
        .field("action", "network")
        .field("resource", "attacker.io:80")
        .field(
            "granted",
            json!(["imap.gmail.com:993", "smtp.gmail.com:587"]),
        )
        .field("blocked", true)
        .field("n", n)
}

/// A line as long as a real record of `event(n)`.
fn line_like_ours() -> Vec<u8> {
    let rec = ironclaw_sidecar::audit::Record {
        ts: "2026-04-06T11:23:01.447Z".into(),
        event: EventType::AllowlistViolation,
        event_id: "0".repeat(32),
        session_id: "sess_7fxQ3abcde".into(),
        skill: Some("himalaya".into()),
        fields: event(123456).fields,
    };
    let mut v = serde_json::to_vec(&rec).unwrap();
    v.push(b'\n');
    v
}

fn cfg(dir: &Path, max_size_mb: u64, compress: bool) -> AuditConfig {
    AuditConfig {
        path: dir.join("audit.log"),
        max_size_mb,
        keep_days: 90,
        compress,
    }
}

fn fresh(dir: &Path, name: &str) -> PathBuf {
    let d = dir.join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn percentile(v: &mut [u64], p: f64) -> u64 {
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

// ---------- (a) ----------

/// (baseline ev/s, ours ev/s): slices of `slice` events alternate between the two loops (order
/// flipped every slice) so that load changes on the machine hit both alike.
fn a_interleaved(dir: &Path, slices: u64, slice: u64) -> (f64, f64) {
    let line = line_like_ours();
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("plain.log"))
        .unwrap();
    let log = AuditLog::open(cfg(dir, 100, true)).unwrap();
    // Callers build their events; the baseline's line is prebuilt too, so build them untimed.
    let mut events = (0..slices * slice)
        .map(event)
        .collect::<Vec<_>>()
        .into_iter();
    let (mut tb, mut to) = (Duration::ZERO, Duration::ZERO);
    for s in 0..slices {
        for side in [s % 2, 1 - s % 2] {
            let t = Instant::now();
            for _ in 0..slice {
                if side == 0 {
                    f.write_all(&line).unwrap();
                    f.sync_data().unwrap();
                } else {
                    let ev = events.next().unwrap();
                    log.append(ev).unwrap();
                }
            }
            if side == 0 {
                tb += t.elapsed()
            } else {
                to += t.elapsed()
            }
        }
    }
    let total = (slices * slice) as f64;
    (total / tb.as_secs_f64(), total / to.as_secs_f64())
}

// ---------- (b) ----------

/// The minimal group-commit loop the issue compares against.
struct MiniGc {
    st: Mutex<(Vec<u8>, u64, u64, bool)>, // pending, next_seq, done_seq, writing
    cv: Condvar,
    file: Mutex<File>,
}

impl MiniGc {
    fn append(&self, line: &[u8]) {
        let mut st = self.st.lock().unwrap();
        st.0.extend_from_slice(line);
        st.1 += 1;
        let me = st.1;
        loop {
            if st.2 >= me {
                return;
            }
            if st.3 {
                st = self.cv.wait(st).unwrap();
                continue;
            }
            st.3 = true;
            let last = st.1;
            let batch = std::mem::take(&mut st.0);
            drop(st);
            {
                let mut f = self.file.lock().unwrap();
                f.write_all(&batch).unwrap();
                f.sync_data().unwrap();
            }
            st = self.st.lock().unwrap();
            st.3 = false;
            st.2 = last;
            self.cv.notify_all();
        }
    }
}

struct Run {
    events_per_s: f64,
    p50_us: f64,
    p99_us: f64,
}

fn concurrent(per_producer: u64, f: Arc<dyn Fn(u64) + Send + Sync>) -> Run {
    let start = Instant::now();
    let handles: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let f = Arc::clone(&f);
            std::thread::spawn(move || {
                let mut lat = Vec::with_capacity(per_producer as usize);
                for i in 0..per_producer {
                    let t = Instant::now();
                    f(p as u64 * 1_000_000 + i);
                    lat.push(t.elapsed().as_nanos() as u64);
                }
                lat
            })
        })
        .collect();
    let mut lat: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let secs = start.elapsed().as_secs_f64();
    let n = lat.len() as f64;
    Run {
        events_per_s: n / secs,
        p50_us: percentile(&mut lat, 0.50) as f64 / 1000.0,
        p99_us: percentile(&mut lat, 0.99) as f64 / 1000.0,
    }
}

fn b_baseline(dir: &Path, per: u64) -> Run {
    let line = line_like_ours();
    let gc = Arc::new(MiniGc {
        st: Mutex::new((Vec::new(), 0, 0, false)),
        cv: Condvar::new(),
        file: Mutex::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("gc.log"))
                .unwrap(),
        ),
    });
    concurrent(per, Arc::new(move |_| gc.append(&line)))
}

fn b_ours(dir: &Path, per: u64, max_size_mb: u64, compress: bool) -> (Run, Arc<AuditLog>) {
    let log = Arc::new(AuditLog::open(cfg(dir, max_size_mb, compress)).unwrap());
    let l = Arc::clone(&log);
    let run = concurrent(
        per,
        Arc::new(move |n| {
            l.append(event(n)).unwrap();
        }),
    );
    (run, log)
}

fn main() {
    let quick =
        std::env::args().any(|a| a == "--quick") || std::env::var_os("AUDIT_BENCH_QUICK").is_some();
    let rounds = if quick { 3 } else { 11 };
    let a_slices: u64 = if quick { 10 } else { 30 };
    let b_per: u64 = if quick { 300 } else { 600 };
    let root = bench_dir();
    println!(
        "audit bench: dir {} ({} rounds, line {} bytes)",
        root.display(),
        rounds,
        line_like_ours().len()
    );

    let (mut a_base, mut a_our, mut a_ratio) = (Vec::new(), Vec::new(), Vec::new());
    let (mut b_base, mut b_our, mut b_ratio) = (Vec::new(), Vec::new(), Vec::new());
    let (mut b_base_p99, mut b_our_p99, mut b_our_p50, mut b_base_p50) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut c_our, mut c_ratio, mut c_p99, mut c_rot, mut c_backlog, mut c_drain) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );

    for r in 0..rounds {
        // Alternate which side goes first to cancel drift.
        let (x, y) = a_interleaved(&fresh(&root, "a"), a_slices, 20);
        a_base.push(x);
        a_our.push(y);
        a_ratio.push(y / x);

        let (bb, (bo, _log)) = if r % 2 == 0 {
            let bb = b_baseline(&fresh(&root, "b-base"), b_per);
            (bb, b_ours(&fresh(&root, "b-ours"), b_per, 100, true))
        } else {
            let bo = b_ours(&fresh(&root, "b-ours"), b_per, 100, true);
            (b_baseline(&fresh(&root, "b-base"), b_per), bo)
        };
        b_base.push(bb.events_per_s);
        b_our.push(bo.events_per_s);
        b_ratio.push(bo.events_per_s / bb.events_per_s);
        b_base_p99.push(bb.p99_us);
        b_our_p99.push(bo.p99_us);
        b_base_p50.push(bb.p50_us);
        b_our_p50.push(bo.p50_us);

        let cdir = fresh(&root, "c-ours");
        let (co, log) = b_ours(&cdir, 3 * b_per, 1, true);
        let cfgc = cfg(&cdir, 1, true);
        let rotated = list_rotated(&cfgc.path).unwrap();
        let backlog = rotated.iter().filter(|f| f.has_plain).count();
        let t = Instant::now();
        log.wait_maintenance();
        let drain = t.elapsed();
        assert_eq!(log.maintenance_error(), None);
        c_our.push(co.events_per_s);
        c_ratio.push(co.events_per_s / bo.events_per_s);
        c_p99.push(co.p99_us);
        c_rot.push(rotated.len() as f64);
        c_backlog.push(backlog as f64);
        c_drain.push(drain.as_secs_f64() * 1000.0);
        eprintln!(
            "round {r}: a {:.0}/{:.0} ev/s ({:.2}x)  b {:.0}/{:.0} ev/s ({:.2}x) p99 {:.0}/{:.0} us  c {:.0} ev/s ({:.2}x of b) {} rotations, backlog {} drained in {:.0} ms",
            y,
            x,
            y / x,
            bo.events_per_s,
            bb.events_per_s,
            bo.events_per_s / bb.events_per_s,
            bo.p99_us,
            bb.p99_us,
            co.events_per_s,
            co.events_per_s / bo.events_per_s,
            rotated.len(),
            backlog,
            drain.as_secs_f64() * 1000.0
        );
    }

    println!();
    println!(
        "| scenario | baseline (median) | ours (median) | ratio (median of per-round ratios) | target |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| (a) 1 producer, durable per event | {:.0} ev/s (write+fdatasync) | {:.0} ev/s | {:.2}x | >= 0.9x |",
        median(&mut a_base),
        median(&mut a_our),
        median(&mut a_ratio)
    );
    println!(
        "| (b) 16 producers, durable ack | {:.0} ev/s (minimal group commit) | {:.0} ev/s | {:.2}x | >= 1.0x |",
        median(&mut b_base),
        median(&mut b_our),
        median(&mut b_ratio)
    );
    println!(
        "| (b) ack latency p50 / p99 | {:.0} / {:.0} us | {:.0} / {:.0} us | | p99 <= 1000 us |",
        median(&mut b_base_p50),
        median(&mut b_base_p99),
        median(&mut b_our_p50),
        median(&mut b_our_p99)
    );
    println!(
        "| (c) (b) + rotation every 1 MiB + gzip | (b) ours | {:.0} ev/s, p99 {:.0} us | {:.2}x of (b) | keeps up |",
        median(&mut c_our),
        median(&mut c_p99),
        median(&mut c_ratio)
    );
    println!(
        "| (c) rotations per run / gzip backlog at end / drain time | | {:.0} / {:.0} files / {:.0} ms | | backlog stays small |",
        median(&mut c_rot),
        median(&mut c_backlog),
        median(&mut c_drain)
    );
    let _ = std::fs::remove_dir_all(&root);
}
