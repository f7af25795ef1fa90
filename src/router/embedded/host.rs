//! Which host a request is for: the URI authority (HTTP/2, absolute-form)
//! or else the `Host` header, port stripped, lowercased into a stack buffer
//! so that the lookup allocates nothing.

use hyper::header::HOST;
use hyper::http::request::Parts;

/// A hostname is at most 253 characters; anything longer routes nowhere.
pub(super) const MAX_HOST_LEN: usize = 253;

/// The host as the client sent it (port included), or `None` if the
/// request names none.
pub(super) fn raw_host(parts: &Parts) -> Option<&str> {
    if let Some(authority) = parts.uri.authority() {
        return Some(authority.as_str());
    }
    let value = parts.headers.get(HOST)?.to_str().ok()?;
    if value.is_empty() {
        return None;
    }
    Some(value)
}

/// `raw` without userinfo and port, lowercased, without a trailing dot,
/// written into `buf`. `None` if it is empty or too long to be a hostname.
pub(super) fn normalize<'b>(raw: &str, buf: &'b mut [u8; MAX_HOST_LEN]) -> Option<&'b str> {
    let without_userinfo = match raw.rfind('@') {
        Some(at) => &raw[at + 1..],
        None => raw,
    };
    let host = if without_userinfo.starts_with('[') {
        // An IPv6 literal keeps its brackets, loses its port.
        match without_userinfo.find(']') {
            Some(end) => &without_userinfo[..=end],
            None => without_userinfo,
        }
    } else {
        match without_userinfo.rfind(':') {
            Some(colon) => &without_userinfo[..colon],
            None => without_userinfo,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let bytes = host.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_HOST_LEN {
        return None;
    }
    let out = &mut buf[..bytes.len()];
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = b.to_ascii_lowercase();
    }
    // ASCII lowercasing of valid UTF-8 stays valid UTF-8.
    std::str::from_utf8(&buf[..bytes.len()]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> Option<String> {
        let mut buf = [0u8; MAX_HOST_LEN];
        normalize(raw, &mut buf).map(str::to_string)
    }

    #[test]
    fn strips_port_userinfo_and_case() {
        assert_eq!(norm("blog.localhost").as_deref(), Some("blog.localhost"));
        assert_eq!(
            norm("Blog.LocalHost:8080").as_deref(),
            Some("blog.localhost")
        );
        assert_eq!(
            norm("user:pw@blog.localhost:8080").as_deref(),
            Some("blog.localhost")
        );
        assert_eq!(
            norm("blog.example.com.").as_deref(),
            Some("blog.example.com")
        );
        assert_eq!(norm("[::1]:8080").as_deref(), Some("[::1]"));
        assert_eq!(norm("[::1]").as_deref(), Some("[::1]"));
        assert_eq!(norm("127.0.0.1:80").as_deref(), Some("127.0.0.1"));
    }

    #[test]
    fn refuses_empty_and_overlong() {
        assert_eq!(norm(""), None);
        assert_eq!(norm(":8080"), None);
        assert_eq!(norm(&"a".repeat(254)), None);
        assert_eq!(norm(&"a".repeat(253)).map(|h| h.len()), Some(253));
    }

    #[test]
    fn prefers_the_uri_authority() {
        let (parts, ()) = hyper::Request::builder()
            .uri("http://Shop.localhost:9/x")
            .header(HOST, "blog.localhost")
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(raw_host(&parts), Some("Shop.localhost:9"));
        let (parts, ()) = hyper::Request::builder()
            .uri("/x")
            .header(HOST, "blog.localhost")
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(raw_host(&parts), Some("blog.localhost"));
        let (parts, ()) = hyper::Request::builder()
            .uri("/x")
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(raw_host(&parts), None);
    }
}
