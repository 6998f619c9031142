//! Notification emails: what they say (sent through [`accounts::mail::Mailer`]).

use accounts::mail::Mailer;
use serde_json::Value;

/// Sends the notification `body` (its Standard Webhooks form) to `to`. The delivery id is the
/// Message-ID, so a mail resent after a crash can be recognised.
pub async fn send(mailer: &Mailer, to: &str, delivery_id: &str, body: &Value) -> Result<(), String> {
    let (subject, text) = compose(body);
    mailer.send(to, delivery_id, &subject, text).await
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
