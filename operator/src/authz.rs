//! Authorisation of a Skill against the Allowlists of its namespace (pure).
//!
//! A skill's grants are the union of every entry naming it in its namespace; no entry means
//! no workload. What it gets is `requests ∩ grants` ([`Grants::effective`]); what it asked for
//! and did not get is reported (status `PendingGrants`, audit `ALLOWLIST_VIOLATION`).

use ironclaw_crds::allowlist::Allowlist;
use ironclaw_crds::grants::{Grants, Missing};
use ironclaw_crds::schema::{FieldError, SecretKeyRef};

/// An Allowlist entry that could not be parsed (it grants nothing; fail closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadEntry {
    /// The Allowlist's name.
    pub allowlist: String,
    pub error: FieldError,
}

/// The outcome of authorising one skill (built once per reconcile; size does not matter).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No (valid) entry names the skill.
    NotAllowlisted { bad_entries: Vec<BadEntry> },
    /// At least one entry names the skill.
    Authorised {
        /// Union of the entries' grants.
        granted: Grants,
        /// `requests ∩ granted`.
        effective: Grants,
        /// Requested and not granted.
        missing: Missing,
        /// Secret key of each granted env name (first entry naming it wins).
        env_secrets: Vec<(String, SecretKeyRef)>,
        /// Entries naming the skill that were ignored because they do not parse.
        bad_entries: Vec<BadEntry>,
        /// Names of the Allowlists whose entries grant to the skill.
        sources: Vec<String>,
    },
}

/// Decides what skill `skill` (requesting `requested`) gets from `allowlists` (all in the
/// skill's namespace).
pub fn authorise(skill: &str, requested: &Grants, allowlists: &[Allowlist]) -> Decision {
    let mut granted = Grants::default();
    let mut env_secrets: Vec<(String, SecretKeyRef)> = Vec::new();
    let mut bad_entries = Vec::new();
    let mut sources = Vec::new();
    let mut found = false;
    let mut sorted: Vec<&Allowlist> = allowlists.iter().collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for al in sorted {
        let al_name = al.metadata.name.clone().unwrap_or_default();
        for (i, entry) in al.spec.skills.iter().enumerate() {
            if entry.name != skill {
                continue;
            }
            match entry.grants(&format!("spec.skills[{i}]")) {
                Ok(g) => {
                    found = true;
                    granted.merge(&g);
                    for e in &entry.env {
                        if !env_secrets.iter().any(|(n, _)| *n == e.name) {
                            env_secrets.push((e.name.clone(), e.secret_key_ref.clone()));
                        }
                    }
                    if !sources.contains(&al_name) {
                        sources.push(al_name.clone());
                    }
                }
                Err(error) => bad_entries.push(BadEntry {
                    allowlist: al_name.clone(),
                    error,
                }),
            }
        }
    }
    if !found {
        return Decision::NotAllowlisted { bad_entries };
    }
    let (effective, missing) = granted.effective(requested);
    env_secrets.retain(|(n, _)| effective.allows_env(n));
    Decision::Authorised {
        granted,
        effective,
        missing,
        env_secrets,
        bad_entries,
        sources,
    }
}
