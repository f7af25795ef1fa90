//! What the Caddy admin router puts into Caddy's config, as pure functions
//! over plain data: the route of one instance, the catch-all, our server,
//! the TLS automation policies and on-demand permission, and the merge of
//! our objects into lists that also hold objects that are not ours.
//!
//! Object ids (`@id`) name what is ours:
//! - `pockestrator-NAME`: the route of instance NAME (NAME is a DNS label,
//!   so it never contains a dot);
//! - `pockestrator-catch-all`: the 404 route that stays last in our server;
//! - `pockestrator.tls.NAME` and `pockestrator.tls.NAME.on-demand`: the TLS
//!   automation policies of instance NAME (the dot keeps them apart from
//!   route ids);
//! - `pockestrator.on-demand`: the on-demand TLS permission.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::CaddyTls;
use crate::model::names::shown;
use crate::router::{Drift, DriftKind, Route, RouterError};

/// Every route id of ours starts with this.
pub const ROUTE_ID_PREFIX: &str = "pockestrator-";
/// The catch-all route: last in our server, answers 404.
pub const CATCH_ALL_ID: &str = "pockestrator-catch-all";
/// The instance name that would collide with the catch-all's id.
pub const RESERVED_NAME: &str = "catch-all";
/// Every TLS automation policy of ours starts with this.
pub const TLS_ID_PREFIX: &str = "pockestrator.tls.";
/// The on-demand TLS permission object.
pub const ON_DEMAND_ID: &str = "pockestrator.on-demand";
/// What the catch-all answers.
pub const CATCH_ALL_BODY: &str = "no instance at this address";

/// The `@id` of an instance's route.
pub fn route_id(name: &str) -> String {
    format!("{ROUTE_ID_PREFIX}{name}")
}

/// The `@id` of an instance's TLS policy for its hosts issued at load.
pub fn tls_policy_id(name: &str) -> String {
    format!("{TLS_ID_PREFIX}{name}")
}

/// The `@id` of an instance's on-demand TLS policy (custom domains).
pub fn tls_on_demand_policy_id(name: &str) -> String {
    format!("{TLS_ID_PREFIX}{name}.on-demand")
}

/// The `@id` of an object, if it has one.
pub fn object_id(v: &Value) -> Option<&str> {
    v.get("@id").and_then(Value::as_str)
}

/// The instance name of a route id of ours (`None` for the catch-all and
/// for ids that are not ours).
pub fn route_owner(id: &str) -> Option<&str> {
    if id == CATCH_ALL_ID {
        return None;
    }
    id.strip_prefix(ROUTE_ID_PREFIX)
        .filter(|rest| !rest.is_empty())
}

/// The instance name of a TLS policy id of ours.
pub fn policy_owner(id: &str) -> Option<&str> {
    let rest = id.strip_prefix(TLS_ID_PREFIX)?;
    let name = rest.strip_suffix(".on-demand").unwrap_or(rest);
    (!name.is_empty()).then_some(name)
}

/// Refuse a route whose hosts could be read as anything but hostnames: an
/// empty host list, or a host with characters outside `a-z 0-9 . -` (a
/// `{` would be a Caddy placeholder; whitespace, newlines or braces would
/// break a Caddyfile), and the one instance name that collides with the
/// catch-all's id.
pub fn check_route(route: &Route) -> Result<(), RouterError> {
    if route.name.as_str() == RESERVED_NAME {
        return Err(RouterError::Other(format!(
            "the instance name {} is reserved by the caddy router (its route id would be the catch-all's); rename the instance",
            shown(RESERVED_NAME)
        )));
    }
    check_hosts(route)
}

/// The host part of [`check_route`], for routers without a catch-all.
pub fn check_hosts(route: &Route) -> Result<(), RouterError> {
    if route.hosts.is_empty() {
        return Err(RouterError::Other(format!(
            "instance {} has no hostname to route",
            shown(route.name.as_str())
        )));
    }
    for host in &route.hosts {
        check_host(host)?;
    }
    Ok(())
}

/// One hostname: 1–253 characters of `a-z 0-9 . -`, no empty label.
pub fn check_host(host: &str) -> Result<(), RouterError> {
    let refuse = |why: &str| {
        Err(RouterError::Other(format!(
            "refusing to route host {}: {why}",
            shown(host)
        )))
    };
    if host.is_empty() || host.len() > 253 {
        return refuse("a hostname has 1 to 253 characters");
    }
    if let Some(c) = host
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
    {
        return refuse(&format!(
            "{c:?} is not allowed in a hostname (only lowercase a-z, 0-9, '-' and '.')"
        ));
    }
    if host.split('.').any(str::is_empty) {
        return refuse("a hostname has no empty labels");
    }
    Ok(())
}

/// The route of one instance: seed 000's site block in Caddy's JSON.
///
/// `route.available` is not rendered: Caddy answers 502 while the upstream
/// is down, and a route that changed with every start and stop would churn
/// Caddy's config and the stored hash. Nor is `route.held`: Caddy cannot
/// keep requests waiting while an instance is switched, so during a switch
/// its clients see the 502 of a stopped upstream.
pub fn route_json(route: &Route) -> Value {
    json!({
        "@id": route_id(route.name.as_str()),
        "match": [{ "host": route.hosts }],
        "handle": [{
            "handler": "subroute",
            "routes": [{
                "handle": [
                    { "handler": "request_body", "max_size": route.max_body_bytes },
                    {
                        "handler": "reverse_proxy",
                        "upstreams": [{ "dial": format!("127.0.0.1:{}", route.port) }],
                        "transport": {
                            "protocol": "http",
                            "read_timeout": format!("{}s", route.read_timeout.as_secs()),
                        },
                        "headers": {
                            "request": {
                                "set": { "X-Real-IP": ["{http.request.remote.host}"] }
                            }
                        }
                    }
                ]
            }]
        }],
        "terminal": true
    })
}

/// The last route of our server: Caddy answers an empty 200 to a host no
/// route matches, which would look like a working instance.
pub fn catch_all_json() -> Value {
    json!({
        "@id": CATCH_ALL_ID,
        "handle": [{
            "handler": "static_response",
            "status_code": 404,
            "body": CATCH_ALL_BODY,
        }],
        "terminal": true
    })
}

/// The port of a listener address (`:443`, `0.0.0.0:80`, `[::]:443`,
/// `tcp/:80`), if it has exactly one.
fn listen_port(addr: &str) -> Option<u16> {
    addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

/// The addresses our server listens on. With automatic HTTPS the
/// addresses on Caddy's HTTP port are left to Caddy: it serves the
/// HTTP→HTTPS redirects and ACME challenges there from a server of its
/// own, which it could not do if our routes answered plain HTTP first.
pub fn server_listen(listen: &[String], tls: CaddyTls, http_port: u16) -> Vec<String> {
    if tls == CaddyTls::Off {
        return listen.to_vec();
    }
    let https: Vec<String> = listen
        .iter()
        .filter(|a| listen_port(a) != Some(http_port))
        .cloned()
        .collect();
    if https.is_empty() {
        listen.to_vec()
    } else {
        https
    }
}

/// Our server as it is created: the listeners, only the catch-all route,
/// and automatic HTTPS disabled for `tls off`.
pub fn server_json(listen: &[String], tls: CaddyTls, http_port: u16) -> Value {
    let mut server = Map::new();
    server.insert(
        "listen".into(),
        json!(server_listen(listen, tls, http_port)),
    );
    server.insert("routes".into(), json!([catch_all_json()]));
    if let Some(auto) = automatic_https_json(tls) {
        server.insert("automatic_https".into(), auto);
    }
    Value::Object(server)
}

/// The server's `automatic_https` object for a TLS mode.
pub fn automatic_https_json(tls: CaddyTls) -> Option<Value> {
    match tls {
        CaddyTls::Off => Some(json!({ "disable": true })),
        CaddyTls::Auto | CaddyTls::Internal => None,
    }
}

/// The on-demand TLS permission (Caddy ≥ 2.8): Caddy asks
/// `GET endpoint?domain=NAME` before it obtains a certificate for a name
/// covered by an on-demand policy, and proceeds only on 2xx.
pub fn on_demand_json(ask_url: &str) -> Value {
    json!({
        "@id": ON_DEMAND_ID,
        "permission": { "module": "http", "endpoint": ask_url }
    })
}

/// The same for Caddy 2.7, which knows only `ask`.
pub fn on_demand_json_legacy(ask_url: &str) -> Value {
    json!({ "@id": ON_DEMAND_ID, "ask": ask_url })
}

/// The TLS automation policies of one instance, first in Caddy's list.
///
/// `hosts[0]` is `NAME.BASE_DOMAIN`, the rest are custom domains. With an
/// ask endpoint, custom domains get on-demand certificates (so a domain
/// whose DNS does not point here yet costs nothing until a client comes);
/// `internal` puts every host on the local CA.
pub fn tls_policies(route: &Route, tls: CaddyTls, ask_url: Option<&str>) -> Vec<Value> {
    let name = route.name.as_str();
    let (base, custom) = match route.hosts.split_first() {
        Some((base, custom)) => (base, custom),
        None => return Vec::new(),
    };
    let on_demand = ask_url.is_some() && !custom.is_empty();
    let mut policies = Vec::new();
    match tls {
        CaddyTls::Off => {}
        CaddyTls::Auto => {
            if on_demand {
                policies.push(json!({
                    "@id": tls_on_demand_policy_id(name),
                    "subjects": custom,
                    "on_demand": true,
                }));
            }
        }
        CaddyTls::Internal => {
            let at_load: Vec<&String> = if on_demand {
                vec![base]
            } else {
                route.hosts.iter().collect()
            };
            policies.push(json!({
                "@id": tls_policy_id(name),
                "subjects": at_load,
                "issuers": [{ "module": "internal" }],
            }));
            if on_demand {
                policies.push(json!({
                    "@id": tls_on_demand_policy_id(name),
                    "subjects": custom,
                    "issuers": [{ "module": "internal" }],
                    "on_demand": true,
                }));
            }
        }
    }
    policies
}

/// Whether the ask endpoint should allow a certificate for `domain`: 2xx
/// only for a name that one of `routes` answers at.
pub fn ask_allows(routes: &[Route], domain: &str) -> bool {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    routes
        .iter()
        .any(|r| r.hosts.iter().any(|h| h.eq_ignore_ascii_case(domain)))
}

/// JSON with object keys sorted and no whitespace, whatever serde_json's
/// map order: the text hashes and snapshots are made of.
pub fn canonical(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let s: BTreeMap<&String, Value> = m.iter().map(|(k, v)| (k, sorted(v))).collect();
                let mut out = Map::new();
                for (k, v) in s {
                    out.insert(k.clone(), v);
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    // A Value always serializes.
    serde_json::to_string(&sorted(v)).unwrap_or_default()
}

/// The same JSON pretty-printed with sorted keys (for snapshots and logs).
pub fn canonical_pretty(v: &Value) -> String {
    serde_json::from_str::<Value>(&canonical(v))
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_default()
}

/// Hex sha256 of what is rendered for one instance: its route and its TLS
/// policies.
pub fn render_hash(route: &Value, policies: &[Value]) -> String {
    let mut h = Sha256::new();
    h.update(canonical(route).as_bytes());
    for p in policies {
        h.update(b"\n");
        h.update(canonical(p).as_bytes());
    }
    hex::encode(h.finalize())
}

/// Structural equality as Caddy gives JSON back: key order ignored, numbers
/// compared by value (Caddy re-encodes every number as a float64).
pub fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// What a reconcile of our server's route list does.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutePlan {
    /// The whole new list: routes not ours where they were, ours replaced
    /// in place, new ones of ours after them, the catch-all last.
    pub routes: Vec<Value>,
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    /// Whether `routes` differs from the list that is in place.
    pub changed: bool,
}

/// Plan the route list that holds exactly `desired` of ours (name, route
/// JSON), keeping every route that is not ours untouched and in order.
pub fn plan_routes(existing: &[Value], desired: &[(String, Value)]) -> RoutePlan {
    let mut routes = Vec::with_capacity(existing.len() + desired.len());
    let mut seen = std::collections::BTreeSet::new();
    let (mut added, mut updated, mut removed) = (Vec::new(), Vec::new(), Vec::new());
    for r in existing {
        let Some(id) = object_id(r) else {
            routes.push(r.clone());
            continue;
        };
        if id == CATCH_ALL_ID {
            continue;
        }
        let Some(owner) = route_owner(id) else {
            routes.push(r.clone());
            continue;
        };
        match desired.iter().find(|(n, _)| n == owner) {
            Some((name, want)) if !seen.contains(name) => {
                seen.insert(name.clone());
                if json_equal(r, want) {
                    routes.push(r.clone());
                } else {
                    updated.push(name.clone());
                    routes.push(want.clone());
                }
            }
            // A second route with the same id of ours: drop it.
            Some(_) => {}
            None => removed.push(owner.to_string()),
        }
    }
    for (name, want) in desired {
        if seen.insert(name.clone()) {
            added.push(name.clone());
            routes.push(want.clone());
        }
    }
    routes.push(catch_all_json());
    let changed = routes.len() != existing.len()
        || routes.iter().zip(existing).any(|(a, b)| !json_equal(a, b));
    RoutePlan {
        routes,
        added,
        updated,
        removed,
        changed,
    }
}

/// Put `desired` policies of ours first in Caddy's automation policy list
/// (the first policy whose subjects match a name wins) and drop every
/// other policy for which `is_ours` holds; the rest keep their order.
pub fn plan_policies(
    existing: &[Value],
    is_ours: impl Fn(&str) -> bool,
    desired: &[Value],
) -> Vec<Value> {
    let mut out: Vec<Value> = desired.to_vec();
    out.extend(
        existing
            .iter()
            .filter(|p| !object_id(p).is_some_and(&is_ours))
            .cloned(),
    );
    out
}

/// Whether two lists are the same as Caddy would see them.
pub fn lists_equal(a: &[Value], b: &[Value]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| json_equal(x, y))
}

/// In words, what differs between the route in place and the one wanted.
pub fn describe_route_difference(found: &Value, wanted: &Value) -> String {
    let pick = |v: &Value, ptr: &str| {
        v.pointer(ptr)
            .map(canonical)
            .unwrap_or_else(|| "nothing".into())
    };
    let parts = [
        ("hosts", "/match/0/host"),
        ("upstream", "/handle/0/routes/0/handle/1/upstreams/0/dial"),
        ("max body size", "/handle/0/routes/0/handle/0/max_size"),
        (
            "read timeout",
            "/handle/0/routes/0/handle/1/transport/read_timeout",
        ),
        ("request headers", "/handle/0/routes/0/handle/1/headers"),
    ];
    let mut diffs = Vec::new();
    for (what, ptr) in parts {
        let (f, w) = (pick(found, ptr), pick(wanted, ptr));
        if f != w {
            diffs.push(format!("{what} {f} instead of {w}"));
        }
    }
    if diffs.is_empty() {
        "the route differs from the rendered one".into()
    } else {
        diffs.join("; ")
    }
}

/// Compare what is in place (our server's routes, or `None` if the server
/// is missing, and the automation policies) with what is wanted.
pub fn drifts(
    routes_in_place: Option<&[Value]>,
    policies_in_place: &[Value],
    desired: &[(String, Value, Vec<Value>)],
) -> Vec<Drift> {
    let mut out = Vec::new();
    let Some(existing) = routes_in_place else {
        out.push(Drift {
            instance: None,
            kind: DriftKind::Missing,
            detail: "caddy has no server of ours (and so no catch-all route)".into(),
        });
        for (name, _, _) in desired {
            out.push(Drift {
                instance: Some(name.clone()),
                kind: DriftKind::Missing,
                detail: format!("no route {}", route_id(name)),
            });
        }
        return out;
    };
    match existing
        .iter()
        .position(|r| object_id(r) == Some(CATCH_ALL_ID))
    {
        None => out.push(Drift {
            instance: None,
            kind: DriftKind::Missing,
            detail: format!("no catch-all route {CATCH_ALL_ID}: unknown hosts get an empty 200"),
        }),
        Some(i) if i + 1 != existing.len() => out.push(Drift {
            instance: None,
            kind: DriftKind::Changed,
            detail: format!(
                "the catch-all route {CATCH_ALL_ID} is not last: routes after it are never reached"
            ),
        }),
        Some(i) => {
            if !json_equal(&existing[i], &catch_all_json()) {
                out.push(Drift {
                    instance: None,
                    kind: DriftKind::Changed,
                    detail: format!(
                        "the catch-all route {CATCH_ALL_ID} differs from the rendered one"
                    ),
                });
            }
        }
    }
    for (name, want, want_policies) in desired {
        let id = route_id(name);
        match existing.iter().find(|r| object_id(r) == Some(id.as_str())) {
            None => out.push(Drift {
                instance: Some(name.clone()),
                kind: DriftKind::Missing,
                detail: format!("no route {id}"),
            }),
            Some(found) if !json_equal(found, want) => out.push(Drift {
                instance: Some(name.clone()),
                kind: DriftKind::Changed,
                detail: describe_route_difference(found, want),
            }),
            Some(_) => {
                let have: Vec<&Value> = policies_in_place
                    .iter()
                    .filter(|p| object_id(p).and_then(policy_owner) == Some(name.as_str()))
                    .collect();
                let same = have.len() == want_policies.len()
                    && want_policies
                        .iter()
                        .all(|w| have.iter().any(|h| json_equal(h, w)));
                if !same {
                    out.push(Drift {
                        instance: Some(name.clone()),
                        kind: DriftKind::Changed,
                        detail: "its TLS automation policies differ from the rendered ones".into(),
                    });
                }
            }
        }
    }
    let mut stale_seen = std::collections::BTreeSet::new();
    for r in existing {
        if let Some(owner) = object_id(r).and_then(route_owner) {
            if !desired.iter().any(|(n, _, _)| n == owner) && stale_seen.insert(owner.to_string()) {
                out.push(Drift {
                    instance: None,
                    kind: DriftKind::Stale,
                    detail: format!("route {} has no instance", route_id(owner)),
                });
            }
        }
    }
    for p in policies_in_place {
        if let Some(id) = object_id(p) {
            if let Some(owner) = policy_owner(id) {
                if !desired.iter().any(|(n, _, _)| n == owner) {
                    out.push(Drift {
                        instance: None,
                        kind: DriftKind::Stale,
                        detail: format!("TLS automation policy {id} has no instance"),
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use expect_test::{expect, Expect};

    use super::*;
    use crate::model::InstanceName;

    fn route(name: &str, port: u16, hosts: &[&str]) -> Route {
        Route {
            name: InstanceName::parse(name).unwrap(),
            port,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            max_body_bytes: crate::router::DEFAULT_MAX_BODY_BYTES,
            read_timeout: Duration::from_secs(360),
            available: true,
            held: false,
            asleep: false,
        }
    }

    fn check_json(v: &Value, expect: Expect) {
        expect.assert_eq(&canonical_pretty(v));
    }

    #[test]
    fn route_reproduces_seed_000_site_block() {
        check_json(
            &route_json(&route(
                "moots",
                8094,
                &["moots.tigawanna.vip", "moots.example.org"],
            )),
            expect![[r#"
                {
                  "@id": "pockestrator-moots",
                  "handle": [
                    {
                      "handler": "subroute",
                      "routes": [
                        {
                          "handle": [
                            {
                              "handler": "request_body",
                              "max_size": 10000000
                            },
                            {
                              "handler": "reverse_proxy",
                              "headers": {
                                "request": {
                                  "set": {
                                    "X-Real-IP": [
                                      "{http.request.remote.host}"
                                    ]
                                  }
                                }
                              },
                              "transport": {
                                "protocol": "http",
                                "read_timeout": "360s"
                              },
                              "upstreams": [
                                {
                                  "dial": "127.0.0.1:8094"
                                }
                              ]
                            }
                          ]
                        }
                      ]
                    }
                  ],
                  "match": [
                    {
                      "host": [
                        "moots.tigawanna.vip",
                        "moots.example.org"
                      ]
                    }
                  ],
                  "terminal": true
                }"#]],
        );
    }

    #[test]
    fn catch_all_and_servers() {
        check_json(
            &catch_all_json(),
            expect![[r#"
                {
                  "@id": "pockestrator-catch-all",
                  "handle": [
                    {
                      "body": "no instance at this address",
                      "handler": "static_response",
                      "status_code": 404
                    }
                  ],
                  "terminal": true
                }"#]],
        );
        let listen = vec![":80".to_string(), ":443".to_string()];
        check_json(
            &json!({
                "off": server_json(&listen, CaddyTls::Off, 80)["listen"],
                "off_auto_https": server_json(&listen, CaddyTls::Off, 80)["automatic_https"],
                "auto": server_json(&listen, CaddyTls::Auto, 80)["listen"],
                "internal": server_json(&listen, CaddyTls::Internal, 80)["listen"],
                "auto_only_http": server_listen(&[":80".into()], CaddyTls::Auto, 80),
                "auto_other_http_port": server_listen(&listen, CaddyTls::Auto, 8080),
                "auto_ipv6": server_listen(&["[::]:80".into(), "[::]:443".into()], CaddyTls::Auto, 80),
            }),
            expect![[r#"
                {
                  "auto": [
                    ":443"
                  ],
                  "auto_ipv6": [
                    "[::]:443"
                  ],
                  "auto_only_http": [
                    ":80"
                  ],
                  "auto_other_http_port": [
                    ":80",
                    ":443"
                  ],
                  "internal": [
                    ":443"
                  ],
                  "off": [
                    ":80",
                    ":443"
                  ],
                  "off_auto_https": {
                    "disable": true
                  }
                }"#]],
        );
        assert!(server_json(&listen, CaddyTls::Auto, 80)
            .get("automatic_https")
            .is_none());
    }

    #[test]
    fn tls_policies_per_mode() {
        let r = route(
            "shop",
            8091,
            &[
                "shop.example.com",
                "shop.example.org",
                "www.shop.example.org",
            ],
        );
        let ask_url = "http://127.0.0.1:9000/api/v1/tls/ask";
        let ask = Some(ask_url);
        check_json(
            &json!({
                "off": tls_policies(&r, CaddyTls::Off, ask),
                "auto": tls_policies(&r, CaddyTls::Auto, ask),
                "auto_no_ask": tls_policies(&r, CaddyTls::Auto, None),
                "internal": tls_policies(&r, CaddyTls::Internal, ask),
                "internal_no_ask": tls_policies(&r, CaddyTls::Internal, None),
                "auto_no_custom": tls_policies(&route("a", 1, &["a.example.com"]), CaddyTls::Auto, ask),
                "on_demand": on_demand_json(ask_url),
            }),
            expect![[r#"
                {
                  "auto": [
                    {
                      "@id": "pockestrator.tls.shop.on-demand",
                      "on_demand": true,
                      "subjects": [
                        "shop.example.org",
                        "www.shop.example.org"
                      ]
                    }
                  ],
                  "auto_no_ask": [],
                  "auto_no_custom": [],
                  "internal": [
                    {
                      "@id": "pockestrator.tls.shop",
                      "issuers": [
                        {
                          "module": "internal"
                        }
                      ],
                      "subjects": [
                        "shop.example.com"
                      ]
                    },
                    {
                      "@id": "pockestrator.tls.shop.on-demand",
                      "issuers": [
                        {
                          "module": "internal"
                        }
                      ],
                      "on_demand": true,
                      "subjects": [
                        "shop.example.org",
                        "www.shop.example.org"
                      ]
                    }
                  ],
                  "internal_no_ask": [
                    {
                      "@id": "pockestrator.tls.shop",
                      "issuers": [
                        {
                          "module": "internal"
                        }
                      ],
                      "subjects": [
                        "shop.example.com",
                        "shop.example.org",
                        "www.shop.example.org"
                      ]
                    }
                  ],
                  "off": [],
                  "on_demand": {
                    "@id": "pockestrator.on-demand",
                    "permission": {
                      "endpoint": "http://127.0.0.1:9000/api/v1/tls/ask",
                      "module": "http"
                    }
                  }
                }"#]],
        );
    }

    #[test]
    fn hostile_hosts_are_refused() {
        let cases = [
            "a.example.com\nevil.example.com { }",
            "{env.HOME}.example.com",
            "a.example.com}",
            "a example.com",
            "A.example.com",
            "a..example.com",
            "",
            "a.example.com:443",
            "*.example.com",
        ];
        let got: Vec<String> = cases
            .iter()
            .map(|h| match check_route(&route("a", 1, &[h])) {
                Ok(()) => format!("{h:?}: accepted"),
                Err(e) => e.to_string(),
            })
            .collect();
        expect![[r#"
            refusing to route host "a.example.com\nevil.example.com { }": '\n' is not allowed in a hostname (only lowercase a-z, 0-9, '-' and '.')
            refusing to route host "{env.HOME}.example.com": '{' is not allowed in a hostname (only lowercase a-z, 0-9, '-' and '.')
            refusing to route host "a.example.com}": '}' is not allowed in a hostname (only lowercase a-z, 0-9, '-' and '.')
            refusing to route host "a example.com": ' ' is not allowed in a hostname (only lowercase a-z, 0-9, '-' and '.')
            refusing to route host "A.example.com": 'A' is not allowed in a hostname (only lowercase a-z, 0-9, '-' and '.')
            refusing to route host "a..example.com": a hostname has no empty labels
            refusing to route host "": a hostname has 1 to 253 characters
            refusing to route host "a.example.com:443": ':' is not allowed in a hostname (only lowercase a-z, 0-9, '-' and '.')
            refusing to route host "*.example.com": '*' is not allowed in a hostname (only lowercase a-z, 0-9, '-' and '.')"#]]
        .assert_eq(&got.join("\n"));
        assert!(check_route(&route("a", 1, &[])).is_err());
        assert!(
            InstanceName::parse("catch-all").is_err(),
            "the catch-all id must stay ours"
        );
        assert!(check_route(&route("a", 1, &["a.localhost", "xn--bcher-kva.example"])).is_ok());
    }

    #[test]
    fn hostile_hosts_stay_data_in_json() {
        // Even unchecked, a host is a JSON string, never structure.
        let v = route_json(&route("a", 1, &["x\",\"y"]));
        assert_eq!(v["match"][0]["host"][0], "x\",\"y");
        assert_eq!(v["match"][0]["host"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn ids_and_owners() {
        assert_eq!(route_owner("pockestrator-blog"), Some("blog"));
        assert_eq!(route_owner(CATCH_ALL_ID), None);
        assert_eq!(route_owner("pockestrator-"), None);
        assert_eq!(route_owner("someone-else"), None);
        assert_eq!(route_owner("pockestrator.tls.blog"), None);
        assert_eq!(policy_owner("pockestrator.tls.blog"), Some("blog"));
        assert_eq!(
            policy_owner("pockestrator.tls.blog.on-demand"),
            Some("blog")
        );
        assert_eq!(policy_owner("pockestrator-blog"), None);
        assert_eq!(policy_owner(ON_DEMAND_ID), None);
    }

    #[test]
    fn ask_allows_only_routed_names() {
        let routes = [route("a", 1, &["a.example.com", "shop.example.org"])];
        assert!(ask_allows(&routes, "shop.example.org"));
        assert!(ask_allows(&routes, "SHOP.example.org."));
        assert!(!ask_allows(&routes, "evil.example.org"));
        assert!(!ask_allows(&routes, ""));
    }

    #[test]
    fn json_equal_ignores_key_order_and_number_spelling() {
        let a: Value = serde_json::from_str(r#"{"a":1,"b":[10000000,"x"]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"b":[1e7,"x"],"a":1.0}"#).unwrap();
        assert!(json_equal(&a, &b));
        let c: Value = serde_json::from_str(r#"{"b":[1e7,"x"],"a":2}"#).unwrap();
        assert!(!json_equal(&a, &c));
        assert_eq!(canonical(&a), r#"{"a":1,"b":[10000000,"x"]}"#);
    }

    #[test]
    fn render_hash_is_stable_and_sensitive() {
        let r = route("a", 8091, &["a.example.com"]);
        let h = render_hash(&route_json(&r), &[]);
        assert_eq!(h.len(), 64);
        assert_eq!(h, render_hash(&route_json(&r.clone()), &[]));
        let moved = route("a", 8092, &["a.example.com"]);
        assert_ne!(h, render_hash(&route_json(&moved), &[]));
        let p = tls_policies(
            &route("a", 8091, &["a.example.com", "b.example.org"]),
            CaddyTls::Auto,
            Some("http://x/ask"),
        );
        assert_ne!(h, render_hash(&route_json(&r), &p));
    }

    fn names(plan: &RoutePlan) -> Vec<String> {
        plan.routes
            .iter()
            .map(|r| object_id(r).unwrap_or("(no id)").to_string())
            .collect()
    }

    #[test]
    fn plan_keeps_foreign_routes_and_catch_all_last() {
        let a = route("a", 1, &["a.example.com"]);
        let b = route("b", 2, &["b.example.com"]);
        let b_moved = route("b", 3, &["b.example.com"]);
        let foreign = json!({"@id": "hand-made", "handle": [{"handler": "static_response"}]});
        let anonymous = json!({"handle": [{"handler": "static_response", "body": "x"}]});
        let existing = vec![
            foreign.clone(),
            route_json(&b),
            json!({"@id": "pockestrator-gone"}),
            catch_all_json(),
            anonymous.clone(),
        ];
        let desired = vec![
            ("a".to_string(), route_json(&a)),
            ("b".to_string(), route_json(&b_moved)),
        ];
        let plan = plan_routes(&existing, &desired);
        assert_eq!(
            names(&plan),
            [
                "hand-made",
                "pockestrator-b",
                "(no id)",
                "pockestrator-a",
                "pockestrator-catch-all"
            ]
        );
        assert_eq!(plan.added, ["a"]);
        assert_eq!(plan.updated, ["b"]);
        assert_eq!(plan.removed, ["gone"]);
        assert!(plan.changed);
        assert_eq!(plan.routes[0], foreign);
        assert_eq!(plan.routes[2], anonymous);

        let again = plan_routes(&plan.routes, &desired);
        assert!(!again.changed);
        assert!(again.added.is_empty() && again.updated.is_empty() && again.removed.is_empty());
    }

    #[test]
    fn plan_drops_duplicate_ids_of_ours() {
        let a = route("a", 1, &["a.example.com"]);
        let existing = vec![route_json(&a), route_json(&a), catch_all_json()];
        let plan = plan_routes(&existing, &[("a".into(), route_json(&a))]);
        assert_eq!(names(&plan), ["pockestrator-a", "pockestrator-catch-all"]);
        assert!(plan.changed);
    }

    #[test]
    fn plan_policies_puts_ours_first() {
        let theirs = json!({"subjects": ["x.example.com"]});
        let catch_all = json!({"issuers": [{"module": "acme"}]});
        let old = json!({"@id": "pockestrator.tls.a", "subjects": ["old"]});
        let other = json!({"@id": "pockestrator.tls.b", "subjects": ["b"]});
        let new = json!({"@id": "pockestrator.tls.a", "subjects": ["new"]});
        let out = plan_policies(
            &[theirs.clone(), old, catch_all.clone(), other.clone()],
            |id| policy_owner(id) == Some("a"),
            std::slice::from_ref(&new),
        );
        assert_eq!(out, vec![new, theirs, catch_all, other]);
    }

    #[test]
    fn drift_in_words() {
        let a = route("a", 1, &["a.example.com"]);
        let b = route("b", 2, &["b.example.com"]);
        let existing = vec![
            route_json(&route("a", 9, &["a.example.com", "x.example.com"])),
            json!({"@id": "pockestrator-gone"}),
            catch_all_json(),
        ];
        let policies = vec![json!({"@id": "pockestrator.tls.old"})];
        let desired = vec![
            ("a".to_string(), route_json(&a), vec![]),
            ("b".to_string(), route_json(&b), vec![]),
        ];
        let got = drifts(Some(&existing), &policies, &desired);
        let text: Vec<String> = got
            .iter()
            .map(|d| format!("{} {:?}: {}", d.kind, d.instance, d.detail))
            .collect();
        expect![[r#"
            changed Some("a"): hosts ["a.example.com","x.example.com"] instead of ["a.example.com"]; upstream "127.0.0.1:9" instead of "127.0.0.1:1"
            missing Some("b"): no route pockestrator-b
            stale None: route pockestrator-gone has no instance
            stale None: TLS automation policy pockestrator.tls.old has no instance"#]]
        .assert_eq(&text.join("\n"));

        let none = drifts(None, &[], &desired[..1]);
        assert_eq!(none.len(), 2);
        let out_of_order = vec![catch_all_json(), route_json(&a)];
        let d = drifts(Some(&out_of_order), &[], &desired[..1]);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].kind, "changed");
        assert!(drifts(
            Some(&[route_json(&a), catch_all_json()]),
            &[],
            &desired[..1]
        )
        .is_empty());
    }
}
