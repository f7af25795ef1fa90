//! Wire types of the HTTP API, kept apart from the model and the store so
//! that internal changes do not change what clients see.
//!
//! **Architecture Invariant:** only these types cross the HTTP boundary
//! (the client and the CLI decode exactly these).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::model::Status;
use crate::store::InstanceRecord;

/// The input rules of `crate::model` written as JSON Schema patterns, so
/// that the OpenAPI document says exactly what the server accepts (the
/// document puts them on the fields and parameters they govern).
pub mod patterns {
    /// `InstanceName`: a lowercase DNS label, not a reserved name.
    pub const INSTANCE_NAME: &str = "^(?!catch-all$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";
    /// `Domain`: two or more DNS labels (any case), the last starting with
    /// a letter, an optional trailing dot.
    pub const DOMAIN: &str = "^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.?$";
    /// `VersionRequest`: `latest` in any case, or `X.Y.Z` with an optional
    /// `v` and pre-release.
    pub const VERSION: &str = "^([Ll][Aa][Tt][Ee][Ss][Tt]|[vV]?(0|[1-9][0-9]{0,5})\\.(0|[1-9][0-9]{0,5})\\.(0|[1-9][0-9]{0,5})(-[A-Za-z][0-9A-Za-z]{0,15}(\\.(0|[1-9][0-9]{0,5}|[A-Za-z][0-9A-Za-z]{0,15})){0,3})?)$";
    /// A binary on the daemon's host: an absolute path.
    pub const ABSOLUTE_PATH: &str = "^/";
    /// `pocketbase::check_email`.
    pub const EMAIL: &str = "^[A-Za-z0-9!#$%&'*+/=?^_`{|}~][A-Za-z0-9!#$%&'*+/=?^_`{|}~-]*(\\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\\.)+[A-Za-z]([A-Za-z0-9-]*[A-Za-z])?$";
    /// `pocketbase::check_password`: printable ASCII and spaces.
    pub const PASSWORD: &str = "^[ -~]{8,71}$";
    /// `MemoryMax`: bytes with an optional K, M, G, T or % suffix, or `infinity`.
    pub const MEMORY_MAX: &str = "^(infinity|[0-9]{1,20}[KMGT%]?)$";
    /// `UserId`: seed 001's user ids.
    pub const USER_ID: &str = "^[A-Za-z0-9_-]{1,128}$";
    /// `CpuQuota`: a percentage of one CPU, not 0%.
    pub const CPU_QUOTA: &str = "^(?!0%$)[0-9]{1,6}%$";
    /// `BackupId`: also a file name, with or without `.zip`.
    pub const BACKUP_ID: &str = "^[a-z0-9][a-z0-9_-]{0,99}(\\.zip)?$";
    /// `Destination`: an absolute directory or a `file://` URL of one,
    /// without `..`, NUL or newlines.
    pub const BACKUP_DESTINATION: &str = "^(file://)?/(?!(.*/)?\\.\\.(/|$))[^\\x00\\n]{0,4000}$";
    /// A replica target: a local directory as for backups, `s3://BUCKET[/PREFIX][?endpoint=URL&region=R]`
    /// or `nats://HOST:PORT[,HOST:PORT…]/BUCKET`, without credentials.
    pub const REPLICA_TARGET: &str = "^((file://)?/(?!(.*/)?\\.\\.(/|$))[^\\x00\\n]{0,4000}|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9._-]+)*/?(\\?[A-Za-z0-9=&:/._%-]{0,2000})?|nats://[A-Za-z0-9.:,\\[\\]-]{1,1000}/[A-Za-z0-9_-]{1,255})$";
    /// An RFC 3339 time, e.g. `2026-12-01T13:00:00Z` (a day the month
    /// does not have, such as February 30, is refused with 400 too).
    /// `DeployId`: a deploy's number.
    pub const DEPLOY_ID: &str = "^[1-9][0-9]{0,8}$";
    /// A commit for `rollback --to`: 4 to 40 hex digits of it.
    pub const COMMIT_PREFIX: &str = "^[0-9a-fA-F]{4,40}$";
    /// A repository token: one word of printable ASCII (empty: remove it).
    pub const TOKEN: &str = "^[!-~]{0,4096}$";
    /// A private key in OpenSSH or PEM form (empty: remove it).
    pub const SSH_KEY: &str = "^(-----BEGIN [ -~\\n\\r\\t]{1,16000})?$";
    /// `HostName`, `Region` and `Tag` of a cluster: lowercase DNS labels.
    pub const LABEL: &str = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";
    pub const TIMESTAMP: &str = "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$";
}

/// A JSON number as JSON Schema's `integer` reads it: `8091` and `8091.0`
/// are the same integer.
fn whole_number<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::de::Error;
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Unsigned(u64),
        Float(f64),
    }
    let n = match Option::<Number>::deserialize(d)? {
        None => return Ok(None),
        Some(Number::Unsigned(n)) => n,
        Some(Number::Float(f)) if f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&f) => {
            f as u64
        }
        Some(Number::Float(f)) => {
            return Err(D::Error::custom(format!(
                "{f} is not a whole number of 0 or more"
            )))
        }
    };
    T::try_from(n)
        .map(Some)
        .map_err(|_| D::Error::custom(format!("{n} is too large")))
}

/// One instance as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct InstanceDto {
    pub name: String,
    pub version: String,
    pub port: u16,
    pub domain: Option<String>,
    pub status: Status,
    /// `running` or `stopped`: what the operator asked for.
    pub desired: String,
    /// Where the instance answers on this host.
    pub url: String,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_health_check: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub superuser_email: Option<String>,
    pub dir: String,
    pub binary: String,
    pub created_by: String,
    /// Custom domains routed to this instance.
    pub domains: Vec<String>,
    /// Every address the instance answers at: through the router, then
    /// directly on 127.0.0.1.
    pub urls: Vec<String>,
    /// The request body limit of its route in bytes.
    pub max_body_bytes: u64,
    /// systemd's `MemoryMax=` and `CPUQuota=`, when set.
    pub memory_max: Option<String>,
    pub cpu_quota: Option<String>,
    /// Seconds without a request before it sleeps; `null`: never.
    pub idle_timeout_secs: Option<u64>,
    /// The cron expression that wakes it while it sleeps, if any.
    pub wake_schedule: Option<String>,
    /// Its continuous replication, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<ReplicaDto>,
    /// Whether its route is in place (only when asked for one instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteStatus>,
    /// The host of the cluster it runs on (only in a cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// Whether an instance's route is in place in the router.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct RouteStatus {
    /// `embedded`, `caddy`, `caddyfile` or `none`.
    pub router: String,
    pub in_place: bool,
    /// What differs, when it is not in place.
    pub problems: Vec<String>,
}

impl InstanceDto {
    /// The wire form of a record, with its custom domains and addresses.
    pub fn new(
        r: &InstanceRecord,
        domains: Vec<String>,
        urls: Vec<String>,
        max_body_bytes: u64,
    ) -> Self {
        Self {
            name: r.name.to_string(),
            version: r.version.to_string(),
            port: r.port,
            domain: r.domain.as_ref().map(|d| d.to_string()),
            status: r.status,
            desired: r.desired.as_str().to_string(),
            url: format!("http://127.0.0.1:{}", r.port),
            pid: r.pid,
            restarts: r.restarts,
            created_at: r.created_at,
            updated_at: r.updated_at,
            last_health_check: r.last_health_check,
            last_error: r.last_error.clone(),
            superuser_email: r.superuser_email.clone(),
            dir: r.dir.display().to_string(),
            binary: r.binary_path.display().to_string(),
            created_by: r.created_by.clone(),
            domains,
            urls,
            max_body_bytes,
            memory_max: r.limits.memory_max.as_ref().map(|m| m.to_string()),
            cpu_quota: r.limits.cpu_quota.as_ref().map(|q| q.to_string()),
            idle_timeout_secs: r.idle_timeout.map(|t| t.as_secs()),
            wake_schedule: r.wake_schedule.as_ref().map(|c| c.as_str().to_string()),
            replica: None,
            route: None,
            host: None,
        }
    }
}

/// `POST /api/v1/instances`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInstance {
    /// A lowercase DNS label, unique across the fleet.
    #[schema(min_length = 1, max_length = 63)]
    pub name: String,
    /// A release version (`0.28.4`) or `latest` (the default); one the
    /// release sources offer (`GET /api/v1/versions`), else 400
    /// `unknown_version`. Not together with `binary`.
    #[schema(max_length = 64)]
    pub version: Option<String>,
    /// Absolute path of a PocketBase binary on the daemon's host, instead
    /// of a release; one that runs and names its version, else 400.
    pub binary: Option<String>,
    /// Default: 8091, else one above the highest port in use.
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 1024, maximum = 65535)]
    pub port: Option<u32>,
    #[schema(max_length = 253)]
    pub domain: Option<String>,
    #[schema(max_length = 254)]
    pub superuser_email: Option<String>,
    /// Default: generated, and returned once in the response. Only with
    /// `superuser_email`.
    #[schema(min_length = 8, max_length = 71)]
    pub superuser_password: Option<String>,
    /// Request body limit of its route in bytes (default: the router's, 10 MB).
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 1000, maximum = 1000000000000_u64)]
    pub max_body_bytes: Option<u64>,
    /// systemd's `MemoryMax=`, e.g. `512M` (applied by the systemd runtime).
    pub memory_max: Option<String>,
    /// systemd's `CPUQuota=`, e.g. `50%` (applied by the systemd runtime).
    pub cpu_quota: Option<String>,
    /// Stop it and mark it `sleeping` after this many seconds without a
    /// request through the router; its next request wakes it. 0 or absent:
    /// never (a seed 001 user's instance gets `serve --user-idle-timeout`).
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 0, maximum = 2592000)]
    pub idle_timeout_secs: Option<u64>,
    /// In a cluster: the host to create it on (default: the host with the
    /// most memory per instance among those that are up and match
    /// `region` and `tags`).
    #[schema(max_length = 63)]
    pub host: Option<String>,
    /// In a cluster: only a host of this region.
    #[schema(max_length = 63)]
    pub region: Option<String>,
    /// In a cluster: only a host with every one of these tags.
    #[serde(default)]
    #[schema(max_items = 32)]
    pub tags: Vec<String>,
    /// A cron expression in UTC: a sleeping instance is woken 5 s before
    /// each time, for its own cron jobs, and sleeps again when idle.
    #[schema(max_length = 200)]
    pub wake_schedule: Option<String>,
}

/// Credentials of a superuser made by a create or a reset. The password is
/// shown this once and never stored by pockestrator.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct SuperuserDto {
    pub email: String,
    pub password: String,
}

/// The answer to a create: the instance, plus `superuser` when one was made.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedDto {
    #[serde(flatten)]
    pub instance: InstanceDto,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub superuser: Option<SuperuserDto>,
}

/// `PATCH /api/v1/instances/{name}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateInstance {
    /// A hostname, or `null` to remove the domain.
    #[serde(
        default,
        deserialize_with = "some_or_null",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, max_length = 253)]
    pub domain: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "whole_number",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(minimum = 1024, maximum = 65535)]
    pub port: Option<u32>,
    /// Request body limit in bytes, or `null` for the router's default.
    #[serde(
        default,
        deserialize_with = "some_or_null_u64",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<u64>, minimum = 1000, maximum = 1000000000000_u64)]
    pub max_body_bytes: Option<Option<u64>>,
    /// `MemoryMax=`, or `null` to remove it.
    #[serde(
        default,
        deserialize_with = "some_or_null",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub memory_max: Option<Option<String>>,
    /// `CPUQuota=`, or `null` to remove it.
    #[serde(
        default,
        deserialize_with = "some_or_null",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub cpu_quota: Option<Option<String>>,
    /// Seconds without a request before it sleeps; 0: never.
    #[serde(
        default,
        deserialize_with = "whole_number",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(minimum = 0, maximum = 2592000)]
    pub idle_timeout_secs: Option<u64>,
    /// A cron expression (UTC) that wakes it for its jobs, or `null` to
    /// remove it.
    #[serde(
        default,
        deserialize_with = "some_or_null",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, max_length = 200)]
    pub wake_schedule: Option<Option<String>>,
}

fn some_or_null_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    whole_number(d).map(Some)
}

fn some_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// `POST /api/v1/instances/{name}/upgrade`: exactly one of the two.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpgradeInstance {
    /// A release version or `latest`.
    #[schema(max_length = 64)]
    pub version: Option<String>,
    /// Absolute path of a PocketBase binary on the daemon's host.
    pub binary: Option<String>,
}

/// `POST /api/v1/instances/{name}/superuser`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetSuperuser {
    #[schema(max_length = 254)]
    pub email: String,
    /// Default: generated, and returned once.
    #[schema(min_length = 8, max_length = 71)]
    pub password: Option<String>,
}

/// `DELETE /api/v1/instances/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeletedDto {
    pub name: String,
    /// Where the data was archived; `null` with `purge=true`.
    pub archive: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InstanceList {
    pub instances: Vec<InstanceDto>,
    /// In a cluster: hosts that are up but did not answer, so their
    /// instances are missing from this list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreachable_hosts: Vec<UnreachableHost>,
}

/// A host whose part of a list is missing, and why.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UnreachableHost {
    pub host: String,
    pub error: String,
    /// The instances the cluster says it holds, so none goes unmentioned.
    #[serde(default)]
    pub instances: Vec<HeldInstance>,
}

/// An instance of a host that is missing from a list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct HeldInstance {
    pub name: String,
    /// Replicated: another host brings it back from its replica when its
    /// lease runs out. Not replicated: it is lost with its host until the
    /// host comes back (or it is restored from a backup).
    pub replicated: bool,
}

/// One host of a cluster, as its last heartbeat described it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct HostDto {
    pub name: String,
    pub region: Option<String>,
    pub tags: Vec<String>,
    /// `up` (a heartbeat within three intervals), `late` or `lost`.
    pub health: String,
    /// Whether this is the host that answered.
    pub this: bool,
    /// Its API on TCP, when it listens on one.
    pub api: Option<String>,
    /// Its embedded proxy, when it runs one.
    pub proxy: Option<String>,
    pub version: String,
    pub instances: usize,
    pub running: usize,
    pub mem_available_bytes: u64,
    pub mem_total_bytes: u64,
    pub load1: f64,
    pub cpus: usize,
    pub started_at: DateTime<Utc>,
    pub seen_at: DateTime<Utc>,
    /// Being drained (`host drain`): it takes no new instances.
    #[serde(default)]
    pub draining: bool,
}

/// `POST /api/v1/instances/{name}/move`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveInstance {
    /// The host of the cluster to move it to (it must be up).
    #[schema(max_length = 63)]
    pub to: String,
}

/// A move done: the instance runs on `to` now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MovedDto {
    pub name: String,
    pub from: String,
    pub to: String,
}

/// `POST /api/v1/hosts/{name}/drain`: what moved where, and what stayed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DrainDto {
    pub host: String,
    pub moved: Vec<MovedTo>,
    pub left: Vec<LeftBehind>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MovedTo {
    pub name: String,
    pub to: String,
}

/// An instance a drain could not move, and why (not replicated, no host
/// fits, its move failed: it runs where it was).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LeftBehind {
    pub name: String,
    pub reason: String,
}

/// `GET /api/v1/hosts`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HostList {
    pub hosts: Vec<HostDto>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogLines {
    pub name: String,
    pub lines: Vec<String>,
}

/// An instance's collections as a schema file holds them
/// (`GET /api/v1/instances/{name}/schema`, `pockestrator schema pull`):
/// PocketBase's own export shape, one object per collection in creation
/// order, without `created`, `updated` or any secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Vec<Object>)]
pub struct SchemaFile(pub Vec<serde_json::Value>);

/// An OpenAPI 3.0 document of an instance's own PocketBase API.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
pub struct InstanceOpenApi(pub serde_json::Value);

/// A release in the local cache.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InstalledVersion {
    pub version: String,
    pub binary: String,
    pub sha256: String,
    pub source: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionList {
    pub installed: Vec<InstalledVersion>,
    /// Versions the release sources offer, newest first.
    pub available: Vec<String>,
    /// The newest stable version the sources offer.
    pub latest: Option<String>,
    /// Why `available` is empty, when the sources could not be reached.
    pub available_error: Option<String>,
}

/// `POST /api/v1/versions/install`: at most one of the two (neither: `latest`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallVersion {
    /// A release version or `latest`.
    #[schema(max_length = 64)]
    pub version: Option<String>,
    /// Absolute path of a PocketBase binary on the daemon's host.
    pub binary: Option<String>,
}

/// One line of the streamed answer to an install (`application/x-ndjson`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InstallProgress {
    Progress {
        downloaded: u64,
        total: Option<u64>,
        source: String,
    },
    Installed(InstalledVersion),
    Error(ErrorDetail),
}

/// One line of the audit log: who did what, when, with which result.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct EventDto {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub instance: Option<String>,
    /// `ok` or `error`.
    pub result: String,
    pub detail: String,
}

/// A download of a PocketBase release, as it progresses.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct DownloadDto {
    pub version: String,
    pub downloaded: u64,
    /// The size announced by the source, when it announces one.
    pub total: Option<u64>,
    /// The source being downloaded from (empty until one is found).
    pub source: String,
    pub done: bool,
}

/// One event of `GET /api/v1/events/stream`. The SSE `event:` field is its
/// `type`; the `data:` field is this object as JSON.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    /// An instance's observed state changed.
    InstanceState {
        name: String,
        status: Status,
        pid: Option<u32>,
        restarts: u32,
    },
    /// An instance was deleted.
    InstanceRemoved { name: String },
    /// A line was appended to the audit log.
    Audit { entry: EventDto },
    /// A PocketBase release download made progress.
    Download { progress: DownloadDto },
}

impl StreamEvent {
    /// The SSE event name: the same as `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            StreamEvent::InstanceState { .. } => "instance_state",
            StreamEvent::InstanceRemoved { .. } => "instance_removed",
            StreamEvent::Audit { .. } => "audit",
            StreamEvent::Download { .. } => "download",
        }
    }
}

impl From<&crate::events::Event> for StreamEvent {
    fn from(e: &crate::events::Event) -> Self {
        use crate::events::Event;
        match e {
            Event::InstanceState {
                name,
                status,
                pid,
                restarts,
            } => StreamEvent::InstanceState {
                name: name.clone(),
                status: *status,
                pid: *pid,
                restarts: *restarts,
            },
            Event::InstanceRemoved { name } => StreamEvent::InstanceRemoved { name: name.clone() },
            Event::Audit { entry } => StreamEvent::Audit {
                entry: EventDto::from(entry),
            },
            Event::Download { progress } => StreamEvent::Download {
                progress: DownloadDto {
                    version: progress.version.to_string(),
                    downloaded: progress.downloaded,
                    total: progress.total,
                    source: progress.source.clone(),
                    done: progress.done,
                },
            },
        }
    }
}

impl From<&crate::store::AuditEntry> for EventDto {
    fn from(e: &crate::store::AuditEntry) -> Self {
        Self {
            id: e.id,
            at: e.at,
            actor: e.actor.clone(),
            action: e.action.as_str().to_string(),
            instance: e.instance.clone(),
            result: e.result.as_str().to_string(),
            detail: e.detail.clone(),
        }
    }
}

/// One change of one configuration field of an instance.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ConfigChangeDto {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub field: String,
    pub old_value: Option<String>,
    pub new_value: Option<String>,
}

impl From<&crate::store::ConfigChange> for ConfigChangeDto {
    fn from(c: &crate::store::ConfigChange) -> Self {
        Self {
            id: c.id,
            at: c.at,
            actor: c.actor.clone(),
            field: c.field.clone(),
            old_value: c.old_value.clone(),
            new_value: c.new_value.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConfigHistory {
    pub name: String,
    pub changes: Vec<ConfigChangeDto>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventList {
    pub events: Vec<EventDto>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DaemonHealth {
    pub status: String,
    pub version: String,
    pub instances: usize,
    pub running: usize,
}

/// `POST /api/v1/instances/{name}/domains`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddDomain {
    #[schema(max_length = 253)]
    pub domain: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DomainList {
    pub name: String,
    pub domains: Vec<String>,
}

/// A route that is not as it should be.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct DriftDto {
    pub instance: Option<String>,
    /// `missing`, `changed` or `stale`.
    pub kind: String,
    pub detail: String,
}

/// One check of the host.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct CheckDto {
    pub name: String,
    /// `ok`, `warning` or `failed`.
    pub level: String,
    pub detail: String,
    /// What fixes it (empty when ok).
    pub fix: String,
}

/// `GET /api/v1/doctor` and `POST /api/v1/doctor/repair`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DoctorReport {
    /// Checks of the host: disk, limits, inotify, Caddy, systemd.
    pub checks: Vec<CheckDto>,
    pub router: String,
    /// Routes that differ from what they should be (after a repair: what
    /// still differs).
    pub drifts: Vec<DriftDto>,
    /// With repair: what was changed.
    pub repaired: Option<RepairDto>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RepairDto {
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
}

/// `POST /api/v1/import`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// Only say what would be imported.
    #[serde(default)]
    pub dry_run: bool,
    /// Where to look for `*-pocketbase.service` units (default: the system's unit directories).
    pub unit_dirs: Option<Vec<String>>,
    /// The Caddyfile whose site blocks give domains (default: --caddyfile).
    pub caddyfile: Option<String>,
}

/// What import found and did with one unit.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImportOutcomeDto {
    pub unit: String,
    pub name: Option<String>,
    pub port: Option<u16>,
    pub version: Option<String>,
    pub domain: Option<String>,
    pub dir: Option<String>,
    /// `imported`, `would import` or `skipped`.
    pub action: String,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImportReport {
    pub dry_run: bool,
    pub units: Vec<ImportOutcomeDto>,
}

/// Every error: `{"error":{"code":…,"message":…}}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_distinguishes_null_from_absent() {
        let absent: UpdateInstance = serde_json::from_str("{}").unwrap();
        assert_eq!(absent.domain, None);
        let null: UpdateInstance = serde_json::from_str(r#"{"domain":null}"#).unwrap();
        assert_eq!(null.domain, Some(None));
        let set: UpdateInstance = serde_json::from_str(r#"{"domain":"a.example.com"}"#).unwrap();
        assert_eq!(set.domain, Some(Some("a.example.com".to_string())));
        assert!(serde_json::from_str::<UpdateInstance>(r#"{"domian":"x"}"#).is_err());
    }

    /// JSON Schema's `integer` admits `8091.0`; so does the server.
    #[test]
    fn integral_floats_are_integers() {
        let create = |port: &str| {
            serde_json::from_str::<CreateInstance>(&format!(r#"{{"name":"a","port":{port}}}"#))
                .map(|c| c.port)
                .map_err(|e| e.to_string())
        };
        assert_eq!(create("8091"), Ok(Some(8091)));
        assert_eq!(create("8091.0"), Ok(Some(8091)));
        assert_eq!(create("null"), Ok(None));
        for bad in ["8091.5", "-1", "4294967296", "\"8091\""] {
            assert!(create(bad).is_err(), "{bad} accepted");
        }
        let update: UpdateInstance = serde_json::from_str(r#"{"max_body_bytes":1e6}"#).unwrap();
        assert_eq!(update.max_body_bytes, Some(Some(1_000_000)));
        let update: UpdateInstance = serde_json::from_str(r#"{"max_body_bytes":null}"#).unwrap();
        assert_eq!(update.max_body_bytes, Some(None));
    }
}

/// One backup of an instance.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct BackupDto {
    pub id: String,
    pub instance: String,
    pub created_at: DateTime<Utc>,
    /// The archive's size in bytes.
    pub size: u64,
    /// The archive's sha256, hex.
    pub sha256: String,
    /// Where it went: `file:///…`, `s3://…` or `nats://…` (never with
    /// credentials), or `pocketbase` for a backup PocketBase made itself in
    /// its `pb_data/backups/`.
    pub destination: String,
    /// The archive: its path on the daemon's host, or the URL of its
    /// object in a remote destination.
    pub location: String,
    /// The PocketBase version the instance ran.
    pub version: String,
    /// `manual`, `schedule`, `pre-restore`, `pre-upgrade`, `pre-deploy`, `pre-schema` or `pocketbase`.
    pub trigger: String,
}

impl From<&crate::store::BackupRecord> for BackupDto {
    fn from(b: &crate::store::BackupRecord) -> Self {
        Self {
            id: b.id.to_string(),
            instance: b.instance.to_string(),
            created_at: b.created_at,
            size: b.size,
            sha256: b.sha256.clone(),
            destination: b.destination.clone(),
            location: b.location.display().to_string(),
            version: b.version.to_string(),
            trigger: b.trigger.as_str().to_string(),
        }
    }
}

/// The backups of an instance, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupList {
    pub name: String,
    pub backups: Vec<BackupDto>,
}

/// `POST /api/v1/instances/{name}/backups`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBackup {
    /// Where the archive goes: a directory (an absolute path or
    /// `file:///path`), `s3://BUCKET[/PREFIX][?endpoint=URL&region=R]` or
    /// `nats://HOST:PORT[,HOST:PORT…]/BUCKET[/PREFIX]`, never with
    /// credentials (the daemon has them); default: the daemon's
    /// `--backup-to`, else `backups/NAME/` in its data dir.
    pub to: Option<String>,
}

/// `POST /api/v1/instances/{name}/backups/{id}/restore`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreBackup {
    /// Restore into a new instance of this name (a clone) instead of in
    /// place.
    #[serde(rename = "as")]
    pub as_name: Option<String>,
}

/// An instance's continuous replication with Litestream.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ReplicaDto {
    /// The target as given to `replicate --to`.
    pub target: String,
    /// Where the current generation is written (the target plus the
    /// generation; a NATS bucket itself).
    pub location: String,
    pub generation: String,
    /// When the current generation began: the earliest `timestamp` a
    /// restore from the replica can go back to.
    pub since: DateTime<Utc>,
    /// `running`, `restarting` or `stopped`.
    pub state: String,
    /// Litestream's process id while it runs.
    pub pid: Option<u32>,
}

impl From<crate::manager::ReplicationView> for ReplicaDto {
    fn from(v: crate::manager::ReplicationView) -> Self {
        Self {
            target: v.target,
            location: v.location,
            generation: v.generation,
            since: v.since,
            state: v.state.to_string(),
            pid: v.pid,
        }
    }
}

/// `PUT /api/v1/instances/{name}/replication`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetReplication {
    /// Where `data.db` is replicated: `file:///DIR`, `s3://BUCKET/PREFIX`
    /// (`?endpoint=URL&region=R` for S3-compatible stores) or
    /// `nats://HOST:PORT/BUCKET`; one instance per path. Credentials come
    /// from the daemon's environment, never from the URL.
    pub to: String,
}

/// `POST /api/v1/instances/{name}/replication/restore`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreReplica {
    /// Restore into a new instance of this name (a clone, not replicated)
    /// instead of in place.
    #[serde(rename = "as")]
    pub as_name: Option<String>,
    /// Restore the state as it was at this time (RFC 3339) instead of
    /// the latest.
    pub timestamp: Option<String>,
}

/// The answer to a backup's delete.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeletedBackup {
    pub name: String,
    pub id: String,
}

/// An instance's backup schedule.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ScheduleDto {
    /// A cron expression, evaluated in UTC.
    pub cron: String,
    pub keep_last: u32,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
    /// Where its backups go; `null`: `backups/NAME/` in the data dir.
    pub to: Option<String>,
    /// When it last ran (or was set).
    pub last_run: DateTime<Utc>,
    /// When it runs next.
    pub next_run: Option<DateTime<Utc>>,
}

impl From<&crate::store::ScheduleRecord> for ScheduleDto {
    fn from(s: &crate::store::ScheduleRecord) -> Self {
        Self {
            cron: s.cron.as_str().to_string(),
            keep_last: s.retention.keep_last,
            keep_daily: s.retention.keep_daily,
            keep_weekly: s.retention.keep_weekly,
            keep_monthly: s.retention.keep_monthly,
            to: s.destination.clone(),
            last_run: s.last_run,
            next_run: s.cron.next_after(s.last_run),
        }
    }
}

/// `GET|PUT|DELETE /api/v1/instances/{name}/backup-schedule`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScheduleState {
    pub name: String,
    /// `null`: no schedule.
    pub schedule: Option<ScheduleDto>,
}

/// `PUT /api/v1/instances/{name}/backup-schedule`; the keep counts default
/// to 7 last, 7 daily, 4 weekly, 12 monthly.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetSchedule {
    /// A cron expression in UTC: five fields, or six with seconds first.
    #[schema(min_length = 1, max_length = 200)]
    pub cron: String,
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 0, maximum = 10000)]
    pub keep_last: Option<u32>,
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 0, maximum = 10000)]
    pub keep_daily: Option<u32>,
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 0, maximum = 10000)]
    pub keep_weekly: Option<u32>,
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 0, maximum = 10000)]
    pub keep_monthly: Option<u32>,
    pub to: Option<String>,
}

/// `POST /api/v1/instances/{name}/deploys`: every field may be left out
/// for an instance deployed before (its recorded source is used).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartDeploy {
    /// The repository: `https://…`, `http://…`, `ssh://…`, `git@host:path`
    /// or `file:///…` (only under a `serve --git-allow-dir`). No
    /// credentials in it: a token or deploy key is set with `PUT
    /// /api/v1/instances/{name}/deploy-credentials`.
    pub repo: Option<String>,
    /// The branch (default: the recorded one, then `main`).
    pub branch: Option<String>,
    /// The app's directory inside the repository (`""`: the top).
    pub subdir: Option<String>,
    /// Make the instance (latest PocketBase, a free port) if it does not
    /// exist, once every input is checked; otherwise a missing instance
    /// answers 404.
    #[serde(default)]
    pub create: bool,
    /// An HTTPS token for a private repository, kept like
    /// `deploy-credentials`' (never shown again).
    pub token: Option<String>,
    /// An SSH deploy key (private key) for a private repository.
    pub ssh_key: Option<String>,
}

/// One deploy (or rollback) of an instance.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct DeployDto {
    /// Counts up from 1 per instance.
    pub id: u32,
    pub instance: String,
    /// `deploy` or `rollback`.
    pub kind: String,
    pub repo: String,
    pub branch: String,
    pub subdir: Option<String>,
    /// The commit, once fetched.
    pub commit: Option<String>,
    /// The release directory it built or switched to.
    pub release: Option<String>,
    /// `queued`, `building`, `switching`, `succeeded` or `failed`.
    pub status: String,
    /// Why it failed.
    pub reason: Option<String>,
    /// Who started it.
    pub actor: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// How long it took (so far), in milliseconds.
    pub duration_ms: u64,
    /// Whether this release is the one the instance runs now.
    pub current: bool,
}

impl DeployDto {
    pub fn new(
        d: &crate::store::DeployRecord,
        current: Option<&crate::model::ReleaseName>,
    ) -> Self {
        let end = d.finished_at.unwrap_or_else(Utc::now);
        Self {
            id: d.id.0,
            instance: d.instance.to_string(),
            kind: d.kind.as_str().to_string(),
            repo: d.repo.to_string(),
            branch: d.branch.to_string(),
            subdir: d.subdir.as_ref().map(|s| s.as_str().to_string()),
            commit: d.commit.as_ref().map(|c| c.to_string()),
            release: d.release.as_ref().map(|r| r.to_string()),
            status: d.status.as_str().to_string(),
            reason: d.reason.clone(),
            actor: d.actor.clone(),
            started_at: d.started_at,
            finished_at: d.finished_at,
            duration_ms: (end - d.started_at).num_milliseconds().max(0) as u64,
            current: d.release.is_some() && d.release.as_ref() == current,
        }
    }
}

/// An instance's deploys, newest first, and where it is deployed from.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeployList {
    pub name: String,
    pub repo: Option<String>,
    pub branch: Option<String>,
    pub subdir: Option<String>,
    /// The release that runs now.
    pub release: Option<String>,
    pub deploys: Vec<DeployDto>,
}

/// `POST /api/v1/instances/{name}/rollback`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRollback {
    /// A commit (at least 4 hex digits of it) whose release is still
    /// kept; left out: the newest release before the current one.
    pub to: Option<String>,
}

/// `PUT /api/v1/instances/{name}/webhook`: the answer, shown once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookDto {
    pub name: String,
    /// Where the repository's host posts push events:
    /// `POST /webhooks/{name}` on the TCP listener.
    pub path: String,
    /// The secret to give the repository's host; signs each push with
    /// HMAC-SHA256 in `X-Hub-Signature-256`.
    pub secret: String,
}

/// `PUT /api/v1/instances/{name}/deploy-credentials`: a token for HTTPS
/// repositories or a deploy key for SSH ones (one of them). Kept in a 0600
/// file outside the state database; never shown again.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployCredentials {
    pub token: Option<String>,
    pub ssh_key: Option<String>,
}

/// `POST /api/v1/fleet/plan`: a fleet file's text.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanFleet {
    /// The fleet file (TOML; its schema is in README.md).
    #[schema(max_length = 4194304)]
    pub file: String,
    /// The file's name, for errors and as the fleet's name when the file
    /// has no `fleet = "…"` (its stem: `prod.toml` → `prod`).
    #[schema(max_length = 255)]
    pub file_name: Option<String>,
    /// Also delete the instances this fleet created that the file no
    /// longer lists (never one made by hand or by another fleet).
    #[serde(default)]
    pub prune: bool,
}

/// `POST /api/v1/fleet/apply`: a fleet file, or a saved plan's file and
/// the state it was made against.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyFleet {
    #[schema(max_length = 4194304)]
    pub file: String,
    #[schema(max_length = 255)]
    pub file_name: Option<String>,
    #[serde(default)]
    pub prune: bool,
    /// A saved plan's `state`: the apply is refused (409 `stale_plan`)
    /// when the fleet has changed since that plan was made.
    #[schema(max_length = 64)]
    pub state: Option<String>,
}

/// One field's change in a plan.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct FieldChangeDto {
    pub field: String,
    /// `null`: not set.
    pub from: Option<String>,
    pub to: Option<String>,
}

/// What a plan does to one instance.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ChangeDto {
    pub name: String,
    /// `create`, `update`, `delete` or `nothing`.
    pub action: String,
    pub fields: Vec<FieldChangeDto>,
    /// Whether the change restarts a running instance.
    pub restarts: bool,
}

/// What an apply of a fleet file would change. Saved with `plan --out`,
/// it is what `apply --plan` applies.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlanDto {
    pub fleet: String,
    /// A digest of the fleet's state the plan was made against.
    pub state: String,
    pub prune: bool,
    pub changes: Vec<ChangeDto>,
    /// Instances the file does not list and a prune leaves alone (made by
    /// hand or by another fleet).
    pub unmanaged: Vec<String>,
    /// The file planned, so a saved plan applies exactly it.
    pub file: String,
    pub file_name: Option<String>,
}

/// One change as an apply carried it out.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AppliedDto {
    #[serde(flatten)]
    pub change: ChangeDto,
    /// `ok`, `failed` or `unchanged`.
    pub result: String,
    pub error: Option<String>,
    /// The deploy it started (`pockestrator deploys NAME`).
    pub deploy: Option<u32>,
}

/// What an apply did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApplyDto {
    pub fleet: String,
    /// The fleet's state afterwards.
    pub state: String,
    pub results: Vec<AppliedDto>,
    /// How many changes failed (each with its error; the others were made).
    pub failed: usize,
}

/// `GET /api/v1/fleet/export`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExportDto {
    pub fleet: String,
    /// A fleet file of every instance as it runs: applied now, it plans
    /// nothing.
    pub file: String,
}

/// `POST /api/v1/schema/push`: a schema (PocketBase's collections export,
/// as `GET /api/v1/instances/{name}/schema` answers it) and the instances
/// to push it to: `to`, or `all`, or `tag`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushSchema {
    /// The collections: a JSON array of PocketBase collection objects, as
    /// PocketBase exports them (system collections left out: `schema
    /// push` drops them from a pulled file). Other properties of each
    /// collection and field (rules, options) go to PocketBase as they are.
    #[schema(value_type = Vec<PushCollection>, min_items = 1)]
    pub schema: serde_json::Value,
    /// These instances, in this order; the first is the canary.
    #[serde(default)]
    #[schema(max_items = 10000)]
    pub to: Vec<String>,
    /// Every instance, by name.
    #[serde(default)]
    pub all: bool,
    /// Every instance with this tag.
    #[schema(max_length = 63)]
    pub tag: Option<String>,
    /// Also delete the collections (and fields) the schema does not have,
    /// with their data. Off by default.
    #[serde(default)]
    pub delete_missing: bool,
}

/// A collection of a pushed schema: what `schema push` checks of it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PushCollection {
    /// Kept identical on every instance (PocketBase matches by id first).
    #[schema(pattern = "^[A-Za-z0-9_-]{1,100}$")]
    pub id: String,
    #[schema(pattern = "^[A-Za-z0-9_]{1,255}$")]
    pub name: String,
    /// `base`, `auth` or `view`.
    #[serde(rename = "type")]
    #[schema(pattern = "^(base|auth|view)$")]
    pub kind: String,
    /// Must be false: system collections are PocketBase's own.
    pub system: Option<bool>,
    pub fields: Vec<PushField>,
}

/// A field of a pushed collection.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PushField {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,100}$")]
    pub id: String,
    #[schema(pattern = "^[A-Za-z0-9_]{1,255}$")]
    pub name: String,
    /// A PocketBase field type: text, number, bool, email, url, editor,
    /// date, autodate, select, file, relation, json, geoPoint, password.
    #[serde(rename = "type")]
    #[schema(pattern = "^[A-Za-z0-9_]{1,255}$")]
    pub kind: String,
}

/// One instance's part of a push.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PushedDto {
    pub name: String,
    /// `applied`, `unchanged`, `rolled-back`, `skipped` or `failed`.
    pub result: String,
    pub detail: String,
    /// The `pre-schema` backup taken before (`backup list NAME`).
    pub snapshot: Option<String>,
}

/// What a push did, instance by instance.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PushReportDto {
    /// The migration's file name in each instance's `pb_migrations`.
    pub migration: String,
    pub collections: usize,
    pub results: Vec<PushedDto>,
    /// How many instances were not migrated (rolled back, skipped, failed).
    pub failed: usize,
}

/// `GET /api/v1/tunnel/config`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TunnelDto {
    /// cloudflared's `config.yml`.
    pub file: String,
    /// The hostnames it routes, each to the proxy.
    pub hostnames: Vec<String>,
}
