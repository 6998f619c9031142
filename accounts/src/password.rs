//! Password hashing with Argon2id (the crate's defaults: 19 MiB, 2 passes, OWASP's minimum).
//! Hashing takes tens of milliseconds of CPU, so it runs on the blocking pool, and at most one
//! per core at once: a flood of sign-ups or sign-ins from strangers otherwise takes 19 MiB per
//! request, without bound (`loadgen signups` measures it). A few more per core wait
//! their turn; the rest are refused at once with 503 and `Retry-After`.

use std::sync::OnceLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use tokio::sync::Semaphore;

use crate::AccountsError;

/// Hashes that may wait for a core, per core.
const WAITING_PER_CORE: usize = 4;

/// The bounds on hashing in this process.
struct Hashing {
    /// Hashes running or waiting: a request that finds none left is refused.
    admitted: Semaphore,
    /// Hashes running: one per core.
    running: Semaphore,
}

fn hashing() -> &'static Hashing {
    static HASHING: OnceLock<Hashing> = OnceLock::new();
    HASHING.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Hashing { admitted: Semaphore::new(cores * (1 + WAITING_PER_CORE)), running: Semaphore::new(cores) }
    })
}

/// Runs `work` (a hash or a check) on the blocking pool within the bounds; [`AccountsError::Busy`]
/// at once when too many are running or waiting. The permits go with the work, so a client
/// that gives up does not free a core its hash still uses.
async fn bounded<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, AccountsError> {
    let hashing = hashing();
    let admitted = hashing.admitted.try_acquire().map_err(|_| AccountsError::Busy)?;
    let running = hashing.running.acquire().await.map_err(|_| AccountsError::Busy)?;
    tokio::task::spawn_blocking(move || {
        let _permits = (admitted, running);
        work()
    })
    .await
    .map_err(|error| AccountsError::Hashing(error.to_string()))
}

/// Shortest password accepted.
pub const MIN_CHARS: usize = 8;
/// Longest password accepted, in characters (at most 4 KiB of UTF-8): a megabyte password must
/// not reach the hash. Characters, as the OpenAPI document's `maxLength` counts them.
pub const MAX_CHARS: usize = 1024;

/// Checks a new password against the length rules.
pub fn check_new(password: &str) -> Result<(), AccountsError> {
    if password.chars().count() < MIN_CHARS {
        return Err(AccountsError::InvalidInput(format!("password must be at least {MIN_CHARS} characters")));
    }
    if password.chars().count() > MAX_CHARS {
        return Err(AccountsError::InvalidInput(format!("password must be at most {MAX_CHARS} characters")));
    }
    Ok(())
}

/// The PHC string (`$argon2id$v=19$...`) for `password`, with a fresh salt.
pub async fn hash(password: String) -> Result<String, AccountsError> {
    bounded(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|error| AccountsError::Hashing(error.to_string()))
    })
    .await?
}

/// Whether `password` matches `stored`. With no stored hash (no such account) it still spends
/// the time of a check, so timing does not tell which addresses have accounts.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool, AccountsError> {
    bounded(move || {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| dummy_hash().to_owned());
        let Ok(parsed) = PasswordHash::new(&stored) else { return false };
        Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok() && known
    })
    .await
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
        assert!(verify("correct horse 1".into(), Some(stored.clone())).await.unwrap());
        assert!(!verify("correct horse 2".into(), Some(stored)).await.unwrap());
        assert!(!verify("anything".into(), None).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashes_beyond_the_bound_are_refused_at_once_and_the_admitted_wait_for_a_core() {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let admitted = cores * (1 + WAITING_PER_CORE);
        // Every core busy: admitted hashes wait.
        let busy_cores = hashing().running.acquire_many(cores as u32).await.unwrap();
        let hashes: Vec<_> = (0..admitted + 8).map(|i| tokio::spawn(hash(format!("password number {i}")))).collect();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while hashes.iter().filter(|hash| hash.is_finished()).count() < 8 || hashing().admitted.available_permits() > 0 {
            assert!(tokio::time::Instant::now() < deadline, "the hashes beyond the bound are answered at once");
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        drop(busy_cores);
        let mut refused = 0;
        for outcome in hashes {
            match outcome.await.unwrap() {
                Ok(stored) => assert!(stored.starts_with("$argon2id$")),
                Err(AccountsError::Busy) => refused += 1,
                Err(error) => panic!("{error}"),
            }
        }
        assert_eq!(refused, 8, "all but {admitted} refused");
        assert_eq!(hashing().admitted.available_permits(), admitted, "every permit is back");
    }

    #[test]
    fn new_passwords_are_checked_for_length() {
        assert!(check_new("short").is_err());
        assert!(check_new(&"x".repeat(MAX_CHARS + 1)).is_err());
        assert!(check_new("long enough").is_ok());
    }
}
