//! Many hosts, one fleet: what a host of a cluster is called and says about
//! itself, who holds an instance, and the rules that decide from those
//! records (a host's health from the age of its last heartbeat, which host
//! a new instance goes to).
//!
//! The records travel as JSON through NATS JetStream key-value buckets (see
//! `crate::cluster`); here they are plain data.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::names::shown;

/// Why a cluster setting was refused; the message says what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    #[error("{what} {shown} is not valid: use 1 to 63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit")]
    BadLabel { what: &'static str, shown: String },
    #[error("cluster prefix {0} is not valid: use 1 to 32 characters of a-z, 0-9 and '-', starting with a letter")]
    BadPrefix(String),
    #[error("cluster server {shown} is not valid: {why}")]
    BadServer { shown: String, why: &'static str },
    #[error("--cluster names no server: write nats://HOST:PORT[,nats://HOST:PORT…]")]
    NoServers,
    #[error("--cluster names {0} servers: the limit is 16")]
    TooManyServers(usize),
    #[error("--tags names {0} tags: the limit is 32")]
    TooManyTags(usize),
}

/// A lowercase DNS label (the rule of instance names), checked for `what`.
fn label(what: &'static str, raw: &str) -> Result<String, ClusterError> {
    let ok = !raw.is_empty()
        && raw.len() <= 63
        && raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !raw.starts_with('-')
        && !raw.ends_with('-');
    if ok {
        Ok(raw.to_string())
    } else {
        Err(ClusterError::BadLabel {
            what,
            shown: shown(raw),
        })
    }
}

macro_rules! label_type {
    ($(#[$doc:meta])* $ty:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $ty(String);

        impl $ty {
            pub fn parse(raw: &str) -> Result<Self, ClusterError> {
                label($what, raw).map(Self)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

label_type!(
    /// A host's name in the cluster (`serve --host-name`): a NATS subject
    /// token and a key-value key, so a DNS label and nothing else.
    HostName,
    "host name"
);
label_type!(
    /// A region (`serve --region`).
    Region,
    "region"
);
label_type!(
    /// A placement tag (`serve --tags`).
    Tag,
    "tag"
);

/// Parse `--tags a,b,c` (empty: none); duplicates are dropped.
pub fn parse_tags(raw: &str) -> Result<Vec<Tag>, ClusterError> {
    let mut tags = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let tag = Tag::parse(part)?;
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    if tags.len() > 32 {
        return Err(ClusterError::TooManyTags(tags.len()));
    }
    Ok(tags)
}

/// The start of every subject and bucket name of one cluster
/// (`serve --cluster-prefix`, `pockestrator` by default), so several
/// clusters, or other programs, can share one NATS account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterPrefix(String);

impl ClusterPrefix {
    pub fn parse(raw: &str) -> Result<Self, ClusterError> {
        let ok = !raw.is_empty()
            && raw.len() <= 32
            && raw.starts_with(|c: char| c.is_ascii_lowercase())
            && raw
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            Ok(Self(raw.to_string()))
        } else {
            Err(ClusterError::BadPrefix(shown(raw)))
        }
    }

    /// The key-value bucket of the hosts' heartbeats.
    pub fn hosts_bucket(&self) -> String {
        format!("{}-hosts", self.0)
    }

    /// The key-value bucket of which host holds each instance.
    pub fn claims_bucket(&self) -> String {
        format!("{}-instances", self.0)
    }

    /// The key-value bucket of the leases: which host runs each instance
    /// now. Its entries age out after the lease time unless renewed.
    pub fn leases_bucket(&self) -> String {
        format!("{}-leases", self.0)
    }

    /// The subject a host answers forwarded API requests on.
    pub fn api_subject(&self, host: &HostName) -> String {
        format!("{}.host.{}.api", self.0, host)
    }
}

impl Default for ClusterPrefix {
    fn default() -> Self {
        Self("pockestrator".to_string())
    }
}

/// Parse `--cluster nats://h1:4222,nats://h2:4222` into `HOST:PORT`s.
/// Credentials never go in these URLs (they are logged and shown):
/// `--nats-creds` or the credentials file carries them.
pub fn parse_servers(raw: &str) -> Result<Vec<String>, ClusterError> {
    let mut servers = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        // What the error shows: never a password written into the URL.
        let safe = match part.split_once('@') {
            Some((_, host)) => format!("…@{host}"),
            None => part.to_string(),
        };
        let bad = |why| ClusterError::BadServer {
            shown: shown(&safe),
            why,
        };
        let rest = part
            .strip_prefix("nats://")
            .or_else(|| part.strip_prefix("tls://"))
            .ok_or(bad("write nats://HOST:PORT (or tls://HOST:PORT)"))?;
        if rest.contains('@') {
            return Err(bad(
                "credentials never go in a server URL: give them with --nats-creds FILE or NATS_USER/NATS_PASSWORD in the credentials file",
            ));
        }
        if rest.contains(['/', '?', '#']) {
            return Err(bad("a server URL is nats://HOST:PORT, with no path"));
        }
        if !super::backup::valid_host_port(rest) {
            return Err(bad(
                "write nats://HOST:PORT with a host name or IP and a port",
            ));
        }
        servers.push(part.to_string());
    }
    match servers.len() {
        0 => Err(ClusterError::NoServers),
        n if n > 16 => Err(ClusterError::TooManyServers(n)),
        _ => Ok(servers),
    }
}

/// What a host says about itself every heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostBeat {
    pub name: HostName,
    pub region: Option<Region>,
    pub tags: Vec<Tag>,
    /// Its API on TCP (`http://ADDR`), when it listens on one.
    pub api: Option<String>,
    /// Its embedded proxy, when it runs one.
    pub proxy: Option<String>,
    pub version: String,
    pub instances: usize,
    pub running: usize,
    /// `MemAvailable` of the host, in bytes.
    pub mem_available_bytes: u64,
    pub mem_total_bytes: u64,
    /// The one-minute load average.
    pub load1: f64,
    pub cpus: usize,
    pub started_at: DateTime<Utc>,
    pub seen_at: DateTime<Utc>,
    /// Being drained (`host drain`): it takes no new instances.
    #[serde(default)]
    pub draining: bool,
}

/// A host's health, judged from how long ago its last heartbeat was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HostHealth {
    /// A heartbeat within the last three intervals.
    Up,
    /// Missed some: partitioned, overloaded, or stopping.
    Late,
    /// Silent for longer than the lease time: its instances are not served
    /// by it any more.
    Lost,
}

impl HostHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            HostHealth::Up => "up",
            HostHealth::Late => "late",
            HostHealth::Lost => "lost",
        }
    }
}

/// The health of a host last seen at `seen`, at `now`.
pub fn host_health(
    seen: DateTime<Utc>,
    now: DateTime<Utc>,
    interval: std::time::Duration,
    lost_after: std::time::Duration,
) -> HostHealth {
    let age = (now - seen).to_std().unwrap_or_default();
    if age <= interval * 3 {
        HostHealth::Up
    } else if age <= lost_after {
        HostHealth::Late
    } else {
        HostHealth::Lost
    }
}

/// Which host holds an instance: the value of its key in the claims
/// bucket. Made with compare-and-set, so two hosts never hold one name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub host: HostName,
    pub since: DateTime<Utc>,
    /// What another host needs to bring the instance back, kept up to date
    /// by its host; `None` until it published it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<Desired>,
    /// The host it was taken over from, after a failover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<HostName>,
}

/// An instance's desired state as the cluster keeps it: its version and
/// settings, and its replica if it has one (only a replicated instance can
/// be brought back on another host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Desired {
    pub version: String,
    /// Its port on its host: kept by a failover when it is free there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<ReplicaSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_max: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_quota: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_secs: Option<u64>,
    /// Its `--domain`, lowercase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Its custom domains, lowercase and sorted. With `domain`: where every
    /// other host's proxy sends a request for one of them, and what a
    /// failover or a move routes to it again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// Stopped on purpose: a failover or a move brings it back stopped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
}

impl Desired {
    /// Whether it answers at `host` (lowercase) besides its name.
    pub fn answers_at(&self, host: &str) -> bool {
        self.domain.as_deref() == Some(host) || self.domains.iter().any(|d| d == host)
    }
}

/// Where an instance's Litestream replica is: the target as the user named
/// it and the generation written now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaSpec {
    pub target: String,
    pub generation: String,
}

/// Which host runs an instance now: the value of its key in the leases
/// bucket, renewed with compare-and-set every heartbeat, gone when it is
/// not renewed within the lease time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub host: HostName,
    pub since: DateTime<Utc>,
}

/// How long after its last successful renewal a host stops the instances
/// whose leases it holds: three fifths of the lease time, so the instances
/// are down well before any other host can take the lease (the lease time
/// runs from when NATS stored the renewal, later than when it was sent).
pub fn fence_after(lease_ttl: std::time::Duration) -> std::time::Duration {
    lease_ttl * 3 / 5
}

/// Which host brings back an instance whose lease ran out on `lost`: the
/// one [`place`] picks among the up hosts other than `lost` (in `lost`'s
/// region when one is up there). Every host computes the same answer from
/// the same heartbeats; the others wait, and take over only if that one
/// does not (the lease is taken with compare-and-set, so one wins).
pub fn successor<'a>(hosts: &'a [(HostBeat, HostHealth)], lost: &HostName) -> Option<&'a HostBeat> {
    let others: Vec<(HostBeat, HostHealth)> = hosts
        .iter()
        .filter(|(h, _)| &h.name != lost)
        .cloned()
        .collect();
    let region = hosts
        .iter()
        .find(|(h, _)| &h.name == lost)
        .and_then(|(h, _)| h.region.clone());
    let chosen = region
        .as_ref()
        .and_then(|r| place(&others, Some(r), &[]))
        .or_else(|| place(&others, None, &[]))?
        .name
        .clone();
    hosts.iter().map(|(h, _)| h).find(|h| h.name == chosen)
}

/// Which of `hosts` a new instance goes to: a host that is up, in `region`
/// if one is asked for, with every tag of `tags`; of those the one with
/// the most available memory per instance it already runs (ties: fewer
/// instances, then the name). A host being drained never fits. `None`: no
/// host fits.
pub fn place<'a>(
    hosts: &'a [(HostBeat, HostHealth)],
    region: Option<&Region>,
    tags: &[Tag],
) -> Option<&'a HostBeat> {
    hosts
        .iter()
        .filter(|(h, health)| {
            *health == HostHealth::Up
                && !h.draining
                && region.map_or(true, |r| h.region.as_ref() == Some(r))
                && tags.iter().all(|t| h.tags.contains(t))
        })
        .map(|(h, _)| h)
        .max_by(|a, b| {
            let room = |h: &HostBeat| h.mem_available_bytes as f64 / (h.instances as f64 + 1.0);
            room(a)
                .total_cmp(&room(b))
                .then(b.instances.cmp(&a.instances))
                .then(b.name.cmp(&a.name))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_regions_and_tags_are_dns_labels() {
        for good in ["a", "h1", "eu-west-1", &"x".repeat(63)] {
            assert!(HostName::parse(good).is_ok(), "{good}");
            assert!(Region::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a.b",
            "a b",
            "a*",
            "a>",
            "a/b",
            "é",
            "a\n",
            &"x".repeat(64),
        ] {
            let e = HostName::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("host name "), "{e}");
            assert!(Tag::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_tags(" ssd, gpu ,,ssd").unwrap(),
            [Tag::parse("ssd").unwrap(), Tag::parse("gpu").unwrap()]
        );
        assert!(parse_tags("").unwrap().is_empty());
        assert!(parse_tags("ok,NOT").is_err());
        let many: Vec<String> = (0..33).map(|i| format!("t{i}")).collect();
        assert_eq!(
            parse_tags(&many.join(",")),
            Err(ClusterError::TooManyTags(33))
        );
        // Serde takes the same rule.
        assert!(serde_json::from_str::<HostName>("\"a.b\"").is_err());
        assert!(serde_json::from_str::<HostName>("\"ab\"").is_ok());
    }

    #[test]
    fn prefixes_name_buckets_and_subjects() {
        let p = ClusterPrefix::default();
        assert_eq!(p.hosts_bucket(), "pockestrator-hosts");
        assert_eq!(p.claims_bucket(), "pockestrator-instances");
        assert_eq!(p.leases_bucket(), "pockestrator-leases");
        let h = HostName::parse("h1").unwrap();
        assert_eq!(p.api_subject(&h), "pockestrator.host.h1.api");
        assert!(ClusterPrefix::parse("lab-2").is_ok());
        for bad in ["", "2lab", "a.b", "a*", "a>", "A", "a_b", &"x".repeat(33)] {
            assert!(ClusterPrefix::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn servers_are_nats_urls_without_credentials() {
        assert_eq!(
            parse_servers("nats://127.0.0.1:4222, nats://h2:4223,tls://[::1]:4224").unwrap(),
            [
                "nats://127.0.0.1:4222",
                "nats://h2:4223",
                "tls://[::1]:4224"
            ]
        );
        assert_eq!(parse_servers(" , "), Err(ClusterError::NoServers));
        for bad in [
            "127.0.0.1:4222",
            "http://h:4222",
            "nats://u:p@h:4222",
            "nats://h",
            "nats://h:0",
            "nats://h:4222/x",
            "nats://h:99999",
            "nats://h;rm -rf /:4222",
            "nats://-h:4222",
        ] {
            assert!(parse_servers(bad).is_err(), "{bad}");
        }
        let e = parse_servers("nats://u:s3cret@h:4222")
            .unwrap_err()
            .to_string();
        assert!(e.contains("--nats-creds"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
        let many = vec!["nats://h:1"; 17].join(",");
        assert_eq!(parse_servers(&many), Err(ClusterError::TooManyServers(17)));
    }

    fn beat(
        name: &str,
        mem_gb: u64,
        instances: usize,
        region: Option<&str>,
        tags: &[&str],
    ) -> HostBeat {
        let t = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        HostBeat {
            name: HostName::parse(name).unwrap(),
            region: region.map(|r| Region::parse(r).unwrap()),
            tags: tags.iter().map(|t| Tag::parse(t).unwrap()).collect(),
            api: None,
            proxy: None,
            version: "0".into(),
            instances,
            running: instances,
            mem_available_bytes: mem_gb << 30,
            mem_total_bytes: 64 << 30,
            load1: 0.0,
            cpus: 2,
            started_at: t,
            seen_at: t,
            draining: false,
        }
    }

    #[test]
    fn health_follows_the_age_of_the_last_heartbeat() {
        let seen = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        let i = std::time::Duration::from_secs(2);
        let lost = std::time::Duration::from_secs(15);
        let at = |s| seen + chrono::Duration::seconds(s);
        assert_eq!(host_health(seen, at(0), i, lost), HostHealth::Up);
        assert_eq!(host_health(seen, at(-5), i, lost), HostHealth::Up);
        assert_eq!(host_health(seen, at(6), i, lost), HostHealth::Up);
        assert_eq!(host_health(seen, at(7), i, lost), HostHealth::Late);
        assert_eq!(host_health(seen, at(15), i, lost), HostHealth::Late);
        assert_eq!(host_health(seen, at(16), i, lost), HostHealth::Lost);
    }

    #[test]
    fn placement_takes_the_roomiest_host_that_fits() {
        use HostHealth::*;
        let hosts = vec![
            (beat("a", 8, 3, Some("eu"), &["ssd"]), Up),
            (beat("b", 8, 1, Some("eu"), &[]), Up),
            (beat("c", 32, 0, Some("us"), &["ssd"]), Late),
            (beat("d", 4, 0, Some("us"), &["ssd", "gpu"]), Up),
        ];
        let name = |h: Option<&HostBeat>| h.map(|h| h.name.to_string());
        // b: 4 GB per instance; a: 2; d: 4 but fewer instances wins the tie.
        assert_eq!(name(place(&hosts, None, &[])), Some("d".into()));
        let eu = Region::parse("eu").unwrap();
        assert_eq!(name(place(&hosts, Some(&eu), &[])), Some("b".into()));
        let ssd = Tag::parse("ssd").unwrap();
        assert_eq!(
            name(place(&hosts, Some(&eu), std::slice::from_ref(&ssd))),
            Some("a".into())
        );
        // c is late: never chosen, however roomy.
        let us = Region::parse("us").unwrap();
        assert_eq!(name(place(&hosts, Some(&us), &[])), Some("d".into()));
        let gpu = Tag::parse("gpu").unwrap();
        assert_eq!(name(place(&hosts, Some(&eu), &[gpu])), None);
        assert_eq!(name(place(&[], None, &[])), None);
        // Equal room, equal counts: the name decides, so every host agrees.
        let tie = vec![
            (beat("y", 8, 1, None, &[]), Up),
            (beat("x", 8, 1, None, &[]), Up),
        ];
        assert_eq!(name(place(&tie, None, &[])), Some("x".into()));
        // A host being drained takes nothing new.
        let mut drained = tie.clone();
        drained[1].0.draining = true;
        assert_eq!(name(place(&drained, None, &[])), Some("y".into()));
    }

    #[test]
    fn a_lost_host_s_instances_go_to_one_successor_every_host_agrees_on() {
        use HostHealth::*;
        let lost = HostName::parse("a").unwrap();
        let hosts = vec![
            (beat("a", 64, 0, Some("eu"), &[]), Lost),
            (beat("b", 8, 1, Some("eu"), &[]), Up),
            (beat("c", 32, 0, Some("us"), &[]), Up),
            (beat("d", 16, 0, Some("eu"), &[]), Late),
        ];
        let name = |h: Option<&HostBeat>| h.map(|h| h.name.to_string());
        // c is roomier, but b is up in a's region.
        assert_eq!(name(successor(&hosts, &lost)), Some("b".into()));
        // None up in its region: the roomiest anywhere.
        let mut away = hosts.clone();
        away[1].1 = Late;
        assert_eq!(name(successor(&away, &lost)), Some("c".into()));
        // Never itself, however roomy; nobody up: nobody.
        let alone = vec![
            (beat("a", 64, 0, None, &[]), Up),
            (beat("b", 1, 0, None, &[]), Lost),
        ];
        assert_eq!(name(successor(&alone, &lost)), None);
    }

    #[test]
    fn a_host_fences_itself_well_before_its_leases_run_out() {
        let ttl = std::time::Duration::from_secs(10);
        assert_eq!(fence_after(ttl), std::time::Duration::from_secs(6));
        assert!(fence_after(ttl) < ttl);
    }

    #[test]
    fn claims_of_an_earlier_version_still_read() {
        let old = r#"{"host":"h1","since":"2026-01-01T00:00:00Z"}"#;
        let c: Claim = serde_json::from_str(old).unwrap();
        assert_eq!(c.desired, None);
        assert_eq!(c.from, None);
        // And a claim without a desired state is written as before.
        assert_eq!(serde_json::to_string(&c).unwrap(), old);
    }
}
