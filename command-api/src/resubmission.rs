//! Resubmitting: a FAILED submission, edited, comes back as a new submission that links to it.
//!
//! What may be replaced is read from the read model (`public.submissions`): a verdict never
//! changes, so a submission it shows FAILED is failed for good, and its owner never changes
//! either. That a submission is replaced at most once is kept by the idempotency record under
//! [`crate::idempotency::replacement_key`] until the read model shows the replacement.

use domain::Status;
use sqlx::PgPool;
use uuid::Uuid;

use crate::ApiError;

/// Refuses unless `replaced` is `owner`'s, FAILED, and not replaced by anything yet (other than
/// `by`, the submission a retry of this request publishes).
pub async fn check(pool: &PgPool, owner: Uuid, replaced: Uuid, by: Uuid) -> Result<(), ApiError> {
    // Another user's submission is as unknown as one that does not exist.
    let row: Option<(String, Option<Uuid>)> = sqlx::query_as(
        "SELECT status,
             (SELECT r.id FROM public.submissions r WHERE r.replaces = s.id AND r.id <> $3 LIMIT 1)
         FROM public.submissions s WHERE s.id = $1 AND s.owner_id = $2",
    )
    .bind(replaced)
    .bind(owner)
    .bind(by)
    .fetch_optional(pool)
    .await?;
    let Some((status, replaced_by)) = row else {
        return Err(ApiError::UnknownReplaced(replaced));
    };
    if let Some(replacement) = replaced_by {
        return Err(ApiError::AlreadyReplaced { replaced, replacement: Some(replacement) });
    }
    match Status::parse(&status) {
        Some(Status::Failed) => Ok(()),
        _ => Err(ApiError::NotFailed { replaced, status }),
    }
}
