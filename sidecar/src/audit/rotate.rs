//! Rotation, gzip of rotated files and deletion after `keepDays`, plus the background worker that
//! does the slow parts off the append path.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::Compression;
use flate2::write::GzEncoder;
use time::OffsetDateTime;

use super::AuditConfig;
use super::files::{self, list_rotated, log_dir};

/// Renames the current file to a fresh rotated name. Call with the exclusive lock held.
pub(crate) fn rotate_current(path: &Path, now: OffsetDateTime) -> io::Result<PathBuf> {
    let target = files::rotated_name(path, now);
    fs::rename(path, &target)?;
    files::sync_dir(&log_dir(path))?;
    Ok(target)
}

/// Gzips a rotated file: `X` → `X.gz.tmp.<pid>` (fsynced) → rename to `X.gz` → unlink `X`.
/// Readers prefer `X` while it exists, so an event is never read twice or missed.
pub(crate) fn compress(plain: &Path) -> io::Result<()> {
    let src = match File::open(plain) {
        Ok(f) => f,
        // Another process compressed (or expired) it first.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let gz = {
        let mut s = plain.as_os_str().to_os_string();
        s.push(".gz");
        PathBuf::from(s)
    };
    let tmp = files::gz_tmp_name(plain);
    let result = (|| -> io::Result<()> {
        let out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        let mut enc = GzEncoder::new(
            BufWriter::with_capacity(256 * 1024, out),
            Compression::fast(),
        );
        io::copy(&mut BufReader::with_capacity(256 * 1024, src), &mut enc)?;
        let out = enc.finish()?.into_inner().map_err(|e| e.into_error())?;
        out.sync_all()?;
        fs::rename(&tmp, &gz)?;
        let dir = log_dir(plain);
        files::sync_dir(&dir)?;
        match fs::remove_file(plain) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        files::sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Deletes rotated files (plain and gz) rotated more than `keep_days` before `now`.
/// Returns the deleted paths.
pub(crate) fn expire(cfg: &AuditConfig, now: OffsetDateTime) -> io::Result<Vec<PathBuf>> {
    let cutoff = now - time::Duration::days(i64::from(cfg.keep_days));
    let mut deleted = Vec::new();
    for r in list_rotated(&cfg.path)? {
        if r.rotated_at >= cutoff {
            continue;
        }
        for (present, p) in [(r.has_plain, r.plain.clone()), (r.has_gz, r.gz())] {
            if !present {
                continue;
            }
            match fs::remove_file(&p) {
                Ok(()) => deleted.push(p),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    if !deleted.is_empty() {
        files::sync_dir(&log_dir(&cfg.path))?;
    }
    Ok(deleted)
}

/// Rotated files still waiting for gzip (left by a crash), after removing dead processes' temp
/// files.
pub(crate) fn pending_compression(cfg: &AuditConfig) -> io::Result<Vec<PathBuf>> {
    for stale in files::stale_gz_tmps(&cfg.path)? {
        match fs::remove_file(&stale) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if !cfg.compress {
        return Ok(Vec::new());
    }
    Ok(list_rotated(&cfg.path)?
        .into_iter()
        .filter(|r| r.has_plain)
        .map(|r| r.plain)
        .collect())
}

enum Job {
    Compress(PathBuf),
    Expire,
    Barrier(Sender<()>),
}

/// Background thread for gzip and expiry. Dropping it finishes the queued work.
pub(crate) struct Worker {
    tx: Option<Sender<Job>>,
    handle: Option<JoinHandle<()>>,
    last_error: Arc<Mutex<Option<String>>>,
}

impl Worker {
    pub(crate) fn start(cfg: AuditConfig) -> io::Result<Worker> {
        let (tx, rx) = mpsc::channel();
        let last_error = Arc::new(Mutex::new(None));
        let err = Arc::clone(&last_error);
        let handle = std::thread::Builder::new()
            .name("audit-maintenance".into())
            .spawn(move || run(cfg, rx, err))?;
        Ok(Worker {
            tx: Some(tx),
            handle: Some(handle),
            last_error,
        })
    }

    fn send(&self, job: Job) {
        if let Some(tx) = &self.tx {
            // The thread only exits when the sender is dropped, so this cannot fail before drop.
            let _ = tx.send(job);
        }
    }

    pub(crate) fn compress(&self, plain: PathBuf) {
        self.send(Job::Compress(plain));
    }

    pub(crate) fn expire(&self) {
        self.send(Job::Expire);
    }

    /// Waits until every job queued before this call is done.
    pub(crate) fn wait_idle(&self) {
        let (tx, rx) = mpsc::channel();
        self.send(Job::Barrier(tx));
        let _ = rx.recv();
    }

    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn run(cfg: AuditConfig, rx: Receiver<Job>, last_error: Arc<Mutex<Option<String>>>) {
    let record = |msg: String| {
        *last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg);
    };
    while let Ok(job) = rx.recv() {
        match job {
            Job::Compress(p) => {
                if let Err(e) = compress(&p) {
                    record(format!(
                        "gzip of rotated audit log {} failed (it stays uncompressed): {e}",
                        p.display()
                    ));
                }
            }
            Job::Expire => {
                if let Err(e) = expire(&cfg, OffsetDateTime::now_utc()) {
                    record(format!(
                        "deleting audit logs older than {} days next to {} failed: {e}",
                        cfg.keep_days,
                        cfg.path.display()
                    ));
                }
            }
            Job::Barrier(done) => {
                let _ = done.send(());
            }
        }
    }
}
