//! Reading the log: current file + rotated files + `.gz`, oldest first; `tail -f` across rotation.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flate2::read::MultiGzDecoder;
use time::OffsetDateTime;

use super::files::{self, FileLock, list_rotated, log_dir};
use super::{AuditConfig, AuditError, EventType, Record, time_fmt};

/// What to show. All conditions must hold; `last` keeps the newest N matching records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    pub last: Option<usize>,
    /// Empty = every type.
    pub filter: Vec<EventType>,
    /// Inclusive.
    pub since: Option<OffsetDateTime>,
    /// Inclusive.
    pub until: Option<OffsetDateTime>,
}

impl Query {
    fn matches(&self, r: &Record, path: &Path, line: u64) -> Result<bool, AuditError> {
        if !self.filter.is_empty() && !self.filter.contains(&r.event) {
            return Ok(false);
        }
        if self.since.is_none() && self.until.is_none() {
            return Ok(true);
        }
        let ts = time_fmt::parse_rfc3339(&r.ts).map_err(|e| AuditError::Corrupt {
            path: path.to_path_buf(),
            line,
            cause: format!("ts {:?} is not RFC 3339: {e}", r.ts),
        })?;
        Ok(self.since.is_none_or(|s| ts >= s) && self.until.is_none_or(|u| ts <= u))
    }
}

enum Source {
    Plain(PathBuf, File),
    Gz(PathBuf, File),
}

fn open_opt(path: &Path) -> Result<Option<File>, AuditError> {
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(AuditError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Opens every file to read, oldest first, under a shared lock so that a rotation cannot make a
/// file appear twice or not at all. Rotated files older than `since` are skipped.
fn open_sources(
    cfg: &AuditConfig,
    since: Option<OffsetDateTime>,
) -> Result<Vec<Source>, AuditError> {
    let lock_file = File::open(files::lock_path(&cfg.path)).ok();
    let _guard = match &lock_file {
        Some(f) => Some(FileLock::shared(f).map_err(|source| AuditError::Read {
            path: files::lock_path(&cfg.path),
            source,
        })?),
        None => None,
    };
    let rotated = list_rotated(&cfg.path).map_err(|source| AuditError::Read {
        path: log_dir(&cfg.path),
        source,
    })?;
    let mut out = Vec::new();
    for r in rotated {
        if since.is_some_and(|s| r.rotated_at < s) {
            continue;
        }
        // Prefer the plain file while it exists: gzip renames `X.gz` into place before it
        // unlinks `X`, so falling back to `.gz` on NotFound never misses or repeats events.
        if r.has_plain
            && let Some(f) = open_opt(&r.plain)?
        {
            out.push(Source::Plain(r.plain.clone(), f));
            continue;
        }
        let gz = r.gz();
        if let Some(f) = open_opt(&gz)? {
            out.push(Source::Gz(gz, f));
        }
    }
    if let Some(f) = open_opt(&cfg.path)? {
        out.push(Source::Plain(cfg.path.clone(), f));
    }
    Ok(out)
}

/// Calls `each` for every complete record of a source; a partial last line is skipped.
fn read_source(
    src: Source,
    each: &mut dyn FnMut(Record, &Path, u64) -> Result<(), AuditError>,
) -> Result<(), AuditError> {
    let (path, mut reader): (PathBuf, Box<dyn BufRead>) = match src {
        Source::Plain(p, f) => (p, Box::new(BufReader::with_capacity(256 * 1024, f))),
        Source::Gz(p, f) => (
            p,
            Box::new(BufReader::with_capacity(
                256 * 1024,
                MultiGzDecoder::new(BufReader::new(f)),
            )),
        ),
    };
    let mut line = Vec::with_capacity(512);
    let mut no = 0u64;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|source| AuditError::Read {
                path: path.clone(),
                source,
            })?;
        if n == 0 || line.last() != Some(&b'\n') {
            // End of file, or a partial line still being written (or torn by a crash).
            return Ok(());
        }
        no += 1;
        let Some(rec) = parse_line(&line, &path, no)? else {
            continue;
        };
        each(rec, &path, no)?;
    }
}

fn parse_line(line: &[u8], path: &Path, no: u64) -> Result<Option<Record>, AuditError> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice::<Record>(line)
        .map(Some)
        .map_err(|e| AuditError::Corrupt {
            path: path.to_path_buf(),
            line: no,
            cause: e.to_string(),
        })
}

/// Current file + rotated files + .gz, oldest first; a partial last line is skipped.
pub fn query(cfg: &AuditConfig, q: &Query) -> Result<Vec<Record>, AuditError> {
    let sources = open_sources(cfg, q.since)?;
    match q.last {
        None => {
            let mut out = Vec::new();
            for src in sources {
                read_source(src, &mut |r, p, no| {
                    if q.matches(&r, p, no)? {
                        out.push(r);
                    }
                    Ok(())
                })?;
            }
            Ok(out)
        }
        Some(n) => {
            // Newest file first; stop as soon as N matching records are found.
            let mut chunks: Vec<VecDeque<Record>> = Vec::new();
            let mut found = 0usize;
            for src in sources.into_iter().rev() {
                if found >= n {
                    break;
                }
                let want = n - found;
                let mut ring: VecDeque<Record> = VecDeque::with_capacity(want.min(4096));
                read_source(src, &mut |r, p, no| {
                    if q.matches(&r, p, no)? {
                        if ring.len() == want {
                            ring.pop_front();
                        }
                        ring.push_back(r);
                    }
                    Ok(())
                })?;
                found += ring.len();
                chunks.push(ring);
            }
            Ok(chunks.into_iter().rev().flatten().collect())
        }
    }
}

const POLL: Duration = Duration::from_millis(50);

/// `tail -f` that follows across rotation until `stop()` returns true.
pub fn follow(
    cfg: &AuditConfig,
    stop: &dyn Fn() -> bool,
    on: &mut dyn FnMut(&Record),
) -> Result<(), AuditError> {
    follow_with_backlog(cfg, 0, stop, on)
}

/// Like [`follow`], but first emits the last `backlog` records of the current file.
pub fn follow_with_backlog(
    cfg: &AuditConfig,
    backlog: usize,
    stop: &dyn Fn() -> bool,
    on: &mut dyn FnMut(&Record),
) -> Result<(), AuditError> {
    let path = &cfg.path;
    let read_err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| AuditError::Read { path: p, source }
    };
    // Wait for the file to exist.
    let mut file = loop {
        if let Some(f) = open_opt(path)? {
            break f;
        }
        if stop() {
            return Ok(());
        }
        std::thread::sleep(POLL);
    };
    let mut id = files::file_id(&file.metadata().map_err(read_err(path))?);
    let mut tail = LineBuf::default();
    if backlog > 0 {
        let mut ring: VecDeque<Record> = VecDeque::new();
        tail.read_all(&mut file, path, &mut |r| {
            if ring.len() == backlog {
                ring.pop_front();
            }
            ring.push_back(r);
        })?;
        for r in &ring {
            on(r);
        }
    } else {
        let len = file.seek(SeekFrom::End(0)).map_err(read_err(path))?;
        if len > 0 {
            let mut last = [0u8; 1];
            file.read_exact_at(&mut last, len - 1)
                .map_err(read_err(path))?;
            // Started in the middle of a line being written: drop its beginning.
            tail.skip_first = last[0] != b'\n';
        }
    }
    loop {
        let got = tail.read_all(&mut file, path, &mut |r| on(&r))?;
        if got > 0 {
            continue;
        }
        if stop() {
            return Ok(());
        }
        match fs::metadata(path) {
            Ok(m) if files::file_id(&m) != id => {
                // Rotated: writers finished with the old file before renaming it (under the
                // lock), so drain it, then continue from the start of the new one.
                tail.read_all(&mut file, path, &mut |r| on(&r))?;
                if let Some(f) = open_opt(path)? {
                    id = files::file_id(&f.metadata().map_err(read_err(path))?);
                    file = f;
                    tail = LineBuf::default();
                    continue;
                }
            }
            Ok(m) => {
                let pos = file.stream_position().map_err(read_err(path))?;
                if m.len() < pos {
                    // A torn tail was cut by a writer's repair: forget the partial line.
                    file.seek(SeekFrom::Start(m.len()))
                        .map_err(read_err(path))?;
                    tail.partial.clear();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(AuditError::Read {
                    path: path.clone(),
                    source,
                });
            }
        }
        std::thread::sleep(POLL);
    }
}

/// Splits a growing file into complete lines.
#[derive(Default)]
struct LineBuf {
    partial: Vec<u8>,
    line_no: u64,
    skip_first: bool,
}

impl LineBuf {
    /// Reads to the current end of file; returns the number of bytes read.
    fn read_all(
        &mut self,
        file: &mut File,
        path: &Path,
        on: &mut dyn FnMut(Record),
    ) -> Result<usize, AuditError> {
        let mut buf = [0u8; 64 * 1024];
        let mut total = 0;
        loop {
            let n = file.read(&mut buf).map_err(|source| AuditError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
            let mut rest = &buf[..n];
            while let Some(i) = rest.iter().position(|b| *b == b'\n') {
                self.partial.extend_from_slice(&rest[..=i]);
                rest = &rest[i + 1..];
                let line = std::mem::take(&mut self.partial);
                if std::mem::take(&mut self.skip_first) {
                    continue;
                }
                self.line_no += 1;
                if let Some(rec) = parse_line(&line, path, self.line_no)? {
                    on(rec);
                }
            }
            self.partial.extend_from_slice(rest);
        }
    }
}
