//! The wrapped data keys, in `accounts.data_keys` (created by the accounts migrations). A row
//! holds the key wrapped by a KEK, or, once the account is erased, only the time it was: the
//! tombstone tells every reader that sealed content of that account is gone on purpose, not
//! lost.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use uuid::Uuid;

use crate::{DataKey, KeyError, Keyring};

/// The key an account's new content is sealed with, made on first use; `None` once the account
/// is erased. Two writers racing to make it agree on the one stored first.
pub async fn key_for_writing(pool: &sqlx::PgPool, keyring: &Keyring, account: Uuid) -> Result<Option<DataKey>, KeyError> {
    if let Some(stored) = stored_keys(pool, keyring, &[account]).await?.remove(&account) {
        return stored;
    }
    insert_new_keys(&mut *pool.acquire().await?, keyring, &[account]).await?;
    stored_keys(pool, keyring, &[account]).await?.remove(&account).unwrap_or(Ok(None))
}

/// A new data key for each of `accounts`, where none is stored yet (nor a tombstone): one
/// statement, rows in account order, so two writers never wait on each other crosswise. It
/// waits for an erasure inserting the tombstone at the same moment, then does nothing.
async fn insert_new_keys(connection: &mut sqlx::PgConnection, keyring: &Keyring, accounts: &[Uuid]) -> Result<(), sqlx::Error> {
    let mut accounts = accounts.to_vec();
    accounts.sort_unstable();
    let (kek_ids, wrapped): (Vec<String>, Vec<Vec<u8>>) = accounts.iter().map(|&account| keyring.wrap(account, &DataKey::generate())).unzip();
    sqlx::query(
        "INSERT INTO accounts.data_keys (account_id, kek_id, wrapped) SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::bytea[])
         ON CONFLICT (account_id) DO NOTHING",
    )
    .bind(&accounts)
    .bind(&kek_ids)
    .bind(&wrapped)
    .execute(connection)
    .await?;
    Ok(())
}

/// A data key as stored: `None` once the account is erased.
pub type StoredKey = Result<Option<DataKey>, KeyError>;

/// The data keys of `accounts`: `Some(key)`, or `None` for an erased account; an account that
/// never had a key is not in the map. Each key is its own result: one that does not unwrap
/// does not stop the others.
pub async fn stored_keys(pool: &sqlx::PgPool, keyring: &Keyring, accounts: &[Uuid]) -> Result<HashMap<Uuid, StoredKey>, sqlx::Error> {
    read(&mut *pool.acquire().await?, keyring, accounts, "").await
}

/// As [`stored_keys`], read `FOR SHARE` in the caller's transaction: an erasure of these accounts
/// either committed before (the key reads as erased) or waits until the transaction ends, so
/// whatever the transaction writes with a key is there for the erasure to scrub.
///
/// An account with no key yet (its text is from before sealing) gets one first: a row to lock.
/// Without it an erasure could insert its tombstone and scrub between this read and the
/// caller's commit, and the caller would write the account's text after it.
pub async fn keys_held(connection: &mut sqlx::PgConnection, keyring: &Keyring, accounts: &[Uuid]) -> Result<HashMap<Uuid, StoredKey>, sqlx::Error> {
    let mut keys = read(connection, keyring, accounts, " FOR SHARE").await?;
    let missing: Vec<Uuid> = accounts.iter().filter(|account| !keys.contains_key(account)).copied().collect();
    if missing.is_empty() || !keyring.key_table_seen.load(Ordering::Relaxed) {
        return Ok(keys);
    }
    insert_new_keys(connection, keyring, &missing).await?;
    keys.extend(read(connection, keyring, &missing, " FOR SHARE").await?);
    Ok(keys)
}

async fn read(
    connection: &mut sqlx::PgConnection,
    keyring: &Keyring,
    accounts: &[Uuid],
    lock: &str,
) -> Result<HashMap<Uuid, StoredKey>, sqlx::Error> {
    // Before the accounts schema is migrated (a projector started first, a log replayed on its
    // own) no account has a key. Asked first rather than caught: an error would abort the
    // caller's transaction.
    if !keyring.key_table_seen.load(Ordering::Relaxed) {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('accounts.data_keys') IS NOT NULL").fetch_one(&mut *connection).await?;
        if !exists {
            return Ok(HashMap::new());
        }
        keyring.key_table_seen.store(true, Ordering::Relaxed);
    }
    let rows: Vec<(Uuid, Option<String>, Option<Vec<u8>>)> =
        sqlx::query_as(&format!("SELECT account_id, kek_id, wrapped FROM accounts.data_keys WHERE account_id = ANY($1){lock}"))
            .bind(accounts)
            .fetch_all(&mut *connection)
            .await?;
    Ok(rows.into_iter().map(|(account, kek_id, wrapped)| (account, unwrap_row(keyring, account, kek_id.as_deref(), wrapped.as_deref()))).collect())
}

/// The text a reader may keep of `submission`, created with `content`, given its owner's key as
/// [`stored_keys`] or [`keys_held`] read it: plain text as it is, sealed text opened; `Ok(None)`
/// once the owner is erased, in either form.
pub fn readable_text(content: &domain::Content, key: Option<&StoredKey>, submission: Uuid) -> Result<Option<String>, KeyError> {
    match content {
        domain::Content::Plain(text) => Ok((!matches!(key, Some(Ok(None)))).then(|| text.clone())),
        domain::Content::Sealed(sealed) => open_content(key, submission, sealed),
    }
}

fn open_content(key: Option<&StoredKey>, submission: Uuid, sealed: &[u8]) -> Result<Option<String>, KeyError> {
    match key {
        Some(Ok(Some(key))) => key.open(domain::Event::creation_id(submission), sealed).map(Some),
        Some(Ok(None)) => Ok(None),
        Some(Err(error)) => Err(KeyError::Unusable(error.to_string())),
        None => Err(KeyError::Unusable("the owner has no data key".into())),
    }
}

/// A row of `data_keys` read by a reader's own join: `None` when erased (or never made).
pub fn unwrap_row(keyring: &Keyring, account: Uuid, kek_id: Option<&str>, wrapped: Option<&[u8]>) -> Result<Option<DataKey>, KeyError> {
    match (kek_id, wrapped) {
        (Some(kek_id), Some(wrapped)) => keyring.unwrap(account, kek_id, wrapped).map(Some),
        _ => Ok(None),
    }
}

/// The channel an erasure notifies when it commits: the command APIs listen on it to announce
/// the erasure on the log.
pub const ERASURES: &str = "accounts_erased";

/// Destroys the account's data key, leaving the tombstone, not yet announced on the log.
/// Everything sealed with it is unreadable from the moment the caller's transaction commits.
pub async fn erase(connection: &mut sqlx::PgConnection, account: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO accounts.data_keys (account_id, kek_id, wrapped, erased_at) VALUES ($1, NULL, NULL, now())
         ON CONFLICT (account_id) DO UPDATE SET kek_id = NULL, wrapped = NULL, erased_at = COALESCE(data_keys.erased_at, now())",
    )
    .bind(account)
    .execute(&mut *connection)
    .await?;
    sqlx::query("SELECT pg_notify($1, '')").bind(ERASURES).execute(&mut *connection).await?;
    Ok(())
}

/// Up to `limit` erasures not yet announced on the log, oldest first: each account and when it
/// was erased. Nothing is locked: two announcers may both announce one, which is the same event.
pub async fn unannounced_erasures(pool: &sqlx::PgPool, limit: i64) -> Result<Vec<(Uuid, chrono::DateTime<chrono::Utc>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT account_id, erased_at FROM accounts.data_keys WHERE erased_at IS NOT NULL AND announced_at IS NULL
         ORDER BY erased_at LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Records that the erasures of `accounts` are on the log.
pub async fn mark_announced(pool: &sqlx::PgPool, accounts: &[Uuid]) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE accounts.data_keys SET announced_at = now() WHERE account_id = ANY($1) AND announced_at IS NULL")
        .bind(accounts)
        .execute(pool)
        .await?;
    Ok(())
}

/// Re-wraps every data key not wrapped by the current KEK (a rotation), one row at a time so
/// that writers are never blocked for long. Returns how many were re-wrapped. The log is not
/// touched: it holds content sealed by data keys, which do not change.
pub async fn rewrap_all(pool: &sqlx::PgPool, keyring: &Keyring) -> Result<u64, KeyError> {
    let mut rewrapped = 0;
    loop {
        let mut tx = pool.begin().await?;
        let row: Option<(Uuid, String, Vec<u8>)> = sqlx::query_as(
            // Not SKIP LOCKED: a key a reader holds `FOR SHARE` for a moment must be waited
            // for, or the rotation would end with it still under the old KEK.
            "SELECT account_id, kek_id, wrapped FROM accounts.data_keys WHERE wrapped IS NOT NULL AND kek_id <> $1 LIMIT 1 FOR UPDATE",
        )
        .bind(keyring.current_id())
        .fetch_optional(&mut *tx)
        .await?;
        let Some((account, kek_id, wrapped)) = row else { break };
        let (new_kek_id, new_wrapped) = keyring.wrap(account, &keyring.unwrap(account, &kek_id, &wrapped)?);
        sqlx::query("UPDATE accounts.data_keys SET kek_id = $2, wrapped = $3 WHERE account_id = $1")
            .bind(account)
            .bind(new_kek_id)
            .bind(new_wrapped)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        rewrapped += 1;
    }
    Ok(rewrapped)
}
