//! A data key, and sealing with it.

use aes_gcm_siv::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Key, Nonce};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::KeyError;

/// One account's key: 32 random bytes.
///
/// AES-256-GCM-SIV (RFC 8452) rather than plain GCM: the nonce is derived from the event id
/// instead of drawn at random, so sealing is deterministic. A producer's retry of the same
/// event carries byte-identical content, which the fold recognises as a duplicate, and a nonce
/// that repeats (the same event sealed twice) reveals only that the texts are equal, where GCM
/// would reveal the key stream.
#[derive(Clone)]
pub struct DataKey {
    bytes: Zeroizing<[u8; 32]>,
    cipher: Aes256GcmSiv,
}

impl DataKey {
    pub fn generate() -> DataKey {
        let key = Aes256GcmSiv::generate_key(&mut OsRng);
        DataKey::from_bytes(key.into())
    }

    pub(crate) fn from_bytes(bytes: [u8; 32]) -> DataKey {
        let cipher = Aes256GcmSiv::new(Key::<Aes256GcmSiv>::from_slice(&bytes));
        DataKey { bytes: Zeroizing::new(bytes), cipher }
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// `text` sealed for the event `event_id`: ciphertext and tag.
    pub fn seal(&self, event_id: Uuid, text: &str) -> Vec<u8> {
        seal(&self.cipher, event_id.as_bytes(), text.as_bytes())
    }

    /// `text` as the event creating `submission` carries it: sealed for that event.
    pub fn seal_content(&self, submission: Uuid, text: &str) -> domain::Content {
        domain::Content::Sealed(self.seal(domain::Event::creation_id(submission), text))
    }

    /// What [`DataKey::seal`] sealed for `event_id`.
    pub fn open(&self, event_id: Uuid, sealed: &[u8]) -> Result<String, KeyError> {
        let bytes = open(&self.cipher, event_id.as_bytes(), sealed).ok_or(KeyError::Tampered("sealed content"))?;
        String::from_utf8(bytes).map_err(|_| KeyError::Tampered("sealed content"))
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// The nonce is the first 12 bytes of `context` (an id), the associated data all of it: a
/// sealed value moved to another event or account does not open.
pub(crate) fn seal(cipher: &Aes256GcmSiv, context: &[u8; 16], plaintext: &[u8]) -> Vec<u8> {
    // Encryption fails only past 2^36 bytes, far above any bounded content.
    cipher.encrypt(Nonce::from_slice(&context[..12]), Payload { msg: plaintext, aad: context }).unwrap_or_default()
}

pub(crate) fn open(cipher: &Aes256GcmSiv, context: &[u8; 16], sealed: &[u8]) -> Option<Vec<u8>> {
    cipher.decrypt(Nonce::from_slice(&context[..12]), Payload { msg: sealed, aad: context }).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_text_opens_with_its_key_and_event_only() {
        let key = DataKey::generate();
        let event = Uuid::from_u128(7);
        let sealed = key.seal(event, "my text 42");
        assert!(!sealed.windows(4).any(|w| w == b"text"), "the text is not in the sealed bytes");
        assert_eq!(key.open(event, &sealed).unwrap(), "my text 42");
        assert_eq!(key.seal(event, "my text 42"), sealed, "deterministic: a retried event is byte-identical");
        assert!(key.open(Uuid::from_u128(8), &sealed).is_err(), "another event's context");
        assert!(DataKey::generate().open(event, &sealed).is_err(), "another key");
        let mut changed = sealed.clone();
        changed[0] ^= 1;
        assert!(key.open(event, &changed).is_err(), "changed bytes");
    }
}
