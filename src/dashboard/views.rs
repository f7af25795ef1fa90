//! Every piece of HTML the dashboard sends, as pure functions from view
//! data to markup (maud escapes every value). Whole pages and the
//! fragments the live streams patch in by id come from the same functions,
//! so a patched element is exactly what a reload would show.
//!
//! Datastar attributes carry small expressions; the only values put inside
//! them are URL paths built from validated instance names and the
//! session's hex CSRF token, so nothing a user typed ends up in code.

use chrono::{DateTime, Utc};
use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::assets;
use super::fleet::{Counts, FleetRow, Patch, Sent, Shown, SortKey, ViewParams, PAGE_ROWS};
use crate::health::HealthSample;
use crate::manager::FieldErrors;
use crate::model::{InstanceName, Status};
use crate::procstat::{human_bytes, human_duration};
use crate::store::AuditEntry;

/// Which top-level page is shown (for the navigation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Fleet,
    Audit,
    Instance,
}

/// A Datastar POST action that carries the session's CSRF token.
pub fn post(url: &str, csrf: &str) -> String {
    format!("@post('{url}', {{headers: {{'X-CSRF-Token': '{csrf}'}}}})")
}

/// A long-lived Datastar stream: it retries (with backoff) for as long as
/// the page is open, so a daemon restart is ridden out.
pub fn stream(url: &str) -> String {
    format!("@get('{url}', {{retryMaxCount: 1000, retryMaxWaitMs: 10000}})")
}

fn when(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match t {
        None => "never".to_string(),
        Some(t) => {
            let ago = now.signed_duration_since(t).to_std().unwrap_or_default();
            format!("{} ago", human_duration(ago))
        }
    }
}

/// The page frame: head, top bar with navigation and sign-out, `main`.
pub fn layout(title: &str, nav: Option<(Nav, &str)>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · Pockestrator" }
                link rel="stylesheet" href=(assets::css_url());
                script type="module" src=(assets::datastar_url()) {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                @if let Some((current, csrf)) = nav {
                    header.top {
                        a.brand href="/ui/" { "Pockestrator" }
                        nav aria-label="Main" {
                            a #nav-fleet href="/ui/" aria-current=[(current == Nav::Fleet).then_some("page")] { "Fleet" }
                            a #nav-audit href="/ui/audit" aria-current=[(current == Nav::Audit).then_some("page")] { "Audit log" }
                        }
                        form #logout-form method="post" action="/ui/logout" {
                            input type="hidden" name="csrf" value=(csrf);
                            button #logout type="submit" { "Sign out" }
                        }
                    }
                    div #flash-area { (flash("")) }
                }
                (body)
            }
        }
    }
}

/// A message for the whole page (`#flash`): a refused request, an ended
/// session.
pub fn flash(message: &str) -> Markup {
    html! { p #flash.msg.bad role="alert" { (message) } }
}

/// The page for an instance that does not exist.
pub fn not_found_page(csrf: &str, name: &str) -> Markup {
    layout(
        "Not found",
        Some((Nav::Instance, csrf)),
        html! {
            main #main {
                h1 { "No such instance" }
                p { "There is no instance named " code { (crate::model::names::shown(name)) } ". "
                    a href="/ui/" { "Back to the fleet" } "." }
            }
        },
    )
}

/// The sign-in page.
pub fn login_page(error: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            main #main.login {
                section.panel {
                    h1 { "Sign in to Pockestrator" }
                    form #login-form method="post" action="/ui/login" {
                        div.field {
                            label for="token" { "Admin token" }
                            input #token type="password" name="token" autocomplete="current-password"
                                required autofocus aria-describedby="token-help";
                        }
                        p #token-help.note { "Print it on the server with " code { "pockestrator token" } "." }
                        @if let Some(e) = error {
                            p #login-error.err role="alert" { (e) }
                        }
                        button #login-submit.primary type="submit" { "Sign in" }
                    }
                }
            }
        },
    )
}

/// What the fleet page needs besides the rows.
pub struct FleetPage<'a> {
    pub csrf: &'a str,
    pub page_id: &'a str,
    pub counts: &'a Counts,
    pub shown: &'a Shown,
    pub versions: &'a [String],
    pub latest: Option<&'a str>,
    pub versions_error: Option<&'a str>,
    pub now: DateTime<Utc>,
    /// In a cluster: the table has a host column, and the rows are every
    /// host's.
    pub clustered: bool,
    /// The hosts whose instances could not be listed, with why.
    pub missing: &'a [(String, String)],
}

/// The fleet page: counts, the create form, filter/sort and the table.
pub fn fleet_page(p: &FleetPage<'_>) -> Markup {
    let signals = serde_json::json!({
        "page": p.page_id,
        "filter": "",
        "sort": "name",
        "limit": PAGE_ROWS,
        "create": {
            "name": "", "version": p.latest.unwrap_or(""), "port": "", "domain": "", "email": ""
        },
    });
    let view = post("/ui/fleet/view", p.csrf);
    layout(
        "Fleet",
        Some((Nav::Fleet, p.csrf)),
        html! {
            main #main data-signals=(signals.to_string()) data-on-load=(stream("/ui/fleet/stream")) {
                h1 { "Fleet" }
                @for (host, why) in p.missing {
                    p.note.err.host-missing { "Host " strong { (host) } "'s instances are not shown: " (why) }
                }
                (counts(p.counts))
                (create_form(p))
                section aria-label="Instances" {
                    div.toolbar {
                        div.field {
                            label for="filter" { "Filter" }
                            input #filter type="search" data-bind="filter" placeholder="name, state, version, port, domain"
                                "data-on-input__debounce.250ms"=(view) autocomplete="off";
                        }
                        div.field {
                            label for="sort" { "Sort by" }
                            select #sort data-bind="sort" data-on-change=(view) {
                                @for (_, key, label) in SortKey::ALL {
                                    option value=(key) { (label) }
                                }
                            }
                        }
                    }
                    div.table-wrap {
                        table #fleet.cards {
                            thead {
                                tr {
                                    th { "Name" }
                                    @if p.clustered { th { "Host" } }
                                    th { "Status" } th { "Version" } th.num { "Port" }
                                    th { "URL" } th.num { "Uptime" } th.num { "Restarts" }
                                    th { "Last check" } th.num { "CPU" } th.num { "Memory" }
                                }
                            }
                            (fleet_rows(&p.shown.rows, p.now))
                        }
                    }
                    (fleet_more(p.shown, p.csrf))
                }
            }
        },
    )
}

/// The counts by state (`#counts`).
pub fn counts(c: &Counts) -> Markup {
    let item = |id: &str, n: usize, label: &str| {
        html! {
            div.count data-state=(label) {
                span.n id=(id) { (n) }
                span.l { (label) }
            }
        }
    };
    html! {
        div #counts.counts role="status" aria-live="polite" {
            (item("count-total", c.total, "total"))
            (item("count-running", c.running, "running"))
            (item("count-starting", c.starting, "starting"))
            (item("count-unhealthy", c.unhealthy, "unhealthy"))
            (item("count-failed", c.failed, "failed"))
            (item("count-stopped", c.stopped, "stopped"))
            (item("count-sleeping", c.sleeping, "sleeping"))
        }
    }
}

/// The table body (`#fleet-rows`).
pub fn fleet_rows(rows: &[FleetRow], now: DateTime<Utc>) -> Markup {
    html! {
        tbody #fleet-rows {
            @for r in rows { (fleet_row(r, now)) }
            @if rows.is_empty() {
                tr #fleet-empty { td.empty colspan="10" { "No instances to show. Create one above, or change the filter." } }
            }
        }
    }
}

/// What a live fleet page needs next, given every instance's row and what
/// the page was sent before: one HTML fragment per Datastar event, for the
/// counts, the table (whole, or only the rows that changed) and the line
/// under it; nothing when nothing changed. They travel as separate events
/// because Datastar parses a patch in a `<template>`, where the first
/// element sets the parsing mode: table rows after a `<div>` would lose
/// their `<tr>`/`<td>` tags.
pub fn fleet_update(
    rows: &[FleetRow],
    params: &ViewParams,
    csrf: &str,
    sent: &mut Sent,
    now: DateTime<Utc>,
) -> Vec<String> {
    let counts = Counts::of(rows);
    let shown = params.window(rows);
    let rendered: Vec<(String, String)> = shown
        .rows
        .iter()
        .map(|r| (r.name.clone(), fleet_row(r, now).into_string()))
        .collect();
    let mut out = Vec::new();
    if sent.counts_changed(&counts) {
        out.push(self::counts(&counts).into_string());
    }
    match sent.update(&rendered) {
        Patch::None => {}
        Patch::Table => out.push(fleet_rows(&shown.rows, now).into_string()),
        Patch::Rows(names) => {
            let names: std::collections::HashSet<String> = names.into_iter().collect();
            out.push(
                rendered
                    .into_iter()
                    .filter(|(name, _)| names.contains(name))
                    .map(|(_, row)| row)
                    .collect(),
            )
        }
    }
    let footer = fleet_more(&shown, csrf).into_string();
    if sent.footer_changed(&footer) {
        out.push(footer);
    }
    out
}

/// The line under the table (`#fleet-more`): how many rows are shown of
/// how many match, and a button for the next page of them.
pub fn fleet_more(shown: &Shown, csrf: &str) -> Markup {
    let hidden = shown.matching.saturating_sub(shown.rows.len());
    let more = format!(
        "$limit = $limit + {PAGE_ROWS}; {}",
        post("/ui/fleet/view", csrf)
    );
    html! {
        div #fleet-more.toolbar {
            @if hidden > 0 {
                p.note {
                    "Showing " (shown.rows.len()) " of " (shown.matching) " matching instances ("
                    (shown.total) " in all). Narrow them with the filter, or "
                }
                button #fleet-show-more type="button" data-on-click=(more) {
                    "Show " (hidden.min(PAGE_ROWS)) " more"
                }
            } @else if shown.matching < shown.total {
                p.note { (shown.matching) " of " (shown.total) " instances match the filter." }
            }
        }
    }
}

fn status_badge(status: Status) -> Markup {
    html! { span class={"badge " (status.as_str())} { (status.as_str()) } }
}

/// One instance's row (`#row-<name>`).
pub fn fleet_row(r: &FleetRow, now: DateTime<Utc>) -> Markup {
    let stats = r.stats.as_ref();
    html! {
        tr id={"row-" (r.name)} data-status=(r.status.as_str()) {
            td data-label="Name" { a.instance-link href={"/ui/instances/" (r.name)} { (r.name) } }
            @if let Some(host) = &r.host { td data-label="Host" { (host) } }
            td.status data-label="Status" title=[r.last_error.as_deref()] { (status_badge(r.status)) }
            td data-label="Version" { (r.version) }
            td.num data-label="Port" { (r.port) }
            td data-label="URL" {
                @if let Some(url) = &r.url { a href=(url) rel="noopener" target="_blank" { (url) } } @else { "—" }
            }
            td.num data-label="Uptime" { (stats.map(|s| human_duration(s.uptime)).unwrap_or_else(|| "—".into())) }
            td.num data-label="Restarts" { (r.restarts) }
            td data-label="Last check" { (when(r.last_check, now)) }
            td.num data-label="CPU" {
                (stats.and_then(|s| s.cpu_percent).map(|c| format!("{c:.0}%")).unwrap_or_else(|| "—".into()))
            }
            td.num data-label="Memory" { (stats.map(|s| human_bytes(s.rss_bytes)).unwrap_or_else(|| "—".into())) }
        }
    }
}

fn create_form(p: &FleetPage<'_>) -> Markup {
    let validate = post("/ui/create/validate", p.csrf);
    let submit = post("/ui/instances", p.csrf);
    html! {
        details.panel #create open[p.shown.total == 0] {
            summary { "Create an instance" }
            form #create-form data-on-submit=(submit) "data-on-input__debounce.300ms"=(validate)
                data-indicator="_creating" novalidate {
                div.grid {
                    div.field {
                        label for="create-name" { "Name" }
                        input #create-name data-bind="create.name" required autocomplete="off"
                            aria-describedby="create-error-name" placeholder="shop";
                        span.err #create-error-name role="alert" {}
                    }
                    div.field {
                        label for="create-version" { "Version" }
                        select #create-version data-bind="create.version" {
                            @for v in p.versions {
                                option value=(v) selected[Some(v.as_str()) == p.latest] {
                                    (v) @if Some(v.as_str()) == p.latest { " (latest)" }
                                }
                            }
                        }
                        @if let Some(e) = p.versions_error { span.err { (e) } }
                    }
                    div.field {
                        label for="create-port" { "Port (optional)" }
                        input #create-port data-bind="create.port" inputmode="numeric" autocomplete="off"
                            aria-describedby="create-error-port" placeholder="next free";
                        span.err #create-error-port role="alert" {}
                    }
                    div.field {
                        label for="create-domain" { "Domain (optional)" }
                        input #create-domain data-bind="create.domain" autocomplete="off"
                            aria-describedby="create-error-domain" placeholder="shop.example.com";
                        span.err #create-error-domain role="alert" {}
                    }
                    div.field {
                        label for="create-email" { "Superuser e-mail (optional)" }
                        input #create-email type="email" data-bind="create.email" autocomplete="off"
                            aria-describedby="create-error-email" placeholder="admin@example.com";
                        span.err #create-error-email role="alert" {}
                    }
                }
                p.note { "A superuser gets a generated password, shown once when the instance is up." }
                div.actions {
                    button #create-submit.primary type="submit" data-attr-disabled="$_creating" { "Create" }
                }
                (create_error(None))
                (create_progress("", false))
            }
        }
    }
}

/// The inline validation messages, one element per field.
pub fn create_field_errors(e: &FieldErrors) -> Markup {
    let one = |id: &str, msg: &Option<String>| {
        html! { span.err id=(id) role="alert" { @if let Some(m) = msg { (m) } } }
    };
    html! {
        (one("create-error-name", &e.name))
        (one("create-error-port", &e.port))
        (one("create-error-domain", &e.domain))
        (one("create-error-email", &e.email))
    }
}

/// The create form's general error (`#create-error`).
pub fn create_error(message: Option<&str>) -> Markup {
    html! { p #create-error.msg.bad role="alert" { @if let Some(m) = message { (m) } } }
}

/// The create form's progress line (`#create-progress`).
pub fn create_progress(text: &str, done: bool) -> Markup {
    html! { p #create-progress.msg.ok[done] role="status" aria-live="polite" { (text) } }
}

/// The message after a successful create, with the superuser's password
/// (shown this once).
pub fn create_done(name: &str, url: Option<&str>, superuser: Option<(&str, &str)>) -> Markup {
    html! {
        div #create-progress.msg.ok role="status" aria-live="polite" {
            "Created " a href={"/ui/instances/" (name)} { (name) } " and it is running"
            @if let Some(u) = url { " at " a href=(u) target="_blank" rel="noopener" { (u) } }
            "."
            @if let Some((email, password)) = superuser {
                " Superuser " strong { (email) } ", password "
                span.secret { (password) }
                " — copy it now, it is not shown again."
            }
        }
    }
}

/// What the instance page needs.
pub struct InstancePage<'a> {
    pub csrf: &'a str,
    pub summary: &'a InstanceSummary,
    pub wiring: &'a Wiring,
    pub versions: &'a [String],
    pub health: &'a [HealthSample],
    pub audit: &'a [AuditEntry],
    pub log: &'a [String],
    pub archive_dir: &'a str,
    pub backups: &'a [crate::store::BackupRecord],
    pub deploys: &'a DeploysView,
}

/// An instance's deploys as its page shows them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeploysView {
    /// Repository, branch and directory, if it is deployed from git.
    pub source: Option<(String, String, Option<String>)>,
    /// Newest first (the last few).
    pub deploys: Vec<crate::store::DeployRecord>,
    /// The release that runs.
    pub current: Option<String>,
    /// The newest deploy's log (its last lines).
    pub log: Vec<String>,
}

/// The facts at the top of an instance page (`#instance-summary`).
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceSummary {
    pub row: FleetRow,
    pub urls: Vec<String>,
    pub domains: Vec<String>,
    pub pid: Option<u32>,
    pub dir: String,
    pub created_at: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

/// One instance: facts, actions, log tail, health, audit.
pub fn instance_page(p: &InstancePage<'_>) -> Markup {
    let name = p.summary.row.name.as_str();
    let base = format!("/ui/instances/{name}");
    let current = p.summary.row.version.as_str();
    let target = upgrade_target(p.versions, current);
    let signals = serde_json::json!({
        "upgrade": {"version": target},
        "confirm": "",
    });
    layout(
        name,
        Some((Nav::Instance, p.csrf)),
        html! {
            main #main data-signals=(signals.to_string()) data-on-load=(stream(&format!("{base}/stream"))) {
                p { a href="/ui/" { "← Fleet" } }
                (instance_summary(p.summary))
                section.panel aria-labelledby="wiring-h" {
                    h2 #wiring-h { "Routing and runtime" }
                    (instance_wiring(p.wiring))
                }
                section.panel aria-labelledby="actions-h" {
                    h2 #actions-h { "Actions" }
                    (lifecycle_actions(name, p.summary.row.status, p.csrf))
                    (upgrade_form(&base, p.versions, &target, current, p.csrf, html! {}))
                    (delete_form(name, &base, p.csrf, Some("delete-help")))
                    p #delete-help.note {
                        "Deleting stops the instance and removes it. Its data (pb_data, hooks, migrations, public files) is archived first, as a .tar.gz in "
                        code { (p.archive_dir) } "."
                    }
                    (action_result("", true))
                }
                div.two {
                    section.panel aria-labelledby="log-h" {
                        h2 #log-h { "Log" }
                        (log_box(p.log))
                    }
                    section.panel aria-labelledby="health-h" {
                        h2 #health-h { "Health" }
                        (health(p.health))
                    }
                }
                section.panel aria-labelledby="backups-h" {
                    h2 #backups-h { "Backups" }
                    div.actions {
                        button #action-backup type="button" data-indicator="_backingup" data-attr-disabled="$_backingup"
                            data-on-click=(post(&format!("{base}/backup"), p.csrf)) { "Back up now" }
                    }
                    p.note {
                        "A consistent copy of the databases, files, hooks and settings, made without stopping the instance. "
                        "Restore one with " code { "pockestrator backup restore " (name) " ID" } "."
                    }
                    (backups_table(p.backups))
                }
                section.panel aria-labelledby="deploys-h" {
                    h2 #deploys-h { "Deploys" }
                    (deploys_panel(name, p.deploys))
                }
                section.panel aria-labelledby="audit-h" {
                    h2 #audit-h { "Audit log" }
                    (audit_table("instance-audit", p.audit, false))
                }
            }
        },
    )
}

/// The version an upgrade offers first: the newest that is not `current`.
fn upgrade_target(versions: &[String], current: &str) -> String {
    versions
        .iter()
        .find(|v| v.as_str() != current)
        .or(versions.first())
        .cloned()
        .unwrap_or_default()
}

/// Links to each of `urls`, comma-separated; a dash for none.
fn url_links(urls: &[String]) -> Markup {
    html! {
        @for (i, u) in urls.iter().enumerate() {
            @if i > 0 { ", " }
            a href=(u) target="_blank" rel="noopener" { (u) }
        }
        @if urls.is_empty() { "—" }
    }
}

/// The version picker and the Upgrade button (and `more` buttons beside).
fn upgrade_form(
    base: &str,
    versions: &[String],
    target: &str,
    current: &str,
    csrf: &str,
    more: Markup,
) -> Markup {
    html! {
        div.actions style="margin-top:.75rem" {
            div.field {
                label for="upgrade-version" { "Upgrade to" }
                select #upgrade-version data-bind="upgrade.version" {
                    @for v in versions {
                        option value=(v) selected[v == target] {
                            (v) @if v == current { " (current)" }
                        }
                    }
                }
            }
            button #action-upgrade type="button" data-indicator="_upgrading" data-attr-disabled="$_upgrading"
                data-on-click=(post(&format!("{base}/upgrade"), csrf)) { "Upgrade" }
            (more)
        }
    }
}

/// The name to type and the Delete button; `help`: the id of the text
/// that says what a delete does.
fn delete_form(name: &str, base: &str, csrf: &str, help: Option<&str>) -> Markup {
    html! {
        div.actions style="margin-top:.75rem" {
            div.field {
                label for="delete-confirm" { "Type " strong { (name) } " to delete" }
                input #delete-confirm data-bind="confirm" autocomplete="off"
                    aria-describedby=[help];
            }
            button #action-delete.danger type="button" data-indicator="_deleting" data-attr-disabled="$_deleting"
                data-on-click=(post(&format!("{base}/delete"), csrf)) { "Delete" }
        }
    }
}

/// The page of an instance another host of the cluster runs: what that
/// host's API says of it, and the buttons, which act through that host.
/// The log, health, backups, deploys and audit log are that host's to
/// show.
pub fn remote_instance_page(
    csrf: &str,
    host: &str,
    i: &crate::api::dto::InstanceDto,
    versions: &[String],
) -> Markup {
    let name = i.name.as_str();
    let base = format!("/ui/instances/{name}");
    let target = upgrade_target(versions, &i.version);
    let signals = serde_json::json!({ "upgrade": {"version": target}, "confirm": "" });
    layout(
        name,
        Some((Nav::Instance, csrf)),
        html! {
            main #main data-signals=(signals.to_string()) {
                p { a href="/ui/" { "← Fleet" } }
                section #instance-summary.panel {
                    h1 { (name) " " span #instance-status data-status=(i.status.as_str()) { (status_badge(i.status)) } }
                    dl.facts {
                        dt { "Host" } dd #instance-host { (host) }
                        dt { "Version" } dd #instance-version { (i.version) }
                        dt { "Port" } dd { (i.port) }
                        dt { "URLs" } dd { (url_links(&i.urls)) }
                        dt { "Restarts" } dd { (i.restarts) }
                        @if let Some(e) = &i.last_error { dt { "Last error" } dd.err { (e) } }
                        dt { "Created" } dd { (i.created_at.format("%Y-%m-%d %H:%M UTC")) }
                    }
                    p.note {
                        "It runs on host " strong { (host) } ": its log, health, backups, deploys and audit log are on that host's dashboard. "
                        "The buttons below act through it. Reload the page to see its new state."
                    }
                }
                section.panel aria-labelledby="actions-h" {
                    h2 #actions-h { "Actions" }
                    (lifecycle_actions(name, i.status, csrf))
                    (upgrade_form(&base, versions, &target, &i.version, csrf, html! {
                        button #action-backup type="button" data-indicator="_backingup" data-attr-disabled="$_backingup"
                            data-on-click=(post(&format!("{base}/backup"), csrf)) { "Back up now" }
                    }))
                    (delete_form(name, &base, csrf, None))
                    (action_result("", true))
                }
            }
        },
    )
}

/// How an instance is reached and run: its route in the router, and with
/// the systemd runtime its unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wiring {
    /// `embedded`, `caddy`, `caddyfile` or `none`.
    pub router: String,
    /// Whether the router holds the route it should (`None`: no router).
    pub route_in_place: Option<bool>,
    /// What differs, in words.
    pub route_problems: Vec<String>,
    /// The systemd unit and how it differs from ours, with that runtime.
    pub unit: Option<(String, Option<String>)>,
}

/// The routing and runtime facts (`#instance-wiring`).
pub fn instance_wiring(w: &Wiring) -> Markup {
    let router = match w.router.as_str() {
        "embedded" => "the embedded proxy",
        "caddy" => "Caddy (admin API)",
        "caddyfile" => "Caddy (Caddyfile)",
        _ => "none: 127.0.0.1 only",
    };
    html! {
        dl.facts #instance-wiring {
            dt { "Router" } dd { (router) }
            @if let Some(ok) = w.route_in_place {
                dt { "Route" }
                dd #route-state data-ok=(ok) {
                    @if ok { span.badge.running { "in place" } }
                    @else {
                        span.badge.failed { "not in place" }
                        @for p in &w.route_problems { " " (p) }
                        " — " code { "pockestrator doctor --repair" } " puts it back."
                    }
                }
            }
            dt { "Runtime" }
            dd {
                @match &w.unit {
                    None => "the embedded supervisor",
                    Some((unit, drift)) => {
                        "systemd, " code { (unit) } " "
                        @match drift {
                            None => span.badge.running { "as written" },
                            Some(d) => {
                                span.badge.failed { "differs" } " " (d)
                                " — " code { "pockestrator doctor --repair" } " writes it back."
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The lifecycle actions a state offers: Start unless it runs, Stop unless
/// it is stopped, Restart while it runs. `(start, stop, restart)`.
pub fn lifecycle_offered(status: Status) -> (bool, bool, bool) {
    match status {
        Status::Running | Status::Unhealthy => (false, true, true),
        Status::Starting => (false, true, false),
        Status::Failed => (true, true, false),
        Status::Stopped => (true, false, false),
        // Start wakes it; Stop keeps it from waking.
        Status::Sleeping => (true, true, false),
    }
}

/// Start, Stop and Restart as the instance's state offers them
/// (`#lifecycle-actions`); re-sent by the page's stream when the state
/// changes. `name` is a validated instance name.
pub fn lifecycle_actions(name: &str, status: Status, csrf: &str) -> Markup {
    let base = format!("/ui/instances/{name}");
    let (start, stop, restart) = lifecycle_offered(status);
    html! {
        div #lifecycle-actions.actions {
            @if start {
                button #action-start type="button" data-indicator="_busy" data-attr-disabled="$_busy"
                    data-on-click=(post(&format!("{base}/start"), csrf)) { "Start" }
            }
            @if stop {
                button #action-stop type="button" data-indicator="_busy2" data-attr-disabled="$_busy2"
                    data-on-click=(post(&format!("{base}/stop"), csrf)) { "Stop" }
            }
            @if restart {
                button #action-restart type="button" data-indicator="_busy3" data-attr-disabled="$_busy3"
                    data-on-click=(post(&format!("{base}/restart"), csrf)) { "Restart" }
            }
        }
    }
}

/// The instance's facts, with its status (`#instance-summary`).
pub fn instance_summary(s: &InstanceSummary) -> Markup {
    let r = &s.row;
    let stats = r.stats.as_ref();
    let admin = s
        .urls
        .first()
        .map(|u| format!("{}/_/", u.trim_end_matches('/')));
    html! {
        section #instance-summary.panel aria-live="polite" {
            h1 { (r.name) " " span #instance-status data-status=(r.status.as_str()) { (status_badge(r.status)) } }
            dl.facts {
                dt { "Version" } dd #instance-version { (r.version) }
                dt { "Port" } dd { (r.port) }
                dt { "URLs" } dd { (url_links(&s.urls)) }
                dt { "Admin UI" } dd {
                    @if let Some(a) = &admin { a #admin-link href=(a) target="_blank" rel="noopener" { (a) } } @else { "—" }
                }
                @if !s.domains.is_empty() {
                    dt { "Custom domains" } dd { (s.domains.join(", ")) }
                }
                dt { "Process" } dd { @if let Some(pid) = s.pid { "pid " (pid) } @else { "not running" } }
                dt { "Uptime" } dd { (stats.map(|s| human_duration(s.uptime)).unwrap_or_else(|| "—".into())) }
                dt { "CPU / memory" } dd {
                    (stats.and_then(|s| s.cpu_percent).map(|c| format!("{c:.1}%")).unwrap_or_else(|| "—".into()))
                    " / "
                    (stats.map(|s| human_bytes(s.rss_bytes)).unwrap_or_else(|| "—".into()))
                }
                dt { "Restarts" } dd { (r.restarts) }
                dt { "Last health check" } dd { (when(r.last_check, s.now)) }
                @if let Some(e) = &r.last_error { dt { "Last error" } dd.err { (e) } }
                dt { "Directory" } dd { code { (s.dir) } }
                dt { "Created" } dd { (s.created_at.format("%Y-%m-%d %H:%M UTC")) }
            }
        }
    }
}

/// An instance's deploys from git and the newest one's build log
/// (`#instance-deploys`), kept live while a deploy runs.
pub fn deploys_panel(name: &str, v: &DeploysView) -> Markup {
    html! {
        div #instance-deploys {
            @match &v.source {
                None => {
                    p.note { "Not deployed from git. Deploy it with " code { "pockestrator deploy " (name) " --repo URL" } "." }
                }
                Some((repo, branch, subdir)) => {
                    p.note {
                        "From " code { (repo) } ", branch " code { (branch) }
                        @if let Some(dir) = subdir { ", directory " code { (dir) } }
                        ". Roll back with " code { "pockestrator rollback " (name) } "."
                    }
                    @if v.deploys.is_empty() {
                        p.note { "No deploys yet." }
                    } @else {
                        table {
                            thead { tr { th { "#" } th { "Kind" } th { "Commit" } th { "Started (UTC)" } th { "Result" } th { "Duration" } th { "Reason" } } }
                            tbody {
                                @for d in &v.deploys {
                                    @let current = d.release.as_ref().map(|r| r.to_string()) == v.current && d.release.is_some();
                                    tr data-status=(d.status.as_str()) {
                                        td data-label="#" { (d.id.0) @if current { " (runs)" } }
                                        td data-label="Kind" { (d.kind.as_str()) }
                                        td data-label="Commit" { code { (d.commit.as_ref().map(|c| c.short().to_string()).unwrap_or_else(|| "-".into())) } }
                                        td data-label="Started (UTC)" { (d.started_at.format("%Y-%m-%d %H:%M:%S").to_string()) }
                                        td data-label="Result" { span class={"badge " (deploy_badge(d.status))} { (d.status.as_str()) } }
                                        td.num data-label="Duration" { (format!("{:.1}s", (d.finished_at.unwrap_or(d.started_at) - d.started_at).num_milliseconds().max(0) as f64 / 1000.0)) }
                                        td data-label="Reason" style="white-space:normal" { (d.reason.clone().unwrap_or_default()) }
                                    }
                                }
                            }
                        }
                        @if let Some(newest) = v.deploys.first() {
                            h3 { "Build log of " (newest.kind.as_str()) " " (newest.id.0) }
                            pre.log #deploy-log { @for line in &v.log { (line) "\n" } }
                        }
                    }
                }
            }
        }
    }
}

fn deploy_badge(status: crate::model::DeployStatus) -> &'static str {
    use crate::model::DeployStatus as S;
    match status {
        S::Succeeded => "running",
        S::Failed => "failed",
        S::Queued | S::Building | S::Switching => "starting",
    }
}

/// An instance's backups, newest first (`#instance-backups`).
pub fn backups_table(backups: &[crate::store::BackupRecord]) -> Markup {
    html! {
        div #instance-backups {
            @if backups.is_empty() {
                p.note { "No backups yet." }
            } @else {
                table {
                    thead { tr { th { "ID" } th { "Made (UTC)" } th { "Size" } th { "Version" } th { "By" } th { "Where" } } }
                    tbody {
                        @for b in backups {
                            tr {
                                td data-label="ID" { code { (b.id.as_str()) } }
                                td data-label="Made (UTC)" { (b.created_at.format("%Y-%m-%d %H:%M:%S").to_string()) }
                                td data-label="Size" { (human_size(b.size)) }
                                td data-label="Version" { (b.version.to_string()) }
                                td data-label="By" { (b.trigger.as_str()) }
                                td data-label="Where" style="white-space:normal" { (b.destination) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Bytes as a person reads them.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The message after an action (`#action-result`).
pub fn action_result(text: &str, ok: bool) -> Markup {
    html! { p #action-result.msg.ok[ok].bad[!ok] role="status" aria-live="polite" { (text) } }
}

/// The log tail (`#log`).
pub fn log_box(lines: &[String]) -> Markup {
    html! {
        div.log role="log" aria-live="off" tabindex="0" aria-label="Log tail, newest last" {
            div #log { @for l in lines { (log_line(l)) } }
        }
    }
}

/// One log line, as appended to `#log`.
pub fn log_line(line: &str) -> Markup {
    html! { span.log-line { (line) } }
}

/// The health history (`#health`): a bar per probe, newest right.
pub fn health(samples: &[HealthSample]) -> Markup {
    let ok = samples.iter().filter(|s| s.healthy).count();
    let latencies: Vec<u32> = samples
        .iter()
        .filter(|s| s.healthy)
        .map(|s| s.latency_ms)
        .collect();
    let median = {
        let mut l = latencies.clone();
        l.sort_unstable();
        l.get(l.len() / 2).copied()
    };
    html! {
        div #health {
            @if samples.is_empty() {
                p.note { "No health checks yet (the daemon probes running instances every few seconds)." }
            } @else {
                div.health role="img" aria-label={(ok) " of " (samples.len()) " recent checks passed"} {
                    @for s in samples {
                        span.bad[!s.healthy] title={(s.at.format("%H:%M:%S")) ": " (if s.healthy { "ok" } else { "failed" }) ", " (s.latency_ms) " ms"} {}
                    }
                }
                p { (ok) " of the last " (samples.len()) " checks passed"
                    @if let Some(m) = median { "; median response " (m) " ms" } "." }
                @if let Some(last) = samples.last() {
                    p.note { "Last check " (last.at.format("%H:%M:%S UTC")) ": " (if last.healthy { "healthy" } else { "failed" }) "." }
                }
            }
        }
    }
}

/// An audit table; `with_instance` adds the instance column.
pub fn audit_table(id: &str, entries: &[AuditEntry], with_instance: bool) -> Markup {
    html! {
        div.table-wrap id=(id) {
            table {
                thead { tr {
                    th { "Time (UTC)" } th { "Actor" } th { "Action" }
                    @if with_instance { th { "Instance" } }
                    th { "Result" } th { "Detail" }
                } }
                tbody {
                    @for e in entries {
                        tr {
                            td { (e.at.format("%Y-%m-%d %H:%M:%S")) }
                            td { (e.actor) }
                            td { (e.action) }
                            @if with_instance {
                                td {
                                    @match e.instance.as_deref() {
                                        // Refused requests record what was asked for: no link for that.
                                        Some(i) if InstanceName::parse(i).is_ok() => a href={"/ui/instances/" (i)} { (i) },
                                        Some(i) => (crate::model::names::shown(i)),
                                        None => "—",
                                    }
                                }
                            }
                            td { span class={"badge " (if e.result.is_ok() { "running" } else { "failed" })} { (e.result.as_str()) } }
                            td style="white-space:normal" { (e.detail) }
                        }
                    }
                    @if entries.is_empty() { tr { td.empty colspan="6" { "Nothing recorded yet." } } }
                }
            }
        }
    }
}

/// The fleet's audit log page.
pub fn audit_page(csrf: &str, entries: &[AuditEntry], older: Option<i64>) -> Markup {
    layout(
        "Audit log",
        Some((Nav::Audit, csrf)),
        html! {
            main #main {
                h1 { "Audit log" }
                p.note { "Every change, by whom, and how it went; newest first. Append-only." }
                (audit_table("audit-table", entries, true))
                @if let Some(before) = older {
                    p { a #audit-older href={"/ui/audit?before=" (before)} { "Older entries →" } }
                }
            }
        },
    )
}

/// A fragment that sends the browser elsewhere (for a stream or action
/// whose page is gone, or a signed-out session).
pub fn go_to(url: &str) -> Markup {
    html! { div #redirect data-on-load=(PreEscaped(format!("window.location.href = '{url}'"))) {} }
}

#[cfg(test)]
mod tests {

    #[test]
    fn deploys_panel_shows_history_the_running_release_and_escapes_reasons() {
        use crate::model::{
            BranchName, CommitId, DeployId, DeployKind, DeployStatus, InstanceName, ReleaseName,
            RepoUrl,
        };
        let at = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .with_timezone(&Utc)
        };
        let commit = CommitId::parse("3f2a9c1d0b7e3f2a9c1d0b7e3f2a9c1d0b7e3f2a").unwrap();
        let d = |id: u32, status: DeployStatus, reason: Option<&str>| crate::store::DeployRecord {
            instance: InstanceName::parse("blog").unwrap(),
            id: DeployId(id),
            kind: DeployKind::Deploy,
            repo: RepoUrl::parse("https://git.example.com/blog.git").unwrap(),
            branch: BranchName::parse("main").unwrap(),
            subdir: None,
            commit: Some(commit.clone()),
            release: Some(ReleaseName::new(DeployId(id), &commit)),
            status,
            reason: reason.map(str::to_string),
            actor: "cli".into(),
            started_at: at("2026-12-01T10:00:00Z"),
            finished_at: Some(at("2026-12-01T10:00:02.5Z")),
        };
        let view = DeploysView {
            source: Some((
                "https://git.example.com/blog.git".into(),
                "main".into(),
                None,
            )),
            deploys: vec![
                d(2, DeployStatus::Failed, Some("`npm run build` exited <1>")),
                d(1, DeployStatus::Succeeded, None),
            ],
            current: Some("1-3f2a9c1d0b7e".into()),
            log: vec!["$ npm ci".into(), "<script>".into()],
        };
        expect_test::expect![[r##"
            <div id="instance-deploys"><p class="note">From <code>https://git.example.com/blog.git</code>, branch <code>main</code>. Roll back with <code>pockestrator rollback blog</code>.</p><table><thead><tr><th>#</th><th>Kind</th><th>Commit</th><th>Started (UTC)</th><th>Result</th><th>Duration</th><th>Reason</th></tr></thead><tbody><tr data-status="failed"><td data-label="#">2</td><td data-label="Kind">deploy</td><td data-label="Commit"><code>3f2a9c1d0b7e</code></td><td data-label="Started (UTC)">2026-12-01 10:00:00</td><td data-label="Result"><span class="badge failed">failed</span></td><td class="num" data-label="Duration">2.5s</td><td data-label="Reason" style="white-space:normal">`npm run build` exited &lt;1&gt;</td></tr><tr data-status="succeeded"><td data-label="#">1 (runs)</td><td data-label="Kind">deploy</td><td data-label="Commit"><code>3f2a9c1d0b7e</code></td><td data-label="Started (UTC)">2026-12-01 10:00:00</td><td data-label="Result"><span class="badge running">succeeded</span></td><td class="num" data-label="Duration">2.5s</td><td data-label="Reason" style="white-space:normal"></td></tr></tbody></table><h3>Build log of deploy 2</h3><pre class="log" id="deploy-log">$ npm ci
            &lt;script&gt;
            </pre></div>"##]]
        .assert_eq(&deploys_panel("blog", &view).into_string());
        expect_test::expect![[r#"<div id="instance-deploys"><p class="note">Not deployed from git. Deploy it with <code>pockestrator deploy blog --repo URL</code>.</p></div>"#]]
        .assert_eq(&deploys_panel("blog", &DeploysView::default()).into_string());
    }
    use super::*;
    use crate::procstat::ProcStats;
    use std::time::Duration;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn shop() -> FleetRow {
        FleetRow {
            name: "shop".into(),
            status: Status::Running,
            version: "0.40.6".into(),
            port: 8091,
            url: Some("http://shop.localhost:8080/".into()),
            domain: None,
            restarts: 2,
            last_check: Some(t("2026-11-22T10:00:00Z")),
            last_error: None,
            stats: Some(ProcStats {
                uptime: Duration::from_secs(3725),
                cpu_percent: Some(1.4),
                rss_bytes: 18_350_080,
            }),
            host: None,
        }
    }

    #[test]
    fn a_row_of_a_cluster_names_its_host_after_its_name() {
        let mut row = shop();
        row.host = Some("h2".into());
        let html = fleet_row(&row, t("2026-11-22T10:00:05Z")).into_string();
        let name = html.find(r#"data-label="Name""#).unwrap();
        let host = html.find(r#"<td data-label="Host">h2</td>"#).expect(&html);
        let status = html.find(r#"data-label="Status""#).unwrap();
        assert!(name < host && host < status, "{html}");
    }

    #[test]
    fn another_host_s_instance_page_names_its_host_and_acts_through_it() {
        let dto: crate::api::dto::InstanceDto = serde_json::from_value(serde_json::json!({
            "name": "shop", "version": "0.28.4", "port": 8091, "status": "stopped",
            "desired": "stopped", "url": "http://127.0.0.1:8091", "restarts": 0,
            "created_at": "2026-11-22T10:00:00Z", "updated_at": "2026-11-22T10:00:00Z",
            "last_error": "<script>x</script>",
            "dir": "/srv/shop", "binary": "/bin/pb", "created_by": "api", "domains": [],
            "urls": ["http://shop.localhost:8080/"], "max_body_bytes": 1024, "host": "h2"
        }))
        .unwrap();
        let versions = ["0.40.6".to_string(), "0.28.4".to_string()];
        let html =
            remote_instance_page("c".repeat(64).as_str(), "h2", &dto, &versions).into_string();
        assert!(html.contains(r#"<dd id="instance-host">h2</dd>"#), "{html}");
        assert!(
            html.contains("&lt;script&gt;x&lt;/script&gt;"),
            "escaped: {html}"
        );
        assert!(!html.contains("<script>x"), "{html}");
        // Stopped: Start is offered, Stop is not; every button posts here.
        assert!(html.contains(r#"id="action-start""#) && !html.contains(r#"id="action-stop""#));
        for action in ["start", "upgrade", "backup", "delete"] {
            assert!(
                html.contains(&format!("/ui/instances/shop/{action}")),
                "{action}"
            );
        }
        // The upgrade offers the version it does not run.
        assert!(
            html.contains(r#"<option value="0.40.6" selected>"#),
            "{html}"
        );
    }

    #[test]
    fn fleet_row_snapshot() {
        let html = fleet_row(&shop(), t("2026-11-22T10:00:05Z")).into_string();
        expect_test::expect![[r#"<tr id="row-shop" data-status="running"><td data-label="Name"><a class="instance-link" href="/ui/instances/shop">shop</a></td><td class="status" data-label="Status"><span class="badge running">running</span></td><td data-label="Version">0.40.6</td><td class="num" data-label="Port">8091</td><td data-label="URL"><a href="http://shop.localhost:8080/" rel="noopener" target="_blank">http://shop.localhost:8080/</a></td><td class="num" data-label="Uptime">1h 2m</td><td class="num" data-label="Restarts">2</td><td data-label="Last check">5s ago</td><td class="num" data-label="CPU">1%</td><td class="num" data-label="Memory">17.5 MiB</td></tr>"#]]
            .assert_eq(&html);
    }

    #[test]
    fn stopped_row_and_hostile_error_text_are_escaped() {
        let mut r = shop();
        r.status = Status::Failed;
        r.stats = None;
        r.last_error = Some("<script>alert(1)</script>\"".into());
        let html = fleet_row(&r, t("2026-11-22T10:00:05Z")).into_string();
        assert!(
            html.contains("title=\"&lt;script&gt;alert(1)&lt;/script&gt;&quot;\""),
            "{html}"
        );
        assert!(!html.contains("<script>"));
        assert!(html.contains("data-status=\"failed\""));
        assert!(html.contains("<td class=\"num\" data-label=\"CPU\">—</td>"));
    }

    #[test]
    fn counts_snapshot() {
        let c = Counts {
            total: 3,
            running: 1,
            starting: 0,
            unhealthy: 0,
            failed: 1,
            stopped: 1,
            sleeping: 0,
        };
        expect_test::expect![[r#"<div class="counts" id="counts" role="status" aria-live="polite"><div class="count" data-state="total"><span class="n" id="count-total">3</span><span class="l">total</span></div><div class="count" data-state="running"><span class="n" id="count-running">1</span><span class="l">running</span></div><div class="count" data-state="starting"><span class="n" id="count-starting">0</span><span class="l">starting</span></div><div class="count" data-state="unhealthy"><span class="n" id="count-unhealthy">0</span><span class="l">unhealthy</span></div><div class="count" data-state="failed"><span class="n" id="count-failed">1</span><span class="l">failed</span></div><div class="count" data-state="stopped"><span class="n" id="count-stopped">1</span><span class="l">stopped</span></div><div class="count" data-state="sleeping"><span class="n" id="count-sleeping">0</span><span class="l">sleeping</span></div></div>"#]]
            .assert_eq(&counts(&c).into_string());
    }

    #[test]
    fn lifecycle_buttons_follow_the_state() {
        let offered: String = Status::ALL
            .iter()
            .map(|&status| {
                let html = lifecycle_actions("shop", status, "abc123").into_string();
                let buttons: Vec<&str> = ["start", "stop", "restart"]
                    .into_iter()
                    .filter(|b| html.contains(&format!("id=\"action-{b}\"")))
                    .collect();
                format!("{}: {}\n", status.as_str(), buttons.join(" "))
            })
            .collect();
        expect_test::expect![[r#"
            starting: stop
            running: stop restart
            unhealthy: stop restart
            failed: start stop
            stopped: start
            sleeping: start stop
        "#]]
        .assert_eq(&offered);
        expect_test::expect![[r#"<div class="actions" id="lifecycle-actions"><button id="action-start" type="button" data-indicator="_busy" data-attr-disabled="$_busy" data-on-click="@post('/ui/instances/shop/start', {headers: {'X-CSRF-Token': 'abc123'}})">Start</button></div>"#]]
        .assert_eq(&lifecycle_actions("shop", Status::Stopped, "abc123").into_string());
    }

    #[test]
    fn actions_carry_the_csrf_token() {
        expect_test::expect![[
            r#"@post('/ui/instances/shop/stop', {headers: {'X-CSRF-Token': 'abc123'}})"#
        ]]
        .assert_eq(&post("/ui/instances/shop/stop", "abc123"));
    }

    #[test]
    fn login_page_snapshot() {
        let html = login_page(Some("wrong token <b>")).into_string();
        let main = &html[html.find("<main").unwrap()..];
        expect_test::expect![[r##"<main class="login" id="main"><section class="panel"><h1>Sign in to Pockestrator</h1><form id="login-form" method="post" action="/ui/login"><div class="field"><label for="token">Admin token</label><input id="token" type="password" name="token" autocomplete="current-password" required autofocus aria-describedby="token-help"></div><p class="note" id="token-help">Print it on the server with <code>pockestrator token</code>.</p><p class="err" id="login-error" role="alert">wrong token &lt;b&gt;</p><button class="primary" id="login-submit" type="submit">Sign in</button></form></section></main></body></html>"##]]
            .assert_eq(main);
    }

    #[test]
    fn field_errors_snapshot() {
        let e = FieldErrors {
            name: Some("bad \"name\"".into()),
            ..FieldErrors::default()
        };
        expect_test::expect![[r#"<span class="err" id="create-error-name" role="alert">bad &quot;name&quot;</span><span class="err" id="create-error-port" role="alert"></span><span class="err" id="create-error-domain" role="alert"></span><span class="err" id="create-error-email" role="alert"></span>"#]]
            .assert_eq(&create_field_errors(&e).into_string());
    }

    #[test]
    fn health_summary() {
        let s = |ok: bool, ms: u32| HealthSample {
            at: t("2026-11-22T10:00:00Z"),
            healthy: ok,
            latency_ms: ms,
        };
        let html = health(&[s(true, 2), s(false, 3000), s(true, 4)]).into_string();
        assert!(
            html.contains("2 of the last 3 checks passed; median response 4 ms."),
            "{html}"
        );
        assert!(html.contains("class=\"bad\""));
        assert!(health(&[]).into_string().contains("No health checks yet"));
    }

    #[test]
    fn fleet_more_says_what_is_hidden() {
        let shown = |rows: usize, matching: usize, total: usize| Shown {
            rows: vec![shop(); rows],
            matching,
            total,
        };
        expect_test::expect![[r#"<div class="toolbar" id="fleet-more"><p class="note">Showing 100 of 1000 matching instances (1200 in all). Narrow them with the filter, or </p><button id="fleet-show-more" type="button" data-on-click="$limit = $limit + 100; @post('/ui/fleet/view', {headers: {'X-CSRF-Token': 'abc'}})">Show 100 more</button></div>"#]]
            .assert_eq(&fleet_more(&shown(100, 1000, 1200), "abc").into_string());
        let last = fleet_more(&shown(100, 130, 130), "abc").into_string();
        assert!(last.contains("Show 30 more"), "{last}");
        let filtered = fleet_more(&shown(3, 3, 10), "abc").into_string();
        assert!(
            filtered.contains("3 of 10 instances match the filter."),
            "{filtered}"
        );
        assert!(!filtered.contains("button"));
        expect_test::expect![[r#"<div class="toolbar" id="fleet-more"></div>"#]]
            .assert_eq(&fleet_more(&shown(4, 4, 4), "abc").into_string());
    }

    #[test]
    fn live_updates_send_only_what_changed_each_in_its_own_fragment() {
        let now = t("2026-11-22T10:00:05Z");
        let mut blog = shop();
        blog.name = "blog".into();
        let mut rows = vec![shop(), blog];
        let params = ViewParams::default();
        let mut sent = Sent::default();
        let first = fleet_update(&rows, &params, "abc", &mut sent, now);
        assert_eq!(first.len(), 3, "{first:?}");
        assert!(first[0].starts_with("<div class=\"counts\""));
        assert!(first[1].starts_with("<tbody id=\"fleet-rows\">"));
        assert!(first[2].starts_with("<div class=\"toolbar\" id=\"fleet-more\">"));
        assert!(fleet_update(&rows, &params, "abc", &mut sent, now).is_empty());
        // One instance stops: the counts and that row, nothing else; a
        // fragment of rows holds rows only (no <div> before a <tr>).
        rows[0].status = Status::Stopped;
        rows[0].stats = None;
        let next = fleet_update(&rows, &params, "abc", &mut sent, now);
        assert_eq!(next.len(), 2, "{next:?}");
        assert!(next[0].contains("id=\"count-stopped\">1<"));
        assert!(next[1].starts_with("<tr id=\"row-shop\" data-status=\"stopped\">"));
        assert!(!next[1].contains("row-blog"));
        assert!(!next[1].contains("<div"));
    }

    #[test]
    fn audit_links_only_real_instance_names() {
        let entry = |instance: &str| AuditEntry {
            id: 1,
            at: t("2026-11-22T10:00:00Z"),
            actor: "dashboard@127.0.0.1".into(),
            action: crate::model::AuditAction::Create,
            instance: Some(instance.into()),
            result: crate::model::AuditOutcome::Error,
            detail: "refused".into(),
        };
        let html = audit_table("a", &[entry("shop"), entry("../Bad <b>")], true).into_string();
        assert!(
            html.contains("<a href=\"/ui/instances/shop\">shop</a>"),
            "{html}"
        );
        assert!(!html.contains("/ui/instances/.."), "{html}");
        assert!(html.contains("&lt;b&gt;"), "{html}");
    }

    #[test]
    fn wiring_snapshot() {
        let fine = Wiring {
            router: "embedded".into(),
            route_in_place: Some(true),
            route_problems: vec![],
            unit: None,
        };
        expect_test::expect![[r#"<dl class="facts" id="instance-wiring"><dt>Router</dt><dd>the embedded proxy</dd><dt>Route</dt><dd id="route-state" data-ok="true"><span class="badge running">in place</span></dd><dt>Runtime</dt><dd>the embedded supervisor</dd></dl>"#]]
            .assert_eq(&instance_wiring(&fine).into_string());
        let drifted = Wiring {
            router: "caddy".into(),
            route_in_place: Some(false),
            route_problems: vec!["route shop is missing".into()],
            unit: Some((
                "pockestrator-shop.service".into(),
                Some("ExecStart= changed".into()),
            )),
        };
        expect_test::expect![[r#"<dl class="facts" id="instance-wiring"><dt>Router</dt><dd>Caddy (admin API)</dd><dt>Route</dt><dd id="route-state" data-ok="false"><span class="badge failed">not in place</span> route shop is missing — <code>pockestrator doctor --repair</code> puts it back.</dd><dt>Runtime</dt><dd>systemd, <code>pockestrator-shop.service</code> <span class="badge failed">differs</span> ExecStart= changed — <code>pockestrator doctor --repair</code> writes it back.</dd></dl>"#]]
            .assert_eq(&instance_wiring(&drifted).into_string());
    }
}
