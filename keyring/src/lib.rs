//! Crypto-shredding. Every account has a data key of its own, and the personal data its
//! events carry (the text of a submission) is sealed with it before it reaches the log. The
//! data keys live in PostgreSQL (`accounts.data_keys`), each wrapped by a key-encryption key
//! (KEK) that only the services' configuration holds. Erasing an account's data key erases its
//! data everywhere the log, the read model or a backup was copied, while the events, their
//! offsets and everyone else's history stay as they are.
//!
//! - [`Keyring`]: the KEKs from configuration; wraps and unwraps data keys.
//! - [`DataKey`]: seals and opens content (AES-256-GCM-SIV, the event id as nonce and
//!   associated data).
//! - [`store`]: the table of wrapped data keys: created on first use, read, erased, re-wrapped.
//! - [`WritingKeys`]: the keys a writer seals with, kept in memory.

mod data_key;
mod kek;
pub mod store;
mod writing_keys;

pub use data_key::DataKey;
pub use kek::{Keyring, KeyringArgs};
pub use writing_keys::WritingKeys;

/// Why a key or a sealed value could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the key-encryption key is not usable: {0}")]
    BadKek(String),
    /// The data key was wrapped by a KEK this process is not given (rotated away too early).
    #[error("data key of account {account} is wrapped by key-encryption key {kek_id}, which is not configured")]
    UnknownKek { account: uuid::Uuid, kek_id: String },
    /// Authentication failed: the wrong key, or the bytes were changed.
    #[error("{0} does not open with its key")]
    Tampered(&'static str),
    /// The key could not be read or does not exist, though sealed content needs it.
    #[error("no usable data key: {0}")]
    Unusable(String),
    #[error("the key store: {0}")]
    Store(#[from] sqlx::Error),
}
