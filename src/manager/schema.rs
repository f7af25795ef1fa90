//! Schema as code, read-only: an instance's collections read from its own
//! `pb_data/data.db` (no credentials: the file is opened read-only, which
//! a running PocketBase in WAL mode does not notice), and what is
//! generated from them: its OpenAPI document and TypeScript types
//! ([`crate::codegen`]). Reads change nothing and are not audited.

use serde_json::Value;

use super::{Manager, ManagerError, Result};
use crate::codegen::{self, Lang, Target};
use crate::model::collections::{parse_collections, Collection};
use crate::store::InstanceRecord;

impl Manager {
    /// The instance's collections as a schema file holds them: PocketBase's
    /// export shape, in creation order, without secrets.
    pub async fn schema(&self, name: &str) -> Result<Vec<Value>> {
        let rec = self.get(name)?;
        self.read_schema(&rec).await
    }

    /// The OpenAPI document of the instance's PocketBase API.
    pub async fn instance_openapi(&self, name: &str) -> Result<Value> {
        let (rec, collections) = self.collections(name).await?;
        let urls = self.urls(&rec, &self.custom_domains(&rec)?);
        let version = rec.version.to_string();
        Ok(codegen::openapi::document(
            &Target {
                name: rec.name.as_str(),
                version: &version,
                urls: &urls,
            },
            &collections,
        ))
    }

    /// Types for the instance's collections, in `lang`.
    pub async fn instance_types(&self, name: &str, lang: Lang) -> Result<String> {
        let (rec, collections) = self.collections(name).await?;
        let urls = self.urls(&rec, &self.custom_domains(&rec)?);
        let version = rec.version.to_string();
        let target = Target {
            name: rec.name.as_str(),
            version: &version,
            urls: &urls,
        };
        Ok(match lang {
            Lang::TypeScript => codegen::typescript::types(&target, &collections),
        })
    }

    async fn collections(&self, name: &str) -> Result<(InstanceRecord, Vec<Collection>)> {
        let rec = self.get(name)?;
        let raw = self.read_schema(&rec).await?;
        let collections = parse_collections(raw)?;
        Ok((rec, collections))
    }

    async fn read_schema(&self, rec: &InstanceRecord) -> Result<Vec<Value>> {
        let data_dir = self.spec(rec).data_dir();
        tokio::task::spawn_blocking(move || crate::store::read_collections(&data_dir))
            .await
            .map_err(|e| ManagerError::Internal(format!("the schema read failed: {e}")))?
            .map_err(ManagerError::from)
    }
}
