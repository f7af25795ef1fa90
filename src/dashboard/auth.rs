//! Sign-in for the dashboard: the admin token is exchanged once for a
//! session cookie; every state-changing request also carries the session's
//! CSRF token.
//!
//! - The cookie holds a random 256-bit session id; the store keeps only its
//!   SHA-256, so a copy of the state database signs nobody in. It is
//!   `HttpOnly`, `SameSite=Strict`, scoped to `/ui`, and `Secure` when the
//!   dashboard is reached over HTTPS (a TLS proxy in front says so with
//!   `X-Forwarded-Proto: https`; it is believed from loopback and from the
//!   configured trusted proxies only).
//! - Sessions last [`SESSION_TTL`] and end at sign-out, or when the admin
//!   token changes (each session records a fingerprint of the token).
//! - CSRF: a per-session random token, rendered into the page and sent back
//!   in the `X-CSRF-Token` header by every Datastar action (or as the `csrf`
//!   form field by the sign-out form). A request whose `Origin` names another
//!   host is refused too.
//!
//! The pure parts (cookie text, header parsing, the comparison) are here
//! and unit-tested; the middleware only strings them together.

use std::net::IpAddr;

use axum::http::{header, HeaderMap, HeaderValue, Method};
use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

use crate::api::constant_time_eq;
use crate::store::SessionRecord;

/// The session cookie's name.
pub const COOKIE: &str = "pockestrator_session";
/// The header Datastar actions carry the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a sign-in lasts.
pub const SESSION_TTL: Duration = Duration::hours(12);

/// A signed-in session, as handlers see it (a request extension).
#[derive(Debug, Clone)]
pub struct Session {
    pub id_hash: String,
    pub csrf: String,
    pub actor: String,
}

/// A new session: the id for the cookie and the record for the store.
pub fn new_session(token: &str, peer: &str, now: DateTime<Utc>) -> (String, SessionRecord) {
    let id = hex::encode(rand::random::<[u8; 32]>());
    let record = SessionRecord {
        id_hash: hash_id(&id),
        csrf: hex::encode(rand::random::<[u8; 32]>()),
        actor: format!("dashboard@{peer}"),
        token_fp: token_fingerprint(token),
        created_at: now,
        expires_at: now + SESSION_TTL,
    };
    (id, record)
}

/// What the store keeps of a session id.
pub fn hash_id(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// A fingerprint of the admin token: sessions opened with another token
/// are not valid.
pub fn token_fingerprint(token: &str) -> String {
    let digest = Sha256::digest(format!("pockestrator-session:{token}").as_bytes());
    hex::encode(&digest[..16])
}

/// The `Set-Cookie` value that signs a browser in.
pub fn session_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_TTL.num_seconds(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that signs a browser out.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The session id the request's cookies carry, if any. Only well-formed
/// ids (64 hex digits) are returned.
pub fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether the session is valid for this token at `now`.
pub fn session_valid(record: &SessionRecord, token: &str, now: DateTime<Utc>) -> bool {
    record.expires_at > now
        && constant_time_eq(
            record.token_fp.as_bytes(),
            token_fingerprint(token).as_bytes(),
        )
}

/// Whether this method changes state (and so needs the CSRF token).
pub fn needs_csrf(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether the request's CSRF header matches the session's token.
pub fn csrf_ok(headers: &HeaderMap, session: &Session) -> bool {
    headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| constant_time_eq(v.trim().as_bytes(), session.csrf.as_bytes()))
}

/// A cross-site request is refused even before the CSRF check: when the
/// browser says where the request comes from (`Origin`), it must be this
/// host. Requests without `Origin` (curl, old browsers) are left to the
/// CSRF token.
pub fn origin_ok(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    let forwarded_host = headers
        .get("x-forwarded-host")
        .and_then(|v| v.to_str().ok());
    origin_host.eq_ignore_ascii_case(host)
        || forwarded_host.is_some_and(|h| origin_host.eq_ignore_ascii_case(h))
}

/// Whether the browser reached the dashboard over HTTPS: a TLS proxy in
/// front says so, and it is believed only from loopback or a trusted
/// proxy.
pub fn is_https(headers: &HeaderMap, peer: Option<IpAddr>, trusted: &[IpAddr]) -> bool {
    let trusted_peer = peer.is_some_and(|ip| ip.is_loopback() || trusted.contains(&ip));
    trusted_peer
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// A header value from text we made ourselves.
pub fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn cookie_text() {
        let id = "ab".repeat(32);
        expect_test::expect![[r#"pockestrator_session=abababababababababababababababababababababababababababababababab; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=43200"#]]
            .assert_eq(&session_cookie(&id, false));
        assert!(session_cookie(&id, true).ends_with("; Secure"));
        expect_test::expect![[
            r#"pockestrator_session=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"#
        ]]
        .assert_eq(&clear_cookie(false));
    }

    #[test]
    fn session_id_from_cookies() {
        let id = "0f".repeat(32);
        let h = headers(&[("cookie", &format!("a=b; {COOKIE}={id}; c=d"))]);
        assert_eq!(session_id(&h), Some(id.clone()));
        // Two Cookie headers (HTTP/2 splits them).
        let h = headers(&[("cookie", "a=b"), ("cookie", &format!("{COOKIE}={id}"))]);
        assert_eq!(session_id(&h), Some(id));
        for bad in [
            "",
            "pockestrator_session=",
            "pockestrator_session=xyz",
            "pockestrator_session=../../etc/passwd",
            "other=0f0f",
        ] {
            assert_eq!(session_id(&headers(&[("cookie", bad)])), None, "{bad}");
        }
        let long = format!("{COOKIE}={}", "a".repeat(65));
        assert_eq!(session_id(&headers(&[("cookie", &long)])), None);
    }

    #[test]
    fn sessions_expire_and_follow_the_token() {
        let now = Utc::now();
        let (id, record) = new_session("tok", "127.0.0.1", now);
        assert_eq!(record.id_hash, hash_id(&id));
        assert_ne!(record.id_hash, id);
        assert!(session_valid(&record, "tok", now));
        assert!(!session_valid(&record, "other-token", now));
        assert!(!session_valid(&record, "tok", now + SESSION_TTL));
        let (id2, record2) = new_session("tok", "127.0.0.1", now);
        assert_ne!(id, id2);
        assert_ne!(record.csrf, record2.csrf);
    }

    #[test]
    fn csrf_header_must_match() {
        let s = Session {
            id_hash: String::new(),
            csrf: "c".repeat(64),
            actor: "a".into(),
        };
        assert!(csrf_ok(&headers(&[(CSRF_HEADER, &"c".repeat(64))]), &s));
        assert!(!csrf_ok(&headers(&[(CSRF_HEADER, &"d".repeat(64))]), &s));
        assert!(!csrf_ok(&headers(&[(CSRF_HEADER, "")]), &s));
        assert!(!csrf_ok(&headers(&[]), &s));
        assert!(needs_csrf(&Method::POST));
        assert!(needs_csrf(&Method::DELETE));
        assert!(!needs_csrf(&Method::GET));
    }

    #[test]
    fn origin_must_be_this_host() {
        assert!(origin_ok(&headers(&[("host", "127.0.0.1:7070")])));
        assert!(origin_ok(&headers(&[
            ("host", "127.0.0.1:7070"),
            ("origin", "http://127.0.0.1:7070")
        ])));
        assert!(!origin_ok(&headers(&[
            ("host", "127.0.0.1:7070"),
            ("origin", "http://evil.example")
        ])));
        assert!(!origin_ok(&headers(&[
            ("host", "127.0.0.1:7070"),
            ("origin", "null")
        ])));
        assert!(origin_ok(&headers(&[
            ("host", "127.0.0.1:7070"),
            ("x-forwarded-host", "fleet.example.com"),
            ("origin", "https://fleet.example.com")
        ])));
    }

    #[test]
    fn https_is_believed_from_trusted_peers_only() {
        let h = headers(&[("x-forwarded-proto", "https")]);
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        assert!(is_https(&h, Some(local), &[]));
        assert!(is_https(&h, Some(proxy), &[proxy]));
        assert!(!is_https(&h, Some(stranger), &[proxy]));
        assert!(!is_https(&headers(&[]), Some(local), &[]));
    }
}
