//! Deploys as values: their ids and states, the names of release
//! directories, what a repository's `pockestrator.toml` may say, how a
//! deploy's build is recognised from the files a repository holds, which
//! releases a prune keeps, and the webhook signature check.
//!
//! Everything here is pure: the pipeline that fetches, builds and switches
//! is `manager::deploy`, the build runner `crate::build`.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::git::{CommitId, Subdir};
use super::names::shown;
use super::version::Version;

/// What is wrong with a deploy's input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeployError {
    #[error("invalid deploy id {0}: a deploy id is a number (see `pockestrator deploys NAME`)")]
    BadId(String),
    #[error("invalid release name {0}")]
    BadRelease(String),
    #[error("pockestrator.toml: {0}")]
    BadConfig(String),
}

/// A deploy's number: 1 for an instance's first deploy, counting up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeployId(pub u32);

impl DeployId {
    pub fn parse(raw: &str) -> Result<Self, DeployError> {
        let raw = raw.trim_start_matches('#');
        match raw.parse::<u32>() {
            Ok(n) if n > 0 && !raw.starts_with('+') && !raw.starts_with('0') => Ok(Self(n)),
            _ => Err(DeployError::BadId(shown(raw))),
        }
    }

    pub fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

impl fmt::Display for DeployId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a deploy is. `Queued` waits for another deploy of the same
/// instance to end; `Building` fetches and builds beside the running
/// release; `Switching` has stopped the old release; the last two are
/// final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeployStatus {
    Queued,
    Building,
    Switching,
    Succeeded,
    Failed,
}

impl DeployStatus {
    pub const ALL: [DeployStatus; 5] = [
        DeployStatus::Queued,
        DeployStatus::Building,
        DeployStatus::Switching,
        DeployStatus::Succeeded,
        DeployStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeployStatus::Queued => "queued",
            DeployStatus::Building => "building",
            DeployStatus::Switching => "switching",
            DeployStatus::Succeeded => "succeeded",
            DeployStatus::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Whether the deploy has ended.
    pub fn is_final(self) -> bool {
        matches!(self, DeployStatus::Succeeded | DeployStatus::Failed)
    }
}

impl fmt::Display for DeployStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a deploy does: build a commit of the repository, or switch back
/// to a release built before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeployKind {
    Deploy,
    Rollback,
}

impl DeployKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeployKind::Deploy => "deploy",
            DeployKind::Rollback => "rollback",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "deploy" => Some(DeployKind::Deploy),
            "rollback" => Some(DeployKind::Rollback),
            _ => None,
        }
    }
}

/// A release directory's name under the instance's `releases/`:
/// `<deploy id>-<short commit>`, e.g. `7-3f2a9c1d0b7e`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReleaseName(String);

impl ReleaseName {
    pub fn new(id: DeployId, commit: &CommitId) -> Self {
        Self(format!("{}-{}", id.0, commit.short()))
    }

    pub fn parse(raw: &str) -> Result<Self, DeployError> {
        let ok = raw.split_once('-').is_some_and(|(id, commit)| {
            DeployId::parse(id).is_ok()
                && (7..=40).contains(&commit.len())
                && commit
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        });
        if ok {
            Ok(Self(raw.to_string()))
        } else {
            Err(DeployError::BadRelease(shown(raw)))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The deploy that built it.
    pub fn deploy_id(&self) -> DeployId {
        let id = self.0.split_once('-').map_or("", |(id, _)| id);
        DeployId::parse(id).unwrap_or(DeployId(0))
    }
}

impl fmt::Display for ReleaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One command of a build: a program and its arguments, run without a
/// shell.
pub type Argv = Vec<String>;

/// What a repository's optional `pockestrator.toml` says:
///
/// ```toml
/// pocketbase = "0.28.4"             # the PocketBase release the app runs on
///
/// [build]
/// dir = "frontend"                  # where package.json is (default: found)
/// commands = [["npm", "ci"], ["npm", "run", "build"]]
/// output = "dist"                   # copied into pb_public
///
/// [go]
/// dir = "backend"                   # where go.mod is
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    pub pocketbase: Option<String>,
    #[serde(default)]
    pub build: BuildSection,
    #[serde(default)]
    pub go: GoSection,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildSection {
    pub dir: Option<String>,
    pub commands: Option<Vec<Argv>>,
    pub output: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoSection {
    pub dir: Option<String>,
}

/// The file a repository may hold at its top (or under `--subdir`).
pub const REPO_CONFIG_FILE: &str = "pockestrator.toml";

impl RepoConfig {
    /// Parse and check `pockestrator.toml`: directories stay inside the
    /// checkout, commands are argument vectors with a program, the version
    /// is a version.
    pub fn parse(text: &str) -> Result<Self, DeployError> {
        let cfg: RepoConfig =
            toml::from_str(text).map_err(|e| DeployError::BadConfig(one_line(&e.to_string())))?;
        if let Some(v) = &cfg.pocketbase {
            Version::parse(v).map_err(|_| {
                DeployError::BadConfig(format!(
                    "pocketbase = {} is not a version such as \"0.28.4\"",
                    shown(v)
                ))
            })?;
        }
        for (what, dir) in [
            ("build.dir", &cfg.build.dir),
            ("build.output", &cfg.build.output),
            ("go.dir", &cfg.go.dir),
        ] {
            if let Some(dir) = dir {
                Subdir::parse(dir).map_err(|e| DeployError::BadConfig(format!("{what}: {e}")))?;
            }
        }
        if let Some(commands) = &cfg.build.commands {
            if commands.is_empty() {
                return Err(DeployError::BadConfig(
                    "build.commands is empty: leave it out for the default, or give commands"
                        .into(),
                ));
            }
            for argv in commands {
                match argv.first() {
                    None => {
                        return Err(DeployError::BadConfig(
                            "build.commands holds an empty command".into(),
                        ))
                    }
                    Some(p) if p.is_empty() || p.contains('\0') => {
                        return Err(DeployError::BadConfig(format!(
                            "build.commands: {} is not a program",
                            shown(p)
                        )))
                    }
                    Some(_) => {}
                }
                if argv.iter().any(|a| a.contains('\0')) {
                    return Err(DeployError::BadConfig(
                        "build.commands holds a NUL byte".into(),
                    ));
                }
            }
        }
        Ok(cfg)
    }

    /// The PocketBase version pinned, if any.
    pub fn version(&self) -> Option<Version> {
        self.pocketbase
            .as_deref()
            .and_then(|v| Version::parse(v).ok())
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The build a checkout asks for, found from its files (paths relative to
/// the app's root: the checkout, or `--subdir` in it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BuildPlan {
    /// `package.json`'s directory and the commands to run there, and the
    /// directory whose files become `pb_public` (relative to that
    /// directory; `None`: the first of `dist`, `build`, `out` there).
    pub npm: Option<NpmPlan>,
    /// `go.mod`'s directory: a custom PocketBase-based binary is built
    /// there and runs instead of the stock release.
    pub go: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpmPlan {
    pub dir: String,
    pub commands: Vec<Argv>,
    pub output: Option<String>,
}

/// Where a build's output is looked for when `build.output` is not given.
pub const NPM_OUTPUT_DIRS: [&str; 3] = ["dist", "build", "out"];

/// Decide the build from which files exist (`exists` answers for paths
/// relative to the app's root) and the repository's config.
pub fn plan_build(cfg: &RepoConfig, exists: impl Fn(&str) -> bool) -> BuildPlan {
    let join = |dir: &str, file: &str| {
        if dir.is_empty() || dir == "." {
            file.to_string()
        } else {
            format!("{dir}/{file}")
        }
    };
    let npm_dir = match &cfg.build.dir {
        Some(dir) => Some(dir.clone()),
        None => ["", "frontend"]
            .into_iter()
            .find(|d| exists(&join(d, "package.json")))
            .map(str::to_string)
            // Commands of one's own run at the root without a package.json.
            .or_else(|| cfg.build.commands.as_ref().map(|_| String::new())),
    };
    let npm = npm_dir.and_then(|dir| {
        let commands = match &cfg.build.commands {
            Some(c) => c.clone(),
            None if exists(&join(&dir, "package.json")) => {
                let install = if exists(&join(&dir, "package-lock.json"))
                    || exists(&join(&dir, "npm-shrinkwrap.json"))
                {
                    vec!["npm".to_string(), "ci".to_string()]
                } else {
                    vec!["npm".to_string(), "install".to_string()]
                };
                vec![
                    install,
                    vec!["npm".to_string(), "run".to_string(), "build".to_string()],
                ]
            }
            None => return None,
        };
        Some(NpmPlan {
            dir,
            commands,
            output: cfg.build.output.clone(),
        })
    });
    let go_dir = cfg.go.dir.clone().unwrap_or_else(|| "backend".to_string());
    let go = exists(&join(&go_dir, "go.mod")).then_some(go_dir);
    BuildPlan { npm, go }
}

/// Which releases a prune removes: all but the `keep` newest, never the
/// current one nor `protect` (the one being switched to). `releases`
/// may come in any order.
pub fn releases_to_prune(
    releases: &[ReleaseName],
    current: Option<&ReleaseName>,
    protect: Option<&ReleaseName>,
    keep: usize,
) -> Vec<ReleaseName> {
    let mut sorted: Vec<&ReleaseName> = releases.iter().collect();
    sorted.sort_by_key(|r| std::cmp::Reverse(r.deploy_id()));
    sorted
        .into_iter()
        .skip(keep)
        .filter(|r| Some(*r) != current && Some(*r) != protect)
        .cloned()
        .collect()
}

/// Check a webhook's `X-Hub-Signature-256` (`sha256=<hex>`, GitHub's and
/// Gitea's form) against the body and the instance's secret, in constant
/// time.
pub fn signature_ok(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// The signature a sender computes (for tests and for documentation).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The branch a push event is for: `refs/heads/<branch>` in its `ref`.
pub fn pushed_branch(git_ref: &str) -> Option<&str> {
    git_ref.strip_prefix("refs/heads/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_ids() {
        assert_eq!(DeployId::parse("7"), Ok(DeployId(7)));
        assert_eq!(DeployId::parse("#12"), Ok(DeployId(12)));
        for bad in ["", "0", "-1", "+1", "01", "1.5", "x", "99999999999"] {
            assert!(DeployId::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(DeployId(4).next(), DeployId(5));
    }

    #[test]
    fn statuses_round_trip() {
        for s in DeployStatus::ALL {
            assert_eq!(DeployStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(DeployStatus::parse("running"), None);
        assert!(DeployStatus::Failed.is_final());
        assert!(!DeployStatus::Switching.is_final());
    }

    #[test]
    fn release_names() {
        let commit = CommitId::parse("3f2a9c1d0b7e3f2a9c1d0b7e3f2a9c1d0b7e3f2a").unwrap();
        let name = ReleaseName::new(DeployId(7), &commit);
        assert_eq!(name.as_str(), "7-3f2a9c1d0b7e");
        assert_eq!(ReleaseName::parse(name.as_str()), Ok(name.clone()));
        assert_eq!(name.deploy_id(), DeployId(7));
        for bad in [
            "",
            "7",
            "7-",
            "x-3f2a9c1",
            "7-3F2A9C1",
            "7-3f2a",
            "../7-3f2a9c1",
            "7-3f2a9c1/..",
            "0-3f2a9c1",
        ] {
            assert!(ReleaseName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn repo_config() {
        let cfg = RepoConfig::parse(
            r#"
            pocketbase = "0.28.4"
            [build]
            dir = "web"
            commands = [["npm", "ci"], ["npm", "run", "build:prod"]]
            output = "public"
            [go]
            dir = "server"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.version().unwrap().to_string(), "0.28.4");
        assert_eq!(cfg.build.dir.as_deref(), Some("web"));
        assert_eq!(cfg.go.dir.as_deref(), Some("server"));
        assert_eq!(RepoConfig::parse("").unwrap(), RepoConfig::default());
        for (bad, why) in [
            ("pocketbase = \"latest-ish\"", "not a version"),
            ("[build]\ndir = \"../x\"", "build.dir"),
            ("[build]\noutput = \"/etc\"", "build.output"),
            ("[go]\ndir = \"a/../../b\"", "go.dir"),
            ("[build]\ncommands = []", "empty"),
            ("[build]\ncommands = [[]]", "empty command"),
            ("[build]\ncommands = [[\"\"]]", "not a program"),
            ("colour = 1", "unknown field"),
            ("[build]\ncommands = \"npm run build\"", "invalid type"),
        ] {
            let err = RepoConfig::parse(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn builds_are_found_from_files() {
        let files = |list: &'static [&'static str]| move |p: &str| list.contains(&p);
        let none = plan_build(&RepoConfig::default(), files(&["pb_hooks/main.pb.js"]));
        assert_eq!(none, BuildPlan::default());

        let npm = plan_build(
            &RepoConfig::default(),
            files(&["package.json", "package-lock.json"]),
        );
        let plan = npm.npm.unwrap();
        assert_eq!(plan.dir, "");
        assert_eq!(
            plan.commands,
            vec![vec!["npm", "ci"], vec!["npm", "run", "build"]]
        );
        assert_eq!(plan.output, None);

        let no_lock = plan_build(&RepoConfig::default(), files(&["frontend/package.json"]));
        let plan = no_lock.npm.unwrap();
        assert_eq!(plan.dir, "frontend");
        assert_eq!(plan.commands[0], vec!["npm", "install"]);

        let go = plan_build(&RepoConfig::default(), files(&["backend/go.mod"]));
        assert_eq!(go.go.as_deref(), Some("backend"));
        assert!(go.npm.is_none());

        let cfg = RepoConfig::parse(
            "[build]\ncommands = [[\"make\", \"site\"]]\noutput = \"site\"\n[go]\ndir = \"srv\"",
        )
        .unwrap();
        let custom = plan_build(&cfg, files(&["srv/go.mod"]));
        let plan = custom.npm.unwrap();
        assert_eq!(
            plan.dir, "",
            "commands without package.json run at the root"
        );
        assert_eq!(plan.commands, vec![vec!["make", "site"]]);
        assert_eq!(plan.output.as_deref(), Some("site"));
        assert_eq!(custom.go.as_deref(), Some("srv"));
    }

    #[test]
    fn prune_keeps_the_newest_the_current_and_the_new() {
        let r = |s: &str| ReleaseName::parse(s).unwrap();
        let all = vec![
            r("1-aaaaaaa"),
            r("3-ccccccc"),
            r("2-bbbbbbb"),
            r("10-ddddddd"),
            r("11-eeeeeee"),
        ];
        let gone = releases_to_prune(&all, Some(&r("1-aaaaaaa")), Some(&r("11-eeeeeee")), 2);
        assert_eq!(gone, vec![r("3-ccccccc"), r("2-bbbbbbb")]);
        assert!(releases_to_prune(&all, None, None, 10).is_empty());
    }

    #[test]
    fn webhook_signatures() {
        let secret = b"It's a Secret to Everybody";
        let body = b"Hello, World!";
        // GitHub's documented example.
        let good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign(secret, body), good);
        assert!(signature_ok(secret, body, Some(good)));
        assert!(!signature_ok(secret, b"Hello, World?", Some(good)));
        assert!(!signature_ok(b"other", body, Some(good)));
        for bad in [
            None,
            Some(""),
            Some("sha256="),
            Some("sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"),
            Some("sha256=zz"),
            Some("757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"),
        ] {
            assert!(!signature_ok(secret, body, bad), "{bad:?}");
        }
        assert_eq!(pushed_branch("refs/heads/main"), Some("main"));
        assert_eq!(pushed_branch("refs/tags/v1"), None);
    }
}
