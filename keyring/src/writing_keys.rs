//! The data keys a writer seals with, kept in memory: a submission costs no key-store round
//! trip once its account's key is known, and a writer goes on accepting while PostgreSQL is
//! briefly out of reach, as it does for the tokens it knows.
//!
//! Safe for erasure: a key cached here after its account was erased can only seal new text
//! (with the account's sessions and tokens dead, hardly any reaches here), and text sealed with
//! an erased key is unreadable by every reader, which looks keys up in the key store.

use std::sync::Mutex;

use hashlink::LruCache;
use uuid::Uuid;

use crate::{store, DataKey, KeyError, Keyring};

/// Accounts whose key is kept: far more than write at once, and 32 bytes (plus the expanded
/// cipher) each.
const CAPACITY: usize = 10_000;

pub struct WritingKeys {
    keyring: Keyring,
    cache: Mutex<LruCache<Uuid, DataKey>>,
}

impl WritingKeys {
    pub fn new(keyring: Keyring) -> WritingKeys {
        WritingKeys { keyring, cache: Mutex::new(LruCache::new(CAPACITY)) }
    }

    /// `account`'s key, made on first use; `None` once the account is erased.
    pub async fn key_for(&self, pool: &sqlx::PgPool, account: Uuid) -> Result<Option<DataKey>, KeyError> {
        if let Some(key) = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&account) {
            return Ok(Some(key.clone()));
        }
        let key = store::key_for_writing(pool, &self.keyring, account).await?;
        if let Some(key) = &key {
            self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(account, key.clone());
        }
        Ok(key)
    }
}
