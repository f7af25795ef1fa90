//! The dashboard's sign-in sessions and reads of the audit log: the
//! dashboard and the API reach the store only through here.

use chrono::{DateTime, Utc};

use super::{Manager, Result};
use crate::store::{AuditEntry, SessionRecord};

impl Manager {
    /// Record a new dashboard session (see [`crate::dashboard::auth`]).
    pub fn open_session(&self, session: &SessionRecord) -> Result<()> {
        Ok(self.store.insert_session(session)?)
    }

    /// A session that has not expired by `now`, by the hash of its id.
    pub fn session(&self, id_hash: &str, now: DateTime<Utc>) -> Result<Option<SessionRecord>> {
        Ok(self.store.get_session(id_hash, now)?)
    }

    /// End a session; whether it existed.
    pub fn close_session(&self, id_hash: &str) -> Result<bool> {
        Ok(self.store.delete_session(id_hash)?)
    }

    /// The newest `limit` audit lines, optionally of one instance and older
    /// than `before_id`, newest first.
    pub fn audit_log(
        &self,
        instance: Option<&str>,
        limit: u32,
        before_id: Option<i64>,
    ) -> Result<Vec<AuditEntry>> {
        Ok(self.store.list_audit(instance, limit, before_id)?)
    }
}
