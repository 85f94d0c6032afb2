//! File-system pieces: directory and file creation with safe modes, the lock file, listing of
//! rotated files, torn-tail repair.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};
use time::OffsetDateTime;

use super::time_fmt;

/// The directory holding the log (`.` for a bare file name).
pub(crate) fn log_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s: OsString = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// `audit.log.lock`: a stable file to `flock` (the log itself is renamed by rotation).
pub(crate) fn lock_path(path: &Path) -> PathBuf {
    with_suffix(path, ".lock")
}

/// Creates missing directories with mode 0700.
pub(crate) fn create_dirs(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// fsync of a directory, making a create/rename/unlink in it durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Opens (creating with 0600) a file for appending; reports whether it was created.
pub(crate) fn open_append(path: &Path) -> io::Result<(File, bool)> {
    match OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => Ok((f, true)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let f = OpenOptions::new().read(true).append(true).open(path)?;
            Ok((f, false))
        }
        Err(e) => Err(e),
    }
}

/// Opens (creating with 0600) the lock file.
pub(crate) fn open_lock_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

/// Restricts a file that others may read or write to 0600. Returns the mode found if that failed.
pub(crate) fn restrict_mode(file: &File) -> Result<(), (u32, io::Error)> {
    let meta = file.metadata().map_err(|e| (0, e))?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(|e| (mode, e))?;
    }
    Ok(())
}

/// An exclusive or shared `flock`, released on drop.
pub(crate) struct FileLock<'a> {
    file: &'a File,
}

impl<'a> FileLock<'a> {
    pub(crate) fn exclusive(file: &'a File) -> io::Result<FileLock<'a>> {
        flock(file, FlockOperation::LockExclusive)?;
        Ok(FileLock { file })
    }

    pub(crate) fn shared(file: &'a File) -> io::Result<FileLock<'a>> {
        flock(file, FlockOperation::LockShared)?;
        Ok(FileLock { file })
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        // Closing the descriptor would release it too; an unlock failure leaves nothing to do.
        let _ = flock(self.file, FlockOperation::Unlock);
    }
}

/// The rotation generation stored in the lock file (0 when empty). Read under the lock.
pub(crate) fn read_generation(lock: &File) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 8];
    let mut got = 0;
    while got < b.len() {
        let n = lock.read_at(&mut b[got..], got as u64)?;
        if n == 0 {
            return Ok(0);
        }
        got += n;
    }
    Ok(u64::from_le_bytes(b))
}

/// Stores the rotation generation (page cache is enough: it only informs live processes).
pub(crate) fn write_generation(lock: &File, generation: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    lock.write_all_at(&generation.to_le_bytes(), 0)
}

/// `(device, inode)`: identifies which file a path or descriptor refers to.
pub(crate) type FileId = (u64, u64);

pub(crate) fn file_id(meta: &fs::Metadata) -> FileId {
    (meta.dev(), meta.ino())
}

/// Cuts a partial last line (a writer died mid-write) so the file ends with `\n`.
/// Returns the number of bytes removed. Call with the exclusive lock held.
pub(crate) fn repair_torn_tail(path: &Path) -> io::Result<u64> {
    let mut f = OpenOptions::new().read(true).write(true).open(path)?;
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    let mut last = [0u8; 1];
    f.seek(SeekFrom::Start(len - 1))?;
    f.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(0);
    }
    // Scan backwards in chunks for the last newline.
    let mut end = len;
    let mut keep = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let n = usize::try_from(end - start).unwrap_or(buf.len());
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|b| *b == b'\n') {
            keep = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    f.set_len(keep)?;
    f.sync_all()?;
    Ok(len - keep)
}

/// A rotated log file: `audit.log.<rotation time>` and/or its gzipped form `….gz`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotatedFile {
    /// The uncompressed name (`audit.log.20260406T112301.447123Z`); it may no longer exist.
    pub plain: PathBuf,
    /// When it was rotated: every event in it is at or before this time.
    pub rotated_at: OffsetDateTime,
    /// The plain file was present when listed.
    pub has_plain: bool,
    /// The `.gz` file was present when listed.
    pub has_gz: bool,
}

impl RotatedFile {
    pub fn gz(&self) -> PathBuf {
        with_suffix(&self.plain, ".gz")
    }
}

/// The rotated files of the log at `path`, oldest first. Other names are ignored.
pub fn list_rotated(path: &Path) -> io::Result<Vec<RotatedFile>> {
    let dir = log_dir(path);
    let Some(base) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{base}.");
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found: std::collections::BTreeMap<String, RotatedFile> = Default::default();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let (stamp, gz) = match rest.strip_suffix(".gz") {
            Some(s) => (s, true),
            None => (rest, false),
        };
        let Some(rotated_at) = time_fmt::parse_rotated(stamp) else {
            continue;
        };
        let plain = dir.join(format!("{prefix}{stamp}"));
        let e = found.entry(stamp.to_string()).or_insert(RotatedFile {
            plain,
            rotated_at,
            has_plain: false,
            has_gz: false,
        });
        if gz {
            e.has_gz = true;
        } else {
            e.has_plain = true;
        }
    }
    let mut v: Vec<RotatedFile> = found.into_values().collect();
    v.sort_by_key(|r| r.rotated_at);
    Ok(v)
}

/// A fresh rotated name for a rotation at `now` that exists in neither plain nor gz form.
pub(crate) fn rotated_name(path: &Path, now: OffsetDateTime) -> PathBuf {
    let mut t = now;
    loop {
        let candidate = with_suffix(path, &format!(".{}", time_fmt::format_rotated(t)));
        let gz = with_suffix(&candidate, ".gz");
        if fs::symlink_metadata(&candidate).is_err() && fs::symlink_metadata(&gz).is_err() {
            return candidate;
        }
        t += time::Duration::microseconds(1);
    }
}

/// Temporary name of a gzip in progress by this process.
pub(crate) fn gz_tmp_name(plain: &Path) -> PathBuf {
    with_suffix(plain, &format!(".gz.tmp.{}", std::process::id()))
}

/// Leftover `….gz.tmp.<pid>` files of processes that no longer exist.
pub(crate) fn stale_gz_tmps(path: &Path) -> io::Result<Vec<PathBuf>> {
    let dir = log_dir(path);
    let Some(base) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(&format!("{base}.")) {
            continue;
        }
        let Some((_, pid)) = name.rsplit_once(".gz.tmp.") else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            out.push(dir.join(name));
        }
    }
    Ok(out)
}
