//! `ironclaw-sidecar install-profiles`: writes the operator's seccomp profiles (ConfigMaps
//! labelled `ironclaw.dev/seccomp-profile=true`, key = flat file name, value = profile JSON)
//! into the kubelet's seccomp root on each node: one pass ([`sync_from_cluster`]) or a watch
//! ([`watch`]).

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error(
        "seccomp profile {source_name}: key {key:?} is not a flat file name ending in .json \
         (letters, digits, '-', '_', '.')"
    )]
    BadName { source_name: String, key: String },
    #[error("seccomp profile {source_name}/{key}: not a seccomp profile: {reason}")]
    BadProfile {
        source_name: String,
        key: String,
        reason: String,
    },
    #[error("seccomp profile {path}: {what}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What one sync did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    pub written: Vec<String>,
    pub unchanged: Vec<String>,
}

/// Checks `key` is a flat `*.json` name and `content` a seccomp profile (an object with a
/// string `defaultAction`).
pub fn check(source_name: &str, key: &str, content: &str) -> Result<(), ProfileError> {
    let flat = !key.is_empty()
        && key.len() <= 253
        && !key.starts_with('.')
        && key.ends_with(".json")
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !flat {
        return Err(ProfileError::BadName {
            source_name: source_name.to_owned(),
            key: key.to_owned(),
        });
    }
    let bad = |reason: String| ProfileError::BadProfile {
        source_name: source_name.to_owned(),
        key: key.to_owned(),
        reason,
    };
    let v: serde_json::Value = serde_json::from_str(content).map_err(|e| bad(e.to_string()))?;
    if !v
        .get("defaultAction")
        .is_some_and(serde_json::Value::is_string)
    {
        return Err(bad("missing string field `defaultAction`".into()));
    }
    Ok(())
}

/// Writes each `(source, key, content)` as `root/key` (mode 0644, temp file + rename, so the
/// kubelet never reads a torn profile). Profiles are content-addressed by the operator, so an
/// existing identical file is left alone. All entries are checked before anything is written.
pub fn sync(root: &Path, entries: &[(String, String, String)]) -> Result<SyncReport, ProfileError> {
    use std::os::unix::fs::PermissionsExt;
    for (src, key, content) in entries {
        check(src, key, content)?;
    }
    let mut report = SyncReport::default();
    for (_, key, content) in entries {
        let dest = root.join(key);
        if std::fs::read(&dest).is_ok_and(|old| old == content.as_bytes()) {
            report.unchanged.push(key.clone());
            continue;
        }
        let tmp = root.join(format!(".{key}.tmp-{}", std::process::id()));
        let io = |what, path: &Path| {
            let path = path.to_owned();
            move |source| ProfileError::Io { what, path, source }
        };
        let res = (|| {
            std::fs::write(&tmp, content).map_err(io("writing", &tmp))?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))
                .map_err(io("setting mode on", &tmp))?;
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(io("syncing", &tmp))?;
            std::fs::rename(&tmp, &dest).map_err(io("renaming into", &dest))
        })();
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res?;
        report.written.push(key.clone());
    }
    Ok(report)
}

/// `namespace/name` of a ConfigMap and its `(source, key, content)` entries.
fn entries_of(
    cm: k8s_openapi::api::core::v1::ConfigMap,
) -> (String, Vec<(String, String, String)>) {
    let src = format!(
        "{}/{}",
        cm.metadata.namespace.unwrap_or_default(),
        cm.metadata.name.unwrap_or_default()
    );
    let entries = cm
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (src.clone(), k, v))
        .collect();
    (src, entries)
}

/// What [`watch`] did with one event.
#[derive(Debug)]
pub enum WatchOutcome {
    /// A ConfigMap (`namespace/name`) was synced.
    Synced { source: String, report: SyncReport },
    /// A ConfigMap was refused whole (a bad key or content): nothing of it was written.
    Refused(ProfileError),
    /// The watch failed; it lists again after a backoff.
    WatchError(String),
    /// The initial list (or a re-list after an error) is complete.
    Listed,
}

/// Keeps `root` in step with the profile ConfigMaps (`selector`, all namespaces): a watch that
/// lists everything first (and again after an error, with backoff), then syncs each ConfigMap as
/// it is added or changed — a new profile is on the node within moments of the operator writing
/// it. A deleted ConfigMap leaves its files: they are content-addressed and a running pod may
/// still use one. `report` hears every outcome. Returns only if the watch stream ends.
pub async fn watch(
    client: kube::Client,
    selector: &str,
    root: &Path,
    mut report: impl FnMut(WatchOutcome),
) {
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::{WatchStreamExt, watcher};
    let api: kube::Api<ConfigMap> = kube::Api::all(client);
    let cfg = watcher::Config::default().labels(selector);
    let mut stream = watcher(api, cfg).default_backoff().boxed();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(watcher::Event::Apply(cm) | watcher::Event::InitApply(cm)) => {
                let (source, entries) = entries_of(cm);
                match sync(root, &entries) {
                    Ok(r) => report(WatchOutcome::Synced { source, report: r }),
                    Err(e) => report(WatchOutcome::Refused(e)),
                }
            }
            Ok(watcher::Event::InitDone) => report(WatchOutcome::Listed),
            Ok(watcher::Event::Init | watcher::Event::Delete(_)) => {}
            Err(e) => report(WatchOutcome::WatchError(e.to_string())),
        }
    }
}

/// The `key -> content` entries of every ConfigMap matching `selector`, in all namespaces,
/// each tagged with `namespace/name`.
pub async fn list_from_cluster(
    client: kube::Client,
    selector: &str,
) -> Result<Vec<(String, Vec<(String, String, String)>)>, kube::Error> {
    use k8s_openapi::api::core::v1::ConfigMap;
    let api: kube::Api<ConfigMap> = kube::Api::all(client);
    let list = api
        .list(&kube::api::ListParams::default().labels(selector))
        .await?;
    Ok(list.items.into_iter().map(entries_of).collect())
}

/// One pass: lists the profile ConfigMaps and syncs each into `root`. A ConfigMap with a bad
/// entry is refused whole (reported in the returned errors); the others are still written.
pub async fn sync_from_cluster(
    client: kube::Client,
    selector: &str,
    root: &Path,
) -> Result<(SyncReport, Vec<ProfileError>), kube::Error> {
    let mut total = SyncReport::default();
    let mut errors = Vec::new();
    for (_, entries) in list_from_cluster(client, selector).await? {
        match sync(root, &entries) {
            Ok(r) => {
                total.written.extend(r.written);
                total.unchanged.extend(r.unchanged);
            }
            Err(e) => errors.push(e),
        }
    }
    Ok((total, errors))
}
