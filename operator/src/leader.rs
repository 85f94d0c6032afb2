//! Leader election on a `coordination.k8s.io/v1` Lease (optimistic concurrency on the
//! Lease's resourceVersion). One replica reconciles; the others wait. A leader that cannot
//! renew before its lease expires stops (fail closed: two leaders must never act at once).

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use std::time::Duration;

/// Settings of the election.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (pod name or host name plus a random suffix).
    pub identity: String,
    /// How long a lease stays valid without renewal.
    pub duration: Duration,
}

/// Why the election failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("lease {namespace}/{name}: {source}")]
    Kube {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("lease {0}: lost leadership (held by {1:?} now)")]
    Lost(String, Option<String>),
    #[error("lease {0}: could not renew within the lease duration")]
    RenewTimeout(String),
}

/// A held lease.
pub struct Leadership {
    api: Api<Lease>,
    cfg: LeaseConfig,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("cfg", &self.cfg)
            .finish()
    }
}

fn secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(renew) = spec.renew_time.as_ref().map(|t| t.0) else {
        return true;
    };
    let dur = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    now.duration_since(renew) > SignedDuration::from_secs(dur)
}

impl Leadership {
    fn kube_err(cfg: &LeaseConfig, source: kube::Error) -> LeaderError {
        LeaderError::Kube {
            namespace: cfg.namespace.clone(),
            name: cfg.name.clone(),
            source,
        }
    }

    /// Tries once to take or keep the lease; `Ok(true)` when this replica holds it.
    async fn try_acquire(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, LeaderError> {
        let now = Timestamp::now();
        match api
            .get_opt(&cfg.name)
            .await
            .map_err(|e| Self::kube_err(cfg, e))?
        {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(cfg.name.clone()),
                        namespace: Some(cfg.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(cfg.identity.clone()),
                        lease_duration_seconds: Some(secs(cfg.duration)),
                        acquire_time: Some(MicroTime(now)),
                        renew_time: Some(MicroTime(now)),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                match api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(Self::kube_err(cfg, e)),
                }
            }
            Some(mut lease) => {
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                let ours = spec.holder_identity.as_deref() == Some(cfg.identity.as_str());
                let free = spec.holder_identity.as_deref().is_none_or(str::is_empty);
                if !ours && !free && !expired(spec, now) {
                    return Ok(false);
                }
                if !ours {
                    spec.acquire_time = Some(MicroTime(now));
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                spec.holder_identity = Some(cfg.identity.clone());
                spec.lease_duration_seconds = Some(secs(cfg.duration));
                spec.renew_time = Some(MicroTime(now));
                match api.replace(&cfg.name, &PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(Self::kube_err(cfg, e)),
                }
            }
        }
    }

    /// Waits until this replica holds the lease.
    pub async fn acquire(api: Api<Lease>, cfg: LeaseConfig) -> Result<Leadership, LeaderError> {
        let retry = (cfg.duration / 5).max(Duration::from_millis(500));
        loop {
            match Self::try_acquire(&api, &cfg).await {
                Ok(true) => {
                    tracing::info!(lease = %cfg.name, identity = %cfg.identity, "acquired leadership");
                    return Ok(Leadership { api, cfg });
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election attempt failed"),
            }
            tokio::time::sleep(retry).await;
        }
    }

    /// Renews the lease until it is lost or cannot be renewed in time; returns why it ended.
    pub async fn hold(&self) -> LeaderError {
        let period = (self.cfg.duration / 3).max(Duration::from_millis(300));
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(period).await;
            match Self::try_acquire(&self.api, &self.cfg).await {
                Ok(true) => last_ok = tokio::time::Instant::now(),
                Ok(false) => {
                    let holder = self
                        .api
                        .get_opt(&self.cfg.name)
                        .await
                        .ok()
                        .flatten()
                        .and_then(|l| l.spec.and_then(|s| s.holder_identity));
                    if holder.as_deref() != Some(self.cfg.identity.as_str()) {
                        return LeaderError::Lost(self.cfg.name.clone(), holder);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "lease renewal failed"),
            }
            // Stop before the lease can expire under us (keep a margin of one period).
            if last_ok.elapsed() + period >= self.cfg.duration {
                return LeaderError::RenewTimeout(self.cfg.name.clone());
            }
        }
    }

    /// Gives the lease up (on graceful shutdown) so another replica can take over at once.
    pub async fn release(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.cfg.name).await
            && let Some(spec) = lease.spec.as_mut()
            && spec.holder_identity.as_deref() == Some(self.cfg.identity.as_str())
        {
            spec.holder_identity = None;
            spec.renew_time = None;
            if let Err(e) = self
                .api
                .replace(&self.cfg.name, &PostParams::default(), &lease)
                .await
            {
                tracing::warn!(error = %e, "releasing the lease failed");
            }
        }
    }
}
