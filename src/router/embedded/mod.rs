//! The embedded reverse proxy: the default router, served by the daemon
//! itself (`127.0.0.1:8080` unless configured otherwise).
//!
//! A request is routed by its host (`NAME.BASE_DOMAIN` or one of the
//! instance's custom domains) to `127.0.0.1:PORT` over a pooled upstream
//! connection. Bodies stream both ways frame by frame, so PocketBase's
//! realtime API (server-sent events) and large uploads and downloads pass
//! without buffering; `Connection: upgrade` requests (WebSockets) are spliced
//! through once the upstream answers 101.
//!
//! The routing table is an immutable snapshot behind an [`ArcSwap`]: each
//! request reads it once, and a change (put, remove, reconcile) builds a new
//! table and swaps it in whole, so requests in flight are never disturbed.
//!
//! While an instance is switched to a new release its route is `held`: a
//! new request for it waits, its body unread, until a table swap makes the
//! route anything else, and then goes on by the new route (forwarded, 503,
//! or 404 if the route is gone). The wait is bounded in time
//! ([`ProxyConfig::hold_timeout`]) and in how many requests wait at once
//! ([`ProxyConfig::max_held`]); past either the answer is 503. A request
//! that can be sent twice without harm (GET, HEAD, OPTIONS or TRACE, no
//! body, no upgrade) and whose upstream fails before answering — refused,
//! or a pooled keep-alive connection to a process that has just gone — is
//! routed once more by the table as it is then and sent again, so the
//! switch of a process behind a port shows as a wait, never as a 502.
//!
//! Submodules: [`table`] (the table and the pure reconcile/drift/hash
//! decisions), [`host`] (which host a request is for), [`headers`]
//! (hop-by-hop and forwarding headers), [`body`] (the limited request body)
//! and [`pages`] (the proxy's own error answers).

mod activity;
mod body;
mod headers;
mod host;
mod pages;
mod table;

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Body;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, EXPECT, HOST};
use hyper::http::uri::{Authority, PathAndQuery, Scheme};
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use self::activity::{Activities, OpenGuard, Tracked};
use self::body::UpstreamBody;
use self::headers::Peer;
use self::table::{Entry, HostConflict, Table};
use super::{Drift, ReconcileReport, Route, Router, RouterError};
use crate::metrics::Metrics;
use crate::model::idle::Activity;
use crate::model::InstanceName;

/// How long requests in flight may take to finish once shutdown begins;
/// after that, connections (long SSE streams, WebSockets) are closed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long a client may take to send a request head (and how long an idle
/// keep-alive connection is kept).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Connecting to an instance on loopback either works at once or not at all.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle pooled upstream connections are closed after this.
const UPSTREAM_POOL_IDLE: Duration = Duration::from_secs(90);

/// What the embedded proxy needs beyond the routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Peers whose `X-Forwarded-For`, `X-Forwarded-Proto` and
    /// `X-Forwarded-Host` are believed (a load balancer in front of us).
    /// From anyone else these headers are replaced.
    pub trusted_proxies: Vec<IpAddr>,
    /// The `Retry-After` of the 503 for a stopped or starting instance.
    pub retry_after_secs: u32,
    /// How long a request for a held route (an instance being switched to a
    /// new release) waits for it at most; then it is answered 503.
    pub hold_timeout: Duration,
    /// How many requests may wait for held routes at once, across the
    /// proxy; one more is answered 503 at once.
    pub max_held: usize,
    /// How many of them may wait for one instance (its wake or its
    /// switch).
    pub max_held_per_instance: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            retry_after_secs: 5,
            hold_timeout: Duration::from_secs(30),
            max_held: 10_000,
            max_held_per_instance: 1_000,
        }
    }
}

/// In a cluster: where a request for a host this proxy has no route for
/// goes — the instance of another host it names and that host's proxy —
/// given the normalized host. `None`: nowhere (404).
pub type Elsewhere =
    Arc<dyn Fn(&str) -> Option<(InstanceName, std::net::SocketAddr)> + Send + Sync>;

/// Set on a request one host's proxy sends on to another's: the second
/// never sends it on again, so two hosts that disagree for a moment about
/// where an instance is cannot pass a request back and forth.
pub const VIA_HEADER: &str = "x-pockestrator-via";

/// The body of every response the proxy sends: the upstream's, streamed,
/// or one of its own pages.
type ProxyBody = Either<Tracked, Full<Bytes>>;

/// The embedded reverse proxy. Cheap to clone: clones share the table and
/// the upstream connection pool.
#[derive(Clone)]
pub struct ProxyRouter {
    shared: Arc<Shared>,
}

struct Shared {
    table: ArcSwap<Table>,
    /// Serializes table changes (read, build, swap) so that two concurrent
    /// changes cannot lose one another. Never held across an await.
    writer: Mutex<()>,
    client: Client<HttpConnector, UpstreamBody>,
    trusted_proxies: Box<[IpAddr]>,
    retry_after: HeaderValue,
    /// Where requests are counted per instance (each route holds its own
    /// handles, made when the route is put).
    metrics: Option<Metrics>,
    /// Signalled by every table swap: requests for held routes wait for it,
    /// then look again.
    swapped: Notify,
    hold_timeout: Duration,
    max_held: usize,
    max_held_per_instance: usize,
    /// How many requests wait for a held route now.
    held: AtomicUsize,
    /// Each instance's traffic, for scale to zero.
    activities: Activities,
    /// Where a request for an asleep route asks for its instance to be
    /// woken (the daemon takes the other end).
    wake_tx: tokio::sync::mpsc::UnboundedSender<InstanceName>,
    wake_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<InstanceName>>>,
    /// In a cluster: where requests for other hosts' instances go.
    elsewhere: std::sync::OnceLock<Elsewhere>,
}

/// One client connection: what its requests share.
struct Connection {
    shared: Arc<Shared>,
    peer: Peer,
    /// Cancelled when shutdown begins: requests waiting for a held route
    /// are answered 503 then rather than kept through the grace.
    draining: CancellationToken,
    /// Cancelled when the shutdown grace is over: ends spliced upgrades.
    stop: CancellationToken,
}

impl std::fmt::Debug for ProxyRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyRouter")
            .field("routes", &self.shared.table.load().routes().len())
            .field("trusted_proxies", &self.shared.trusted_proxies)
            .field("held_requests", &self.held_requests())
            .finish()
    }
}

impl ProxyRouter {
    /// A proxy with no routes yet, that counts nothing.
    pub fn new(config: ProxyConfig) -> Self {
        Self::build(config, None)
    }

    /// A proxy with no routes yet that counts each request per instance
    /// into `metrics` (`pockestrator_proxy_*`).
    pub fn with_metrics(config: ProxyConfig, metrics: Metrics) -> Self {
        Self::build(config, Some(metrics))
    }

    fn build(config: ProxyConfig, metrics: Option<Metrics>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(UPSTREAM_CONNECT_TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(UPSTREAM_POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        let trusted_proxies: Box<[IpAddr]> = config
            .trusted_proxies
            .iter()
            .map(|ip| ip.to_canonical())
            .collect();
        let (wake_tx, wake_rx) = tokio::sync::mpsc::unbounded_channel();
        Self {
            shared: Arc::new(Shared {
                table: ArcSwap::from_pointee(Table::default()),
                writer: Mutex::new(()),
                client,
                trusted_proxies,
                retry_after: HeaderValue::from(config.retry_after_secs),
                metrics,
                swapped: Notify::new(),
                hold_timeout: config.hold_timeout,
                max_held: config.max_held,
                max_held_per_instance: config.max_held_per_instance,
                held: AtomicUsize::new(0),
                activities: Activities::default(),
                wake_tx,
                wake_rx: Mutex::new(Some(wake_rx)),
                elsewhere: std::sync::OnceLock::new(),
            }),
        }
    }

    /// In a cluster: send requests for hosts this proxy has no route for
    /// where `elsewhere` says (another host's proxy).
    pub fn send_elsewhere(&self, elsewhere: Elsewhere) {
        let _ = self.shared.elsewhere.set(elsewhere);
    }

    /// Serve until `shutdown` resolves. New connections are refused from
    /// then on; requests waiting for a held route are answered 503; requests
    /// in flight have 10 s to finish before their connections are closed
    /// (long SSE streams and upgraded connections included).
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let graceful = GracefulShutdown::new();
        let draining = CancellationToken::new();
        let stop = CancellationToken::new();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .keep_alive(true);
        builder.http2().timer(TokioTimer::new());
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: the listener
                        // is fine, new connections have to wait a moment.
                        warn!("embedded proxy: accepting a connection failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let connection = Arc::new(Connection {
                peer: Peer::new(peer.ip(), &self.shared.trusted_proxies),
                shared: Arc::clone(&self.shared),
                draining: draining.clone(),
                stop: stop.clone(),
            });
            let service = service_fn(move |request| {
                let connection = Arc::clone(&connection);
                async move { Ok::<_, Infallible>(handle(&connection, request).await) }
            });
            let served = graceful.watch(
                builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned(),
            );
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::select! {
                    result = served => {
                        if let Err(e) = result {
                            debug!("embedded proxy: connection from {peer}: {e}");
                        }
                    }
                    () = stop.cancelled() => {}
                }
            });
        }
        drop(listener);
        draining.cancel();
        if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
            .await
            .is_err()
        {
            debug!("embedded proxy: closing connections still busy after {SHUTDOWN_GRACE:?}");
        }
        stop.cancel();
        Ok(())
    }

    /// The host → route table as it is now, by instance name.
    pub fn routes(&self) -> Vec<Route> {
        self.shared.table.load().routes()
    }

    /// How many requests wait for a held route now.
    pub fn held_requests(&self) -> usize {
        self.shared.held.load(Ordering::Acquire)
    }

    /// What the proxy saw of an instance's traffic (`None`: no route).
    pub fn activity(&self, name: &str) -> Option<Activity> {
        self.shared.activities.of(name)
    }

    /// The names of asleep instances that requests asked to wake, once
    /// per asleep route. Taken once (by the daemon's wake loop).
    pub fn take_wake_requests(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<InstanceName>> {
        self.shared
            .wake_rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Replace the table with what `change` makes of it (if anything), under
    /// the writer lock.
    fn change<T>(
        &self,
        change: impl FnOnce(&Table) -> (Option<(Table, Vec<HostConflict>)>, T),
    ) -> T {
        let _writer = self
            .shared
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.shared.table.load_full();
        let (next, result) = change(&current);
        if let Some((next, conflicts)) = next {
            for c in conflicts {
                warn!(
                    "embedded proxy: host {} is claimed by {} and {}; {} keeps it",
                    c.host, c.kept, c.ignored, c.kept
                );
            }
            self.shared.table.store(Arc::new(next));
            // Every waiter looks again, whichever route changed: a lookup
            // per held request per change, and no bookkeeping of who waits
            // for what.
            self.shared.swapped.notify_waiters();
        }
        result
    }
}

impl Router for ProxyRouter {
    async fn put(&self, route: &Route) -> Result<(), RouterError> {
        let metrics = self.shared.metrics.as_ref();
        let activities = &self.shared.activities;
        self.change(|table| (Some(table.with_put(route.clone(), metrics, activities)), ()));
        Ok(())
    }

    async fn remove(&self, name: &InstanceName) -> Result<(), RouterError> {
        self.change(|table| (table.without(name.as_str()).map(|t| (t, Vec::new())), ()));
        let table = self.shared.table.load();
        self.shared.activities.keep_only(table.names());
        Ok(())
    }

    async fn reconcile(&self, routes: &[Route]) -> Result<ReconcileReport, RouterError> {
        Ok(self.change(|table| {
            let report = table::plan(table, routes);
            let metrics = self.shared.metrics.as_ref();
            let activities = &self.shared.activities;
            let built = Table::build(routes.iter().cloned(), metrics, activities);
            activities.keep_only(routes.iter().map(|r| r.name.as_str()));
            (Some(built), report)
        }))
    }

    async fn check(&self, routes: &[Route]) -> Result<Vec<Drift>, RouterError> {
        Ok(table::drift(&self.shared.table.load(), routes))
    }

    fn render_hash(&self, route: &Route) -> String {
        table::render_hash(route)
    }
}

/// Answer one request: route it, forward it, stream the answer back; and
/// count it for its instance, timed to the response head.
async fn handle(connection: &Connection, mut request: Request<Incoming>) -> Response<ProxyBody> {
    let arrived = Instant::now();
    let shared = &*connection.shared;
    let upgrade = request.version() == Version::HTTP_11 && headers::is_upgrade(request.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
    let (parts, body) = request.into_parts();

    // Route: read the table once; the entry stays valid for this request
    // whatever happens to the table meanwhile.
    let routed = {
        let Some(raw) = host::raw_host(&parts) else {
            return pages::bad_request();
        };
        let mut buf = [0u8; host::MAX_HOST_LEN];
        let Some(key) = host::normalize(raw, &mut buf) else {
            return pages::unknown_host(raw);
        };
        let entry = match shared.table.load().lookup(key) {
            Some(entry) => Arc::clone(entry),
            None => {
                // Another host's instance, unless another host sent it here.
                let there = match shared.elsewhere.get() {
                    Some(elsewhere) if !parts.headers.contains_key(VIA_HEADER) => elsewhere(key),
                    _ => None,
                };
                match there {
                    Some((name, proxy)) => {
                        Arc::new(Entry::elsewhere(name, proxy, &shared.activities))
                    }
                    None => return pages::unknown_host(raw),
                }
            }
        };
        let host_from_uri = parts.uri.authority().is_some();
        let forwarded_host = if host_from_uri {
            match HeaderValue::from_str(raw) {
                Ok(value) => value,
                Err(_) => return pages::bad_request(),
            }
        } else {
            match parts.headers.get(HOST) {
                Some(value) => value.clone(),
                None => return pages::bad_request(),
            }
        };
        Routed {
            entry,
            forwarded_host,
            host_from_uri,
        }
    };
    let entry = Arc::clone(&routed.entry);
    let response = forward(connection, routed, parts, body, client_upgrade).await;
    if let Some(metrics) = &entry.metrics {
        metrics.record(response.status().as_u16(), arrived.elapsed());
    }
    response
}

/// A request's route, found from its host.
struct Routed {
    entry: Arc<Entry>,
    /// The `Host` the upstream is sent.
    forwarded_host: HeaderValue,
    /// Whether the host came from an absolute request URI.
    host_from_uri: bool,
}

/// Forward a routed request to its instance and stream the answer back.
async fn forward(
    connection: &Connection,
    routed: Routed,
    mut parts: hyper::http::request::Parts,
    body: Incoming,
    client_upgrade: Option<OnUpgrade>,
) -> Response<ProxyBody> {
    let shared = &*connection.shared;
    let upgrade = client_upgrade.is_some();
    let Routed {
        entry,
        forwarded_host,
        host_from_uri,
    } = routed;
    // Open from here to the end of the response body (or of the upgraded
    // connection), for scale to zero; health probes through the router
    // are not traffic.
    let open = (!is_health_probe(&parts)).then(|| entry.activity.open());
    let entry = if entry.route.held || entry.route.asleep {
        match wait_while_held(connection, &forwarded_host, &entry).await {
            Ok(entry) => entry,
            Err(answer) => return answer,
        }
    } else {
        entry
    };
    let route = &entry.route;
    if !route.available {
        return pages::unavailable(&shared.retry_after);
    }
    if content_length(&parts.headers).is_some_and(|len| len > route.max_body_bytes) {
        if !expects_continue(&parts.headers) {
            body::drain_in_background(body);
        }
        return pages::too_large();
    }

    // Rewrite for the upstream: origin 127.0.0.1:PORT, HTTP/1.1 (the pool
    // speaks HTTP/1.1 to PocketBase whatever the client spoke), the host the
    // client asked for, hop-by-hop headers out, forwarding headers in.
    let mut uri = std::mem::take(&mut parts.uri).into_parts();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = Some(entry.authority.clone());
    if uri.path_and_query.is_none() {
        uri.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    parts.uri = match Uri::from_parts(uri) {
        Ok(uri) => uri,
        Err(_) => return pages::bad_request(),
    };
    parts.version = Version::HTTP_11;
    if host_from_uri {
        parts.headers.insert(HOST, forwarded_host.clone());
    }
    headers::strip_hop_by_hop(&mut parts.headers, upgrade);
    headers::strip_request_only(&mut parts.headers);
    headers::set_forwarding(
        &mut parts.headers,
        &connection.peer,
        &shared.trusted_proxies,
        forwarded_host.clone(),
    );
    if entry.elsewhere {
        parts
            .headers
            .insert(VIA_HEADER, HeaderValue::from_static("1"));
    }
    let replay =
        (!upgrade && body.is_end_stream() && is_safe(&parts.method)).then(|| Replay::of(&parts));
    let upstream_request =
        Request::from_parts(parts, UpstreamBody::new(body, route.max_body_bytes));

    let mut response = match send(shared, route.read_timeout, upstream_request).await {
        Ok(response) => response,
        Err(Unanswered::Page(page)) => return page,
        Err(Unanswered::Unreached(e)) => {
            let Some(replay) = replay else {
                debug!(
                    "embedded proxy: {} → {}: {e:#}",
                    route.name, entry.authority
                );
                return pages::bad_gateway();
            };
            debug!(
                "embedded proxy: {} → {}: {e:#}; sending it once more",
                route.name, entry.authority
            );
            match resend(connection, &forwarded_host, replay).await {
                Ok(response) => response,
                Err(page) => return page,
            }
        }
    };

    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    let open = match (switching, client_upgrade) {
        (true, Some(client_upgrade)) => {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            splice(
                client_upgrade,
                upstream_upgrade,
                connection.stop.clone(),
                open,
            );
            headers::strip_hop_by_hop(response.headers_mut(), true);
            None
        }
        // A switch nobody asked for cannot be passed on.
        (true, None) => return pages::bad_gateway(),
        (false, _) => {
            headers::strip_hop_by_hop(response.headers_mut(), false);
            open
        }
    };
    response.map(|body| Either::Left(Tracked::new(body, open)))
}

/// A health probe through the router (a load balancer's or a monitor's):
/// it does not keep an instance awake.
fn is_health_probe(parts: &hyper::http::request::Parts) -> bool {
    matches!(parts.method, Method::GET | Method::HEAD) && parts.uri.path() == "/api/health"
}

/// Why a request got no response from its upstream.
enum Unanswered {
    /// The proxy's own answer: the body over the limit (413) or no
    /// response in time (504).
    Page(Response<ProxyBody>),
    /// The upstream could not be reached, or closed the connection before
    /// a response head.
    Unreached(hyper_util::client::legacy::Error),
}

/// Send one request upstream and wait for its response head.
async fn send(
    shared: &Shared,
    read_timeout: Duration,
    request: Request<UpstreamBody>,
) -> Result<Response<Incoming>, Unanswered> {
    match tokio::time::timeout(read_timeout, shared.client.request(request)).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) if body::is_too_large(&e) => Err(Unanswered::Page(pages::too_large())),
        Ok(Err(e)) => Err(Unanswered::Unreached(e)),
        Err(_elapsed) => Err(Unanswered::Page(pages::gateway_timeout())),
    }
}

/// Send a request that did not reach its upstream once more, by the route
/// its host has now: waiting first if that route is held (the switch began
/// after the request was routed), 503 or 404 if it is unavailable or gone.
async fn resend(
    connection: &Connection,
    forwarded_host: &HeaderValue,
    replay: Replay,
) -> Result<Response<Incoming>, Response<ProxyBody>> {
    let shared = &*connection.shared;
    let entry = match current_entry(shared, forwarded_host) {
        Some(entry) if entry.route.held || entry.route.asleep => {
            wait_while_held(connection, forwarded_host, &entry).await?
        }
        Some(entry) => entry,
        None => return Err(route_gone(forwarded_host)),
    };
    if !entry.route.available {
        return Err(pages::unavailable(&shared.retry_after));
    }
    let Some(request) = replay.request(&entry.authority) else {
        return Err(pages::bad_request());
    };
    match send(shared, entry.route.read_timeout, request).await {
        Ok(response) => Ok(response),
        Err(Unanswered::Page(page)) => Err(page),
        Err(Unanswered::Unreached(e)) => {
            debug!(
                "embedded proxy: {} → {}: {e:#}",
                entry.route.name, entry.authority
            );
            Err(pages::bad_gateway())
        }
    }
}

/// The entry the table holds now for the host a request was routed by
/// (which is the host as the client sent it), if any.
fn current_entry(shared: &Shared, forwarded_host: &HeaderValue) -> Option<Arc<Entry>> {
    let raw = forwarded_host.to_str().ok()?;
    let mut buf = [0u8; host::MAX_HOST_LEN];
    let key = host::normalize(raw, &mut buf)?;
    shared.table.load().lookup(key).map(Arc::clone)
}

/// The 404 of a request whose route went away while it waited.
fn route_gone(forwarded_host: &HeaderValue) -> Response<ProxyBody> {
    pages::unknown_host(forwarded_host.to_str().unwrap_or_default())
}

/// Wait, without reading the request body, until the route of the host a
/// request was routed by is neither held nor asleep, and return its entry
/// then; an asleep route's instance is asked to wake (once per route). The
/// proxy answers instead if the route is removed meanwhile (404), if the
/// wait outlasts `hold_timeout`, if `max_held` requests wait already (or
/// `max_held_per_instance` for this instance) or if shutdown begins (503).
/// A client that goes away drops this future, and its place with it.
async fn wait_while_held(
    connection: &Connection,
    forwarded_host: &HeaderValue,
    routed: &Entry,
) -> Result<Arc<Entry>, Response<ProxyBody>> {
    let shared = &*connection.shared;
    let Some(_place) = HeldPlace::take(&shared.held, shared.max_held) else {
        debug!(
            "embedded proxy: {} requests wait for held routes already; answering 503",
            shared.max_held
        );
        return Err(pages::unavailable(&shared.retry_after));
    };
    let Some(_instance_place) =
        HeldPlace::take(&routed.activity.waiting, shared.max_held_per_instance)
    else {
        debug!(
            "embedded proxy: {} requests wait for {} already; answering 503",
            shared.max_held_per_instance, routed.route.name
        );
        return Err(pages::unavailable(&shared.retry_after));
    };
    let expired = tokio::time::sleep(shared.hold_timeout);
    let mut expired = std::pin::pin!(expired);
    loop {
        // Interest first, then the look: a swap between the two still
        // wakes this request.
        let swapped = shared.swapped.notified();
        let mut swapped = std::pin::pin!(swapped);
        swapped.as_mut().enable();
        let Some(entry) = current_entry(shared, forwarded_host) else {
            return Err(route_gone(forwarded_host));
        };
        if entry.route.asleep && !entry.route.held {
            ask_to_wake(shared, &entry);
        } else if !entry.route.held {
            return Ok(entry);
        }
        tokio::select! {
            () = swapped => {}
            () = &mut expired => {
                debug!(
                    "embedded proxy: {} held longer than {:?}; answering 503",
                    entry.route.name, shared.hold_timeout
                );
                return Err(pages::unavailable(&shared.retry_after));
            }
            () = connection.draining.cancelled() => {
                return Err(pages::unavailable(&shared.retry_after));
            }
        }
    }
}

/// Ask the daemon to wake an asleep route's instance, unless a request
/// did already for this route.
fn ask_to_wake(shared: &Shared, entry: &Entry) {
    if !entry.wake_asked.swap(true, Ordering::AcqRel) {
        debug!("embedded proxy: waking {}", entry.route.name);
        let _ = shared.wake_tx.send(entry.route.name.clone());
    }
}

/// One request's place among those waiting for held routes, given back
/// when dropped (answered, or its client gone).
struct HeldPlace<'a>(&'a AtomicUsize);

impl<'a> HeldPlace<'a> {
    /// A place, unless `max` are taken already.
    fn take(count: &'a AtomicUsize, max: usize) -> Option<Self> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| HeldPlace(count))
    }
}

impl Drop for HeldPlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Methods that change nothing on the server (RFC 9110 §9.2.1), so that a
/// request sent twice does no harm.
fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// The head of a bodiless request as it went upstream, kept to send it
/// once more.
struct Replay {
    method: Method,
    path_and_query: Option<PathAndQuery>,
    headers: HeaderMap,
}

impl Replay {
    fn of(parts: &hyper::http::request::Parts) -> Self {
        Self {
            method: parts.method.clone(),
            path_and_query: parts.uri.path_and_query().cloned(),
            headers: parts.headers.clone(),
        }
    }

    /// The request again, for the upstream at `authority`.
    fn request(self, authority: &Authority) -> Option<Request<UpstreamBody>> {
        let uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(authority.clone())
            .path_and_query(
                self.path_and_query
                    .unwrap_or_else(|| PathAndQuery::from_static("/")),
            )
            .build()
            .ok()?;
        let mut request = Request::new(UpstreamBody::empty());
        *request.method_mut() = self.method;
        *request.uri_mut() = uri;
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = self.headers;
        Some(request)
    }
}

/// Once both sides have switched protocols, copy bytes both ways until one
/// side closes (or the proxy's shutdown grace is over).
fn splice(
    client: OnUpgrade,
    upstream: OnUpgrade,
    stop: CancellationToken,
    open: Option<OpenGuard>,
) {
    tokio::spawn(async move {
        // The connection keeps its instance awake for as long as it lasts.
        let _open = open;
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                debug!("embedded proxy: protocol switch failed: {e}");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        tokio::select! {
            result = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                if let Err(e) = result {
                    debug!("embedded proxy: upgraded connection ended: {e}");
                }
            }
            () = stop.cancelled() => {}
        }
    });
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_places_are_bounded_and_given_back() {
        let count = AtomicUsize::new(0);
        let first = HeldPlace::take(&count, 2).unwrap();
        let second = HeldPlace::take(&count, 2).unwrap();
        assert!(HeldPlace::take(&count, 2).is_none());
        assert_eq!(count.load(Ordering::Acquire), 2);
        drop(first);
        let third = HeldPlace::take(&count, 2).unwrap();
        drop((second, third));
        assert_eq!(count.load(Ordering::Acquire), 0);
        assert!(HeldPlace::take(&count, 0).is_none());
    }

    #[test]
    fn only_safe_methods_are_sent_twice() {
        for method in [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE] {
            assert!(is_safe(&method), "{method}");
        }
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(!is_safe(&method), "{method}");
        }
    }

    #[test]
    fn a_replay_goes_to_the_route_it_has_now() {
        let request = Request::get("http://127.0.0.1:8091/api/health?x=1")
            .header(HOST, "blog.localhost")
            .body(())
            .unwrap();
        let (parts, ()) = request.into_parts();
        let replay = Replay::of(&parts);
        let again = replay
            .request(&Authority::from_static("127.0.0.1:8095"))
            .unwrap();
        assert_eq!(again.method(), Method::GET);
        assert_eq!(again.uri(), "http://127.0.0.1:8095/api/health?x=1");
        assert_eq!(again.version(), Version::HTTP_11);
        assert_eq!(again.headers()[HOST], "blog.localhost");
        assert!(again.body().is_end_stream());
    }
}
