#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The audit log writer and reader on real files.

mod audit_support;

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use audit_support::*;
use ironclaw_sidecar::audit::read::{self, Query};
use ironclaw_sidecar::audit::{
    AuditConfig, AuditError, AuditLog, Event, EventType, Record, list_rotated, new_session_id,
    schema,
};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[test]
fn open_creates_private_dirs_and_file() {
    let dir = temp_dir();
    let cfg = AuditConfig {
        path: dir.path().join("a/b/audit.log"),
        ..config(dir.path())
    };
    let log = AuditLog::open(cfg.clone()).unwrap();
    assert_eq!(mode(&dir.path().join("a")), 0o700);
    assert_eq!(mode(&dir.path().join("a/b")), 0o700);
    assert_eq!(mode(&cfg.path), 0o600);
    assert_eq!(log.config(), &cfg);
}

#[test]
fn open_restricts_a_world_readable_log_to_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir();
    let cfg = config(dir.path());
    fs::create_dir_all(cfg.path.parent().unwrap()).unwrap();
    fs::write(&cfg.path, "").unwrap();
    fs::set_permissions(&cfg.path, fs::Permissions::from_mode(0o644)).unwrap();
    AuditLog::open(cfg.clone()).unwrap();
    assert_eq!(mode(&cfg.path), 0o600);
}

#[test]
fn open_fails_clearly_when_not_writable() {
    let dir = temp_dir();
    // A regular file where a directory must be: no user (root included) can create the log.
    let blocker = dir.path().join("not-a-dir");
    fs::write(&blocker, "x").unwrap();
    let cfg = AuditConfig {
        path: blocker.join("audit.log"),
        ..config(dir.path())
    };
    let err = AuditLog::open(cfg.clone()).unwrap_err();
    assert!(matches!(err, AuditError::NotWritable { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "audit log {} is not writable: ",
            cfg.path.display()
        )),
        "{msg}"
    );
    assert!(
        msg.ends_with("IronClaw will not start without a writable audit log"),
        "{msg}"
    );

    // The path is a directory.
    let cfg = AuditConfig {
        path: dir.path().to_path_buf(),
        ..config(dir.path())
    };
    let err = AuditLog::open(cfg).unwrap_err().to_string();
    assert!(err.contains("is not writable"), "{err}");
}

#[test]
fn open_rejects_zero_sizes() {
    let dir = temp_dir();
    let err = AuditLog::open(AuditConfig {
        max_size_mb: 0,
        ..config(dir.path())
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid audit log setting security.auditLog.maxSizeMb: must be at least 1 (MiB)"
    );
    let err = AuditLog::open(AuditConfig {
        keep_days: 0,
        ..config(dir.path())
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("security.auditLog.keepDays"),
        "{err}"
    );
}

#[test]
fn defaults_match_the_spec() {
    let d = AuditConfig::default();
    assert_eq!((d.max_size_mb, d.keep_days, d.compress), (100, 90, true));
    assert!(d.path.ends_with("audit.log"));
}

#[test]
fn every_event_type_is_written_in_the_spec_format_and_matches_the_schema() {
    let dir = temp_dir();
    let cfg = config(dir.path());
    let log = AuditLog::open(cfg.clone()).unwrap();
    let session = new_session_id();
    let events = sample_events(&session);
    assert_eq!(events.len(), EventType::ALL.len());
    let mut returned = Vec::new();
    for ev in events {
        let r = log.append(ev).unwrap();
        assert_valid(&r);
        returned.push(r);
    }
    let text = fs::read_to_string(&cfg.path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 13);
    for (line, r) in lines.iter().zip(&returned) {
        // Flat, in the documented key order.
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys[..5], ["ts", "event", "eventId", "sessionId", "skill"]);
        assert_eq!(v["event"], r.event.as_str());
        assert_eq!(&serde_json::from_str::<Record>(line).unwrap(), r);
        // ts: RFC 3339, UTC, milliseconds, Z.
        let ts = v["ts"].as_str().unwrap();
        assert_eq!(ts.len(), 24, "{ts}");
        assert!(ts.ends_with('Z'));
        OffsetDateTime::parse(ts, &Rfc3339).unwrap();
    }
    let seen: HashSet<EventType> = returned.iter().map(|r| r.event).collect();
    assert_eq!(seen.len(), 13);
    assert!(session.starts_with("sess_") && session.len() == 15);
    assert!(session[5..].chars().all(|c| c.is_ascii_alphanumeric()));
    unique_ids(&returned);
    // The spec's own example line (plus eventId) is accepted.
    schema::validate_line(
        r#"{"ts":"2026-04-06T11:23:01.447Z","event":"ALLOWLIST_VIOLATION","eventId":"0196077a0c5700000000000000000001","sessionId":"sess_7fxQ3","skill":"himalaya","action":"network","resource":"attacker.io:80","granted":["imap.gmail.com:993","smtp.gmail.com:587"],"blocked":true}"#,
    )
    .unwrap();
}

#[test]
fn schema_rejects_missing_or_wrong_context() {
    let dir = temp_dir();
    let log = AuditLog::open(config(dir.path())).unwrap();
    // Missing its own keys.
    let r = log
        .append(Event::new(EventType::NetworkBlock, "sess_x"))
        .unwrap();
    let err = schema::validate(&r.to_value()).unwrap_err();
    assert!(err.contains("resource"), "{err}");
    // Wrong enum value.
    let r = log
        .append(
            Event::new(EventType::GatewayStart, "sess_x")
                .field("configHash", "a".repeat(64))
                .field("sandboxMode", "lenient")
                .field("skillsAuthorised", 1),
        )
        .unwrap();
    assert!(
        schema::validate(&r.to_value())
            .unwrap_err()
            .contains("sandboxMode")
    );
    // Missing common key.
    let mut v = r.to_value();
    v.as_object_mut().unwrap().remove("eventId");
    assert!(schema::validate(&v).unwrap_err().contains("eventId"));
    // Unknown event type.
    v["event"] = json!("NOT_AN_EVENT");
    assert!(schema::validate(&v).is_err());
}

#[test]
fn reserved_context_keys_are_refused() {
    let dir = temp_dir();
    let cfg = config(dir.path());
    let log = AuditLog::open(cfg.clone()).unwrap();
    let err = log
        .append(Event::new(EventType::SkillCall, "sess_x").field("eventId", "forged"))
        .unwrap_err();
    assert!(matches!(err, AuditError::ReservedField { ref key, .. } if key == "eventId"));
    assert_eq!(fs::read_to_string(&cfg.path).unwrap(), "");
}

#[test]
fn event_type_names_round_trip_and_unknown_lists_all() {
    for t in EventType::ALL {
        assert_eq!(t.as_str().parse::<EventType>().unwrap(), t);
        assert_eq!(serde_json::to_value(t).unwrap(), json!(t.as_str()));
    }
    let err = "NETWORK_BLOCKED"
        .parse::<EventType>()
        .unwrap_err()
        .to_string();
    for t in EventType::ALL {
        assert!(err.contains(t.as_str()), "{err}");
    }
    assert!(err.contains("\"NETWORK_BLOCKED\""), "{err}");
}

#[test]
fn torn_tail_is_repaired_on_open_and_skipped_by_readers() {
    let dir = temp_dir();
    let cfg = config(dir.path());
    {
        let log = AuditLog::open(cfg.clone()).unwrap();
        for ev in sample_events("sess_a").into_iter().take(3) {
            log.append(ev).unwrap();
        }
    }
    let good = fs::read(&cfg.path).unwrap();
    // A writer died half-way through a line.
    let mut f = fs::OpenOptions::new().append(true).open(&cfg.path).unwrap();
    f.write_all(br#"{"ts":"2026-04-06T11:23:01.447Z","event":"SKILL_CA"#)
        .unwrap();
    drop(f);
    // Readers skip the partial last line.
    let q = read::query(&cfg, &Query::default()).unwrap();
    assert_eq!(q.len(), 3);
    // Open repairs it: the file is back to the complete lines, and appends stay parseable.
    let log = AuditLog::open(cfg.clone()).unwrap();
    assert_eq!(fs::read(&cfg.path).unwrap(), good);
    log.append(load_event("sess_a", 1)).unwrap();
    assert_eq!(parse_file(&cfg.path).len(), 4);
}

#[test]
fn torn_tail_left_by_another_writer_is_repaired_before_the_next_batch() {
    let dir = temp_dir();
    let cfg = config(dir.path());
    let log = AuditLog::open(cfg.clone()).unwrap();
    log.append(load_event("sess_a", 1)).unwrap();
    // Another process (simulated by a raw write) dies mid-line while this log is open.
    let mut f = fs::OpenOptions::new().append(true).open(&cfg.path).unwrap();
    f.write_all(b"{\"ts\":\"2026").unwrap();
    drop(f);
    log.append(load_event("sess_a", 2)).unwrap();
    let recs = parse_file(&cfg.path);
    assert_eq!(recs.len(), 2);
}

#[test]
fn many_threads_never_interleave_or_lose_events() {
    let dir = temp_dir();
    let cfg = config(dir.path());
    let log = Arc::new(AuditLog::open(cfg.clone()).unwrap());
    let threads = 16;
    let per = 200u64;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                for i in 0..per {
                    // Large context so that a torn or interleaved write would be visible.
                    let ev = load_event(&format!("sess_t{t}"), i).field("pad", "x".repeat(3000));
                    ids.push(log.append(ev).unwrap().event_id);
                }
                ids
            })
        })
        .collect();
    let acked: Vec<String> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let recs = parse_file(&cfg.path);
    assert_eq!(recs.len() as u64, threads * per);
    let on_disk = unique_ids(&recs);
    assert_eq!(on_disk, acked.into_iter().collect::<HashSet<_>>());
    // Per thread, file order is append order.
    for t in 0..threads {
        let ns: Vec<u64> = recs
            .iter()
            .filter(|r| r.session_id == format!("sess_t{t}"))
            .map(|r| r.fields["n"].as_u64().unwrap())
            .collect();
        assert_eq!(ns, (0..per).collect::<Vec<_>>());
    }
}

/// Rotation (1 MiB) while 8 threads append: every acknowledged event is in exactly one file.
#[test]
fn rotation_under_load_never_loses_or_duplicates() {
    let dir = temp_dir();
    let cfg = AuditConfig {
        max_size_mb: 1,
        compress: false,
        ..config(dir.path())
    };
    let log = Arc::new(AuditLog::open(cfg.clone()).unwrap());
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                (0..500u64)
                    .map(|i| {
                        let ev = load_event(&format!("sess_r{t}"), i).field("pad", "y".repeat(900));
                        log.append(ev).unwrap().event_id
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let acked: HashSet<String> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(acked.len(), 4000);
    let rotated = list_rotated(&cfg.path).unwrap();
    assert!(
        rotated.len() >= 3,
        "expected several rotations, got {rotated:?}"
    );
    let mut all = Vec::new();
    for r in &rotated {
        assert!(r.has_plain && !r.has_gz);
        let recs = parse_file(&r.plain);
        assert!(fs::metadata(&r.plain).unwrap().len() <= 1024 * 1024);
        assert_eq!(mode(&r.plain), 0o600);
        all.extend(recs);
    }
    all.extend(parse_file(&cfg.path));
    assert_eq!(unique_ids(&all), acked);
    // The reader sees the same, oldest first.
    let q = read::query(&cfg, &Query::default()).unwrap();
    assert_eq!(q, all);
}

#[test]
fn gzip_rotation_is_readable_by_query() {
    let dir = temp_dir();
    let cfg = AuditConfig {
        max_size_mb: 1,
        compress: true,
        ..config(dir.path())
    };
    let log = AuditLog::open(cfg.clone()).unwrap();
    let mut acked = Vec::new();
    for i in 0..3000u64 {
        let ev = load_event("sess_gz", i).field("pad", "z".repeat(900));
        acked.push(log.append(ev).unwrap());
    }
    log.wait_maintenance();
    assert_eq!(log.maintenance_error(), None);
    let rotated = list_rotated(&cfg.path).unwrap();
    assert!(rotated.len() >= 2, "{rotated:?}");
    for r in &rotated {
        assert!(r.has_gz && !r.has_plain, "{r:?}");
        assert_eq!(mode(&r.gz()), 0o600);
        // Really gzip: smaller than the 1 MiB it came from.
        assert!(fs::metadata(r.gz()).unwrap().len() < 512 * 1024);
    }
    let q = read::query(&cfg, &Query::default()).unwrap();
    assert_eq!(q, acked);
    // The newest events come from the current file, older ones from .gz.
    let last = read::query(
        &cfg,
        &Query {
            last: Some(5),
            ..Query::default()
        },
    )
    .unwrap();
    assert_eq!(last, acked[acked.len() - 5..]);
    let many = read::query(
        &cfg,
        &Query {
            last: Some(2500),
            ..Query::default()
        },
    )
    .unwrap();
    assert_eq!(many, acked[acked.len() - 2500..]);
}

#[test]
fn a_rotated_file_left_uncompressed_by_a_crash_is_gzipped_on_open_and_never_read_twice() {
    let dir = temp_dir();
    let cfg = AuditConfig {
        max_size_mb: 1,
        compress: false,
        ..config(dir.path())
    };
    let mut acked = Vec::new();
    {
        let log = AuditLog::open(cfg.clone()).unwrap();
        for i in 0..1500u64 {
            acked.push(
                log.append(load_event("sess_c", i).field("pad", "q".repeat(900)))
                    .unwrap(),
            );
        }
    }
    let rotated = list_rotated(&cfg.path).unwrap();
    assert!(!rotated.is_empty());
    // A crash between "X.gz renamed into place" and "X unlinked": both exist.
    let r0 = &rotated[0];
    let data = fs::read(&r0.plain).unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&data).unwrap();
    fs::write(r0.gz(), enc.finish().unwrap()).unwrap();
    assert_eq!(read::query(&cfg, &Query::default()).unwrap(), acked);

    let cfg_gz = AuditConfig {
        compress: true,
        ..cfg.clone()
    };
    let log = AuditLog::open(cfg_gz.clone()).unwrap();
    log.wait_maintenance();
    for r in list_rotated(&cfg.path).unwrap() {
        assert!(r.has_gz && !r.has_plain, "{r:?}");
    }
    assert_eq!(read::query(&cfg_gz, &Query::default()).unwrap(), acked);
}

#[test]
fn rotated_files_older_than_keep_days_are_deleted() {
    let dir = temp_dir();
    let cfg = AuditConfig {
        keep_days: 30,
        ..config(dir.path())
    };
    let log = AuditLog::open(cfg.clone()).unwrap();
    log.append(load_event("sess_k", 0)).unwrap();
    drop(log);
    let home = cfg.path.parent().unwrap();
    let line = fs::read(&cfg.path).unwrap();
    let old = home.join("audit.log.20200101T000000.000000Z.gz");
    let old_plain = home.join("audit.log.20200102T000000.000000Z");
    let now = OffsetDateTime::now_utc();
    let recent_name = format!(
        "audit.log.{:04}{:02}{:02}T000000.000000Z",
        (now - time::Duration::days(29)).year(),
        u8::from((now - time::Duration::days(29)).month()),
        (now - time::Duration::days(29)).day()
    );
    let recent = home.join(recent_name);
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&line).unwrap();
    fs::write(&old, enc.finish().unwrap()).unwrap();
    fs::write(&old_plain, &line).unwrap();
    fs::write(&recent, &line).unwrap();
    // Unrelated files are never touched.
    let other = home.join("audit.log.notes");
    fs::write(&other, "keep").unwrap();

    let log = AuditLog::open(AuditConfig {
        compress: false,
        ..cfg.clone()
    })
    .unwrap();
    assert!(!old.exists() && !old_plain.exists());
    assert!(recent.exists() && other.exists());
    drop(log);
}

#[test]
fn query_filters_by_type_and_time() {
    let dir = temp_dir();
    let cfg = config(dir.path());
    let log = AuditLog::open(cfg.clone()).unwrap();
    let first: Vec<Record> = sample_events("sess_q")
        .into_iter()
        .map(|e| log.append(e).unwrap())
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mid = OffsetDateTime::now_utc();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let second: Vec<Record> = sample_events("sess_q")
        .into_iter()
        .map(|e| log.append(e).unwrap())
        .collect();

    let all = read::query(&cfg, &Query::default()).unwrap();
    assert_eq!(all.len(), 26);
    let only = read::query(
        &cfg,
        &Query {
            filter: vec![EventType::AllowlistViolation, EventType::NetworkBlock],
            ..Query::default()
        },
    )
    .unwrap();
    assert_eq!(only.len(), 4);
    assert!(only.iter().all(|r| matches!(
        r.event,
        EventType::AllowlistViolation | EventType::NetworkBlock
    )));
    let since = read::query(
        &cfg,
        &Query {
            since: Some(mid),
            ..Query::default()
        },
    )
    .unwrap();
    assert_eq!(since, second);
    let until = read::query(
        &cfg,
        &Query {
            until: Some(mid),
            ..Query::default()
        },
    )
    .unwrap();
    assert_eq!(until, first);
    // Both bounds inclusive at millisecond precision.
    let t0 = OffsetDateTime::parse(&first[0].ts, &Rfc3339).unwrap();
    let exact = read::query(
        &cfg,
        &Query {
            since: Some(t0),
            until: Some(t0),
            ..Query::default()
        },
    )
    .unwrap();
    assert!(exact.contains(&first[0]));
    let last = read::query(
        &cfg,
        &Query {
            last: Some(2),
            filter: vec![EventType::SkillCall],
            ..Query::default()
        },
    )
    .unwrap();
    assert_eq!(last, vec![first[2].clone(), second[2].clone()]);
}

#[test]
fn a_corrupt_complete_line_is_reported_with_its_place() {
    let dir = temp_dir();
    let cfg = config(dir.path());
    let log = AuditLog::open(cfg.clone()).unwrap();
    log.append(load_event("sess_x", 0)).unwrap();
    let mut f = fs::OpenOptions::new().append(true).open(&cfg.path).unwrap();
    f.write_all(b"{\"not\":\"a record\"}\n").unwrap();
    drop(f);
    let err = read::query(&cfg, &Query::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 2 is not a valid audit record"), "{err}");
    assert!(err.contains(&cfg.path.display().to_string()), "{err}");
}

#[test]
fn follow_streams_new_events_across_rotation() {
    let dir = temp_dir();
    let cfg = AuditConfig {
        max_size_mb: 1,
        compress: true,
        ..config(dir.path())
    };
    let log = Arc::new(AuditLog::open(cfg.clone()).unwrap());
    let before = log.append(load_event("sess_f", 0)).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel::<Record>();
    let follower = {
        let cfg = cfg.clone();
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            read::follow(&cfg, &|| done.load(Ordering::SeqCst), &mut |r| {
                tx.send(r.clone()).unwrap();
            })
            .unwrap();
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut acked = Vec::new();
    for i in 1..=2500u64 {
        acked.push(
            log.append(load_event("sess_f", i).field("pad", "f".repeat(900)))
                .unwrap(),
        );
    }
    assert!(list_rotated(&cfg.path).unwrap().len() >= 2);
    // Wait until the follower has everything, then stop it.
    let mut got = Vec::new();
    while got.len() < acked.len() {
        got.push(rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap());
    }
    done.store(true, Ordering::SeqCst);
    follower.join().unwrap();
    assert!(rx.try_recv().is_err(), "an event was delivered twice");
    assert_eq!(got, acked);
    assert!(!got.contains(&before));
}

/// Unmounts on drop, even when the test panics.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A real full file system (a 128 KiB tmpfs; tests run as root): the append that does not fit
/// fails, leaves no partial line, and appends work again once there is space.
#[test]
fn a_full_disk_fails_the_append_and_leaves_no_partial_line() {
    let dir = temp_dir();
    let mnt = dir.path().join("small-fs");
    fs::create_dir(&mnt).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=128k,mode=0700", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(
        ok.success(),
        "mounting a tmpfs needs root (the tests run as root)"
    );
    let _guard = Mount(mnt.clone());
    let filler = mnt.join("filler");
    fs::write(&filler, vec![0u8; 32 * 1024]).unwrap();
    let cfg = AuditConfig {
        path: mnt.join("audit.log"),
        ..config(dir.path())
    };
    let log = AuditLog::open(cfg.clone()).unwrap();
    let mut acked = Vec::new();
    let err = loop {
        match log.append(load_event("sess_full", acked.len() as u64).field("pad", "x".repeat(3000)))
        {
            Ok(r) => acked.push(r),
            Err(e) => break e,
        }
        assert!(
            acked.len() < 1000,
            "the 128 KiB file system never filled up"
        );
    };
    assert!(matches!(err, AuditError::Write { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&cfg.path.display().to_string()) && msg.contains("No space left"),
        "{msg}"
    );
    assert!(!acked.is_empty());
    let before = fs::read(&cfg.path).unwrap();
    assert_eq!(
        parse_file(&cfg.path),
        acked,
        "a partial batch was left behind"
    );
    // Still full: fails again, file unchanged.
    assert!(
        log.append(load_event("sess_full", 9999).field("pad", "x".repeat(3000)))
            .is_err()
    );
    assert_eq!(fs::read(&cfg.path).unwrap(), before);
    // Space freed: appends work again.
    fs::remove_file(&filler).unwrap();
    acked.push(log.append(load_event("sess_full", 10_000)).unwrap());
    assert_eq!(parse_file(&cfg.path), acked);
    drop(log);
}

#[test]
fn a_log_deleted_by_hand_is_recreated_at_the_next_append() {
    let dir = temp_dir();
    let cfg = config(dir.path());
    let log = AuditLog::open(cfg.clone()).unwrap();
    log.append(load_event("sess_d", 0)).unwrap();
    fs::remove_file(&cfg.path).unwrap();
    let r = log.append(load_event("sess_d", 1)).unwrap();
    assert_eq!(parse_file(&cfg.path), vec![r]);
    assert_eq!(mode(&cfg.path), 0o600);
}

#[test]
fn a_log_renamed_by_hand_is_replaced_within_a_second() {
    let dir = temp_dir();
    let cfg = config(dir.path());
    let log = AuditLog::open(cfg.clone()).unwrap();
    let a = log.append(load_event("sess_m", 0)).unwrap();
    let moved = cfg.path.with_file_name("moved-away.log");
    fs::rename(&cfg.path, &moved).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = log.append(load_event("sess_m", 1)).unwrap();
    assert_eq!(parse_file(&moved), vec![a]);
    assert_eq!(parse_file(&cfg.path), vec![b]);
}

#[test]
fn check_permissions_reports_readable_files_and_writable_dirs() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir();
    let cfg = config(dir.path());
    let missing = ironclaw_sidecar::audit::check_permissions(&cfg);
    assert!(
        missing.iter().any(|p| p.contains("cannot be inspected")),
        "{missing:?}"
    );
    let log = AuditLog::open(cfg.clone()).unwrap();
    log.append(load_event("sess_p", 0)).unwrap();
    assert_eq!(
        ironclaw_sidecar::audit::check_permissions(&cfg),
        Vec::<String>::new()
    );
    fs::set_permissions(&cfg.path, fs::Permissions::from_mode(0o644)).unwrap();
    let home = cfg.path.parent().unwrap();
    fs::set_permissions(home, fs::Permissions::from_mode(0o777)).unwrap();
    let problems = ironclaw_sidecar::audit::check_permissions(&cfg);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].contains("mode 0777") && problems[0].contains("chmod 700"),
        "{problems:?}"
    );
    assert!(
        problems[1].contains("mode 0644") && problems[1].contains("chmod 600"),
        "{problems:?}"
    );
}
