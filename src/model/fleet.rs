//! Fleet as code: the fleet file (`fleet.toml`), checked strictly with
//! every error naming its line and field; an instance's declared settings
//! in one normal form, so that the file, the running state and an export
//! compare field by field; and the plan: what an apply would create,
//! change or delete, and a digest of the state it was made against, so a
//! saved plan is refused once that state has moved on.
//!
//! The file's schema (README.md has it for users):
//!
//! ```toml
//! fleet = "prod"                  # who owns what `apply` creates
//!
//! [instances.blog]
//! version = "0.28.4"              # left out: the latest at create
//! port = 8091                     # left out: chosen at create
//! domains = ["blog.example.com"]  # the first is the primary domain
//! max_body_bytes = 10000000
//! memory_max = "512M"
//! cpu_quota = "50%"
//! idle_timeout = "15m"            # or "off"
//! wake_schedule = "0 3 * * *"
//! tags = ["prod"]                 # for `schema push --tag`
//! replicate = "s3://bucket/blog?endpoint=http://127.0.0.1:9000"
//!
//! [instances.blog.backup]
//! cron = "0 3 * * *"
//! keep_last = 7                   # and keep_daily, keep_weekly, keep_monthly
//! to = "s3://bucket/backups"
//!
//! [instances.blog.deploy]
//! repo = "https://git.example.com/blog.git"
//! branch = "main"
//! subdir = "app"
//! ```
//!
//! A field left out means "none" (no limit, no schedule, no replication),
//! except `version` and `port`, which mean "whatever it has".

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::model::cluster::Tag;
use crate::model::ports;
use crate::model::version::{Version, VersionRequest};
use crate::model::{
    BranchName, CpuQuota, CronExpr, Destination, Domain, IdleTimeout, InstanceName, MemoryMax,
    RepoUrl, Retention, Subdir,
};

/// The largest fleet file read, in bytes.
pub const MAX_FILE_BYTES: usize = 4 << 20;
/// The most instances one file may declare.
pub const MAX_INSTANCES: usize = 20_000;
/// The most domains of one instance.
pub const MAX_DOMAINS: usize = 64;

/// What is wrong with a fleet file: where, which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {field}{sep}{message}", sep = if field.is_empty() { "" } else { ": " })]
pub struct FleetError {
    pub line: usize,
    pub column: usize,
    /// The field's path, `instances.blog.port`; empty when the file does
    /// not parse as TOML at all.
    pub field: String,
    pub message: String,
}

/// The name of a fleet: who owns the instances an apply creates. A DNS
/// label, like an instance name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct FleetName(String);

impl FleetName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        InstanceName::parse(raw)
            .map(|n| Self(n.as_str().to_string()))
            .map_err(|e| e.to_string().replace("instance name", "fleet name"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FleetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An instance's backup schedule as declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSpec {
    pub cron: CronExpr,
    pub retention: Retention,
    /// `Destination::to_text` of where they go; `None`: the data dir.
    pub to: Option<String>,
}

/// Where an instance is deployed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploySpec {
    pub repo: RepoUrl,
    pub branch: BranchName,
    pub subdir: Option<Subdir>,
}

/// One instance's declared settings, in one normal form: a fleet file's
/// entry, or what an instance has now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InstanceSpec {
    /// `None` in a file: the latest at create, never changed after.
    pub version: Option<Version>,
    /// `None` in a file: chosen at create, never changed after.
    pub port: Option<u16>,
    /// The primary domain first, then the others sorted.
    pub domains: Vec<Domain>,
    pub max_body_bytes: Option<u64>,
    pub memory_max: Option<MemoryMax>,
    pub cpu_quota: Option<CpuQuota>,
    pub idle_timeout: Option<IdleTimeout>,
    pub wake_schedule: Option<CronExpr>,
    /// Sorted, no duplicates.
    pub tags: Vec<Tag>,
    /// `Destination::to_text` of the replica.
    pub replicate: Option<String>,
    pub backup: Option<BackupSpec>,
    pub deploy: Option<DeploySpec>,
}

/// A parsed fleet file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetFile {
    pub fleet: FleetName,
    /// By name.
    pub instances: BTreeMap<InstanceName, InstanceSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    fleet: Option<Spanned<String>>,
    #[serde(default)]
    instances: BTreeMap<String, RawInstance>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstance {
    version: Option<Spanned<String>>,
    port: Option<Spanned<i64>>,
    domains: Option<Spanned<Vec<Spanned<String>>>>,
    max_body_bytes: Option<Spanned<i64>>,
    memory_max: Option<Spanned<String>>,
    cpu_quota: Option<Spanned<String>>,
    idle_timeout: Option<Spanned<String>>,
    wake_schedule: Option<Spanned<String>>,
    tags: Option<Spanned<Vec<Spanned<String>>>>,
    replicate: Option<Spanned<String>>,
    backup: Option<Spanned<RawBackup>>,
    deploy: Option<Spanned<RawDeploy>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackup {
    cron: Spanned<String>,
    keep_last: Option<Spanned<i64>>,
    keep_daily: Option<Spanned<i64>>,
    keep_weekly: Option<Spanned<i64>>,
    keep_monthly: Option<Spanned<i64>>,
    to: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeploy {
    repo: Spanned<String>,
    branch: Option<Spanned<String>>,
    subdir: Option<Spanned<String>>,
}

/// Line and column (both from 1) of a byte offset.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, column)
}

struct Checker<'a> {
    text: &'a str,
}

impl Checker<'_> {
    fn error(&self, span: Range<usize>, field: &str, message: impl fmt::Display) -> FleetError {
        let (line, column) = position(self.text, span.start);
        FleetError {
            line,
            column,
            field: field.to_string(),
            message: message.to_string(),
        }
    }

    fn check<T, E: fmt::Display>(
        &self,
        value: &Spanned<String>,
        field: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<T, FleetError> {
        parse(value.get_ref()).map_err(|e| self.error(value.span(), field, e))
    }
}

/// Parse and check a fleet file. `default_fleet` names the fleet when the
/// file does not (the file's stem, say). Nothing is applied on an error.
pub fn parse_fleet(text: &str, default_fleet: &str) -> Result<FleetFile, FleetError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(FleetError {
            line: 1,
            column: 1,
            field: String::new(),
            message: format!(
                "the file is {} bytes; at most {MAX_FILE_BYTES} are read",
                text.len()
            ),
        });
    }
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |s| position(text, s.start));
        let source = text.lines().nth(line - 1).unwrap_or("").trim();
        let message = e.message().trim().replace('\n', ", ");
        FleetError {
            line,
            column,
            field: String::new(),
            message: if source.is_empty() || source.len() > 120 {
                message
            } else {
                format!("{message} (in `{source}`)")
            },
        }
    })?;
    let c = Checker { text };
    let fleet = match &raw.fleet {
        Some(f) => c.check(f, "fleet", FleetName::parse)?,
        None => FleetName::parse(default_fleet).map_err(|e| FleetError {
            line: 1,
            column: 1,
            field: "fleet".into(),
            message: format!("the file names no fleet and {e}: add `fleet = \"NAME\"`"),
        })?,
    };
    if raw.instances.len() > MAX_INSTANCES {
        return Err(c.error(
            0..0,
            "instances",
            format!(
                "{} instances; at most {MAX_INSTANCES} in one file",
                raw.instances.len()
            ),
        ));
    }
    let mut instances = BTreeMap::new();
    let mut ports_seen: HashMap<u16, String> = HashMap::new();
    let mut domains_seen: HashMap<String, String> = HashMap::new();
    for (key, entry) in &raw.instances {
        // Keys carry no span through dotted tables (`[instances.a.deploy]`):
        // a bad one is found by its text.
        let name = InstanceName::parse(key).map_err(|e| {
            let at = text
                .find(&format!("instances.{key}"))
                .map(|i| i + "instances.".len())
                .or_else(|| text.find(key.as_str()))
                .unwrap_or(0);
            c.error(at..at, "instances", e)
        })?;
        let at = |field: &str| format!("instances.{name}.{field}");
        let spec = check_instance(&c, entry, &at)?;
        if let Some(port) = spec.port {
            let raw_port = entry.port.as_ref().expect("a port was read");
            if let Some(other) = ports_seen.insert(port, name.to_string()) {
                return Err(c.error(
                    raw_port.span(),
                    &at("port"),
                    format!("port {port} is also the port of {other}"),
                ));
            }
        }
        if let Some(list) = &entry.domains {
            for (domain, raw_domain) in spec.domains.iter().zip(list.get_ref()) {
                if let Some(other) = domains_seen.insert(domain.to_string(), name.to_string()) {
                    return Err(c.error(
                        raw_domain.span(),
                        &at("domains"),
                        format!("{domain} is also a domain of {other}"),
                    ));
                }
            }
        }
        instances.insert(name, spec);
    }
    Ok(FleetFile { fleet, instances })
}

fn whole<T: TryFrom<i64>>(
    c: &Checker<'_>,
    value: &Spanned<i64>,
    field: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<T, FleetError> {
    let n = *value.get_ref();
    if !range.contains(&n) {
        return Err(c.error(
            value.span(),
            field,
            format!("{n} is out of range: {} to {}", range.start(), range.end()),
        ));
    }
    T::try_from(n).map_err(|_| c.error(value.span(), field, format!("{n} is out of range")))
}

fn check_instance(
    c: &Checker<'_>,
    raw: &RawInstance,
    at: &dyn Fn(&str) -> String,
) -> Result<InstanceSpec, FleetError> {
    let mut spec = InstanceSpec::default();
    if let Some(v) = &raw.version {
        spec.version = Some(c.check(v, &at("version"), |s| {
            match VersionRequest::parse(s).map_err(|e| e.to_string())? {
                VersionRequest::Exact(v) => Ok(v),
                VersionRequest::Latest => Err(
                    "\"latest\" changes under the file: name a release (0.28.4), or leave \
                     version out to get the latest at create and keep it"
                        .to_string(),
                ),
            }
        })?);
    }
    if let Some(p) = &raw.port {
        let n = *p.get_ref();
        let port = u32::try_from(n)
            .map_err(|_| c.error(p.span(), &at("port"), format!("{n} is not a port")))
            .and_then(|n| ports::check_range(n).map_err(|e| c.error(p.span(), &at("port"), e)))?;
        spec.port = Some(port);
    }
    if let Some(list) = &raw.domains {
        if list.get_ref().len() > MAX_DOMAINS {
            return Err(c.error(
                list.span(),
                &at("domains"),
                format!("at most {MAX_DOMAINS} domains"),
            ));
        }
        let mut domains: Vec<Domain> = Vec::new();
        for d in list.get_ref() {
            let domain = c.check(d, &at("domains"), Domain::parse)?;
            if domains.contains(&domain) {
                return Err(c.error(
                    d.span(),
                    &at("domains"),
                    format!("{domain} is listed twice"),
                ));
            }
            domains.push(domain);
        }
        spec.domains = normal_domains(domains);
    }
    if let Some(b) = &raw.max_body_bytes {
        spec.max_body_bytes = Some(whole(
            c,
            b,
            &at("max_body_bytes"),
            1000..=1_000_000_000_000,
        )?);
    }
    if let Some(m) = &raw.memory_max {
        spec.memory_max = Some(c.check(m, &at("memory_max"), MemoryMax::parse)?);
    }
    if let Some(q) = &raw.cpu_quota {
        spec.cpu_quota = Some(c.check(q, &at("cpu_quota"), CpuQuota::parse)?);
    }
    if let Some(t) = &raw.idle_timeout {
        spec.idle_timeout = c.check(t, &at("idle_timeout"), IdleTimeout::parse)?;
    }
    if let Some(w) = &raw.wake_schedule {
        spec.wake_schedule = Some(c.check(w, &at("wake_schedule"), CronExpr::parse)?);
    }
    if let Some(list) = &raw.tags {
        if list.get_ref().len() > 32 {
            return Err(c.error(list.span(), &at("tags"), "at most 32 tags"));
        }
        let mut tags = Vec::new();
        for t in list.get_ref() {
            tags.push(c.check(t, &at("tags"), Tag::parse)?);
        }
        spec.tags = normal_tags(tags);
    }
    if let Some(r) = &raw.replicate {
        spec.replicate = Some(c.check(r, &at("replicate"), |s| {
            Destination::parse(s).map(|d| d.to_text())
        })?);
    }
    if let Some(b) = &raw.backup {
        let b_at = |f: &str| at(&format!("backup.{f}"));
        let b = b.get_ref();
        let cron = c.check(&b.cron, &b_at("cron"), CronExpr::parse)?;
        let mut retention = Retention::default();
        let max = Retention::MAX_KEEP as i64;
        for (field, value, slot) in [
            ("keep_last", &b.keep_last, &mut retention.keep_last),
            ("keep_daily", &b.keep_daily, &mut retention.keep_daily),
            ("keep_weekly", &b.keep_weekly, &mut retention.keep_weekly),
            ("keep_monthly", &b.keep_monthly, &mut retention.keep_monthly),
        ] {
            if let Some(v) = value {
                *slot = whole(c, v, &b_at(field), 0..=max)?;
            }
        }
        let to = match &b.to {
            Some(t) => Some(c.check(t, &b_at("to"), |s| {
                Destination::parse(s).map(|d| d.to_text())
            })?),
            None => None,
        };
        spec.backup = Some(BackupSpec {
            cron,
            retention,
            to,
        });
    }
    if let Some(d) = &raw.deploy {
        let d_at = |f: &str| at(&format!("deploy.{f}"));
        let d = d.get_ref();
        let repo = c.check(&d.repo, &d_at("repo"), RepoUrl::parse)?;
        let branch = match &d.branch {
            Some(b) => c.check(b, &d_at("branch"), BranchName::parse)?,
            None => BranchName::parse("main").expect("main is a branch name"),
        };
        let subdir = match &d.subdir {
            Some(s) => Some(c.check(s, &d_at("subdir"), Subdir::parse)?),
            None => None,
        }
        .filter(|s| !s.as_str().is_empty());
        spec.deploy = Some(DeploySpec {
            repo,
            branch,
            subdir,
        });
    }
    Ok(spec)
}

/// The primary domain first, the others sorted.
pub fn normal_domains(mut domains: Vec<Domain>) -> Vec<Domain> {
    if domains.len() > 1 {
        let mut rest = domains.split_off(1);
        rest.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        rest.dedup();
        domains.extend(rest);
    }
    domains
}

/// Sorted, without duplicates.
pub fn normal_tags(mut tags: Vec<Tag>) -> Vec<Tag> {
    tags.sort();
    tags.dedup();
    tags
}

/// What an instance has now, as a plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    pub spec: InstanceSpec,
    /// The fleet whose apply created it; `None`: made by hand.
    pub fleet: Option<FleetName>,
}

/// What an apply does to one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Create,
    Update,
    Delete,
    Nothing,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Nothing => "nothing",
        }
    }
}

/// One field's change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// What an apply does to one instance, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub name: InstanceName,
    pub kind: ChangeKind,
    pub fields: Vec<FieldChange>,
    /// Whether it restarts the instance (a new port, version or limits).
    pub restarts: bool,
}

/// The fields in the order a plan shows them, each rendered as text
/// (`None`: not set).
pub fn rendered(spec: &InstanceSpec) -> Vec<(&'static str, Option<String>)> {
    fn list<T: fmt::Display>(items: &[T]) -> Option<String> {
        (!items.is_empty()).then(|| {
            items
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        })
    }
    vec![
        ("version", spec.version.as_ref().map(ToString::to_string)),
        ("port", spec.port.map(|p| p.to_string())),
        ("domains", list(&spec.domains)),
        ("max_body_bytes", spec.max_body_bytes.map(|b| b.to_string())),
        (
            "memory_max",
            spec.memory_max.as_ref().map(ToString::to_string),
        ),
        (
            "cpu_quota",
            spec.cpu_quota.as_ref().map(ToString::to_string),
        ),
        ("idle_timeout", spec.idle_timeout.map(|t| t.to_string())),
        (
            "wake_schedule",
            spec.wake_schedule.as_ref().map(|c| c.as_str().to_string()),
        ),
        ("tags", list(&spec.tags)),
        ("replicate", spec.replicate.clone()),
        (
            "backup",
            spec.backup.as_ref().map(|b| {
                let r = b.retention;
                format!(
                    "{} keep {}/{}/{}/{} to {}",
                    b.cron.as_str(),
                    r.keep_last,
                    r.keep_daily,
                    r.keep_weekly,
                    r.keep_monthly,
                    b.to.as_deref().unwrap_or("the data dir")
                )
            }),
        ),
        (
            "deploy",
            spec.deploy.as_ref().map(|d| {
                let mut s = format!("{} {}", d.repo, d.branch);
                if let Some(sub) = &d.subdir {
                    s.push(' ');
                    s.push_str(sub.as_str());
                }
                s
            }),
        ),
    ]
}

/// Which fields restart a running instance when they change.
fn restarts(field: &str) -> bool {
    matches!(
        field,
        "version" | "port" | "memory_max" | "cpu_quota" | "deploy"
    )
}

/// What an apply of `file` does to `current` (every instance there is,
/// by name): creates what is missing, updates what differs, and with
/// `prune` deletes what this fleet created that the file no longer lists.
/// Instances made by hand (or by another fleet) are never deleted.
pub fn plan(
    file: &FleetFile,
    current: &BTreeMap<InstanceName, Current>,
    prune: bool,
) -> Vec<Change> {
    let mut changes = Vec::new();
    for (name, want) in &file.instances {
        match current.get(name) {
            None => {
                let fields = rendered(want)
                    .into_iter()
                    .filter_map(|(field, to)| {
                        to.map(|to| FieldChange {
                            field: field.to_string(),
                            from: None,
                            to: Some(to),
                        })
                    })
                    .collect();
                changes.push(Change {
                    name: name.clone(),
                    kind: ChangeKind::Create,
                    fields,
                    restarts: false,
                });
            }
            Some(have) => {
                let fields: Vec<FieldChange> = rendered(want)
                    .into_iter()
                    .zip(rendered(&have.spec))
                    .filter(|((field, to), _)| {
                        // Left out: whatever it has.
                        to.is_some() || !matches!(*field, "version" | "port")
                    })
                    .filter(|((_, to), (_, from))| to != from)
                    .map(|((field, to), (_, from))| FieldChange {
                        field: field.to_string(),
                        from,
                        to,
                    })
                    .collect();
                let kind = if fields.is_empty() {
                    ChangeKind::Nothing
                } else {
                    ChangeKind::Update
                };
                let restart = fields.iter().any(|f| restarts(&f.field));
                changes.push(Change {
                    name: name.clone(),
                    kind,
                    fields,
                    restarts: restart,
                });
            }
        }
    }
    if prune {
        for (name, have) in current {
            if have.fleet.as_ref() == Some(&file.fleet) && !file.instances.contains_key(name) {
                changes.push(Change {
                    name: name.clone(),
                    kind: ChangeKind::Delete,
                    fields: Vec::new(),
                    restarts: false,
                });
            }
        }
    }
    changes
}

/// A digest of the state a plan is made against: every instance's
/// declared settings and owner. Any change to them (by an apply, or by
/// hand) gives another digest, so a saved plan made before is refused.
pub fn state_digest(current: &BTreeMap<InstanceName, Current>) -> String {
    let mut hash = Sha256::new();
    for (name, have) in current {
        hash.update(name.as_str().as_bytes());
        hash.update([0]);
        hash.update(have.fleet.as_ref().map_or("", |f| f.as_str()).as_bytes());
        for (field, value) in rendered(&have.spec) {
            hash.update([1]);
            hash.update(field.as_bytes());
            hash.update([2]);
            hash.update(value.as_deref().unwrap_or("\u{0}").as_bytes());
        }
        hash.update([3]);
    }
    hex::encode(hash.finalize())
}

/// A fleet file that declares exactly `current`: what `export` writes.
/// Applied to the same state, it plans nothing.
pub fn export(fleet: &FleetName, current: &BTreeMap<InstanceName, Current>) -> String {
    let mut out = String::new();
    out.push_str("# The fleet as it runs, written by `pockestrator export`.\n");
    out.push_str("# `pockestrator plan -f FILE` shows what an apply would change.\n");
    out.push_str(&format!("fleet = {}\n", quote(fleet.as_str())));
    for (name, have) in current {
        let s = &have.spec;
        out.push_str(&format!("\n[instances.{name}]\n"));
        if let Some(v) = &s.version {
            out.push_str(&format!("version = {}\n", quote(&v.to_string())));
        }
        if let Some(p) = s.port {
            out.push_str(&format!("port = {p}\n"));
        }
        if !s.domains.is_empty() {
            out.push_str(&format!("domains = {}\n", quote_list(&s.domains)));
        }
        if let Some(b) = s.max_body_bytes {
            out.push_str(&format!("max_body_bytes = {b}\n"));
        }
        if let Some(m) = &s.memory_max {
            out.push_str(&format!("memory_max = {}\n", quote(m.as_str())));
        }
        if let Some(q) = &s.cpu_quota {
            out.push_str(&format!("cpu_quota = {}\n", quote(q.as_str())));
        }
        if let Some(t) = s.idle_timeout {
            out.push_str(&format!("idle_timeout = {}\n", quote(&t.to_string())));
        }
        if let Some(w) = &s.wake_schedule {
            out.push_str(&format!("wake_schedule = {}\n", quote(w.as_str())));
        }
        if !s.tags.is_empty() {
            out.push_str(&format!("tags = {}\n", quote_list(&s.tags)));
        }
        if let Some(r) = &s.replicate {
            out.push_str(&format!("replicate = {}\n", quote(r)));
        }
        if let Some(b) = &s.backup {
            out.push_str(&format!("\n[instances.{name}.backup]\n"));
            out.push_str(&format!("cron = {}\n", quote(b.cron.as_str())));
            let r = b.retention;
            out.push_str(&format!(
                "keep_last = {}\nkeep_daily = {}\nkeep_weekly = {}\nkeep_monthly = {}\n",
                r.keep_last, r.keep_daily, r.keep_weekly, r.keep_monthly
            ));
            if let Some(to) = &b.to {
                out.push_str(&format!("to = {}\n", quote(to)));
            }
        }
        if let Some(d) = &s.deploy {
            out.push_str(&format!("\n[instances.{name}.deploy]\n"));
            out.push_str(&format!("repo = {}\n", quote(&d.repo.to_string())));
            out.push_str(&format!("branch = {}\n", quote(&d.branch.to_string())));
            if let Some(sub) = &d.subdir {
                out.push_str(&format!("subdir = {}\n", quote(sub.as_str())));
            }
        }
    }
    out
}

/// A TOML basic string (JSON's escapes are TOML's, for what our values hold).
fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

fn quote_list<T: fmt::Display>(items: &[T]) -> String {
    let parts: Vec<String> = items.iter().map(|i| quote(&i.to_string())).collect();
    format!("[{}]", parts.join(", "))
}

/// The fleet file's name for a path's stem (`prod.toml` → `prod`), when it
/// is one.
pub fn fleet_from_file_name(file_name: &str) -> String {
    let stem = file_name.rsplit('/').next().unwrap_or(file_name);
    stem.split('.').next().unwrap_or(stem).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    const GOOD: &str = r#"
fleet = "prod"

[instances.blog]
version = "0.28.4"
port = 8091
domains = ["www.blog.example.com", "blog.example.com", "a.blog.example.com"]
memory_max = "512M"
idle_timeout = "15m"
tags = ["prod", "eu", "prod"]

[instances.blog.backup]
cron = "0 3 * * *"
keep_last = 3

[instances.shop]
"#;

    fn parse(text: &str) -> Result<FleetFile, String> {
        parse_fleet(text, "fleet").map_err(|e| e.to_string())
    }

    #[test]
    fn a_good_file_is_read_in_normal_form() {
        let file = parse(GOOD).unwrap();
        assert_eq!(file.fleet.as_str(), "prod");
        let blog = &file.instances[&InstanceName::parse("blog").unwrap()];
        expect![[r#"
            [
                (
                    "version",
                    Some(
                        "0.28.4",
                    ),
                ),
                (
                    "port",
                    Some(
                        "8091",
                    ),
                ),
                (
                    "domains",
                    Some(
                        "www.blog.example.com, a.blog.example.com, blog.example.com",
                    ),
                ),
                (
                    "max_body_bytes",
                    None,
                ),
                (
                    "memory_max",
                    Some(
                        "512M",
                    ),
                ),
                (
                    "cpu_quota",
                    None,
                ),
                (
                    "idle_timeout",
                    Some(
                        "15m",
                    ),
                ),
                (
                    "wake_schedule",
                    None,
                ),
                (
                    "tags",
                    Some(
                        "eu, prod",
                    ),
                ),
                (
                    "replicate",
                    None,
                ),
                (
                    "backup",
                    Some(
                        "0 3 * * * keep 3/7/4/12 to the data dir",
                    ),
                ),
                (
                    "deploy",
                    None,
                ),
            ]
        "#]]
        .assert_debug_eq(&rendered(blog));
        let shop = &file.instances[&InstanceName::parse("shop").unwrap()];
        assert_eq!(shop, &InstanceSpec::default());
    }

    #[test]
    fn bad_files_name_the_line_and_field() {
        let cases = [
            ("[instances.blog]\nprot = 8091\n", "line 2"),
            ("[instances.Blog_1]\n", "line 1"),
            ("[instances.a]\nport = 8091\n[instances.b]\nport = 8091\n", "line 4"),
            ("[instances.a]\nport = \"x\"\n", "line 2"),
            ("[instances.a]\nport = 80\n", "line 2"),
            ("[instances.a]\nmemory_max = \"lots\"\n", "line 2"),
            ("[instances.a]\nversion = \"latest\"\n", "line 2"),
            ("[instances.a]\nidle_timeout = \"1s; rm -rf /\"\n", "line 2"),
            ("[instances.a.deploy]\nrepo = \"https://x.example/r.git\"\nbranch = \"-x\"\n", "line 3"),
            ("[instances.a.deploy]\nrepo = \"ext::sh -c id\"\n", "line 2"),
            ("[instances.a.backup]\ncron = \"every day\"\n", "line 2"),
            ("[instances.a]\ndomains = [\"a.example.com\", \"a.example.com\"]\n", "line 2"),
            ("[instances.a]\ndomains = [\"x.example.com\"]\n[instances.b]\ndomains = [\"x.example.com\"]\n", "line 4"),
            ("fleet = \"../etc\"\n", "line 1"),
            ("[instances.a\n", "line 1"),
        ];
        let mut shown = String::new();
        for (text, line) in cases {
            let err = parse(text).expect_err(text);
            assert!(err.starts_with(&format!("{line},")), "{text:?}: {err}");
            shown.push_str(&err);
            shown.push('\n');
        }
        expect![[r#"
            line 2, column 1: unknown field `prot`, expected one of `version`, `port`, `domains`, `max_body_bytes`, `memory_max`, `cpu_quota`, `idle_timeout`, `wake_schedule`, `tags`, `replicate`, `backup`, `deploy` (in `prot = 8091`)
            line 1, column 12: instances: name "Blog_1" contains uppercase 'B': use only lowercase a-z, digits 0-9 and '-'
            line 4, column 8: instances.b.port: port 8091 is also the port of a
            line 2, column 8: invalid type: string "x", expected i64 (in `port = "x"`)
            line 2, column 8: instances.a.port: port 80 is outside 1024-65535: pick a port in that range, or leave it out to get one
            line 2, column 14: instances.a.memory_max: memory limit "lots" is not valid: use bytes with an optional K, M, G or T suffix (e.g. 512M), a percentage, or infinity
            line 2, column 11: instances.a.version: "latest" changes under the file: name a release (0.28.4), or leave version out to get the latest at create and keep it
            line 2, column 16: instances.a.idle_timeout: invalid idle timeout "1s; rm -rf /": write a duration such as 15m, 90s or 2h, or off
            line 3, column 10: instances.a.deploy.branch: invalid branch "-x": it starts with '-', which git would read as an option
            line 2, column 8: instances.a.deploy.repo: invalid repository URL "ext::sh -c id": it holds a control character or a space
            line 2, column 8: instances.a.backup.cron: invalid cron expression "every day": Invalid pattern: Pattern must have between 5 and 7 fields.; write five fields (minute hour day-of-month month day-of-week, e.g. "0 3 * * *" for 03:00 every day) or six with seconds first
            line 2, column 29: instances.a.domains: a.example.com is listed twice
            line 4, column 12: instances.b.domains: x.example.com is also a domain of a
            line 1, column 9: fleet: name "../etc" contains '.': use only lowercase a-z, digits 0-9 and '-'
            line 1, column 13: invalid table header, expected `.`, `]` (in `[instances.a`)
        "#]]
        .assert_eq(&shown);
    }

    fn current(file: &FleetFile, fleet: Option<&str>) -> BTreeMap<InstanceName, Current> {
        file.instances
            .iter()
            .map(|(name, spec)| {
                let mut spec = spec.clone();
                spec.version.get_or_insert(Version::new(0, 40, 6));
                spec.port.get_or_insert(9000);
                (
                    name.clone(),
                    Current {
                        spec,
                        fleet: fleet.map(|f| FleetName::parse(f).unwrap()),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_file_applied_plans_nothing_and_its_export_too() {
        let file = parse(GOOD).unwrap();
        let now = current(&file, Some("prod"));
        let changes = plan(&file, &now, true);
        assert!(
            changes.iter().all(|c| c.kind == ChangeKind::Nothing),
            "{changes:?}"
        );
        let exported = export(&file.fleet, &now);
        let again = parse(&exported).unwrap();
        let changes = plan(&again, &now, true);
        assert!(
            changes.iter().all(|c| c.kind == ChangeKind::Nothing),
            "{exported}\n{changes:?}"
        );
        assert_eq!(again.instances.len(), 2);
    }

    #[test]
    fn changes_are_field_by_field_and_prune_spares_what_it_did_not_make() {
        let file = parse(GOOD).unwrap();
        let mut now = current(&file, Some("prod"));
        let blog = InstanceName::parse("blog").unwrap();
        let spec = &mut now.get_mut(&blog).unwrap().spec;
        spec.memory_max = None;
        spec.port = Some(8092);
        spec.backup = None;
        now.insert(
            InstanceName::parse("old").unwrap(),
            Current {
                spec: InstanceSpec::default(),
                fleet: Some(FleetName::parse("prod").unwrap()),
            },
        );
        now.insert(
            InstanceName::parse("handmade").unwrap(),
            Current {
                spec: InstanceSpec::default(),
                fleet: None,
            },
        );
        now.insert(
            InstanceName::parse("theirs").unwrap(),
            Current {
                spec: InstanceSpec::default(),
                fleet: Some(FleetName::parse("dev").unwrap()),
            },
        );
        now.remove(&InstanceName::parse("shop").unwrap());
        let shown: Vec<String> = plan(&file, &now, true)
            .iter()
            .map(|c| {
                let fields: Vec<String> = c
                    .fields
                    .iter()
                    .map(|f| format!("{} {:?} -> {:?}", f.field, f.from, f.to))
                    .collect();
                format!(
                    "{} {} restarts={} [{}]",
                    c.kind.as_str(),
                    c.name,
                    c.restarts,
                    fields.join("; ")
                )
            })
            .collect();
        expect![[r#"
            [
                "update blog restarts=true [port Some(\"8092\") -> Some(\"8091\"); memory_max None -> Some(\"512M\"); backup None -> Some(\"0 3 * * * keep 3/7/4/12 to the data dir\")]",
                "create shop restarts=false []",
                "delete old restarts=false []",
            ]
        "#]]
        .assert_debug_eq(&shown);
        assert!(plan(&file, &now, false)
            .iter()
            .all(|c| c.kind != ChangeKind::Delete));
    }

    #[test]
    fn the_state_digest_moves_with_any_change() {
        let file = parse(GOOD).unwrap();
        let now = current(&file, Some("prod"));
        let mut later = now.clone();
        later.values_mut().next().unwrap().spec.cpu_quota = Some(CpuQuota::parse("50%").unwrap());
        let mut handed = now.clone();
        handed.values_mut().next().unwrap().fleet = None;
        assert_eq!(state_digest(&now), state_digest(&now.clone()));
        assert_ne!(state_digest(&now), state_digest(&later));
        assert_ne!(state_digest(&now), state_digest(&handed));
    }
}
