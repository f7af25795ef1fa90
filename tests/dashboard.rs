//! The dashboard over plain HTTP against a real daemon: sign-in, cookie
//! flags, sessions surviving a daemon restart, sign-out, and the refusals
//! (no session, bad or missing CSRF token, foreign origin). The browser
//! end to end is in `dashboard_browser`.

use reqwest::header::{HeaderMap, HeaderValue, COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::json;

use crate::support::daemon::Daemon;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// Sign in; returns the `Set-Cookie` header and the cookie to send back.
pub(crate) async fn sign_in(d: &Daemon, extra: &[(&str, &str)]) -> (String, String) {
    let mut req = client()
        .post(d.url("/ui/login"))
        .form(&[("token", d.token.as_str())]);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()[LOCATION], "/ui/");
    let set = resp.headers()[SET_COOKIE].to_str().unwrap().to_string();
    let cookie = set.split(';').next().unwrap().to_string();
    (set, cookie)
}

/// The CSRF token the fleet page renders for this session.
pub(crate) async fn csrf_of(d: &Daemon, cookie: &str) -> String {
    let page = client()
        .get(d.url("/ui/"))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("the page has a CSRF token")
        + 19;
    html[at..at + 64].to_string()
}

pub(crate) async fn datastar_post(
    d: &Daemon,
    path: &str,
    cookie: Option<&str>,
    csrf: Option<&str>,
    body: serde_json::Value,
) -> (u16, String) {
    let mut h = HeaderMap::new();
    h.insert("datastar-request", HeaderValue::from_static("true"));
    if let Some(c) = cookie {
        h.insert(COOKIE, HeaderValue::from_str(c).unwrap());
    }
    if let Some(t) = csrf {
        h.insert("x-csrf-token", HeaderValue::from_str(t).unwrap());
    }
    let resp = client()
        .post(d.url(path))
        .headers(h)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

#[tokio::test]
async fn sign_in_sessions_and_refusals() {
    let mut d = Daemon::start().await;
    let http = client();

    // Without a session: pages go to the sign-in page, actions are refused.
    let resp = http.get(d.url("/ui/")).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()[LOCATION], "/ui/login");
    let resp = http.get(d.url("/")).send().await.unwrap();
    assert_eq!(resp.headers()[LOCATION], "/ui/");
    let (status, body) = datastar_post(&d, "/ui/instances/shop/stop", None, None, json!({})).await;
    assert_eq!(status, 401);
    assert!(body.contains("sign in again"), "{body}");
    let resp = http
        .post(d.url("/ui/instances/shop/stop"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // A wrong token: 401, the form again with the reason, audited.
    let resp = http
        .post(d.url("/ui/login"))
        .form(&[("token", "not-the-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().get(SET_COOKIE).is_none());
    let html = resp.text().await.unwrap();
    assert!(html.contains("id=\"login-error\""), "{html}");
    assert!(html.contains("That is not the admin token"), "{html}");
    let (_, events) = d.get("/api/v1/events?limit=10").await;
    let sign_ins: Vec<_> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "sign-in")
        .collect();
    assert_eq!(sign_ins.len(), 1);
    assert_eq!(sign_ins[0]["result"], "error");

    // The right token: a session cookie with the safe flags; no Secure over
    // plain HTTP, Secure when a local TLS proxy says the browser used HTTPS.
    let (set, cookie) = sign_in(&d, &[]).await;
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    assert!(set.contains("Path=/ui"), "{set}");
    assert!(!set.contains("Secure"), "{set}");
    let (set_tls, _) = sign_in(&d, &[("x-forwarded-proto", "https")]).await;
    assert!(set_tls.contains("; Secure"), "{set_tls}");

    // The session opens the pages, but not the API: that needs the token.
    let csrf = csrf_of(&d, &cookie).await;
    let resp = http
        .get(d.url("/api/v1/instances"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // Assets need no session and are cached.
    let resp = http
        .get(d.url("/ui/assets/datastar.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    assert!(resp
        .text()
        .await
        .unwrap()
        .starts_with("// Datastar v1.0.0-beta.11"));

    // Actions need this session's CSRF token and a same-host origin.
    let (status, body) = datastar_post(
        &d,
        "/ui/instances/shop/stop",
        Some(&cookie),
        None,
        json!({}),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("CSRF"), "{body}");
    let wrong = "0".repeat(64);
    let (status, _) = datastar_post(
        &d,
        "/ui/instances/shop/stop",
        Some(&cookie),
        Some(&wrong),
        json!({}),
    )
    .await;
    assert_eq!(status, 403);
    let resp = http
        .post(d.url("/ui/instances/shop/stop"))
        .header(COOKIE, &cookie)
        .header("x-csrf-token", &csrf)
        .header("origin", "http://evil.example")
        .header("datastar-request", "true")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let (status, body) = datastar_post(
        &d,
        "/ui/instances/shop/stop",
        Some(&cookie),
        Some(&csrf),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("event: datastar-merge-fragments"), "{body}");
    assert!(body.contains("no instance named shop"), "{body}");
    // Nothing was done by the refused requests: the only stop is the
    // accepted one (which failed: there is no such instance).
    let (_, events) = d.get("/api/v1/events?limit=50").await;
    let stops = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "stop")
        .count();
    assert_eq!(stops, 1);

    // Inline validation gives the API's own message for the same input.
    let (status, body) = datastar_post(
        &d,
        "/ui/create/validate",
        Some(&cookie),
        Some(&csrf),
        json!({"create": {"name": "Bad Name!", "port": "80", "domain": "", "email": "nope"}}),
    )
    .await;
    assert_eq!(status, 200);
    let (api_status, api) = d
        .post(
            "/api/v1/instances",
            json!({"name": "Bad Name!", "version": "0.40.6"}),
        )
        .await;
    assert_eq!(api_status, 400);
    let api_message = api["error"]["message"].as_str().unwrap();
    let escaped = api_message.replace('"', "&quot;");
    assert!(body.contains(&escaped), "{body}\nAPI: {api_message}");
    assert!(body.contains("port 80"), "{body}");
    assert!(body.contains("e-mail") || body.contains("email"), "{body}");

    // The session outlives a daemon crash (sessions are in the state db).
    d.restart().await;
    assert_eq!(csrf_of(&d, &cookie).await, csrf);

    // Sign-out needs the CSRF token too; afterwards the cookie is dead.
    let resp = http
        .post(d.url("/ui/logout"))
        .header(COOKIE, &cookie)
        .form(&[("csrf", "0".repeat(64))])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = http
        .post(d.url("/ui/logout"))
        .header(COOKIE, &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()[LOCATION], "/ui/login");
    assert!(resp.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let resp = http
        .get(d.url("/ui/"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
}

#[tokio::test]
async fn hostile_paths_and_cookies_are_refused() {
    let d = Daemon::start().await;
    let http = client();
    let (_, cookie) = sign_in(&d, &[]).await;
    for path in [
        "/ui/instances/..%2F..%2Fetc",
        "/ui/instances/Bad%20Name",
        "/ui/instances/%0Aevil",
        "/ui/instances/nope",
    ] {
        let resp = http
            .get(d.url(path))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{path}");
        let html = resp.text().await.unwrap();
        assert!(html.contains("No such instance"), "{path}: {html}");
        assert!(!html.contains("<script>"), "{path}");
    }
    let long = format!("pockestrator_session={}", "a".repeat(100_000));
    for bad in [
        "pockestrator_session=../../token",
        "pockestrator_session=",
        long.as_str(),
    ] {
        let resp = http
            .get(d.url("/ui/"))
            .header(COOKIE, bad)
            .send()
            .await
            .unwrap();
        assert!(
            resp.status() == 303 || resp.status() == 431,
            "{}",
            resp.status()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn create_streams_its_progress_from_download_to_running() {
    let d = Daemon::start().await;
    let (_, cookie) = sign_in(&d, &[]).await;
    let csrf = csrf_of(&d, &cookie).await;
    // A version this daemon has not installed yet: it is downloaded first.
    let (status, body) = datastar_post(
        &d,
        "/ui/instances",
        Some(&cookie),
        Some(&csrf),
        json!({"create": {"name": "fresh", "version": crate::support::PB_OLD,
                          "port": "", "domain": "", "email": ""}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let downloading = format!("Downloading PocketBase {}", crate::support::PB_OLD);
    let at_download = body.find(&downloading).unwrap_or_else(|| panic!("{body}"));
    let at_done = body.find("Created <a").unwrap_or_else(|| panic!("{body}"));
    assert!(at_download < at_done, "{body}");
    let (_, v) = d.get("/api/v1/instances/fresh").await;
    assert_eq!(v["status"], "running", "{v}");
    assert_eq!(v["version"], crate::support::PB_OLD, "{v}");
    // Audited under the dashboard session's actor.
    let (_, events) = d.get("/api/v1/events?limit=20").await;
    let create = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "create" && e["instance"] == "fresh")
        .unwrap_or_else(|| panic!("{events}"));
    assert_eq!(create["result"], "ok", "{create}");
    assert!(
        create["actor"].as_str().unwrap().starts_with("dashboard@"),
        "{create}"
    );
}

async fn instance_page(d: &Daemon, cookie: &str) -> String {
    client()
        .get(d.url("/ui/instances/shelf"))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn back_up_now_from_the_instance_page() {
    let d = Daemon::start().await;
    d.cli_json(&["create", "shelf", "--version", crate::support::PB_NEW]);
    let (_, cookie) = sign_in(&d, &[]).await;
    let csrf = csrf_of(&d, &cookie).await;
    let page = instance_page(&d, &cookie).await;
    assert!(page.contains("No backups yet."), "{page}");
    assert!(page.contains("id=\"action-backup\""), "{page}");
    let (status, body) = datastar_post(
        &d,
        "/ui/instances/shelf/backup",
        Some(&cookie),
        Some(&csrf),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("shelf backed up as "), "{body}");
    let listed = d.cli_json(&["backup", "list", "shelf"]);
    let id = listed[0]["id"].as_str().unwrap().to_string();
    let page = instance_page(&d, &cookie).await;
    assert!(page.contains(&id), "the page lists the new backup: {page}");
    // Audited under the dashboard session's actor.
    let (_, events) = d.get("/api/v1/events?instance=shelf&limit=5").await;
    let backup = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "backup")
        .unwrap_or_else(|| panic!("{events}"));
    assert!(
        backup["actor"].as_str().unwrap().starts_with("dashboard@"),
        "{backup}"
    );
}
