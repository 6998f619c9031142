//! Random secrets handed to clients (session cookies, API tokens, CSRF tokens) and the digests
//! stored instead of them: a leaked table holds nothing a client could present.

use argon2::password_hash::rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

/// Prefix of personal API tokens, so a leaked one is recognisable (and greppable by scanners).
pub const TOKEN_PREFIX: &str = "cpt_";

/// 32 random bytes from the operating system.
pub fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

/// 32 random bytes from the operating system, as 64 hex characters.
pub fn random_hex() -> String {
    hex::encode(random_bytes())
}

/// A new personal API token.
pub fn new_api_token() -> String {
    format!("{TOKEN_PREFIX}{}", random_hex())
}

/// What is stored for a secret: its SHA-256. The secrets are 256 random bits, so a plain hash
/// is enough (a slow hash protects guessable passwords, not these).
pub fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_digests_fixed() {
        let (a, b) = (new_api_token(), new_api_token());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64);
        assert_eq!(digest(&a), digest(&a));
        assert_ne!(digest(&a), digest(&b));
    }
}
