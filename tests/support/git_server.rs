//! A smart-HTTP git server for tests, and repositories to serve.
//!
//! [`GitServer`] listens on 127.0.0.1:0 and runs the real `git
//! http-backend` as a CGI program for every request, over a root directory
//! of bare repositories (`http://127.0.0.1:PORT/NAME.git`). It can ask for
//! HTTP Basic credentials, and it records every request it saw (method,
//! path, whether an `Authorization` header came with it), so that a test
//! can check that a token was sent. [`GitRepo`] makes a working tree with
//! commits and branches and publishes it as a bare repository under the
//! server's root.
//!
//! git runs without the machine's configuration (`GIT_CONFIG_GLOBAL=
//! /dev/null`, no system file) and with a fixed author, so what a test
//! gets does not depend on where it runs. Dropping the server stops it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::TryStreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One request the server saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    pub method: String,
    /// The path, without the query (`/NAME.git/info/refs`).
    pub path: String,
    pub query: String,
    /// Whether the request carried an `Authorization` header at all.
    pub authorization: bool,
    /// Whether its body came gzipped (git compresses large negotiations).
    pub gzip: bool,
    /// What the server answered.
    pub status: u16,
}

/// What every request is handled with.
struct Backend {
    root: PathBuf,
    /// The whole `Authorization` header value a request must carry, if any.
    expected_authorization: Option<String>,
    seen: Mutex<Vec<SeenRequest>>,
}

/// A running smart-HTTP git server. Stops when dropped.
pub struct GitServer {
    addr: SocketAddr,
    backend: Arc<Backend>,
    task: tokio::task::JoinHandle<()>,
}

impl GitServer {
    /// Serve the bare repositories under `root` to anyone.
    pub async fn start(root: &Path) -> GitServer {
        GitServer::serve(root, None).await
    }

    /// Serve the bare repositories under `root` to requests that carry
    /// `user` and `password` as HTTP Basic credentials; anything else gets
    /// 401 with `WWW-Authenticate: Basic realm="git"`.
    pub async fn start_with_basic_auth(root: &Path, user: &str, password: &str) -> GitServer {
        GitServer::serve(root, Some(basic_authorization(user, password))).await
    }

    async fn serve(root: &Path, expected_authorization: Option<String>) -> GitServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the git server");
        let addr = listener.local_addr().expect("the git server's address");
        let backend = Arc::new(Backend {
            root: root.to_path_buf(),
            expected_authorization,
            seen: Mutex::new(Vec::new()),
        });
        let serving = Arc::clone(&backend);
        let task = tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let backend = Arc::clone(&serving);
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let backend = Arc::clone(&backend);
                        async move { Ok::<_, Infallible>(backend.handle(request, peer).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        GitServer {
            addr,
            backend,
            task,
        }
    }

    /// `http://127.0.0.1:PORT/NAME.git`
    pub fn url(&self, repo_name: &str) -> String {
        format!("http://{}/{repo_name}.git", self.addr)
    }

    /// The directory of bare repositories it serves.
    pub fn root(&self) -> &Path {
        &self.backend.root
    }

    /// Every request seen so far, in order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.backend
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type GitBody = BoxBody<Bytes, std::io::Error>;

impl Backend {
    async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<GitBody> {
        let method = request.method().as_str().to_string();
        let path = request.uri().path().to_string();
        let query = request.uri().query().unwrap_or_default().to_string();
        let authorization = request.headers().get(AUTHORIZATION);
        let seen = SeenRequest {
            method,
            path,
            query,
            authorization: authorization.is_some(),
            gzip: request
                .headers()
                .get("content-encoding")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip")),
            status: 0,
        };
        let allowed = match &self.expected_authorization {
            None => true,
            Some(expected) => authorization.is_some_and(|v| v.as_bytes() == expected.as_bytes()),
        };
        let response = if allowed {
            self.cgi(request, peer).await
        } else {
            let mut response = text(StatusCode::UNAUTHORIZED, "credentials required\n");
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"git\""),
            );
            response
        };
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(SeenRequest {
                status: response.status().as_u16(),
                ..seen
            });
        response
    }

    /// Run `git http-backend` for one request: the request's head in the
    /// CGI environment, its body streamed to stdin, the CGI headers and
    /// `Status:` read back, then the rest of stdout streamed as the body.
    async fn cgi(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<GitBody> {
        let (parts, body) = request.into_parts();
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let mut command = tokio::process::Command::new("git");
        command
            .arg("http-backend")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.root)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_PROJECT_ROOT", &self.root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("GATEWAY_INTERFACE", "CGI/1.1")
            .env("SERVER_PROTOCOL", "HTTP/1.1")
            .env("REQUEST_METHOD", parts.method.as_str())
            .env("PATH_INFO", parts.uri.path())
            .env("QUERY_STRING", parts.uri.query().unwrap_or_default())
            .env("REMOTE_ADDR", peer.ip().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if self.expected_authorization.is_some() {
            command.env("REMOTE_USER", "git");
        }
        for (header_name, variable) in [
            ("content-type", "CONTENT_TYPE"),
            ("content-length", "CONTENT_LENGTH"),
            ("content-encoding", "HTTP_CONTENT_ENCODING"),
            ("git-protocol", "HTTP_GIT_PROTOCOL"),
        ] {
            if let Some(value) = header(header_name) {
                command.env(variable, value);
            }
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("cannot run git http-backend: {e}\n"),
                )
            }
        };
        let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return text(StatusCode::INTERNAL_SERVER_ERROR, "no pipes to git\n");
        };
        tokio::spawn(async move {
            let mut body = body;
            while let Some(Ok(frame)) = body.frame().await {
                if let Ok(data) = frame.into_data() {
                    if stdin.write_all(&data).await.is_err() {
                        return;
                    }
                }
            }
            // Dropping stdin is the end of the request body for git.
        });

        let mut stdout = BufReader::new(stdout);
        let mut response = Response::builder();
        let mut status = StatusCode::OK;
        loop {
            let mut line = String::new();
            match stdout.read_line(&mut line).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    return text(
                        StatusCode::BAD_GATEWAY,
                        &format!("reading git http-backend: {e}\n"),
                    )
                }
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("status") {
                let code = value.split(' ').next().and_then(|c| c.parse().ok());
                if let Some(code) = code.and_then(|c| StatusCode::from_u16(c).ok()) {
                    status = code;
                }
            } else if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                response = response.header(name, value);
            }
        }
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        let stream = tokio_util::io::ReaderStream::new(stdout).map_ok(Frame::data);
        response
            .status(status)
            .body(StreamBody::new(stream).boxed())
            .unwrap_or_else(|_| text(StatusCode::BAD_GATEWAY, "bad CGI headers\n"))
    }
}

fn text(status: StatusCode, body: &str) -> Response<GitBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
}

/// The `Authorization` header value of HTTP Basic credentials.
pub fn basic_authorization(user: &str, password: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `git` with a fixed author and none of the machine's configuration.
pub fn git(dir: &Path) -> Command {
    let mut command = Command::new("git");
    command
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .args([
            "-c",
            "user.name=Pockestrator Tests",
            "-c",
            "user.email=tests@pockestrator.invalid",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ]);
    command
}

/// Run a git command to success and return its stdout, trimmed.
pub fn run_git(mut command: Command) -> String {
    let output = command.output().expect("run git");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// A working tree to make commits in, published as a bare repository.
pub struct GitRepo {
    dir: PathBuf,
}

impl GitRepo {
    /// A new repository in `dir` (made if missing), on branch `main`.
    pub fn init(dir: &Path) -> GitRepo {
        std::fs::create_dir_all(dir).expect("make the repository directory");
        run_git({
            let mut c = git(dir);
            c.args(["init", "--quiet"]);
            c
        });
        GitRepo {
            dir: dir.to_path_buf(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Write `content` to `path` in the working tree (directories made).
    pub fn write(&self, path: &str, content: &str) {
        let file = self.dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).expect("make the file's directory");
        }
        std::fs::write(file, content).expect("write a file of the repository");
    }

    /// Commit everything in the working tree; the new commit's id.
    pub fn commit(&self, message: &str) -> String {
        run_git({
            let mut c = git(&self.dir);
            c.args(["add", "--all"]);
            c
        });
        run_git({
            let mut c = git(&self.dir);
            c.args(["commit", "--quiet", "--allow-empty", "-m", message]);
            c
        });
        self.head()
    }

    /// The id of the commit checked out.
    pub fn head(&self) -> String {
        run_git({
            let mut c = git(&self.dir);
            c.args(["rev-parse", "HEAD"]);
            c
        })
    }

    /// Switch to branch `name`, made at the current commit if it does not
    /// exist yet.
    pub fn branch(&self, name: &str) {
        let exists = git(&self.dir)
            .args(["rev-parse", "--verify", "--quiet"])
            .arg(format!("refs/heads/{name}"))
            .stdout(Stdio::null())
            .status()
            .expect("run git")
            .success();
        run_git({
            let mut c = git(&self.dir);
            if exists {
                c.args(["switch", "--quiet", name]);
            } else {
                c.args(["switch", "--quiet", "--create", name]);
            }
            c
        });
    }

    /// Publish every branch as the bare repository `NAME.git` under `root`
    /// (a server's root), made on the first call and updated on later ones;
    /// its path.
    pub fn publish(&self, root: &Path, name: &str) -> PathBuf {
        let bare = root.join(format!("{name}.git"));
        if !bare.exists() {
            run_git({
                let mut c = git(root);
                c.args(["init", "--quiet", "--bare"]).arg(&bare);
                c
            });
        }
        run_git({
            let mut c = git(&self.dir);
            c.args(["push", "--quiet", "--force", "--mirror"])
                .arg(&bare);
            c
        });
        // What a server's clone starts on, whatever this tree has out.
        run_git({
            let mut c = git(&bare);
            c.args(["symbolic-ref", "HEAD", "refs/heads/main"]);
            c
        });
        bare
    }
}
