//! Locked, atomic and durable file updates.
//!
//! State files under `IRONCLAW_HOME` (allowlist, suspensions, config) are shared by the gateway
//! and CLI processes. Every read-modify-write happens under an exclusive `flock` on a lock file,
//! and every write goes to a temporary file that is fsynced and renamed over the target (then the
//! directory is fsynced), so a crash leaves either the old or the new content, never a mix.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// An I/O error with the path it concerns.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct PathError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

pub fn path_err(path: &Path) -> impl FnOnce(io::Error) -> PathError + '_ {
    move |source| PathError {
        path: path.to_path_buf(),
        source,
    }
}

/// An exclusive advisory lock held until dropped.
#[derive(Debug)]
pub struct LockGuard {
    file: File,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

/// Takes an exclusive lock on `path` (created 0600 if missing), blocking until it is free.
pub fn lock(path: &Path) -> Result<LockGuard, PathError> {
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(path_err(path))?;
    file.lock().map_err(path_err(path))?;
    Ok(LockGuard { file })
}

/// Creates `dir` and its missing parents; directories it creates get mode 0700.
pub fn create_private_dir(dir: &Path) -> Result<(), PathError> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(path_err(dir))
}

/// Writes `data` to `path` atomically and durably with the given mode.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), PathError> {
    let staged = stage(path, data, mode)?;
    staged.commit()
}

/// A fully written, fsynced temporary file that replaces its target on [`Staged::commit`] and is
/// removed if dropped uncommitted. Lets a caller record an audit event between "the new content
/// is safely on disk" and "the new content takes effect".
#[derive(Debug)]
pub struct Staged {
    tmp: PathBuf,
    target: PathBuf,
    committed: bool,
}

pub fn stage(path: &Path, data: &[u8], mode: u32) -> Result<Staged, PathError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(path_err(&tmp))?;
    let res = f
        .write_all(data)
        .and_then(|_| f.set_permissions(std::fs::Permissions::from_mode(mode)))
        .and_then(|_| f.sync_all());
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(PathError {
            path: tmp,
            source: e,
        });
    }
    Ok(Staged {
        tmp,
        target: path.to_path_buf(),
        committed: false,
    })
}

impl Staged {
    pub fn commit(mut self) -> Result<(), PathError> {
        std::fs::rename(&self.tmp, &self.target).map_err(path_err(&self.target))?;
        self.committed = true;
        if let Some(dir) = self.target.parent()
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Reads a file, returning `None` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<String>, PathError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PathError {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/state.json");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(dir.path().join("sub"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        // No temporary files are left behind.
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub")).unwrap().count(),
            1
        );
    }

    #[test]
    fn uncommitted_stage_leaves_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.json");
        write_atomic(&p, b"old", 0o600).unwrap();
        drop(stage(&p, b"new", 0o600).unwrap());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn lock_excludes_other_holders() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".lock");
        let g = lock(&p).unwrap();
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        assert!(matches!(
            f.try_lock(),
            Err(std::fs::TryLockError::WouldBlock)
        ));
        drop(g);
        f.try_lock().unwrap();
    }
}
