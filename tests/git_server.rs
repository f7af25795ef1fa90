//! The smart-HTTP git server that deploy tests fetch from
//! (`support::git_server`), checked with the real `git clone` and `git
//! fetch`: branches, shallow clones, new commits published later, a
//! negotiation large enough to come gzipped, and HTTP Basic credentials
//! that a clone without them does not get past.

use std::path::Path;
use std::process::Output;

use crate::support::git_server::{basic_authorization, git, run_git, GitRepo, GitServer};
use crate::support::skip;

fn have_git() -> bool {
    std::process::Command::new("git")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `git clone ARGS URL DEST` with no credentials from anywhere but `args`
/// and no prompt, run off the async workers (the server runs on them).
async fn clone(url: &str, dest: &Path, args: &[&str]) -> Output {
    let mut command = git(dest.parent().unwrap());
    command
        .env_remove("GIT_ASKPASS")
        .env_remove("SSH_ASKPASS")
        .args(["-c", "credential.helper="])
        .args(args)
        .args(["clone", "--quiet"])
        .arg(url)
        .arg(dest);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn rev_parse(dir: &Path, what: &str) -> String {
    run_git({
        let mut c = git(dir);
        c.args(["rev-parse", what]);
        c
    })
}

#[test]
fn basic_credentials_are_encoded_as_rfc_7617_says() {
    assert_eq!(
        basic_authorization("Aladdin", "open sesame"),
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    );
    assert_eq!(basic_authorization("", ""), "Basic Og==");
    assert_eq!(basic_authorization("a", "bc"), "Basic YTpiYw==");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_clones_and_fetches_branches_over_smart_http() {
    if !have_git() {
        skip(
            "git_server::git_clones_and_fetches_branches_over_smart_http",
            "git is not installed",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::init(&dir.path().join("work"));
    repo.write("pb_hooks/main.pb.js", "// on main\n");
    let on_main = repo.commit("first");
    repo.branch("release");
    repo.write("pb_public/index.html", "<h1>release</h1>\n");
    let on_release = repo.commit("release page");
    let root = dir.path().join("served");
    std::fs::create_dir(&root).unwrap();
    repo.publish(&root, "app");
    let server = GitServer::start(&root).await;
    assert_eq!(server.root(), root);

    // A clone: the default branch checked out, the others there too.
    let full = dir.path().join("full");
    let out = clone(&server.url("app"), &full, &[]).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(rev_parse(&full, "HEAD"), on_main);
    assert_eq!(rev_parse(&full, "origin/release"), on_release);

    // A shallow clone of one branch, as a deploy fetches.
    let release_clone = dir.path().join("release");
    let mut command = git(dir.path());
    command
        .args(["clone", "--quiet", "--depth=1", "--single-branch"])
        .args(["--branch", "release"])
        .arg(server.url("app"))
        .arg(&release_clone);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(rev_parse(&release_clone, "HEAD"), on_release);
    assert_eq!(
        std::fs::read_to_string(release_clone.join("pb_public/index.html")).unwrap(),
        "<h1>release</h1>\n"
    );
    assert_eq!(
        std::fs::read_to_string(release_clone.join("pb_hooks/main.pb.js")).unwrap(),
        "// on main\n"
    );

    // A commit published later reaches a fetch.
    repo.write("pb_public/index.html", "<h1>release 2</h1>\n");
    let next = repo.commit("release page, again");
    repo.publish(&root, "app");
    let mut command = git(&release_clone);
    command.args(["fetch", "--quiet", "--depth=1", "origin", "release"]);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(rev_parse(&release_clone, "FETCH_HEAD"), next);

    // A fetch into a clone with many commits of its own: the negotiation
    // is large enough for git to send it gzipped.
    for i in 0..60 {
        run_git({
            let mut c = git(&full);
            c.args(["commit", "--quiet", "--allow-empty", "-m"])
                .arg(format!("local {i}"));
            c
        });
    }
    let mut command = git(&full);
    command.args(["fetch", "--quiet", "origin", "release"]);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(rev_parse(&full, "FETCH_HEAD"), next);
    assert!(
        server.requests().iter().any(|r| r.gzip && r.status == 200),
        "{:#?}",
        server.requests()
    );

    // The smart protocol it was: ref advertisement, then upload-pack, all
    // answered, none with credentials.
    let requests = server.requests();
    assert!(
        requests.iter().any(|r| r.method == "GET"
            && r.path == "/app.git/info/refs"
            && r.query == "service=git-upload-pack"),
        "{requests:#?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.method == "POST" && r.path == "/app.git/git-upload-pack"),
        "{requests:#?}"
    );
    assert!(
        requests.iter().all(|r| r.status == 200 && !r.authorization),
        "{requests:#?}"
    );

    // A repository that is not there is a 404, and git says so.
    let out = clone(&server.url("nothing"), &dir.path().join("nothing"), &[]).await;
    assert!(!out.status.success());
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.path.starts_with("/nothing.git/") && r.status == 404),
        "{:#?}",
        server.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_basic_auth_lets_only_the_right_credentials_clone() {
    if !have_git() {
        skip(
            "git_server::a_server_with_basic_auth_lets_only_the_right_credentials_clone",
            "git is not installed",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = GitRepo::init(&dir.path().join("work"));
    repo.write("README.md", "private\n");
    let commit = repo.commit("private");
    let root = dir.path().join("served");
    std::fs::create_dir(&root).unwrap();
    repo.publish(&root, "private");
    let server = GitServer::start_with_basic_auth(&root, "deploy", "s3cret-token").await;
    let url = server.url("private");

    // No credentials: 401, and git gives up without a prompt.
    let out = clone(&url, &dir.path().join("none"), &[]).await;
    assert!(!out.status.success(), "{out:?}");
    assert!(!dir.path().join("none/README.md").exists());
    let requests = server.requests();
    assert!(
        requests.iter().all(|r| r.status == 401 && !r.authorization),
        "{requests:#?}"
    );

    // The wrong password: 401 too.
    let wrong = format!(
        "http.extraHeader=Authorization: {}",
        basic_authorization("deploy", "guess")
    );
    let out = clone(&url, &dir.path().join("wrong"), &["-c", &wrong]).await;
    assert!(!out.status.success(), "{out:?}");
    let seen = server.requests().len();

    // The right ones: cloned, and every request carried them.
    let right = format!(
        "http.extraHeader=Authorization: {}",
        basic_authorization("deploy", "s3cret-token")
    );
    let cloned = dir.path().join("right");
    let out = clone(&url, &cloned, &["-c", &right]).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(rev_parse(&cloned, "HEAD"), commit);
    let requests = server.requests();
    let with_token = &requests[seen..];
    assert!(
        with_token.iter().any(|r| r.method == "POST"),
        "{requests:#?}"
    );
    assert!(
        with_token
            .iter()
            .all(|r| r.status == 200 && r.authorization),
        "{requests:#?}"
    );
}
