//! Local skills: a folder `$IRONCLAW_HOME/skills/<name>/` with a manifest `skill.json`.
//!
//! ```jsonc
//! {
//!   "name": "himalaya",                 // a-z, 0-9, '-' (also the folder name)
//!   "version": "1.2.0",
//!   "description": "Reads mail",        // optional
//!   "entrypoint": ["bin/himalaya", "serve"],  // argv; argv[0] relative to the folder or absolute
//!   "requests": {                       // what the skill asks for (same vocabulary as grants)
//!     "network": ["imap.gmail.com:993"], "env": ["IMAP_PASSWORD"],
//!     "filesystem": ["~/.ironclaw/workspace/shared:ro"], "shell": false
//!   }
//! }
//! ```
//! A skill only ever runs its own entrypoint: callers add arguments, never a command.

use crate::fsutil::{self, PathError};
use crate::home::Home;
use ironclaw_crds::Grants;
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub const MANIFEST: &str = "skill.json";

#[derive(Debug, thiserror::Error)]
pub enum SkillError {
    #[error("{path}: {message}")]
    Manifest { path: String, message: String },
    #[error("skill {0:?} is not installed (see `ironclaw skill list`)")]
    NotInstalled(String),
    #[error("{path}: {message}")]
    Install { path: String, message: String },
    #[error(transparent)]
    Io(#[from] PathError),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub requests: Grants,
}

fn manifest_err(path: &Path, message: impl Into<String>) -> SkillError {
    SkillError::Manifest {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Reads and validates `dir/skill.json`.
pub fn load_manifest(dir: &Path) -> Result<Manifest, SkillError> {
    let path = dir.join(MANIFEST);
    let text = fsutil::read_optional(&path)?.ok_or_else(|| {
        manifest_err(&path, "missing: a skill folder needs a skill.json manifest")
    })?;
    let value = crate::config::parse_value(&text, &path.display().to_string())
        .map_err(|e| manifest_err(&path, e.to_string()))?;
    let m: Manifest = serde_path_to_error::deserialize(&value)
        .map_err(|e| manifest_err(&path, format!("{}: {}", e.path(), e.inner())))?;
    ironclaw_crds::grants::validate_skill_name(&m.name)
        .map_err(|e| manifest_err(&path, format!("name: {e}")))?;
    if m.version.trim().is_empty() {
        return Err(manifest_err(&path, "version: must not be empty"));
    }
    let Some(program) = m.entrypoint.first() else {
        return Err(manifest_err(
            &path,
            "entrypoint: must list at least the program to run, e.g. [\"bin/skill\"]",
        ));
    };
    if program.is_empty()
        || Path::new(program)
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(manifest_err(
            &path,
            format!(
                "entrypoint[0]: {program:?} must be a path inside the skill folder or an absolute path, without '..'"
            ),
        ));
    }
    Ok(m)
}

/// The argv a run executes: the entrypoint with argv[0] made absolute, then the caller's args.
pub fn argv(dir: &Path, m: &Manifest, extra: &[OsString]) -> Result<Vec<OsString>, SkillError> {
    let program = m
        .entrypoint
        .first()
        .ok_or_else(|| manifest_err(&dir.join(MANIFEST), "entrypoint: empty"))?;
    let abs = if Path::new(program).is_absolute() {
        PathBuf::from(program)
    } else {
        dir.join(program)
    };
    let meta = std::fs::metadata(&abs).map_err(|e| {
        manifest_err(
            &dir.join(MANIFEST),
            format!("entrypoint[0]: {}: {e}", abs.display()),
        )
    })?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(manifest_err(
            &dir.join(MANIFEST),
            format!("entrypoint[0]: {} is not an executable file", abs.display()),
        ));
    }
    let mut v = vec![abs.into_os_string()];
    v.extend(m.entrypoint.iter().skip(1).map(OsString::from));
    v.extend(extra.iter().cloned());
    Ok(v)
}

fn copy_tree(src: &Path, dst: &Path) -> Result<(), SkillError> {
    fsutil::create_private_dir(dst)?;
    for entry in std::fs::read_dir(src).map_err(fsutil::path_err(src))? {
        let entry = entry.map_err(fsutil::path_err(src))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let ft = entry.file_type().map_err(fsutil::path_err(&from))?;
        if ft.is_symlink() {
            return Err(SkillError::Install {
                path: from.display().to_string(),
                message:
                    "symbolic links are not allowed in a skill folder (they could point outside it)"
                        .into(),
            });
        } else if ft.is_dir() {
            copy_tree(&from, &to)?;
        } else if ft.is_file() {
            std::fs::copy(&from, &to).map_err(fsutil::path_err(&from))?;
            let mode = std::fs::metadata(&from)
                .map_err(fsutil::path_err(&from))?
                .permissions()
                .mode();
            // Installed files are the user's own and not writable by others.
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode & 0o755))
                .map_err(fsutil::path_err(&to))?;
        } else {
            return Err(SkillError::Install {
                path: from.display().to_string(),
                message: "not a regular file or directory".into(),
            });
        }
    }
    Ok(())
}

/// Copies a skill folder into `skills/<name>/`, replacing an older version atomically.
/// A bad manifest is refused before anything is copied.
pub fn install(home: &Home, src: &Path) -> Result<Manifest, SkillError> {
    let m = load_manifest(src)?;
    argv(src, &m, &[])?;
    let skills = home.skills_dir();
    fsutil::create_private_dir(&skills)?;
    let staging = skills.join(format!(".install-{}-{}", m.name, std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    if let Err(e) = copy_tree(src, &staging) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    let dest = home.skill_dir(&m.name);
    let old = skills.join(format!(".old-{}-{}", m.name, std::process::id()));
    if dest.exists() {
        std::fs::rename(&dest, &old).map_err(fsutil::path_err(&dest))?;
    }
    std::fs::rename(&staging, &dest).map_err(fsutil::path_err(&dest))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(m)
}

/// Loads an installed skill's manifest.
pub fn installed(home: &Home, name: &str) -> Result<Manifest, SkillError> {
    ironclaw_crds::grants::validate_skill_name(name).map_err(|e| SkillError::Manifest {
        path: name.to_owned(),
        message: e.to_string(),
    })?;
    let dir = home.skill_dir(name);
    if !dir.join(MANIFEST).exists() {
        return Err(SkillError::NotInstalled(name.to_owned()));
    }
    let m = load_manifest(&dir)?;
    if m.name != name {
        return Err(manifest_err(
            &dir.join(MANIFEST),
            format!("name: {:?} does not match its folder {name:?}", m.name),
        ));
    }
    Ok(m)
}

/// An installed skill's name and its manifest (or why it is broken).
pub type Listed = (String, Result<Manifest, SkillError>);

/// All installed skills, by name; a broken manifest is reported in place of its skill.
pub fn list(home: &Home) -> Result<Vec<Listed>, SkillError> {
    let dir = home.skills_dir();
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => {
            return Err(fsutil::PathError {
                path: dir,
                source: e,
            }
            .into());
        }
    };
    for entry in rd {
        let entry = entry.map_err(fsutil::path_err(&dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        let m = installed(home, &name);
        out.push((name, m));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_skill(dir: &Path, manifest: &str) {
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::write(dir.join("skill.json"), manifest).unwrap();
        std::fs::write(dir.join("bin/run"), "#!/usr/bin/env python3\n").unwrap();
        std::fs::set_permissions(dir.join("bin/run"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }

    #[test]
    fn install_validates_and_copies() {
        let t = tempfile::tempdir().unwrap();
        let home = Home::at(t.path().join("home"), t.path());
        let src = t.path().join("src");
        write_skill(
            &src,
            r#"{ "name": "hello", "version": "1.0.0", "entrypoint": ["bin/run", "--x"], // c
            "requests": { "network": ["example.com:443"], } }"#,
        );
        let m = install(&home, &src).unwrap();
        assert_eq!(m.requests.network[0].to_string(), "example.com:443");
        let got = installed(&home, "hello").unwrap();
        assert_eq!(got, m);
        let argv = argv(&home.skill_dir("hello"), &got, &["a".into()]).unwrap();
        assert_eq!(
            argv[0],
            home.skill_dir("hello").join("bin/run").into_os_string()
        );
        assert_eq!(&argv[1..], &[OsString::from("--x"), OsString::from("a")]);
        assert_eq!(list(&home).unwrap().len(), 1);
    }

    #[test]
    fn bad_manifests_are_refused_with_the_field() {
        let cases = [
            (
                r#"{"name":"Hello","version":"1","entrypoint":["bin/run"]}"#,
                "name:",
            ),
            (
                r#"{"name":"hello","version":"","entrypoint":["bin/run"]}"#,
                "version: must not be empty",
            ),
            (
                r#"{"name":"hello","version":"1","entrypoint":[]}"#,
                "entrypoint: must list",
            ),
            (
                r#"{"name":"hello","version":"1","entrypoint":["../x"]}"#,
                "without '..'",
            ),
            (
                r#"{"name":"hello","version":"1","entrypoint":["bin/nope"]}"#,
                "entrypoint[0]",
            ),
            (
                r#"{"name":"hello","version":"1","entrypoint":["bin/run"],"requests":{"network":["*:80"]}}"#,
                "requests.network[0]",
            ),
            (
                r#"{"name":"hello","version":"1","entrypoint":["bin/run"],"requests":{"filesystem":["/etc"]}}"#,
                "missing ':ro' or ':rw'",
            ),
            (
                r#"{"name":"hello","version":"1","entrypoint":["bin/run"],"extra":1}"#,
                "unknown field `extra`",
            ),
        ];
        for (manifest, want) in cases {
            let t = tempfile::tempdir().unwrap();
            let home = Home::at(t.path().join("home"), t.path());
            let src = t.path().join("src");
            write_skill(&src, manifest);
            let e = install(&home, &src).unwrap_err().to_string();
            assert!(e.contains(want), "{manifest}\n -> {e}");
            assert!(!home.skills_dir().join("hello").exists());
        }
    }
}
