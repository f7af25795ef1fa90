//! Header rewriting on the way through: hop-by-hop headers out, forwarding
//! headers (`X-Forwarded-*`, `X-Real-IP`) in.
//!
//! A client can write any `X-Forwarded-For` it likes, so the one it sends
//! is only kept (and appended to) when the peer is a configured trusted
//! proxy; otherwise the peer's own address replaces it.

use std::net::IpAddr;

use bytes::Bytes;
use hyper::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, EXPECT, FORWARDED, PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};

pub(super) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(super) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(super) static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(super) static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The connection's peer as the forwarding headers need it, computed once
/// per connection.
#[derive(Debug, Clone)]
pub(super) struct Peer {
    /// The peer's IP as a header value (`127.0.0.1`, `::1`).
    pub(super) value: HeaderValue,
    /// Whether the peer is one of the configured trusted proxies.
    pub(super) trusted: bool,
}

impl Peer {
    pub(super) fn new(ip: IpAddr, trusted_proxies: &[IpAddr]) -> Self {
        let ip = ip.to_canonical();
        let mut buf = [0u8; 64];
        let len = {
            use std::io::Write;
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            // An IP address is at most 45 characters: the buffer fits it.
            let _ = write!(cursor, "{ip}");
            cursor.position() as usize
        };
        let value = HeaderValue::from_bytes(&buf[..len])
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self {
            value,
            trusted: trusted_proxies.contains(&ip),
        }
    }
}

/// True if the request asks to switch protocols (`Connection: upgrade` plus
/// an `Upgrade` header), as WebSockets do.
pub(super) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE) && connection_has_token(headers, b"upgrade")
}

fn connection_has_token(headers: &HeaderMap, token: &[u8]) -> bool {
    headers.get_all(CONNECTION).iter().any(|value| {
        value
            .as_bytes()
            .split(|b| *b == b',')
            .any(|t| trim(t).eq_ignore_ascii_case(token))
    })
}

/// Remove the hop-by-hop headers (RFC 9110 §7.6.1), those the `Connection`
/// header names included. With `keep_upgrade` the `Upgrade` header stays
/// and `Connection` is reduced to `upgrade`, so a protocol switch passes.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    if let Some(named) = connection_named_headers(headers) {
        for name in named {
            if !(keep_upgrade && name == UPGRADE) {
                headers.remove(&name);
            }
        }
    }
    headers.remove(CONNECTION);
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
    headers.remove(PROXY_AUTHENTICATE);
    headers.remove(PROXY_AUTHORIZATION);
    headers.remove(TE);
    headers.remove(TRAILER);
    headers.remove(TRANSFER_ENCODING);
    if keep_upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(UPGRADE);
    }
}

/// The extra headers a `Connection` header names, if it names any beyond
/// the usual `keep-alive`, `close` and `upgrade` (rare, so the common case
/// allocates nothing).
fn connection_named_headers(headers: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut named: Option<Vec<HeaderName>> = None;
    for value in headers.get_all(CONNECTION) {
        for token in value.as_bytes().split(|b| *b == b',') {
            let token = trim(token);
            if token.is_empty()
                || token.eq_ignore_ascii_case(b"keep-alive")
                || token.eq_ignore_ascii_case(b"close")
                || token.eq_ignore_ascii_case(b"upgrade")
            {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token) {
                named.get_or_insert_with(Vec::new).push(name);
            }
        }
    }
    named
}

/// Headers the proxy handles itself rather than forwarding: `Expect` (the
/// upstream gets the body streamed whatever it would have answered).
pub(super) fn strip_request_only(headers: &mut HeaderMap) {
    headers.remove(EXPECT);
}

/// Set `X-Forwarded-For`, `X-Real-IP`, `X-Forwarded-Proto` and
/// `X-Forwarded-Host` for the upstream. `host` is the host the client
/// asked for.
pub(super) fn set_forwarding(
    headers: &mut HeaderMap,
    peer: &Peer,
    trusted_proxies: &[IpAddr],
    host: HeaderValue,
) {
    if !peer.trusted {
        headers.insert(&X_FORWARDED_FOR, peer.value.clone());
        headers.insert(&X_REAL_IP, peer.value.clone());
        headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("http"));
        headers.insert(&X_FORWARDED_HOST, host);
        headers.remove(FORWARDED);
        return;
    }
    let mut chain: Option<Vec<u8>> = None;
    for value in headers.get_all(&X_FORWARDED_FOR) {
        let entries = trim(value.as_bytes());
        if entries.is_empty() {
            continue;
        }
        let buf = chain.get_or_insert_with(|| Vec::with_capacity(96));
        if !buf.is_empty() {
            buf.extend_from_slice(b", ");
        }
        buf.extend_from_slice(entries);
    }
    match chain {
        None => {
            headers.insert(&X_FORWARDED_FOR, peer.value.clone());
            headers.insert(&X_REAL_IP, peer.value.clone());
        }
        Some(mut buf) => {
            buf.extend_from_slice(b", ");
            buf.extend_from_slice(peer.value.as_bytes());
            let real_ip = HeaderValue::from_bytes(client_ip(&buf, trusted_proxies))
                .unwrap_or_else(|_| peer.value.clone());
            match HeaderValue::from_maybe_shared(Bytes::from(buf)) {
                Ok(chain) => headers.insert(&X_FORWARDED_FOR, chain),
                Err(_) => headers.insert(&X_FORWARDED_FOR, peer.value.clone()),
            };
            headers.insert(&X_REAL_IP, real_ip);
        }
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    if !headers.contains_key(&X_FORWARDED_HOST) {
        headers.insert(&X_FORWARDED_HOST, host);
    }
}

/// The client's address in an `X-Forwarded-For` chain whose last entry is
/// a trusted peer: walking from the right, the first address that is not a
/// trusted proxy. If an entry is not an address, the last trusted one to
/// its right is the best we know; if all are trusted, the leftmost.
fn client_ip<'a>(chain: &'a [u8], trusted_proxies: &[IpAddr]) -> &'a [u8] {
    let mut candidate: &[u8] = b"";
    for entry in chain.rsplit(|b| *b == b',') {
        let entry = trim(entry);
        match parse_ip(entry) {
            Some(ip) if trusted_proxies.contains(&ip) => candidate = entry,
            Some(_) => return entry,
            None if candidate.is_empty() => return entry,
            None => return candidate,
        }
    }
    candidate
}

fn parse_ip(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?;
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    text.parse::<std::net::SocketAddr>()
        .ok()
        .map(|s| s.ip().to_canonical())
}

fn trim(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    fn render(map: &HeaderMap) -> String {
        let mut lines: Vec<String> = map
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
            .collect();
        lines.sort();
        lines.join("\n")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn check_forwarding(peer: &str, trusted: &[&str], request: &[(&str, &str)], expect: Expect) {
        let trusted: Vec<IpAddr> = trusted.iter().map(|s| ip(s)).collect();
        let mut map = headers(request);
        let peer = Peer::new(ip(peer), &trusted);
        set_forwarding(
            &mut map,
            &peer,
            &trusted,
            HeaderValue::from_static("blog.localhost:8080"),
        );
        expect.assert_eq(&render(&map));
    }

    #[test]
    fn untrusted_peer_replaces_everything() {
        check_forwarding(
            "203.0.113.7",
            &["127.0.0.1"],
            &[
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-for", "7.7.7.7"),
                ("x-real-ip", "6.6.6.6"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "evil.example"),
                ("forwarded", "for=6.6.6.6"),
                ("accept", "*/*"),
            ],
            expect![[r#"
                accept: */*
                x-forwarded-for: 203.0.113.7
                x-forwarded-host: blog.localhost:8080
                x-forwarded-proto: http
                x-real-ip: 203.0.113.7"#]],
        );
    }

    #[test]
    fn ipv4_mapped_peer_is_shown_as_ipv4() {
        check_forwarding(
            "::ffff:127.0.0.1",
            &["127.0.0.1"],
            &[],
            expect![[r#"
                x-forwarded-for: 127.0.0.1
                x-forwarded-host: blog.localhost:8080
                x-forwarded-proto: http
                x-real-ip: 127.0.0.1"#]],
        );
    }

    #[test]
    fn trusted_peer_appends_and_keeps() {
        check_forwarding(
            "10.0.0.2",
            &["10.0.0.2", "10.0.0.3"],
            &[
                ("x-forwarded-for", "6.6.6.6, 10.0.0.3"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "blog.example.com"),
            ],
            expect![[r#"
                x-forwarded-for: 6.6.6.6, 10.0.0.3, 10.0.0.2
                x-forwarded-host: blog.example.com
                x-forwarded-proto: https
                x-real-ip: 6.6.6.6"#]],
        );
        check_forwarding(
            "10.0.0.2",
            &["10.0.0.2"],
            &[
                ("x-forwarded-for", "1.1.1.1"),
                ("x-forwarded-for", "2.2.2.2"),
            ],
            expect![[r#"
                x-forwarded-for: 1.1.1.1, 2.2.2.2, 10.0.0.2
                x-forwarded-host: blog.localhost:8080
                x-forwarded-proto: http
                x-real-ip: 2.2.2.2"#]],
        );
        check_forwarding(
            "10.0.0.2",
            &["10.0.0.2"],
            &[],
            expect![[r#"
                x-forwarded-for: 10.0.0.2
                x-forwarded-host: blog.localhost:8080
                x-forwarded-proto: http
                x-real-ip: 10.0.0.2"#]],
        );
    }

    #[test]
    fn client_ip_walks_from_the_right() {
        let trusted = [ip("10.0.0.2"), ip("10.0.0.3")];
        let pick = |chain: &str| {
            String::from_utf8(client_ip(chain.as_bytes(), &trusted).to_vec()).unwrap()
        };
        assert_eq!(pick("1.1.1.1, 2.2.2.2, 10.0.0.3, 10.0.0.2"), "2.2.2.2");
        assert_eq!(pick("10.0.0.3, 10.0.0.2"), "10.0.0.3");
        assert_eq!(pick("garbage, 10.0.0.3, 10.0.0.2"), "10.0.0.3");
        assert_eq!(pick("[2001:db8::1]:443, 10.0.0.2"), "[2001:db8::1]:443");
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut map = headers(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "Basic x"),
            ("upgrade", "websocket"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut map, false);
        expect![[r#"accept: */*"#]].assert_eq(&render(&map));
    }

    #[test]
    fn upgrade_survives_when_asked() {
        let mut map = headers(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "abc"),
        ]);
        assert!(is_upgrade(&map));
        strip_hop_by_hop(&mut map, true);
        expect![[r#"
            connection: upgrade
            sec-websocket-key: abc
            upgrade: websocket"#]]
        .assert_eq(&render(&map));
        assert!(!is_upgrade(&headers(&[("upgrade", "websocket")])));
        assert!(!is_upgrade(&headers(&[("connection", "upgrade")])));
    }
}
