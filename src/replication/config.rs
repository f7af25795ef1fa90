//! Litestream's configuration file, rendered from what the store says
//! (pure; snapshot-tested below). One `dbs:` entry per replicated
//! database: its path, its meta dir (outside `pb_data`) and its one
//! replica, synced every second. Never a credential: Litestream takes
//! those from its environment.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::model::Destination;

/// One database and where it is replicated to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbReplication {
    pub db: PathBuf,
    /// Litestream's local state for this database (`meta-path`).
    pub meta: PathBuf,
    /// The replica of the current generation.
    pub replica: Destination,
}

/// A YAML double-quoted scalar. Our paths and validated destinations need
/// no escaping in practice; quoting keeps a `:` or `#` in them literal.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The whole file for `dbs`.
pub fn render(dbs: &[DbReplication]) -> String {
    let mut out = String::from(
        "# Written by pockestrator; changes are overwritten.\nlogging:\n  level: warn\n  stderr: true\ndbs:\n",
    );
    let interval = super::SYNC_INTERVAL.as_secs();
    for db in dbs {
        let _ = writeln!(out, "  - path: {}", quoted(&db.db.to_string_lossy()));
        let _ = writeln!(out, "    meta-path: {}", quoted(&db.meta.to_string_lossy()));
        out.push_str("    replica:\n");
        match &db.replica {
            Destination::Local(dir) => {
                out.push_str("      type: file\n");
                let _ = writeln!(out, "      path: {}", quoted(&dir.to_string_lossy()));
            }
            Destination::S3(s3) => {
                out.push_str("      type: s3\n");
                let _ = writeln!(out, "      bucket: {}", quoted(&s3.bucket));
                let _ = writeln!(out, "      path: {}", quoted(&s3.prefix));
                if let Some(endpoint) = &s3.endpoint {
                    let _ = writeln!(out, "      endpoint: {}", quoted(endpoint));
                    // S3-compatible stores (MinIO, moto, Garage) are
                    // addressed by path, not by a bucket host name.
                    out.push_str("      force-path-style: true\n");
                }
                if let Some(region) = &s3.region {
                    let _ = writeln!(out, "      region: {}", quoted(region));
                }
            }
            Destination::Nats(n) => {
                out.push_str("      type: nats\n");
                let server = n.servers.first().map(String::as_str).unwrap_or("");
                let _ = writeln!(
                    out,
                    "      url: {}",
                    quoted(&format!("nats://{server}/{}", n.bucket))
                );
            }
        }
        let _ = writeln!(out, "      sync-interval: {interval}s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn check(replica: &str, expected: Expect) {
        let db = DbReplication {
            db: PathBuf::from("/var/lib/pockestrator/instances/shop/pb_data/data.db"),
            meta: PathBuf::from("/var/lib/pockestrator/replication/shop/meta"),
            replica: Destination::parse(replica).unwrap(),
        };
        expected.assert_eq(&render(&[db]));
    }

    #[test]
    fn file_replica() {
        check(
            "file:///srv/replicas/shop/g1",
            expect![[r##"
                # Written by pockestrator; changes are overwritten.
                logging:
                  level: warn
                  stderr: true
                dbs:
                  - path: "/var/lib/pockestrator/instances/shop/pb_data/data.db"
                    meta-path: "/var/lib/pockestrator/replication/shop/meta"
                    replica:
                      type: file
                      path: "/srv/replicas/shop/g1"
                      sync-interval: 1s
            "##]],
        );
    }

    #[test]
    fn s3_replica_with_endpoint_is_path_style_and_holds_no_credentials() {
        check(
            "s3://backups/pb/shop/g1?endpoint=http://127.0.0.1:9000&region=eu-west-1",
            expect![[r##"
                # Written by pockestrator; changes are overwritten.
                logging:
                  level: warn
                  stderr: true
                dbs:
                  - path: "/var/lib/pockestrator/instances/shop/pb_data/data.db"
                    meta-path: "/var/lib/pockestrator/replication/shop/meta"
                    replica:
                      type: s3
                      bucket: "backups"
                      path: "pb/shop/g1"
                      endpoint: "http://127.0.0.1:9000"
                      force-path-style: true
                      region: "eu-west-1"
                      sync-interval: 1s
            "##]],
        );
    }

    #[test]
    fn nats_replica_is_a_bucket() {
        check(
            "nats://127.0.0.1:4222/shop-replica",
            expect![[r##"
                # Written by pockestrator; changes are overwritten.
                logging:
                  level: warn
                  stderr: true
                dbs:
                  - path: "/var/lib/pockestrator/instances/shop/pb_data/data.db"
                    meta-path: "/var/lib/pockestrator/replication/shop/meta"
                    replica:
                      type: nats
                      url: "nats://127.0.0.1:4222/shop-replica"
                      sync-interval: 1s
            "##]],
        );
    }

    #[test]
    fn quoting_keeps_text_literal() {
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quoted("x\ny"), r#""x\u000ay""#);
    }
}
