//! Creating or resetting an instance's superuser.

use super::{Actor, Manager, Result};
use crate::model::AuditAction;
use crate::model::Status;
use crate::pocketbase;

impl Manager {
    /// Create or reset an instance's superuser. Returns the password (the
    /// given one, or a generated one to show once).
    pub async fn set_superuser(
        &self,
        name: &str,
        email: &str,
        password: Option<String>,
        actor: &Actor,
    ) -> Result<String> {
        let result = async {
            pocketbase::check_email(email)?;
            let password = match password {
                Some(p) => {
                    pocketbase::check_password(&p)?;
                    p
                }
                None => pocketbase::generate_password(),
            };
            let lock = self.lock_for(name);
            let _guard = lock.lock().await;
            let mut rec = self.get(name)?;
            let version = rec.version.clone();
            let spec = self.spec(&rec);
            pocketbase::upsert_superuser(
                &spec.binary,
                &version,
                &spec.data_dir(),
                email,
                &password,
            )
            .await?;
            rec.superuser_email = Some(email.to_string());
            self.store.update_config(&rec, &actor.0)?;
            if rec.status == Status::Running {
                self.trust_router(&rec, &version, email, &password).await;
            }
            Ok(password)
        }
        .await;
        self.audited(actor, AuditAction::Superuser, name, result, |_| {
            format!("superuser {email} saved")
        })
    }
}
