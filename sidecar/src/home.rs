//! Where IronClaw keeps its state: `IRONCLAW_HOME`, default `~/.ironclaw`.
//!
//! ```text
//! $IRONCLAW_HOME/
//!   ironclaw.json        config (JSON with comments), mode 0600
//!   .env                 secrets for ${VAR} references and env grants, mode 0600
//!   allowlist.json       grants per skill
//!   audit.log            the audit log (default path)
//!   skills/<name>/       installed skills (skill.json + files)
//!   workspace/shared/    read-only for skills that are granted it
//!   workspace/skills/<name>/  each skill's own read-write workspace
//!   state/               suspensions, gateway state, config snapshot, locks
//!   run/gateway.sock     the gateway's control socket (owner only)
//! ```
//!
//! Paths in config values and grants: a leading `~/.ironclaw` means `IRONCLAW_HOME` (so tests and
//! second instances are self-contained), any other leading `~/` means the user's home directory.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error("cannot locate IronClaw's home: set IRONCLAW_HOME or HOME")]
    NoHome,
    #[error("IRONCLAW_HOME={0:?} must be an absolute path")]
    Relative(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Home {
    /// `IRONCLAW_HOME`.
    pub root: PathBuf,
    /// The user's home directory (`HOME`).
    pub user_home: PathBuf,
}

impl Home {
    /// From the environment: `IRONCLAW_HOME`, else `$HOME/.ironclaw`.
    pub fn from_env() -> Result<Home, HomeError> {
        let user_home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from);
        let root = match std::env::var_os("IRONCLAW_HOME").filter(|h| !h.is_empty()) {
            Some(r) => PathBuf::from(r),
            None => user_home
                .as_ref()
                .ok_or(HomeError::NoHome)?
                .join(".ironclaw"),
        };
        if !root.is_absolute() {
            return Err(HomeError::Relative(root));
        }
        let user_home = user_home.unwrap_or_else(|| root.clone());
        Ok(Home { root, user_home })
    }

    pub fn at(root: impl Into<PathBuf>, user_home: impl Into<PathBuf>) -> Home {
        Home {
            root: root.into(),
            user_home: user_home.into(),
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join("ironclaw.json")
    }
    pub fn env_path(&self) -> PathBuf {
        self.root.join(".env")
    }
    pub fn allowlist_path(&self) -> PathBuf {
        self.root.join("allowlist.json")
    }
    pub fn skills_dir(&self) -> PathBuf {
        self.root.join("skills")
    }
    pub fn skill_dir(&self, name: &str) -> PathBuf {
        self.skills_dir().join(name)
    }
    pub fn workspace_root(&self) -> PathBuf {
        self.root.join("workspace")
    }
    pub fn shared_dir(&self) -> PathBuf {
        self.workspace_root().join("shared")
    }
    pub fn skill_workspace(&self, name: &str) -> PathBuf {
        self.workspace_root().join("skills").join(name)
    }
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }
    /// The lock that serialises changes to shared state files.
    pub fn state_lock(&self) -> PathBuf {
        self.state_dir().join(".lock")
    }
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }
    pub fn socket_path(&self) -> PathBuf {
        self.run_dir().join("gateway.sock")
    }

    /// Expands a path written in config or a grant (see the module docs).
    pub fn expand(&self, p: &str) -> PathBuf {
        if p == "~/.ironclaw" {
            self.root.clone()
        } else if let Some(rest) = p.strip_prefix("~/.ironclaw/") {
            self.root.join(rest)
        } else if p == "~" {
            self.user_home.clone()
        } else if let Some(rest) = p.strip_prefix("~/") {
            self.user_home.join(rest)
        } else {
            PathBuf::from(p)
        }
    }

    /// Absolute path of a filesystem grant: `~/.ironclaw/…` and `~/…` as in [`Home::expand`];
    /// relative paths are relative to the workspace root (`shared:ro` = `workspace/shared`).
    pub fn resolve_grant(&self, g: &ironclaw_crds::FsGrant) -> PathBuf {
        if g.path.starts_with('~') {
            self.expand(&g.path)
        } else {
            g.resolve(&self.user_home, &self.workspace_root())
        }
    }

    /// Whether `p` lies inside IronClaw's own home.
    pub fn contains(&self, p: &Path) -> bool {
        p.starts_with(&self.root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ironclaw_prefix_maps_to_ironclaw_home() {
        let h = Home::at("/tmp/ic", "/home/u");
        assert_eq!(
            h.expand("~/.ironclaw/audit.log"),
            Path::new("/tmp/ic/audit.log")
        );
        assert_eq!(h.expand("~/notes"), Path::new("/home/u/notes"));
        assert_eq!(h.expand("/var/log/x"), Path::new("/var/log/x"));
        let g: ironclaw_crds::FsGrant = "~/.ironclaw/workspace/shared:ro".parse().unwrap();
        assert_eq!(h.resolve_grant(&g), Path::new("/tmp/ic/workspace/shared"));
        let g: ironclaw_crds::FsGrant = "shared:ro".parse().unwrap();
        assert_eq!(h.resolve_grant(&g), Path::new("/tmp/ic/workspace/shared"));
    }
}
