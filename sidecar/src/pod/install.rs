//! `ironclaw-sidecar install-wrapper DIR`: copies this executable into the pod's shared
//! volume so the skill container can run it.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("install-wrapper: {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// File name of the installed wrapper (the operator runs `DIR/ironclaw-sidecar`).
pub const WRAPPER_NAME: &str = "ironclaw-sidecar";

/// Copies `src` to `dir/ironclaw-sidecar` with mode 0555, via a temporary file renamed into
/// place so a reader never sees a half-written binary. Returns the installed path.
pub fn install_wrapper(src: &Path, dir: &Path) -> Result<PathBuf, InstallError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |what, path: &Path| {
        let path = path.to_owned();
        move |source| InstallError::Io { what, path, source }
    };
    let dest = dir.join(WRAPPER_NAME);
    let tmp = dir.join(format!(".{WRAPPER_NAME}.tmp-{}", std::process::id()));
    let res = (|| {
        std::fs::copy(src, &tmp).map_err(io("copying to", &tmp))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o555))
            .map_err(io("setting mode 0555 on", &tmp))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io("syncing", &tmp))?;
        std::fs::rename(&tmp, &dest).map_err(io("renaming into", &dest))
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.map(|()| dest)
}
