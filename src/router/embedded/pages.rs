//! The proxy's own answers: short HTML pages for an unknown host (404), a
//! stopped or starting instance (503 + `Retry-After`), an unreachable
//! upstream (502), a slow one (504), a body over the limit (413) and a
//! request without a host (400).
//!
//! Only the 404 page says anything about the request (the host), and the
//! host is attacker-controlled, so it is HTML-escaped and bounded.

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};

use super::ProxyBody;

/// The longest host the 404 page repeats.
const SHOWN_HOST_CHARS: usize = 253;

fn page(status: StatusCode, body: Bytes) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Full::new(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// 404: no instance answers for `host`.
pub(super) fn unknown_host(host: &str) -> Response<ProxyBody> {
    let mut body = String::with_capacity(200 + host.len().min(SHOWN_HOST_CHARS) * 2);
    body.push_str(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>404 Not Found</title></head>\n\
         <body><h1>404 Not Found</h1>\n<p>No PocketBase instance answers for <code>",
    );
    push_escaped(&mut body, host);
    body.push_str("</code> here.</p></body></html>\n");
    page(StatusCode::NOT_FOUND, Bytes::from(body))
}

/// 503: the instance is stopped or starting (or was held, being switched
/// to a new release, for longer than the proxy waits).
pub(super) fn unavailable(retry_after: &HeaderValue) -> Response<ProxyBody> {
    let mut response = page(
        StatusCode::SERVICE_UNAVAILABLE,
        Bytes::from_static(
            b"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>503 Service Unavailable</title></head>\n\
              <body><h1>503 Service Unavailable</h1>\n<p>This PocketBase instance is stopped or starting. Try again shortly.</p></body></html>\n",
        ),
    );
    response
        .headers_mut()
        .insert(RETRY_AFTER, retry_after.clone());
    response
}

/// 502: the instance did not accept the connection or broke it.
pub(super) fn bad_gateway() -> Response<ProxyBody> {
    page(
        StatusCode::BAD_GATEWAY,
        Bytes::from_static(
            b"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>502 Bad Gateway</title></head>\n\
              <body><h1>502 Bad Gateway</h1>\n<p>The PocketBase instance behind this host is not answering.</p></body></html>\n",
        ),
    )
}

/// 504: the instance sent no response in time.
pub(super) fn gateway_timeout() -> Response<ProxyBody> {
    page(
        StatusCode::GATEWAY_TIMEOUT,
        Bytes::from_static(
            b"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>504 Gateway Timeout</title></head>\n\
              <body><h1>504 Gateway Timeout</h1>\n<p>The PocketBase instance behind this host did not answer in time.</p></body></html>\n",
        ),
    )
}

/// 413: the request body is over the instance's limit. The connection is
/// closed afterwards, since the rest of the body is not read.
pub(super) fn too_large() -> Response<ProxyBody> {
    let mut response = page(
        StatusCode::PAYLOAD_TOO_LARGE,
        Bytes::from_static(
            b"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>413 Content Too Large</title></head>\n\
              <body><h1>413 Content Too Large</h1>\n<p>The request body is larger than this instance accepts.</p></body></html>\n",
        ),
    );
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// 400: the request names no host (or one that cannot be routed).
pub(super) fn bad_request() -> Response<ProxyBody> {
    page(
        StatusCode::BAD_REQUEST,
        Bytes::from_static(
            b"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>400 Bad Request</title></head>\n\
              <body><h1>400 Bad Request</h1>\n<p>The request names no host.</p></body></html>\n",
        ),
    )
}

/// Append `raw` HTML-escaped, at most [`SHOWN_HOST_CHARS`] characters of
/// it, control characters dropped.
fn push_escaped(out: &mut String, raw: &str) {
    let mut chars = raw.chars();
    for c in chars.by_ref().take(SHOWN_HOST_CHARS) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    if chars.next().is_some() {
        out.push('…');
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    fn escaped(raw: &str) -> String {
        let mut out = String::new();
        push_escaped(&mut out, raw);
        out
    }

    #[test]
    fn escapes_markup() {
        expect![[r#"&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"#]]
            .assert_eq(&escaped("<script>alert(\"x\")</script>&'"));
        assert_eq!(escaped("a\u{7}b"), "ab");
        assert_eq!(escaped(&"x".repeat(300)).chars().count(), 254);
    }

    #[test]
    fn the_404_page_names_the_host() {
        let response = unknown_host("<b>Nope.localhost");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let Either::Right(body) = response.into_body() else {
            panic!("a page has a full body");
        };
        let bytes = futures::executor::block_on(http_body_util::BodyExt::collect(body))
            .unwrap()
            .to_bytes();
        expect![[r#"
            <!doctype html>
            <html><head><meta charset="utf-8"><title>404 Not Found</title></head>
            <body><h1>404 Not Found</h1>
            <p>No PocketBase instance answers for <code>&lt;b&gt;Nope.localhost</code> here.</p></body></html>
        "#]]
        .assert_eq(std::str::from_utf8(&bytes).unwrap());
    }
}
