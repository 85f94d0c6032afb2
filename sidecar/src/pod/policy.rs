//! `policy.json` as the operator writes it (see `operator/src/workload.rs`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ironclaw_crds::grants::{Grants, validate_skill_name};
use serde::Deserialize;

/// Errors reading or validating `policy.json`; each names the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("reading policy {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("policy {path}: {detail}")]
    Parse { path: PathBuf, detail: String },
    #[error("policy {path}: field `{field}` {reason}")]
    Field {
        path: PathBuf,
        field: &'static str,
        reason: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Raw {
    skill: String,
    namespace: String,
    sandbox_mode: String,
    #[serde(default)]
    grants: Grants,
    proxy: String,
    admin: String,
    workspace: PathBuf,
    seccomp_profile: String,
    /// `security.injectionDefense.mode` for this pod; absent means `flag` (the default).
    #[serde(default)]
    injection_mode: Option<String>,
}

/// A validated pod policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPolicy {
    pub skill: String,
    pub namespace: String,
    /// Always `strict`: in-pod enforcement has no weaker mode.
    pub sandbox_mode: String,
    pub grants: Grants,
    /// The sidecar's egress proxy; always a loopback address.
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    /// The skill's own workspace (absolute).
    pub workspace: PathBuf,
    pub seccomp_profile: String,
    /// What the sidecar's `POST /v1/content` does with flagged content (`flag` by default).
    pub injection_mode: ironclaw_scanner::Mode,
}

impl PodPolicy {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<PodPolicy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Validates `text` (the contents of `path`, which only names the file in errors).
    pub fn parse(path: &Path, text: &str) -> Result<PodPolicy, PolicyError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let raw: Raw = serde_path_to_error::deserialize(de).map_err(|e| PolicyError::Parse {
            path: path.to_owned(),
            detail: format!("at `{}`: {}", e.path(), e.inner()),
        })?;
        let field = |field: &'static str, reason: String| PolicyError::Field {
            path: path.to_owned(),
            field,
            reason,
        };
        validate_skill_name(&raw.skill).map_err(|e| field("skill", e.to_string()))?;
        if raw.namespace.is_empty() {
            return Err(field("namespace", "must not be empty".into()));
        }
        if raw.sandbox_mode != "strict" {
            return Err(field(
                "sandboxMode",
                format!(
                    "is {:?}; the in-pod wrapper enforces only \"strict\" (\"standard\" and \"audit-only\" are not available in a pod)",
                    raw.sandbox_mode
                ),
            ));
        }
        let proxy: SocketAddr = raw.proxy.parse().map_err(|_| {
            field(
                "proxy",
                format!(
                    "is {:?}; expected a loopback IP:PORT such as 127.0.0.1:15001",
                    raw.proxy
                ),
            )
        })?;
        if !proxy.ip().is_loopback() || proxy.port() == 0 {
            return Err(field(
                "proxy",
                format!("is {proxy}; must be a loopback address with a non-zero port"),
            ));
        }
        let admin: SocketAddr = raw.admin.parse().map_err(|_| {
            field(
                "admin",
                format!("is {:?}; expected IP:PORT such as 0.0.0.0:9090", raw.admin),
            )
        })?;
        if !raw.workspace.is_absolute() {
            return Err(field(
                "workspace",
                format!("is {:?}; must be an absolute path", raw.workspace),
            ));
        }
        if raw.seccomp_profile.is_empty() {
            return Err(field("seccompProfile", "must not be empty".into()));
        }
        let injection_mode = match raw.injection_mode.as_deref() {
            None => ironclaw_scanner::Mode::Flag,
            Some(m) => m.parse().map_err(|e: ironclaw_scanner::ModeParseError| {
                field("injectionMode", e.to_string())
            })?,
        };
        Ok(PodPolicy {
            skill: raw.skill,
            namespace: raw.namespace,
            sandbox_mode: raw.sandbox_mode,
            grants: raw.grants,
            proxy,
            admin,
            workspace: raw.workspace,
            seccomp_profile: raw.seccomp_profile,
            injection_mode,
        })
    }

    /// The workspace root: `ROOT` when the workspace is `ROOT/skills/<skill>` (the operator's
    /// layout), else the workspace itself.
    pub fn workspace_root(&self) -> PathBuf {
        let ws = &self.workspace;
        let parent = ws.parent();
        if ws.file_name().is_some_and(|n| n == self.skill.as_str())
            && parent
                .and_then(Path::file_name)
                .is_some_and(|n| n == "skills")
            && let Some(root) = parent.and_then(Path::parent)
        {
            return root.to_owned();
        }
        ws.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(ws: &str) -> String {
        format!(
            r#"{{"skill":"mail","namespace":"a","sandboxMode":"strict","grants":{{}},
                "proxy":"127.0.0.1:15001","admin":"0.0.0.0:9090","workspace":"{ws}",
                "seccompProfile":"p.json"}}"#
        )
    }

    #[test]
    fn workspace_root_follows_the_operator_layout_only() {
        let p = PodPolicy::parse(Path::new("p"), &doc("/workspace/skills/mail")).unwrap();
        assert_eq!(p.workspace_root(), Path::new("/workspace"));
        assert_eq!(p.proxy.port(), 15001);
        let p = PodPolicy::parse(Path::new("p"), &doc("/data/other")).unwrap();
        assert_eq!(p.workspace_root(), Path::new("/data/other"));
    }

    #[test]
    fn injection_mode_defaults_to_flag_and_bad_values_name_the_allowed_ones() {
        let p = PodPolicy::parse(Path::new("p"), &doc("/w")).unwrap();
        assert_eq!(p.injection_mode, ironclaw_scanner::Mode::Flag);
        let with = |m: &str| {
            doc("/w").replace(
                "\"seccompProfile\"",
                &format!("\"injectionMode\":\"{m}\",\"seccompProfile\""),
            )
        };
        let p = PodPolicy::parse(Path::new("p"), &with("block")).unwrap();
        assert_eq!(p.injection_mode, ironclaw_scanner::Mode::Block);
        let e = PodPolicy::parse(Path::new("policy.json"), &with("warn"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("injectionMode") && e.contains("warn") && e.contains("\"block\""),
            "{e}"
        );
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let text = doc("/w").replace("\"admin\"", "\"admn\"");
        let e = PodPolicy::parse(Path::new("policy.json"), &text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("admn") && e.contains("policy.json"), "{e}");
    }
}
