//! The policy engine: one place that decides whether a skill call may proceed and records every
//! decision and violation in the audit log. The gateway runs it long-lived; CLI commands run it
//! in-process. Shared state (allowlist, suspensions) lives in files under the state lock, so both
//! paths agree.

use crate::allowlist::{self, AllowlistError};
use crate::audit::{AuditError, AuditLog, Event, EventType, Record};
use crate::config::{self, ConfigError, Loaded};
use crate::home::Home;
use crate::skill::{self, Manifest, SkillError};
use crate::suspend::{self, SuspendError};
use ironclaw_crds::{Grants, Missing};
use serde_json::Value;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Allowlist(#[from] AllowlistError),
    #[error(transparent)]
    Skill(#[from] SkillError),
    #[error(transparent)]
    Suspend(#[from] SuspendError),
    #[error(transparent)]
    Io(#[from] crate::fsutil::PathError),
}

/// Why a call was refused (already logged when returned).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "skill {0:?} is not on the allowlist: nothing was run (grant it with `ironclaw allowlist grant {0}`)"
    )]
    NotAllowlisted(String),
    #[error(
        "skill {skill:?} is suspended until {until} after repeated violations: nothing was run (lift with `ironclaw allowlist unsuspend {skill}`)"
    )]
    Suspended { skill: String, until: String },
}

/// A call the engine authorised.
#[derive(Debug, Clone)]
pub struct Authorised {
    pub manifest: Manifest,
    /// `requests ∩ grants`: all the skill gets.
    pub effective: Grants,
    /// Requested but not granted (logged as ALLOWLIST_VIOLATION, not given).
    pub missing: Missing,
}

/// A blocked or (in audit-only mode) observed access beyond the grants.
#[derive(Debug, Clone, PartialEq)]
pub enum Violation {
    /// A syscall outside the sandbox's allowlist.
    Syscall { name: String },
    /// A file access outside the filesystem grants.
    Filesystem { path: String, access: String },
    /// A connection to a destination outside the network grants.
    Network { resource: String, reason: String },
    /// Anything else beyond the grants (e.g. executing a shell).
    Other { action: String, resource: String },
}

pub struct Engine {
    pub home: Home,
    pub loaded: Loaded,
    pub audit: Arc<AuditLog>,
    pub session_id: String,
    /// How calls arrive: `cli`, `gateway` or `pod` (logged with SKILL_CALL).
    pub via: &'static str,
}

impl Engine {
    /// Loads the config and opens the audit log; refuses when the log is not writable.
    pub fn open(home: Home, via: &'static str) -> Result<Engine, EngineError> {
        let loaded = config::load(&home)?;
        let audit = Arc::new(AuditLog::open(loaded.config.audit_config(&home))?);
        Ok(Engine {
            home,
            loaded,
            audit,
            session_id: crate::audit::new_session_id(),
            via,
        })
    }

    pub fn config(&self) -> &config::Config {
        &self.loaded.config
    }

    pub fn emit(&self, ev: Event) -> Result<Record, AuditError> {
        self.audit.append(ev)
    }

    pub fn event(&self, t: EventType) -> Event {
        Event::new(t, self.session_id.clone())
    }

    /// Decides whether `skill` may run now. Logs SKILL_CALL, then ALLOWLIST_DENY or
    /// SKILL_SUSPENDED on refusal, and ALLOWLIST_VIOLATION for each requested-but-ungranted item.
    pub fn authorise(&self, skill_name: &str) -> Result<Result<Authorised, Refusal>, EngineError> {
        let now = suspend::now_ms();
        let list = allowlist::load(&self.home)?;
        let suspended = suspend::suspension(&self.home, skill_name, now)?;
        let grants = list.skills.get(skill_name);
        let authorised = grants.is_some() && suspended.is_none();
        self.emit(
            self.event(EventType::SkillCall)
                .skill(skill_name)
                .field("authorised", authorised)
                .field("via", self.via),
        )?;
        if let Some(susp) = suspended {
            let until = suspend::format_ms(susp.until_ms);
            self.emit(
                self.event(EventType::SkillSuspended)
                    .skill(skill_name)
                    .field("reason", "call refused: skill is suspended")
                    .field("until", until.clone())
                    .field("violations", susp.violations),
            )?;
            return Ok(Err(Refusal::Suspended {
                skill: skill_name.to_owned(),
                until,
            }));
        }
        let Some(grants) = grants else {
            self.emit(
                self.event(EventType::AllowlistDeny)
                    .skill(skill_name)
                    .field("reason", "not on the allowlist"),
            )?;
            return Ok(Err(Refusal::NotAllowlisted(skill_name.to_owned())));
        };
        let manifest = skill::installed(&self.home, skill_name)?;
        let (effective, missing) = grants.effective(&manifest.requests);
        self.log_missing(skill_name, grants, &missing)?;
        Ok(Ok(Authorised {
            manifest,
            effective,
            missing,
        }))
    }

    /// One ALLOWLIST_VIOLATION per requested-but-ungranted item. These are not counted toward
    /// auto-suspension: a skill update that asks for more is a pending grant, not an attack.
    fn log_missing(
        &self,
        skill_name: &str,
        grants: &Grants,
        missing: &Missing,
    ) -> Result<(), AuditError> {
        let strings = |v: &[String]| Value::from(v.to_vec());
        let net: Vec<String> = grants.network.iter().map(ToString::to_string).collect();
        let env: Vec<String> = grants.env.iter().map(ToString::to_string).collect();
        let fs: Vec<String> = grants.filesystem.iter().map(ToString::to_string).collect();
        let mut items: Vec<(&str, String, Value)> = Vec::new();
        items.extend(
            missing
                .network
                .iter()
                .map(|g| ("network", g.to_string(), strings(&net))),
        );
        items.extend(
            missing
                .env
                .iter()
                .map(|g| ("env", g.to_string(), strings(&env))),
        );
        items.extend(
            missing
                .filesystem
                .iter()
                .map(|g| ("filesystem", g.to_string(), strings(&fs))),
        );
        if missing.shell {
            items.push(("shell", "shell".to_owned(), Value::Array(vec![])));
        }
        for (action, resource, granted) in items {
            self.emit(
                self.event(EventType::AllowlistViolation)
                    .skill(skill_name)
                    .field("action", action)
                    .field("resource", resource)
                    .field("granted", granted)
                    .field("blocked", true)
                    .field(
                        "reason",
                        "requested by the skill's manifest but not granted; run without it",
                    ),
            )?;
        }
        Ok(())
    }

    /// Records a violation (blocked, or only observed in audit-only mode), counts it toward
    /// auto-suspension and logs SKILL_SUSPENDED when that triggers. Returns whether the skill is
    /// now suspended.
    pub fn violation(
        &self,
        skill_name: &str,
        granted: &Grants,
        v: &Violation,
        blocked: bool,
    ) -> Result<bool, EngineError> {
        let ev = match v {
            Violation::Syscall { name } => self
                .event(EventType::AllowlistViolation)
                .field("action", "syscall")
                .field("resource", name.clone())
                .field("granted", Value::Array(vec![])),
            Violation::Filesystem { path, access } => self
                .event(EventType::FilesystemBlock)
                .field("action", "filesystem")
                .field("resource", path.clone())
                .field("access", access.clone())
                .field(
                    "granted",
                    Value::from(
                        granted
                            .filesystem
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>(),
                    ),
                ),
            Violation::Network { resource, reason } => self
                .event(EventType::NetworkBlock)
                .field("action", "network")
                .field("resource", resource.clone())
                .field("reason", reason.clone())
                .field(
                    "granted",
                    Value::from(
                        granted
                            .network
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>(),
                    ),
                ),
            Violation::Other { action, resource } => self
                .event(EventType::AllowlistViolation)
                .field("action", action.clone())
                .field("resource", resource.clone())
                .field("granted", Value::Array(vec![])),
        };
        self.emit(ev.skill(skill_name).field("blocked", blocked))?;
        let cfg = &self.config().security.auto_suspend;
        if let Some(t) = suspend::record_violation(&self.home, cfg, skill_name, suspend::now_ms())?
        {
            self.emit(
                self.event(EventType::SkillSuspended)
                    .skill(skill_name)
                    .field(
                        "reason",
                        format!(
                            "{} violations within {} minutes",
                            t.violations, cfg.window_minutes
                        ),
                    )
                    .field("until", suspend::format_ms(t.until_ms))
                    .field("violations", t.violations),
            )?;
            return Ok(true);
        }
        Ok(false)
    }
}

impl Engine {
    fn snapshot_path(&self) -> std::path::PathBuf {
        self.home.state_dir().join("config-snapshot.jsonc")
    }

    /// Detects hand edits: compares the config in force with the snapshot IronClaw last saw and
    /// logs one CONFIG_CHANGE (`source: "file"`) per changed key, then saves the new snapshot.
    /// Called at gateway start and around `config set`. Returns the number of changes logged.
    pub fn reconcile_config_snapshot(&self) -> Result<usize, EngineError> {
        let path = self.snapshot_path();
        let mut logged = 0;
        if let Some(old_text) = crate::fsutil::read_optional(&path)? {
            if config::sha256_hex(old_text.as_bytes()) == self.loaded.hash {
                return Ok(0);
            }
            match config::parse(&old_text, "previous config") {
                Ok(old) => {
                    for (key, before, after) in config::diff(&old, &self.loaded.config) {
                        self.emit(
                            self.event(EventType::ConfigChange)
                                .field("key", key)
                                .field("before", before)
                                .field("after", after)
                                .field("source", "file"),
                        )?;
                        logged += 1;
                    }
                }
                Err(_) => {
                    self.emit(
                        self.event(EventType::ConfigChange)
                            .field("key", "*")
                            .field("before", Value::Null)
                            .field("after", Value::from(self.loaded.hash.clone()))
                            .field("source", "file"),
                    )?;
                    logged += 1;
                }
            }
        }
        self.save_config_snapshot(&self.loaded.text)?;
        Ok(logged)
    }

    pub fn save_config_snapshot(&self, text: &str) -> Result<(), EngineError> {
        crate::fsutil::write_atomic(&self.snapshot_path(), text.as_bytes(), 0o600)?;
        Ok(())
    }

    /// `config set KEY VALUE`: validated, staged, logged as CONFIG_CHANGE, then committed.
    /// Returns `(before, after)` (redacted), or `None` when the value was already in force.
    pub fn set_config(
        &mut self,
        key: &str,
        value: &str,
    ) -> Result<Option<(Value, Value)>, EngineError> {
        let _lock = crate::fsutil::lock(&self.home.state_lock())?;
        self.loaded = config::load(&self.home)?;
        self.reconcile_config_snapshot()?;
        let p = config::prepare_set(&self.loaded, key, value)?;
        if !p.changed() {
            return Ok(None);
        }
        let before = config::redact(key, &p.before);
        let after = config::redact(key, &p.after);
        let staged = crate::fsutil::stage(&self.home.config_path(), p.new_text.as_bytes(), 0o600)?;
        self.emit(
            self.event(EventType::ConfigChange)
                .field("key", key)
                .field("before", before.clone())
                .field("after", after.clone())
                .field("source", "cli"),
        )?;
        staged.commit()?;
        self.save_config_snapshot(&p.new_text)?;
        self.loaded = config::load(&self.home)?;
        Ok(Some((before, after)))
    }
}
