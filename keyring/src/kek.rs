//! Key-encryption keys: from configuration (an environment secret or a mounted file, as
//! Kubernetes provides them), never from the database they protect.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use aes_gcm_siv::aead::KeyInit;
use aes_gcm_siv::{Aes256GcmSiv, Key};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::data_key::{open, seal};
use crate::{DataKey, KeyError};

/// Where the key-encryption keys come from. No `Debug` derive: the keys must not reach a log.
#[derive(clap::Args, Clone, Default)]
#[group(id = "keyring")]
pub struct KeyringArgs {
    /// The key-encryption key that wraps every account's data key: 32 bytes, base64. Without
    /// it (or `--key-encryption-key-file`), a development key that is in the source code is
    /// used, with a warning: erasure still works, but the stored data keys are not protected.
    #[arg(long, env = "KEY_ENCRYPTION_KEY", hide_env_values = true)]
    pub key_encryption_key: Option<String>,
    /// A file holding the key-encryption key (base64), e.g. a mounted Kubernetes Secret.
    #[arg(long, env = "KEY_ENCRYPTION_KEY_FILE", conflicts_with = "key_encryption_key")]
    pub key_encryption_key_file: Option<PathBuf>,
    /// Earlier key-encryption keys, comma separated: data keys they wrapped still open while
    /// `content-processor rotate-keys` re-wraps them with the current one.
    #[arg(long, env = "PREVIOUS_KEY_ENCRYPTION_KEYS", value_delimiter = ',', hide_env_values = true)]
    pub previous_key_encryption_keys: Vec<String>,
}

impl std::fmt::Debug for KeyringArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyringArgs")
            .field("key_encryption_key", &self.key_encryption_key.as_ref().map(|_| "[redacted]"))
            .field("key_encryption_key_file", &self.key_encryption_key_file)
            .field("previous_key_encryption_keys", &self.previous_key_encryption_keys.len())
            .finish()
    }
}

/// Public, so not a secret: hashed into the KEK used when none is configured (a local run,
/// the tests).
const DEVELOPMENT_KEK_PHRASE: &[u8] = b"content-processor development key-encryption key";

/// The current KEK, which wraps new data keys, and earlier ones, which only unwrap.
#[derive(Clone)]
pub struct Keyring {
    current: Kek,
    previous: Vec<Kek>,
    /// Whether the key store's table was seen to exist in the database this keyring serves;
    /// once it does, it always will (`store` asks until then).
    pub(crate) key_table_seen: Arc<AtomicBool>,
}

#[derive(Clone)]
struct Kek {
    /// The first 8 hex digits of the key's SHA-256: stored beside each wrapped data key.
    id: String,
    cipher: Aes256GcmSiv,
}

impl Keyring {
    pub fn from_args(args: &KeyringArgs) -> Result<Keyring, KeyError> {
        let current = match (&args.key_encryption_key, &args.key_encryption_key_file) {
            (Some(key), _) => Kek::parse(key)?,
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|error| KeyError::BadKek(format!("{}: {error}", path.display())))?;
                Kek::parse(text.trim())?
            }
            (None, None) => {
                // Once per process: the one-process mode builds a keyring per component.
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| tracing::warn!("no KEY_ENCRYPTION_KEY: data keys are wrapped with the public development key"));
                Kek::development()
            }
        };
        let previous = args.previous_key_encryption_keys.iter().map(|key| Kek::parse(key)).collect::<Result<_, _>>()?;
        Ok(Keyring { current, previous, key_table_seen: Arc::default() })
    }

    /// The id of the KEK new data keys are wrapped with.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// `key` wrapped for `account` by the current KEK: (KEK id, wrapped bytes).
    pub fn wrap(&self, account: Uuid, key: &DataKey) -> (String, Vec<u8>) {
        (self.current.id.clone(), seal(&self.current.cipher, account.as_bytes(), key.bytes()))
    }

    /// The data key `wrapped` by the KEK `kek_id` for `account`.
    pub fn unwrap(&self, account: Uuid, kek_id: &str, wrapped: &[u8]) -> Result<DataKey, KeyError> {
        let kek = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|kek| kek.id == kek_id)
            .ok_or_else(|| KeyError::UnknownKek { account, kek_id: kek_id.to_owned() })?;
        let bytes = open(&kek.cipher, account.as_bytes(), wrapped).ok_or(KeyError::Tampered("a wrapped data key"))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| KeyError::Tampered("a wrapped data key"))?;
        Ok(DataKey::from_bytes(bytes))
    }
}

impl Kek {
    fn parse(base64_key: &str) -> Result<Kek, KeyError> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(base64_key.trim()).map_err(|_| KeyError::BadKek("not base64".into()))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|bytes: Vec<u8>| KeyError::BadKek(format!("{} bytes; it must be 32", bytes.len())))?;
        Ok(Kek::from_bytes(&bytes))
    }

    fn development() -> Kek {
        Kek::from_bytes(&Sha256::digest(DEVELOPMENT_KEK_PHRASE).into())
    }

    fn from_bytes(bytes: &[u8; 32]) -> Kek {
        let id = hex_prefix(&Sha256::digest(bytes));
        Kek { id, cipher: Aes256GcmSiv::new(Key::<Aes256GcmSiv>::from_slice(bytes)) }
    }
}

fn hex_prefix(digest: &[u8]) -> String {
    digest[..4].iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(current: &str, previous: &[&str]) -> Keyring {
        let args = KeyringArgs {
            key_encryption_key: Some(current.to_owned()),
            previous_key_encryption_keys: previous.iter().map(|key| key.to_string()).collect(),
            ..KeyringArgs::default()
        };
        Keyring::from_args(&args).unwrap()
    }

    const ONE: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
    const TWO: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";

    #[test]
    fn a_wrapped_key_unwraps_for_its_account_while_its_kek_is_configured() {
        let account = Uuid::from_u128(1);
        let key = DataKey::generate();
        let (kek_id, wrapped) = keyring(ONE, &[]).wrap(account, &key);
        let event = Uuid::from_u128(9);
        let unwrapped = keyring(ONE, &[]).unwrap(account, &kek_id, &wrapped).unwrap();
        assert_eq!(unwrapped.open(event, &key.seal(event, "text 1")).unwrap(), "text 1");
        assert!(keyring(ONE, &[]).unwrap(Uuid::from_u128(2), &kek_id, &wrapped).is_err(), "another account's");
        // Rotated: the old KEK, kept as a previous one, still unwraps; dropped, it does not.
        assert!(keyring(TWO, &[ONE]).unwrap(account, &kek_id, &wrapped).is_ok());
        assert!(matches!(keyring(TWO, &[]).unwrap(account, &kek_id, &wrapped), Err(KeyError::UnknownKek { .. })));
    }

    #[test]
    fn the_keys_never_show_in_debug_output() {
        let shown = format!(
            "{:?}",
            KeyringArgs { key_encryption_key: Some(ONE.into()), previous_key_encryption_keys: vec![TWO.into()], ..KeyringArgs::default() }
        );
        assert!(!shown.contains(ONE) && !shown.contains(TWO), "{shown}");
    }

    #[test]
    fn a_kek_must_be_32_bytes_of_base64() {
        for bad in ["", "not base64!", "AQID"] {
            let args = KeyringArgs { key_encryption_key: Some(bad.to_owned()), ..KeyringArgs::default() };
            assert!(matches!(Keyring::from_args(&args), Err(KeyError::BadKek(_))), "{bad:?}");
        }
    }
}
