#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `ironclaw audit tail|show|export` through clap and `cli::run`, on real files.

mod audit_support;

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use audit_support::*;
use clap::Parser;
use ironclaw_sidecar::audit::cli::{self, AuditCommand};
use ironclaw_sidecar::audit::{AuditError, AuditLog, Event, EventType, Record, schema};
use serde_json::{Value, json};

/// The shape the lead's CLI nests this in: `ironclaw audit <command>`.
#[derive(Parser, Debug)]
#[command(name = "ironclaw")]
struct Top {
    #[command(subcommand)]
    cmd: TopCmd,
}

#[derive(clap::Subcommand, Debug)]
enum TopCmd {
    #[command(subcommand)]
    Audit(AuditCommand),
}

fn parse(args: &[&str]) -> Result<AuditCommand, clap::Error> {
    let mut argv = vec!["ironclaw", "audit"];
    argv.extend_from_slice(args);
    Top::try_parse_from(argv).map(|t| match t.cmd {
        TopCmd::Audit(a) => a,
    })
}

fn run(cfg: &ironclaw_sidecar::audit::AuditConfig, args: &[&str]) -> Result<String, AuditError> {
    let cmd = parse(args).unwrap();
    let mut out = Vec::new();
    cli::run(cfg, &cmd, &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

#[test]
fn bad_flag_values_are_refused_with_the_flag_and_the_allowed_values() {
    let all_names: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
    // (arguments, fragments the error must contain)
    let table: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["show", "--filter", "NOPE"],
            [vec!["--filter", "\"NOPE\""], all_names.clone()].concat(),
        ),
        (
            vec!["show", "--filter", "ALLOWLIST_VIOLATION,network_block"],
            [vec!["--filter", "\"network_block\""], all_names.clone()].concat(),
        ),
        (
            vec!["export", "--output", "x", "--filter", ""],
            vec!["--filter", "allowed: GATEWAY_START"],
        ),
        (
            vec!["show", "--since", "yesterday"],
            vec!["--since", "RFC 3339", "2026-04-06T00:00:00Z"],
        ),
        (
            vec!["show", "--until", "2026-04-06"],
            vec!["--until", "RFC 3339"],
        ),
        (
            vec!["show", "--since", "2026-04-06T00:00:00"],
            vec!["--since", "RFC 3339"],
        ),
        (vec!["show", "--last", "0"], vec!["--last", "at least 1"]),
        (vec!["show", "--last=-5"], vec!["--last", "at least 1"]),
        (vec!["show", "--last", "ten"], vec!["--last", "\"ten\""]),
        (
            vec!["export", "--format", "xml", "--output", "f"],
            vec!["--format", "xml", "json", "csv"],
        ),
        (vec!["export", "--format", "json"], vec!["--output"]),
        (vec!["show", "--bogus"], vec!["--bogus"]),
        (vec!["tail", "--last", "3"], vec!["--last"]),
        (vec!["purge"], vec!["purge"]),
    ];
    for (args, want) in table {
        let err = parse(&args)
            .expect_err(&format!("{args:?} was accepted"))
            .to_string();
        for w in want {
            assert!(err.contains(w), "{args:?}: error {err:?} lacks {w:?}");
        }
    }
}

#[test]
fn since_after_until_is_refused_before_reading() {
    let dir = temp_dir();
    let cfg = config(dir.path());
    let err = run(
        &cfg,
        &[
            "show",
            "--since",
            "2026-04-07T00:00:00Z",
            "--until",
            "2026-04-06T00:00:00Z",
        ],
    )
    .unwrap_err();
    assert!(matches!(
        err,
        AuditError::InvalidArgument {
            flag: "--since/--until",
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "invalid value for --since/--until: --since 2026-04-07T00:00:00.000Z is after --until 2026-04-06T00:00:00.000Z"
    );
}

fn filled_log(dir: &std::path::Path) -> (ironclaw_sidecar::audit::AuditConfig, Vec<Record>) {
    let cfg = config(dir);
    let log = AuditLog::open(cfg.clone()).unwrap();
    let mut recs: Vec<Record> = sample_events("sess_cli")
        .into_iter()
        .map(|e| log.append(e).unwrap())
        .collect();
    // Hostile values: CSV metacharacters and terminal escapes.
    recs.push(
        log.append(
            Event::new(EventType::AllowlistViolation, "sess_cli")
                .skill("we,ird\"skill")
                .field("action", "filesystem")
                .field("resource", "/tmp/a\nb,\"c\"\u{1b}[31m")
                .field("granted", json!([]))
                .field("blocked", true),
        )
        .unwrap(),
    );
    (cfg, recs)
}

#[test]
fn show_prints_text_or_json_lines_with_filters() {
    let dir = temp_dir();
    let (cfg, recs) = filled_log(dir.path());
    let text = run(&cfg, &["show"]).unwrap();
    assert_eq!(text.lines().count(), recs.len());
    assert!(
        !text.contains('\u{1b}'),
        "terminal escape passed through: {text:?}"
    );
    assert!(text.lines().next().unwrap().starts_with(&recs[0].ts));
    assert!(text.contains("resource=\"attacker.io:80\""), "{text}");

    let json_out = run(&cfg, &["show", "--json", "--last", "3"]).unwrap();
    let got: Vec<Record> = json_out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got, recs[recs.len() - 3..]);
    for l in json_out.lines() {
        schema::validate_line(l).unwrap();
    }

    let filtered = run(
        &cfg,
        &[
            "show",
            "--json",
            "--filter",
            "ALLOWLIST_VIOLATION,NETWORK_BLOCK,INJECTION_DETECTED",
        ],
    )
    .unwrap();
    let got: Vec<Record> = filtered
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let want: Vec<Record> = recs
        .iter()
        .filter(|r| {
            matches!(
                r.event,
                EventType::AllowlistViolation
                    | EventType::NetworkBlock
                    | EventType::InjectionDetected
            )
        })
        .cloned()
        .collect();
    assert_eq!(got.len(), 4);
    assert_eq!(got, want);

    let none = run(&cfg, &["show", "--until", "2000-01-01T00:00:00Z"]).unwrap();
    assert_eq!(none, "");
}

#[test]
fn export_json_is_one_array_of_the_records() {
    let dir = temp_dir();
    let (cfg, recs) = filled_log(dir.path());
    let out = dir.path().join("export.json");
    let msg = run(
        &cfg,
        &[
            "export",
            "--format",
            "json",
            "--output",
            out.to_str().unwrap(),
        ],
    )
    .unwrap();
    assert_eq!(
        msg,
        format!(
            "exported {} audit events to {}\n",
            recs.len(),
            out.display()
        )
    );
    assert_eq!(mode(&out), 0o600);
    let v: Value = serde_json::from_str(&fs::read_to_string(&out).unwrap()).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), recs.len());
    for (a, r) in arr.iter().zip(&recs) {
        schema::validate(a).unwrap();
        assert_eq!(&serde_json::from_value::<Record>(a.clone()).unwrap(), r);
    }
    // Default format is JSON; filters apply.
    let out2 = dir.path().join("only.json");
    run(
        &cfg,
        &[
            "export",
            "--output",
            out2.to_str().unwrap(),
            "--filter",
            "GATEWAY_START",
        ],
    )
    .unwrap();
    let v: Value = serde_json::from_str(&fs::read_to_string(&out2).unwrap()).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["event"], "GATEWAY_START");
}

#[test]
fn export_csv_has_a_header_and_correct_quoting() {
    let dir = temp_dir();
    let (cfg, recs) = filled_log(dir.path());
    let out = dir.path().join("export.csv");
    run(
        &cfg,
        &[
            "export",
            "--format",
            "csv",
            "--output",
            out.to_str().unwrap(),
        ],
    )
    .unwrap();
    let raw = fs::read_to_string(&out).unwrap();
    assert!(
        raw.starts_with("ts,event,eventId,sessionId,skill,context\r\n"),
        "{raw}"
    );
    // RFC 4180: a field with a comma, quote or newline is quoted, quotes doubled.
    assert!(raw.contains(",\"we,ird\"\"skill\","), "{raw}");
    let mut rd = csv::Reader::from_path(&out).unwrap();
    let rows: Vec<csv::StringRecord> = rd.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), recs.len());
    for (row, r) in rows.iter().zip(&recs) {
        assert_eq!(&row[0], r.ts);
        assert_eq!(&row[1], r.event.as_str());
        assert_eq!(&row[2], r.event_id);
        assert_eq!(&row[3], r.session_id);
        assert_eq!(&row[4], r.skill.as_deref().unwrap_or(""));
        let ctx: serde_json::Map<String, Value> = serde_json::from_str(&row[5]).unwrap();
        assert_eq!(ctx, r.fields);
    }
}

#[test]
fn export_to_a_bad_destination_fails_and_leaves_nothing() {
    let dir = temp_dir();
    let (cfg, _) = filled_log(dir.path());
    let bad = dir.path().join("missing-dir/out.json");
    let err = run(&cfg, &["export", "--output", bad.to_str().unwrap()])
        .unwrap_err()
        .to_string();
    assert!(err.contains(&bad.display().to_string()), "{err}");
    assert!(!dir.path().join("missing-dir").exists());
    let entries: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        entries
            .iter()
            .all(|n| !n.to_string_lossy().contains(".tmp.")),
        "{entries:?}"
    );
}

#[test]
fn tail_prints_the_backlog_then_follows_new_events() {
    let dir = temp_dir();
    let (cfg, recs) = filled_log(dir.path());
    let log = AuditLog::open(cfg.clone()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let tail = {
        let cfg = cfg.clone();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut out = Vec::new();
            cli::run_until(&cfg, &AuditCommand::Tail, &mut out, &|| {
                stop.load(Ordering::SeqCst)
            })
            .unwrap();
            String::from_utf8(out).unwrap()
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let new: Vec<Record> = (0..5)
        .map(|i| log.append(load_event("sess_tail", i)).unwrap())
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(400));
    stop.store(true, Ordering::SeqCst);
    let text = tail.join().unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), cli::TAIL_BACKLOG + 5, "{text}");
    for (line, r) in lines
        .iter()
        .zip(recs[recs.len() - cli::TAIL_BACKLOG..].iter().chain(&new))
    {
        assert!(
            line.contains(&r.ts) && line.contains(r.event.as_str()),
            "{line} vs {r:?}"
        );
    }
}
