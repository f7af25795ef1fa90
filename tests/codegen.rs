//! Schema as code against real PocketBase instances of both pinned
//! versions: collections with every field type (a select, relations, files,
//! an auth collection, a view) made through PocketBase's own
//! `PUT /api/collections/import`, then
//!
//! - `schema pull` is what PocketBase's `GET /api/collections` answers
//!   (without `created`/`updated` and secrets), parses, and imports back;
//! - `openapi` passes `openapi-spec-validator`, and schemathesis run with it
//!   against the real instance (a superuser's token, so rules let every
//!   request through to its answer) finds no conformance failure: no 5xx,
//!   every status, content type, header and body as the document says;
//! - `types --lang ts` compiles with `tsc --noEmit --strict` together with
//!   a small client, whose `@ts-expect-error` lines prove the types are
//!   not too loose.
//!
//! The tools come from `scripts/fetch-test-deps`; a test whose tool is
//! missing is skipped and says so.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::daemon::Daemon;
use crate::support::{deps_dir, free_port, skip, PB_LEGACY, PB_NEW, PB_OLD};

const EMAIL: &str = "codegen@example.com";

/// An instance with a superuser and the collections below; its direct
/// port and a superuser token.
async fn instance(d: &Daemon, name: &str, version: &str) -> (String, String) {
    let port = free_port().to_string();
    let created = d.cli_json(&[
        "create",
        name,
        "--version",
        version,
        "--port",
        &port,
        "--superuser-email",
        EMAIL,
    ]);
    let password = created["superuser"]["password"]
        .as_str()
        .expect("a generated superuser password")
        .to_string();
    let auth: Value = d
        .http
        .post(format!(
            "http://127.0.0.1:{port}/api/collections/_superusers/auth-with-password"
        ))
        .json(&json!({"identity": EMAIL, "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = auth["token"]
        .as_str()
        .unwrap_or_else(|| panic!("superuser auth: {auth}"))
        .to_string();
    let import = d
        .http
        .put(format!("http://127.0.0.1:{port}/api/collections/import"))
        .header("Authorization", &token)
        .json(&json!({"collections": collections(), "deleteMissing": false}))
        .send()
        .await
        .unwrap();
    let status = import.status();
    assert_eq!(
        status,
        204,
        "the import failed: {}",
        import.text().await.unwrap()
    );
    // A record or two, so that lists answer with items to check.
    for body in [
        json!({"id": "tagtagtagtag001", "name": "rust"}),
        json!({"id": "tagtagtagtag002", "name": "go"}),
    ] {
        post_record(d, &port, &token, "tags", body).await;
    }
    post_record(
        d,
        &port,
        &token,
        "posts",
        json!({
            "title": "Hello", "views": 3, "rating": 4.5, "featured": true,
            "contact": "me@example.com", "homepage": "https://example.com",
            "body": "<p>hi</p>", "published": "2024-05-01 10:00:00.000Z",
            "status": "published", "labels": ["news", "tech"],
            "tags": ["tagtagtagtag001", "tagtagtagtag002"],
            "metadata": {"a": [1, 2]}, "location": {"lon": 24.9, "lat": 60.2},
        }),
    )
    .await;
    (port, token)
}

async fn post_record(d: &Daemon, port: &str, token: &str, collection: &str, body: Value) {
    let resp = d
        .http
        .post(format!(
            "http://127.0.0.1:{port}/api/collections/{collection}/records"
        ))
        .header("Authorization", token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    assert_eq!(status, 200, "{collection}: {}", resp.text().await.unwrap());
}

/// Collections with every field type, in PocketBase's import shape.
fn collections() -> Value {
    json!([
        {
            "id": "pbc_tags0000001", "name": "tags", "type": "base",
            "listRule": "", "viewRule": "", "createRule": null, "updateRule": null, "deleteRule": null,
            "fields": [
                {"id": "text_tag_name", "name": "name", "type": "text", "required": true, "max": 50},
            ],
        },
        {
            "id": "pbc_members0001", "name": "members", "type": "auth",
            "listRule": "id = @request.auth.id", "viewRule": "id = @request.auth.id",
            "createRule": "", "updateRule": "id = @request.auth.id", "deleteRule": null,
            "otp": {"enabled": true, "duration": 180, "length": 8},
            "fields": [
                {"id": "text_member_nick", "name": "nickname", "type": "text", "max": 40},
                {"id": "file_member_avatar", "name": "avatar", "type": "file", "maxSelect": 1, "maxSize": 1048576},
            ],
        },
        {
            "id": "pbc_posts000001", "name": "posts", "type": "base",
            "listRule": "", "viewRule": "", "createRule": "@request.auth.id != ''",
            "updateRule": null, "deleteRule": null,
            "fields": [
                {"id": "text_post_title", "name": "title", "type": "text", "required": true, "max": 200, "presentable": true},
                {"id": "number_views", "name": "views", "type": "number", "onlyInt": true, "min": 0},
                {"id": "number_rating", "name": "rating", "type": "number"},
                {"id": "bool_featured", "name": "featured", "type": "bool"},
                {"id": "email_contact", "name": "contact", "type": "email"},
                {"id": "url_homepage", "name": "homepage", "type": "url"},
                {"id": "editor_body", "name": "body", "type": "editor"},
                {"id": "date_published", "name": "published", "type": "date"},
                {"id": "select_status", "name": "status", "type": "select", "values": ["draft", "published"], "maxSelect": 1, "required": true},
                {"id": "select_labels", "name": "labels", "type": "select", "values": ["news", "tech", "fun"], "maxSelect": 3},
                {"id": "relation_author", "name": "author", "type": "relation", "collectionId": "pbc_members0001", "maxSelect": 1},
                {"id": "relation_tags", "name": "tags", "type": "relation", "collectionId": "pbc_tags0000001", "maxSelect": 5},
                {"id": "file_cover", "name": "cover", "type": "file", "maxSelect": 1, "maxSize": 1048576},
                {"id": "file_attachments", "name": "attachments", "type": "file", "maxSelect": 4, "maxSize": 1048576},
                {"id": "json_metadata", "name": "metadata", "type": "json", "maxSize": 10000},
                {"id": "geo_location", "name": "location", "type": "geoPoint"},
                {"id": "autodate_created", "name": "created", "type": "autodate", "onCreate": true, "onUpdate": false},
                {"id": "autodate_updated", "name": "updated", "type": "autodate", "onCreate": true, "onUpdate": true},
            ],
        },
        {
            "id": "pbc_titles00001", "name": "post_titles", "type": "view",
            "listRule": "", "viewRule": "",
            "viewQuery": "SELECT id, title, views FROM posts",
        },
    ])
}

/// What PocketBase itself answers for the instance's collections, in the
/// schema file's shape: without the timestamps and the OAuth2 providers.
async fn pocketbase_collections(d: &Daemon, port: &str, token: &str) -> Vec<Value> {
    let list: Value = d
        .http
        .get(format!(
            "http://127.0.0.1:{port}/api/collections?perPage=500&sort=created"
        ))
        .header("Authorization", token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no collections: {list}"))
        .iter()
        .cloned()
        .map(|mut c| {
            let o = c.as_object_mut().unwrap();
            o.remove("created");
            o.remove("updated");
            if let Some(oauth2) = o.get_mut("oauth2").and_then(Value::as_object_mut) {
                oauth2.remove("providers");
            }
            c
        })
        .collect()
}

fn cli_ok(d: &Daemon, args: &[&str]) -> String {
    let out = d.cli(args);
    assert!(
        out.status.success(),
        "pockestrator {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

async fn schema_pull_is_what_pocketbase_exports(d: &Daemon, name: &str, port: &str, token: &str) {
    let text = cli_ok(d, &["schema", "pull", name]);
    assert_eq!(
        text,
        cli_ok(d, &["schema", "pull", name]),
        "the same schema twice"
    );
    assert!(text.starts_with("[\n  {\n"), "pretty-printed: {text:.200}");
    assert!(!text.contains("\"secret\""), "a secret in the schema file");
    let pulled: Vec<Value> = serde_json::from_str(&text).unwrap();
    let exported = pocketbase_collections(d, port, token).await;
    let ids = |cs: &[Value]| -> Vec<String> {
        cs.iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&pulled), ids(&exported), "creation order");
    for (ours, theirs) in pulled.iter().zip(&exported) {
        assert_eq!(ours, theirs, "collection {}", theirs["name"]);
    }
    let names: Vec<&str> = pulled.iter().filter_map(|c| c["name"].as_str()).collect();
    for expected in [
        "_superusers",
        "users",
        "tags",
        "members",
        "posts",
        "post_titles",
    ] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    let parsed = pockestrator::model::collections::parse_schema(&text)
        .unwrap_or_else(|e| panic!("the pulled schema does not parse: {e}"));
    assert_eq!(parsed.len(), pulled.len());
    // The API says the same.
    let (code, via_api) = d.get(&format!("/api/v1/instances/{name}/schema")).await;
    assert_eq!(code, 200, "{via_api}");
    assert!(
        via_api == Value::Array(pulled.clone()),
        "the API's schema differs"
    );
    // PocketBase takes the file back as it is (a view's fields get new ids).
    let import = d
        .http
        .put(format!("http://127.0.0.1:{port}/api/collections/import"))
        .header("Authorization", token)
        .json(&json!({"collections": pulled, "deleteMissing": false}))
        .send()
        .await
        .unwrap();
    let status = import.status();
    assert_eq!(
        status,
        204,
        "the pulled schema does not import: {}",
        import.text().await.unwrap()
    );
}

fn validator_bin() -> PathBuf {
    deps_dir().join("../venv-openapi-validator/bin/openapi-spec-validator")
}

fn schemathesis_bin() -> PathBuf {
    deps_dir().join("../venv-schemathesis/bin/schemathesis")
}

fn node_modules() -> PathBuf {
    deps_dir().join("../node/node_modules")
}

/// A child's exit status and output, killed after `limit`.
fn run_bounded(mut cmd: Command, limit: Duration) -> (Option<std::process::ExitStatus>, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = format!("{}\n{}", out.join().unwrap(), err.join().unwrap());
    (status, text)
}

fn openapi_validates(test: &str, file: &Path) {
    let validator = validator_bin();
    if !validator.exists() {
        skip(
            test,
            &format!(
                "{} is missing: run scripts/fetch-test-deps",
                validator.display()
            ),
        );
        return;
    }
    let mut cmd = Command::new(&validator);
    cmd.arg(file);
    let (status, output) = run_bounded(cmd, Duration::from_secs(120));
    assert!(
        status.is_some_and(|s| s.success()) && output.contains("OK"),
        "openapi-spec-validator refused the document: {output}"
    );
}

fn schemathesis_finds_nothing(test: &str, file: &Path, port: &str, token: &str) {
    let schemathesis = schemathesis_bin();
    if !schemathesis.exists() {
        skip(
            test,
            &format!(
                "{} is missing: run scripts/fetch-test-deps",
                schemathesis.display()
            ),
        );
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(&schemathesis);
    cmd.arg("run")
        .arg(file)
        .args(["--url", &format!("http://127.0.0.1:{port}")])
        .args(["-H", &format!("Authorization: {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance",
        ])
        // Requests the document allows: whether PocketBase copes with
        // others is PocketBase's to test (0.40.6 answers 500 to a `null`
        // body of confirm-password-reset, which the document forbids).
        .args(["--mode", "positive"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--seed", "1"])
        .args(["--max-examples", "5"])
        .args(["--workers", "2"])
        .args(["--request-timeout", "30"])
        // The event stream never ends; it is PocketBase's own to test.
        .args(["--exclude-operation-id", "realtime_connect"])
        .current_dir(work.path())
        .env("NO_COLOR", "1")
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY");
    let (status, output) = run_bounded(cmd, Duration::from_secs(300));
    let Some(status) = status else {
        panic!("schemathesis did not finish:\n{output}");
    };
    let summary = output
        .split("=== SUMMARY ===")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary in schemathesis's output:\n{output}"));
    eprintln!("schemathesis's summary:{summary}");
    let passed = status.success() && !summary.contains("Failures:") && !summary.contains("Errors:");
    if !passed {
        let failures: String = output
            .split("=== FAILURES ===")
            .nth(1)
            .or_else(|| output.split("=== ERRORS ===").nth(1))
            .unwrap_or(&output)
            .chars()
            .take(8_000)
            .collect();
        panic!("schemathesis found failures ({status}):\n{failures}\n--- summary ---{summary}");
    }
    // It did test: every operation but the stream, with real cases.
    let tested: u32 = summary
        .lines()
        .find_map(|l| l.trim().strip_prefix("Tested: "))
        .and_then(|n| n.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(tested >= 40, "only {tested} operations tested: {summary}");
}

const CLIENT_TS: &str = r#"import PocketBase from "pocketbase";
import {
    Collections,
    PostsStatusOptions,
    PostsLabelsOptions,
    type TypedPocketBase,
    type PostsRecord,
    type PostsResponse,
    type MembersResponse,
    type PostTitlesResponse,
    type GeoPoint,
} from "./pocketbase-types";

const pb = new PocketBase("http://127.0.0.1:8090") as TypedPocketBase;

export async function published(): Promise<string[]> {
    const page = await pb.collection("posts").getList(1, 20, { filter: "status = 'published'" });
    return page.items.map((p) => `${p.title} (${p.views ?? 0} views)`);
}

export async function nicknames(): Promise<string[]> {
    const members: MembersResponse[] = await pb.collection("members").getFullList();
    return members.map((m) => `${m.email}: ${m.nickname}, ${m.verified}`);
}

export function where(p: PostsResponse<{ a: number[] }>): GeoPoint {
    const n: number[] = p.metadata?.a ?? [];
    return n.length > 0 ? p.location : { lon: 0, lat: 0 };
}

export const draft: PostsRecord = {
    title: "Draft",
    status: PostsStatusOptions.draft,
    labels: [PostsLabelsOptions.news],
    tags: ["tagtagtagtag001"],
};

export const name: string = Collections.Posts;
export const title = (t: PostTitlesResponse): string => t.title;

// The types are not too loose: each line below must not compile.
// @ts-expect-error: a value the select does not have
export const badStatus: PostsRecord = { title: "x", status: "archived" };
// @ts-expect-error: a required field left out
export const noTitle: PostsRecord = { status: PostsStatusOptions.draft };
// @ts-expect-error: a number field holds numbers
export const badViews: PostsRecord = { title: "x", status: PostsStatusOptions.draft, views: "3" };
// @ts-expect-error: a single relation is one id
export const badAuthor: PostsRecord = { title: "x", status: PostsStatusOptions.draft, author: ["a", "b"] };
// @ts-expect-error: no such collection
export const nope = Collections.Comments;
"#;

fn types_compile(test: &str, types: &str) {
    let tsc = node_modules().join("typescript/bin/tsc");
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) || !tsc.exists() {
        skip(
            test,
            &format!(
                "node or {} is missing: run scripts/fetch-test-deps",
                tsc.display()
            ),
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pocketbase-types.ts"), types).unwrap();
    std::fs::write(dir.path().join("client.ts"), CLIENT_TS).unwrap();
    std::os::unix::fs::symlink(
        node_modules().canonicalize().unwrap(),
        dir.path().join("node_modules"),
    )
    .unwrap();
    let mut cmd = Command::new("node");
    cmd.arg(&tsc)
        .args([
            "--noEmit",
            "--strict",
            "--target",
            "es2022",
            "--module",
            "esnext",
            "--moduleResolution",
            "bundler",
            "--skipLibCheck",
            "client.ts",
            "pocketbase-types.ts",
        ])
        .current_dir(dir.path());
    let (status, output) = run_bounded(cmd, Duration::from_secs(180));
    assert!(
        status.is_some_and(|s| s.success()),
        "tsc refused the types or the client: {output}\n--- types ---\n{types}"
    );
}

async fn codegen_on(version: &str, test: &str) {
    let d = Daemon::start().await;
    let name = "shop";
    let (port, token) = instance(&d, name, version).await;
    schema_pull_is_what_pocketbase_exports(&d, name, &port, &token).await;

    let doc_text = cli_ok(&d, &["openapi", name]);
    let doc: Value = serde_json::from_str(&doc_text).unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    assert_eq!(doc["info"]["version"], version);
    assert_eq!(
        doc["servers"].as_array().unwrap().last().unwrap()["url"],
        format!("http://127.0.0.1:{port}")
    );
    assert!(doc["paths"]["/api/collections/members/request-otp"].is_object());
    assert!(doc["paths"]["/api/collections/post_titles/records"]["post"].is_null());
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("openapi.json");
    std::fs::write(&file, &doc_text).unwrap();
    openapi_validates(test, &file);
    schemathesis_finds_nothing(test, &file, &port, &token);

    let types = cli_ok(&d, &["types", name, "--lang", "ts"]);
    assert!(types.contains("export enum PostsStatusOptions"), "{types}");
    types_compile(test, &types);

    // Bad input: an unknown language, an unknown instance.
    let out = d.cli(&["types", name, "--lang", "rust"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no types for language \"rust\""), "{err}");
    let (code, body) = d
        .get(&format!("/api/v1/instances/{name}/types?lang=go"))
        .await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = d.get("/api/v1/instances/nosuch/openapi.json").await;
    assert_eq!(code, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found");

    // A stopped instance's data.db reads the same.
    let running = cli_ok(&d, &["schema", "pull", name]);
    cli_ok(&d, &["stop", name]);
    assert_eq!(cli_ok(&d, &["schema", "pull", name]), running);
}

/// PocketBase before 0.23 keeps its collections in another layout: a clear
/// refusal, not a wrong schema.
#[tokio::test(flavor = "multi_thread")]
async fn a_pocketbase_before_0_23_is_refused_clearly() {
    let d = Daemon::start().await;
    let port = free_port().to_string();
    cli_ok(
        &d,
        &["create", "legacy", "--version", PB_LEGACY, "--port", &port],
    );
    let out = d.cli(&["schema", "pull", "legacy"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PocketBase before 0.23"), "{err}");
    assert!(out.stdout.is_empty(), "nothing on stdout");
    for path in ["schema", "openapi.json", "types"] {
        let (code, body) = d.get(&format!("/api/v1/instances/legacy/{path}")).await;
        assert_eq!(code, 409, "{path}: {body}");
        assert_eq!(body["error"]["code"], "pocketbase_too_old", "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_openapi_and_types_on_the_old_version() {
    codegen_on(
        PB_OLD,
        "codegen::schema_openapi_and_types_on_the_old_version",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_openapi_and_types_on_the_new_version() {
    codegen_on(
        PB_NEW,
        "codegen::schema_openapi_and_types_on_the_new_version",
    )
    .await;
}
