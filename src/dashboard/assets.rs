//! The dashboard's static files, compiled into the binary: Datastar's
//! JavaScript (vendored from npm by `scripts/vendor-datastar`, see
//! `assets/README.md`) and the stylesheet. They are served with a
//! content-hash query string and cached for a year.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// Datastar 1.0.0-beta.11's single-file bundle, byte for byte from npm.
pub const DATASTAR_JS: &[u8] = include_bytes!("../../assets/datastar.js");
/// The SHA-256 `scripts/vendor-datastar` recorded for it.
#[cfg(test)]
const DATASTAR_SHA256: &str = include_str!("../../assets/datastar.js.sha256");
/// The Datastar version the JS is, and the one the `datastar` crate's
/// events are written for: the two must match.
pub const DATASTAR_VERSION: &str = "1.0.0-beta.11";
/// The dashboard's stylesheet.
pub const APP_CSS: &[u8] = include_bytes!("../../assets/app.css");

/// A short content hash, for cache-busting URLs.
fn short_hash(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..6])
}

/// `/ui/assets/datastar.js?v=…`
pub fn datastar_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| format!("/ui/assets/datastar.js?v={}", short_hash(DATASTAR_JS)))
}

/// `/ui/assets/app.css?v=…`
pub fn css_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| format!("/ui/assets/app.css?v={}", short_hash(APP_CSS)))
}

fn serve(bytes: &'static [u8], content_type: &'static str, headers: &HeaderMap) -> Response {
    let etag = format!("\"{}\"", short_hash(bytes));
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag)
    {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
            (
                header::ETAG,
                HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\"")),
            ),
        ],
        bytes,
    )
        .into_response()
}

pub async fn datastar_js(headers: HeaderMap) -> Response {
    serve(DATASTAR_JS, "text/javascript; charset=utf-8", &headers)
}

pub async fn app_css(headers: HeaderMap) -> Response {
    serve(APP_CSS, "text/css; charset=utf-8", &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded JS is the file the vendoring script checked, it is the
    /// version the server's event format is written for, and it knows the
    /// event names the `datastar` crate sends.
    #[test]
    fn datastar_js_and_server_events_match() {
        assert_eq!(
            hex::encode(Sha256::digest(DATASTAR_JS)),
            DATASTAR_SHA256.trim(),
            "assets/datastar.js changed without scripts/vendor-datastar"
        );
        let js = std::str::from_utf8(DATASTAR_JS).unwrap();
        assert!(
            js.starts_with(&format!("// Datastar v{DATASTAR_VERSION}")),
            "the bundle is not Datastar {DATASTAR_VERSION}"
        );
        let event = datastar::prelude::MergeFragments::new("<div id=\"x\"></div>")
            .into_event()
            .to_string();
        let name = event
            .lines()
            .find_map(|l| l.strip_prefix("event: "))
            .expect("an event line");
        assert_eq!(name, "datastar-merge-fragments");
        for needle in [
            name,
            "datastar-merge-signals",
            "fragments",
            "mergeMode",
            "selector",
        ] {
            assert!(js.contains(needle), "the JS does not know {needle:?}");
        }
        // The crate's data lines are the ones the JS reads.
        assert!(
            event.contains("data: fragments <div id=\"x\"></div>"),
            "{event}"
        );
    }

    #[test]
    fn urls_carry_a_content_hash() {
        assert!(datastar_url().starts_with("/ui/assets/datastar.js?v="));
        assert!(css_url().starts_with("/ui/assets/app.css?v="));
        assert_eq!(datastar_url().len(), "/ui/assets/datastar.js?v=".len() + 12);
    }
}
