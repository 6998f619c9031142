//! Deleting an account (GDPR article 17): by its owner, the password re-entered, or by an
//! admin. From the moment it answers, the account cannot sign in, its sessions and tokens are
//! dead, and the text of its submissions is unreadable everywhere: in the topic and any copy of
//! it (sealed with the account's data key, which is destroyed), in every read-model generation
//! and in the notifier's tables (scrubbed in the same transaction). Verdicts and counts stay.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use service_kit::http_error::{AdminOnly, DatabaseUnavailable, ErrorBody, JsonBody, JsonBodyErrors, SignedInChange};
use uuid::Uuid;

use super::HashingOrDatabaseBusy;
use crate::{Accounts, AccountsError, Admin, Caller, Role};

/// The advisory lock admins' erasures take turns by.
const LAST_ADMIN_LOCK: i64 = 0x636f_6e74_6164_6d01;

/// No `Debug`: it holds a password.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AccountDeletion {
    /// The account's password, re-entered.
    password: String,
}

/// Deletes the caller's account and erases its data, the password re-entered.
#[utoipa::path(delete, path = "/api/account", tag = "accounts", request_body = AccountDeletion, responses(
    (status = 204, description = "deleted: nothing of the account is readable any more"),
    (status = 401, description = "`invalid_credentials`: the password is wrong", body = ErrorBody),
    (status = 409, description = "`last_admin`: the caller is the only admin", body = ErrorBody),
    (status = 429, description = "`rate_limited`: as many tries as sign-in allows", body = ErrorBody),
    SignedInChange,
    JsonBodyErrors,
    (status = 422, description = "`invalid_body`", body = ErrorBody),
    HashingOrDatabaseBusy,
))]
pub(super) async fn delete_own(
    State(accounts): State<Accounts>,
    caller: Caller,
    body: JsonBody<AccountDeletion>,
) -> Result<StatusCode, AccountsError> {
    let JsonBody(deletion) = body;
    super::confirm_password(&accounts, &caller, deletion.password).await?;
    erase(&accounts, caller.account_id).await?;
    tracing::info!(account_id = %caller.account_id, "account deleted by its owner");
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes an account and erases its data (admins only).
#[utoipa::path(delete, path = "/api/accounts/{id}", tag = "accounts", params(("id" = Uuid, Path, description = "the account's id")), responses(
    (status = 204, description = "deleted: nothing of the account is readable any more"),
    (status = 400, description = "`invalid_id`", body = ErrorBody),
    (status = 404, description = "`not_found`: no such account", body = ErrorBody),
    (status = 409, description = "`last_admin`: the account is the only admin", body = ErrorBody),
    AdminOnly,
    DatabaseUnavailable,
))]
pub(super) async fn delete_any(
    State(accounts): State<Accounts>,
    Admin(caller): Admin,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, AccountsError> {
    let id = service_kit::http_error::path_uuid(path, "account")?;
    if !erase(&accounts, id).await? {
        return Err(AccountsError::NoSuchAccount(id));
    }
    tracing::info!(account_id = %id, admin_id = %caller.account_id, "account deleted by an admin");
    Ok(StatusCode::NO_CONTENT)
}

/// Erases `account` in one transaction; `false` if there was no such account. The data key goes
/// first: its row lock waits for any writer that read the key `FOR SHARE` (a projector or
/// notifier transaction opening the account's content), so what they wrote is there to scrub.
/// The last admin is refused: nobody could then run the operations pages or delete an account.
async fn erase(accounts: &Accounts, account: Uuid) -> Result<bool, AccountsError> {
    let mut tx = accounts.pool.begin().await?;
    // Held to the end: a second erasure of the same account waits, then finds nothing.
    let role: Option<String> =
        sqlx::query_scalar("SELECT role FROM accounts.accounts WHERE id = $1 FOR UPDATE").bind(account).fetch_optional(&mut *tx).await?;
    let Some(role) = role else { return Ok(false) };
    if role == Role::Admin.as_str() {
        // Admins' erasures take turns, so two admins deleting each other at once are counted one
        // after the other; the count sees what the one before committed.
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(LAST_ADMIN_LOCK).execute(&mut *tx).await?;
        let admins: i64 =
            sqlx::query_scalar("SELECT count(*) FROM accounts.accounts WHERE role = $1").bind(Role::Admin.as_str()).fetch_one(&mut *tx).await?;
        if admins <= 1 {
            return Err(AccountsError::LastAdmin);
        }
    }
    keyring::store::erase(&mut tx, account).await?;
    // The readers' own scrubbing, each where that service is deployed. A reader whose tables
    // exist but whose migration has not made its function yet (a rolling upgrade) refuses the
    // erasure: answering 204 would leave its text behind.
    for (table, function) in [("public.read_models", "public.erase_account_content"), ("notifier.awaited_verdicts", "notifier.erase_account_content")]
    {
        let (deployed, ready): (bool, bool) = sqlx::query_as("SELECT to_regclass($1) IS NOT NULL, to_regprocedure($2 || '(uuid)') IS NOT NULL")
            .bind(table)
            .bind(function)
            .fetch_one(&mut *tx)
            .await?;
        if ready {
            sqlx::query(&format!("SELECT {function}($1)")).bind(account).execute(&mut *tx).await?;
        } else if deployed {
            return Err(AccountsError::Database(sqlx::Error::Protocol(format!(
                "{function} is missing: upgrade that service before erasing accounts"
            ))));
        }
    }
    // Sessions, tokens, notification settings, webhooks and deliveries go with it (foreign keys
    // cascade); the statement trigger tells every process to forget its cached tokens.
    sqlx::query("DELETE FROM accounts.accounts WHERE id = $1").bind(account).execute(&mut *tx).await?;
    tx.commit().await?;
    accounts.tokens.forget_all();
    Ok(true)
}
