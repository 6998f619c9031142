//! Password hashing with Argon2id (the crate's defaults: 19 MiB, 2 passes, OWASP's minimum).
//! Hashing takes tens of milliseconds of CPU, so it runs on the blocking pool.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use crate::AccountsError;

/// Shortest password accepted.
pub const MIN_CHARS: usize = 8;
/// Longest password accepted, in bytes: hashing cost grows with length, so a megabyte password
/// must not reach Argon2.
pub const MAX_BYTES: usize = 1024;

/// Checks a new password against the length rules.
pub fn check_new(password: &str) -> Result<(), AccountsError> {
    if password.chars().count() < MIN_CHARS {
        return Err(AccountsError::InvalidInput(format!("password must be at least {MIN_CHARS} characters")));
    }
    if password.len() > MAX_BYTES {
        return Err(AccountsError::InvalidInput(format!("password must be at most {MAX_BYTES} bytes")));
    }
    Ok(())
}

/// The PHC string (`$argon2id$v=19$...`) for `password`, with a fresh salt.
pub async fn hash(password: String) -> Result<String, AccountsError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|error| AccountsError::Hashing(error.to_string()))
    })
    .await
    .map_err(|error| AccountsError::Hashing(error.to_string()))?
}

/// Whether `password` matches `stored`. With no stored hash (no such account) it still spends
/// the time of a check, so timing does not tell which addresses have accounts.
pub async fn verify(password: String, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| dummy_hash().to_owned());
        let Ok(parsed) = PasswordHash::new(&stored) else { return false };
        Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok() && known
    })
    .await
    .unwrap_or(false)
}

/// The hash of a random password nobody knows, with the parameters real hashes have.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        let password = crate::secret::random_hex();
        Argon2::default().hash_password(password.as_bytes(), &salt).map(|hash| hash.to_string()).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let stored = hash("correct horse 1".into()).await.unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(!stored.contains("correct horse"));
        assert!(verify("correct horse 1".into(), Some(stored.clone())).await);
        assert!(!verify("correct horse 2".into(), Some(stored)).await);
        assert!(!verify("anything".into(), None).await);
    }

    #[test]
    fn new_passwords_are_checked_for_length() {
        assert!(check_new("short").is_err());
        assert!(check_new(&"x".repeat(MAX_BYTES + 1)).is_err());
        assert!(check_new("long enough").is_ok());
    }
}
