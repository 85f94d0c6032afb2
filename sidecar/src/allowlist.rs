//! The allowlist: which skills may run, and with which grants.
//!
//! Stored in `$IRONCLAW_HOME/allowlist.json` (mode 0600). Every change happens under the state
//! lock, is recorded as an ALLOWLIST_CHANGE event (actor, change, before, after) after the new file
//! is durably staged and before it takes effect.

use crate::audit::{AuditLog, Event, EventType};
use crate::fsutil::{self, PathError};
use crate::home::Home;
use ironclaw_crds::Grants;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum AllowlistError {
    #[error("{path}: invalid allowlist: {message}")]
    Invalid { path: String, message: String },
    #[error("skill {0:?} is not on the allowlist (see `ironclaw allowlist list`)")]
    NotListed(String),
    #[error(transparent)]
    Grant(#[from] ironclaw_crds::GrantError),
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("recording ALLOWLIST_CHANGE failed, nothing changed: {0}")]
    Audit(#[from] crate::audit::AuditError),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allowlist {
    #[serde(default)]
    pub skills: BTreeMap<String, Grants>,
}

/// Loads the allowlist (empty when the file does not exist).
pub fn load(home: &Home) -> Result<Allowlist, AllowlistError> {
    let path = home.allowlist_path();
    let Some(text) = fsutil::read_optional(&path)? else {
        return Ok(Allowlist::default());
    };
    let de = &mut serde_json::Deserializer::from_str(&text);
    let list: Allowlist =
        serde_path_to_error::deserialize(de).map_err(|e| AllowlistError::Invalid {
            path: path.display().to_string(),
            message: format!("{}: {}", e.path(), e.inner()),
        })?;
    for name in list.skills.keys() {
        ironclaw_crds::grants::validate_skill_name(name)?;
    }
    Ok(list)
}

/// The kind of an allowlist change, as logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Add,
    Remove,
    Grant,
    Revoke,
}

impl Change {
    pub fn as_str(&self) -> &'static str {
        match self {
            Change::Add => "add",
            Change::Remove => "remove",
            Change::Grant => "grant",
            Change::Revoke => "revoke",
        }
    }
}

/// What an update did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Changed {
        change: Change,
        before: Option<Grants>,
        after: Option<Grants>,
    },
    Unchanged,
}

/// Who made a change: the OS user and the path it came through.
pub fn actor(via: &str) -> String {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let user = std::env::var("USER").unwrap_or_default();
    if user.is_empty() {
        format!("uid:{uid} via {via}")
    } else {
        format!("{user} (uid:{uid}) via {via}")
    }
}

/// Applies `change` with `grants` to `skill`, logging ALLOWLIST_CHANGE.
/// `grant` on an absent skill adds it; `revoke`/`remove` on an absent skill is an error.
pub fn update(
    home: &Home,
    audit: &AuditLog,
    session_id: &str,
    actor: &str,
    skill: &str,
    change: Change,
    grants: &Grants,
) -> Result<Outcome, AllowlistError> {
    ironclaw_crds::grants::validate_skill_name(skill)?;
    let _lock = fsutil::lock(&home.state_lock())?;
    let mut list = load(home)?;
    let before = list.skills.get(skill).cloned();
    let (change, after) = match (change, &before) {
        (Change::Grant | Change::Add, None) => (Change::Add, Some(grants.clone())),
        (Change::Grant | Change::Add, Some(b)) => {
            let mut g = b.clone();
            if !g.merge(grants) {
                return Ok(Outcome::Unchanged);
            }
            (Change::Grant, Some(g))
        }
        (Change::Revoke, Some(b)) => {
            let mut g = b.clone();
            if !g.revoke(grants) {
                return Ok(Outcome::Unchanged);
            }
            (Change::Revoke, Some(g))
        }
        (Change::Remove, Some(_)) => (Change::Remove, None),
        (Change::Revoke | Change::Remove, None) => {
            return Err(AllowlistError::NotListed(skill.to_owned()));
        }
    };
    match &after {
        Some(g) => list.skills.insert(skill.to_owned(), g.clone()),
        None => list.skills.remove(skill),
    };
    let mut text = serde_json::to_string_pretty(&list).map_err(|e| AllowlistError::Invalid {
        path: home.allowlist_path().display().to_string(),
        message: e.to_string(),
    })?;
    text.push('\n');
    let staged = fsutil::stage(&home.allowlist_path(), text.as_bytes(), 0o600)?;
    audit.append(
        Event::new(EventType::AllowlistChange, session_id)
            .skill(skill)
            .field("change", change.as_str())
            .field("actor", actor)
            .field("before", serde_json::to_value(&before).unwrap_or_default())
            .field("after", serde_json::to_value(&after).unwrap_or_default()),
    )?;
    staged.commit()?;
    Ok(Outcome::Changed {
        change,
        before,
        after,
    })
}
