//! Auto-suspension: a skill that exceeds its grants `violationsPerWindow` times within any
//! `windowMinutes` is suspended for `suspendDurationMinutes`, and treated as not authorised.
//!
//! State lives in `$IRONCLAW_HOME/state/suspensions.json`, changed under the state lock, so the
//! gateway and CLI runs count violations together.

use crate::config::AutoSuspendConfig;
use crate::fsutil::{self, PathError};
use crate::home::Home;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum SuspendError {
    #[error("{path}: invalid suspension state: {message}")]
    Invalid { path: String, message: String },
    #[error(transparent)]
    Io(#[from] PathError),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SkillState {
    /// Unix milliseconds of the violations inside the current window.
    #[serde(default)]
    pub recent: Vec<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended_until: Option<i64>,
    /// How many violations triggered the current suspension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended_after: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub skills: BTreeMap<String, SkillState>,
}

fn path(home: &Home) -> std::path::PathBuf {
    home.state_dir().join("suspensions.json")
}

pub fn load(home: &Home) -> Result<State, SuspendError> {
    let p = path(home);
    match fsutil::read_optional(&p)? {
        None => Ok(State::default()),
        Some(t) => serde_json::from_str(&t).map_err(|e| SuspendError::Invalid {
            path: p.display().to_string(),
            message: e.to_string(),
        }),
    }
}

fn save(home: &Home, st: &State) -> Result<(), SuspendError> {
    let text = serde_json::to_vec_pretty(st).map_err(|e| SuspendError::Invalid {
        path: path(home).display().to_string(),
        message: e.to_string(),
    })?;
    fsutil::write_atomic(&path(home), &text, 0o600)?;
    Ok(())
}

/// A suspension that a violation just triggered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Triggered {
    pub until_ms: i64,
    pub violations: u32,
}

/// Counts one violation at `now_ms`; returns the suspension it triggers, if any.
pub fn record_violation(
    home: &Home,
    cfg: &AutoSuspendConfig,
    skill: &str,
    now_ms: i64,
) -> Result<Option<Triggered>, SuspendError> {
    let _lock = fsutil::lock(&home.state_lock())?;
    let mut st = load(home)?;
    let s = st.skills.entry(skill.to_owned()).or_default();
    let window = i64::from(cfg.window_minutes) * 60_000;
    s.recent.retain(|t| now_ms - *t < window);
    s.recent.push(now_ms);
    let already = s.suspended_until.is_some_and(|u| u > now_ms);
    let count = u32::try_from(s.recent.len()).unwrap_or(u32::MAX);
    let triggered = if cfg.enabled && !already && count >= cfg.violations_per_window {
        let until_ms = now_ms + i64::from(cfg.suspend_duration_minutes) * 60_000;
        s.suspended_until = Some(until_ms);
        s.suspended_after = Some(count);
        s.recent.clear();
        Some(Triggered {
            until_ms,
            violations: count,
        })
    } else {
        None
    };
    save(home, &st)?;
    Ok(triggered)
}

/// When the skill's suspension ends, if it is suspended at `now_ms`.
pub fn suspended_until(home: &Home, skill: &str, now_ms: i64) -> Result<Option<i64>, SuspendError> {
    Ok(load(home)?
        .skills
        .get(skill)
        .and_then(|s| s.suspended_until)
        .filter(|u| *u > now_ms))
}

/// The active suspension at `now_ms`: when it ends and how many violations triggered it.
pub fn suspension(
    home: &Home,
    skill: &str,
    now_ms: i64,
) -> Result<Option<Triggered>, SuspendError> {
    Ok(load(home)?.skills.get(skill).and_then(|s| {
        let until_ms = s.suspended_until.filter(|u| *u > now_ms)?;
        Some(Triggered {
            until_ms,
            violations: s.suspended_after.unwrap_or(0),
        })
    }))
}

/// Lifts a suspension and forgets the counted violations; returns whether one was active.
pub fn unsuspend(home: &Home, skill: &str, now_ms: i64) -> Result<bool, SuspendError> {
    let _lock = fsutil::lock(&home.state_lock())?;
    let mut st = load(home)?;
    let was = st
        .skills
        .get(skill)
        .and_then(|s| s.suspended_until)
        .is_some_and(|u| u > now_ms);
    if st.skills.remove(skill).is_some() {
        save(home, &st)?;
    }
    Ok(was)
}

pub fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX)
}

/// Unix milliseconds in the audit log's timestamp format.
pub fn format_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(crate::audit::format_ts)
        .unwrap_or_else(|_| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_in_ten_minutes_suspends_for_an_hour() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path(), dir.path());
        let cfg = AutoSuspendConfig::default();
        let t0 = 1_000_000_000;
        // Four violations spread over more than the window never trigger.
        for i in 0..4 {
            assert_eq!(
                record_violation(&home, &cfg, "gh", t0 + i * 4 * 60_000).unwrap(),
                None
            );
        }
        // Only the last three are still in the window at t0+12min; two more make five.
        let t = t0 + 12 * 60_000 + 1;
        assert_eq!(record_violation(&home, &cfg, "gh", t).unwrap(), None);
        let trig = record_violation(&home, &cfg, "gh", t + 1).unwrap().unwrap();
        assert_eq!(
            trig,
            Triggered {
                until_ms: t + 1 + 3_600_000,
                violations: 5
            }
        );
        assert_eq!(
            suspended_until(&home, "gh", t + 2).unwrap(),
            Some(trig.until_ms)
        );
        assert_eq!(suspended_until(&home, "gh", trig.until_ms).unwrap(), None);
        assert_eq!(suspended_until(&home, "other", t).unwrap(), None);
        // Violations while suspended do not re-trigger.
        assert_eq!(record_violation(&home, &cfg, "gh", t + 2).unwrap(), None);
        assert!(unsuspend(&home, "gh", t + 3).unwrap());
        assert_eq!(format_ms(1_775_474_581_080), "2026-04-06T11:23:01.080Z");
        assert_eq!(suspended_until(&home, "gh", t + 4).unwrap(), None);
    }

    #[test]
    fn disabled_never_suspends() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path(), dir.path());
        let cfg = AutoSuspendConfig {
            enabled: false,
            ..AutoSuspendConfig::default()
        };
        for i in 0..20 {
            assert_eq!(record_violation(&home, &cfg, "gh", 1000 + i).unwrap(), None);
        }
    }
}
