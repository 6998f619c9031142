//! Talking to the command and query APIs. Every failure comes back as a sentence for the user.

use gloo_net::http::{Request, Response};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::model::{History, Page, SubmissionView};

/// Where the two APIs are. Empty means the origin that served the page (the usual case: the
/// query API or the one-process mode serves the UI). Set through `/ui-config.json`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Endpoints {
    #[serde(default)]
    pub command_api: String,
    #[serde(default)]
    pub query_api: String,
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
}

const UNREACHABLE: &str = "Cannot reach the server. Check your connection and try again.";

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    message: String,
}

/// Turns a non-success answer into words, using the server's own message when it sent one.
async fn explain(response: Response) -> String {
    let status = response.status();
    let retry_after = response.headers().get("retry-after");
    let message = match response.json::<ErrorBody>().await {
        Ok(body) => body.error.message,
        Err(_) => format!("The server answered {status} {}.", response.status_text()),
    };
    match (status, retry_after) {
        (503, Some(seconds)) => format!("{message} (The service is unavailable; try again in {seconds} s.)"),
        (503, None) => format!("{message} (The service is unavailable; try again shortly.)"),
        _ => message,
    }
}

async fn read<T: DeserializeOwned>(response: Result<Response, gloo_net::Error>) -> Result<T, String> {
    let response = response.map_err(|_| UNREACHABLE.to_owned())?;
    if !response.ok() {
        return Err(explain(response).await);
    }
    response.json().await.map_err(|e| format!("The server sent an answer this page cannot read: {e}"))
}

pub async fn submit(endpoints: &Endpoints, content: &str) -> Result<SubmissionView, String> {
    let body = serde_json::json!({ "content": content });
    let request = Request::post(&format!("{}/api/submissions", endpoints.command_api))
        .json(&body)
        .map_err(|e| e.to_string())?;
    read(request.send().await).await
}

pub async fn page(endpoints: &Endpoints, cursor: Option<&str>) -> Result<Page, String> {
    let mut url = format!("{}/api/submissions?limit=20", endpoints.query_api);
    if let Some(cursor) = cursor {
        url.push_str("&cursor=");
        url.push_str(cursor);
    }
    read(Request::get(&url).send().await).await
}

pub async fn history(endpoints: &Endpoints, id: &str) -> Result<History, String> {
    read(Request::get(&format!("{}/api/submissions/{id}/events", endpoints.query_api)).send().await).await
}
