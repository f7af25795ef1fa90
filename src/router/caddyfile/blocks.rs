//! The managed blocks of a Caddyfile, as pure text functions: render one
//! instance's block, find the blocks between our marker comments, and
//! splice blocks in and out so that every byte outside them stays as it
//! was.
//!
//! A managed block is the region from the start of its begin marker line
//! to the end of its end marker line (newline included):
//!
//! ```text
//! # pockestrator:begin NAME
//! NAME.example.com {
//!     …
//! }
//! # pockestrator:end NAME
//! ```
//!
//! New blocks are appended at the end of the file; the only byte ever
//! added outside a block is a final newline for a file that lacks one.

use std::ops::Range;

use crate::model::names::shown;
use crate::router::caddy::render::check_hosts;
use crate::router::caddy::CaddyTls;
use crate::router::{Drift, DriftKind, Route, RouterError};

/// What starts a begin marker line (followed by the instance name).
pub const BEGIN_MARKER: &str = "# pockestrator:begin ";
/// What starts an end marker line (followed by the instance name).
pub const END_MARKER: &str = "# pockestrator:end ";

/// Markers that do not pair up; the file needs a look by hand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarkerError {
    #[error("line {line}: begin marker for {name} inside the block of {open} (begun on line {open_line})")]
    Nested {
        line: usize,
        name: String,
        open: String,
        open_line: usize,
    },
    #[error("line {line}: end marker for {name} without a begin marker")]
    Unopened { line: usize, name: String },
    #[error(
        "line {line}: end marker for {name} closes the block of {open} (begun on line {open_line})"
    )]
    Mismatched {
        line: usize,
        name: String,
        open: String,
        open_line: usize,
    },
    #[error("line {line}: the block of {name} is never closed (no end marker)")]
    Unclosed { line: usize, name: String },
    #[error("line {line}: a marker without an instance name")]
    Unnamed { line: usize },
}

/// One managed block found in a Caddyfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedBlock {
    pub name: String,
    /// Byte range of the whole block, markers and final newline included.
    pub range: Range<usize>,
}

enum Marker<'a> {
    Begin(&'a str),
    End(&'a str),
}

fn marker(line: &str) -> Option<Marker<'_>> {
    let line = line.trim();
    if let Some(rest) = line.strip_prefix(BEGIN_MARKER.trim_end()) {
        if rest.is_empty() || rest.starts_with(char::is_whitespace) {
            return Some(Marker::Begin(rest.trim()));
        }
    }
    if let Some(rest) = line.strip_prefix(END_MARKER.trim_end()) {
        if rest.is_empty() || rest.starts_with(char::is_whitespace) {
            return Some(Marker::End(rest.trim()));
        }
    }
    None
}

/// Find the managed blocks of a Caddyfile, in file order.
pub fn parse_blocks(text: &str) -> Result<Vec<ManagedBlock>, MarkerError> {
    let mut blocks = Vec::new();
    // (name, line number, byte offset of the begin line)
    let mut open: Option<(String, usize, usize)> = None;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let line_no = i + 1;
        let start = offset;
        offset += line.len();
        match marker(line) {
            None => {}
            Some(Marker::Begin("") | Marker::End("")) => {
                return Err(MarkerError::Unnamed { line: line_no })
            }
            Some(Marker::Begin(name)) => {
                if let Some((open_name, open_line, _)) = &open {
                    return Err(MarkerError::Nested {
                        line: line_no,
                        name: shown(name),
                        open: shown(open_name),
                        open_line: *open_line,
                    });
                }
                open = Some((name.to_string(), line_no, start));
            }
            Some(Marker::End(name)) => match open.take() {
                None => {
                    return Err(MarkerError::Unopened {
                        line: line_no,
                        name: shown(name),
                    })
                }
                Some((open_name, open_line, _)) if open_name != name => {
                    return Err(MarkerError::Mismatched {
                        line: line_no,
                        name: shown(name),
                        open: shown(&open_name),
                        open_line,
                    })
                }
                Some((open_name, _, begin)) => blocks.push(ManagedBlock {
                    name: open_name,
                    range: begin..offset,
                }),
            },
        }
    }
    if let Some((name, line, _)) = open {
        return Err(MarkerError::Unclosed {
            line,
            name: shown(&name),
        });
    }
    Ok(blocks)
}

/// The bytes of a Caddyfile outside its managed blocks.
pub fn unmanaged(text: &str, blocks: &[ManagedBlock]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for b in blocks {
        out.push_str(&text[at..b.range.start]);
        at = b.range.end;
    }
    out.push_str(&text[at..]);
    out
}

/// `request_body max_size` as seed 000 writes it (`10MB`; Caddy's MB is
/// 10^6 bytes), or in bytes when it is not a whole number of MB.
fn max_size(bytes: u64) -> String {
    if bytes >= 1_000_000 && bytes % 1_000_000 == 0 {
        format!("{}MB", bytes / 1_000_000)
    } else {
        bytes.to_string()
    }
}

/// One instance's managed block: seed 000's site block for all its hosts.
/// Refused for a host that is not a plain hostname (a newline or a brace
/// would change the structure of the file).
///
/// `route.available` and `route.held` are not rendered: Caddy answers 502
/// while the upstream is down and cannot keep requests waiting while an
/// instance is switched, and a block that changed with every start and
/// stop would reload Caddy each time.
pub fn render_block(route: &Route, tls: CaddyTls) -> Result<String, RouterError> {
    render_block_at(route, tls, None)
}

/// The same, with site addresses on `site_port` when it is given.
pub fn render_block_at(
    route: &Route,
    tls: CaddyTls,
    site_port: Option<u16>,
) -> Result<String, RouterError> {
    check_hosts(route)?;
    let name = route.name.as_str();
    let scheme = if tls == CaddyTls::Off { "http://" } else { "" };
    let port = site_port.map(|p| format!(":{p}")).unwrap_or_default();
    let sites: Vec<String> = route
        .hosts
        .iter()
        .map(|h| format!("{scheme}{h}{port}"))
        .collect();
    let tls_line = if tls == CaddyTls::Internal {
        "\ttls internal\n"
    } else {
        ""
    };
    Ok(format!(
        "{BEGIN_MARKER}{name}\n\
         {sites} {{\n\
         {tls_line}\
         \trequest_body {{\n\
         \t\tmax_size {max_size}\n\
         \t}}\n\
         \treverse_proxy 127.0.0.1:{port} {{\n\
         \t\ttransport http {{\n\
         \t\t\tread_timeout {timeout}s\n\
         \t\t}}\n\
         \t\theader_up X-Real-IP {{remote_host}}\n\
         \t}}\n\
         }}\n\
         {END_MARKER}{name}\n",
        sites = sites.join(", "),
        max_size = max_size(route.max_body_bytes),
        port = route.port,
        timeout = route.read_timeout.as_secs(),
    ))
}

/// A new Caddyfile text and what changed in it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FilePlan {
    pub text: String,
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
}

/// Rewrite `text` so that every block of `desired` (name, rendered block)
/// is in it exactly once, and the blocks for which `stale` holds that are
/// not desired are gone. Existing blocks are replaced where they are; new
/// ones are appended in `desired` order; a second block with the same
/// name is dropped. Everything outside managed blocks is kept as it is.
pub fn plan_file(
    text: &str,
    blocks: &[ManagedBlock],
    desired: &[(String, String)],
    stale: impl Fn(&str) -> bool,
) -> FilePlan {
    let mut plan = FilePlan {
        text: String::with_capacity(text.len()),
        ..FilePlan::default()
    };
    let mut placed = std::collections::BTreeSet::new();
    let mut at = 0;
    for b in blocks {
        plan.text.push_str(&text[at..b.range.start]);
        at = b.range.end;
        let current = &text[b.range.clone()];
        match desired.iter().find(|(n, _)| *n == b.name) {
            Some((name, block)) if placed.insert(name.clone()) => {
                if current != block {
                    plan.updated.push(name.clone());
                }
                plan.text.push_str(block);
            }
            Some((name, _)) => {
                if !plan.updated.contains(name) {
                    plan.updated.push(name.clone());
                }
            }
            None if stale(&b.name) => plan.removed.push(b.name.clone()),
            None => plan.text.push_str(current),
        }
    }
    plan.text.push_str(&text[at..]);
    for (name, block) in desired {
        if placed.insert(name.clone()) {
            if !plan.text.is_empty() && !plan.text.ends_with('\n') {
                plan.text.push('\n');
            }
            plan.text.push_str(block);
            plan.added.push(name.clone());
        }
    }
    plan
}

/// Compare the managed blocks in place with the rendered ones.
pub fn drifts(text: &str, blocks: &[ManagedBlock], desired: &[(String, String)]) -> Vec<Drift> {
    let mut out = Vec::new();
    for (name, want) in desired {
        let mine: Vec<&ManagedBlock> = blocks.iter().filter(|b| b.name == *name).collect();
        match mine.first() {
            None => out.push(Drift {
                instance: Some(name.clone()),
                kind: DriftKind::Missing,
                detail: format!("no managed block {name} in the Caddyfile"),
            }),
            Some(b) => {
                let have = &text[b.range.clone()];
                if have != want {
                    out.push(Drift {
                        instance: Some(name.clone()),
                        kind: DriftKind::Changed,
                        detail: first_difference(have, want),
                    });
                } else if mine.len() > 1 {
                    out.push(Drift {
                        instance: Some(name.clone()),
                        kind: DriftKind::Changed,
                        detail: format!("the Caddyfile has {} managed blocks for it", mine.len()),
                    });
                }
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for b in blocks {
        if !desired.iter().any(|(n, _)| *n == b.name) && seen.insert(b.name.clone()) {
            out.push(Drift {
                instance: None,
                kind: DriftKind::Stale,
                detail: format!("managed block {} has no instance", shown(&b.name)),
            });
        }
    }
    out
}

/// The first line where a block in place differs from the rendered one.
fn first_difference(have: &str, want: &str) -> String {
    let mut have_lines = have.lines();
    let mut want_lines = want.lines();
    for line in 1.. {
        match (have_lines.next(), want_lines.next()) {
            (None, None) => break,
            (h, w) if h == w => continue,
            (h, w) => {
                return format!(
                    "line {line} of the block is {} instead of {}",
                    h.map(|h| shown(h.trim()))
                        .unwrap_or_else(|| "missing".into()),
                    w.map(|w| shown(w.trim()))
                        .unwrap_or_else(|| "nothing".into()),
                )
            }
        }
    }
    "the block differs from the rendered one".into()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use expect_test::expect;

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

    #[test]
    fn block_reproduces_seed_000() {
        let r = route("moots", 8094, &["moots.tigawanna.vip", "moots.example.org"]);
        expect![[r#"
            # pockestrator:begin moots
            moots.tigawanna.vip, moots.example.org {
            	request_body {
            		max_size 10MB
            	}
            	reverse_proxy 127.0.0.1:8094 {
            		transport http {
            			read_timeout 360s
            		}
            		header_up X-Real-IP {remote_host}
            	}
            }
            # pockestrator:end moots
        "#]]
        .assert_eq(&render_block(&r, CaddyTls::Auto).unwrap());
    }

    #[test]
    fn block_per_tls_mode_and_odd_sizes() {
        let mut r = route("a", 8091, &["a.localhost"]);
        r.max_body_bytes = 1_500_000;
        r.read_timeout = Duration::from_secs(30);
        expect![[r#"
            # pockestrator:begin a
            http://a.localhost {
            	request_body {
            		max_size 1500000
            	}
            	reverse_proxy 127.0.0.1:8091 {
            		transport http {
            			read_timeout 30s
            		}
            		header_up X-Real-IP {remote_host}
            	}
            }
            # pockestrator:end a
        "#]]
        .assert_eq(&render_block(&r, CaddyTls::Off).unwrap());
        expect![[r#"
            # pockestrator:begin a
            a.localhost {
            	tls internal
            	request_body {
            		max_size 1500000
            	}
            	reverse_proxy 127.0.0.1:8091 {
            		transport http {
            			read_timeout 30s
            		}
            		header_up X-Real-IP {remote_host}
            	}
            }
            # pockestrator:end a
        "#]]
        .assert_eq(&render_block(&r, CaddyTls::Internal).unwrap());
    }

    #[test]
    fn hostile_hosts_never_reach_the_file() {
        let cases = [
            &["a.example.com\n}\n:80 {\n\trespond \"pwned\"\n"][..],
            &["a.example.com {"],
            &["a.example.com}"],
            &["a.example.com", "b.example.com # comment"],
            &["{$HOME}.example.com"],
            &["import /etc/passwd"],
            &[],
        ];
        let got: Vec<String> = cases
            .iter()
            .map(
                |hosts| match render_block(&route("a", 1, hosts), CaddyTls::Auto) {
                    Ok(b) => format!("rendered: {b:?}"),
                    Err(e) => e.to_string(),
                },
            )
            .collect();
        expect![[r#"
            refusing to route host "a.example.com\n}\n:80 {\n\trespond \"pwned\"\n": '\n' is not allowed in a hostname (only lowercase a-z, 0-9, '-' and '.')
            refusing to route host "a.example.com {": ' ' is not allowed in a hostname (only lowercase a-z, 0-9, '-' and '.')
            refusing to route host "a.example.com}": '}' is not allowed in a hostname (only lowercase a-z, 0-9, '-' and '.')
            refusing to route host "b.example.com # comment": ' ' is not allowed in a hostname (only lowercase a-z, 0-9, '-' and '.')
            refusing to route host "{$HOME}.example.com": '{' is not allowed in a hostname (only lowercase a-z, 0-9, '-' and '.')
            refusing to route host "import /etc/passwd": ' ' is not allowed in a hostname (only lowercase a-z, 0-9, '-' and '.')
            instance "a" has no hostname to route"#]]
        .assert_eq(&got.join("\n"));
    }

    const HAND_WRITTEN: &str = "{\n\temail ops@example.com\n  admin 127.0.0.1:2999\n}\n\n# my blog\nblog.example.com   {\n    root * /srv/blog\n\tfile_server\n}\n\n\n(snippet) {\n  header -Server\n}\n";

    fn blocks_of(text: &str) -> Vec<(String, String)> {
        parse_blocks(text)
            .unwrap()
            .into_iter()
            .map(|b| (b.name, text[b.range].to_string()))
            .collect()
    }

    #[test]
    fn splice_in_update_and_out_keeps_other_bytes() {
        let a = render_block(&route("a", 8091, &["a.example.com"]), CaddyTls::Auto).unwrap();
        let b = render_block(&route("b", 8092, &["b.example.com"]), CaddyTls::Auto).unwrap();
        let a2 = render_block(&route("a", 8093, &["a.example.com"]), CaddyTls::Auto).unwrap();

        let p1 = plan_file(HAND_WRITTEN, &[], &[("a".into(), a.clone())], |_| false);
        assert_eq!(p1.added, ["a"]);
        assert_eq!(p1.text, format!("{HAND_WRITTEN}{a}"));

        let bl = parse_blocks(&p1.text).unwrap();
        let p2 = plan_file(&p1.text, &bl, &[("b".into(), b.clone())], |_| false);
        assert_eq!(p2.text, format!("{HAND_WRITTEN}{a}{b}"));

        let bl = parse_blocks(&p2.text).unwrap();
        let p3 = plan_file(&p2.text, &bl, &[("a".into(), a2.clone())], |_| false);
        assert_eq!(p3.updated, ["a"]);
        assert_eq!(p3.text, format!("{HAND_WRITTEN}{a2}{b}"));
        assert_eq!(
            unmanaged(&p3.text, &parse_blocks(&p3.text).unwrap()),
            HAND_WRITTEN
        );

        let bl = parse_blocks(&p3.text).unwrap();
        let p4 = plan_file(&p3.text, &bl, &[], |n| n == "a");
        assert_eq!(p4.removed, ["a"]);
        assert_eq!(p4.text, format!("{HAND_WRITTEN}{b}"));

        let bl = parse_blocks(&p4.text).unwrap();
        let p5 = plan_file(&p4.text, &bl, &[], |_| true);
        assert_eq!(p5.text, HAND_WRITTEN);

        // Unchanged input, unchanged output.
        let bl = parse_blocks(&p2.text).unwrap();
        let same = plan_file(&p2.text, &bl, &[("a".into(), a), ("b".into(), b)], |_| true);
        assert_eq!(same.text, p2.text);
        assert!(same.added.is_empty() && same.updated.is_empty() && same.removed.is_empty());
    }

    #[test]
    fn blocks_between_hand_written_sites_stay_in_place() {
        let a = render_block(&route("a", 1, &["a.example.com"]), CaddyTls::Auto).unwrap();
        let a2 = render_block(&route("a", 2, &["a.example.com"]), CaddyTls::Auto).unwrap();
        let text = format!(
            "before {{\n}}\n{a}after {{\n}}\n# pockestrator:begin old\nold\n# pockestrator:end old"
        );
        let bl = parse_blocks(&text).unwrap();
        assert_eq!(
            blocks_of(&text)
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>(),
            ["a", "old"]
        );
        let plan = plan_file(&text, &bl, &[("a".into(), a2.clone())], |_| true);
        assert_eq!(plan.text, format!("before {{\n}}\n{a2}after {{\n}}\n"));
        assert_eq!(plan.removed, ["old"]);
    }

    #[test]
    fn missing_final_newline_is_the_only_outside_change() {
        let a = render_block(&route("a", 1, &["a.example.com"]), CaddyTls::Auto).unwrap();
        let plan = plan_file("x {\n}", &[], &[("a".into(), a.clone())], |_| false);
        assert_eq!(plan.text, format!("x {{\n}}\n{a}"));
        let empty = plan_file("", &[], &[("a".into(), a.clone())], |_| false);
        assert_eq!(empty.text, a);
    }

    #[test]
    fn duplicate_blocks_collapse_to_one() {
        let a = render_block(&route("a", 1, &["a.example.com"]), CaddyTls::Auto).unwrap();
        let text = format!("{a}mid\n{a}");
        let bl = parse_blocks(&text).unwrap();
        let d = drifts(&text, &bl, &[("a".into(), a.clone())]);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].kind, "changed");
        let plan = plan_file(&text, &bl, &[("a".into(), a.clone())], |_| false);
        assert_eq!(plan.text, format!("{a}mid\n"));
        assert_eq!(plan.updated, ["a"]);
    }

    #[test]
    fn markers_that_do_not_pair_up() {
        let cases = [
            "# pockestrator:begin a\n# pockestrator:begin b\n",
            "x\n# pockestrator:end a\n",
            "# pockestrator:begin a\n# pockestrator:end b\n",
            "# pockestrator:begin a\nx {\n}\n",
            "# pockestrator:begin\n",
        ];
        let got: Vec<String> = cases
            .iter()
            .map(|t| parse_blocks(t).unwrap_err().to_string())
            .collect();
        expect![[r#"
            line 2: begin marker for "b" inside the block of "a" (begun on line 1)
            line 2: end marker for "a" without a begin marker
            line 2: end marker for "b" closes the block of "a" (begun on line 1)
            line 1: the block of "a" is never closed (no end marker)
            line 1: a marker without an instance name"#]]
        .assert_eq(&got.join("\n"));
        // Look-alikes are not markers.
        assert!(
            parse_blocks("# pockestrator:beginning\n# pockestrator:ends here\n")
                .unwrap()
                .is_empty()
        );
        // Indented and CRLF markers are still markers.
        let crlf = "x\r\n  # pockestrator:begin a\r\nsite\r\n# pockestrator:end a\r\ny\r\n";
        assert_eq!(
            blocks_of(crlf),
            [(
                "a".to_string(),
                "  # pockestrator:begin a\r\nsite\r\n# pockestrator:end a\r\n".to_string()
            )]
        );
    }

    #[test]
    fn drift_of_blocks() {
        let a = render_block(&route("a", 1, &["a.example.com"]), CaddyTls::Auto).unwrap();
        let a_moved = render_block(&route("a", 2, &["a.example.com"]), CaddyTls::Auto).unwrap();
        let b = render_block(&route("b", 3, &["b.example.com"]), CaddyTls::Auto).unwrap();
        let text = format!("{HAND_WRITTEN}{a}# pockestrator:begin gone\n# pockestrator:end gone\n");
        let bl = parse_blocks(&text).unwrap();
        let got: Vec<String> = drifts(&text, &bl, &[("a".into(), a_moved), ("b".into(), b)])
            .iter()
            .map(|d| format!("{} {:?}: {}", d.kind, d.instance, d.detail))
            .collect();
        expect![[r#"
            changed Some("a"): line 6 of the block is "reverse_proxy 127.0.0.1:1 {" instead of "reverse_proxy 127.0.0.1:2 {"
            missing Some("b"): no managed block b in the Caddyfile
            stale None: managed block "gone" has no instance"#]]
        .assert_eq(&got.join("\n"));
    }
}
