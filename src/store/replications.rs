//! The replications table: which instances Litestream replicates, to
//! which target, and the generation it writes now.

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::{parse_ts, ts, Store, StoreError};
use crate::model::{Destination, InstanceName};

/// One instance's replication, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicationRecord {
    pub instance: InstanceName,
    pub target: Destination,
    /// The sub-path of the target written now (see `crate::replication`).
    pub generation: String,
    /// When this generation started.
    pub since: DateTime<Utc>,
}

impl Store {
    /// Record (or replace) an instance's replication.
    pub fn set_replication(&self, r: &ReplicationRecord) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO replications (instance, target, generation, since) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (instance) DO UPDATE SET target = ?2, generation = ?3, since = ?4",
            params![
                r.instance.as_str(),
                r.target.to_text(),
                r.generation,
                ts(r.since)
            ],
        )?;
        Ok(())
    }

    pub fn delete_replication(&self, instance: &str) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .execute("DELETE FROM replications WHERE instance = ?1", [instance])?;
        Ok(n > 0)
    }

    /// Every replication, or one instance's.
    pub fn replications(
        &self,
        instance: Option<&str>,
    ) -> Result<Vec<ReplicationRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT instance, target, generation, since FROM replications \
             WHERE (?1 IS NULL OR instance = ?1) ORDER BY instance",
        )?;
        let rows = stmt.query_map([instance], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (instance, target, generation, since) = row?;
            let label = format!("replication of {instance}");
            let corrupt = |field: &'static str, value: &str| StoreError::Corrupt {
                row: label.clone(),
                field,
                value: value.to_string(),
            };
            out.push(ReplicationRecord {
                instance: InstanceName::parse(&instance)
                    .map_err(|_| corrupt("replications.instance", &instance))?,
                target: Destination::parse(&target)
                    .map_err(|_| corrupt("replications.target", &target))?,
                generation,
                since: parse_ts(&label, "replications.since", since)?,
            });
        }
        Ok(out)
    }
}
