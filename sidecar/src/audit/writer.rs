//! The writer: group commit inside a process, `flock` between processes, fdatasync before any
//! caller is acknowledged.
//!
//! Each `append` serialises its record into a shared buffer and waits. Whichever caller finds no
//! write in progress becomes the leader: it takes the whole buffer, writes it with one `write`
//! under the exclusive file lock, `fdatasync`s, and wakes everyone whose line was in it. Callers
//! arriving meanwhile form the next batch, so concurrent callers share fsyncs.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::event::{RESERVED_KEYS, Record};
use super::files::{self, FileId, FileLock, log_dir};
use super::rotate::{self, Worker};
use super::{AuditConfig, AuditError, Event, new_event_id, time_fmt};

/// How often a long-running writer looks for files past `keepDays` even without rotating.
const EXPIRE_EVERY: Duration = Duration::from_secs(3600);
/// How often the path is `stat`ed even when no rotation was announced. A path lookup per batch
/// costs several percent of an fdatasync, so rotations are announced through the lock file.
const PATH_CHECK_EVERY: Duration = Duration::from_secs(1);
/// How many failed batches are remembered for callers that have not woken up yet.
const FAILURES_KEPT: usize = 1024;

/// The audit log of one process. `Send + Sync`; share it as `Arc<AuditLog>`.
pub struct AuditLog {
    cfg: AuditConfig,
    state: Mutex<State>,
    /// Waiters of batch `b` sleep on `cond[b % 2]`: finishing batch `b` wakes exactly its own
    /// callers plus one caller of batch `b + 1` (the next leader), not every waiter.
    cond: [Condvar; 2],
    io: Mutex<Io>,
    /// `audit.log.lock`, flocked around every batch (and shared-locked by readers).
    lock_file: File,
    worker: Worker,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").field("cfg", &self.cfg).finish()
    }
}

struct State {
    /// Serialised lines waiting for the next batch.
    pending: Vec<u8>,
    /// Sequence number of the newest line in `pending` (or written).
    next_seq: u64,
    /// Every line up to this sequence number has been written (or failed).
    done_seq: u64,
    /// A leader is writing a batch.
    writing: bool,
    /// Number of the batch that new lines join (the one after the batch being written).
    open_batch: u64,
    /// Callers asleep on `cond[0]` / `cond[1]` (a lone caller then costs no futex wake-ups).
    sleepers: [usize; 2],
    failures: VecDeque<Failure>,
}

struct Failure {
    first: u64,
    last: u64,
    cause: String,
}

struct Io {
    file: File,
    id: FileId,
    /// Length after our last write; a different length means another process wrote.
    expected_len: u64,
    last_expire: Instant,
    /// Rotation generation last seen in the lock file.
    generation: u64,
    /// When the path was last `stat`ed (catches a log renamed by hand).
    last_path_check: Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn not_writable(path: &Path) -> impl FnOnce(io::Error) -> AuditError + '_ {
    move |source| AuditError::NotWritable {
        path: path.to_path_buf(),
        source,
    }
}

/// Opens the current file, creating it (0600, directory fsynced) when missing.
fn open_current(path: &Path) -> io::Result<(File, FileId)> {
    let (file, created) = files::open_append(path)?;
    if created {
        files::sync_dir(&log_dir(path))?;
    }
    let id = files::file_id(&file.metadata()?);
    Ok((file, id))
}

impl AuditLog {
    /// Creates missing parent dirs (0700) and the file (0600), repairs a torn tail, and fails with
    /// a clear message ("audit log <path> is not writable: <cause>; IronClaw will not start
    /// without a writable audit log") when it cannot write.
    pub fn open(cfg: AuditConfig) -> Result<AuditLog, AuditError> {
        cfg.validate()?;
        let path = cfg.path.clone();
        files::create_dirs(&log_dir(&path)).map_err(not_writable(&path))?;
        let lock_file =
            files::open_lock_file(&files::lock_path(&path)).map_err(not_writable(&path))?;
        files::restrict_mode(&lock_file).map_err(|(mode, source)| AuditError::Insecure {
            path: files::lock_path(&path),
            mode,
            source,
        })?;
        let (file, id, len, generation, to_compress) = {
            let _guard = FileLock::exclusive(&lock_file).map_err(not_writable(&path))?;
            let (file, id) = open_current(&path).map_err(not_writable(&path))?;
            files::restrict_mode(&file).map_err(|(mode, source)| AuditError::Insecure {
                path: path.clone(),
                mode,
                source,
            })?;
            files::repair_torn_tail(&path).map_err(not_writable(&path))?;
            let len = file.metadata().map_err(not_writable(&path))?.len();
            rotate::expire(&cfg, OffsetDateTime::now_utc()).map_err(not_writable(&path))?;
            let to_compress = rotate::pending_compression(&cfg).map_err(not_writable(&path))?;
            // Read under the lock: a rotation after it is then seen by the first append.
            let generation = files::read_generation(&lock_file).map_err(not_writable(&path))?;
            (file, id, len, generation, to_compress)
        };
        let worker = Worker::start(cfg.clone()).map_err(not_writable(&path))?;
        for p in to_compress {
            worker.compress(p);
        }
        Ok(AuditLog {
            cfg,
            state: Mutex::new(State {
                pending: Vec::with_capacity(64 * 1024),
                next_seq: 0,
                done_seq: 0,
                writing: false,
                open_batch: 0,
                sleepers: [0, 0],
                failures: VecDeque::new(),
            }),
            cond: [Condvar::new(), Condvar::new()],
            io: Mutex::new(Io {
                file,
                id,
                expected_len: len,
                last_expire: Instant::now(),
                generation,
                last_path_check: Instant::now(),
            }),
            lock_file,
            worker,
        })
    }

    pub fn config(&self) -> &AuditConfig {
        &self.cfg
    }

    /// Returns only after the line is durable on disk (fdatasync). Concurrent callers in one
    /// process share fsyncs (group commit); several processes append under a file lock and never
    /// interleave; rotation (maxSizeMb), gzip of rotated files (compress) and deletion after
    /// keepDays happen here or in a background task without losing or duplicating an event.
    pub fn append(&self, ev: Event) -> Result<Record, AuditError> {
        if let Some(key) = ev
            .fields
            .keys()
            .find(|k| RESERVED_KEYS.contains(&k.as_str()))
        {
            return Err(AuditError::ReservedField {
                event: ev.event.as_str(),
                key: key.clone(),
            });
        }
        let mut rec = Record {
            ts: String::new(),
            event: ev.event,
            event_id: String::new(),
            session_id: ev.session_id,
            skill: ev.skill,
            fields: ev.fields,
        };
        // Stamp and serialise outside the shared lock: producers only contend for the memcpy.
        let now = OffsetDateTime::now_utc();
        rec.ts = time_fmt::format_ts(now);
        rec.event_id = new_event_id(time_fmt::unix_ms(now));
        let mut line = Vec::with_capacity(256);
        serde_json::to_writer(&mut line, &rec)
            .map_err(|e| self.write_error(format!("cannot serialise the event: {e}")))?;
        line.push(b'\n');
        let mut st = lock(&self.state);
        st.pending.extend_from_slice(&line);
        st.next_seq += 1;
        let my_seq = st.next_seq;
        let my_batch = st.open_batch;
        loop {
            if st.done_seq >= my_seq {
                return match st
                    .failures
                    .iter()
                    .find(|f| f.first <= my_seq && my_seq <= f.last)
                {
                    Some(f) => Err(self.write_error(f.cause.clone())),
                    None => Ok(rec),
                };
            }
            if st.writing {
                let parity = (my_batch % 2) as usize;
                st.sleepers[parity] += 1;
                st = self.cond[parity]
                    .wait(st)
                    .unwrap_or_else(PoisonError::into_inner);
                st.sleepers[parity] -= 1;
                continue;
            }
            // Become the leader for everything pending.
            st.writing = true;
            let batch_no = st.open_batch;
            st.open_batch += 1;
            let first = st.done_seq + 1;
            let last = st.next_seq;
            let mut batch = std::mem::take(&mut st.pending);
            drop(st);
            let result = self.write_batch(&batch);
            batch.clear();
            st = lock(&self.state);
            if st.pending.is_empty() {
                // Keep the allocation for the next batch.
                st.pending = batch;
            }
            st.writing = false;
            st.done_seq = last;
            if let Err(cause) = result {
                if st.failures.len() >= FAILURES_KEPT {
                    st.failures.pop_front();
                }
                st.failures.push_back(Failure { first, last, cause });
            }
            let (done, next) = ((batch_no % 2) as usize, ((batch_no + 1) % 2) as usize);
            if st.sleepers[done] > 0 {
                self.cond[done].notify_all();
            }
            if st.sleepers[next] > 0 {
                self.cond[next].notify_one();
            }
        }
    }

    fn write_error(&self, cause: String) -> AuditError {
        AuditError::Write {
            path: self.cfg.path.clone(),
            cause,
        }
    }

    /// Writes one batch durably under the exclusive file lock. Nothing half-written is left.
    fn write_batch(&self, batch: &[u8]) -> Result<(), String> {
        let path = &self.cfg.path;
        let mut guard = lock(&self.io);
        let io = &mut *guard;
        let _flock = FileLock::exclusive(&self.lock_file)
            .map_err(|e| format!("cannot lock the log: {e}"))?;
        // Another process's rotation bumps the generation in the lock file (before renaming);
        // otherwise our descriptor is still the current file unless it was deleted or renamed
        // by hand, which the link count and a periodic path check catch.
        let generation = files::read_generation(&self.lock_file)
            .map_err(|e| format!("cannot read the lock file: {e}"))?;
        let mut len =
            if generation != io.generation || io.last_path_check.elapsed() >= PATH_CHECK_EVERY {
                io.generation = generation;
                io.last_path_check = Instant::now();
                self.ensure_current(io)?
            } else {
                let m = io
                    .file
                    .metadata()
                    .map_err(|e| format!("cannot stat the log: {e}"))?;
                if m.nlink() == 0 {
                    self.ensure_current(io)?
                } else {
                    m.len()
                }
            };
        if len != io.expected_len && len > 0 {
            // Another process wrote since; if it died mid-write, cut its partial line first.
            let mut last = [0u8; 1];
            io.file
                .read_exact_at(&mut last, len - 1)
                .map_err(|e| format!("cannot read the log tail: {e}"))?;
            if last[0] != b'\n' {
                files::repair_torn_tail(path)
                    .map_err(|e| format!("cannot repair a torn line at the end: {e}"))?;
                len = io
                    .file
                    .metadata()
                    .map_err(|e| format!("cannot stat the log: {e}"))?
                    .len();
            }
        }
        let mut rotated = None;
        if len > 0 && len + batch.len() as u64 > self.cfg.max_bytes() {
            // Announce first: a crash between the two steps then costs only a needless stat.
            io.generation = io.generation.wrapping_add(1);
            files::write_generation(&self.lock_file, io.generation)
                .map_err(|e| format!("cannot write the lock file: {e}"))?;
            let target = rotate::rotate_current(path, OffsetDateTime::now_utc())
                .map_err(|e| format!("rotation failed: {e}"))?;
            let (file, id) = open_current(path)
                .map_err(|e| format!("cannot create a new log after rotation: {e}"))?;
            io.file = file;
            io.id = id;
            len = 0;
            rotated = Some(target);
        }
        let written = io.file.write_all(batch).and_then(|()| io.file.sync_data());
        if let Err(e) = written {
            // Leave no partial batch behind: the callers are told it failed.
            let _ = io.file.set_len(len);
            let _ = io.file.sync_data();
            io.expected_len = len;
            return Err(format!("write failed: {e}"));
        }
        io.expected_len = len + batch.len() as u64;
        drop(_flock);
        if let Some(target) = rotated {
            if self.cfg.compress {
                self.worker.compress(target);
            }
            self.worker.expire();
            io.last_expire = Instant::now();
        } else if io.last_expire.elapsed() >= EXPIRE_EVERY {
            self.worker.expire();
            io.last_expire = Instant::now();
        }
        Ok(())
    }

    /// Follows a rotation done by another process (or a deleted file): reopen the path.
    /// Returns the current file's length (one `stat` when nothing changed).
    fn ensure_current(&self, io: &mut Io) -> Result<u64, String> {
        let path = &self.cfg.path;
        match fs::metadata(path) {
            Ok(m) if files::file_id(&m) == io.id => return Ok(m.len()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot stat the log: {e}")),
        }
        {
            let (file, id) =
                open_current(path).map_err(|e| format!("cannot reopen the log: {e}"))?;
            files::restrict_mode(&file)
                .map_err(|(mode, e)| format!("log has mode {mode:04o}, cannot set 0600: {e}"))?;
            io.file = file;
            io.id = id;
            io.expected_len = u64::MAX;
        }
        io.file
            .metadata()
            .map(|m| m.len())
            .map_err(|e| format!("cannot stat the log: {e}"))
    }

    /// Waits until queued gzip and expiry work is done (tests, benchmarks, orderly shutdown).
    pub fn wait_maintenance(&self) {
        self.worker.wait_idle();
    }

    /// The last gzip/expiry failure, if any (events are never lost by these: a rotated file that
    /// could not be gzipped stays readable uncompressed).
    pub fn maintenance_error(&self) -> Option<String> {
        self.worker.last_error()
    }

    /// The paths of the log's rotated files, oldest first.
    pub fn rotated_files(&self) -> Result<Vec<PathBuf>, AuditError> {
        files::list_rotated(&self.cfg.path)
            .map(|v| {
                v.into_iter()
                    .map(|r| if r.has_plain { r.plain.clone() } else { r.gz() })
                    .collect()
            })
            .map_err(|source| AuditError::Read {
                path: log_dir(&self.cfg.path),
                source,
            })
    }
}
