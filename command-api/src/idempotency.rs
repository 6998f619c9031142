//! `Idempotency-Key` on `POST /api/submissions` and `POST /api/batches`
//! (draft-ietf-httpapi-idempotency-key-header).
//!
//! The key is recorded with the ids it was given (a submission's, or a batch's) before the
//! events are published. A retry with the same key (and the same request) gets those ids back:
//! answered from the record when Kafka had acknowledged the first attempt, otherwise by
//! publishing the same events again. Event ids derive from submission ids, so even when the
//! first attempt reached Kafka and the process died before recording that, the log holds one
//! submission (or batch), not two: the fold sees the second copy as a duplicate. Keys are kept
//! for 24 hours.
//!
//! A resubmission is keyed by what it replaces ([`replacement_key`]), whatever the client sends:
//! retrying it is safe without a key, and a second, different replacement is refused.

use chrono::{DateTime, Utc};
use domain::Position;
use sha2::{Digest, Sha256};
use sqlx::migrate::Migrator;
use sqlx::PgPool;
use uuid::Uuid;

use crate::ApiError;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Creates or updates the command API's schema (`commands`).
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::Error> {
    service_kit::postgres::migrate_in_schema(pool, "commands", &MIGRATOR).await
}

/// How long a key stands for its request (README: "Keys are kept 24 hours").
pub const KEY_LIFETIME: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Longest key accepted; the draft leaves it to the server.
const MAX_KEY_LEN: usize = 255;

/// Checks a key as sent: 1 to 255 visible ASCII characters.
pub fn parse_key(value: &axum::http::HeaderValue) -> Result<String, ApiError> {
    let key = value.to_str().map_err(|_| ApiError::InvalidIdempotencyKey)?.trim();
    // A structured-field string arrives quoted; the quotes are not part of the key.
    let key = key.strip_prefix('"').and_then(|k| k.strip_suffix('"')).unwrap_or(key);
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::InvalidIdempotencyKey);
    }
    Ok(key.to_owned())
}

/// The key under which a resubmission of `replaced` is recorded. Clients cannot send it: their
/// keys have no spaces.
pub fn replacement_key(replaced: Uuid) -> String {
    format!("replaces {replaced}")
}

/// What a key stands for.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Recorded {
    /// The submission (for a batch, its first item).
    pub submission_id: Uuid,
    pub batch_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    /// Where Kafka stored the event, once it acknowledged it.
    pub kafka_partition: Option<i32>,
    pub kafka_offset: Option<i64>,
}

impl Recorded {
    /// What a request seen for the first time records: its new submission id, and now, as an
    /// event keeps times.
    pub fn fresh(submission_id: Uuid) -> Recorded {
        Recorded { submission_id, batch_id: None, created_at: domain_time(Utc::now()), kafka_partition: None, kafka_offset: None }
    }

    pub fn acknowledged_at(&self) -> Option<Position> {
        Some(Position { partition: self.kafka_partition?, offset: self.kafka_offset? })
    }
}

/// What to do with a request that carries a key.
pub enum Claim {
    /// First use (or a takeover of a claim its process abandoned): spend the rate limit, then
    /// [`admit`] the key with this claim's id and publish under these ids.
    New(Recorded, Uuid),
    /// A retry of an admitted request: publish the same events again, or answer from the record.
    Retry(Recorded),
}

/// How long a claim may stay unadmitted before another request with its key takes it over: far
/// longer than spending the rate limit takes, so only a process that died in between leaves one.
const ABANDONED_AFTER_SECS: f64 = 10.0;

/// How often [`claim`] tries again when the key it found is given up before it could read it.
const CLAIM_TRIES: usize = 3;

/// The digest a request is recognised by: `parts` (the request's fields, in order) each
/// length-prefixed, so no two different requests share one.
pub fn request_digest<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().to_vec()
}

/// Records `key` for the request with `digest` and the `fresh` ids, or finds what it was
/// recorded for. The same key with another request is refused: it is a new request, not a
/// retry. So is the same request while the first with its key is not admitted yet: it may
/// still be refused, and only one of the two may spend the limit and publish.
pub async fn claim(pool: &PgPool, account_id: Uuid, key: &str, digest: &[u8], fresh: Recorded) -> Result<Claim, ApiError> {
    // A key past its lifetime is a new key, even before the retention sweep removes it; only
    // this key is looked at (the sweep removes the account's others).
    sqlx::query("DELETE FROM commands.idempotency_keys WHERE account_id = $1 AND key = $2 AND created_at < now() - make_interval(secs => $3)")
        .bind(account_id)
        .bind(key)
        .bind(KEY_LIFETIME.as_secs_f64())
        .execute(pool)
        .await?;
    for _ in 0..CLAIM_TRIES {
        let claim_id = Uuid::new_v4();
        let inserted = sqlx::query(
            "INSERT INTO commands.idempotency_keys (account_id, key, request_digest, submission_id, batch_id, created_at, admitted, claim_id)
             VALUES ($1, $2, $3, $4, $5, $6, false, $7) ON CONFLICT (account_id, key) DO NOTHING",
        )
        .bind(account_id)
        .bind(key)
        .bind(digest)
        .bind(fresh.submission_id)
        .bind(fresh.batch_id)
        .bind(fresh.created_at)
        .bind(claim_id)
        .execute(pool)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(Claim::New(fresh.clone(), claim_id));
        }
        #[derive(sqlx::FromRow)]
        struct Row {
            request_digest: Vec<u8>,
            admitted: bool,
            abandoned: bool,
            #[sqlx(flatten)]
            recorded: Recorded,
        }
        let row: Option<Row> = sqlx::query_as(
            "SELECT request_digest, admitted, claimed_at < now() - make_interval(secs => $3) AS abandoned,
                    submission_id, batch_id, created_at, kafka_partition, kafka_offset
             FROM commands.idempotency_keys WHERE account_id = $1 AND key = $2",
        )
        .bind(account_id)
        .bind(key)
        .bind(ABANDONED_AFTER_SECS)
        .fetch_optional(pool)
        .await?;
        // Given up (its request refused) between the two statements: claim it afresh.
        let Some(row) = row else { continue };
        if row.request_digest != digest {
            return Err(ApiError::IdempotencyKeyReused);
        }
        if row.admitted {
            return Ok(Claim::Retry(row.recorded));
        }
        if row.abandoned && take_over(pool, account_id, key, claim_id).await? {
            return Ok(Claim::New(row.recorded, claim_id));
        }
        return Err(ApiError::IdempotencyKeyInUse);
    }
    Err(ApiError::IdempotencyKeyInUse)
}

/// Takes over a claim that stayed unadmitted too long, as `claim_id`; false when another request
/// did first.
async fn take_over(pool: &PgPool, account_id: Uuid, key: &str, claim_id: Uuid) -> Result<bool, ApiError> {
    let taken = sqlx::query(
        "UPDATE commands.idempotency_keys SET claimed_at = now(), claim_id = $4
         WHERE account_id = $1 AND key = $2 AND NOT admitted AND claimed_at < now() - make_interval(secs => $3)",
    )
    .bind(account_id)
    .bind(key)
    .bind(ABANDONED_AFTER_SECS)
    .bind(claim_id)
    .execute(pool)
    .await?;
    Ok(taken.rows_affected() == 1)
}

/// Marks the key admitted (its rate limit spent) if `claim_id` still holds it: from then on a
/// request with it is a retry of this one. A claim that was taken over meanwhile (this request
/// stalled past the takeover) is refused: only one request may publish under a key.
pub async fn admit(pool: &PgPool, account_id: Uuid, key: &str, claim_id: Uuid) -> Result<(), ApiError> {
    let admitted =
        sqlx::query("UPDATE commands.idempotency_keys SET admitted = true WHERE account_id = $1 AND key = $2 AND claim_id = $3 AND NOT admitted")
            .bind(account_id)
            .bind(key)
            .bind(claim_id)
            .execute(pool)
            .await?;
    if admitted.rows_affected() == 0 {
        return Err(ApiError::IdempotencyKeyInUse);
    }
    Ok(())
}

/// Gives the key up again if `claim_id` still holds it unadmitted: its request was refused.
pub async fn release(pool: &PgPool, account_id: Uuid, key: &str, claim_id: Uuid) -> Result<(), ApiError> {
    sqlx::query("DELETE FROM commands.idempotency_keys WHERE account_id = $1 AND key = $2 AND claim_id = $3 AND NOT admitted")
        .bind(account_id)
        .bind(key)
        .bind(claim_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Notes that Kafka acknowledged the key's event, so retries are answered without publishing.
pub async fn acknowledged(pool: &PgPool, account_id: Uuid, key: &str, position: Position) -> Result<(), ApiError> {
    sqlx::query(
        "UPDATE commands.idempotency_keys SET acknowledged_at = now(), kafka_partition = $3, kafka_offset = $4
         WHERE account_id = $1 AND key = $2",
    )
    .bind(account_id)
    .bind(key)
    .bind(position.partition)
    .bind(position.offset)
    .execute(pool)
    .await?;
    Ok(())
}

/// Times as an event keeps them (microseconds), so a republished event is identical.
fn domain_time(at: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::SubsecRound;
    at.trunc_subsecs(6)
}
