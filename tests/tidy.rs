//! Tidy checks: the architecture invariants of ARCHITECTURE.md, read off
//! the source tree under `src/`, each a test that names the file and line
//! that breaks it.
//!
//! - only `store` talks SQL: no `rusqlite` and no SQL in string literals
//!   elsewhere;
//! - the CLI reaches the daemon only through `client` (and builds the
//!   daemon's `Config` in `cli/serve.rs`);
//! - `model` does no I/O and uses no tokio and no other module;
//! - every module starts with a `//!` comment saying what it is for;
//! - no two sibling modules use each other (no import cycles), at any level.
//!
//! Each check is a pure function over (path, text), tested on fabricated
//! sources that break it, so a check that stops biting fails too. The
//! source is read with a small lexer that blanks comments and literals, so
//! a comment that mentions `rusqlite` or a message that says "crate::store"
//! is not taken for code.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

/// Cycles between sibling modules that exist today and are being removed.
/// Each entry is the set of modules of one cycle. This list must be
/// emptied: an entry that no longer matches a cycle fails the test too, so
/// that it is taken out as soon as its cycle is broken.
const KNOWN_CYCLES: &[&[&str]] = &[];

/// What `src/cli/` may use of the crate: the client and the wire types it
/// speaks, the pure model and the configuration (data dir layout).
const CLI_MAY_USE: &[&str] = &[
    "crate::cli",
    "crate::client",
    "crate::api::dto",
    "crate::model",
    "crate::config",
];

/// Crates that talk HTTP: the CLI leaves that to `client`.
const CLI_MAY_NOT_USE_CRATES: &[&str] = &["hyper", "hyper_util", "http_body_util", "reqwest"];

/// Exceptions to the CLI rule, file by file, each with its reason.
const CLI_EXCEPTIONS: &[(&str, &[&str])] = &[
    // `serve` is the daemon's entry point: it runs it and builds its
    // `Config`, whose fields are typed by the modules that use them.
    (
        "src/cli/serve.rs",
        &[
            "crate::daemon::serve",
            "crate::release::SourceSpec",
            "crate::router::caddy::CaddyTls",
            "crate::runtime::systemd::UnitLog",
            "crate::runtime::systemd::UnitUser",
            "crate::runtime::systemd::unit::check_override",
        ],
    ),
];

// ---------------------------------------------------------------------------
// The checks on the real tree.

#[test]
fn sql_and_rusqlite_only_in_the_store() {
    assert_clean(
        "only src/store/ talks SQL",
        source_files()
            .iter()
            .flat_map(|f| check_sql(&f.path, &f.text)),
    );
}

#[test]
fn the_cli_reaches_the_daemon_only_through_the_client() {
    assert_clean(
        "src/cli/ uses only client, api::dto, model and config",
        source_files()
            .iter()
            .flat_map(|f| check_cli(&f.path, &f.text)),
    );
}

#[test]
fn the_model_does_no_io() {
    assert_clean(
        "src/model/ does no I/O and uses no tokio or other modules",
        source_files()
            .iter()
            .flat_map(|f| check_model(&f.path, &f.text)),
    );
}

#[test]
fn every_module_says_what_it_is_for() {
    assert_clean(
        "every file under src/ starts with a //! comment",
        source_files()
            .iter()
            .flat_map(|f| check_doc(&f.path, &f.text)),
    );
}

#[test]
fn no_import_cycles_between_sibling_modules() {
    let files: Vec<(String, String)> = source_files()
        .into_iter()
        .map(|f| (f.path, f.text))
        .collect();
    assert_clean(
        "sibling modules do not use each other",
        check_cycles(&files, KNOWN_CYCLES),
    );
}

// ---------------------------------------------------------------------------
// The checks bite: each rule fed a fabricated violation.

#[test]
fn sql_rule_bites() {
    let found = check_sql("src/api/x.rs", "//! X\nuse rusqlite::Connection;\n");
    assert_eq!(lines_of(&found), [2], "{found:?}");
    let found = check_sql(
        "src/dashboard/x.rs",
        r##"//! X
fn f() {
    let q = "SELECT name
        FROM instances";
    g(r#"DELETE FROM audit"#);
    h("UPDATE instances SET port = 1", "INSERT INTO x");
    k("CREATE TABLE t (a)");
}
"##,
    );
    assert_eq!(lines_of(&found), [3, 5, 6, 6, 7], "{found:?}");
    // Inside the store, in comments and in ordinary prose: fine.
    let store = r#"use rusqlite::Connection;
const Q: &str = "SELECT a FROM b";
"#;
    assert!(check_sql("src/store/mod.rs", store).is_empty());
    let prose = r#"// rusqlite is the store's
/* SELECT a FROM b */
const M: &str = "select a from b; update the row; rusqlite";
"#;
    assert!(check_sql("src/api/x.rs", prose).is_empty());
}

#[test]
fn cli_rule_bites() {
    let found = check_cli(
        "src/cli/x.rs",
        r#"//! X
use crate::manager::Manager;
use hyper::Request;
fn f() { crate::store::Store::open(); }
use crate::{client::Client, runtime::AnyRuntime};
use super::super::router::Route;
"#,
    );
    assert_eq!(lines_of(&found), [2, 3, 4, 5, 6], "{found:?}");
    let fine = r#"//! X
use crate::client::{lines, Client};
use crate::api::dto::*;
use super::GlobalArgs;
use crate::model::names::shown;
// not crate::manager
const S: &str = "crate::store";
"#;
    assert!(check_cli("src/cli/x.rs", fine).is_empty());
    // An exception holds for its file only, and only for what it names.
    let serve = "use crate::daemon::serve;\n";
    assert!(check_cli("src/cli/serve.rs", serve).is_empty());
    assert_eq!(lines_of(&check_cli("src/cli/table.rs", serve)), [1]);
    let lock = "use crate::daemon::lock_data_dir;\n";
    assert_eq!(lines_of(&check_cli("src/cli/serve.rs", lock)), [1]);
    // Outside src/cli/, nothing to check.
    assert!(check_cli("src/api/x.rs", "use crate::manager::Manager;\n").is_empty());
}

#[test]
fn model_rule_bites() {
    let found = check_model(
        "src/model/x.rs",
        r#"//! X
use std::fs;
use std::{io, process::Command};
async fn f() { tokio::spawn(g()); }
use crate::store::Store;
fn h() { std::net::TcpListener::bind("x"); }
"#,
    );
    assert_eq!(lines_of(&found), [2, 3, 4, 5, 6], "{found:?}");
    let fine = r#"//! Never std::fs.
use super::names::shown;
use crate::model::ports;
use std::collections::HashMap;
"#;
    assert!(check_model("src/model/x.rs", fine).is_empty());
    assert!(check_model("src/manager/x.rs", "use std::fs;\n").is_empty());
}

#[test]
fn doc_rule_bites() {
    assert_eq!(lines_of(&check_doc("src/x.rs", "use std::fs;\n")), [1]);
    let item_doc = "/// An item's doc.\nfn f() {}\n";
    assert_eq!(lines_of(&check_doc("src/x.rs", item_doc)), [1]);
    assert_eq!(lines_of(&check_doc("src/x.rs", "")), [1]);
    assert!(check_doc("src/x.rs", "//! What this is for.\n").is_empty());
    let attributed = "#![allow(dead_code)]\n\n//! What this is for.\n";
    assert!(check_doc("src/x.rs", attributed).is_empty());
}

#[test]
fn cycle_rule_bites() {
    let file = |path: &str, text: &str| (path.to_string(), text.to_string());
    let siblings = [
        file("src/lib.rs", "//! L\npub mod a;\n"),
        file(
            "src/a/mod.rs",
            "//! A\npub mod b;\npub mod c;\npub mod d;\n",
        ),
        file("src/a/b.rs", "//! B\nuse super::c::C;\n"),
        file("src/a/c.rs", "//! C\nfn f() { crate::a::b::g(); }\n"),
        file("src/a/d.rs", "//! D\nuse super::b::B;\n"),
    ];
    let found = check_cycles(&siblings, &[]);
    assert_eq!(found.len(), 1, "{found:?}");
    let message = found[0].to_string();
    assert!(
        message.contains("crate::a::b → crate::a::c → crate::a::b"),
        "{message}"
    );
    assert!(message.contains("src/a/b.rs:2"), "{message}");
    assert!(message.contains("src/a/c.rs:2"), "{message}");
    // A known cycle is let through; a known cycle that is gone is not.
    assert!(check_cycles(&siblings, &[&["crate::a::b", "crate::a::c"]]).is_empty());
    let stale = check_cycles(&siblings[..3], &[&["crate::a::b", "crate::a::c"]]);
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert!(stale[0].to_string().contains("KNOWN_CYCLES"), "{stale:?}");

    // Submodules count for their top-level module; tests do not count.
    let y = r#"//! Y
fn f() {}

#[cfg(test)]
mod tests {
    use crate::x::inner;
}
"#;
    let top = [
        file("src/x/mod.rs", "//! X\nmod inner;\n"),
        file("src/x/inner.rs", "//! I\nuse crate::{y::Y, z};\n"),
        file("src/y.rs", y),
    ];
    assert!(check_cycles(&top, &[]).is_empty());
    let mut top = top.to_vec();
    top.push(file("src/z.rs", "//! Z\nuse crate::x::inner::I;\n"));
    let found = check_cycles(&top, &[]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0]
            .to_string()
            .contains("crate::x → crate::z → crate::x"),
        "{found:?}"
    );
    // Three modules in a ring are one cycle.
    let ring = [
        file("src/p.rs", "//! P\nuse crate::q::Q;\n"),
        file("src/q.rs", "//! Q\nuse crate::r::R;\n"),
        file("src/r.rs", "//! R\nuse crate::p::P;\n"),
    ];
    let found = check_cycles(&ring, &[]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0]
            .to_string()
            .contains("crate::p → crate::q → crate::r → crate::p"),
        "{found:?}"
    );
    // Comments and strings are not paths.
    let p = r#"//! See [`crate::q`].
const S: &str = "crate::q::Q";
"#;
    let quiet = [
        file("src/p.rs", p),
        file("src/q.rs", "//! Q\nuse crate::p::P;\n"),
    ];
    assert!(check_cycles(&quiet, &[]).is_empty());
}

#[test]
fn the_lexer_blanks_comments_and_literals() {
    let lexed = lex(r###"a /* b /* c */ d */ e // f
"g\"h" 'i' '\'' 'l r#"x"y"# b"z" br##"w"##"###);
    let code: Vec<&str> = lexed.code.split_whitespace().collect();
    assert_eq!(code, ["a", "e", "'l", "b"]);
    assert_eq!(lexed.code.lines().count(), 2);
    let strings: Vec<(usize, &str)> = lexed
        .strings
        .iter()
        .map(|(l, s)| (*l, s.as_str()))
        .collect();
    assert_eq!(strings, [(2, "g\"h"), (2, "x\"y"), (2, "z"), (2, "w")]);
}

// ---------------------------------------------------------------------------
// Reading the tree.

struct SourceFile {
    /// Relative to the package: `src/api/mod.rs`.
    path: String,
    text: String,
}

fn source_files() -> Vec<SourceFile> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    collect(root, &root.join("src"), &mut files);
    files.sort_by(|a, b| a.path.cmp(&b.path));
    assert!(files.len() > 50, "the source tree was not found");
    files
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<SourceFile>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.push(SourceFile { path: rel, text });
        }
    }
}

// ---------------------------------------------------------------------------
// Violations.

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Violation {
    path: String,
    line: usize,
    message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path, self.line, self.message)
    }
}

fn violation(path: &str, line: usize, message: impl Into<String>) -> Violation {
    Violation {
        path: path.to_string(),
        line,
        message: message.into(),
    }
}

fn assert_clean(rule: &str, violations: impl IntoIterator<Item = Violation>) {
    let violations: Vec<String> = violations.into_iter().map(|v| v.to_string()).collect();
    assert!(
        violations.is_empty(),
        "{rule} (see ARCHITECTURE.md):\n  {}",
        violations.join("\n  ")
    );
}

fn lines_of(violations: &[Violation]) -> Vec<usize> {
    violations.iter().map(|v| v.line).collect()
}

// ---------------------------------------------------------------------------
// The rules, as pure functions.

fn check_sql(path: &str, text: &str) -> Vec<Violation> {
    if path.starts_with("src/store/") {
        return Vec::new();
    }
    let lexed = lex(text);
    let mut found = Vec::new();
    for token in tokens(&lexed.code) {
        if token.text == "rusqlite" {
            found.push(violation(
                path,
                token.line,
                "`rusqlite` outside src/store/: ask the Store instead",
            ));
        }
    }
    for (line, literal) in &lexed.strings {
        if let Some(sql) = sql_in(literal) {
            found.push(violation(
                path,
                *line,
                format!("SQL (`{sql}`) outside src/store/: add a Store method instead"),
            ));
        }
    }
    found
}

/// The SQL statement a string literal holds, by its uppercase keywords.
fn sql_in(literal: &str) -> Option<String> {
    let words: Vec<&str> = literal
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect();
    for (i, w) in words.iter().enumerate() {
        let next = words.get(i + 1).copied();
        let found = match (*w, next) {
            ("INSERT", Some("INTO")) => Some("INSERT INTO".into()),
            ("DELETE", Some("FROM")) => Some("DELETE FROM".into()),
            (
                "CREATE" | "DROP" | "ALTER",
                Some(kind @ ("TABLE" | "INDEX" | "TRIGGER" | "VIEW")),
            ) => Some(format!("{w} {kind}")),
            ("UPDATE", Some(_)) if words.get(i + 2) == Some(&"SET") => Some("UPDATE … SET".into()),
            ("SELECT", _) if words[i..].contains(&"FROM") => Some("SELECT … FROM".into()),
            _ => None,
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

fn check_cli(path: &str, text: &str) -> Vec<Violation> {
    if !path.starts_with("src/cli/") {
        return Vec::new();
    }
    let exceptions: Vec<&str> = CLI_EXCEPTIONS
        .iter()
        .filter(|(file, _)| *file == path)
        .flat_map(|(_, allowed)| allowed.iter().copied())
        .collect();
    let module = module_of(path);
    let mut found = Vec::new();
    for p in paths(&lex(text).code, &module) {
        let shown = p.to_string();
        if exceptions.iter().any(|e| p.starts_with(e)) {
            continue;
        }
        if p.internal {
            if !CLI_MAY_USE.iter().any(|allowed| p.starts_with(allowed)) {
                found.push(violation(
                    path,
                    p.line,
                    format!("`{shown}`: the CLI uses only {}", CLI_MAY_USE.join(", ")),
                ));
            }
        } else if CLI_MAY_NOT_USE_CRATES.contains(&p.segments[0].as_str()) {
            found.push(violation(
                path,
                p.line,
                format!("`{shown}`: the CLI speaks HTTP only through crate::client"),
            ));
        }
    }
    found
}

fn check_model(path: &str, text: &str) -> Vec<Violation> {
    if !path.starts_with("src/model/") {
        return Vec::new();
    }
    let module = module_of(path);
    let mut found = Vec::new();
    for p in paths(&lex(text).code, &module) {
        let shown = p.to_string();
        let bad = if p.internal {
            !p.starts_with("crate::model")
        } else {
            p.starts_with("tokio")
                || p.starts_with("std::fs")
                || p.starts_with("std::process")
                || p.starts_with("std::net")
        };
        if bad {
            found.push(violation(
                path,
                p.line,
                format!("`{shown}`: the model does no I/O, uses no tokio and no other module"),
            ));
        }
    }
    found
}

fn check_doc(path: &str, text: &str) -> Vec<Violation> {
    let first = text
        .lines()
        .enumerate()
        .find(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with("#!["));
    match first {
        Some((_, line)) if line.trim_start().starts_with("//!") => Vec::new(),
        Some((i, _)) => vec![violation(
            path,
            i + 1,
            "no `//!` comment at the top saying what this module is for",
        )],
        None => vec![violation(
            path,
            1,
            "empty file: say what it is for in a `//!` comment",
        )],
    }
}

/// Sibling-module cycles among `files` (path, text), at every level of the
/// module tree, except those in `known` (each a cycle's set of modules),
/// and the entries of `known` that no longer are a cycle.
fn check_cycles(files: &[(String, String)], known: &[&[&str]]) -> Vec<Violation> {
    let modules: BTreeSet<Vec<String>> = files
        .iter()
        .filter(|(p, _)| p != "src/main.rs")
        .map(|(p, _)| module_of(p))
        .collect();
    // (parent, from, to) → where the first such reference is.
    let mut edges: BTreeMap<(Vec<String>, String, String), (String, usize)> = BTreeMap::new();
    for (path, text) in files {
        if path == "src/main.rs" {
            continue;
        }
        let module = module_of(path);
        let code = without_test_modules(&lex(text).code);
        for p in paths(&code, &module) {
            if !p.internal {
                continue;
            }
            // The module the path names (its items dropped).
            let target: Vec<String> = (0..=p.segments.len())
                .rev()
                .map(|n| p.segments[..n].to_vec())
                .find(|prefix| modules.contains(prefix))
                .unwrap_or_default();
            let common = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common < module.len() && common < target.len() {
                edges
                    .entry((
                        module[..common].to_vec(),
                        module[common].clone(),
                        target[common].clone(),
                    ))
                    .or_insert((path.clone(), p.line));
            }
        }
    }
    let mut by_parent: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (parent, from, to) in edges.keys() {
        by_parent
            .entry(parent.clone())
            .or_default()
            .entry(from.clone())
            .or_default()
            .insert(to.clone());
    }
    let name = |parent: &[String], m: &str| {
        let mut segments = vec!["crate".to_string()];
        segments.extend(parent.iter().cloned());
        segments.push(m.to_string());
        segments.join("::")
    };
    let mut found = Vec::new();
    let mut seen_known = BTreeSet::new();
    for (parent, graph) in &by_parent {
        for component in strongly_connected(graph) {
            let names: BTreeSet<String> = component.iter().map(|m| name(parent, m)).collect();
            if let Some(k) = known
                .iter()
                .position(|k| k.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>() == names)
            {
                seen_known.insert(k);
                continue;
            }
            let ring = ring_through(graph, &component);
            let shown: Vec<String> = ring.iter().map(|m| name(parent, m)).collect();
            let wheres: Vec<String> = ring
                .windows(2)
                .map(|w| {
                    let (file, line) = &edges[&(parent.clone(), w[0].clone(), w[1].clone())];
                    format!(
                        "{} uses {} at {file}:{line}",
                        name(parent, &w[0]),
                        name(parent, &w[1])
                    )
                })
                .collect();
            let (file, line) = &edges[&(parent.clone(), ring[0].clone(), ring[1].clone())];
            found.push(violation(
                file,
                *line,
                format!(
                    "import cycle {}: {}; move what they share into a module both can use",
                    shown.join(" → "),
                    wheres.join(", ")
                ),
            ));
        }
    }
    for (k, cycle) in known.iter().enumerate() {
        if !seen_known.contains(&k) {
            found.push(violation(
                "tests/tidy.rs",
                1,
                format!(
                    "{} are no longer a cycle: take them out of KNOWN_CYCLES",
                    cycle.join(" and ")
                ),
            ));
        }
    }
    found
}

/// The strongly connected components of more than one module (Tarjan).
fn strongly_connected(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            if !s.index.contains_key(w.as_str()) {
                visit(s, w);
                let low = s.low[v].min(s.low[w.as_str()]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w.as_str()) {
                let low = s.low[v].min(s.index[w.as_str()]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out.sort();
    s.out
}

/// One cycle through a strongly connected component, from its first
/// module back to it: `[a, b, a]`.
fn ring_through(graph: &BTreeMap<String, BTreeSet<String>>, component: &[String]) -> Vec<String> {
    let start = &component[0];
    // Breadth-first from `start` within the component, back to `start`.
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.as_str()]);
    while let Some(v) = queue.pop_front() {
        for w in graph.get(v).into_iter().flatten() {
            if !component.contains(w) {
                continue;
            }
            if w == start {
                let mut ring = vec![start.clone(), v.to_string()];
                let mut at = v;
                while at != start {
                    at = came_from[at];
                    ring.push(at.to_string());
                }
                ring.reverse();
                return ring;
            }
            if !came_from.contains_key(w.as_str()) {
                came_from.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    unreachable!("a strongly connected component has a cycle through each module")
}

// ---------------------------------------------------------------------------
// Modules and paths.

/// The module a file is: `src/api/mod.rs` → `[api]`, `src/api/dto.rs` →
/// `[api, dto]`, `src/lib.rs` → `[]`.
fn module_of(path: &str) -> Vec<String> {
    let rel = path.strip_prefix("src/").unwrap_or(path);
    let rel = rel.strip_suffix(".rs").unwrap_or(rel);
    let mut segments: Vec<String> = rel.split('/').map(str::to_string).collect();
    if matches!(
        segments.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        segments.pop();
    }
    segments
}

/// One path in the code, resolved when it starts at `crate`, `super` or
/// `self` (then `internal`, its segments after `crate`).
#[derive(Debug)]
struct CodePath {
    internal: bool,
    segments: Vec<String>,
    line: usize,
}

impl CodePath {
    /// Whether the path is `prefix` or inside it (`crate::a` for internal
    /// paths, `std::fs` for others).
    fn starts_with(&self, prefix: &str) -> bool {
        let mut prefix: Vec<&str> = prefix.split("::").collect();
        if self.internal {
            if prefix.first() != Some(&"crate") {
                return false;
            }
            prefix.remove(0);
        } else if prefix.first() == Some(&"crate") {
            return false;
        }
        prefix.len() <= self.segments.len()
            && prefix.iter().zip(&self.segments).all(|(a, b)| a == b)
    }
}

impl fmt::Display for CodePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.internal {
            write!(f, "crate")?;
            for s in &self.segments {
                write!(f, "::{s}")?;
            }
            Ok(())
        } else {
            write!(f, "{}", self.segments.join("::"))
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    text: String,
    line: usize,
}

/// Identifiers, `::` and single punctuation characters of lexed code.
fn tokens(code: &str) -> Vec<Token> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token {
                text: chars[start..i].iter().collect(),
                line,
            });
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push(Token {
                text: "::".into(),
                line,
            });
            i += 2;
        } else {
            out.push(Token {
                text: c.to_string(),
                line,
            });
            i += 1;
        }
    }
    out
}

/// Every path of two or more segments in lexed `code` of `module`, use
/// trees expanded (`a::{b, c::d}` is `a::b` and `a::c::d`), paths from
/// `crate`, `super` and `self` resolved. Inline modules (`mod x { … }`)
/// are followed, so that `super` inside them is right.
fn paths(code: &str, module: &[String]) -> Vec<CodePath> {
    let tokens = tokens(code);
    let mut out = Vec::new();
    // Inline modules open here: (name, brace depth inside it).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i].text.as_str();
        match t {
            "{" => depth += 1,
            "}" => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            "mod" if tokens.get(i + 2).is_some_and(|t| t.text == "{") => {
                inline.push((tokens[i + 1].text.clone(), depth + 1));
            }
            _ => {}
        }
        let is_root = is_ident(t)
            && (i == 0 || tokens[i - 1].text != "::")
            && tokens.get(i + 1).is_some_and(|t| t.text == "::");
        if !is_root {
            i += 1;
            continue;
        }
        let (trees, next) = use_tree(&tokens, i);
        let mut here: Vec<String> = module.to_vec();
        here.extend(inline.iter().map(|(name, _)| name.clone()));
        for segments in trees {
            if let Some(p) = resolve(&segments, &here, tokens[i].line) {
                out.push(p);
            }
        }
        // Braces inside a use tree are its own: skip them.
        i = next;
    }
    out
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// The paths of the use tree (or plain path) starting at token `i`, and
/// the token after it.
fn use_tree(tokens: &[Token], mut i: usize) -> (Vec<Vec<String>>, usize) {
    let head = tokens[i].text.clone();
    i += 1;
    if tokens.get(i).map(|t| t.text.as_str()) != Some("::") {
        if tokens.get(i).is_some_and(|t| t.text == "as") {
            i += 2;
        }
        return (vec![vec![head]], i);
    }
    i += 1;
    let mut out = Vec::new();
    match tokens.get(i).map(|t| t.text.as_str()) {
        Some("{") => {
            i += 1;
            while let Some(t) = tokens.get(i) {
                match t.text.as_str() {
                    "}" => {
                        i += 1;
                        break;
                    }
                    "," => i += 1,
                    "*" => {
                        out.push(vec![head.clone()]);
                        i += 1;
                    }
                    s if is_ident(s) => {
                        let (trees, next) = use_tree(tokens, i);
                        for tree in trees {
                            let mut p = vec![head.clone()];
                            p.extend(tree);
                            out.push(p);
                        }
                        i = next;
                    }
                    _ => i += 1,
                }
            }
        }
        Some(s) if is_ident(s) => {
            let (trees, next) = use_tree(tokens, i);
            for tree in trees {
                let mut p = vec![head.clone()];
                p.extend(tree);
                out.push(p);
            }
            i = next;
        }
        // `a::*`, `a::<T>`: the path is `a`.
        _ => out.push(vec![head]),
    }
    (out, i)
}

/// `segments` as written in `module`: from `crate`, `super`, `self`
/// resolved into the crate; anything else left as it is (an external
/// crate, or a name in scope).
fn resolve(segments: &[String], module: &[String], line: usize) -> Option<CodePath> {
    let mut segments: Vec<String> = segments.to_vec();
    if segments.last().is_some_and(|s| s == "self") {
        segments.pop();
    }
    let (internal, segments) = match segments.first().map(String::as_str) {
        Some("crate") => (true, segments[1..].to_vec()),
        Some("self") => {
            let mut p = module.to_vec();
            p.extend(segments[1..].iter().cloned());
            (true, p)
        }
        Some("super") => {
            let ups = segments.iter().take_while(|s| *s == "super").count();
            if ups > module.len() {
                return None;
            }
            let mut p = module[..module.len() - ups].to_vec();
            p.extend(segments[ups..].iter().cloned());
            (true, p)
        }
        Some(_) => (false, segments),
        None => return None,
    };
    if !internal && segments.len() < 2 {
        return None;
    }
    Some(CodePath {
        internal,
        segments,
        line,
    })
}

/// `code` with `#[cfg(test)] mod name { … }` blocks blanked (newlines
/// kept), for rules about what the product itself uses.
fn without_test_modules(code: &str) -> String {
    let lines: Vec<&str> = code.split('\n').collect();
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    let mut i = 0;
    while i < lines.len() {
        let is_test_mod = lines[i].trim() == "#[cfg(test)]"
            && lines[i + 1..]
                .iter()
                .find(|l| !l.trim().is_empty())
                .is_some_and(|l| {
                    let l = l.trim_start();
                    let l = l.strip_prefix("pub ").unwrap_or(l);
                    l.starts_with("mod ") && l.contains('{')
                });
        if !is_test_mod {
            out.push(lines[i].to_string());
            i += 1;
            continue;
        }
        // Blank through the brace that closes the module.
        let mut depth = 0i64;
        let mut opened = false;
        while i < lines.len() {
            for c in lines[i].chars() {
                match c {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            out.push(String::new());
            i += 1;
            if opened && depth <= 0 {
                break;
            }
        }
    }
    out.join("\n")
}

// ---------------------------------------------------------------------------
// A lexer just good enough for the rules above.

struct Lexed {
    /// The text with comments and literals blanked to spaces (newlines
    /// kept, so lines stay where they were).
    code: String,
    /// String literals (plain, raw and byte), by the line they start on,
    /// with the common escapes undone.
    strings: Vec<(usize, String)>,
}

fn lex(text: &str) -> Lexed {
    let chars: Vec<char> = text.chars().collect();
    let n = chars.len();
    let mut code = String::with_capacity(text.len());
    let mut strings = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let ident_before = |i: usize| i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
    // Blank chars[from..to] into `code`, counting lines.
    let blank = |code: &mut String, line: &mut usize, from: usize, to: usize| {
        for &c in &chars[from..to.min(n)] {
            if c == '\n' {
                *line += 1;
                code.push('\n');
            } else {
                code.push(' ');
            }
        }
    };
    while i < n {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            let end = chars[i..]
                .iter()
                .position(|&c| c == '\n')
                .map_or(n, |p| i + p);
            blank(&mut code, &mut line, i, end);
            i = end;
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            let mut j = i;
            while j < n {
                if chars[j] == '/' && chars.get(j + 1) == Some(&'*') {
                    depth += 1;
                    j += 2;
                } else if chars[j] == '*' && chars.get(j + 1) == Some(&'/') {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut code, &mut line, i, j);
            i = j;
        } else if let Some((open, hashes)) =
            raw_string_start(&chars, i).filter(|_| !ident_before(i))
        {
            // r"…", r#"…"#, br"…": no escapes; ends at `"` + as many `#`.
            let content_start = open + 1;
            let mut j = content_start;
            let end = loop {
                if j >= n {
                    break n;
                }
                if chars[j] == '"'
                    && chars[j + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|&&c| c == '#')
                        .count()
                        == hashes
                {
                    break j;
                }
                j += 1;
            };
            strings.push((line, chars[content_start..end].iter().collect()));
            blank(&mut code, &mut line, i, end + 1 + hashes);
            i = end + 1 + hashes;
        } else if c == '"' {
            let start_line = line;
            let mut content = String::new();
            let mut j = i + 1;
            while j < n && chars[j] != '"' {
                if chars[j] == '\\' && j + 1 < n {
                    match chars[j + 1] {
                        'n' => content.push('\n'),
                        't' => content.push('\t'),
                        'r' => content.push('\r'),
                        '\n' => {
                            // A line continuation: the newline and the
                            // indentation after it are not in the string.
                            let mut k = j + 2;
                            while k < n && chars[k].is_whitespace() {
                                k += 1;
                            }
                            content.push(' ');
                            j = k;
                            continue;
                        }
                        other => content.push(other),
                    }
                    j += 2;
                } else {
                    content.push(chars[j]);
                    j += 1;
                }
            }
            strings.push((start_line, content));
            blank(&mut code, &mut line, i, j + 1);
            i = j + 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{1F600}', '\''), or a lifetime.
            let end = if next == Some('\\') {
                chars[i + 3..]
                    .iter()
                    .position(|&c| c == '\'')
                    .map(|p| i + 3 + p)
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    blank(&mut code, &mut line, i, end + 1);
                    i = end + 1;
                }
                None => {
                    code.push(c);
                    i += 1;
                }
            }
        } else {
            if c == '\n' {
                line += 1;
            }
            code.push(c);
            i += 1;
        }
    }
    Lexed { code, strings }
}

/// At `r"`, `r#"`, `br"`, `br#"`…: the index of the opening `"` and the
/// number of `#`.
fn raw_string_start(chars: &[char], i: usize) -> Option<(usize, usize)> {
    let mut j = i;
    if chars.get(j) == Some(&'b') {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let mut hashes = 0;
    while chars.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    (chars.get(j) == Some(&'"')).then_some((j, hashes))
}
