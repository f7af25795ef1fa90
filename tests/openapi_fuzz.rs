//! The OpenAPI document held against the real daemon by a property-based
//! fuzzer: schemathesis (pinned, installed by `scripts/fetch-test-deps`)
//! reads `/api/v1/openapi.json` with the bearer token and runs every check
//! through its coverage, fuzzing and stateful phases with a fixed seed.
//! A request the document allows must be accepted, one it forbids refused,
//! every answer must be documented, and nothing may answer 5xx.
//!
//! Only the event stream is left out (it never ends; it has tests of its
//! own), and `tests/data/schemathesis_hooks.py` narrows what depends on
//! this host: the releases of the offline mirror, the real PocketBase
//! binary, no `follow=true` on the logs.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::daemon::Daemon;
use crate::support::{deps_dir, mirror_dir, pocketbase_bin, skip, PB_NEW, QUIET_PORTS_END};

/// The whole run's bound: about two minutes of fuzzing, with room for a
/// busy machine.
const RUN_LIMIT: Duration = Duration::from_secs(420);

fn schemathesis_bin() -> PathBuf {
    deps_dir().join("../venv-schemathesis/bin/schemathesis")
}

/// The versions the mirror holds, and `latest`.
fn mirror_releases() -> Vec<String> {
    let mut releases = vec!["latest".to_string()];
    let mut versions: Vec<String> = std::fs::read_dir(mirror_dir())
        .expect("read the mirror")
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix('v').map(str::to_string)
        })
        .collect();
    versions.sort();
    releases.extend(versions);
    releases
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_failure() {
    let schemathesis = schemathesis_bin();
    if !schemathesis.exists() {
        skip(
            "openapi_fuzz::schemathesis_finds_no_failure",
            &format!(
                "{} is missing: run scripts/fetch-test-deps",
                schemathesis.display()
            ),
        );
        return;
    }
    // Seed 001's users get ports from PB_BASE_PORT up; keep them below the
    // kernel's ephemeral range (32768 on), where the ports other tests get
    // from the kernel — and every outgoing connection's own port — live, so
    // a port found free is still free when its PocketBase binds it.
    // Above the quiet ports other tests use, with room for the users the
    // fuzzer makes.
    let base = QUIET_PORTS_END + (std::process::id() % 2_000) as u16;
    let dbs = tempfile::tempdir().unwrap();
    let binary = pocketbase_bin(PB_NEW);
    let d = Daemon::start_with(
        &[],
        &[
            ("PB_BINARY_PATH", binary.to_str().unwrap()),
            ("PB_BASE_PORT", &base.to_string()),
            ("PB_USER_DBS_PATH", dbs.path().to_str().unwrap()),
        ],
    )
    .await;
    // Something for the stateful phase's links to find from the start.
    let (code, v) = d
        .post(
            "/api/v1/instances",
            json!({"name": "alpha", "version": PB_NEW}),
        )
        .await;
    assert_eq!(code, 201, "{v}\n{}", d.log());

    let work = tempfile::tempdir().unwrap();
    let backups = tempfile::tempdir().unwrap();
    let hooks = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut child = Command::new(&schemathesis)
        .arg("run")
        .arg(d.url("/api/v1/openapi.json"))
        .args(["-H", &format!("Authorization: Bearer {}", d.token)])
        .args(["--checks", "all"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--seed", "1"])
        .args(["--max-examples", "20"])
        .args(["--workers", "1"])
        .args(["--request-timeout", "60"])
        .args(["--exclude-path", "/api/v1/events/stream"])
        // Hypothesis keeps its database in the working directory.
        .current_dir(work.path())
        .env("PYTHONPATH", &hooks)
        .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
        .env("POCKESTRATOR_FUZZ_RELEASES", mirror_releases().join(","))
        .env("POCKESTRATOR_FUZZ_BINARY", &binary)
        .env("POCKESTRATOR_FUZZ_BACKUP_DIR", backups.path())
        .env("NO_COLOR", "1")
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn schemathesis");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let output = format!(
        "{}\n{}",
        out_reader.join().unwrap(),
        err_reader.join().unwrap()
    );
    eprintln!("schemathesis ran for {:?}", started.elapsed());
    let Some(status) = status else {
        panic!("schemathesis did not finish within {RUN_LIMIT:?}:\n{output}");
    };
    let summary = output
        .split("=== SUMMARY ===")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary in schemathesis's output:\n{output}"));
    let cases = summary
        .lines()
        .skip_while(|l| !l.starts_with("Test cases:"))
        .nth(1)
        .unwrap_or_else(|| panic!("no test case count in the summary:\n{output}"))
        .trim()
        .to_string();
    eprintln!("schemathesis's summary:{summary}");
    let passed = status.success()
        && !summary.contains("Failures:")
        && !summary.contains("Errors:")
        && cases.contains(" passed")
        && !cases.contains("found");
    if !passed {
        // The whole story in a file; the part that says what failed, and the
        // daemon's last words, in the message (a CI log keeps only so much).
        let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
        let _ = std::fs::create_dir_all(&artifacts);
        let saved = artifacts.join("openapi-fuzz.log");
        let _ = std::fs::write(&saved, format!("{output}\n--- daemon log ---\n{}", d.log()));
        let failures: String = output
            .split("=== FAILURES ===")
            .nth(1)
            .or_else(|| output.split("=== ERRORS ===").nth(1))
            .unwrap_or(&output)
            .chars()
            .take(6_000)
            .collect();
        let log = d.log();
        let tail: Vec<&str> = log.lines().rev().take(25).collect();
        panic!(
            "schemathesis found failures ({status}); all of it in {}:\n{failures}\n--- summary ---{summary}\n--- the daemon's last lines ---\n{}",
            saved.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    // It did test: every operation but the stream, with real cases.
    assert!(summary.contains("Tested: 59"), "{summary}");
    let generated: u32 = cases
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(generated > 500, "only {generated} cases: {summary}");
}
