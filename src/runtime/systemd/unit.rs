//! What an instance's systemd unit file looks like: a pure function from a
//! [`LaunchSpec`] and [`UnitOptions`] to the text of the unit.
//!
//! ## The service user
//!
//! The default is a dedicated, unprivileged system user, `pockestrator`
//! ([`UnitUser::Named`]), created if missing. `DynamicUser=yes`
//! ([`UnitUser::Dynamic`]) is the tighter choice on paper, but its UID is
//! allocated per start and files it creates can only be kept in a directory
//! systemd manages for it (`StateDirectory=`, which lives under `/var/lib`):
//! in an arbitrary instance directory they would be owned by a UID that may
//! be handed to another service next time, and anything the daemon itself
//! writes there (a superuser created with PocketBase's CLI, a restored
//! snapshot) would not be writable by the service. So with `Dynamic` an
//! instance directory under `/var/lib` becomes `StateDirectory=` and any
//! other gets `ReadWritePaths=` (which only works if its permissions let
//! any user write, which is why `Dynamic` is not the default).
//! [`UnitUser::Root`] keeps the sandbox but runs as root, as the seed's
//! units do.
//!
//! ## Hardening
//!
//! On by default: a read-only system (`ProtectSystem=strict`) with only the
//! instance directory writable, no home directories, private `/tmp` and
//! `/dev`, no capabilities, kernel and cgroup protections, Internet and
//! local sockets only, `SystemCallFilter=@system-service` minus
//! `@privileged @resources`, and `MemoryDenyWriteExecute=yes`. PocketBase
//! is a static Go binary and its JS hooks run in goja, an interpreter with
//! no JIT: traced under the kernel's equivalent (`PR_SET_MDWE`), PocketBase
//! 0.40.6 never maps memory executable, and hooks, file uploads, backups and
//! restores all work. Traced through the same workload, every system call
//! PocketBase makes is in `@system-service`; the only one in the denied
//! sets is `fchown`, which its SQLite makes only when running as root and
//! whose failure it ignores (`SystemCallErrorNumber=EPERM` makes a filtered
//! call fail rather than kill the process). `systemd-analyze security` rates
//! the default unit 1.1 ("OK"), root 1.6; the seed's scores 9.6 ("UNSAFE").
//!
//! PocketBase started without a superuser tries to open its installer in a
//! browser: it starts `xdg-open URL` and never waits for it, leaving a
//! zombie behind. It has no setting for this, so the hardened unit makes
//! `xdg-open` inaccessible (`InaccessiblePaths=`): PocketBase's lookup on
//! its `PATH` then finds nothing, no child is made, and the installer's URL
//! is still printed in its log. A unit without hardening (and so perhaps
//! without mount namespaces) gets the embedded supervisor's remedy instead:
//! a `PATH` whose first `xdg-open` is an empty file that cannot be run
//! ([`LaunchSpec::write_no_browser`], written with the unit).
//!
//! Every setting can be changed with [`UnitOptions::extra`]: a key we render
//! is replaced, any other is added to `[Service]`.
//!
//! ## Quoting
//!
//! Paths end up in `ExecStart=`, `WorkingDirectory=`, `ReadWritePaths=` and
//! `StandardOutput=append:`. `%` is written `%%` everywhere and `$` as `$$`
//! in `ExecStart=`; a binary path with spaces is double-quoted. Quotes,
//! backslashes and control characters cannot be written safely in all of
//! these places, so paths containing them are refused, as is whitespace in
//! the instance directory and the log file (they appear in space-separated
//! lists).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::model::names::shown;
use crate::model::{CpuQuota, InstanceName, LimitError, MemoryMax};
use crate::runtime::LaunchSpec;

/// Who the service runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnitUser {
    /// `DynamicUser=yes`: a transient user allocated by systemd.
    Dynamic,
    /// A dedicated system user (and its group of the same name).
    Named(String),
    /// root, as the seed's units run.
    Root,
}

/// Where PocketBase's stdout and stderr go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnitLog {
    /// The journal (`journalctl -u UNIT`).
    Journal,
    /// Appended to the instance's own log file ([`LaunchSpec::log_file`]).
    InstanceFile,
    /// Appended to this file, as the seed does with `errors.log`.
    File(PathBuf),
}

/// How units are rendered. One value for the fleet; the runtime can hold a
/// different one per instance (memory and CPU limits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitOptions {
    pub user: UnitUser,
    /// The sandboxing block (on by default).
    pub hardening: bool,
    /// `MemoryMax=`: bytes with an optional K, M, G or T suffix, a
    /// percentage, or `infinity`.
    pub memory_max: Option<String>,
    /// `CPUQuota=`: a percentage, e.g. `50%` or `200%` (two CPUs).
    pub cpu_quota: Option<String>,
    pub log: UnitLog,
    pub restart_sec: Duration,
    /// `MemoryDenyWriteExecute=yes` when hardening (see the module doc).
    pub memory_deny_write_execute: bool,
    /// Settings of `[Service]` to replace or add, in order.
    pub extra: Vec<(String, String)>,
}

/// The system user units run as by default.
pub const DEFAULT_USER: &str = "pockestrator";

impl Default for UnitOptions {
    fn default() -> Self {
        Self {
            user: UnitUser::Named(DEFAULT_USER.to_string()),
            hardening: true,
            memory_max: None,
            cpu_quota: None,
            log: UnitLog::Journal,
            restart_sec: Duration::from_secs(1),
            memory_deny_write_execute: true,
            extra: Vec::new(),
        }
    }
}

/// Why a unit name or a unit could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("unit name pattern {shown} is not usable: {why}")]
    Pattern { shown: String, why: String },
    #[error("unit name {shown} is not a valid systemd unit name: {why}")]
    UnitName { shown: String, why: String },
    #[error("{what} {shown} cannot be written into a unit file: {why}")]
    Path {
        what: &'static str,
        shown: String,
        why: String,
    },
    #[error("{what} {shown} is not valid: {why}")]
    Setting {
        what: String,
        shown: String,
        why: String,
    },
}

/// The longest unit name systemd accepts.
const UNIT_NAME_MAX: usize = 255;

/// The unit name of an instance: `pattern` with `{name}` replaced. The
/// pattern must contain `{name}` and end in `.service`; the result must be a
/// valid systemd unit name that is not a template (`@`).
pub fn unit_name(pattern: &str, name: &InstanceName) -> Result<String, UnitError> {
    let bad_pattern = |why: &str| UnitError::Pattern {
        shown: shown(pattern),
        why: why.to_string(),
    };
    if !pattern.contains("{name}") {
        return Err(bad_pattern("it must contain {name}"));
    }
    if !pattern.ends_with(".service") {
        return Err(bad_pattern("it must end in .service"));
    }
    let unit = pattern.replace("{name}", name.as_str());
    let bad_unit = |why: String| UnitError::UnitName {
        shown: shown(&unit),
        why,
    };
    if unit.len() > UNIT_NAME_MAX {
        return Err(bad_unit(format!(
            "it is {} characters long; the limit is {UNIT_NAME_MAX}",
            unit.len()
        )));
    }
    if let Some(c) = unit
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '-')))
    {
        return Err(bad_unit(format!(
            "it contains {c:?}; use A-Z, a-z, 0-9, ':', '_', '.' and '-'"
        )));
    }
    if unit.starts_with('.') || unit.starts_with('-') {
        return Err(bad_unit("it must not start with '.' or '-'".to_string()));
    }
    Ok(unit)
}

/// The unit file of one instance.
pub fn render_unit(spec: &LaunchSpec, opts: &UnitOptions) -> Result<String, UnitError> {
    let binary = path_text("binary", &spec.binary, true)?;
    if binary.contains('$') {
        // systemd expands variables in the command's arguments but not in
        // the path it executes, so no spelling of `$` is right for both.
        return Err(UnitError::Path {
            what: "binary",
            shown: shown(&binary),
            why: "it contains '$', which systemd would expand in the command line; use a path without it".to_string(),
        });
    }
    let instance_dir = path_text("instance directory", &spec.instance_dir, false)?;

    let mut exec = vec![exec_word(&binary)];
    for arg in spec.args() {
        let arg = arg.into_string().map_err(|raw| UnitError::Path {
            what: "argument",
            shown: shown(&raw.to_string_lossy()),
            why: "it is not valid UTF-8".to_string(),
        })?;
        check_text("argument", &arg, false)?;
        exec.push(exec_word(&arg));
    }

    let mut service: Vec<(String, String)> = vec![
        ("Type".into(), "simple".into()),
        ("ExecStart".into(), exec.join(" ")),
        ("WorkingDirectory".into(), specifiers(&instance_dir)),
    ];
    match &opts.user {
        UnitUser::Dynamic => service.push(("DynamicUser".into(), "yes".into())),
        UnitUser::Named(user) => {
            check_user(user)?;
            service.push(("User".into(), user.clone()));
            service.push(("Group".into(), user.clone()));
        }
        UnitUser::Root => {
            service.push(("User".into(), "root".into()));
            service.push(("Group".into(), "root".into()));
        }
    }
    match &opts.log {
        UnitLog::Journal => {
            service.push(("StandardOutput".into(), "journal".into()));
            service.push(("StandardError".into(), "journal".into()));
            service.push((
                "SyslogIdentifier".into(),
                format!("pocketbase-{}", spec.name),
            ));
        }
        UnitLog::InstanceFile | UnitLog::File(_) => {
            let file = match &opts.log {
                UnitLog::File(file) => file.clone(),
                _ => spec.log_file(),
            };
            let file = specifiers(&path_text("log file", &file, false)?);
            service.push(("StandardOutput".into(), format!("append:{file}")));
            service.push(("StandardError".into(), format!("append:{file}")));
        }
    }
    service.push(("LimitNOFILE".into(), "4096".into()));
    service.push(("Restart".into(), "always".into()));
    service.push(("RestartSec".into(), restart_sec(opts.restart_sec)));
    if let Some(max) = &opts.memory_max {
        check_memory_max(max)?;
        service.push(("MemoryMax".into(), max.clone()));
    }
    if let Some(quota) = &opts.cpu_quota {
        check_cpu_quota(quota)?;
        service.push(("CPUQuota".into(), quota.clone()));
    }
    if opts.hardening {
        hardening(&mut service, spec, opts, &binary, &instance_dir);
    } else if let Some(path) = spec
        .path_without_browser(None)
        .and_then(|p| p.into_string().ok())
    {
        // Without a mount namespace to hide `xdg-open` in, the embedded
        // supervisor's way: a PATH that finds ours first (see the module doc).
        service.push(("Environment".into(), format!("PATH={}", specifiers(&path))));
    }
    for (key, value) in spec.env() {
        check_text("environment", &value, false)?;
        service.push((
            "Environment".into(),
            format!("\"{key}={}\"", specifiers(&value)),
        ));
    }
    for (key, value) in &opts.extra {
        check_override(key, value)?;
        match service.iter().position(|(k, _)| k == key) {
            Some(first) => {
                service[first].1 = value.clone();
                let mut seen = 0;
                service.retain(|(k, _)| {
                    if k != key {
                        return true;
                    }
                    seen += 1;
                    seen == 1
                });
            }
            None => service.push((key.clone(), value.clone())),
        }
    }

    let mut out = String::new();
    out.push_str("# Written by pockestrator: changes here are overwritten.\n");
    out.push_str("[Unit]\n");
    let _ = writeln!(
        out,
        "Description=PocketBase instance {} (pockestrator)",
        spec.name
    );
    out.push_str("After=network.target\n\n[Service]\n");
    for (key, value) in &service {
        let _ = writeln!(out, "{key}={value}");
    }
    out.push_str("\n[Install]\nWantedBy=multi-user.target\n");
    Ok(out)
}

/// The sha256 of a unit's text, in hex: what is stored to detect drift.
pub fn unit_hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn hardening(
    service: &mut Vec<(String, String)>,
    spec: &LaunchSpec,
    opts: &UnitOptions,
    binary: &str,
    instance_dir: &str,
) {
    let mut set = |k: &str, v: &str| service.push((k.to_string(), v.to_string()));
    set("UMask", "0077");
    set("NoNewPrivileges", "yes");
    set("ProtectSystem", "strict");
    let state_dir = match opts.user {
        UnitUser::Dynamic => spec
            .instance_dir
            .strip_prefix("/var/lib")
            .ok()
            .filter(|rest| !rest.as_os_str().is_empty())
            .map(|rest| rest.to_string_lossy().into_owned()),
        _ => None,
    };
    match state_dir {
        Some(rest) => set("StateDirectory", &specifiers(&rest)),
        None => set("ReadWritePaths", &specifiers(instance_dir)),
    }
    // A binary or instance under a home directory must stay visible.
    let in_home = [binary, instance_dir].iter().any(|p| {
        ["/home", "/root", "/run/user"]
            .iter()
            .any(|home| Path::new(p).starts_with(home))
    });
    set("ProtectHome", if in_home { "read-only" } else { "yes" });
    set("PrivateTmp", "yes");
    set("PrivateDevices", "yes");
    set("PrivateMounts", "yes");
    if opts.user != UnitUser::Root {
        set("PrivateUsers", "yes");
    }
    set("ProtectHostname", "yes");
    set("ProtectClock", "yes");
    set("ProtectKernelTunables", "yes");
    set("ProtectKernelModules", "yes");
    set("ProtectKernelLogs", "yes");
    set("ProtectControlGroups", "yes");
    set("ProtectProc", "invisible");
    set("ProcSubset", "pid");
    set("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX");
    set("RestrictNamespaces", "yes");
    set("RestrictRealtime", "yes");
    set("RestrictSUIDSGID", "yes");
    set("RemoveIPC", "yes");
    set("LockPersonality", "yes");
    if opts.memory_deny_write_execute {
        set("MemoryDenyWriteExecute", "yes");
    }
    set("SystemCallFilter", "@system-service");
    set("SystemCallFilter", "~@privileged @resources");
    set("SystemCallErrorNumber", "EPERM");
    set("SystemCallArchitectures", "native");
    set("CapabilityBoundingSet", "");
    set("AmbientCapabilities", "");
    set("DevicePolicy", "closed");
    set("KeyringMode", "private");
    // PocketBase without a superuser starts `xdg-open` to show its
    // installer and never reaps it: a zombie per start. Unreachable, it is
    // not found on the PATH and no child is made (see the module doc).
    set("InaccessiblePaths", NO_BROWSER_PATHS);
}

/// Where `xdg-open` may be on systemd's default `PATH`; `-`: if present.
const NO_BROWSER_PATHS: &str = "-/usr/local/bin/xdg-open -/usr/bin/xdg-open";

/// A path as text we can write into a unit file, or why not.
fn path_text(what: &'static str, path: &Path, allow_spaces: bool) -> Result<String, UnitError> {
    let text = path.to_str().ok_or_else(|| UnitError::Path {
        what,
        shown: shown(&path.to_string_lossy()),
        why: "it is not valid UTF-8".to_string(),
    })?;
    if !path.is_absolute() {
        return Err(UnitError::Path {
            what,
            shown: shown(text),
            why: "it must be an absolute path".to_string(),
        });
    }
    check_text(what, text, allow_spaces)?;
    Ok(text.to_string())
}

fn check_text(what: &'static str, text: &str, allow_spaces: bool) -> Result<(), UnitError> {
    let bad = text.chars().find(|&c| {
        c.is_control()
            || matches!(c, '"' | '\'' | '\\')
            || (c.is_whitespace() && !(allow_spaces && c == ' '))
    });
    match bad {
        Some(c) => Err(UnitError::Path {
            what,
            shown: shown(text),
            why: format!(
                "it contains {c:?}, which systemd would interpret; use a path without quotes, backslashes, control characters{}",
                if allow_spaces { "" } else { " or whitespace" }
            ),
        }),
        None => Ok(()),
    }
}

/// `%` starts a specifier in almost every setting.
fn specifiers(text: &str) -> String {
    text.replace('%', "%%")
}

/// One word of `ExecStart=`: specifiers and variables escaped, quoted when
/// it contains spaces (quotes and backslashes were refused before).
fn exec_word(text: &str) -> String {
    let escaped = specifiers(text).replace('$', "$$");
    if escaped.contains(' ') {
        format!("\"{escaped}\"")
    } else {
        escaped
    }
}

fn restart_sec(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn check_user(user: &str) -> Result<(), UnitError> {
    let ok = (1..=31).contains(&user.len())
        && user.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && user
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok && user != "root" {
        Ok(())
    } else {
        Err(UnitError::Setting {
            what: "user".to_string(),
            shown: shown(user),
            why: "use 1 to 31 characters of a-z, 0-9, '_' and '-', starting with a letter or '_', and not root (use the root user mode)".to_string(),
        })
    }
}

/// Check a `MemoryMax=` value.
pub fn check_memory_max(raw: &str) -> Result<(), UnitError> {
    MemoryMax::parse(raw).map(drop).map_err(UnitError::from)
}

/// Check a `CPUQuota=` value.
pub fn check_cpu_quota(raw: &str) -> Result<(), UnitError> {
    CpuQuota::parse(raw).map(drop).map_err(UnitError::from)
}

impl From<LimitError> for UnitError {
    fn from(e: LimitError) -> Self {
        UnitError::Setting {
            what: e.what.to_string(),
            shown: e.shown,
            why: e.why.to_string(),
        }
    }
}

/// Check one `[Service]` override (`--unit-setting KEY=VALUE`).
pub fn check_override(key: &str, value: &str) -> Result<(), UnitError> {
    let key_ok = !key.is_empty()
        && key.len() <= 64
        && key.starts_with(|c: char| c.is_ascii_uppercase())
        && key.chars().all(|c| c.is_ascii_alphanumeric());
    if !key_ok {
        return Err(UnitError::Setting {
            what: "setting name".to_string(),
            shown: shown(key),
            why: "use a systemd [Service] setting name like MemoryMax".to_string(),
        });
    }
    if key == "ExecStart" {
        return Err(UnitError::Setting {
            what: "setting".to_string(),
            shown: shown(key),
            why: "the command line is the instance's own; change the version or binary instead"
                .to_string(),
        });
    }
    if value.chars().any(|c| c.is_control()) || value.ends_with('\\') {
        return Err(UnitError::Setting {
            what: format!("value of {key}"),
            shown: shown(value),
            why: "it must be one line without control characters or a trailing backslash"
                .to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn spec() -> LaunchSpec {
        LaunchSpec {
            name: InstanceName::parse("moots").unwrap(),
            binary: PathBuf::from("/var/lib/pockestrator/versions/0.40.6/pocketbase"),
            instance_dir: PathBuf::from("/var/lib/pockestrator/instances/moots"),
            port: 8094,
            limits: Default::default(),
            release: None,
            release_binary: false,
        }
    }

    fn check(spec: &LaunchSpec, opts: &UnitOptions, expect: Expect) {
        let got = match render_unit(spec, opts) {
            Ok(text) => text,
            Err(e) => format!("err {e}"),
        };
        expect.assert_eq(&got);
    }

    #[test]
    fn default_unit() {
        check(
            &spec(),
            &UnitOptions::default(),
            expect![[r#"
                # Written by pockestrator: changes here are overwritten.
                [Unit]
                Description=PocketBase instance moots (pockestrator)
                After=network.target

                [Service]
                Type=simple
                ExecStart=/var/lib/pockestrator/versions/0.40.6/pocketbase serve --http=127.0.0.1:8094 --dir=/var/lib/pockestrator/instances/moots/pb_data --hooksDir=/var/lib/pockestrator/instances/moots/pb_hooks --migrationsDir=/var/lib/pockestrator/instances/moots/pb_migrations --publicDir=/var/lib/pockestrator/instances/moots/pb_public
                WorkingDirectory=/var/lib/pockestrator/instances/moots
                User=pockestrator
                Group=pockestrator
                StandardOutput=journal
                StandardError=journal
                SyslogIdentifier=pocketbase-moots
                LimitNOFILE=4096
                Restart=always
                RestartSec=1s
                UMask=0077
                NoNewPrivileges=yes
                ProtectSystem=strict
                ReadWritePaths=/var/lib/pockestrator/instances/moots
                ProtectHome=yes
                PrivateTmp=yes
                PrivateDevices=yes
                PrivateMounts=yes
                PrivateUsers=yes
                ProtectHostname=yes
                ProtectClock=yes
                ProtectKernelTunables=yes
                ProtectKernelModules=yes
                ProtectKernelLogs=yes
                ProtectControlGroups=yes
                ProtectProc=invisible
                ProcSubset=pid
                RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
                RestrictNamespaces=yes
                RestrictRealtime=yes
                RestrictSUIDSGID=yes
                RemoveIPC=yes
                LockPersonality=yes
                MemoryDenyWriteExecute=yes
                SystemCallFilter=@system-service
                SystemCallFilter=~@privileged @resources
                SystemCallErrorNumber=EPERM
                SystemCallArchitectures=native
                CapabilityBoundingSet=
                AmbientCapabilities=
                DevicePolicy=closed
                KeyringMode=private
                InaccessiblePaths=-/usr/local/bin/xdg-open -/usr/bin/xdg-open

                [Install]
                WantedBy=multi-user.target
            "#]],
        );
    }

    /// Only the lines that differ from the default unit, `-` and `+`.
    fn diff_from_default(spec: &LaunchSpec, opts: &UnitOptions) -> String {
        let base = render_unit(spec, &UnitOptions::default()).unwrap();
        let got = match render_unit(spec, opts) {
            Ok(text) => text,
            Err(e) => return format!("err {e}"),
        };
        let base_lines: Vec<&str> = base.lines().collect();
        let got_lines: Vec<&str> = got.lines().collect();
        let mut out = String::new();
        for l in &base_lines {
            if !got_lines.contains(l) {
                let _ = writeln!(out, "-{l}");
            }
        }
        for l in &got_lines {
            if !base_lines.contains(l) {
                let _ = writeln!(out, "+{l}");
            }
        }
        out
    }

    #[test]
    fn limits_dynamic_user_and_overrides() {
        let opts = UnitOptions {
            user: UnitUser::Dynamic,
            memory_max: Some("512M".to_string()),
            cpu_quota: Some("50%".to_string()),
            restart_sec: Duration::from_millis(1500),
            extra: vec![
                ("ProtectProc".to_string(), "noaccess".to_string()),
                (
                    "SystemCallFilter".to_string(),
                    "@system-service".to_string(),
                ),
                ("IPAddressDeny".to_string(), "any".to_string()),
            ],
            ..UnitOptions::default()
        };
        expect![[r#"
            -User=pockestrator
            -Group=pockestrator
            -RestartSec=1s
            -ReadWritePaths=/var/lib/pockestrator/instances/moots
            -ProtectProc=invisible
            -SystemCallFilter=~@privileged @resources
            +DynamicUser=yes
            +RestartSec=1500ms
            +MemoryMax=512M
            +CPUQuota=50%
            +StateDirectory=pockestrator/instances/moots
            +ProtectProc=noaccess
            +IPAddressDeny=any
        "#]]
        .assert_eq(&diff_from_default(&spec(), &opts));
    }

    #[test]
    fn dynamic_user_outside_var_lib_gets_read_write_paths() {
        let spec = LaunchSpec {
            instance_dir: PathBuf::from("/srv/pb/moots"),
            ..spec()
        };
        let opts = UnitOptions {
            user: UnitUser::Dynamic,
            ..UnitOptions::default()
        };
        let text = render_unit(&spec, &opts).unwrap();
        assert!(text.contains("\nReadWritePaths=/srv/pb/moots\n"), "{text}");
        assert!(!text.contains("StateDirectory"), "{text}");
    }

    #[test]
    fn log_to_file_root_and_no_hardening() {
        let opts = UnitOptions {
            log: UnitLog::InstanceFile,
            ..UnitOptions::default()
        };
        expect![[r#"
            -StandardOutput=journal
            -StandardError=journal
            -SyslogIdentifier=pocketbase-moots
            +StandardOutput=append:/var/lib/pockestrator/instances/moots/logs/pocketbase.log
            +StandardError=append:/var/lib/pockestrator/instances/moots/logs/pocketbase.log
        "#]]
        .assert_eq(&diff_from_default(&spec(), &opts));

        let opts = UnitOptions {
            user: UnitUser::Root,
            log: UnitLog::File(PathBuf::from("/home/ubuntu/moots/errors.log")),
            memory_deny_write_execute: false,
            ..UnitOptions::default()
        };
        expect![[r#"
            -User=pockestrator
            -Group=pockestrator
            -StandardOutput=journal
            -StandardError=journal
            -SyslogIdentifier=pocketbase-moots
            -PrivateUsers=yes
            -MemoryDenyWriteExecute=yes
            +User=root
            +Group=root
            +StandardOutput=append:/home/ubuntu/moots/errors.log
            +StandardError=append:/home/ubuntu/moots/errors.log
        "#]]
        .assert_eq(&diff_from_default(&spec(), &opts));

        let opts = UnitOptions {
            hardening: false,
            ..UnitOptions::default()
        };
        let text = render_unit(&spec(), &opts).unwrap();
        expect![[r#"
            # Written by pockestrator: changes here are overwritten.
            [Unit]
            Description=PocketBase instance moots (pockestrator)
            After=network.target

            [Service]
            Type=simple
            ExecStart=/var/lib/pockestrator/versions/0.40.6/pocketbase serve --http=127.0.0.1:8094 --dir=/var/lib/pockestrator/instances/moots/pb_data --hooksDir=/var/lib/pockestrator/instances/moots/pb_hooks --migrationsDir=/var/lib/pockestrator/instances/moots/pb_migrations --publicDir=/var/lib/pockestrator/instances/moots/pb_public
            WorkingDirectory=/var/lib/pockestrator/instances/moots
            User=pockestrator
            Group=pockestrator
            StandardOutput=journal
            StandardError=journal
            SyslogIdentifier=pocketbase-moots
            LimitNOFILE=4096
            Restart=always
            RestartSec=1s
            Environment=PATH=/var/lib/pockestrator/instances/moots/.pockestrator/no-browser:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin

            [Install]
            WantedBy=multi-user.target
        "#]]
        .assert_eq(&text);
    }

    #[test]
    fn seed_layout_under_home_stays_visible() {
        let spec = LaunchSpec {
            name: InstanceName::parse("moots").unwrap(),
            binary: PathBuf::from("/home/ubuntu/moots/pocketbase"),
            instance_dir: PathBuf::from("/home/ubuntu/moots"),
            port: 8094,
            limits: Default::default(),
            release: None,
            release_binary: false,
        };
        let text = render_unit(&spec, &UnitOptions::default()).unwrap();
        assert!(text.contains("\nProtectHome=read-only\n"), "{text}");
        assert!(
            text.contains("\nReadWritePaths=/home/ubuntu/moots\n"),
            "{text}"
        );
    }

    #[test]
    fn awkward_paths_are_escaped_or_refused() {
        let with = |binary: &str, dir: &str| {
            let spec = LaunchSpec {
                binary: PathBuf::from(binary),
                instance_dir: PathBuf::from(dir),
                ..spec()
            };
            match render_unit(&spec, &UnitOptions::default()) {
                Ok(text) => text
                    .lines()
                    .filter(|l| {
                        l.starts_with("ExecStart=")
                            || l.starts_with("WorkingDirectory=")
                            || l.starts_with("ReadWritePaths=")
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
                Err(e) => format!("err {e}"),
            }
        };
        expect![[r#"
            ExecStart="/opt/Pocket Base/100%%/pocketbase" serve --http=127.0.0.1:8094 --dir=/srv/50%%/a$$b/pb_data --hooksDir=/srv/50%%/a$$b/pb_hooks --migrationsDir=/srv/50%%/a$$b/pb_migrations --publicDir=/srv/50%%/a$$b/pb_public
            WorkingDirectory=/srv/50%%/a$b
            ReadWritePaths=/srv/50%%/a$b"#]]
        .assert_eq(&with("/opt/Pocket Base/100%/pocketbase", "/srv/50%/a$b"));
        expect![[r#"err binary "/opt/$HOME/pocketbase" cannot be written into a unit file: it contains '$', which systemd would expand in the command line; use a path without it"#]].assert_eq(&with("/opt/$HOME/pocketbase", "/srv/moots"));
        expect![[r#"err instance directory "/srv/two words" cannot be written into a unit file: it contains ' ', which systemd would interpret; use a path without quotes, backslashes, control characters or whitespace"#]]
        .assert_eq(&with("/opt/pocketbase", "/srv/two words"));
        expect![[r#"err binary "/opt/pb\nExecStartPre=/bin/sh" cannot be written into a unit file: it contains '\n', which systemd would interpret; use a path without quotes, backslashes, control characters"#]]
        .assert_eq(&with("/opt/pb\nExecStartPre=/bin/sh", "/srv/moots"));
        expect![[r#"err binary "/opt/\"pb\"" cannot be written into a unit file: it contains '"', which systemd would interpret; use a path without quotes, backslashes, control characters"#]]
        .assert_eq(&with("/opt/\"pb\"", "/srv/moots"));
        expect![[r#"err binary "/opt/pb\\x20" cannot be written into a unit file: it contains '\\', which systemd would interpret; use a path without quotes, backslashes, control characters"#]]
        .assert_eq(&with("/opt/pb\\x20", "/srv/moots"));
        expect![[r#"err binary "pocketbase" cannot be written into a unit file: it must be an absolute path"#]]
        .assert_eq(&with("pocketbase", "/srv/moots"));
        expect![[r#"err instance directory "/srv/tab\there" cannot be written into a unit file: it contains '\t', which systemd would interpret; use a path without quotes, backslashes, control characters or whitespace"#]]
        .assert_eq(&with("/opt/pocketbase", "/srv/tab\there"));
    }

    #[test]
    fn bad_settings_are_refused() {
        let refuse = |opts: UnitOptions| match render_unit(&spec(), &opts) {
            Ok(_) => "ok".to_string(),
            Err(e) => e.to_string(),
        };
        let shown: Vec<String> = vec![
            refuse(UnitOptions {
                memory_max: Some("512MB".into()),
                ..UnitOptions::default()
            }),
            refuse(UnitOptions {
                memory_max: Some("1G\nExecStartPre=/bin/sh".into()),
                ..UnitOptions::default()
            }),
            refuse(UnitOptions {
                cpu_quota: Some("0.5".into()),
                ..UnitOptions::default()
            }),
            refuse(UnitOptions {
                user: UnitUser::Named("Bad User".into()),
                ..UnitOptions::default()
            }),
            refuse(UnitOptions {
                extra: vec![("ExecStartPre".into(), "/bin/true\nUser=root".into())],
                ..UnitOptions::default()
            }),
            refuse(UnitOptions {
                extra: vec![("Exec Start".into(), "x".into())],
                ..UnitOptions::default()
            }),
            refuse(UnitOptions {
                extra: vec![("ExecStart".into(), "/bin/sh".into())],
                ..UnitOptions::default()
            }),
            refuse(UnitOptions {
                memory_max: Some("infinity".into()),
                cpu_quota: Some("200%".into()),
                ..UnitOptions::default()
            }),
        ];
        expect![[r#"
            memory limit "512MB" is not valid: use bytes with an optional K, M, G or T suffix (e.g. 512M), a percentage, or infinity
            memory limit "1G\nExecStartPre=/bin/sh" is not valid: use bytes with an optional K, M, G or T suffix (e.g. 512M), a percentage, or infinity
            CPU quota "0.5" is not valid: use a percentage of one CPU, e.g. 50% or 200%
            user "Bad User" is not valid: use 1 to 31 characters of a-z, 0-9, '_' and '-', starting with a letter or '_', and not root (use the root user mode)
            value of ExecStartPre "/bin/true\nUser=root" is not valid: it must be one line without control characters or a trailing backslash
            setting name "Exec Start" is not valid: use a systemd [Service] setting name like MemoryMax
            setting "ExecStart" is not valid: the command line is the instance's own; change the version or binary instead
            ok"#]]
        .assert_eq(&shown.join("\n"));
    }

    fn check_name(pattern: &str, name: &str, expect: Expect) {
        let name = InstanceName::parse(name).unwrap();
        let got = match unit_name(pattern, &name) {
            Ok(u) => format!("ok {u}"),
            Err(e) => format!("err {e}"),
        };
        expect.assert_eq(&got);
    }

    #[test]
    fn unit_names() {
        check_name(
            "pockestrator-{name}.service",
            "moots",
            expect!["ok pockestrator-moots.service"],
        );
        check_name(
            "{name}-pocketbase.service",
            "moots",
            expect!["ok moots-pocketbase.service"],
        );
        check_name(
            "pockestrator.service",
            "moots",
            expect![[
                r#"err unit name pattern "pockestrator.service" is not usable: it must contain {name}"#
            ]],
        );
        check_name(
            "pb-{name}",
            "moots",
            expect![[
                r#"err unit name pattern "pb-{name}" is not usable: it must end in .service"#
            ]],
        );
        check_name(
            "pb-{name}.socket",
            "moots",
            expect![[
                r#"err unit name pattern "pb-{name}.socket" is not usable: it must end in .service"#
            ]],
        );
        check_name(
            "pb@{name}.service",
            "moots",
            expect![[
                r#"err unit name "pb@moots.service" is not a valid systemd unit name: it contains '@'; use A-Z, a-z, 0-9, ':', '_', '.' and '-'"#
            ]],
        );
        check_name(
            "pb %i {name}.service",
            "moots",
            expect![[
                r#"err unit name "pb %i moots.service" is not a valid systemd unit name: it contains ' '; use A-Z, a-z, 0-9, ':', '_', '.' and '-'"#
            ]],
        );
        check_name(
            "pb-{name}\n[Service].service",
            "moots",
            expect![[
                r#"err unit name "pb-moots\n[Service].service" is not a valid systemd unit name: it contains '\n'; use A-Z, a-z, 0-9, ':', '_', '.' and '-'"#
            ]],
        );
        check_name(
            "../{name}.service",
            "moots",
            expect![[
                r#"err unit name "../moots.service" is not a valid systemd unit name: it contains '/'; use A-Z, a-z, 0-9, ':', '_', '.' and '-'"#
            ]],
        );
        check_name(
            &format!("{}{{name}}.service", "x".repeat(200)),
            &"a".repeat(63),
            expect!["err unit name \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…\" is not a valid systemd unit name: it is 271 characters long; the limit is 255"],
        );
    }

    #[test]
    fn hash_is_sha256_hex() {
        expect!["e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]
            .assert_eq(&unit_hash(""));
        let text = render_unit(&spec(), &UnitOptions::default()).unwrap();
        assert_eq!(unit_hash(&text), unit_hash(&text.clone()));
        assert_ne!(unit_hash(&text), unit_hash(&format!("{text}\n")));
    }
}
