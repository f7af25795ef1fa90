//! The dashboard in a cluster: the other hosts' instances, asked of their
//! APIs over NATS and kept for a moment so that every open page shares one
//! ask; one instance of another host for its page; and a button pressed
//! on such an instance, sent to its host as the API request it stands for
//! (audited there, under the session's actor, "via" this host).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::actions::InstanceAction;
use super::fleet::FleetRow;
use crate::api::dto::{InstanceDto, InstanceList};
use crate::cluster::Forwarded;
use crate::manager::{Actor, Manager};
use crate::model::cluster::HostName;

/// How long the other hosts' rows are reused before they are asked again;
/// also how often an open fleet page looks for their changes.
pub const REFRESH: Duration = Duration::from_secs(2);

/// The other hosts' rows as last asked.
#[derive(Default)]
pub struct RemoteRows {
    at: Option<Instant>,
    rows: Vec<FleetRow>,
    /// The hosts whose instances could not be listed, with why.
    missing: Vec<(String, String)>,
}

pub type RemoteCache = Arc<tokio::sync::Mutex<RemoteRows>>;

/// Every other host's instances as fleet rows (none outside a cluster),
/// and the hosts that could not be listed, with why.
pub async fn other_hosts_rows(
    manager: &Manager,
    cache: &RemoteCache,
) -> (Vec<FleetRow>, Vec<(String, String)>) {
    if manager.host_name().is_none() {
        return (Vec::new(), Vec::new());
    }
    let mut held = cache.lock().await;
    if held.at.is_some_and(|t| t.elapsed() < REFRESH) {
        return (held.rows.clone(), held.missing.clone());
    }
    let asked = match manager
        .ask_others::<InstanceList>("/api/v1/instances", "dashboard")
        .await
    {
        Ok(asked) => asked,
        Err(e) => {
            tracing::warn!(error = %e, "dashboard: cannot list the cluster's hosts");
            let why = format!("the cluster's hosts cannot be listed: {e}");
            return (held.rows.clone(), vec![("*".into(), why)]);
        }
    };
    let (mut rows, mut missing) = (Vec::new(), Vec::new());
    for (host, answer) in asked {
        match answer {
            Ok(list) => rows.extend(
                list.instances
                    .iter()
                    .map(|i| FleetRow::of_host(i, host.as_str())),
            ),
            Err(why) => {
                tracing::warn!(%host, error = %why, "dashboard: a host's instances are not listed");
                missing.push((host.to_string(), why));
            }
        }
    }
    held.at = Some(Instant::now());
    held.rows = rows.clone();
    held.missing = missing.clone();
    (rows, missing)
}

/// The instance `name` when another host holds it: that host and what its
/// API says of it.
pub async fn instance_elsewhere(manager: &Manager, name: &str) -> Option<(HostName, InstanceDto)> {
    let host = manager.held_elsewhere(name).await.ok()??;
    let path = format!("/api/v1/instances/{name}");
    let dto = manager.ask_json(&host, &path, "dashboard").await.ok()?;
    Some((host, dto))
}

/// Send a button pressed on `name`, which `host` runs, to `host`'s API;
/// what to tell the operator, as for a local action.
pub async fn act_elsewhere(
    manager: &Manager,
    host: &HostName,
    name: &str,
    action: InstanceAction,
    upgrade_to: &str,
    actor: &Actor,
) -> Result<String, String> {
    let me = manager
        .host_name()
        .cloned()
        .ok_or("this host is not in a cluster")?;
    let (method, path, body) = match action {
        InstanceAction::Start | InstanceAction::Stop | InstanceAction::Restart => {
            let verb = match action {
                InstanceAction::Start => "start",
                InstanceAction::Stop => "stop",
                _ => "restart",
            };
            (
                "POST",
                format!("/api/v1/instances/{name}/{verb}"),
                "{}".to_string(),
            )
        }
        InstanceAction::Backup => (
            "POST",
            format!("/api/v1/instances/{name}/backups"),
            "{}".to_string(),
        ),
        InstanceAction::Upgrade => (
            "POST",
            format!("/api/v1/instances/{name}/upgrade"),
            serde_json::json!({ "version": upgrade_to }).to_string(),
        ),
        InstanceAction::Delete => ("DELETE", format!("/api/v1/instances/{name}"), String::new()),
    };
    let answer = manager
        .forward(
            host,
            Forwarded {
                method: method.into(),
                path_and_query: path,
                content_type: (!body.is_empty()).then(|| "application/json".to_string()),
                body: Bytes::from(body),
                actor: actor.0.clone(),
                from: me,
            },
        )
        .await
        .map_err(|e| format!("host {host} cannot be reached: {e}"))?;
    if (200..300).contains(&answer.status) {
        return Ok(format!("{name} {} on host {host}.", action.done()));
    }
    // The API's error body: `{"error": {"message": …}}`.
    let message = serde_json::from_slice::<serde_json::Value>(&answer.body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&answer.body).into_owned());
    Err(format!("host {host}: {message}"))
}
