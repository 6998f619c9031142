//! Notification emails over SMTP (`lettre`).

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::Value;

#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// A mailer sending through `smtp_url` (smtp://, smtps://, with credentials if any).
    pub fn new(smtp_url: &str, from: &str, timeout: std::time::Duration) -> anyhow::Result<Self> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            // The error is lettre's, which never repeats the URL (it may hold a password).
            .map_err(|error| anyhow::anyhow!("SMTP_URL is not usable: {error}"))?
            .timeout(Some(timeout))
            .build();
        let from = from.parse().map_err(|error| anyhow::anyhow!("NOTIFIER_MAIL_FROM {from:?} is not an address: {error}"))?;
        Ok(Mailer { transport, from })
    }

    /// Sends the notification `body` (its Standard Webhooks form) to `to`. The delivery id is
    /// the Message-ID, so a mail resent after a crash can be recognised.
    pub async fn send(&self, to: &str, delivery_id: &str, body: &Value) -> Result<(), String> {
        let to: Mailbox = to.parse().map_err(|error| format!("{to:?} is not an address: {error}"))?;
        let (subject, text) = compose(body);
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(format!("<{delivery_id}@content-processor>")))
            .header(ContentType::TEXT_PLAIN)
            .body(text)
            .map_err(|error| format!("cannot build the message: {error}"))?;
        self.transport.send(message).await.map(drop).map_err(|error| error.to_string())
    }
}

/// Subject and text of the email for a notification.
fn compose(body: &Value) -> (String, String) {
    let data = &body["data"];
    match body["type"].as_str() {
        Some("batch.completed") => (
            format!("Your batch of {} is judged: {} passed, {} failed", data["size"], data["passed"], data["failed"]),
            format!(
                "Every submission of batch {} has its verdict.\n\nPassed: {}\nFailed: {}\n",
                data["batch_id"].as_str().unwrap_or_default(),
                data["passed"],
                data["failed"]
            ),
        ),
        Some("submission.judged") => {
            let status = data["status"].as_str().unwrap_or_default();
            let reasons: Vec<&str> = data["reasons"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            let why = if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join(", ")) };
            (
                format!("Your submission {}{why}", status.to_ascii_lowercase()),
                // Not the submitted text: whoever signs up with someone else's address could
                // otherwise have this service mail them any text they chose.
                format!(
                    "Submission {} is {status}{why}.\n\nSign in to content-processor to see it.\n",
                    data["submission_id"].as_str().unwrap_or_default(),
                ),
            )
        }
        _ => ("A message from content-processor".to_owned(), body.to_string()),
    }
}
