//! The dashboard's axum handlers: pages, the live streams, and the actions.
//! Streams are tasks that write Datastar events into a channel; the
//! response reads the channel, so a closed browser ends the task at its
//! next write (or at once, through `closed()`).

use crate::model::AuditAction;
use std::collections::{BTreeSet, VecDeque};
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Extension;
use chrono::Utc;
use datastar::prelude::{
    DatastarEvent, FragmentMergeMode, MergeFragments, MergeSignals, ReadSignals, Sse,
};
use futures::StreamExt;
use maud::Markup;
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc, watch};

use super::actions::InstanceAction;
use super::auth::{self, Session};
use super::fleet::{Counts, FleetRow, Sent, ViewParams};
use super::views::{self, FleetPage, InstancePage, InstanceSummary};
use super::Dashboard;
use crate::events::Event;
use crate::lines::LineCodec;
use crate::manager::{Actor, BinaryChoice, CreateFields, CreateRequest};
use crate::model::version::VersionRequest;
use crate::model::InstanceName;

/// How many log lines a page starts with, and keeps.
const LOG_LINES: usize = 200;
/// A runaway log line without a newline is shown in pieces of about this
/// many bytes, not held.
const LOG_LINE_HELD: usize = 16 * 1024;

fn patch(markup: Markup) -> DatastarEvent {
    MergeFragments::new(markup.into_string()).into_event()
}

fn patch_html(html: String) -> DatastarEvent {
    MergeFragments::new(html).into_event()
}

fn sse(events: Vec<DatastarEvent>) -> Response {
    Sse(futures::stream::iter(events)).into_response()
}

/// A refused Datastar request: the status says so, and the body (SSE, so
/// the page shows it) puts the message in the page's `#flash` and, when
/// asked, sends the browser on.
pub fn sse_refusal(status: StatusCode, message: &str, go_to: Option<&str>) -> Response {
    let mut events = vec![patch(views::flash(message))];
    if let Some(url) = go_to {
        events.push(
            MergeFragments::new(views::go_to(url).into_string())
                .selector("body")
                .merge_mode(FragmentMergeMode::Append)
                .into_event(),
        );
    }
    let mut resp = sse(events);
    *resp.status_mut() = status;
    resp
}

/// A stream: `run` writes events into the sender until it returns or the
/// browser goes away.
fn stream<F, Fut>(run: F) -> Response
where
    F: FnOnce(mpsc::Sender<DatastarEvent>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<DatastarEvent>(32);
    tokio::spawn(run(tx));
    let body = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, Infallible>);
    let mut resp = datastar::prelude::TrySse(body).into_response();
    resp.headers_mut()
        .insert("x-accel-buffering", header::HeaderValue::from_static("no"));
    resp
}

impl Dashboard {
    /// Every instance as a fleet row, with its statistics; in a cluster,
    /// every host's, and the hosts whose instances could not be listed.
    async fn rows(&self) -> Result<(Vec<FleetRow>, Vec<(String, String)>), String> {
        let stats = self.stats.current();
        let records = self.manager.list().map_err(|e| e.to_string())?;
        let host = self.manager.host_name().map(|h| h.to_string());
        let mut rows: Vec<FleetRow> = records
            .iter()
            .map(|r| {
                let url = self.manager.urls(r, &[]).into_iter().next();
                let mut row = FleetRow::new(r, url, stats.get(r.name.as_str()).cloned());
                row.host = host.clone();
                row
            })
            .collect();
        let (theirs, missing) = super::remote::other_hosts_rows(&self.manager, &self.remote).await;
        rows.extend(theirs);
        Ok((rows, missing))
    }

    /// The versions to offer (available and installed, newest first), the
    /// one to preselect, and why the release list is missing, if it is.
    async fn versions(&self) -> (Vec<String>, Option<String>, Option<String>) {
        let releases = self.manager.releases();
        let installed: Vec<semver::Version> = releases
            .installed()
            .map(|list| list.into_iter().map(|i| i.version).collect())
            .unwrap_or_default();
        let (available, error) =
            match tokio::time::timeout(Duration::from_secs(10), releases.available()).await {
                Ok(Ok(list)) => (list, None),
                Ok(Err(e)) => (Vec::new(), Some(format!("Release list unavailable: {e}"))),
                Err(_) => (
                    Vec::new(),
                    Some(
                        "Release list unavailable: the release sources did not answer in 10 s"
                            .to_string(),
                    ),
                ),
            };
        let latest = crate::model::version::newest_stable(&available)
            .or_else(|| crate::model::version::newest_stable(&installed));
        let all: BTreeSet<semver::Version> = available.into_iter().chain(installed).collect();
        let versions = all.iter().rev().map(|v| v.to_string()).collect();
        (versions, latest.map(|v| v.to_string()), error)
    }

    fn summary(&self, name: &str) -> Option<InstanceSummary> {
        let rec = self.manager.get(name).ok()?;
        let domains = self.manager.domains(name).unwrap_or_default();
        let urls = self.manager.urls(&rec, &domains);
        let stats = self.stats.current();
        Some(InstanceSummary {
            row: FleetRow::new(&rec, urls.first().cloned(), stats.get(name).cloned()),
            urls,
            domains,
            pid: rec.pid,
            dir: rec.dir.display().to_string(),
            created_at: rec.created_at,
            now: Utc::now(),
        })
    }

    /// The instance's route and unit, as the instance page shows them.
    async fn wiring(&self, name: &str) -> Option<views::Wiring> {
        let rec = self.manager.get(name).ok()?;
        let router = self.manager.router_kind().to_string();
        let (route_in_place, route_problems) = if router == "none" {
            (None, Vec::new())
        } else {
            match self.manager.route_status(&rec).await {
                Ok((ok, drifts)) => (Some(ok), drifts.into_iter().map(|d| d.detail).collect()),
                Err(e) => (Some(false), vec![e.to_string()]),
            }
        };
        Some(views::Wiring {
            router,
            route_in_place,
            route_problems,
            unit: self.manager.unit_status(&rec),
        })
    }

    fn audit_of(&self, name: &str) -> Vec<crate::store::AuditEntry> {
        self.manager
            .audit_log(Some(name), 50, None)
            .unwrap_or_default()
    }
}

// ----- sign-in -------------------------------------------------------------

pub async fn login_page(State(d): State<Dashboard>, headers: HeaderMap) -> Response {
    let now = Utc::now();
    let signed_in = auth::session_id(&headers).is_some_and(|id| {
        matches!(d.manager.session(&auth::hash_id(&id), now),
            Ok(Some(rec)) if auth::session_valid(&rec, &d.token, now))
    });
    if signed_in {
        return Redirect::to("/ui/").into_response();
    }
    Html(views::login_page(None).into_string()).into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
}

pub async fn login(
    State(d): State<Dashboard>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if !auth::origin_ok(&headers) {
        return (StatusCode::FORBIDDEN, "refused: cross-site sign-in").into_response();
    }
    let actor = Actor(format!("dashboard@{}", peer.ip()));
    let presented = form.token.trim();
    if !crate::api::constant_time_eq(presented.as_bytes(), d.token.as_bytes()) {
        d.manager.audit(
            &actor,
            AuditAction::SignIn,
            None,
            Err("wrong admin token".to_string()),
        );
        // Slow down guessing (the token has 256 bits; this is manners).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let message = if presented.is_empty() {
            "Enter the admin token."
        } else {
            "That is not the admin token."
        };
        return (
            StatusCode::UNAUTHORIZED,
            Html(views::login_page(Some(message)).into_string()),
        )
            .into_response();
    }
    let (id, record) = auth::new_session(&d.token, &peer.ip().to_string(), Utc::now());
    if let Err(e) = d.manager.open_session(&record) {
        tracing::error!(error = %e, "dashboard: cannot record a session");
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Html(
                views::login_page(Some(
                    "The daemon could not record the session: see its log.",
                ))
                .into_string(),
            ),
        )
            .into_response();
    }
    d.manager.audit(
        &actor,
        AuditAction::SignIn,
        None,
        Ok("dashboard session opened".to_string()),
    );
    let secure = auth::is_https(
        &headers,
        Some(peer.ip()),
        &d.manager.config().routing.trusted_proxies,
    );
    (
        [(
            header::SET_COOKIE,
            auth::header_value(&auth::session_cookie(&id, secure)),
        )],
        Redirect::to("/ui/"),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(
    State(d): State<Dashboard>,
    Extension(session): Extension<Session>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Response {
    if !crate::api::constant_time_eq(form.csrf.as_bytes(), session.csrf.as_bytes()) {
        return (
            StatusCode::FORBIDDEN,
            "refused: the sign-out form did not carry this page's CSRF token",
        )
            .into_response();
    }
    if let Err(e) = d.manager.close_session(&session.id_hash) {
        tracing::error!(error = %e, "dashboard: cannot end a session");
    }
    d.manager.audit(
        &Actor(session.actor.clone()),
        AuditAction::SignOut,
        None,
        Ok("dashboard session closed".to_string()),
    );
    let secure = auth::is_https(
        &headers,
        Some(peer.ip()),
        &d.manager.config().routing.trusted_proxies,
    );
    (
        [(
            header::SET_COOKIE,
            auth::header_value(&auth::clear_cookie(secure)),
        )],
        Redirect::to("/ui/login"),
    )
        .into_response()
}

// ----- the fleet -----------------------------------------------------------

pub async fn fleet_page(State(d): State<Dashboard>, Extension(s): Extension<Session>) -> Response {
    let (rows, missing) = match d.rows().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    };
    let now = Utc::now();
    let shown = ViewParams::default().window(&rows);
    let counts = Counts::of(&rows);
    let (versions, latest, versions_error) = d.versions().await;
    let page_id = hex::encode(rand::random::<[u8; 8]>());
    Html(
        views::fleet_page(&FleetPage {
            csrf: &s.csrf,
            page_id: &page_id,
            counts: &counts,
            shown: &shown,
            versions: &versions,
            latest: latest.as_deref(),
            versions_error: versions_error.as_deref(),
            now,
            clustered: d.manager.host_name().is_some(),
            missing: &missing,
        })
        .into_string(),
    )
    .into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct FleetSignals {
    page: String,
    filter: String,
    sort: String,
    limit: usize,
}

/// What changed in the fleet since `sent`, as events (see
/// [`views::fleet_update`]).
async fn fleet_update(
    d: &Dashboard,
    params: &ViewParams,
    csrf: &str,
    sent: &mut Sent,
) -> Vec<DatastarEvent> {
    match d.rows().await {
        Ok((rows, _)) => views::fleet_update(&rows, params, csrf, sent, Utc::now())
            .into_iter()
            .map(patch_html)
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "dashboard: cannot list instances");
            Vec::new()
        }
    }
}

/// Removes a page from the registry when its stream ends.
struct PageGuard {
    d: Dashboard,
    key: (String, String),
}

impl Drop for PageGuard {
    fn drop(&mut self) {
        self.d
            .pages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

pub async fn fleet_stream(
    State(d): State<Dashboard>,
    Extension(s): Extension<Session>,
    signals: Option<ReadSignals<FleetSignals>>,
) -> Response {
    let signals = signals.map(|s| s.0).unwrap_or_default();
    let (params_tx, mut params_rx) = watch::channel(ViewParams::new(
        &signals.filter,
        &signals.sort,
        signals.limit,
    ));
    let key = (s.id_hash.clone(), signals.page.clone());
    d.pages
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key.clone(), params_tx);
    let mut events = d.manager.events().subscribe();
    let mut stats = d.stats.subscribe();
    let mut stop = d.stop.clone();
    stream(move |tx| async move {
        let _guard = PageGuard { d: d.clone(), key };
        let mut sent = Sent::default();
        let mut params = params_rx.borrow_and_update().clone();
        // In a cluster, the other hosts' changes raise no event here: their
        // rows are looked at again every so often.
        let clustered = d.manager.host_name().is_some();
        let mut remote_tick = tokio::time::interval(super::remote::REFRESH);
        remote_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            for ev in fleet_update(&d, &params, &s.csrf, &mut sent).await {
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
            // Wait for something that can change the table; audit lines
            // and download progress cannot, and cost no render.
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = crate::shutdown::stopped(&mut stop) => return,
                    changed = params_rx.changed() => {
                        if changed.is_err() { return; }
                        params = params_rx.borrow_and_update().clone();
                        break;
                    }
                    r = stats.changed() => { if r.is_err() { return; } break; }
                    _ = remote_tick.tick(), if clustered => break,
                    r = events.recv() => match r {
                        Ok(Event::InstanceState { .. } | Event::InstanceRemoved { .. }) => break,
                        Ok(_) => continue,
                        Err(broadcast::error::RecvError::Lagged(_)) => { sent.reset(); break; }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                }
            }
            // Let a burst (a fleet starting up) settle into one update.
            tokio::time::sleep(Duration::from_millis(100)).await;
            loop {
                match events.try_recv() {
                    Ok(_) => {}
                    Err(broadcast::error::TryRecvError::Lagged(_)) => sent.reset(),
                    Err(_) => break,
                }
            }
        }
    })
}

pub async fn fleet_view(
    State(d): State<Dashboard>,
    Extension(s): Extension<Session>,
    signals: Option<ReadSignals<FleetSignals>>,
) -> Response {
    let signals = signals.map(|s| s.0).unwrap_or_default();
    let key = (s.id_hash.clone(), signals.page.clone());
    if let Some(tx) = d.pages.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        tx.send_replace(ViewParams::new(
            &signals.filter,
            &signals.sort,
            signals.limit,
        ));
    }
    sse(Vec::new())
}

// ----- create ----------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CreateForm {
    name: String,
    version: String,
    port: String,
    domain: String,
    email: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CreateSignals {
    create: CreateForm,
}

impl CreateForm {
    fn fields(&self) -> CreateFields<'_> {
        CreateFields {
            name: self.name.trim(),
            port: &self.port,
            domain: &self.domain,
            email: &self.email,
        }
    }
}

pub async fn validate_create(
    State(d): State<Dashboard>,
    signals: Option<ReadSignals<CreateSignals>>,
) -> Response {
    let form = signals.map(|s| s.0.create).unwrap_or_default();
    let mut errors = d.manager.check_create_fields(&form.fields());
    // Typing elsewhere first is not an error in an empty name.
    if form.name.trim().is_empty() {
        errors.name = None;
    }
    sse(vec![patch(views::create_field_errors(&errors))])
}

pub async fn create(
    State(d): State<Dashboard>,
    Extension(s): Extension<Session>,
    signals: Option<ReadSignals<CreateSignals>>,
) -> Response {
    let form = signals.map(|s| s.0.create).unwrap_or_default();
    let errors = d.manager.check_create_fields(&form.fields());
    if !errors.is_empty() {
        return sse(vec![
            patch(views::create_field_errors(&errors)),
            patch(views::create_error(Some(
                "Fix the marked fields, then create again.",
            ))),
            patch(views::create_progress("", false)),
        ]);
    }
    let version = match form.version.trim() {
        "" => VersionRequest::Latest,
        v => match VersionRequest::parse(v) {
            Ok(v) => v,
            Err(e) => return sse(vec![patch(views::create_error(Some(&e.to_string())))]),
        },
    };
    let port = match form.port.trim() {
        "" => None,
        p => p.parse::<u32>().ok(),
    };
    let non_empty = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
    let req = CreateRequest {
        name: form.name.trim().to_string(),
        binary: BinaryChoice::Release(version),
        port,
        domain: non_empty(&form.domain),
        superuser_email: non_empty(&form.email),
        superuser_password: None,
        max_body_bytes: None,
        memory_max: None,
        cpu_quota: None,
        idle_timeout_secs: None,
        wake_schedule: None,
        fleet: None,
        tags: Vec::new(),
    };
    let name = req.name.clone();
    let actor = Actor(s.actor.clone());
    let mut events = d.manager.events().subscribe();
    let manager = d.manager.clone();
    // The create runs on its own: a closed browser does not cut it short.
    let mut job = tokio::spawn(async move { manager.create(req, &actor).await });
    stream(move |tx| async move {
        let send = |ev: DatastarEvent| {
            let tx = tx.clone();
            async move { tx.send(ev).await.is_ok() }
        };
        send(patch(views::create_field_errors(&Default::default()))).await;
        send(patch(views::create_error(None))).await;
        send(patch(views::create_progress("Preparing…", false))).await;
        let outcome = loop {
            tokio::select! {
                done = &mut job => break done,
                ev = events.recv() => {
                    let text = match ev {
                        Ok(Event::Download { progress }) if !progress.done => Some(match progress.total {
                            Some(total) if total > 0 => format!(
                                "Downloading PocketBase {}: {}% of {}",
                                progress.version,
                                progress.downloaded * 100 / total,
                                crate::procstat::human_bytes(total)
                            ),
                            _ => format!(
                                "Downloading PocketBase {}: {}",
                                progress.version,
                                crate::procstat::human_bytes(progress.downloaded)
                            ),
                        }),
                        Ok(Event::InstanceState { name: n, status, .. }) if n == name => {
                            Some(format!("{name} is {status}…", status = status.as_str()))
                        }
                        _ => None,
                    };
                    if let Some(t) = text {
                        if !send(patch(views::create_progress(&t, false))).await {
                            // The browser left; the create goes on.
                            let _ = job.await;
                            return;
                        }
                    }
                }
            }
        };
        match outcome {
            Ok(Ok(created)) => {
                let url = d.manager.urls(&created.instance, &[]).into_iter().next();
                let superuser = created
                    .superuser
                    .as_ref()
                    .map(|(e, p)| (e.as_str(), p.as_str()));
                send(patch(views::create_done(&name, url.as_deref(), superuser))).await;
                send(
                    MergeSignals::new(
                        r#"{"create": {"name": "", "port": "", "domain": "", "email": ""}}"#,
                    )
                    .into_event(),
                )
                .await;
            }
            Ok(Err(e)) => {
                send(patch(views::create_progress("", false))).await;
                send(patch(views::create_error(Some(&e.to_string())))).await;
            }
            Err(e) => {
                send(patch(views::create_progress("", false))).await;
                send(patch(views::create_error(Some(&format!(
                    "the create task failed: {e}"
                )))))
                .await;
            }
        }
    })
}

// ----- one instance ------------------------------------------------------------

fn not_found(name: &str, csrf: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(views::not_found_page(csrf, name).into_string()),
    )
        .into_response()
}

pub async fn instance_page(
    State(d): State<Dashboard>,
    Extension(s): Extension<Session>,
    Path(name): Path<String>,
) -> Response {
    if InstanceName::parse(&name).is_err() {
        return not_found(&name, &s.csrf);
    }
    let Some(summary) = d.summary(&name) else {
        if let Some((host, dto)) = super::remote::instance_elsewhere(&d.manager, &name).await {
            let (versions, _, _) = d.versions().await;
            return Html(
                views::remote_instance_page(&s.csrf, host.as_str(), &dto, &versions).into_string(),
            )
            .into_response();
        }
        return not_found(&name, &s.csrf);
    };
    let Some(wiring) = d.wiring(&name).await else {
        return not_found(&name, &s.csrf);
    };
    let (versions, _, _) = d.versions().await;
    let health = d.manager.health_history(&name);
    let audit = d.audit_of(&name);
    let log = d
        .manager
        .log_tail(&name, LOG_LINES)
        .await
        .unwrap_or_default();
    let archive = d.manager.config().layout().archive();
    let backups = d.manager.backups(&name).await.unwrap_or_default();
    let deploys = deploys_view(&d, &name).await;
    Html(
        views::instance_page(&InstancePage {
            csrf: &s.csrf,
            summary: &summary,
            wiring: &wiring,
            versions: &versions,
            health: &health,
            audit: &audit,
            log: &log,
            archive_dir: &archive.display().to_string(),
            backups: &backups,
            deploys: &deploys,
        })
        .into_string(),
    )
    .into_response()
}

/// What the instance page shows of its deploys.
async fn deploys_view(d: &Dashboard, name: &str) -> views::DeploysView {
    let source = d.manager.deploy_source(name).ok().flatten();
    let Some(source) = source else {
        return views::DeploysView::default();
    };
    let mut deploys = d.manager.deploys(name).unwrap_or_default();
    deploys.truncate(10);
    let log = match deploys.first() {
        Some(newest) => d
            .manager
            .deploy_log_tail(name, &newest.id.to_string(), 40)
            .await
            .unwrap_or_default(),
        None => Vec::new(),
    };
    views::DeploysView {
        source: Some((
            source.repo.to_string(),
            source.branch.to_string(),
            source.subdir.map(|s| s.as_str().to_string()),
        )),
        deploys,
        current: d
            .manager
            .get(name)
            .ok()
            .and_then(|r| r.release)
            .map(|r| r.to_string()),
        log,
    }
}

pub async fn instance_stream(
    State(d): State<Dashboard>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
) -> Response {
    if InstanceName::parse(&name).is_err() || d.manager.get(&name).is_err() {
        return sse_refusal(
            StatusCode::NOT_FOUND,
            "This instance no longer exists.",
            Some("/ui/"),
        );
    }
    let mut events = d.manager.events().subscribe();
    let mut stats = d.stats.subscribe();
    let mut stop = d.stop.clone();
    stream(move |tx| async move {
        // The log's tail, then its new lines as they are appended.
        let (mut kept, mut log): (VecDeque<String>, _) =
            match d.manager.follow_log(&name, LOG_LINES).await {
                Ok(follow) => (
                    follow.tail.into(),
                    crate::lines::lines(
                        follow.appended.map(Ok::<_, std::convert::Infallible>),
                        LineCodec::for_display(LOG_LINE_HELD),
                    )
                    .ready_chunks(LOG_LINES)
                    .boxed(),
                ),
                Err(_) => (VecDeque::new(), futures::stream::pending().boxed()),
            };
        let mut appended = 0usize;
        let mut last_summary = String::new();
        let mut last_actions = String::new();
        let mut last_health = String::new();
        let mut first = true;
        let mut audit_dirty = true;
        // The route and unit are checked again when something happened to
        // this instance (a Caddy route check is a request to Caddy).
        let mut wiring_dirty = true;
        let mut last_wiring = String::new();
        let mut last_deploys = String::new();
        let mut last_newest = None;
        loop {
            let Some(summary) = d.summary(&name) else {
                let _ = tx.send(patch(views::go_to("/ui/"))).await;
                return;
            };
            let mut html = String::new();
            let s = views::instance_summary(&summary).into_string();
            if s != last_summary {
                html.push_str(&s);
                last_summary = s;
            }
            // The buttons follow the state: Start only when it does not run.
            let a =
                views::lifecycle_actions(&name, summary.row.status, &session.csrf).into_string();
            if a != last_actions {
                html.push_str(&a);
                last_actions = a;
            }
            let h = views::health(&d.manager.health_history(&name)).into_string();
            if h != last_health {
                html.push_str(&h);
                last_health = h;
            }
            if audit_dirty {
                html.push_str(
                    &views::audit_table("instance-audit", &d.audit_of(&name), false).into_string(),
                );
                // Backups change only by audited operations.
                let backups = d.manager.backups(&name).await.unwrap_or_default();
                html.push_str(&views::backups_table(&backups).into_string());
                audit_dirty = false;
            }
            if wiring_dirty {
                if let Some(w) = d.wiring(&name).await {
                    let w = views::instance_wiring(&w).into_string();
                    if w != last_wiring {
                        html.push_str(&w);
                        last_wiring = w;
                    }
                }
                wiring_dirty = false;
            }
            // Deploys and the newest build log, as they move: read again
            // only while one runs or when the newest one changed.
            let newest = d.manager.last_deploy(&name);
            let moving = newest.is_some_and(|(_, status)| !status.is_final());
            if first || moving || newest != last_newest {
                last_newest = newest;
                let dv = views::deploys_panel(&name, &deploys_view(&d, &name).await).into_string();
                if dv != last_deploys {
                    if !first {
                        html.push_str(&dv);
                    }
                    last_deploys = dv;
                }
            }
            if first {
                let lines: Vec<String> = kept.iter().cloned().collect();
                html.push_str(&views::log_box(&lines).into_string());
                first = false;
            }
            if !html.is_empty() && tx.send(patch_html(html)).await.is_err() {
                return;
            }
            tokio::select! {
                _ = tx.closed() => return,
                _ = crate::shutdown::stopped(&mut stop) => return,
                r = stats.changed() => { if r.is_err() { return; } }
                r = events.recv() => match r {
                    Ok(Event::InstanceRemoved { name: n }) if n == name => {
                        let _ = tx.send(patch(views::go_to("/ui/"))).await;
                        return;
                    }
                    Ok(Event::Audit { entry }) if entry.instance.as_deref() == Some(name.as_str()) => {
                        audit_dirty = true;
                        wiring_dirty = true;
                    }
                    Ok(Event::InstanceState { name: n, .. }) if n == name => wiring_dirty = true,
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        audit_dirty = true;
                        wiring_dirty = true;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                batch = log.next() => {
                    let Some(batch) = batch else { continue };
                    let lines: Vec<String> = batch.into_iter().flatten().collect();
                    if lines.is_empty() { continue; }
                    for l in &lines {
                        if kept.len() == LOG_LINES { kept.pop_front(); }
                        kept.push_back(l.clone());
                    }
                    appended += lines.len();
                    let event = if appended > 4 * LOG_LINES {
                        // Keep the page's log bounded: send it whole now and then.
                        appended = 0;
                        let all: Vec<String> = kept.iter().cloned().collect();
                        patch(views::log_box(&all))
                    } else {
                        let html: String = lines.iter().map(|l| views::log_line(l).into_string()).collect();
                        MergeFragments::new(html)
                            .selector("#log")
                            .merge_mode(FragmentMergeMode::Append)
                            .into_event()
                    };
                    if tx.send(event).await.is_err() { return; }
                    continue;
                }
            }
        }
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct UpgradeSignal {
    version: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct InstanceSignals {
    upgrade: UpgradeSignal,
    confirm: String,
}

pub async fn instance_action(
    State(d): State<Dashboard>,
    Extension(s): Extension<Session>,
    Path((name, action)): Path<(String, String)>,
    signals: Option<ReadSignals<InstanceSignals>>,
) -> Response {
    let signals = signals.map(|s| s.0).unwrap_or_default();
    let result = |text: &str, ok: bool| sse(vec![patch(views::action_result(text, ok))]);
    if InstanceName::parse(&name).is_err() {
        return result("No such instance.", false);
    }
    let actor = Actor(s.actor.clone());
    let manager = d.manager.clone();
    let Some(action) = InstanceAction::parse(&action) else {
        return (StatusCode::NOT_FOUND, "no such action").into_response();
    };
    let deleting = action == InstanceAction::Delete;
    if deleting && signals.confirm.trim() != name {
        return result(
            &format!("Type the instance's name ({name}) in the box to confirm the delete."),
            false,
        );
    }
    // In a cluster, an instance another host runs: the button goes there.
    let elsewhere = match manager.get(&name) {
        Err(crate::manager::ManagerError::NotFound(_)) => {
            manager.held_elsewhere(&name).await.ok().flatten()
        }
        _ => None,
    };
    // This host's downloads are not the other host's.
    let shows_downloads = elsewhere.is_none();
    let job: tokio::task::JoinHandle<Result<String, String>> = match (elsewhere, action) {
        (Some(host), _) => {
            let upgrade_to = signals.upgrade.version.trim().to_string();
            tokio::spawn(async move {
                super::remote::act_elsewhere(&manager, &host, &name, action, &upgrade_to, &actor)
                    .await
            })
        }
        (None, InstanceAction::Start | InstanceAction::Stop | InstanceAction::Restart) => {
            tokio::spawn(async move {
                let result = match action {
                    InstanceAction::Start => manager.start(&name, &actor).await,
                    InstanceAction::Stop => manager.stop(&name, &actor).await,
                    _ => manager.restart(&name, &actor).await,
                };
                result
                    .map(|_| format!("{name} {}.", action.done()))
                    .map_err(|e| e.to_string())
            })
        }
        (None, InstanceAction::Upgrade) => {
            let to = match VersionRequest::parse(signals.upgrade.version.trim()) {
                Ok(v) => v,
                Err(e) => return result(&e.to_string(), false),
            };
            tokio::spawn(async move {
                manager
                    .upgrade(&name, BinaryChoice::Release(to), &actor)
                    .await
                    .map(|r| format!("{name} now runs PocketBase {}.", r.version))
                    .map_err(|e| e.to_string())
            })
        }
        (None, InstanceAction::Backup) => tokio::spawn(async move {
            manager
                .backup_create(&name, None, &actor)
                .await
                .map(|b| format!("{name} backed up as {} ({} bytes).", b.id, b.size))
                .map_err(|e| e.to_string())
        }),
        (None, InstanceAction::Delete) => tokio::spawn(async move {
            match manager.delete(&name, false, &actor).await {
                Ok(Some(archive)) => Ok(format!(
                    "{name} deleted; its data is archived at {}.",
                    archive.display()
                )),
                Ok(None) => Ok(format!("{name} deleted.")),
                Err(e) => Err(e.to_string()),
            }
        }),
    };
    let mut events = d.manager.events().subscribe();
    let working = action.working();
    stream(move |tx| async move {
        let _ = tx.send(patch(views::action_result(working, true))).await;
        let mut job = job;
        let outcome = loop {
            tokio::select! {
                done = &mut job => break done,
                ev = events.recv() => {
                    if let Ok(Event::Download { progress }) = ev {
                        if shows_downloads && !progress.done {
                            let text = match progress.total {
                                Some(t) if t > 0 => format!("Downloading PocketBase {}: {}%", progress.version, progress.downloaded * 100 / t),
                                _ => format!("Downloading PocketBase {}…", progress.version),
                            };
                            if tx.send(patch(views::action_result(&text, true))).await.is_err() {
                                let _ = job.await;
                                return;
                            }
                        }
                    }
                }
            }
        };
        let (text, ok) = match outcome {
            Ok(Ok(t)) => (t, true),
            Ok(Err(e)) => (e, false),
            Err(e) => (format!("the task failed: {e}"), false),
        };
        let _ = tx.send(patch(views::action_result(&text, ok))).await;
        if deleting && ok {
            let _ = tx.send(go_home()).await;
        }
    })
}

/// Back to the fleet page (after a delete).
fn go_home() -> DatastarEvent {
    MergeFragments::new(views::go_to("/ui/").into_string())
        .selector("body")
        .merge_mode(FragmentMergeMode::Append)
        .into_event()
}

// ----- the audit log -----------------------------------------------------------

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    before: Option<i64>,
}

pub async fn audit_page(
    State(d): State<Dashboard>,
    Extension(s): Extension<Session>,
    Query(q): Query<AuditQuery>,
) -> Response {
    const PAGE: u32 = 100;
    match d.manager.audit_log(None, PAGE, q.before) {
        Ok(entries) => {
            let older = (entries.len() == PAGE as usize)
                .then(|| entries.last().map(|e| e.id))
                .flatten();
            Html(views::audit_page(&s.csrf, &entries, older).into_string()).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
