//! The instances' fleet labels: which fleet's apply created an instance
//! (a prune deletes only its own) and the instance's tags.

use std::collections::HashMap;

use rusqlite::params;

use super::{Store, StoreError};

/// An instance's labels, as recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels {
    /// The fleet whose apply created it; `None`: made by hand.
    pub fleet: Option<String>,
    pub tags: Vec<String>,
}

impl Store {
    /// Record which fleet created an instance (`None`: nobody's).
    pub fn set_fleet_owner(&self, instance: &str, fleet: Option<&str>) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE instances SET fleet = ?2 WHERE name = ?1",
            params![instance, fleet],
        )?;
        Ok(())
    }

    /// Replace an instance's tags.
    pub fn set_tags(&self, instance: &str, tags: &[String]) -> Result<(), StoreError> {
        let json = serde_json::to_string(tags).expect("strings serialize");
        self.conn().execute(
            "UPDATE instances SET tags = ?2 WHERE name = ?1",
            params![instance, json],
        )?;
        Ok(())
    }

    /// Every instance's labels, by name, in one query.
    pub fn labels(&self) -> Result<HashMap<String, Labels>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare("SELECT name, fleet, tags FROM instances")?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, Option<String>>(1)?,
                row.get::<_, String>(2)?,
            ))
        })?;
        let mut out = HashMap::new();
        for row in rows {
            let (name, fleet, tags) = row?;
            let tags: Vec<String> =
                serde_json::from_str(&tags).map_err(|_| StoreError::Corrupt {
                    row: name.clone(),
                    field: "instances.tags",
                    value: tags.clone(),
                })?;
            out.insert(name, Labels { fleet, tags });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_kept_per_instance_and_start_empty() {
        let store = Store::open_in_memory().unwrap();
        store
            .insert_instance(&super::super::tests::record("a", 9001))
            .unwrap();
        store
            .insert_instance(&super::super::tests::record("b", 9002))
            .unwrap();
        store.set_fleet_owner("a", Some("prod")).unwrap();
        store
            .set_tags("a", &["eu".to_string(), "prod".to_string()])
            .unwrap();
        let labels = store.labels().unwrap();
        assert_eq!(
            labels["a"],
            Labels {
                fleet: Some("prod".into()),
                tags: vec!["eu".into(), "prod".into()]
            }
        );
        assert_eq!(labels["b"], Labels::default());
    }
}
