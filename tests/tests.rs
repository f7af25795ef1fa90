//! The integration tests: one binary, one module per area, shared helpers in
//! `support`. They run real PocketBase binaries fetched by
//! `scripts/fetch-test-deps`.

mod support;

mod backup;
mod backup_remote;
mod caddy;
mod cluster;
mod codegen;
mod compat;
mod daemon;
mod dashboard;
mod dashboard_browser;
mod deploy;
mod failover;
mod fleet;
mod git_server;
mod go_toolchain;
mod metrics;
mod openapi_fuzz;
mod proxy;
mod release;
mod replication;
mod routing;
mod schema_push;
mod sdk;
mod sleep;
mod supervisor;
mod systemd;
mod systemd_daemon;
mod systemd_real;
mod tidy;
mod validation;
