//! The daemon: wiring and graceful shutdown.
//!
//! [`run`] is a library function that takes its listeners and a shutdown
//! signal, so tests start many daemons on port 0 in temp dirs. [`serve`]
//! is what `pockestrator serve` calls: it takes the data-dir lock, binds the
//! socket and the TCP listener, and turns SIGINT/SIGTERM into the shutdown
//! signal.
//!
//! Main loops, each a task stopped by the shutdown signal:
//! - the HTTP servers (unix socket, TCP, and the metrics listener),
//!   graceful on shutdown;
//! - `Manager::follow_runtime`: runtime events → store, audit, bus;
//! - `Manager::health_loop`: `Manager::health_round` every `health_interval`.
//!
//! **Architecture Invariant:** shutting the daemon down (or killing it)
//! never stops an instance. The supervisor lets go of its processes; the
//! next daemon adopts them.

use std::future::Future;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use tokio::net::{TcpListener, UnixListener};

use crate::api::{self, AppState, UnixPeer};
use crate::config::{Config, Layout};
use crate::config::{RouterKind, RuntimeKind};
use crate::events::EventBus;
use crate::manager::Manager;
use crate::metrics::Metrics;
use crate::release::{Arch, ReleaseConfig, Releases};
use crate::router::caddy::{CaddyAdminConfig, CaddyAdminRouter};
use crate::router::caddyfile::{CaddyfileConfig, CaddyfileRouter};
use crate::router::embedded::{ProxyConfig, ProxyRouter};
use crate::router::AnyRouter;
use crate::runtime::embedded::Supervisor;
use crate::runtime::systemd::{
    RealSystemctl, SystemdConfig, SystemdRuntime, UnitOptions, UnitUser,
};
use crate::runtime::{AnyRuntime, SupervisorConfig};
use crate::store::Store;

/// The sockets the daemon serves on.
pub struct Listeners {
    pub unix: UnixListener,
    pub tcp: Option<TcpListener>,
    /// The embedded proxy's listener (with `--router embedded`).
    pub proxy: Option<TcpListener>,
    /// Prometheus's `GET /metrics` without a token (`--metrics-listen`).
    pub metrics: Option<TcpListener>,
    /// The wake proxy's (with the Caddy routers; `--wake-listen`).
    pub wake: Option<TcpListener>,
}

/// Build the runtime chosen in the configuration (a named unit user was
/// created by [`data_dir_access`]).
pub async fn build_runtime(cfg: &Config) -> anyhow::Result<AnyRuntime> {
    Ok(match cfg.runtime {
        RuntimeKind::Embedded => AnyRuntime::Embedded(Supervisor::new(SupervisorConfig {
            stop_timeout: cfg.stop_timeout,
            ..SupervisorConfig::default()
        })),
        RuntimeKind::Systemd => {
            let s = &cfg.systemd;
            let options = UnitOptions {
                user: s.user.clone(),
                log: s.log.clone(),
                extra: s.overrides.clone(),
                ..UnitOptions::default()
            };
            let systemd = SystemdRuntime::new(
                SystemdConfig {
                    unit_dir: s.unit_dir.clone(),
                    unit_pattern: s.unit_pattern.clone(),
                    options,
                },
                RealSystemctl {
                    path: s.systemctl.clone(),
                    ..RealSystemctl::default()
                },
            )
            .map_err(|e| anyhow::anyhow!("--unit-name: {e}"))?;
            AnyRuntime::Systemd(Box::new(systemd))
        }
    })
}

/// Build the router chosen in the configuration. `ask_url` is where Caddy
/// asks whether a custom domain may get a certificate; the embedded proxy
/// counts its requests into `metrics`.
pub fn build_router(
    cfg: &Config,
    ask_url: Option<String>,
    metrics: &Metrics,
) -> anyhow::Result<AnyRouter> {
    let r = &cfg.routing;
    Ok(match r.kind {
        RouterKind::Embedded => AnyRouter::Embedded(ProxyRouter::with_metrics(
            ProxyConfig {
                trusted_proxies: r.trusted_proxies.clone(),
                ..ProxyConfig::default()
            },
            metrics.clone(),
        )),
        RouterKind::Caddy => AnyRouter::Caddy(CaddyAdminRouter::new(CaddyAdminConfig {
            admin: r.caddy_admin.clone(),
            listen: r.caddy_listen.clone(),
            tls: r.caddy_tls,
            server_name: "pockestrator".to_string(),
            ask_url,
        })?),
        RouterKind::Caddyfile => AnyRouter::Caddyfile(CaddyfileRouter::new(CaddyfileConfig {
            path: r.caddyfile.clone(),
            caddy_bin: r.caddy_bin.clone(),
            reload_cmd: r.caddy_reload_cmd.clone(),
            tls: r.caddy_tls,
            site_port: r.public_endpoint().and_then(|e| match (e.scheme, e.port) {
                ("http", Some(80)) | ("https", Some(443)) => None,
                (_, port) => port,
            }),
        })),
        RouterKind::None => AnyRouter::None,
    })
}

/// Read the API token, creating it (0600) on first start.
pub fn ensure_token(layout: &Layout) -> anyhow::Result<String> {
    let path = layout.token();
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    crate::fsutil::atomic_write_mode(&path, format!("{token}\n").as_bytes(), 0o600)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(token)
}

/// Who besides the daemon may pass through the data dir (search, never
/// list or read): units that systemd runs as another user must reach their
/// instance directory and their release's binary inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataDirAccess {
    /// Nobody: 0700 (the embedded supervisor, units run as root).
    Private,
    /// The named unit user's group: 0710, the data dir in that group.
    Group(nix::unistd::Gid),
    /// Everyone: 0711, for `DynamicUser=` units, whose users have no fixed
    /// group.
    Everyone,
}

/// The data dir's access for this configuration. With the systemd runtime
/// and a named unit user, that user is created here if missing.
pub async fn data_dir_access(cfg: &Config) -> anyhow::Result<DataDirAccess> {
    if cfg.runtime != RuntimeKind::Systemd {
        return Ok(DataDirAccess::Private);
    }
    match &cfg.systemd.user {
        UnitUser::Root => Ok(DataDirAccess::Private),
        UnitUser::Dynamic => Ok(DataDirAccess::Everyone),
        UnitUser::Named(user) => {
            crate::runtime::systemd::ensure_system_user(user)
                .await
                .with_context(|| format!("cannot create the system user {user} for the units: create it yourself, or pass --unit-user dynamic|root"))?;
            let found = nix::unistd::User::from_name(user)
                .with_context(|| format!("cannot look up the unit user {user}"))?
                .ok_or_else(|| {
                    anyhow::anyhow!("the unit user {user} does not exist: create it (useradd --system {user}) or pass --unit-user")
                })?;
            Ok(DataDirAccess::Group(found.gid))
        }
    }
}

/// Create the data dir and its subdirectories, and set who may pass
/// through it ([`DataDirAccess`]). Whatever that is, nothing in it can be
/// read by another user: the token, the socket and the state database are
/// 0600 (SQLite gives its `-wal` and `-shm` files the database's mode), the
/// archive 0700, and instance directories belong to the unit user.
pub fn prepare_data_dir(layout: &Layout, access: DataDirAccess) -> anyhow::Result<()> {
    for dir in [
        layout.root.clone(),
        layout.instances(),
        layout.archive(),
        layout.releases(),
    ] {
        std::fs::create_dir_all(&dir).with_context(|| {
            format!(
                "cannot create {}: check the permissions of its parent, or pass another --data-dir",
                dir.display()
            )
        })?;
    }
    let set_mode = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of {}", path.display()))
    };
    set_mode(&layout.archive(), 0o700)?;
    let db = layout.state_db();
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&db)
        .with_context(|| format!("cannot create {}", db.display()))?;
    for suffix in ["", "-wal", "-shm"] {
        let mut path = db.clone().into_os_string();
        path.push(suffix);
        let path = PathBuf::from(path);
        match std::fs::symlink_metadata(&path) {
            Ok(_) => set_mode(&path, 0o600)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }
    let mode = match access {
        DataDirAccess::Private => 0o700,
        DataDirAccess::Group(gid) => {
            nix::unistd::chown(&layout.root, None, Some(gid)).with_context(|| {
                format!(
                    "cannot give {} to the unit user's group",
                    layout.root.display()
                )
            })?;
            0o710
        }
        DataDirAccess::Everyone => 0o711,
    };
    set_mode(&layout.root, mode)
}

/// Run the daemon on the given listeners until `shutdown` resolves.
pub async fn run(
    cfg: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let layout = cfg.layout();
    prepare_data_dir(&layout, data_dir_access(&cfg).await?)?;
    let token = ensure_token(&layout)?;
    let store = Arc::new(Store::open(&layout.state_db())?);
    let releases = Releases::new(ReleaseConfig {
        cache_dir: layout.releases(),
        sources: cfg.release_sources.clone(),
        arch: Arch::host()?,
    })?;
    let runtime = Arc::new(build_runtime(&cfg).await?);
    let events = EventBus::default();
    let ask_url = match &listeners.tcp {
        Some(t) => Some(format!("http://{}/api/v1/tls/ask", t.local_addr()?)),
        None => None,
    };
    let metrics = Metrics::new()?;
    let router = Arc::new(build_router(&cfg, ask_url, &metrics)?);
    let manager = Manager::new(
        cfg.clone(),
        store,
        releases,
        runtime.clone(),
        router.clone(),
        events,
        metrics,
    )?;
    // A cluster is joined before the API answers, so that its first
    // request already sees the whole fleet; one that cannot be reached
    // stops the start with the reason.
    let cluster = match &cfg.cluster {
        Some(cluster_cfg) => {
            let cluster = crate::cluster::Cluster::connect(cluster_cfg.clone(), &cfg.credentials)
                .await
                .with_context(|| {
                    format!(
                        "cannot join the cluster at {}",
                        cluster_cfg.servers.join(",")
                    )
                })?;
            let cluster = Arc::new(cluster);
            let api = match &listeners.tcp {
                Some(t) => Some(format!("http://{}", t.local_addr()?)),
                None => None,
            };
            let proxy = match &listeners.proxy {
                Some(p) => Some(format!("http://{}", p.local_addr()?)),
                None => None,
            };
            manager.join_cluster(cluster.clone(), api, proxy);
            if let (AnyRouter::Embedded(proxy), Some(elsewhere)) =
                (router.as_ref(), manager.proxy_elsewhere())
            {
                proxy.send_elsewhere(elsewhere);
            }
            tracing::info!(host = %cluster_cfg.host, servers = %cluster_cfg.servers.join(","), "joined the cluster");
            Some(cluster)
        }
        None => None,
    };
    // Scale to zero: who asks for wakes. With Caddy, the wake proxy, which
    // asleep instances' Caddy routes point at (trusting Caddy's
    // forwarding headers, as the instances do).
    let wake_proxy = match listeners.wake {
        Some(listener) => {
            let proxy = ProxyRouter::new(ProxyConfig {
                trusted_proxies: vec![
                    std::net::IpAddr::from([127, 0, 0, 1]),
                    std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
                ],
                ..ProxyConfig::default()
            });
            manager.use_wake_proxy(proxy.clone(), listener.local_addr()?.port());
            Some((proxy, listener))
        }
        None => None,
    };
    let wake_requests = match (router.as_ref(), &wake_proxy) {
        (_, Some((proxy, _))) => proxy.take_wake_requests(),
        (AnyRouter::Embedded(proxy), None) => proxy.take_wake_requests(),
        _ => None,
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let follower = tokio::spawn(manager.clone().follow_runtime(stop_rx.clone()));
    // The API answers while running instances are adopted and dead ones
    // started; operations on an instance wait for its recovery (its lock).
    let state = AppState {
        manager: manager.clone(),
        token: Arc::new(token),
    };
    let forwarded = cluster.map(|cluster| {
        let handler = api::cluster::forwarded_handler(state.clone());
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            if let Err(e) = cluster.serve_forwarded(handler, stop).await {
                tracing::error!(error = %e, "cluster: cannot answer forwarded requests");
            }
        })
    });
    let unix_app =
        api::unix_router(state.clone()).into_make_service_with_connect_info::<UnixPeer>();
    let mut unix_stop = stop_rx.clone();
    let unix_server = tokio::spawn(async move {
        axum::serve(listeners.unix, unix_app)
            .with_graceful_shutdown(async move {
                let _ = unix_stop.wait_for(|s| *s).await;
            })
            .await
    });
    let stats = crate::dashboard::stats::StatsHub::new();
    let dashboard = crate::dashboard::Dashboard::new(
        manager.clone(),
        state.token.clone(),
        stats.clone(),
        stop_rx.clone(),
    );
    let tcp_server = listeners.tcp.map(|tcp| {
        let app = api::tcp_router(state.clone())
            .merge(crate::dashboard::router(dashboard))
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        let mut tcp_stop = stop_rx.clone();
        tokio::spawn(async move {
            axum::serve(tcp, app)
                .with_graceful_shutdown(async move {
                    let _ = tcp_stop.wait_for(|s| *s).await;
                })
                .await
        })
    });
    let metrics_server = listeners.metrics.map(|listener| {
        let app = api::metrics_router(state.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        })
    });
    manager.recover().await?;
    // Instances another host took over while this one was away are
    // archived here before anything else serves them.
    manager.stand_down_taken_over().await;
    manager.warm_pool();
    let mut background = vec![
        tokio::spawn(manager.clone().health_loop(stop_rx.clone())),
        tokio::spawn(stats.run(manager.clone(), stop_rx.clone())),
        tokio::spawn(manager.clone().route_loop(stop_rx.clone())),
        tokio::spawn(manager.clone().backup_loop(stop_rx.clone())),
        tokio::spawn(manager.clone().replication_loop(stop_rx.clone())),
        tokio::spawn(manager.clone().idle_loop(stop_rx.clone())),
        tokio::spawn(manager.clone().cluster_loop(stop_rx.clone())),
    ];
    background.extend(forwarded);
    if let Some(requests) = wake_requests {
        background.push(tokio::spawn(
            manager.clone().wake_loop(requests, stop_rx.clone()),
        ));
    }
    if let Some((proxy, listener)) = wake_proxy {
        let mut stop = stop_rx.clone();
        background.push(tokio::spawn(async move {
            let shutdown = async move { crate::shutdown::stopped(&mut stop).await };
            if let Err(e) = proxy.serve(listener, shutdown).await {
                tracing::error!(error = %e, "the wake proxy stopped");
            }
        }));
    }
    if matches!(runtime.as_ref(), AnyRuntime::Systemd(_)) {
        // systemd restarts crashed units itself; a look every second turns
        // what it did into runtime events (crashes, restarts, giving up).
        let runtime = runtime.clone();
        let mut stop = stop_rx.clone();
        background.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = crate::shutdown::stopped(&mut stop) => return,
                    _ = tick.tick() => {
                        if let AnyRuntime::Systemd(r) = runtime.as_ref() {
                            r.refresh().await;
                        }
                    }
                }
            }
        }));
    }
    match router.as_ref() {
        AnyRouter::Embedded(proxy) => {
            manager.reconcile_routes().await?;
            if let Some(listener) = listeners.proxy {
                let proxy = proxy.clone();
                let mut stop = stop_rx.clone();
                background.push(tokio::spawn(async move {
                    let shutdown = async move { crate::shutdown::stopped(&mut stop).await };
                    if let Err(e) = proxy.serve(listener, shutdown).await {
                        tracing::error!(error = %e, "the embedded proxy stopped");
                    }
                }));
            }
        }
        AnyRouter::Caddy(caddy) => {
            // Caddy may be down now; the watcher reconciles when it is back.
            if let Err(e) = caddy.ensure_server().await {
                tracing::warn!(error = %e, "caddy is not ready; routes follow when it is");
            } else if let Err(e) = manager.reconcile_routes().await {
                tracing::warn!(error = %e, "cannot reconcile caddy's routes");
            }
            let caddy = caddy.clone();
            let for_routes = manager.clone();
            let mut stop = stop_rx.clone();
            background.push(tokio::spawn(async move {
                caddy
                    .watch(move || for_routes.all_routes(), async move {
                        crate::shutdown::stopped(&mut stop).await
                    })
                    .await
            }));
        }
        AnyRouter::Caddyfile(_) => {
            if let Err(e) = manager.reconcile_routes().await {
                tracing::warn!(error = %e, "cannot bring the Caddyfile in line");
            }
        }
        AnyRouter::None => {}
    }

    tracing::info!(data_dir = %layout.root.display(), "pockestrator is ready");

    shutdown.await;
    tracing::info!("shutting down; instances keep running");
    let _ = stop_tx.send(true);
    // Open streams (log follow, event stream) would hold a graceful shutdown
    // forever: give the servers a moment, then go.
    let servers = async {
        let _ = unix_server.await;
        if let Some(t) = tcp_server {
            let _ = t.await;
        }
        if let Some(m) = metrics_server {
            let _ = m.await;
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), servers).await;
    let _ = follower.await;
    for task in background {
        let _ = task.await;
    }
    match runtime.as_ref() {
        AnyRuntime::Embedded(s) => s.shutdown().await,
        // Units belong to systemd: nothing to let go of.
        AnyRuntime::Systemd(_) => {}
    }
    Ok(())
}

/// The data dir's lock, held while this value lives.
///
/// It is a POSIX record lock (`fcntl(F_SETLK)`), not `flock`: a record lock
/// belongs to this process only. A child forked to run PocketBase, a build
/// or `migrate up` does not share it between its fork and its exec, so a
/// daemon killed while such a child waits for the CPU (the pool's run at
/// nice 19) leaves nothing behind that keeps the next daemon out. The lock
/// goes when this process ends, however it ends. Nothing else in the daemon
/// opens the lock file: closing any descriptor of it would drop the lock.
#[derive(Debug)]
pub struct DataDirLock {
    _file: std::fs::File,
}

/// Hold an exclusive lock on the data dir for the daemon's lifetime, so two
/// daemons never manage the same instances.
pub fn lock_data_dir(layout: &Layout) -> anyhow::Result<DataDirLock> {
    use std::os::fd::AsRawFd;
    let path = layout.lock();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let whole = nix::libc::flock {
        l_type: nix::libc::F_WRLCK as nix::libc::c_short,
        l_whence: nix::libc::SEEK_SET as nix::libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    match nix::fcntl::fcntl(file.as_raw_fd(), nix::fcntl::FcntlArg::F_SETLK(&whole)) {
        Ok(_) => Ok(DataDirLock { _file: file }),
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) => Err(anyhow::anyhow!(
            "another pockestrator daemon is running on {}: stop it first, or pass another --data-dir",
            layout.root.display()
        )),
        Err(errno) => Err(anyhow::anyhow!("cannot lock {}: {errno}", path.display())),
    }
}

/// Bind the unix socket (0600). A socket file left by a daemon that died is
/// removed; one that answers belongs to a live daemon and is an error.
pub async fn bind_socket(path: &Path) -> anyhow::Result<UnixListener> {
    if path.as_os_str().len() > 100 {
        bail!(
            "the socket path {} is too long for a unix socket (over 100 bytes): use a shorter --data-dir",
            path.display()
        );
    }
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            bail!(
                "there seems to be an active pockestrator daemon on {}: stop it first; if you are sure there is none, remove that socket file",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot bind {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    Ok(listener)
}

/// `pockestrator serve`: lock, bind, run until SIGINT or SIGTERM.
pub async fn serve(mut cfg: Config) -> anyhow::Result<()> {
    let layout = cfg.layout();
    prepare_data_dir(&layout, data_dir_access(&cfg).await?)?;
    let _lock = lock_data_dir(&layout)?;
    let unix = bind_socket(&layout.socket()).await?;
    let tcp = match cfg.listen {
        Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr}: is another program using it? pass another --listen, or --listen none")
        })?),
        None => None,
    };
    let proxy = match cfg.routing.kind {
        RouterKind::Embedded => {
            let addr = cfg.routing.proxy_listen;
            Some(TcpListener::bind(addr).await.with_context(|| {
                format!("cannot listen on {addr} for the embedded proxy: is another program using it? pass another --proxy-listen, or --router none")
            })?)
        }
        _ => None,
    };
    let metrics = match cfg.metrics_listen {
        Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} for metrics: is another program using it? pass another --metrics-listen, or leave it out")
        })?),
        None => None,
    };
    if let Some(t) = &tcp {
        eprintln!(
            "pockestrator: API on http://{} (bearer token: `pockestrator token`)",
            t.local_addr()?
        );
        eprintln!(
            "pockestrator: dashboard on http://{}/ui/ (sign in with the same token)",
            t.local_addr()?
        );
    }
    if let Some(m) = &metrics {
        eprintln!(
            "pockestrator: metrics on http://{}/metrics (no token)",
            m.local_addr()?
        );
    }
    if let Some(p) = &proxy {
        let addr = p.local_addr()?;
        // With port 0 the system picked one: URLs must name the real one.
        cfg.routing.proxy_listen = addr;
        eprintln!(
            "pockestrator: proxy on http://{addr} (instances at http://NAME.{}:{})",
            cfg.routing.base_domain,
            addr.port()
        );
    }
    eprintln!("pockestrator: local socket {}", layout.socket().display());
    let socket_path: PathBuf = layout.socket();
    let shutdown = async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    let wake = match cfg.routing.kind {
        RouterKind::Caddy | RouterKind::Caddyfile => {
            let addr = cfg.routing.wake_listen;
            Some(TcpListener::bind(addr).await.with_context(|| {
                format!("cannot listen on {addr} for the wake proxy: is another program using it? pass another --wake-listen")
            })?)
        }
        _ => None,
    };
    let listeners = Listeners {
        unix,
        tcp,
        proxy,
        metrics,
        wake,
    };
    let result = run(cfg, listeners, shutdown).await;
    let _ = std::fs::remove_file(socket_path);
    result
}
