//! Plain-text rendering of CLI answers: aligned tables and key/value
//! blocks. Pure functions of their input (the current time is passed in),
//! so they are snapshot-tested.

use chrono::{DateTime, Utc};

use crate::api::dto::{
    BackupDto, ConfigChangeDto, CreatedDto, DeployList, DoctorReport, EventDto, HostDto,
    ImportReport, InstanceDto, VersionList,
};

/// Columns aligned with two spaces, no trailing spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut push_row = |cells: Vec<&str>| {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if i + 1 < cells.len() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    };
    push_row(headers.to_vec());
    for row in rows {
        push_row(row.iter().map(String::as_str).collect());
    }
    out
}

/// "3s ago", "5m ago", "2h ago", "4d ago"; "-" for never.
pub fn ago(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    let Some(at) = at else { return "-".to_string() };
    let secs = now.signed_duration_since(at).num_seconds().max(0);
    match secs {
        0..=59 => format!("{secs}s ago"),
        60..=3599 => format!("{}m ago", secs / 60),
        3600..=86399 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86400),
    }
}

fn dash(v: Option<impl ToString>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".to_string())
}

pub fn instances(list: &[InstanceDto], now: DateTime<Utc>) -> String {
    if list.is_empty() {
        return "no instances yet: create one with `pockestrator create NAME`\n".to_string();
    }
    // In a cluster, a column for the host each instance runs on.
    let hosts = list.iter().any(|i| i.host.is_some());
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|i| {
            let mut row = vec![i.name.clone()];
            if hosts {
                row.push(dash(i.host.as_deref()));
            }
            row.extend([
                i.status.to_string(),
                i.version.clone(),
                i.port.to_string(),
                dash(i.pid),
                i.restarts.to_string(),
                ago(i.last_health_check, now),
                i.urls.first().cloned().unwrap_or_else(|| i.url.clone()),
            ]);
            row
        })
        .collect();
    let mut headers = vec!["NAME"];
    if hosts {
        headers.push("HOST");
    }
    headers.extend([
        "STATUS", "VERSION", "PORT", "PID", "RESTARTS", "CHECKED", "URL",
    ]);
    table(&headers, &rows)
}

/// `pockestrator hosts`: every host of the cluster, this one marked.
pub fn hosts(list: &[HostDto], now: DateTime<Utc>) -> String {
    if list.is_empty() {
        return "no hosts have reported yet\n".to_string();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|h| {
            vec![
                if h.this {
                    format!("{} (this)", h.name)
                } else {
                    h.name.clone()
                },
                if h.draining {
                    format!("{}, draining", h.health)
                } else {
                    h.health.clone()
                },
                dash(h.region.as_deref()),
                if h.tags.is_empty() {
                    "-".to_string()
                } else {
                    h.tags.join(",")
                },
                format!("{}/{}", h.running, h.instances),
                format!(
                    "{} of {}",
                    crate::model::human::human_bytes(h.mem_available_bytes),
                    crate::model::human::human_bytes(h.mem_total_bytes)
                ),
                format!("{:.2}/{}", h.load1, h.cpus),
                ago(Some(h.seen_at), now),
                dash(h.api.as_deref()),
            ]
        })
        .collect();
    table(
        &[
            "HOST", "HEALTH", "REGION", "TAGS", "RUNNING", "MEM FREE", "LOAD", "SEEN", "API",
        ],
        &rows,
    )
}

/// The address a user opens: the first of the instance's URLs (the routed
/// one when a router serves it), as the dashboard links it.
fn routed_url(i: &InstanceDto) -> &str {
    i.urls.first().unwrap_or(&i.url).trim_end_matches('/')
}

/// PocketBase's admin UI at the routed address.
fn admin_ui(i: &InstanceDto) -> String {
    format!("{}/_/", routed_url(i))
}

/// What `create` prints: the routed addresses first, the direct one (past
/// the router) after them, and the superuser; the password only when it
/// was generated, since it is shown this once.
pub fn created(c: &CreatedDto, password_generated: bool) -> String {
    let i = &c.instance;
    let mut out = format!(
        "created {} (PocketBase {}): {}\n",
        i.name, i.version, i.status
    );
    let mut rows = vec![
        ("admin UI", admin_ui(i)),
        ("url", routed_url(i).to_string()),
    ];
    if routed_url(i) != i.url.trim_end_matches('/') {
        rows.push(("direct", format!("{} (past the router)", i.url)));
    }
    if let Some(su) = &c.superuser {
        rows.push(("superuser", su.email.clone()));
        if password_generated {
            rows.push((
                "password",
                format!("{}   (shown once: store it now)", su.password),
            ));
        }
    }
    out.push_str(&key_values(&rows));
    out
}

pub fn instance(i: &InstanceDto, now: DateTime<Utc>) -> String {
    let mut rows = vec![
        ("name", i.name.clone()),
        ("status", format!("{} (wanted: {})", i.status, i.desired)),
        ("version", i.version.clone()),
        ("port", i.port.to_string()),
        ("urls", i.urls.join(" ")),
        ("admin ui", admin_ui(i)),
        ("base domain", dash(i.domain.as_deref())),
        (
            "domains",
            if i.domains.is_empty() {
                "-".to_string()
            } else {
                i.domains.join(" ")
            },
        ),
        ("pid", dash(i.pid)),
        ("restarts", i.restarts.to_string()),
        ("last check", ago(i.last_health_check, now)),
        ("superuser", dash(i.superuser_email.as_deref())),
        (
            "created",
            format!(
                "{} by {}",
                i.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
                i.created_by
            ),
        ),
        ("directory", i.dir.clone()),
        ("binary", i.binary.clone()),
    ];
    if let Some(host) = &i.host {
        rows.insert(2, ("host", host.clone()));
    }
    if i.memory_max.is_some() || i.cpu_quota.is_some() {
        rows.push((
            "limits",
            format!(
                "memory {}, cpu {}",
                i.memory_max.as_deref().unwrap_or("-"),
                i.cpu_quota.as_deref().unwrap_or("-")
            ),
        ));
    }
    if let Some(secs) = i.idle_timeout_secs {
        let idle = humantime::format_duration(std::time::Duration::from_secs(secs));
        let wakes = match &i.wake_schedule {
            Some(cron) => format!("; wakes at \"{cron}\" (UTC) for its cron jobs"),
            None => String::new(),
        };
        rows.push((
            "sleeps",
            format!("after {idle} without a request; the next one wakes it{wakes}"),
        ));
    } else if let Some(cron) = &i.wake_schedule {
        rows.push(("wakes", format!("at \"{cron}\" (UTC) while asleep")));
    }
    if let Some(r) = &i.route {
        let state = if r.in_place {
            "in place".to_string()
        } else {
            format!(
                "NOT in place ({}); `pockestrator doctor --repair` puts it back",
                r.problems.join("; ")
            )
        };
        rows.push(("route", format!("{}: {state}", r.router)));
    }
    if let Some(r) = &i.replica {
        rows.push((
            "replica",
            format!(
                "{} ({}; generation {} since {})",
                r.target,
                r.state,
                r.generation,
                r.since.format("%Y-%m-%d %H:%M:%S UTC")
            ),
        ));
    }
    if let Some(e) = &i.last_error {
        rows.push(("last error", e.clone()));
    }
    key_values(&rows)
}

/// A key/value block, the values aligned two spaces after the longest key.
fn key_values(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:width$}  {v}\n"))
        .collect()
}

pub fn events(list: &[EventDto]) -> String {
    if list.is_empty() {
        return "no events\n".to_string();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|e| {
            vec![
                e.id.to_string(),
                e.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                e.actor.clone(),
                e.action.clone(),
                dash(e.instance.as_deref()),
                e.result.clone(),
                e.detail.lines().next().unwrap_or("").to_string(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "TIME (UTC)",
            "ACTOR",
            "ACTION",
            "INSTANCE",
            "RESULT",
            "DETAIL",
        ],
        &rows,
    )
}

pub fn history(list: &[ConfigChangeDto]) -> String {
    if list.is_empty() {
        return "no configuration changes\n".to_string();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|c| {
            vec![
                c.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                c.actor.clone(),
                c.field.clone(),
                dash(c.old_value.as_deref()),
                dash(c.new_value.as_deref()),
            ]
        })
        .collect();
    table(&["TIME (UTC)", "ACTOR", "FIELD", "FROM", "TO"], &rows)
}

/// `pockestrator deploys NAME`.
pub fn deploys(list: &DeployList) -> String {
    let mut out = String::new();
    if let Some(repo) = &list.repo {
        out.push_str(&format!(
            "{} deploys {} branch {}{}\n",
            list.name,
            repo,
            list.branch.as_deref().unwrap_or("?"),
            list.subdir
                .as_deref()
                .map(|s| format!(", directory {s}"))
                .unwrap_or_default()
        ));
    }
    if list.deploys.is_empty() {
        out.push_str("no deploys\n");
        return out;
    }
    let rows: Vec<Vec<String>> = list
        .deploys
        .iter()
        .map(|d| {
            vec![
                format!("{}{}", d.id, if d.current { " *" } else { "" }),
                d.kind.clone(),
                d.commit
                    .as_deref()
                    .map(|c| c.chars().take(12).collect())
                    .unwrap_or_else(|| "-".into()),
                d.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                d.status.clone(),
                format!("{:.1}s", d.duration_ms as f64 / 1000.0),
                d.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "ID",
            "KIND",
            "COMMIT",
            "STARTED (UTC)",
            "RESULT",
            "DURATION",
            "REASON",
        ],
        &rows,
    ));
    out.push_str("* the release that runs now\n");
    out
}

pub fn backups(list: &[BackupDto]) -> String {
    if list.is_empty() {
        return "no backups\n".to_string();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|b| {
            vec![
                b.id.clone(),
                b.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                b.size.to_string(),
                b.version.clone(),
                b.trigger.clone(),
                b.destination.clone(),
                b.sha256.chars().take(12).collect(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "TIME (UTC)",
            "BYTES",
            "VERSION",
            "MADE BY",
            "DESTINATION",
            "SHA256",
        ],
        &rows,
    )
}

pub fn doctor(r: &DoctorReport) -> String {
    let mut out = String::new();
    for c in &r.checks {
        let mark = match c.level.as_str() {
            "ok" => "ok  ",
            "warning" => "WARN",
            _ => "FAIL",
        };
        out.push_str(&format!("{mark} {}: {}\n", c.name, c.detail));
        if !c.fix.is_empty() {
            out.push_str(&format!("     fix: {}\n", c.fix));
        }
    }
    if let Some(rep) = &r.repaired {
        out.push_str(&format!(
            "repaired ({} router): {} added, {} updated, {} removed\n",
            r.router,
            rep.added.len(),
            rep.updated.len(),
            rep.removed.len()
        ));
    }
    if r.drifts.is_empty() {
        out.push_str(&format!("routes: ok ({} router)\n", r.router));
        return out;
    }
    let rows: Vec<Vec<String>> = r
        .drifts
        .iter()
        .map(|d| {
            vec![
                dash(d.instance.as_deref()),
                d.kind.clone(),
                d.detail.clone(),
            ]
        })
        .collect();
    out.push_str(&format!(
        "routes: {} problem(s) ({} router)\n",
        r.drifts.len(),
        r.router
    ));
    out.push_str(&table(&["INSTANCE", "PROBLEM", "DETAIL"], &rows));
    out.push_str("fix: pockestrator doctor --repair\n");
    out
}

pub fn import(r: &ImportReport) -> String {
    if r.units.is_empty() {
        return "no units made by the script were found (units named *-pocketbase.service running `pocketbase serve`)\n".to_string();
    }
    let rows: Vec<Vec<String>> = r
        .units
        .iter()
        .map(|u| {
            vec![
                crate::model::names::shown(&u.unit)
                    .trim_matches('"')
                    .to_string(),
                u.action.clone(),
                dash(u.name.as_deref()),
                dash(u.port),
                dash(u.version.as_deref()),
                dash(u.domain.as_deref()),
                u.reasons.first().cloned().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &["UNIT", "ACTION", "NAME", "PORT", "VERSION", "DOMAIN", "WHY"],
        &rows,
    )
}

pub fn versions(v: &VersionList) -> String {
    let mut out = String::new();
    if v.installed.is_empty() {
        out.push_str("installed: none yet\n");
    } else {
        let rows: Vec<Vec<String>> = v
            .installed
            .iter()
            .map(|i| {
                vec![
                    i.version.clone(),
                    i.source.clone(),
                    i.sha256.chars().take(16).collect(),
                ]
            })
            .collect();
        out.push_str("installed:\n");
        out.push_str(&table(&["VERSION", "SOURCE", "SHA256"], &rows));
    }
    match (&v.available_error, v.available.is_empty()) {
        (Some(e), _) => out.push_str(&format!("available: unknown ({e})\n")),
        (None, true) => out.push_str("available: none\n"),
        (None, false) => {
            let shown: Vec<&str> = v.available.iter().take(12).map(String::as_str).collect();
            let more = v.available.len().saturating_sub(shown.len());
            out.push_str(&format!(
                "available: {}{}\n",
                shown.join(", "),
                if more > 0 {
                    format!(" (and {more} older)")
                } else {
                    String::new()
                }
            ));
        }
    }
    if let Some(latest) = &v.latest {
        out.push_str(&format!("latest: {latest}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Status;
    use expect_test::expect;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn sample(name: &str, status: Status, pid: Option<u32>) -> InstanceDto {
        InstanceDto {
            name: name.to_string(),
            version: "0.28.4".to_string(),
            port: 8094,
            domain: Some("tigawanna.vip".to_string()),
            status,
            desired: "running".to_string(),
            url: "http://127.0.0.1:8094".to_string(),
            pid,
            restarts: 2,
            created_at: at("2026-11-22T10:00:00Z"),
            updated_at: at("2026-11-22T10:00:00Z"),
            last_health_check: Some(at("2026-11-22T10:59:57Z")),
            last_error: None,
            superuser_email: Some("admin@example.com".to_string()),
            dir: "/var/lib/pockestrator/instances/moots".to_string(),
            binary: "/var/lib/pockestrator/releases/0.28.4/linux_amd64/pocketbase".to_string(),
            created_by: "socket:uid=0".to_string(),
            domains: vec!["moots.app".to_string()],
            urls: vec![
                "http://moots.tigawanna.vip:8080".to_string(),
                "http://moots.app:8080".to_string(),
                "http://127.0.0.1:8094".to_string(),
            ],
            max_body_bytes: 10_000_000,
            memory_max: None,
            cpu_quota: None,
            idle_timeout_secs: None,
            wake_schedule: None,
            replica: None,
            route: None,
            host: None,
        }
    }

    #[test]
    fn instance_table() {
        let now = at("2026-11-22T11:00:00Z");
        let mut b = sample("b-very-long-name", Status::Stopped, None);
        b.domain = None;
        b.last_health_check = None;
        expect![[r#"
            NAME              STATUS   VERSION  PORT  PID    RESTARTS  CHECKED  URL
            moots             running  0.28.4   8094  12345  2         3s ago   http://moots.tigawanna.vip:8080
            b-very-long-name  stopped  0.28.4   8094  -      2         -        http://moots.tigawanna.vip:8080
        "#]]
        .assert_eq(&instances(&[sample("moots", Status::Running, Some(12345)), b], now));
        expect![[r#"
            no instances yet: create one with `pockestrator create NAME`
        "#]]
        .assert_eq(&instances(&[], now));
    }

    #[test]
    fn cluster_tables() {
        let now = at("2026-11-22T11:00:00Z");
        let mut a = sample("alpha", Status::Running, Some(12345));
        a.host = Some("h1".into());
        let mut b = sample("beta", Status::Sleeping, None);
        b.host = Some("h2".into());
        expect![[r#"
            NAME   HOST  STATUS    VERSION  PORT  PID    RESTARTS  CHECKED  URL
            alpha  h1    running   0.28.4   8094  12345  2         3s ago   http://moots.tigawanna.vip:8080
            beta   h2    sleeping  0.28.4   8094  -      2         3s ago   http://moots.tigawanna.vip:8080
        "#]].assert_eq(&instances(&[a.clone(), b], now));
        expect![[r#"
            name         alpha
            status       running (wanted: running)
            host         h1
            version      0.28.4
            port         8094
            urls         http://moots.tigawanna.vip:8080 http://moots.app:8080 http://127.0.0.1:8094
            admin ui     http://moots.tigawanna.vip:8080/_/
            base domain  tigawanna.vip
            domains      moots.app
            pid          12345
            restarts     2
            last check   3s ago
            superuser    admin@example.com
            created      2026-11-22 10:00:00 UTC by socket:uid=0
            directory    /var/lib/pockestrator/instances/moots
            binary       /var/lib/pockestrator/releases/0.28.4/linux_amd64/pocketbase
        "#]]
        .assert_eq(&instance(&a, now));
        let host = |name: &str, this: bool, health: &str| HostDto {
            name: name.into(),
            region: (name == "h1").then(|| "eu".into()),
            tags: if this {
                vec!["ssd".into(), "big".into()]
            } else {
                vec![]
            },
            health: health.into(),
            this,
            api: Some(format!("http://10.0.0.{}:9000", name.len())),
            proxy: None,
            version: "0.1.0".into(),
            instances: 12,
            running: 3,
            mem_available_bytes: 6 << 30,
            mem_total_bytes: 16 << 30,
            load1: 0.5,
            cpus: 4,
            started_at: at("2026-11-22T10:00:00Z"),
            seen_at: at("2026-11-22T10:59:58Z"),
            draining: false,
        };
        expect![[r#"
            HOST       HEALTH  REGION  TAGS     RUNNING  MEM FREE             LOAD    SEEN    API
            h1 (this)  up      eu      ssd,big  3/12     6.0 GiB of 16.0 GiB  0.50/4  2s ago  http://10.0.0.2:9000
            h2         lost    -       -        3/12     6.0 GiB of 16.0 GiB  0.50/4  2s ago  http://10.0.0.2:9000
        "#]].assert_eq(&hosts(&[host("h1", true, "up"), host("h2", false, "lost")], now));
        let mut drained = host("h3", false, "up");
        drained.draining = true;
        assert!(hosts(&[drained], now).contains("h3    up, draining"));
        expect![[r#"
            no hosts have reported yet
        "#]]
        .assert_eq(&hosts(&[], now));
    }

    #[test]
    fn instance_detail() {
        let now = at("2026-11-22T12:00:00Z");
        let mut i = sample("moots", Status::Failed, None);
        i.last_error = Some("crashed 5 times in a row".to_string());
        i.route = Some(crate::api::dto::RouteStatus {
            router: "caddy".to_string(),
            in_place: false,
            problems: vec!["route pockestrator-moots is missing".to_string()],
        });
        expect![[r#"
            name         moots
            status       failed (wanted: running)
            version      0.28.4
            port         8094
            urls         http://moots.tigawanna.vip:8080 http://moots.app:8080 http://127.0.0.1:8094
            admin ui     http://moots.tigawanna.vip:8080/_/
            base domain  tigawanna.vip
            domains      moots.app
            pid          -
            restarts     2
            last check   1h ago
            superuser    admin@example.com
            created      2026-11-22 10:00:00 UTC by socket:uid=0
            directory    /var/lib/pockestrator/instances/moots
            binary       /var/lib/pockestrator/releases/0.28.4/linux_amd64/pocketbase
            route        caddy: NOT in place (route pockestrator-moots is missing); `pockestrator doctor --repair` puts it back
            last error   crashed 5 times in a row
        "#]]
        .assert_eq(&instance(&i, now));
    }

    #[test]
    fn created_message() {
        let mut c = CreatedDto {
            instance: sample("moots", Status::Running, Some(12345)),
            superuser: Some(crate::api::dto::SuperuserDto {
                email: "admin@example.com".to_string(),
                password: "generated-secret".to_string(),
            }),
        };
        expect![[r#"
            created moots (PocketBase 0.28.4): running
            admin UI   http://moots.tigawanna.vip:8080/_/
            url        http://moots.tigawanna.vip:8080
            direct     http://127.0.0.1:8094 (past the router)
            superuser  admin@example.com
            password   generated-secret   (shown once: store it now)
        "#]]
        .assert_eq(&created(&c, true));
        // A password the user chose is not echoed; without a router the
        // direct address is the only one.
        c.instance.urls = vec![c.instance.url.clone()];
        expect![[r#"
            created moots (PocketBase 0.28.4): running
            admin UI   http://127.0.0.1:8094/_/
            url        http://127.0.0.1:8094
            superuser  admin@example.com
        "#]]
        .assert_eq(&created(&c, false));
        c.superuser = None;
        expect![[r#"
            created moots (PocketBase 0.28.4): running
            admin UI  http://127.0.0.1:8094/_/
            url       http://127.0.0.1:8094
        "#]]
        .assert_eq(&created(&c, false));
    }

    #[test]
    fn event_table() {
        let e = EventDto {
            id: 7,
            at: at("2026-11-22T10:00:00Z"),
            actor: "token@127.0.0.1".to_string(),
            action: "create".to_string(),
            instance: Some("moots".to_string()),
            result: "ok".to_string(),
            detail: "version 0.28.4 on port 8094\nsecond line".to_string(),
        };
        expect![[r#"
            ID  TIME (UTC)           ACTOR            ACTION  INSTANCE  RESULT  DETAIL
            7   2026-11-22 10:00:00  token@127.0.0.1  create  moots     ok      version 0.28.4 on port 8094
        "#]]
        .assert_eq(&events(&[e]));
    }

    #[test]
    fn history_table() {
        let c = ConfigChangeDto {
            id: 1,
            at: at("2026-11-22T10:00:00Z"),
            actor: "socket:uid=0".to_string(),
            field: "version".to_string(),
            old_value: Some("0.28.4".to_string()),
            new_value: Some("0.40.6".to_string()),
        };
        let d = ConfigChangeDto {
            field: "domain".to_string(),
            old_value: None,
            new_value: Some("a.example.com".to_string()),
            ..c.clone()
        };
        expect![[r#"
            TIME (UTC)           ACTOR         FIELD    FROM    TO
            2026-11-22 10:00:00  socket:uid=0  version  0.28.4  0.40.6
            2026-11-22 10:00:00  socket:uid=0  domain   -       a.example.com
        "#]]
        .assert_eq(&history(&[c, d]));
    }

    #[test]
    fn doctor_report() {
        let mut r = DoctorReport {
            checks: vec![
                crate::api::dto::CheckDto {
                    name: "disk space".to_string(),
                    level: "ok".to_string(),
                    detail: "50.0 GiB free".to_string(),
                    fix: String::new(),
                },
                crate::api::dto::CheckDto {
                    name: "inotify".to_string(),
                    level: "warning".to_string(),
                    detail: "room for about 64 PocketBase instances".to_string(),
                    fix: "sysctl -w fs.inotify.max_user_instances=1024".to_string(),
                },
            ],
            router: "caddy".to_string(),
            drifts: vec![],
            repaired: None,
        };
        expect![[r#"
            ok   disk space: 50.0 GiB free
            WARN inotify: room for about 64 PocketBase instances
                 fix: sysctl -w fs.inotify.max_user_instances=1024
            routes: ok (caddy router)
        "#]]
        .assert_eq(&doctor(&r));
        r.drifts.push(crate::api::dto::DriftDto {
            instance: Some("moots".to_string()),
            kind: "changed".to_string(),
            detail: "upstream 127.0.0.1:9999, want 127.0.0.1:8094".to_string(),
        });
        r.drifts.push(crate::api::dto::DriftDto {
            instance: None,
            kind: "stale".to_string(),
            detail: "route pockestrator-gone has no instance".to_string(),
        });
        expect![[r#"
            ok   disk space: 50.0 GiB free
            WARN inotify: room for about 64 PocketBase instances
                 fix: sysctl -w fs.inotify.max_user_instances=1024
            routes: 2 problem(s) (caddy router)
            INSTANCE  PROBLEM  DETAIL
            moots     changed  upstream 127.0.0.1:9999, want 127.0.0.1:8094
            -         stale    route pockestrator-gone has no instance
            fix: pockestrator doctor --repair
        "#]]
        .assert_eq(&doctor(&r));
    }

    #[test]
    fn ages() {
        let now = at("2026-11-22T11:00:00Z");
        assert_eq!(ago(Some(at("2026-11-22T10:58:00Z")), now), "2m ago");
        assert_eq!(ago(Some(at("2026-11-20T11:00:00Z")), now), "2d ago");
        assert_eq!(ago(Some(at("2026-11-22T11:00:05Z")), now), "0s ago");
        assert_eq!(ago(None, now), "-");
    }
}
