//! Talking to one PocketBase: its command line (superusers) and its health
//! endpoint. Knows the differences between PocketBase versions so that
//! nothing else has to.

use std::path::Path;
use std::time::Duration;

use rand::distributions::{Alphanumeric, DistString};
use semver::Version;

/// What went wrong driving PocketBase's command line.
#[derive(Debug, thiserror::Error)]
pub enum PocketBaseError {
    #[error("e-mail {0} is not valid: use a full address like admin@example.com")]
    BadEmail(String),
    #[error("the password is too short: PocketBase needs at least 8 characters")]
    ShortPassword,
    #[error("the password is longer than 256 characters")]
    LongPassword,
    #[error("could not run {binary}: {source}")]
    Spawn {
        binary: String,
        source: std::io::Error,
    },
    #[error("pocketbase refused to {action}: {output}")]
    Refused { action: String, output: String },
}

/// Check an e-mail address well enough to refuse garbage before PocketBase
/// sees it (it goes on a command line).
pub fn check_email(raw: &str) -> Result<(), PocketBaseError> {
    let bad = || PocketBaseError::BadEmail(crate::model::names::shown(raw));
    if raw.len() > 254 || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let (local, domain) = raw.split_once('@').ok_or_else(bad)?;
    if local.is_empty() || local.starts_with('-') || domain.contains('@') || !domain.contains('.') {
        return Err(bad());
    }
    if domain.starts_with('.') || domain.ends_with('.') || domain.contains("..") {
        return Err(bad());
    }
    Ok(())
}

pub fn check_password(raw: &str) -> Result<(), PocketBaseError> {
    if raw.chars().count() < 8 {
        return Err(PocketBaseError::ShortPassword);
    }
    if raw.len() > 256 {
        return Err(PocketBaseError::LongPassword);
    }
    Ok(())
}

/// A random password for a superuser, shown to the operator once.
pub fn generate_password() -> String {
    Alphanumeric.sample_string(&mut rand::thread_rng(), 24)
}

/// Create or reset the superuser `email` of the PocketBase whose data dir is
/// `data_dir`. Works whether that PocketBase is running or not.
///
/// PocketBase before 0.40 exits 0 even when a command fails, so success is
/// read from its output as well as its exit status.
pub async fn upsert_superuser(
    binary: &Path,
    version: &Version,
    data_dir: &Path,
    email: &str,
    password: &str,
) -> Result<(), PocketBaseError> {
    check_email(email)?;
    check_password(password)?;
    let dir = format!("--dir={}", data_dir.display());
    // PocketBase ≥ 0.23 has `superuser upsert`; before, `admin create|update`.
    if crate::model::version::has_superuser_command(version) {
        run(
            binary,
            &["superuser", "upsert", email, password, &dir],
            "save the superuser",
        )
        .await
    } else {
        // `admin create` fails when the admin exists; then update it.
        match run(
            binary,
            &["admin", "create", email, password, &dir],
            "create the admin",
        )
        .await
        {
            Ok(()) => Ok(()),
            Err(_) => {
                run(
                    binary,
                    &["admin", "update", email, password, &dir],
                    "update the admin",
                )
                .await
            }
        }
    }
}

async fn run(binary: &Path, args: &[&str], action: &str) -> Result<(), PocketBaseError> {
    let output = tokio::process::Command::new(binary)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|source| PocketBaseError::Spawn {
            binary: binary.display().to_string(),
            source,
        })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let succeeded = output.status.success()
        && text.contains("Successfully")
        && !text.lines().any(|l| l.starts_with("Error:"));
    if succeeded {
        Ok(())
    } else {
        Err(PocketBaseError::Refused {
            action: action.to_string(),
            output: text
                .trim()
                .lines()
                .last()
                .unwrap_or("no output")
                .to_string(),
        })
    }
}

/// Change settings of a running PocketBase (≥ 0.23) as a superuser:
/// authenticate, then `PATCH /api/settings` with `patch`.
pub async fn patch_settings(
    http: &reqwest::Client,
    port: u16,
    email: &str,
    password: &str,
    patch: serde_json::Value,
) -> Result<(), String> {
    let base = format!("http://127.0.0.1:{port}");
    let auth = http
        .post(format!(
            "{base}/api/collections/_superusers/auth-with-password"
        ))
        .json(&serde_json::json!({"identity": email, "password": password}))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("cannot reach pocketbase: {e}"))?;
    if !auth.status().is_success() {
        return Err(format!(
            "superuser authentication failed ({})",
            auth.status()
        ));
    }
    let token = auth
        .json::<serde_json::Value>()
        .await
        .ok()
        .and_then(|v| v["token"].as_str().map(str::to_string))
        .ok_or_else(|| "no token in pocketbase's authentication answer".to_string())?;
    let resp = http
        .patch(format!("{base}/api/settings"))
        .header(reqwest::header::AUTHORIZATION, token)
        .json(&patch)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("cannot reach pocketbase: {e}"))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        Err(format!(
            "pocketbase refused the settings ({status}): {body}"
        ))
    }
}

/// `GET /api/health` of the PocketBase on `127.0.0.1:port`: true on a 2xx.
pub async fn is_healthy(http: &reqwest::Client, port: u16, timeout: Duration) -> bool {
    let url = format!("http://127.0.0.1:{port}/api/health");
    match http.get(url).timeout(timeout).send().await {
        Ok(resp) => resp.status().is_success(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for ok in ["a@b.co", "admin@example.com", "x.y+z@sub.example.org"] {
            assert!(check_email(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "a", "a@b", "@b.co", "a b@c.co", "a@b.co\n", "a@@b.co", "-rf@x.co", "a@.b.co",
            "a@b..co",
        ] {
            assert!(check_email(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_email(&format!("{}@x.co", "a".repeat(300))).is_err());
    }

    #[test]
    fn passwords() {
        assert!(check_password("1234567").is_err());
        assert!(check_password("12345678").is_ok());
        assert!(check_password(&"x".repeat(257)).is_err());
        let p = generate_password();
        assert_eq!(p.len(), 24);
        assert!(check_password(&p).is_ok());
        assert_ne!(p, generate_password());
    }
}
