//! Webhook requests, signed per the Standard Webhooks specification.
//!
//! Each request carries `webhook-id` (the delivery's id, the same on every retry, so receivers
//! can drop duplicates), `webhook-timestamp` (seconds, of this attempt) and
//! `webhook-signature` (`v1,` and the base64 HMAC-SHA256 of `id.timestamp.body` under the
//! endpoint's secret), computed by the `standardwebhooks` crate.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;

use crate::ssrf;

/// Prefix of endpoint secrets, as the specification writes them.
pub const SECRET_PREFIX: &str = "whsec_";

/// A new endpoint secret: 32 random bytes, base64, with the prefix.
pub fn new_secret() -> String {
    format!("{SECRET_PREFIX}{}", base64::engine::general_purpose::STANDARD.encode(accounts::secret::random_bytes()))
}

/// What one attempt came to.
#[derive(Debug)]
pub struct Outcome {
    pub status_code: Option<u16>,
    /// Why the attempt failed; `None` when it was delivered.
    pub error: Option<String>,
    /// The delivery can never succeed (no endpoint, nowhere to send it): trying again later
    /// would only fail the same way, so it is failed at once.
    pub permanent: bool,
}

impl Outcome {
    pub fn delivered(status_code: Option<u16>) -> Outcome {
        Outcome { status_code, error: None, permanent: false }
    }

    /// A failure that may pass on a later attempt.
    pub fn failed(status_code: Option<u16>, error: impl Into<String>) -> Outcome {
        Outcome { status_code, error: Some(error.into()), permanent: false }
    }

    /// A failure no later attempt can change.
    pub fn refused(error: impl Into<String>) -> Outcome {
        Outcome { status_code: None, error: Some(error.into()), permanent: true }
    }
}

#[derive(Clone)]
pub struct WebhookSender {
    client: reqwest::Client,
    allow_private: bool,
}

impl WebhookSender {
    pub fn new(timeout: Duration, allow_private: bool) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            // A redirect could lead anywhere, internal addresses included.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy from the environment (HTTP_PROXY...) would be asked to connect, and the
            // resolver that keeps requests off internal addresses would never be consulted.
            .no_proxy()
            .user_agent(concat!("content-processor-webhooks/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(ssrf::PublicOnlyResolver));
        }
        Ok(WebhookSender { client: builder.build()?, allow_private })
    }

    /// POSTs `body` to `url`, signed with `secret`. Delivered on any 2xx answer.
    pub async fn send(&self, url: &str, secret: &str, webhook_id: &str, body: &[u8]) -> Outcome {
        let url = match reqwest::Url::parse(url) {
            Ok(url) => url,
            Err(error) => return Outcome::refused(format!("invalid URL: {error}")),
        };
        // An address in the URL itself is not looked up, so the resolver cannot refuse it.
        if let Some(ip) = url.host_str().and_then(|h| h.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok()) {
            if !self.allow_private && !ssrf::is_public(ip) {
                return Outcome::refused(format!("{ip} is not a public address"));
            }
        }
        let timestamp = chrono::Utc::now().timestamp();
        let signature = match standardwebhooks::Webhook::new(secret).and_then(|signer| signer.sign(webhook_id, timestamp, body)) {
            Ok(signature) => signature,
            Err(error) => return Outcome::refused(format!("cannot sign: {error}")),
        };
        let request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_vec());
        match request.send().await {
            Ok(response) if response.status().is_success() => Outcome::delivered(Some(response.status().as_u16())),
            Ok(response) => {
                let status = response.status();
                Outcome::failed(Some(status.as_u16()), format!("answered {status}"))
            }
            Err(error) => Outcome::failed(None, describe(&error)),
        }
    }
}

/// The error with its causes (reqwest's own message hides why a connection failed).
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_proxy_in_the_environment_is_never_asked() {
        let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = proxy.local_addr().unwrap();
        // nextest runs each test in a process of its own, so these reach no other test.
        for variable in ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] {
            std::env::set_var(variable, format!("http://{address}"));
        }
        let sender = WebhookSender::new(Duration::from_millis(500), false).unwrap();
        // A public address: the guard lets it through, to be connected to directly.
        sender.send("http://93.184.216.34/hook", &new_secret(), "msg_1", b"{}").await;
        let asked = tokio::time::timeout(Duration::from_millis(100), proxy.accept()).await.is_ok();
        assert!(!asked, "the webhook went through the environment's proxy, around the guard");
    }

    #[tokio::test]
    async fn a_send_to_an_internal_address_is_refused_before_any_connection() {
        let sender = WebhookSender::new(Duration::from_secs(2), false).unwrap();
        let secret = new_secret();
        for url in ["http://127.0.0.1:9/hook", "http://[::1]:9/hook", "http://localhost:9/hook"] {
            let outcome = sender.send(url, &secret, "msg_1", b"{}").await;
            let error = outcome.error.unwrap_or_default();
            assert!(
                outcome.status_code.is_none() && (error.contains("not a public address") || error.contains("no public address")),
                "{url}: {error}"
            );
        }
    }

    #[test]
    fn secrets_are_random_and_read_by_the_standard_library() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert!(a.starts_with(SECRET_PREFIX));
        assert!(standardwebhooks::Webhook::new(&a).is_ok());
    }
}
