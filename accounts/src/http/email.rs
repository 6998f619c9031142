//! What goes through the owner's mailbox: verifying the address (nothing is mailed to an
//! address before), and resetting a forgotten password. A link is single-use, expires, and only
//! its digest is stored; it carries its token in the URL's fragment, which the UI posts here.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use service_kit::http_error::{ErrorBody, JsonBody, JsonBodyErrors, SignedInChange};

use super::{ClientAddress, HashingOrDatabaseBusy, Notice};
use crate::mail::Purpose;
use crate::rate_limit::Policy;
use crate::store::{self, Account};
use crate::{password, secret, Accounts, AccountsError, Caller};

/// Verification links one account may ask for.
const VERIFICATION_MAILS: Policy = Policy { name: "verification-mails", limit: 5, window_secs: 3_600 };
/// Reset links mailed to one address, and asked for from one client address: a stranger may
/// not fill someone's mailbox, nor probe many addresses.
const RESETS_PER_ACCOUNT: Policy = Policy { name: "reset-mails", limit: 3, window_secs: 3_600 };
const RESETS_PER_ADDRESS: Policy = Policy { name: "reset-requests", limit: 20, window_secs: 3_600 };
/// Notes to an account's owner that someone signed up with its address.
const SIGN_UP_ATTEMPT_MAILS: Policy = Policy { name: "sign-up-attempt-mails", limit: 3, window_secs: 3_600 };

/// A link's token, as the UI found it in the link.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct LinkToken {
    token: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ResetRequest {
    #[schema(max_length = 254, pattern = "^[^@\\s\\u0000-\\u001f\\u007f-\\u009f]+@[^@\\s\\u0000-\\u001f\\u007f-\\u009f]+$")]
    email: String,
}

/// No `Debug`: it holds a password.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PasswordReset {
    token: String,
    /// 8 to 1024 characters.
    #[schema(min_length = 8, max_length = 1024)]
    password: String,
    /// Revoke every API token of the account too.
    #[serde(default)]
    revoke_tokens: bool,
}

/// Mails a new link to the caller's address; following it verifies the address.
#[utoipa::path(post, path = "/api/account/verification", tag = "accounts", responses(
    (status = 202, description = "the link is mailed"),
    (status = 409, description = "`already_verified`, or `mail_unavailable`: this server sends no email", body = ErrorBody),
    (status = 429, description = "`rate_limited`: 5 links an hour", body = ErrorBody),
    (status = 502, description = "`mail_failed`: the mail server refused it", body = ErrorBody),
    (status = 503, description = "`database_unavailable`", body = ErrorBody),
    SignedInChange,
))]
pub(super) async fn resend_verification(State(accounts): State<Accounts>, caller: Caller) -> Result<StatusCode, AccountsError> {
    let account = store::account(&accounts.pool, caller.account_id).await?.ok_or(AccountsError::Unauthenticated("the account no longer exists"))?;
    if account.email_verified {
        return Err(AccountsError::AlreadyVerified);
    }
    accounts.limiter.require(VERIFICATION_MAILS, &account.id.to_string()).await?;
    send(&accounts, &account, Message::Link(Purpose::Verify)).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Verifies the address the link was mailed to. The link is the credential: no sign-in needed.
#[utoipa::path(post, path = "/api/account/verify", tag = "accounts", request_body = LinkToken, security(()), responses(
    (status = 204, description = "verified"),
    (status = 400, description = "`invalid_token`: unknown, used or expired", body = ErrorBody),
    JsonBodyErrors,
    (status = 422, description = "`invalid_body`", body = ErrorBody),
    (status = 503, description = "`database_unavailable`", body = ErrorBody),
))]
pub(super) async fn verify(State(accounts): State<Accounts>, body: JsonBody<LinkToken>) -> Result<StatusCode, AccountsError> {
    let JsonBody(link) = body;
    let mut tx = accounts.pool.begin().await?;
    let account = store::consume_email_token(&mut tx, Purpose::Verify, &secret::digest(&link.token)).await?.ok_or(AccountsError::InvalidLink)?;
    store::mark_verified(&mut tx, account).await?;
    tx.commit().await?;
    tracing::info!(account_id = %account, "email address verified");
    Ok(StatusCode::NO_CONTENT)
}

/// Mails a link to reset the password of the account with this address, if there is one. The
/// answer is the same either way, and as quick: it does not tell who has an account.
#[utoipa::path(post, path = "/api/password-reset", tag = "accounts", request_body = ResetRequest, security(()), responses(
    (status = 202, description = "if an account has this address, a link is on its way", body = Notice),
    (status = 409, description = "`mail_unavailable`: this server sends no email", body = ErrorBody),
    (status = 429, description = "`rate_limited`: too many links for the address, or asked for from the client's", body = ErrorBody),
    JsonBodyErrors,
    (status = 422, description = "`invalid_body`", body = ErrorBody),
    (status = 503, description = "`database_unavailable`", body = ErrorBody),
))]
pub(super) async fn request_reset(
    State(accounts): State<Accounts>,
    ClientAddress(address): ClientAddress,
    body: JsonBody<ResetRequest>,
) -> Result<Response, AccountsError> {
    let JsonBody(request) = body;
    let email = store::normalize_email(&request.email)?;
    if accounts.mail.is_none() {
        return Err(AccountsError::MailUnavailable);
    }
    for (policy, subject) in [(RESETS_PER_ADDRESS, address.as_str()), (RESETS_PER_ACCOUNT, email.as_str())] {
        accounts.limiter.require(policy, subject).await?;
    }
    if let Some((account, _)) = store::find_by_email(&accounts.pool, &email).await? {
        // Sent after answering, so the answer takes as long whether the account exists or not.
        tokio::spawn(async move {
            if let Err(error) = send(&accounts, &account, Message::Link(Purpose::Reset)).await {
                tracing::warn!(account_id = %account.id, error = ?error, "cannot mail a password reset link");
            }
        });
    }
    let notice = Notice { message: "if an account has this address, a link to reset its password is on its way" };
    Ok((StatusCode::ACCEPTED, Json(notice)).into_response())
}

/// Sets a new password with a reset link: every session of the account ends, every other reset
/// link dies (and, when asked, every API token is revoked), and the address counts as verified
/// (the link reached it). An account whose address was not verified until now was made by
/// someone who never read its mail, maybe a stranger who signed up with it: its tokens are
/// revoked and its webhook endpoints removed whatever was asked, so nothing they set up
/// outlives the owner's claim.
#[utoipa::path(post, path = "/api/password-reset/confirm", tag = "accounts", request_body = PasswordReset, security(()), responses(
    (status = 204, description = "the password is changed; sign in with it"),
    (status = 400, description = "`invalid_token`: unknown, used or expired", body = ErrorBody),
    JsonBodyErrors,
    (status = 422, description = "`invalid_body`: a password under 8 or over 1024 characters", body = ErrorBody),
    HashingOrDatabaseBusy,
))]
pub(super) async fn confirm_reset(State(accounts): State<Accounts>, body: JsonBody<PasswordReset>) -> Result<StatusCode, AccountsError> {
    let JsonBody(reset) = body;
    password::check_new(&reset.password)?;
    let digest = secret::digest(&reset.token);
    // A link is looked up before anything is hashed: made-up tokens cost a lookup, not a core.
    if !store::email_token_is_live(&accounts.pool, Purpose::Reset, &digest).await? {
        return Err(AccountsError::InvalidLink);
    }
    let hash = password::hash(reset.password).await?;
    let mut tx = accounts.pool.begin().await?;
    let account = store::consume_email_token(&mut tx, Purpose::Reset, &digest).await?.ok_or(AccountsError::InvalidLink)?;
    let claimed = !store::is_verified(&mut tx, account).await?;
    let revoke_tokens = reset.revoke_tokens || claimed;
    store::replace_password(&mut tx, account, &hash, None, revoke_tokens).await?;
    if claimed {
        store::remove_webhook_endpoints(&mut tx, account).await?;
    }
    store::mark_verified(&mut tx, account).await?;
    tx.commit().await?;
    accounts.tokens.forget_all();
    tracing::info!(account_id = %account, revoke_tokens, claimed, "password reset");
    Ok(StatusCode::NO_CONTENT)
}

/// What is mailed to an account's owner.
pub(super) enum Message {
    /// A new link for this purpose.
    Link(Purpose),
    /// Someone signed up with the address, which has an account already.
    SignUpAttempt,
}

/// Mails `message` to `account`'s owner.
pub(super) async fn send(accounts: &Accounts, account: &Account, message: Message) -> Result<(), AccountsError> {
    let mail = accounts.mail.as_ref().ok_or(AccountsError::MailUnavailable)?;
    let public_url = mail.public_url.trim_end_matches('/');
    let (subject, text) = match message {
        Message::Link(purpose) => {
            let token = secret::random_hex();
            store::create_email_token(&accounts.pool, account.id, purpose, &secret::digest(&token)).await?;
            purpose.message(&format!("{public_url}/#{}={token}", purpose.as_str()))
        }
        Message::SignUpAttempt => {
            // A stranger may not fill the owner's mailbox by signing up again and again.
            if accounts.limiter.require(SIGN_UP_ATTEMPT_MAILS, &account.id.to_string()).await.is_err() {
                return Ok(());
            }
            crate::mail::sign_up_attempt(public_url)
        }
    };
    let message_id = uuid::Uuid::new_v4().to_string();
    mail.mailer.send(&account.email, &message_id, subject, text).await.map_err(AccountsError::MailFailed)
}
