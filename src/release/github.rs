//! GitHub releases of pocketbase/pocketbase through the REST API: list
//! releases page by page, find one release by tag, and take the sha256 of
//! the zip from the release's `checksums.txt` asset.

use reqwest::header::{HeaderName, ACCEPT, AUTHORIZATION};
use semver::Version;
use serde::Deserialize;

use super::artifact::{release_zip_name, Artifact, Location, Member};
use super::checksums;
use super::error::ReleaseError;
use super::http::{status_error, Fetched, Http};
use super::spec::Arch;

/// GitHub allows at most 100 releases per page.
const PER_PAGE: u32 = 100;
/// PocketBase has a few hundred releases; this bounds a misbehaving API.
const MAX_PAGES: u32 = 50;

pub(crate) struct Github {
    pub label: String,
    api_base: String,
    /// Read once: raises the API rate limit from 60 to 5000 requests/hour.
    token: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ApiRelease {
    tag_name: String,
    #[serde(default)]
    draft: bool,
    #[serde(default)]
    assets: Vec<ApiAsset>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ApiAsset {
    name: String,
    browser_download_url: String,
    /// `sha256:<hex>`, present on assets uploaded since mid-2025.
    #[serde(default)]
    digest: Option<String>,
}

impl Github {
    pub fn new(label: String, api_base: &str) -> Self {
        let token = std::env::var("GITHUB_TOKEN")
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        Self {
            label,
            api_base: api_base.trim_end_matches('/').to_string(),
            token,
        }
    }

    fn api_headers(&self) -> Vec<(HeaderName, String)> {
        let mut headers = vec![
            (ACCEPT, "application/vnd.github+json".to_string()),
            (
                HeaderName::from_static("x-github-api-version"),
                "2022-11-28".to_string(),
            ),
        ];
        if let Some(token) = &self.token {
            headers.push((AUTHORIZATION, format!("Bearer {token}")));
        }
        headers
    }

    async fn api_get(&self, http: &Http, url: &str) -> Result<Fetched, ReleaseError> {
        let fetched = http.get(&self.label, url, &self.api_headers()).await?;
        let status = fetched.status;
        if status.is_success() || status.as_u16() == 404 {
            return Ok(fetched);
        }
        let rate_limited = fetched
            .headers
            .get("x-ratelimit-remaining")
            .is_some_and(|v| v.as_bytes() == b"0");
        let hint = if rate_limited || status.as_u16() == 429 {
            if self.token.is_some() {
                "; the GitHub API rate limit is used up: wait for it to reset, or use another release source"
            } else {
                "; the GitHub API rate limit is used up: set GITHUB_TOKEN, wait an hour, or use another release source"
            }
        } else if status.as_u16() == 401 {
            "; GITHUB_TOKEN is not accepted: fix or unset it"
        } else {
            ""
        };
        Err(status_error(&self.label, url, status, hint))
    }

    fn parse<T: serde::de::DeserializeOwned>(&self, fetched: &Fetched) -> Result<T, ReleaseError> {
        serde_json::from_slice(&fetched.body).map_err(|e| ReleaseError::BadResponse {
            source_name: self.label.clone(),
            url: fetched.url.to_string(),
            reason: format!("not the JSON of GitHub's releases API ({e})"),
        })
    }

    pub async fn list(&self, http: &Http, arch: Arch) -> Result<Vec<Version>, ReleaseError> {
        let mut versions = Vec::new();
        for page in 1..=MAX_PAGES {
            let url = format!(
                "{}/repos/pocketbase/pocketbase/releases?per_page={PER_PAGE}&page={page}",
                self.api_base
            );
            let fetched = self.api_get(http, &url).await?;
            if !fetched.status.is_success() {
                return Err(status_error(&self.label, &url, fetched.status, ""));
            }
            let releases: Vec<ApiRelease> = self.parse(&fetched)?;
            if releases.is_empty() {
                break;
            }
            versions.extend(versions_with_asset(&releases, arch));
        }
        Ok(versions)
    }

    pub async fn locate(
        &self,
        http: &Http,
        version: &Version,
        arch: Arch,
    ) -> Result<Option<Artifact>, ReleaseError> {
        let url = format!(
            "{}/repos/pocketbase/pocketbase/releases/tags/v{version}",
            self.api_base
        );
        let fetched = self.api_get(http, &url).await?;
        if fetched.status.as_u16() == 404 {
            return Ok(None);
        }
        let release: ApiRelease = self.parse(&fetched)?;
        let zip_name = release_zip_name(version, arch);
        let Some(asset) = release.assets.iter().find(|a| a.name == zip_name) else {
            return Ok(None);
        };
        let sha256 = match release.assets.iter().find(|a| a.name == "checksums.txt") {
            Some(sums) => {
                let fetched = http
                    .get(&self.label, &sums.browser_download_url, &[])
                    .await?;
                if !fetched.status.is_success() {
                    return Err(status_error(
                        &self.label,
                        &sums.browser_download_url,
                        fetched.status,
                        "",
                    ));
                }
                checksums::find(&fetched.text(), &zip_name).ok_or_else(|| {
                    ReleaseError::MissingChecksum {
                        source_name: self.label.clone(),
                        file: zip_name.clone(),
                    }
                })?
            }
            // Older releases without checksums.txt still carry the digest
            // GitHub computed at upload time.
            None => asset
                .digest
                .as_deref()
                .and_then(|d| d.strip_prefix("sha256:"))
                .and_then(checksums::normalize_sha256)
                .ok_or_else(|| ReleaseError::MissingChecksum {
                    source_name: self.label.clone(),
                    file: zip_name.clone(),
                })?,
        };
        Ok(Some(Artifact {
            location: Location::Url(asset.browser_download_url.clone()),
            file_name: zip_name,
            sha256,
            member: Member::ReleaseZip,
        }))
    }
}

/// The versions of published (non-draft) releases that have a Linux zip
/// for `arch`.
pub(crate) fn versions_with_asset(releases: &[ApiRelease], arch: Arch) -> Vec<Version> {
    releases
        .iter()
        .filter(|r| !r.draft)
        .filter_map(|r| {
            let version =
                Version::parse(r.tag_name.strip_prefix('v').unwrap_or(&r.tag_name)).ok()?;
            let zip_name = release_zip_name(&version, arch);
            r.assets
                .iter()
                .any(|a| a.name == zip_name)
                .then_some(version)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn lists_published_releases_with_a_linux_zip() {
        let json = r#"[
          {"tag_name": "v0.29.0", "draft": true, "assets": [{"name": "pocketbase_0.29.0_linux_amd64.zip", "browser_download_url": "x"}]},
          {"tag_name": "v0.28.4", "prerelease": false, "assets": [
            {"name": "checksums.txt", "browser_download_url": "x"},
            {"name": "pocketbase_0.28.4_linux_amd64.zip", "browser_download_url": "x"},
            {"name": "pocketbase_0.28.4_linux_arm64.zip", "browser_download_url": "x"}]},
          {"tag_name": "v0.22.30", "assets": [{"name": "pocketbase_0.22.30_linux_arm64.zip", "browser_download_url": "x"}]},
          {"tag_name": "v0.41.0-rc.1", "prerelease": true, "assets": [{"name": "pocketbase_0.41.0-rc.1_linux_amd64.zip", "browser_download_url": "x", "digest": "sha256:00"}]},
          {"tag_name": "not-a-version", "assets": []}
        ]"#;
        let releases: Vec<ApiRelease> = serde_json::from_str(json).unwrap();
        let show = |arch| {
            versions_with_asset(&releases, arch)
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        expect!["0.28.4 0.41.0-rc.1"].assert_eq(&show(Arch::Amd64));
        expect!["0.28.4 0.22.30"].assert_eq(&show(Arch::Arm64));
    }
}
