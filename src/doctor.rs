//! `pockestrator doctor`: checks of the host the daemon runs on, each
//! ok / warning / failed with the command that fixes it.
//!
//! Split as the rest of the code: [`read_host`] gathers [`Readings`] (I/O),
//! [`evaluate`] turns them into [`Check`]s (pure, unit-tested). Route drift
//! is checked by the router (see `Manager::check_routes`).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{Config, RouterKind};

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warning,
    Failed,
}

/// One check of the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub level: Level,
    pub detail: String,
    /// What to run or change to fix it (empty when ok).
    pub fix: String,
}

/// What `evaluate` looks at, read from the host by [`read_host`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Readings {
    pub data_dir: PathBuf,
    /// Directories the daemon writes and whether a file could be created in each.
    pub writable: Vec<(PathBuf, Result<(), String>)>,
    /// Free bytes on the data dir's file system.
    pub free_bytes: Option<u64>,
    /// The daemon's open-files limit (soft, hard).
    pub nofile: Option<(u64, u64)>,
    /// `fs.inotify.max_user_instances`.
    pub inotify_instances: Option<u64>,
    /// How many instances there are.
    pub instances: usize,
    /// `net.ipv4.ip_local_port_range`.
    pub ephemeral_ports: Option<(u16, u16)>,
    /// The highest port an instance holds.
    pub highest_port: Option<u16>,
    /// Whether systemd runs as PID 1.
    pub systemd_running: bool,
    pub router: Option<RouterKind>,
    /// `caddy version`, or why it could not run.
    pub caddy_version: Option<Result<String, String>>,
    /// Caddy's admin API answered (only with `--router caddy`).
    pub caddy_admin: Option<Result<(), String>>,
}

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
/// Inotify instances one PocketBase takes (its hooks watcher and one more).
const INOTIFY_PER_INSTANCE: u64 = 2;
/// The open files each instance is started with (seed 000's unit).
const INSTANCE_NOFILE: u64 = 4096;

fn check(name: &str, level: Level, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        name: name.to_string(),
        level,
        detail: detail.into(),
        fix: if level == Level::Ok {
            String::new()
        } else {
            fix.into()
        },
    }
}

/// Judge the readings.
pub fn evaluate(r: &Readings) -> Vec<Check> {
    let mut out = Vec::new();
    for (dir, result) in &r.writable {
        out.push(match result {
            Ok(()) => check(
                "writable",
                Level::Ok,
                format!("{} is writable", dir.display()),
                "",
            ),
            Err(e) => check(
                "writable",
                Level::Failed,
                format!("cannot write in {}: {e}", dir.display()),
                format!(
                    "give the daemon's user write access: chown -R \"$(id -un)\" {}",
                    dir.display()
                ),
            ),
        });
    }
    if let Some(free) = r.free_bytes {
        let shown = format!(
            "{:.1} GiB free on the file system of {}",
            free as f64 / GIB as f64,
            r.data_dir.display()
        );
        let fix = "free space there, or move the data dir (--data-dir) to a larger file system";
        out.push(if free < 100 * MIB {
            check("disk space", Level::Failed, shown, fix)
        } else if free < GIB {
            check("disk space", Level::Warning, shown, fix)
        } else {
            check("disk space", Level::Ok, shown, fix)
        });
    }
    if let Some((soft, hard)) = r.nofile {
        let detail = format!("the daemon may open {soft} files (hard limit {hard})");
        out.push(if hard < INSTANCE_NOFILE {
            check(
                "open files",
                Level::Failed,
                format!("{detail}: instances cannot get their {INSTANCE_NOFILE}"),
                "raise the hard limit: LimitNOFILE=65536 in the daemon's unit, or `ulimit -Hn 65536` before starting it",
            )
        } else if soft < 8192 {
            check(
                "open files",
                Level::Warning,
                format!("{detail}: the proxy and the API share it"),
                "LimitNOFILE=65536 in the daemon's unit, or `ulimit -n 65536` before starting it",
            )
        } else {
            check("open files", Level::Ok, detail, "")
        });
    }
    if let Some(limit) = r.inotify_instances {
        let need = (r.instances as u64 + 10) * INOTIFY_PER_INSTANCE;
        let room = limit / INOTIFY_PER_INSTANCE;
        let detail = format!(
            "fs.inotify.max_user_instances is {limit}: room for about {room} PocketBase instances ({} now)",
            r.instances
        );
        let fix = "sysctl -w fs.inotify.max_user_instances=1024 and keep it in /etc/sysctl.d/60-pockestrator.conf";
        out.push(if (r.instances as u64) * INOTIFY_PER_INSTANCE >= limit {
            check("inotify", Level::Failed, detail, fix)
        } else if need > limit || limit <= 128 {
            check("inotify", Level::Warning, detail, fix)
        } else {
            check("inotify", Level::Ok, detail, fix)
        });
    }
    if let (Some((low, high)), Some(port)) = (r.ephemeral_ports, r.highest_port) {
        let detail =
            format!("instances use ports up to {port}; outgoing connections use {low}-{high}");
        out.push(if port >= low && port <= high {
            check(
                "port range",
                Level::Warning,
                format!("{detail}: an outgoing connection may take a port an instance needs"),
                "keep instance ports below the ephemeral range (--port), or move it: sysctl -w net.ipv4.ip_local_port_range=\"32768 60999\"",
            )
        } else {
            check("port range", Level::Ok, detail, "")
        });
    }
    out.push(if r.systemd_running {
        check("systemd", Level::Ok, "systemd runs as PID 1", "")
    } else {
        check(
            "systemd",
            Level::Warning,
            "systemd does not run as PID 1: instances are supervised by the daemon itself, which must be kept running (e.g. by your init system)",
            "nothing to do with the embedded supervisor; run on a systemd host for the systemd runtime",
        )
    });
    // The Caddyfile router runs `caddy validate`; the admin-API router only
    // talks to Caddy over HTTP (checked below), wherever Caddy is installed.
    let caddy_needed = r.router == Some(RouterKind::Caddyfile);
    match &r.caddy_version {
        Some(Ok(v)) => out.push(check("caddy", Level::Ok, format!("caddy {v}"), "")),
        Some(Err(e)) if caddy_needed => out.push(check(
            "caddy",
            Level::Failed,
            format!("caddy is needed by this router but cannot run: {e}"),
            "install Caddy ≥ 2.7 (https://caddyserver.com/docs/install) or pass --caddy-bin",
        )),
        Some(Err(_)) => out.push(check(
            "caddy",
            Level::Ok,
            "no caddy binary here (not needed by this router)",
            "",
        )),
        None => {}
    }
    if let Some(admin) = &r.caddy_admin {
        out.push(match admin {
            Ok(()) => check("caddy admin", Level::Ok, "caddy's admin API answers", ""),
            Err(e) => check(
                "caddy admin",
                Level::Failed,
                format!("caddy's admin API does not answer: {e}"),
                "start caddy (systemctl start caddy), or point --caddy-admin at its admin endpoint",
            ),
        });
    }
    out
}

fn try_write(dir: &Path) -> Result<(), String> {
    tempfile::Builder::new()
        .prefix(".doctor")
        .tempfile_in(dir)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn read_u64(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Read everything `evaluate` needs from this host.
pub async fn read_host(
    cfg: &Config,
    instances: usize,
    highest_port: Option<u16>,
    http: &reqwest::Client,
) -> Readings {
    let layout = cfg.layout();
    let mut writable = vec![
        (layout.root.clone(), try_write(&layout.root)),
        (layout.instances(), try_write(&layout.instances())),
        (layout.releases(), try_write(&layout.releases())),
        (layout.archive(), try_write(&layout.archive())),
    ];
    if cfg.routing.kind == RouterKind::Caddyfile {
        if let Some(parent) = cfg.routing.caddyfile.parent() {
            writable.push((parent.to_path_buf(), try_write(parent)));
        }
    }
    // fsblkcnt_t and c_ulong are not u64 on every target.
    #[allow(clippy::unnecessary_cast)]
    let free_bytes = nix::sys::statvfs::statvfs(&layout.root)
        .ok()
        .map(|s| s.blocks_available() as u64 * s.fragment_size() as u64);
    let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).ok();
    let ephemeral_ports = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| {
            let mut it = t.split_whitespace().filter_map(|p| p.parse::<u16>().ok());
            Some((it.next()?, it.next()?))
        });
    let caddy_version = match tokio::process::Command::new(&cfg.routing.caddy_bin)
        .arg("version")
        .stdin(std::process::Stdio::null())
        .output()
        .await
    {
        Ok(out) if out.status.success() => Some(Ok(String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string())),
        Ok(out) => Some(Err(format!("exit status {}", out.status))),
        Err(e) => Some(Err(format!("{}: {e}", cfg.routing.caddy_bin.display()))),
    };
    let caddy_admin =
        if cfg.routing.kind == RouterKind::Caddy && cfg.routing.caddy_admin.starts_with("http") {
            let url = format!("{}/config/", cfg.routing.caddy_admin.trim_end_matches('/'));
            Some(
                http.get(url)
                    .timeout(std::time::Duration::from_secs(3))
                    .send()
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| {
                        if r.status().is_success() {
                            Ok(())
                        } else {
                            Err(format!("status {}", r.status()))
                        }
                    }),
            )
        } else {
            None
        };
    Readings {
        data_dir: layout.root.clone(),
        writable,
        free_bytes,
        nofile,
        inotify_instances: read_u64("/proc/sys/fs/inotify/max_user_instances"),
        instances,
        ephemeral_ports,
        highest_port,
        systemd_running: Path::new("/run/systemd/system").exists(),
        router: Some(cfg.routing.kind),
        caddy_version,
        caddy_admin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn render(checks: &[Check]) -> String {
        checks
            .iter()
            .map(|c| format!("{:?} {}: {} | {}\n", c.level, c.name, c.detail, c.fix))
            .collect()
    }

    #[test]
    fn a_healthy_host() {
        let r = Readings {
            data_dir: "/var/lib/pockestrator".into(),
            writable: vec![("/var/lib/pockestrator".into(), Ok(()))],
            free_bytes: Some(50 * GIB),
            nofile: Some((65536, 65536)),
            inotify_instances: Some(1024),
            instances: 10,
            ephemeral_ports: Some((32768, 60999)),
            highest_port: Some(8100),
            systemd_running: true,
            router: Some(RouterKind::Embedded),
            caddy_version: Some(Err("not found".into())),
            caddy_admin: None,
        };
        expect![[r#"
            Ok writable: /var/lib/pockestrator is writable | 
            Ok disk space: 50.0 GiB free on the file system of /var/lib/pockestrator | 
            Ok open files: the daemon may open 65536 files (hard limit 65536) | 
            Ok inotify: fs.inotify.max_user_instances is 1024: room for about 512 PocketBase instances (10 now) | 
            Ok port range: instances use ports up to 8100; outgoing connections use 32768-60999 | 
            Ok systemd: systemd runs as PID 1 | 
            Ok caddy: no caddy binary here (not needed by this router) | 
        "#]]
        .assert_eq(&render(&evaluate(&r)));
    }

    #[test]
    fn a_troubled_host() {
        let r = Readings {
            data_dir: "/data".into(),
            writable: vec![(
                "/data/instances".into(),
                Err("Permission denied (os error 13)".into()),
            )],
            free_bytes: Some(50 * MIB),
            nofile: Some((1024, 2048)),
            inotify_instances: Some(128),
            instances: 70,
            ephemeral_ports: Some((1024, 65000)),
            highest_port: Some(9001),
            systemd_running: false,
            router: Some(RouterKind::Caddyfile),
            caddy_version: Some(Err("caddy: No such file or directory (os error 2)".into())),
            caddy_admin: Some(Err("connection refused".into())),
        };
        let checks = evaluate(&r);
        assert!(checks.iter().filter(|c| c.level == Level::Failed).count() >= 5);
        expect![[r#"
            Failed writable: cannot write in /data/instances: Permission denied (os error 13) | give the daemon's user write access: chown -R "$(id -un)" /data/instances
            Failed disk space: 0.0 GiB free on the file system of /data | free space there, or move the data dir (--data-dir) to a larger file system
            Failed open files: the daemon may open 1024 files (hard limit 2048): instances cannot get their 4096 | raise the hard limit: LimitNOFILE=65536 in the daemon's unit, or `ulimit -Hn 65536` before starting it
            Failed inotify: fs.inotify.max_user_instances is 128: room for about 64 PocketBase instances (70 now) | sysctl -w fs.inotify.max_user_instances=1024 and keep it in /etc/sysctl.d/60-pockestrator.conf
            Warning port range: instances use ports up to 9001; outgoing connections use 1024-65000: an outgoing connection may take a port an instance needs | keep instance ports below the ephemeral range (--port), or move it: sysctl -w net.ipv4.ip_local_port_range="32768 60999"
            Warning systemd: systemd does not run as PID 1: instances are supervised by the daemon itself, which must be kept running (e.g. by your init system) | nothing to do with the embedded supervisor; run on a systemd host for the systemd runtime
            Failed caddy: caddy is needed by this router but cannot run: caddy: No such file or directory (os error 2) | install Caddy ≥ 2.7 (https://caddyserver.com/docs/install) or pass --caddy-bin
            Failed caddy admin: caddy's admin API does not answer: connection refused | start caddy (systemctl start caddy), or point --caddy-admin at its admin endpoint
        "#]]
        .assert_eq(&render(&checks));
    }

    #[test]
    fn inotify_warns_before_it_runs_out() {
        let base = Readings {
            inotify_instances: Some(128),
            instances: 5,
            ..Readings::default()
        };
        let level = |r: &Readings| {
            evaluate(r)
                .into_iter()
                .find(|c| c.name == "inotify")
                .map(|c| c.level)
        };
        assert_eq!(level(&base), Some(Level::Warning));
        assert_eq!(
            level(&Readings {
                inotify_instances: Some(1024),
                ..base.clone()
            }),
            Some(Level::Ok)
        );
        assert_eq!(
            level(&Readings {
                instances: 64,
                ..base.clone()
            }),
            Some(Level::Failed)
        );
    }
}
