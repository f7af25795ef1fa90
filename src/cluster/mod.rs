//! The adapter to a NATS JetStream cluster (`serve --cluster`): the
//! connection, two key-value buckets and one request subject per host.
//!
//! - `{prefix}-hosts`: each host's [`HostBeat`], put every heartbeat.
//! - `{prefix}-instances`: which host holds each instance ([`Claim`]),
//!   made with compare-and-set (`create`), so two hosts never hold one
//!   name, and let go with the revision it was made at.
//! - `{prefix}-leases`: which host runs each instance now ([`Lease`]),
//!   taken with `create` and renewed with `update` at the revision last
//!   written, every heartbeat. Entries age out after the lease time
//!   (the bucket's `max_age`), and NATS then writes a marker, so a watch
//!   sees a lease run out.
//! - `{prefix}.host.{name}.api`: API requests forwarded to the host that
//!   holds the instance they are about ([`Forwarded`]); the answer comes
//!   back in parts no bigger than the server's payload limit.
//!
//! What the records mean and the rules over them are in
//! [`crate::model::cluster`]; what the daemon does with them is the
//! manager's (`manager::cluster`).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use async_nats::{HeaderMap, ServerAddr};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::StreamExt;

pub use crate::config::ClusterConfig;
use crate::credentials::Credentials;
use crate::model::cluster::{host_health, Claim, Desired, HostBeat, HostHealth, HostName, Lease};

/// How long connecting to the cluster may take before the daemon gives up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a forwarded request may take to be answered. Creates that
/// download a release and upgrades take seconds; a host silent this long is
/// not going to answer.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(180);

/// How long a list waits for another host's part.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterFailure {
    #[error("cannot reach the NATS cluster: {0}")]
    Unreachable(String),
    #[error("the NATS cluster refused this host: {0}")]
    Refused(String),
    #[error("instance {name} is held by host {host} of the cluster: pick another name")]
    HeldElsewhere { name: String, host: HostName },
    #[error("host {host} runs instance {name} now (its lease)")]
    LeaseHeld { name: String, host: HostName },
    #[error("no host named {0} in the cluster: see `pockestrator hosts`")]
    UnknownHost(String),
    #[error(
        "host {0} did not answer: it may be down or cut off from NATS (see `pockestrator hosts`)"
    )]
    NoAnswer(HostName),
    #[error("{0}")]
    TooLarge(String),
    #[error("this daemon is not part of a cluster: start it with `serve --cluster nats://HOST:PORT --host-name NAME`")]
    NotClustered,
}

/// An API request forwarded to another host: the method, path and query,
/// body, and who asked (authenticated by the host it came in at).
#[derive(Debug, Clone)]
pub struct Forwarded {
    pub method: String,
    pub path_and_query: String,
    pub content_type: Option<String>,
    pub body: Bytes,
    pub actor: String,
    pub from: HostName,
}

/// The answer to a forwarded request.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Bytes,
}

/// An answer whose body comes in pieces as it is made: what a forwarded
/// request's handler gives (a followed log never ends), and what a
/// streamed forward gives back.
pub struct Streamed {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: futures::stream::BoxStream<'static, Bytes>,
}

/// What answers forwarded requests on this host (the API's router).
pub type Handler = Arc<dyn Fn(Forwarded) -> BoxFuture<'static, Streamed> + Send + Sync>;

/// Asks for the answer as a stream of pieces, each taken (acknowledged)
/// by the asking host before the next is sent.
const H_STREAM: &str = "Pk-Stream";
/// The last piece of a streamed answer.
const H_END: &str = "Pk-End";
/// How long a streamed piece waits for the asking host to take it, and the
/// longest quiet time before an empty piece checks that it still listens:
/// a host that went away (its client hung up) ends the stream here.
const STREAM_PATIENCE: Duration = Duration::from_secs(15);

const H_METHOD: &str = "Pk-Method";
const H_PATH: &str = "Pk-Path";
const H_ACTOR: &str = "Pk-Actor";
const H_FROM: &str = "Pk-From";
const H_TYPE: &str = "Pk-Content-Type";
const H_STATUS: &str = "Pk-Status";
const H_PART: &str = "Pk-Part";
const H_PARTS: &str = "Pk-Parts";

/// One host's connection to the cluster.
pub struct Cluster {
    cfg: ClusterConfig,
    client: async_nats::Client,
    hosts: kv::Store,
    claims: kv::Store,
    leases: kv::Store,
    started_at: chrono::DateTime<chrono::Utc>,
}

impl Cluster {
    /// Connect, and open (or make) the buckets. Fails fast: a daemon told
    /// to join a cluster it cannot reach says so at start.
    pub async fn connect(
        cfg: ClusterConfig,
        credentials: &Credentials,
    ) -> Result<Self, ClusterFailure> {
        let options = credentials
            .nats_options(cfg.creds.as_deref())
            .await
            .map_err(|(file, e)| {
                ClusterFailure::Refused(format!(
                    "cannot read the credentials file {}: {e}",
                    file.display()
                ))
            })?;
        let servers = cfg
            .servers
            .iter()
            .map(|u| u.parse::<ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ClusterFailure::Refused(e.to_string()))?;
        let options = options
            .name(format!("pockestrator {}", cfg.host))
            .connection_timeout(CONNECT_TIMEOUT)
            .request_timeout(Some(Duration::from_secs(10)))
            // Once in, a host keeps trying to get back: a cluster node going
            // away is routine.
            .max_reconnects(None);
        let client = tokio::time::timeout(CONNECT_TIMEOUT * 2, options.connect(servers))
            .await
            .map_err(|_| {
                ClusterFailure::Unreachable(format!("no answer within {:?}", CONNECT_TIMEOUT * 2))
            })?
            .map_err(|e| match e.kind() {
                async_nats::ConnectErrorKind::Authentication
                | async_nats::ConnectErrorKind::AuthorizationViolation
                | async_nats::ConnectErrorKind::Tls => {
                    ClusterFailure::Refused(credentials.scrub(&e.to_string()))
                }
                _ => ClusterFailure::Unreachable(credentials.scrub(&e.to_string())),
            })?;
        let replicas = cfg.replicas;
        let js = jetstream::new(client.clone());
        let hosts = bucket(
            &js,
            cfg.prefix.hosts_bucket(),
            "pockestrator hosts",
            replicas,
        )
        .await?;
        let claims = bucket(
            &js,
            cfg.prefix.claims_bucket(),
            "pockestrator instances and their hosts",
            replicas,
        )
        .await?;
        let leases = lease_bucket(&js, &cfg).await?;
        Ok(Self {
            cfg,
            client,
            hosts,
            claims,
            leases,
            started_at: chrono::Utc::now(),
        })
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.cfg
    }

    pub fn host(&self) -> &HostName {
        &self.cfg.host
    }

    pub fn started_at(&self) -> chrono::DateTime<chrono::Utc> {
        self.started_at
    }

    /// Say this host is alive (and how loaded it is).
    pub async fn beat(&self, beat: &HostBeat) -> Result<(), ClusterFailure> {
        let value = serde_json::to_vec(beat).map_err(|e| ClusterFailure::Refused(e.to_string()))?;
        self.hosts
            .put(self.cfg.host.as_str(), value.into())
            .await
            .map(|_| ())
            .map_err(|e| ClusterFailure::Unreachable(e.to_string()))
    }

    /// Every host that ever beat in this cluster, with its health now,
    /// sorted by name. A record that does not parse is skipped.
    pub async fn hosts(&self) -> Result<Vec<(HostBeat, HostHealth)>, ClusterFailure> {
        let unreachable = |e: &dyn std::fmt::Display| ClusterFailure::Unreachable(e.to_string());
        let mut keys = self.hosts.keys().await.map_err(|e| unreachable(&e))?;
        let now = chrono::Utc::now();
        let mut out = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| unreachable(&e))?;
            let Some(value) = self.hosts.get(&key).await.map_err(|e| unreachable(&e))? else {
                continue;
            };
            if let Ok(beat) = serde_json::from_slice::<HostBeat>(&value) {
                let health =
                    host_health(beat.seen_at, now, self.cfg.heartbeat, self.cfg.lost_after);
                out.push((beat, health));
            }
        }
        out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        Ok(out)
    }

    /// Take the name for this host. Already this host's: fine; another's:
    /// [`ClusterFailure::HeldElsewhere`].
    pub async fn claim(&self, name: &str) -> Result<(), ClusterFailure> {
        let claim = Claim {
            host: self.cfg.host.clone(),
            since: chrono::Utc::now(),
            desired: None,
            from: None,
        };
        let value: Bytes = serde_json::to_vec(&claim)
            .map_err(|e| ClusterFailure::Refused(e.to_string()))?
            .into();
        // Whatever the create says (taken; or "wrong last sequence" when
        // another host's create of the same name won the race a moment
        // ago), the holder is read back; a name let go of meanwhile is
        // tried again, a few times.
        let mut last = String::new();
        for _ in 0..3 {
            match self.claims.create(name, value.clone()).await {
                Ok(_) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
            match self.owner(name).await? {
                Some(c) if c.host == self.cfg.host => return Ok(()),
                Some(c) => {
                    return Err(ClusterFailure::HeldElsewhere {
                        name: name.to_string(),
                        host: c.host,
                    })
                }
                None => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        Err(ClusterFailure::Unreachable(format!(
            "cannot claim {name}: {last}"
        )))
    }

    /// Let go of the name, if this host holds it.
    pub async fn release(&self, name: &str) -> Result<(), ClusterFailure> {
        let entry = self
            .claims
            .entry(name)
            .await
            .map_err(|e| ClusterFailure::Unreachable(e.to_string()))?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return Ok(());
        };
        let ours =
            serde_json::from_slice::<Claim>(&entry.value).is_ok_and(|c| c.host == self.cfg.host);
        if !ours {
            return Ok(());
        }
        tracing::debug!(
            instance = name,
            revision = entry.revision,
            "cluster: letting go of the name"
        );
        self.claims
            .delete_expect_revision(name, Some(entry.revision))
            .await
            .map_err(|e| ClusterFailure::Unreachable(e.to_string()))
    }

    /// The names this host holds, with their claims.
    pub async fn held_here(&self) -> Result<Vec<(String, Claim)>, ClusterFailure> {
        let unreachable = |e: &dyn std::fmt::Display| ClusterFailure::Unreachable(e.to_string());
        let mut keys = self.claims.keys().await.map_err(|e| unreachable(&e))?;
        let mut out = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| unreachable(&e))?;
            if let Some(claim) = self.owner(&key).await? {
                if claim.host == self.cfg.host {
                    out.push((key, claim));
                }
            }
        }
        Ok(out)
    }

    /// Every name's holder now, then every change: `(name, Some(claim))`
    /// when a host takes it, `(name, None)` when it is let go of.
    pub async fn watch_claims(
        &self,
    ) -> Result<impl futures::Stream<Item = (String, Option<Claim>)>, ClusterFailure> {
        let watch = self
            .claims
            .watch_with_history(">")
            .await
            .map_err(|e| ClusterFailure::Unreachable(e.to_string()))?;
        Ok(watch.filter_map(|entry| async move {
            let entry = entry.ok()?;
            let claim = match entry.operation {
                kv::Operation::Put => serde_json::from_slice(&entry.value).ok(),
                kv::Operation::Delete | kv::Operation::Purge => None,
            };
            Some((entry.key, claim))
        }))
    }

    /// Who holds the name, if anyone.
    pub async fn owner(&self, name: &str) -> Result<Option<Claim>, ClusterFailure> {
        let value = self
            .claims
            .get(name)
            .await
            .map_err(|e| ClusterFailure::Unreachable(e.to_string()))?;
        Ok(value.and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// The claim of `name` with its revision, if anyone holds it.
    async fn claim_entry(&self, name: &str) -> Result<Option<(Claim, u64)>, ClusterFailure> {
        let entry = self
            .claims
            .entry(name)
            .await
            .map_err(|e| ClusterFailure::Unreachable(e.to_string()))?;
        Ok(entry
            .filter(|e| e.operation == kv::Operation::Put)
            .and_then(|e| Some((serde_json::from_slice(&e.value).ok()?, e.revision))))
    }

    /// Record what another host needs to bring `name` back, in this host's
    /// claim of it; nothing when it says so already, or the name is not
    /// this host's.
    pub async fn publish_desired(
        &self,
        name: &str,
        desired: &Desired,
    ) -> Result<bool, ClusterFailure> {
        let Some((mut claim, revision)) = self.claim_entry(name).await? else {
            return Ok(false);
        };
        if claim.host != self.cfg.host || claim.desired.as_ref() == Some(desired) {
            return Ok(false);
        }
        claim.desired = Some(desired.clone());
        let value =
            serde_json::to_vec(&claim).map_err(|e| ClusterFailure::Refused(e.to_string()))?;
        self.claims
            .update(name, value.into(), revision)
            .await
            .map(|_| true)
            .map_err(|e| ClusterFailure::Unreachable(e.to_string()))
    }

    /// Move the claim of `name` from host `from` to host `to` at the
    /// revision it was read at, keeping its desired state: a failover's
    /// take-over (`taken_from` names the host it came from), or a failed
    /// one's give-back.
    pub async fn move_claim(
        &self,
        name: &str,
        from: &HostName,
        to: &HostName,
        taken_from: Option<HostName>,
    ) -> Result<Claim, ClusterFailure> {
        let Some((claim, revision)) = self.claim_entry(name).await? else {
            return Err(ClusterFailure::Refused(format!(
                "{name} is held by no host any more"
            )));
        };
        if &claim.host != from {
            return Err(ClusterFailure::HeldElsewhere {
                name: name.to_string(),
                host: claim.host,
            });
        }
        let moved = Claim {
            host: to.clone(),
            since: chrono::Utc::now(),
            desired: claim.desired,
            from: taken_from,
        };
        let value =
            serde_json::to_vec(&moved).map_err(|e| ClusterFailure::Refused(e.to_string()))?;
        self.claims
            .update(name, value.into(), revision)
            .await
            .map_err(|e| ClusterFailure::Unreachable(e.to_string()))?;
        Ok(moved)
    }

    /// Take or renew this host's lease on `name`: at `revision` (the one
    /// this host last wrote) with compare-and-set; without one, or when
    /// that fails, from what the bucket holds: this host's (an earlier run,
    /// a renewal whose answer was lost) is renewed at its revision, none is
    /// taken with `create`, another host's is [`ClusterFailure::LeaseHeld`].
    /// The new revision.
    pub async fn renew_lease(
        &self,
        name: &str,
        revision: Option<u64>,
    ) -> Result<u64, ClusterFailure> {
        let value = self.lease_value()?;
        let unreachable = |e: &dyn std::fmt::Display| ClusterFailure::Unreachable(e.to_string());
        if let Some(r) = revision {
            if let Ok(r) = self.leases.update(name, value.clone(), r).await {
                return Ok(r);
            }
        }
        let entry = self.leases.entry(name).await.map_err(|e| unreachable(&e))?;
        let held = entry
            .filter(|e| e.operation == kv::Operation::Put)
            .map(|e| {
                let holder = serde_json::from_slice::<Lease>(&e.value)
                    .map(|l| l.host)
                    .ok();
                (holder, e.revision)
            });
        match held {
            Some((Some(host), r)) if host == self.cfg.host => self
                .leases
                .update(name, value, r)
                .await
                .map_err(|e| unreachable(&e)),
            Some((Some(host), _)) => Err(ClusterFailure::LeaseHeld {
                name: name.to_string(),
                host,
            }),
            _ => self.take_lease(name).await,
        }
    }

    /// Take the lease on `name` only if nobody holds it (a failover: the
    /// first host to take it brings the instance back). Another host's is
    /// [`ClusterFailure::LeaseHeld`]; a create whose answer was lost (the
    /// lease is this host's after all) is [`ClusterFailure::Unreachable`],
    /// for the next renewal to find.
    pub async fn take_lease(&self, name: &str) -> Result<u64, ClusterFailure> {
        match self.leases.create(name, self.lease_value()?).await {
            Ok(r) => Ok(r),
            Err(e) => match self.lease_holder(name).await? {
                Some(host) if host != self.cfg.host => Err(ClusterFailure::LeaseHeld {
                    name: name.to_string(),
                    host,
                }),
                _ => Err(ClusterFailure::Unreachable(e.to_string())),
            },
        }
    }

    /// This host's lease, as stored.
    fn lease_value(&self) -> Result<Bytes, ClusterFailure> {
        let lease = Lease {
            host: self.cfg.host.clone(),
            since: chrono::Utc::now(),
        };
        serde_json::to_vec(&lease)
            .map(Bytes::from)
            .map_err(|e| ClusterFailure::Refused(e.to_string()))
    }

    /// Who holds the lease on `name` now, if anyone.
    pub async fn lease_holder(&self, name: &str) -> Result<Option<HostName>, ClusterFailure> {
        let value = self
            .leases
            .get(name)
            .await
            .map_err(|e| ClusterFailure::Unreachable(e.to_string()))?;
        Ok(value
            .and_then(|v| serde_json::from_slice::<Lease>(&v).ok())
            .map(|l| l.host))
    }

    /// Let go of the lease on `name`, if this host holds it.
    pub async fn release_lease(&self, name: &str) -> Result<(), ClusterFailure> {
        let entry = self
            .leases
            .entry(name)
            .await
            .map_err(|e| ClusterFailure::Unreachable(e.to_string()))?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return Ok(());
        };
        if !serde_json::from_slice::<Lease>(&entry.value).is_ok_and(|l| l.host == self.cfg.host) {
            return Ok(());
        }
        self.leases
            .delete_expect_revision(name, Some(entry.revision))
            .await
            .map_err(|e| ClusterFailure::Unreachable(e.to_string()))
    }

    /// Every lease now, then every change: `(name, Some(host))` when a host
    /// takes or renews it, `(name, None)` when it is let go of or runs out.
    pub async fn watch_leases(
        &self,
    ) -> Result<impl futures::Stream<Item = (String, Option<HostName>)>, ClusterFailure> {
        let watch = self
            .leases
            .watch_with_history(">")
            .await
            .map_err(|e| ClusterFailure::Unreachable(e.to_string()))?;
        Ok(watch.filter_map(|entry| async move {
            let entry = entry.ok()?;
            let host = match entry.operation {
                kv::Operation::Put => serde_json::from_slice::<Lease>(&entry.value)
                    .ok()
                    .map(|l| l.host),
                kv::Operation::Delete | kv::Operation::Purge => None,
            };
            Some((entry.key, host))
        }))
    }

    /// Send a request to `host` and wait for its whole answer, at most
    /// `within`.
    pub async fn forward(
        &self,
        host: &HostName,
        req: Forwarded,
        within: Duration,
    ) -> Result<Answer, ClusterFailure> {
        let mut replies = self.send_request(host, req, false).await?;
        let collect = async {
            let mut body = Vec::new();
            let (mut status, mut content_type, mut parts) = (0u16, None, 1usize);
            let mut got = 0usize;
            while got < parts {
                let Some(msg) = replies.next().await else {
                    return Err(ClusterFailure::NoAnswer(host.clone()));
                };
                if msg.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
                    return Err(ClusterFailure::NoAnswer(host.clone()));
                }
                let header = |name: &str| {
                    msg.headers
                        .as_ref()
                        .and_then(|h| h.get(name))
                        .map(|v| v.as_str().to_string())
                };
                if got == 0 {
                    status = header(H_STATUS).and_then(|s| s.parse().ok()).unwrap_or(502);
                    content_type = header(H_TYPE);
                    parts = header(H_PARTS)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(1)
                        .max(1);
                }
                body.extend_from_slice(&msg.payload);
                got += 1;
            }
            Ok(Answer {
                status,
                content_type,
                body: body.into(),
            })
        };
        tokio::time::timeout(within, collect)
            .await
            .map_err(|_| ClusterFailure::NoAnswer(host.clone()))?
    }

    /// Publish `req` to `host`'s API subject, its answers to come to the
    /// inbox returned (subscribed before the request goes); `streamed`
    /// asks for the answer piece by piece.
    async fn send_request(
        &self,
        host: &HostName,
        req: Forwarded,
        streamed: bool,
    ) -> Result<async_nats::Subscriber, ClusterFailure> {
        let limit = self.piece_size();
        if req.body.len() > limit {
            return Err(ClusterFailure::TooLarge(format!(
                "the request body ({} bytes) is larger than what NATS carries in one message ({limit} bytes): send it to host {host} directly",
                req.body.len()
            )));
        }
        let mut headers = HeaderMap::new();
        headers.insert(H_METHOD, req.method.as_str());
        headers.insert(H_PATH, req.path_and_query.as_str());
        headers.insert(H_ACTOR, req.actor.as_str());
        headers.insert(H_FROM, req.from.as_str());
        if streamed {
            headers.insert(H_STREAM, "1");
        }
        if let Some(t) = &req.content_type {
            headers.insert(H_TYPE, t.as_str());
        }
        let inbox = self.client.new_inbox();
        let unreachable = |e: &dyn std::fmt::Display| ClusterFailure::Unreachable(e.to_string());
        let replies = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| unreachable(&e))?;
        self.client
            .publish_with_reply_and_headers(
                self.cfg.prefix.api_subject(host),
                inbox,
                headers,
                req.body,
            )
            .await
            .map_err(|e| unreachable(&e))?;
        Ok(replies)
    }

    /// The most one message carries here, with room for its headers.
    fn piece_size(&self) -> usize {
        self.client
            .server_info()
            .max_payload
            .saturating_sub(8 * 1024)
            .max(1024)
    }

    /// Send an API request to `host` and get its answer as it is made
    /// (a followed log): the status within `within`, then the body's pieces
    /// for as long as `host` sends them. Dropping the body tells `host` to
    /// stop (its next piece finds nobody to take it).
    pub async fn forward_streamed(
        &self,
        host: &HostName,
        req: Forwarded,
        within: Duration,
    ) -> Result<Streamed, ClusterFailure> {
        let unreachable = |e: &dyn std::fmt::Display| ClusterFailure::Unreachable(e.to_string());
        let mut replies = self.send_request(host, req, true).await?;
        let first = tokio::time::timeout(within, replies.next())
            .await
            .map_err(|_| ClusterFailure::NoAnswer(host.clone()))?
            .ok_or_else(|| ClusterFailure::NoAnswer(host.clone()))?;
        if first.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
            return Err(ClusterFailure::NoAnswer(host.clone()));
        }
        let header = |m: &async_nats::Message, name: &str| {
            m.headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_string())
        };
        let status = header(&first, H_STATUS)
            .and_then(|s| s.parse().ok())
            .unwrap_or(502);
        let content_type = header(&first, H_TYPE);
        let client = self.client.clone();
        if let Some(ack) = first.reply {
            client
                .publish(ack, Bytes::new())
                .await
                .map_err(|e| unreachable(&e))?;
        }
        let body =
            futures::stream::unfold((replies, client), move |(mut replies, client)| async move {
                loop {
                    let msg = replies.next().await?;
                    if header(&msg, H_END).is_some() {
                        return None;
                    }
                    if let Some(ack) = msg.reply.clone() {
                        client.publish(ack, Bytes::new()).await.ok()?;
                    }
                    if !msg.payload.is_empty() {
                        return Some((msg.payload, (replies, client)));
                    }
                }
            })
            .boxed();
        Ok(Streamed {
            status,
            content_type,
            body,
        })
    }

    /// Answer the requests forwarded to this host with `handler`, until
    /// `stop`. Each request runs in a task of its own.
    pub async fn serve_forwarded(
        self: Arc<Self>,
        handler: Handler,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), ClusterFailure> {
        let mut requests = self
            .client
            .subscribe(self.cfg.prefix.api_subject(&self.cfg.host))
            .await
            .map_err(|e| ClusterFailure::Unreachable(e.to_string()))?;
        loop {
            let msg = tokio::select! {
                msg = requests.next() => match msg { Some(m) => m, None => return Ok(()) },
                _ = stop.wait_for(|s| *s) => return Ok(()),
            };
            let Some(reply) = msg.reply.clone() else {
                continue;
            };
            let header = |name: &str| {
                msg.headers
                    .as_ref()
                    .and_then(|h| h.get(name))
                    .map(|v| v.as_str().to_string())
            };
            let from = header(H_FROM).and_then(|h| HostName::parse(&h).ok());
            let (Some(method), Some(path), Some(from)) = (header(H_METHOD), header(H_PATH), from)
            else {
                continue;
            };
            let req = Forwarded {
                method,
                path_and_query: path,
                content_type: header(H_TYPE),
                body: msg.payload.clone(),
                actor: header(H_ACTOR).unwrap_or_else(|| "unknown".into()),
                from,
            };
            let streamed = header(H_STREAM).is_some();
            let (handler, me) = (handler.clone(), self.clone());
            tokio::spawn(async move {
                let answer = handler(req).await;
                let sent = if streamed {
                    me.reply_streamed(reply, answer).await
                } else {
                    let pieces: Vec<Bytes> = answer.body.collect().await;
                    let answer = Answer {
                        status: answer.status,
                        content_type: answer.content_type,
                        body: pieces.concat().into(),
                    };
                    me.reply(reply, answer).await
                };
                if let Err(e) = sent {
                    tracing::warn!(error = %e, streamed, "cluster: cannot answer a forwarded request");
                }
            });
        }
    }

    /// Answer a streamed request: the status, then each piece of the body
    /// as it comes, each waiting until the asking host took it; an empty
    /// piece after [`STREAM_PATIENCE`] of quiet. A piece nobody takes ends
    /// the answer (and drops the body: a followed log stops).
    async fn reply_streamed(
        &self,
        to: async_nats::Subject,
        answer: Streamed,
    ) -> Result<(), ClusterFailure> {
        let size = self.piece_size();
        let mut headers = HeaderMap::new();
        headers.insert(H_STATUS, answer.status.to_string().as_str());
        if let Some(t) = &answer.content_type {
            headers.insert(H_TYPE, t.as_str());
        }
        self.piece(&to, headers, Bytes::new()).await?;
        let mut body = answer.body;
        loop {
            match tokio::time::timeout(STREAM_PATIENCE, body.next()).await {
                Ok(Some(chunk)) => {
                    for at in (0..chunk.len()).step_by(size) {
                        let part = chunk.slice(at..(at + size).min(chunk.len()));
                        self.piece(&to, HeaderMap::new(), part).await?;
                    }
                }
                Ok(None) => break,
                Err(_) => self.piece(&to, HeaderMap::new(), Bytes::new()).await?,
            }
        }
        let mut end = HeaderMap::new();
        end.insert(H_END, "1");
        self.client
            .publish_with_headers(to, end, Bytes::new())
            .await
            .map_err(|e| ClusterFailure::Unreachable(e.to_string()))?;
        self.client
            .flush()
            .await
            .map_err(|e| ClusterFailure::Unreachable(e.to_string()))
    }

    /// One piece of a streamed answer, sent once the asking host took it.
    async fn piece(
        &self,
        to: &async_nats::Subject,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<(), ClusterFailure> {
        let request = async_nats::Request::new()
            .headers(headers)
            .payload(payload)
            .timeout(Some(STREAM_PATIENCE));
        self.client
            .send_request(to.clone(), request)
            .await
            .map(|_| ())
            .map_err(|e| ClusterFailure::Unreachable(format!("the asking host took no more: {e}")))
    }

    async fn reply(&self, to: async_nats::Subject, answer: Answer) -> Result<(), ClusterFailure> {
        let size = self.piece_size();
        let chunks: Vec<Bytes> = if answer.body.is_empty() {
            vec![Bytes::new()]
        } else {
            (0..answer.body.len())
                .step_by(size)
                .map(|at| answer.body.slice(at..(at + size).min(answer.body.len())))
                .collect()
        };
        let parts = chunks.len().to_string();
        for (i, chunk) in chunks.into_iter().enumerate() {
            let mut headers = HeaderMap::new();
            headers.insert(H_PART, i.to_string().as_str());
            if i == 0 {
                headers.insert(H_STATUS, answer.status.to_string().as_str());
                headers.insert(H_PARTS, parts.as_str());
                if let Some(t) = &answer.content_type {
                    headers.insert(H_TYPE, t.as_str());
                }
            }
            self.client
                .publish_with_headers(to.clone(), headers, chunk)
                .await
                .map_err(|e| ClusterFailure::Unreachable(e.to_string()))?;
        }
        self.client
            .flush()
            .await
            .map_err(|e| ClusterFailure::Unreachable(e.to_string()))
    }
}

/// Open the leases bucket, or make it: entries age out after the lease
/// time, and NATS marks each that does (2.11 or later), so watches see it.
async fn lease_bucket(
    js: &jetstream::Context,
    cfg: &ClusterConfig,
) -> Result<kv::Store, ClusterFailure> {
    let name = cfg.prefix.leases_bucket();
    if let Ok(store) = js.get_key_value(&name).await {
        if let Ok(info) = js
            .get_stream(format!("KV_{name}"))
            .await
            .map(|s| s.cached_info().config.max_age)
        {
            if info != cfg.lease_ttl {
                tracing::warn!(bucket = %name, cluster = ?info, this_host = ?cfg.lease_ttl, "cluster: the leases bucket has another lease time than --lease-ttl: the bucket's holds");
            }
        }
        return Ok(store);
    }
    let replicas = cfg.replicas;
    js.create_key_value(kv::Config {
        bucket: name.clone(),
        description: "pockestrator leases: which host runs each instance now".to_string(),
        history: 1,
        max_age: cfg.lease_ttl,
        limit_markers: Some(cfg.lease_ttl),
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .map_err(|e| {
        ClusterFailure::Refused(format!(
            "cannot open or make the bucket {name} with {replicas} replicas ({e}): it needs NATS 2.11 or later, and a cluster of fewer JetStream servers needs --cluster-replicas with their number"
        ))
    })
}

/// Open a key-value bucket, or make it.
async fn bucket(
    js: &jetstream::Context,
    name: String,
    description: &str,
    replicas: usize,
) -> Result<kv::Store, ClusterFailure> {
    if let Ok(store) = js.get_key_value(&name).await {
        return Ok(store);
    }
    js.create_key_value(kv::Config {
        bucket: name.clone(),
        description: description.to_string(),
        history: 1,
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .map_err(|e| {
        ClusterFailure::Refused(format!(
            "cannot open or make the bucket {name} with {replicas} replicas ({e}): a cluster of fewer JetStream servers needs --cluster-replicas with their number"
        ))
    })
}
