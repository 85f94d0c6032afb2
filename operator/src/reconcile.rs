//! The Skill and Channel controllers: validate → build (pure) → apply (server-side apply,
//! owner references) → status, with Events and audit records for every decision that
//! changes a status. Nothing is written when nothing changed, so a restarted operator leaves
//! objects that are already right untouched.

use crate::audit::{AuditEvent, AuditLog};
use crate::authz::{Decision, authorise};
use crate::metrics::{self, Kind, Metrics, Outcome};
use crate::workload::{self, WorkloadConfig, build};
use ironclaw_crds::allowlist::Allowlist;
use ironclaw_crds::channel_resource::{Channel, ChannelStatus};
use ironclaw_crds::grants::{Grants, Missing, validate_skill_name};
use ironclaw_crds::schema::{Condition, ConditionStatus};
use ironclaw_crds::skill::{
    CONDITION_AUTHORISED, CONDITION_PENDING_GRANTS, CONDITION_READY, CONDITION_SUSPENDED, Skill,
    SkillRequests, SkillStatus,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "ironclaw-operator";

/// Shared state of the controllers.
pub struct Context {
    pub client: Client,
    pub workload: WorkloadConfig,
    pub syscalls: Vec<&'static str>,
    pub recorder: Recorder,
    pub audit: AuditLog,
    pub metrics: Arc<Metrics>,
    /// Periodic re-check of objects that are right (drift correction).
    pub resync: Duration,
    /// Parsed Allowlists per namespace, keyed by their (name, resourceVersion) list.
    pub allowlists: AllowlistCache,
}

/// A namespace's Allowlists with the sorted (name, resourceVersion) list they were read at.
type CachedAllowlists = (Vec<(String, String)>, Arc<Vec<Allowlist>>);

/// Cache of each namespace's Allowlists. Every reconcile still asks the API server for the
/// current (name, resourceVersion) list (metadata only); the full objects are fetched again
/// only when that list differs, so decisions are never made on stale grants.
#[derive(Default)]
pub struct AllowlistCache {
    inner: std::sync::Mutex<std::collections::HashMap<String, CachedAllowlists>>,
}

impl AllowlistCache {
    /// The current Allowlists of namespace `ns`.
    pub async fn get(&self, client: &Client, ns: &str) -> Result<Arc<Vec<Allowlist>>, kube::Error> {
        let api = Api::<Allowlist>::namespaced(client.clone(), ns);
        let key = |items: Vec<(Option<String>, Option<String>)>| {
            let mut k: Vec<(String, String)> = items
                .into_iter()
                .map(|(n, rv)| (n.unwrap_or_default(), rv.unwrap_or_default()))
                .collect();
            k.sort();
            k
        };
        let metas = api.list_metadata(&ListParams::default()).await?;
        let current = key(metas
            .items
            .into_iter()
            .map(|m| (m.metadata.name, m.metadata.resource_version))
            .collect());
        if let Ok(map) = self.inner.lock()
            && let Some((k, v)) = map.get(ns)
            && *k == current
        {
            return Ok(v.clone());
        }
        let items = api.list(&ListParams::default()).await?.items;
        let k = key(items
            .iter()
            .map(|a| (a.metadata.name.clone(), a.metadata.resource_version.clone()))
            .collect());
        let v = Arc::new(items);
        if let Ok(mut map) = self.inner.lock() {
            map.insert(ns.to_owned(), (k, v.clone()));
        }
        Ok(v)
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("workload", &self.workload)
            .finish()
    }
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The object is invalid; reconciled again only when it (or an Allowlist) changes.
    #[error("invalid {kind} {name}: {reason}")]
    Invalid {
        kind: &'static str,
        name: String,
        reason: String,
    },
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("writing audit records: {0}")]
    Audit(#[from] std::io::Error),
    #[error("object without metadata.{0}")]
    Metadata(&'static str),
}

impl ReconcileError {
    fn is_invalid(&self) -> bool {
        matches!(self, ReconcileError::Invalid { .. })
    }
}

/// `error_policy`: invalid objects wait for a change; transient errors retry with back-off.
pub fn error_policy<K>(obj: Arc<K>, err: &ReconcileError, _ctx: Arc<Context>) -> Action
where
    K: Resource,
{
    if err.is_invalid() {
        tracing::info!(name = %obj.meta().name.as_deref().unwrap_or(""), error = %err, "invalid object: waiting for a change");
        Action::await_change()
    } else {
        tracing::warn!(name = %obj.meta().name.as_deref().unwrap_or(""), error = %err, "reconcile failed: retrying");
        Action::requeue(Duration::from_secs(5))
    }
}

fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn cond(
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: ConditionStatus::from_bool(status),
        reason: reason.to_owned(),
        message: message.into(),
        last_transition_time: None,
        observed_generation: generation,
    }
}

/// Keeps `lastTransitionTime` of conditions whose status did not change; sets it for the rest.
fn carry_transition_times(new: &mut [Condition], old: &[Condition]) {
    for c in new.iter_mut() {
        match old.iter().find(|o| o.type_ == c.type_) {
            Some(o) if o.status == c.status => {
                c.last_transition_time = o.last_transition_time.clone()
            }
            _ => c.last_transition_time = Some(now_rfc3339()),
        }
    }
}

/// Conditions whose (status, reason, message) changed: each is one decision to report.
fn changed<'a>(new: &'a [Condition], old: &[Condition]) -> Vec<&'a Condition> {
    new.iter()
        .filter(|c| {
            !old.iter().any(|o| {
                o.type_ == c.type_
                    && o.status == c.status
                    && o.reason == c.reason
                    && o.message == c.message
            })
        })
        .collect()
}

async fn publish(
    ctx: &Context,
    obj_ref: &k8s_openapi::api::core::v1::ObjectReference,
    warning: bool,
    reason: &str,
    note: String,
) {
    let ev = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.to_owned(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, obj_ref).await {
        tracing::warn!(error = %e, reason, "publishing an Event failed");
    }
}

async fn apply<K>(api: &Api<K>, obj: &K) -> Result<K, kube::Error>
where
    K: Resource + Serialize + DeserializeOwned + Clone + Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
}

async fn delete_if_present<K>(api: &Api<K>, name: &str) -> Result<bool, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes the skill's workload objects (no-op when absent). Returns whether any existed.
async fn remove_workload(client: &Client, ns: &str, name: &str) -> Result<bool, kube::Error> {
    let obj = workload::object_name(name);
    let mut any = false;
    any |= delete_if_present(&Api::<Deployment>::namespaced(client.clone(), ns), &obj).await?;
    any |= delete_if_present(&Api::<NetworkPolicy>::namespaced(client.clone(), ns), &obj).await?;
    any |= delete_if_present(&Api::<ConfigMap>::namespaced(client.clone(), ns), &obj).await?;
    any |= delete_if_present(
        &Api::<ConfigMap>::namespaced(client.clone(), ns),
        &workload::profile_config_map_name(name),
    )
    .await?;
    Ok(any)
}

fn missing_items(
    missing: &Missing,
    effective: &Grants,
) -> Vec<(&'static str, String, Vec<String>)> {
    let mut v = Vec::new();
    let strs = |x: &[String]| x.to_vec();
    let eff = SkillRequests::from_grants(effective);
    for g in &missing.network {
        v.push(("network", g.to_string(), strs(&eff.network)));
    }
    for g in &missing.env {
        v.push(("env", g.to_string(), strs(&eff.env)));
    }
    for g in &missing.filesystem {
        v.push(("filesystem", g.to_string(), strs(&eff.filesystem)));
    }
    if missing.shell {
        v.push(("shell", "shell".to_owned(), vec![]));
    }
    v
}

/// Reconciles one Skill.
pub async fn reconcile_skill(
    skill: Arc<Skill>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let start = Instant::now();
    let result = reconcile_skill_inner(&skill, &ctx).await;
    let outcome = match &result {
        Ok(_) => Outcome::Ok,
        Err(e) if e.is_invalid() => Outcome::Invalid,
        Err(_) => Outcome::Error,
    };
    ctx.metrics
        .reconciliations
        .get_or_create(&metrics::ReconcileLabels {
            kind: Kind::Skill,
            outcome,
        })
        .inc();
    ctx.metrics
        .reconcile_seconds
        .get_or_create(&metrics::KindLabels { kind: Kind::Skill })
        .observe(start.elapsed().as_secs_f64());
    result
}

async fn reconcile_skill_inner(skill: &Skill, ctx: &Context) -> Result<Action, ReconcileError> {
    let ns = skill
        .namespace()
        .ok_or(ReconcileError::Metadata("namespace"))?;
    let name = skill.name_any();
    let generation = skill.metadata.generation;
    let old = skill.status.clone().unwrap_or_default();
    let obj_ref = skill.object_ref(&());
    let client = &ctx.client;

    let mut status = SkillStatus {
        observed_generation: generation,
        ..SkillStatus::default()
    };
    let mut audit = Vec::new();
    let mut invalid: Option<String> = None;
    let mut decision = metrics::Decision::Authorised;

    // 1. validate
    let requested = validate_skill_name(&name)
        .map_err(|e| format!("metadata.name: {e}"))
        .and_then(|()| skill.spec.validate().map_err(|e| e.to_string()));
    match requested {
        Err(reason) => {
            remove_workload(client, &ns, &name).await?;
            status.conditions = vec![
                cond(
                    CONDITION_AUTHORISED,
                    false,
                    "InvalidSpec",
                    reason.clone(),
                    generation,
                ),
                cond(
                    CONDITION_READY,
                    false,
                    "InvalidSpec",
                    "no workload for an invalid Skill",
                    generation,
                ),
            ];
            invalid = Some(reason);
            decision = metrics::Decision::Invalid;
        }
        Ok(requested) => {
            // 2. authorise against every Allowlist of the namespace
            let allowlists = ctx.allowlists.get(client, &ns).await?;
            match authorise(&name, &requested, &allowlists) {
                Decision::NotAllowlisted { bad_entries } => {
                    remove_workload(client, &ns, &name).await?;
                    let mut msg = format!(
                        "no Allowlist entry in namespace {ns} names skill {name}: it gets no workload"
                    );
                    for b in &bad_entries {
                        msg.push_str(&format!(
                            "; ignored invalid entry in Allowlist {}: {}",
                            b.allowlist, b.error
                        ));
                    }
                    status.conditions = vec![
                        cond(
                            CONDITION_AUTHORISED,
                            false,
                            "NotAllowlisted",
                            msg,
                            generation,
                        ),
                        cond(
                            CONDITION_READY,
                            false,
                            "NotAllowlisted",
                            "no workload",
                            generation,
                        ),
                    ];
                    decision = metrics::Decision::NotAllowlisted;
                    let was_denied = old
                        .condition(CONDITION_AUTHORISED)
                        .is_some_and(|c| c.reason == "NotAllowlisted")
                        && old.observed_generation == generation;
                    if !was_denied {
                        audit.push(ctx.audit.record(
                            AuditEvent::AllowlistDeny,
                            &name,
                            &ns,
                            "start",
                            &format!("skill {ns}/{name}"),
                            vec![],
                            generation,
                        ));
                    }
                }
                Decision::Authorised {
                    effective,
                    missing,
                    env_secrets,
                    bad_entries,
                    sources,
                    ..
                } => {
                    let mut msg = format!("granted by Allowlist {}", sources.join(", "));
                    for b in &bad_entries {
                        msg.push_str(&format!(
                            "; ignored invalid entry in Allowlist {}: {}",
                            b.allowlist, b.error
                        ));
                    }
                    status.conditions.push(cond(
                        CONDITION_AUTHORISED,
                        true,
                        "Allowlisted",
                        msg,
                        generation,
                    ));
                    status.effective_grants = Some(SkillRequests::from_grants(&effective));
                    if missing.is_empty() {
                        status.conditions.push(cond(
                            CONDITION_PENDING_GRANTS,
                            false,
                            "AllGranted",
                            "every request is granted",
                            generation,
                        ));
                    } else {
                        let desc = missing.describe();
                        status.pending_grants = Some(desc.clone());
                        status.conditions.push(cond(
                            CONDITION_PENDING_GRANTS,
                            true,
                            "RequestsExceedGrants",
                            format!(
                                "requested but not granted (the workload runs without them): {desc}"
                            ),
                            generation,
                        ));
                        decision = metrics::Decision::PendingGrants;
                        if old.pending_grants.as_deref() != Some(desc.as_str()) {
                            for (action, resource, granted) in missing_items(&missing, &effective) {
                                audit.push(ctx.audit.record(
                                    AuditEvent::AllowlistViolation,
                                    &name,
                                    &ns,
                                    action,
                                    &resource,
                                    granted,
                                    generation,
                                ));
                            }
                        }
                    }
                    if skill.spec.suspend {
                        remove_workload(client, &ns, &name).await?;
                        status.conditions.push(cond(
                            CONDITION_SUSPENDED,
                            true,
                            "SuspendedBySpec",
                            "spec.suspend is true: no workload",
                            generation,
                        ));
                        status.conditions.push(cond(
                            CONDITION_READY,
                            false,
                            "Suspended",
                            "no workload while suspended",
                            generation,
                        ));
                        decision = metrics::Decision::Suspended;
                    } else {
                        status.conditions.push(cond(
                            CONDITION_SUSPENDED,
                            false,
                            "NotSuspended",
                            "spec.suspend is false",
                            generation,
                        ));
                        // 3. build (pure) and 4. apply
                        match build(
                            skill,
                            &effective,
                            &env_secrets,
                            &ctx.syscalls,
                            &ctx.workload,
                        ) {
                            Err(e) => {
                                remove_workload(client, &ns, &name).await?;
                                let reason = e.to_string();
                                status.conditions.push(cond(
                                    CONDITION_READY,
                                    false,
                                    "BuildFailed",
                                    reason.clone(),
                                    generation,
                                ));
                                invalid = Some(reason);
                            }
                            Ok(w) => {
                                let cms = Api::<ConfigMap>::namespaced(client.clone(), &ns);
                                apply(&cms, &w.profile).await?;
                                apply(&cms, &w.policy).await?;
                                apply(
                                    &Api::<NetworkPolicy>::namespaced(client.clone(), &ns),
                                    &w.network_policy,
                                )
                                .await?;
                                let dep = apply(
                                    &Api::<Deployment>::namespaced(client.clone(), &ns),
                                    &w.deployment,
                                )
                                .await?;
                                let available = dep
                                    .status
                                    .as_ref()
                                    .and_then(|s| s.available_replicas)
                                    .unwrap_or(0);
                                status.conditions.push(if available >= 1 {
                                    cond(
                                        CONDITION_READY,
                                        true,
                                        "WorkloadAvailable",
                                        "the skill's pod is running",
                                        generation,
                                    )
                                } else {
                                    cond(
                                        CONDITION_READY,
                                        false,
                                        "WorkloadPending",
                                        "the skill's pod is not available yet",
                                        generation,
                                    )
                                });
                                status.seccomp_profile = Some(w.profile_file.clone());
                                status.seccomp_profile_hash = Some(w.profile_hash.clone());
                                status.workload = dep.metadata.name.clone();
                            }
                        }
                    }
                }
            }
        }
    }

    // Audit first (never lost: a decision is in the status only after its record is out).
    if !audit.is_empty() {
        ctx.audit.write(&audit)?;
        for r in &audit {
            let event = match r.event {
                AuditEvent::AllowlistDeny => metrics::EventName::ALLOWLIST_DENY,
                AuditEvent::AllowlistViolation => metrics::EventName::ALLOWLIST_VIOLATION,
            };
            ctx.metrics
                .audit_events
                .get_or_create(&metrics::AuditLabels { event })
                .inc();
        }
    }

    // Events for every condition that changed (a decision).
    for c in changed(&status.conditions, &old.conditions) {
        let warning = matches!(
            (c.type_.as_str(), c.status),
            (CONDITION_AUTHORISED, ConditionStatus::False)
                | (CONDITION_PENDING_GRANTS, ConditionStatus::True)
        ) || c.reason == "BuildFailed"
            || c.reason == "InvalidSpec";
        let reason = if c.type_ == CONDITION_PENDING_GRANTS && c.status == ConditionStatus::True {
            "PendingGrants".to_owned()
        } else {
            c.reason.clone()
        };
        // Ready=False/WorkloadPending is a normal transient state: no Event for it.
        // Routine states are not decisions: no Event for a pending pod, an unsuspended skill,
        // or "all granted" unless grants were pending before.
        let was_pending = old
            .condition(CONDITION_PENDING_GRANTS)
            .is_some_and(|o| o.status == ConditionStatus::True);
        if c.reason == "WorkloadPending"
            || c.reason == "NotSuspended"
            || (c.reason == "AllGranted" && !was_pending)
        {
            continue;
        }
        publish(
            ctx,
            &obj_ref,
            warning,
            &reason,
            format!("{}: {}", c.type_, c.message),
        )
        .await;
    }

    // 5. status (only when it changed)
    carry_transition_times(&mut status.conditions, &old.conditions);
    if status != old {
        ctx.metrics
            .decisions
            .get_or_create(&metrics::DecisionLabels { decision })
            .inc();
        let api = Api::<Skill>::namespaced(client.clone(), &ns);
        let patch = serde_json::json!({ "status": status });
        tracing::debug!(patch = %patch, "status patch");
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }

    match invalid {
        Some(reason) => Err(ReconcileError::Invalid {
            kind: "Skill",
            name: format!("{ns}/{name}"),
            reason,
        }),
        None => Ok(Action::requeue(ctx.resync)),
    }
}

/// Reconciles one Channel: validates the policy with the shared rules and records the outcome.
pub async fn reconcile_channel(
    ch: Arc<Channel>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let start = Instant::now();
    let ns = ch
        .namespace()
        .ok_or(ReconcileError::Metadata("namespace"))?;
    let name = ch.name_any();
    let generation = ch.metadata.generation;
    let old = ch.status.clone().unwrap_or_default();
    let verdict = ch.spec.validate();
    let mut status = ChannelStatus {
        observed_generation: generation,
        conditions: vec![match &verdict {
            Ok(()) => cond(
                "Valid",
                true,
                "PolicyValid",
                "dmPolicy allowlist with explicit allowFrom IDs",
                generation,
            ),
            Err(e) => cond("Valid", false, "InvalidPolicy", e.to_string(), generation),
        }],
    };
    for c in changed(&status.conditions, &old.conditions) {
        publish(
            &ctx,
            &ch.object_ref(&()),
            c.status != ConditionStatus::True,
            &c.reason,
            c.message.clone(),
        )
        .await;
    }
    carry_transition_times(&mut status.conditions, &old.conditions);
    if status != old {
        let api = Api::<Channel>::namespaced(ctx.client.clone(), &ns);
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({ "status": status })),
        )
        .await?;
    }
    let outcome = if verdict.is_ok() {
        Outcome::Ok
    } else {
        Outcome::Invalid
    };
    ctx.metrics
        .reconciliations
        .get_or_create(&metrics::ReconcileLabels {
            kind: Kind::Channel,
            outcome,
        })
        .inc();
    ctx.metrics
        .reconcile_seconds
        .get_or_create(&metrics::KindLabels {
            kind: Kind::Channel,
        })
        .observe(start.elapsed().as_secs_f64());
    match verdict {
        Ok(()) => Ok(Action::requeue(ctx.resync)),
        Err(e) => Err(ReconcileError::Invalid {
            kind: "Channel",
            name: format!("{ns}/{name}"),
            reason: e.to_string(),
        }),
    }
}
