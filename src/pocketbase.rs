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
    #[error("the password is too long: PocketBase takes at most 71 characters")]
    LongPassword,
    #[error("the password may hold only printable ASCII characters and spaces")]
    PasswordChars,
    #[error("could not run {binary}: {source}")]
    Spawn {
        binary: String,
        source: std::io::Error,
    },
    #[error("pocketbase refused to {action}: {output}")]
    Refused { action: String, output: String },
}

/// The characters of an e-mail address's local part (RFC 5322's `atext`).
const EMAIL_LOCAL_CHARS: &str = "!#$%&'*+/=?^_`{|}~-";

/// Check an e-mail address before PocketBase sees it (it goes on a command
/// line): a dot-atom local part of `atext` not starting with '-', `@`, and
/// a hostname of at least two labels whose last starts and ends with a
/// letter; at most 254 characters. Every address this accepts PocketBase
/// accepts too, so a create never fails late on its superuser. The API's
/// OpenAPI document states the same rule as `EMAIL_PATTERN`.
pub fn check_email(raw: &str) -> Result<(), PocketBaseError> {
    let bad = || PocketBaseError::BadEmail(crate::model::names::shown(raw));
    if raw.len() > 254 {
        return Err(bad());
    }
    let (local, domain) = raw.split_once('@').ok_or_else(bad)?;
    let atext = |c: char| c.is_ascii_alphanumeric() || EMAIL_LOCAL_CHARS.contains(c);
    let local_ok = !local.starts_with('-')
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(atext));
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let last_ok = labels.last().is_some_and(|l| {
        l.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && l.chars().last().is_some_and(|c| c.is_ascii_alphabetic())
    });
    if !local_ok || labels.len() < 2 || !labels.iter().all(label_ok) || !last_ok {
        return Err(bad());
    }
    Ok(())
}

/// The shortest and longest superuser passwords: PocketBase refuses fewer
/// than 8 and more than 71 characters (and bcrypt more than 72 bytes, which
/// printable ASCII never reaches at 71).
pub const PASSWORD_MIN_CHARS: usize = 8;
pub const PASSWORD_MAX_CHARS: usize = 71;

/// Check a superuser password: 8 to 71 printable ASCII characters (spaces
/// included), what PocketBase accepts and a command line carries intact.
pub fn check_password(raw: &str) -> Result<(), PocketBaseError> {
    if raw.chars().count() < PASSWORD_MIN_CHARS {
        return Err(PocketBaseError::ShortPassword);
    }
    if raw.chars().count() > PASSWORD_MAX_CHARS {
        return Err(PocketBaseError::LongPassword);
    }
    if !raw.chars().all(|c| c == ' ' || c.is_ascii_graphic()) {
        return Err(PocketBaseError::PasswordChars);
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
        for ok in [
            "a@b.co",
            "admin@example.com",
            "x.y+z@sub.example.org",
            "o'neil{x}@a-1.b2.c-d",
        ] {
            assert!(check_email(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a",
            "a@b",
            "@b.co",
            "a b@c.co",
            "a@b.co\n",
            "a@@b.co",
            "-rf@x.co",
            "a@.b.co",
            "a@b..co",
            "a@b.c0",
            "a@-b.co",
            "ü@b.co",
            "a..b@c.co",
            "a@b.co.",
        ] {
            assert!(check_email(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_email(&format!("{}@x.co", "a".repeat(300))).is_err());
    }

    #[test]
    fn passwords() {
        assert!(check_password("1234567").is_err());
        assert!(check_password("12345678").is_ok());
        assert!(check_password(&"x".repeat(71)).is_ok());
        assert!(check_password(&"x".repeat(72)).is_err());
        assert!(check_password("pass word!").is_ok());
        assert!(check_password("pässwörd").is_err());
        assert!(check_password("pass\tword").is_err());
        let p = generate_password();
        assert_eq!(p.len(), 24);
        assert!(check_password(&p).is_ok());
        assert_ne!(p, generate_password());
    }
}
