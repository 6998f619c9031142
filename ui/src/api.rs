//! Talking to the command and query APIs, the notifier and the admin endpoints. Every failure comes back as a sentence for the user.

use gloo_net::http::{Request, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use web_sys::RequestCredentials;

use crate::model::{
    BatchAccepted, BatchView, CreatedEndpoint, CreatedToken, Delivery, History, Items, NotificationSettings, Page, Session, SubmissionView,
    TokenView, WebhookEndpoint,
};
use crate::operations::{DeadLetters, Overview, RebuildStatus, Records};

/// Where the APIs are (command, query, notifier, and the admin endpoints the projector serves).
/// Empty means the origin that served the page (the usual case: the
/// query API or the one-process mode serves the UI). Set through `/ui-config.json`. Once signed
/// in, it also carries the session's CSRF token, which every request that changes something
/// sends back.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Endpoints {
    #[serde(default)]
    pub command_api: String,
    #[serde(default)]
    pub query_api: String,
    #[serde(default)]
    pub notifier_api: String,
    #[serde(default)]
    pub admin_api: String,
    /// Whether the server mails links (to confirm an address, to reset a password).
    #[serde(default)]
    pub mail: bool,
    #[serde(skip)]
    pub csrf_token: Option<String>,
}

impl Endpoints {
    /// Reads `/ui-config.json`; without one, both APIs are on this origin.
    pub async fn load() -> Endpoints {
        match Request::get("/ui-config.json").send().await {
            Ok(response) if response.ok() => response.json().await.unwrap_or_default(),
            _ => Endpoints::default(),
        }
    }

    pub fn stream_url(&self) -> String {
        format!("{}/api/stream", self.query_api)
    }

    pub fn batch_stream_url(&self, id: &str) -> String {
        format!("{}/api/batches/{id}/stream", self.query_api)
    }
}

const UNREACHABLE: &str = "Cannot reach the server. Check your connection and try again.";

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    message: String,
    /// A refused batch's bad items.
    #[serde(default)]
    items: Vec<ItemError>,
}

#[derive(Deserialize)]
struct ItemError {
    index: usize,
    message: String,
}

/// Turns a non-success answer into words, using the server's own message when it sent one.
async fn explain(response: Response) -> String {
    let status = response.status();
    let retry_after = response.headers().get("retry-after");
    let message = match response.json::<ErrorBody>().await {
        // Items are numbered from 1 for people (line 1 is index 0).
        Ok(body) => body.error.items.iter().fold(body.error.message, |text, item| format!("{text} Line {}: {}.", item.index + 1, item.message)),
        Err(_) => format!("The server answered {status} {}.", response.status_text()),
    };
    match (status, retry_after) {
        (503, Some(seconds)) => format!("{message} (The service is unavailable; try again in {seconds} s.)"),
        (503, None) => format!("{message} (The service is unavailable; try again shortly.)"),
        _ => message,
    }
}

async fn read<T: DeserializeOwned>(response: Result<Response, gloo_net::Error>) -> Result<T, String> {
    let response = checked(response).await?;
    response.json().await.map_err(|e| format!("The server sent an answer this page cannot read: {e}"))
}

async fn checked(response: Result<Response, gloo_net::Error>) -> Result<Response, String> {
    let response = response.map_err(|_| UNREACHABLE.to_owned())?;
    if !response.ok() {
        return Err(explain(response).await);
    }
    Ok(response)
}

/// A request sending the session cookie (also to the command API on another origin).
fn with_cookie(request: RequestBuilder) -> RequestBuilder {
    request.credentials(RequestCredentials::Include)
}

/// A request that changes something: with the cookie and the session's CSRF token.
fn changing(endpoints: &Endpoints, request: RequestBuilder) -> RequestBuilder {
    let request = with_cookie(request);
    match &endpoints.csrf_token {
        Some(token) => request.header("X-CSRF-Token", token),
        None => request,
    }
}

/// POSTs `body` as JSON (with the cookie and any CSRF token) and reads the answer.
async fn post_json<T: DeserializeOwned>(endpoints: &Endpoints, url: &str, body: serde_json::Value) -> Result<T, String> {
    let request = changing(endpoints, Request::post(url)).json(&body).map_err(|e| e.to_string())?;
    read(request.send().await).await
}

pub async fn submit(endpoints: &Endpoints, content: &str) -> Result<SubmissionView, String> {
    post_json(endpoints, &format!("{}/api/submissions", endpoints.command_api), serde_json::json!({ "content": content })).await
}

/// Submits `content` as the replacement of the FAILED submission `replaces`.
pub async fn resubmit(endpoints: &Endpoints, replaces: &str, content: &str) -> Result<SubmissionView, String> {
    let body = serde_json::json!({ "content": content, "replaces": replaces });
    post_json(endpoints, &format!("{}/api/submissions", endpoints.command_api), body).await
}

/// Submits every item as one batch, accepted all or none.
pub async fn submit_batch(endpoints: &Endpoints, items: &[String]) -> Result<BatchAccepted, String> {
    let items: Vec<_> = items.iter().map(|content| serde_json::json!({ "content": content })).collect();
    post_json(endpoints, &format!("{}/api/batches", endpoints.command_api), serde_json::json!({ "items": items })).await
}

/// The batch, once the read model holds it (`position` from its acceptance).
pub async fn batch(endpoints: &Endpoints, id: &str, position: &str) -> Result<BatchView, String> {
    let url = format!("{}/api/batches/{id}?position={position}", endpoints.query_api);
    read(with_cookie(Request::get(&url)).send().await).await
}

pub async fn submission(endpoints: &Endpoints, id: &str) -> Result<SubmissionView, String> {
    read(with_cookie(Request::get(&format!("{}/api/submissions/{id}", endpoints.query_api))).send().await).await
}

pub async fn notification_settings(endpoints: &Endpoints) -> Result<NotificationSettings, String> {
    read(with_cookie(Request::get(&format!("{}/api/notification-settings", endpoints.notifier_api))).send().await).await
}

/// Turns one channel on or off (`channel`: `email` or `webhooks`).
pub async fn set_channel(endpoints: &Endpoints, channel: &str, on: bool) -> Result<NotificationSettings, String> {
    let url = format!("{}/api/notification-settings", endpoints.notifier_api);
    let request = changing(endpoints, Request::put(&url)).json(&serde_json::json!({ channel: on })).map_err(|e| e.to_string())?;
    read(request.send().await).await
}

pub async fn webhooks(endpoints: &Endpoints) -> Result<Vec<WebhookEndpoint>, String> {
    let list: Items<WebhookEndpoint> = read(with_cookie(Request::get(&format!("{}/api/webhooks", endpoints.notifier_api))).send().await).await?;
    Ok(list.items)
}

pub async fn create_webhook(endpoints: &Endpoints, url: &str) -> Result<CreatedEndpoint, String> {
    post_json(endpoints, &format!("{}/api/webhooks", endpoints.notifier_api), serde_json::json!({ "url": url })).await
}

pub async fn delete_webhook(endpoints: &Endpoints, id: &str) -> Result<(), String> {
    let request = changing(endpoints, Request::delete(&format!("{}/api/webhooks/{id}", endpoints.notifier_api)));
    checked(request.send().await).await.map(drop)
}

pub async fn test_webhook(endpoints: &Endpoints, id: &str) -> Result<(), String> {
    let request = changing(endpoints, Request::post(&format!("{}/api/webhooks/{id}/test", endpoints.notifier_api)));
    checked(request.send().await).await.map(drop)
}

pub async fn deliveries(endpoints: &Endpoints) -> Result<Vec<Delivery>, String> {
    let list: Items<Delivery> = read(with_cookie(Request::get(&format!("{}/api/deliveries?limit=50", endpoints.notifier_api))).send().await).await?;
    Ok(list.items)
}

pub async fn page(endpoints: &Endpoints, cursor: Option<&str>) -> Result<Page<SubmissionView>, String> {
    let mut url = format!("{}/api/submissions?limit=20", endpoints.query_api);
    if let Some(cursor) = cursor {
        url.push_str("&cursor=");
        url.push_str(cursor);
    }
    read(with_cookie(Request::get(&url)).send().await).await
}

pub async fn history(endpoints: &Endpoints, id: &str) -> Result<History, String> {
    read(with_cookie(Request::get(&format!("{}/api/submissions/{id}/events", endpoints.query_api))).send().await).await
}

/// Who is signed in; `None` when nobody is.
pub async fn session(endpoints: &Endpoints) -> Result<Option<Session>, String> {
    let response = with_cookie(Request::get(&format!("{}/api/session", endpoints.query_api))).send().await;
    if matches!(&response, Ok(response) if response.status() == 401) {
        return Ok(None);
    }
    read(response).await.map(Some)
}

/// Signs in (`create` false) or signs up and in (`create` true).
pub async fn sign_in(endpoints: &Endpoints, email: &str, password: &str, create: bool) -> Result<Session, String> {
    let credentials = serde_json::json!({ "email": email, "password": password });
    if create {
        // Answered alike whether the address had an account or not: only signing in tells.
        send_json(endpoints, "/api/accounts", credentials.clone()).await?;
    }
    let session = post_json(endpoints, &format!("{}/api/session", endpoints.query_api), credentials).await;
    session.map_err(|message| match create {
        true => format!("{message} If this address had an account already, its owner has been told by email: sign in, or reset the password."),
        false => message,
    })
}

/// Mails the link that confirms the caller's address again.
pub async fn resend_verification(endpoints: &Endpoints) -> Result<(), String> {
    checked(changing(endpoints, Request::post(&format!("{}/api/account/verification", endpoints.query_api))).send().await).await.map(drop)
}

/// Confirms an address with the token of the link mailed to it.
pub async fn verify_email(endpoints: &Endpoints, token: &str) -> Result<(), String> {
    send_json(endpoints, "/api/account/verify", serde_json::json!({ "token": token })).await
}

/// Asks for a link to reset the password of the account with `email`, if there is one.
pub async fn request_reset(endpoints: &Endpoints, email: &str) -> Result<(), String> {
    send_json(endpoints, "/api/password-reset", serde_json::json!({ "email": email })).await
}

/// Sets a new password with the token of a reset link.
pub async fn confirm_reset(endpoints: &Endpoints, token: &str, password: &str, revoke_tokens: bool) -> Result<(), String> {
    let body = serde_json::json!({ "token": token, "password": password, "revoke_tokens": revoke_tokens });
    send_json(endpoints, "/api/password-reset/confirm", body).await
}

/// POSTs `body` to the query API's `path`, reading nothing back but whether it worked.
async fn send_json(endpoints: &Endpoints, path: &str, body: serde_json::Value) -> Result<(), String> {
    let request = changing(endpoints, Request::post(&format!("{}{path}", endpoints.query_api))).json(&body).map_err(|e| e.to_string())?;
    checked(request.send().await).await.map(drop)
}

/// Ends every session of the account, this one too.
pub async fn sign_out_everywhere(endpoints: &Endpoints) -> Result<(), String> {
    checked(changing(endpoints, Request::delete(&format!("{}/api/sessions", endpoints.query_api))).send().await).await.map(drop)
}

/// Deletes the account, the password re-entered; its data is erased.
pub async fn delete_account(endpoints: &Endpoints, password: &str) -> Result<(), String> {
    let request = changing(endpoints, Request::delete(&format!("{}/api/account", endpoints.query_api)))
        .json(&serde_json::json!({ "password": password }))
        .map_err(|e| e.to_string())?;
    checked(request.send().await).await.map(drop)
}

pub async fn sign_out(endpoints: &Endpoints) -> Result<(), String> {
    checked(changing(endpoints, Request::delete(&format!("{}/api/session", endpoints.query_api))).send().await).await.map(drop)
}

/// A page of the caller's tokens, newest first; the next one after `cursor`.
pub async fn tokens(endpoints: &Endpoints, cursor: Option<&str>) -> Result<Page<TokenView>, String> {
    let after = cursor.map(|cursor| format!("?cursor={cursor}")).unwrap_or_default();
    read(with_cookie(Request::get(&format!("{}/api/tokens{after}", endpoints.query_api))).send().await).await
}

pub async fn create_token(endpoints: &Endpoints, name: &str) -> Result<CreatedToken, String> {
    post_json(endpoints, &format!("{}/api/tokens", endpoints.query_api), serde_json::json!({ "name": name })).await
}

pub async fn revoke_token(endpoints: &Endpoints, id: &str) -> Result<(), String> {
    let request = changing(endpoints, Request::delete(&format!("{}/api/tokens/{id}", endpoints.query_api)));
    checked(request.send().await).await.map(drop)
}

/// What the admin dashboard shows, now.
pub async fn overview(endpoints: &Endpoints) -> Result<Overview, String> {
    read(with_cookie(Request::get(&format!("{}/admin/overview", endpoints.admin_api))).send().await).await
}

pub async fn dead_letters(endpoints: &Endpoints) -> Result<DeadLetters, String> {
    read(with_cookie(Request::get(&format!("{}/admin/dead-letters?limit=10", endpoints.admin_api))).send().await).await
}

/// A page of `topic` (`events` or `dead_letters`): from `offset`, or the latest records.
pub async fn records(endpoints: &Endpoints, topic: &str, partition: i32, offset: Option<i64>) -> Result<Records, String> {
    let mut url = format!("{}/admin/records?topic={topic}&partition={partition}&limit=20", endpoints.admin_api);
    if let Some(offset) = offset {
        url.push_str(&format!("&offset={offset}"));
    }
    read(with_cookie(Request::get(&url)).send().await).await
}

pub async fn start_rebuild(endpoints: &Endpoints) -> Result<RebuildStatus, String> {
    read(changing(endpoints, Request::post(&format!("{}/admin/rebuild", endpoints.admin_api))).send().await).await
}
