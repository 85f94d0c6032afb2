//! `ironclaw audit …` subcommands. The lead's CLI nests [`AuditCommand`] and calls [`run`].

use std::cell::RefCell;
use std::fs::{self, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::export::{self, Format};
use super::read::{self, Query};
use super::{AuditConfig, AuditError, EventType, Record, time_fmt};

/// How many past events `audit tail` prints before following.
pub const TAIL_BACKLOG: usize = 10;

/// `ironclaw audit <command>`.
#[derive(clap::Subcommand, Clone, Debug, PartialEq, Eq)]
pub enum AuditCommand {
    /// Stream events as they are written (the last 10 first); follows rotation. Ctrl-C stops.
    Tail,
    /// Show events from the current, rotated and gzipped logs, oldest first.
    Show(ShowArgs),
    /// Write events to a file as JSON (one array) or CSV.
    Export(ExportArgs),
}

/// Filters shared by `show` and `export`.
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct FilterArgs {
    /// Only these event types, comma separated (e.g. ALLOWLIST_VIOLATION,NETWORK_BLOCK).
    #[arg(long, value_name = "TYPES", value_delimiter = ',', value_parser = parse_event_type)]
    pub filter: Vec<EventType>,
    /// Only events at or after this time (RFC 3339, e.g. 2026-04-06T00:00:00Z).
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    pub since: Option<OffsetDateTime>,
    /// Only events at or before this time (RFC 3339, e.g. 2026-04-06T12:00:00Z).
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    pub until: Option<OffsetDateTime>,
    /// Only the newest N matching events.
    #[arg(long, value_name = "N", value_parser = parse_last)]
    pub last: Option<usize>,
}

/// `audit show`.
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct ShowArgs {
    #[command(flatten)]
    pub filters: FilterArgs,
    /// One JSON object per line (the log's own format) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `audit export`.
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct ExportArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// Destination file (written atomically, mode 0600); `-` writes to standard output.
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,
    #[command(flatten)]
    pub filters: FilterArgs,
}

fn parse_event_type(s: &str) -> Result<EventType, String> {
    s.trim().parse::<EventType>().map_err(|e| e.to_string())
}

fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    time_fmt::parse_rfc3339(s).map_err(|e| {
        format!("{s:?} is not an RFC 3339 timestamp ({e}); use e.g. 2026-04-06T00:00:00Z")
    })
}

fn parse_last(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "{s:?} is not a number of events; use a whole number of at least 1, e.g. --last 100"
        )),
    }
}

impl FilterArgs {
    /// The query, after checking that `--since` is not after `--until`.
    pub fn to_query(&self) -> Result<Query, AuditError> {
        if let (Some(s), Some(u)) = (self.since, self.until)
            && s > u
        {
            return Err(AuditError::InvalidArgument {
                flag: "--since/--until",
                message: format!(
                    "--since {} is after --until {}",
                    time_fmt::format_ts(s),
                    time_fmt::format_ts(u)
                ),
            });
        }
        Ok(Query {
            last: self.last,
            filter: self.filter.clone(),
            since: self.since,
            until: self.until,
        })
    }
}

pub fn run(cfg: &AuditConfig, cmd: &AuditCommand, out: &mut dyn Write) -> Result<(), AuditError> {
    run_until(cfg, cmd, out, &|| false)
}

/// [`run`] with a stop condition for `tail` (checked between polls).
pub fn run_until(
    cfg: &AuditConfig,
    cmd: &AuditCommand,
    out: &mut dyn Write,
    stop: &dyn Fn() -> bool,
) -> Result<(), AuditError> {
    match cmd {
        AuditCommand::Tail => {
            let failed: RefCell<Option<std::io::Error>> = RefCell::new(None);
            let out = RefCell::new(out);
            read::follow_with_backlog(
                cfg,
                TAIL_BACKLOG,
                &|| stop() || failed.borrow().is_some(),
                &mut |r| {
                    if failed.borrow().is_some() {
                        return;
                    }
                    let mut o = out.borrow_mut();
                    let res = writeln!(o, "{}", human_line(r)).and_then(|()| o.flush());
                    if let Err(e) = res {
                        *failed.borrow_mut() = Some(e);
                    }
                },
            )?;
            match failed.into_inner() {
                Some(e) => Err(AuditError::Output(e)),
                None => Ok(()),
            }
        }
        AuditCommand::Show(args) => {
            let q = args.filters.to_query()?;
            let records = read::query(cfg, &q)?;
            let mut w = BufWriter::new(out);
            for r in &records {
                if args.json {
                    serde_json::to_writer(&mut w, r)
                        .map_err(|e| AuditError::Output(std::io::Error::other(e)))?;
                    w.write_all(b"\n").map_err(AuditError::Output)?;
                } else {
                    writeln!(w, "{}", human_line(r)).map_err(AuditError::Output)?;
                }
            }
            w.flush().map_err(AuditError::Output)
        }
        AuditCommand::Export(args) => {
            let q = args.filters.to_query()?;
            let records = read::query(cfg, &q)?;
            if args.output.as_os_str() == "-" {
                return export::write(&records, args.format, out);
            }
            write_atomically(&args.output, |w| export::write(&records, args.format, w))?;
            writeln!(
                out,
                "exported {} audit events to {}",
                records.len(),
                args.output.display()
            )
            .map_err(AuditError::Output)
        }
    }
}

/// Writes `path` via a temporary file in the same directory and a rename: the destination
/// either gets the whole export or is left untouched.
fn write_atomically(
    path: &Path,
    body: impl FnOnce(&mut dyn Write) -> Result<(), AuditError>,
) -> Result<(), AuditError> {
    let export_err = |source| AuditError::Export {
        path: path.to_path_buf(),
        source,
    };
    let name = path
        .file_name()
        .ok_or_else(|| AuditError::InvalidArgument {
            flag: "--output",
            message: format!("{} does not name a file", path.display()),
        })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(export_err)?;
    let result = (|| {
        let mut w = BufWriter::new(file);
        body(&mut w)?;
        let file = w.into_inner().map_err(|e| export_err(e.into_error()))?;
        file.sync_all().map_err(export_err)?;
        fs::rename(&tmp, path).map_err(export_err)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A string safe to print on a terminal: as is when plain, JSON-escaped when it has control
/// characters (so a hostile value cannot inject terminal escape sequences).
fn safe(s: &str) -> String {
    if s.chars().any(char::is_control) || s.is_empty() || s.contains(' ') {
        serde_json::Value::String(s.to_string()).to_string()
    } else {
        s.to_string()
    }
}

/// `2026-04-06T11:23:01.447Z ALLOWLIST_VIOLATION session=sess_x skill=himalaya action="network" …`
pub fn human_line(r: &Record) -> String {
    let mut s = format!(
        "{} {:<20} session={} skill={}",
        r.ts,
        r.event.as_str(),
        safe(&r.session_id),
        r.skill.as_deref().map(safe).unwrap_or_else(|| "-".into())
    );
    for (k, v) in &r.fields {
        s.push(' ');
        s.push_str(&safe(k));
        s.push('=');
        s.push_str(&v.to_string());
    }
    s
}
