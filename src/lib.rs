//! Pockestrator runs a fleet of PocketBase servers on Linux hosts and keeps
//! them healthy: one binary that is the daemon (`pockestrator serve`), its
//! REST API and the command-line client.
//!
//! Modules in reading order (see ARCHITECTURE.md for the codemap and the
//! invariants that hold between them):
//!
//! - [`model`]: the pure domain — names, ports, versions, states, policies.
//! - [`config`]: flags + environment into one validated daemon `Config`.
//! - [`fsutil`]: atomic file writes (temporary file, fsync, rename, fsync).
//! - [`credentials`]: S3 and NATS secrets from the environment or a 0600 file.
//! - [`destination`]: where backups are kept — a directory, S3, NATS JetStream.
//! - [`store`]: SQLite state, audit log and config history; the only SQL.
//! - [`release`]: PocketBase releases — resolve, download, verify, cache.
//! - [`runtime`]: how instance processes run (the embedded supervisor).
//! - [`router`]: how requests reach instances (embedded proxy, Caddy).
//! - [`replication`]: continuous replication of `data.db` with Litestream.
//! - [`pocketbase`]: talking to one PocketBase — its CLI and health endpoint.
//! - [`codegen`]: an instance's OpenAPI document and TypeScript types, from its collections.
//! - [`events`]: the closed event enum and the broadcast bus.
//! - [`cluster`]: many hosts over NATS JetStream — heartbeats, names, forwarded requests.
//! - [`manager`]: every mutation goes through here, whichever door it came in by.
//! - [`health`]: the probe loop.
//! - [`doctor`]: checks of the host (disk, limits, inotify, Caddy, systemd).
//! - [`procstat`]: per-process CPU, memory and uptime from `/proc`.
//! - [`metrics`]: Prometheus metrics — recorded families and the scrape's text.
//! - [`api`]: the axum HTTP API (`/api/v1`, seed 001's compatibility API).
//! - [`dashboard`]: the web UI under `/ui/` (Datastar over SSE).
//! - [`daemon`]: wiring and graceful shutdown.
//! - [`client`]: typed client of the API over the unix socket or TCP.
//! - [`lines`]: byte streams into lines (NDJSON answers, followed logs).
//! - [`cli`]: clap commands; reaches the daemon only through `client`.

pub mod api;
pub mod archive;
pub mod build;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod codegen;
pub mod config;
pub mod credentials;
pub mod daemon;
pub mod dashboard;
pub mod destination;
pub mod doctor;
pub mod events;
pub mod fsutil;
pub mod git;
pub mod health;
pub mod lines;
pub mod manager;
pub mod metrics;
pub mod model;
pub mod pocketbase;
pub mod procstat;
pub mod release;
pub mod replication;
pub mod router;
pub mod runtime;
pub mod shutdown;
pub mod store;
