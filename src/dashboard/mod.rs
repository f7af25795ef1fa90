//! The web dashboard, served by the daemon on its TCP listener under
//! `/ui/`: server-rendered HTML ([`views`]) made live with Datastar
//! (`assets/datastar.js`, compiled in). Every page opens one SSE stream fed
//! by the same [`crate::events::EventBus`] the API's event stream reads, so
//! the browser never polls; actions are Datastar POSTs answered with SSE
//! patches.
//!
//! - [`auth`]: sign-in with the admin token, session cookie, CSRF.
//! - [`fleet`]: the fleet table's model, filter/sort and diff (pure).
//! - [`views`]: all the HTML.
//! - [`stats`]: CPU, memory and uptime of running instances from `/proc`,
//!   sampled only while someone is looking.
//! - [`handlers`]: the axum handlers and streams.
//! - `remote`: in a cluster, the other hosts' instances and the buttons
//!   pressed on them, through those hosts' APIs.
//!
//! **Invariant:** every operation goes through the
//! [`crate::manager::Manager`], like the API's, and is recorded in the
//! audit log under the session's actor (`dashboard@<peer>`). An operation
//! runs in its own task: a browser that goes away mid-create does not cut
//! the create short.

mod actions;
pub mod assets;
pub mod auth;
pub mod fleet;
mod handlers;
mod remote;
pub mod stats;
pub mod views;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::watch;

use crate::manager::Manager;
use auth::Session;
use fleet::ViewParams;

/// Open fleet pages: (session id hash, page id) → the page's view.
type PageRegistry = HashMap<(String, String), watch::Sender<ViewParams>>;

/// Shared state of the dashboard's handlers.
#[derive(Clone)]
pub struct Dashboard {
    pub manager: Arc<Manager>,
    pub token: Arc<String>,
    pub stats: stats::StatsHub,
    /// Open fleet pages, by (session, page id): where a filter or sort
    /// change reaches that page's stream.
    pages: Arc<Mutex<PageRegistry>>,
    /// Set when the daemon shuts down: streams end.
    stop: watch::Receiver<bool>,
    /// In a cluster: the other hosts' instances as last asked.
    remote: remote::RemoteCache,
}

impl Dashboard {
    pub fn new(
        manager: Arc<Manager>,
        token: Arc<String>,
        stats: stats::StatsHub,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Self {
            manager,
            token,
            stats,
            pages: Arc::default(),
            stop,
            remote: Arc::default(),
        }
    }
}

/// The dashboard's routes. Everything under `/ui/` but the sign-in page
/// and the static assets needs a session.
pub fn router(dash: Dashboard) -> Router {
    let protected = Router::new()
        .route("/ui/", get(handlers::fleet_page))
        .route("/ui/fleet/stream", get(handlers::fleet_stream))
        .route("/ui/fleet/view", post(handlers::fleet_view))
        .route("/ui/create/validate", post(handlers::validate_create))
        .route("/ui/instances", post(handlers::create))
        .route("/ui/instances/{name}", get(handlers::instance_page))
        .route(
            "/ui/instances/{name}/stream",
            get(handlers::instance_stream),
        )
        .route(
            "/ui/instances/{name}/{action}",
            post(handlers::instance_action),
        )
        .route("/ui/audit", get(handlers::audit_page))
        .route("/ui/logout", post(handlers::logout))
        .layer(middleware::from_fn_with_state(
            dash.clone(),
            require_session,
        ));
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/login", get(handlers::login_page).post(handlers::login))
        .route("/ui/assets/datastar.js", get(assets::datastar_js))
        .route("/ui/assets/app.css", get(assets::app_css))
        .merge(protected)
        .layer(middleware::from_fn(security_headers))
        .with_state(dash)
}

/// Whether the request comes from Datastar (it expects SSE back).
fn is_datastar(req: &Request) -> bool {
    req.headers().contains_key("datastar-request")
}

/// Sessions and CSRF: a page without a session goes to the sign-in page;
/// a Datastar request without one gets 401 and a patch that does the same;
/// a state-changing request needs the CSRF token and a same-host origin.
async fn require_session(State(dash): State<Dashboard>, req: Request, next: Next) -> Response {
    let now = chrono::Utc::now();
    let session = auth::session_id(req.headers()).and_then(|id| {
        let hash = auth::hash_id(&id);
        match dash.manager.session(&hash, now) {
            Ok(Some(rec)) if auth::session_valid(&rec, &dash.token, now) => Some(Session {
                id_hash: rec.id_hash,
                csrf: rec.csrf,
                actor: rec.actor,
            }),
            Ok(_) => None,
            Err(e) => {
                tracing::error!(error = %e, "dashboard: cannot read sessions");
                None
            }
        }
    });
    let Some(session) = session else {
        if is_datastar(&req) {
            return handlers::sse_refusal(
                StatusCode::UNAUTHORIZED,
                "Your session has ended: sign in again.",
                Some("/ui/login"),
            );
        }
        if req.method() == Method::GET || req.method() == Method::HEAD {
            return Redirect::to("/ui/login").into_response();
        }
        return (
            StatusCode::UNAUTHORIZED,
            "not signed in: sign in at /ui/login first",
        )
            .into_response();
    };
    if auth::needs_csrf(req.method()) {
        let form_post = req.uri().path() == "/ui/logout";
        let csrf_ok = form_post || auth::csrf_ok(req.headers(), &session);
        if !auth::origin_ok(req.headers()) || !csrf_ok {
            let message = "refused: the request did not carry this page's CSRF token (reload the page and try again)";
            if is_datastar(&req) {
                return handlers::sse_refusal(StatusCode::FORBIDDEN, message, None);
            }
            return (StatusCode::FORBIDDEN, message).into_response();
        }
    }
    let mut req = req;
    req.extensions_mut().insert(session);
    next.run(req).await
}

/// Headers on every dashboard answer: no framing, no sniffing, scripts only
/// from here (Datastar evaluates its attribute expressions, hence
/// `unsafe-eval`), nothing cached but the hashed assets.
async fn security_headers(req: Request, next: Next) -> Response {
    let is_asset = req.uri().path().starts_with("/ui/assets/");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
             base-uri 'none'",
        ),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("same-origin"),
    );
    if !is_asset && !h.contains_key(header::CACHE_CONTROL) {
        h.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
    }
    resp
}
