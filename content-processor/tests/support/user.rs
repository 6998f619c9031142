//! A user of the system as tests sign them up: a browser's session and a script's API token.

use reqwest::{header, StatusCode};
use serde_json::{json, Value};

use super::mail::SmtpServer;
use super::Api;

/// A signed-up user: the session cookie and CSRF token a browser would hold, and a personal
/// API token a script would use.
pub struct User {
    pub email: String,
    pub id: String,
    pub cookie: String,
    pub csrf: String,
    pub token: String,
    /// Sends the token with every request.
    pub http: reqwest::Client,
}

pub const PASSWORD: &str = "a long enough password 1";

impl User {
    pub async fn sign_up(system: &Api, email: &str) -> User {
        let plain = reqwest::Client::new();
        let credentials = json!({"email": email, "password": PASSWORD});
        let signed_up = plain.post(system.url("/api/accounts")).json(&credentials).send().await.unwrap();
        assert_eq!(signed_up.status(), StatusCode::ACCEPTED);
        let response = plain.post(system.url("/api/session")).json(&credentials).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let set_cookie = response.headers()[header::SET_COOKIE].to_str().unwrap().to_owned();
        for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(set_cookie.contains(attribute), "{set_cookie}");
        }
        let cookie = set_cookie.split(';').next().unwrap().to_owned();
        let session: Value = response.json().await.unwrap();
        assert!(session.to_string().find(PASSWORD).is_none(), "the password never comes back: {session}");
        let csrf = session["csrf_token"].as_str().unwrap().to_owned();
        let created: Value = plain
            .post(system.url("/api/tokens"))
            .header(header::COOKIE, &cookie)
            .header("x-csrf-token", &csrf)
            .json(&json!({"name": "script"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = created["token"].as_str().unwrap().to_owned();
        let http = reqwest::Client::builder().default_headers(super::bearer(&token)).build().unwrap();
        let email = session["account"]["email"].as_str().unwrap().to_owned();
        User { email, id: session["account"]["id"].as_str().unwrap().into(), cookie, csrf, token, http }
    }

    pub async fn submit(&self, system: &Api, content: &str) -> Value {
        let response = self.http.post(system.url("/api/submissions")).json(&json!({ "content": content })).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        response.json().await.unwrap()
    }

    pub async fn get(&self, system: &Api, path: &str) -> (StatusCode, Value) {
        let response = self.http.get(system.url(path)).send().await.unwrap();
        (response.status(), response.json().await.unwrap_or(Value::Null))
    }

    /// Follows the verification link mailed to this user, as the UI does: its token, posted.
    pub async fn verify_email(&self, system: &Api, smtp: &SmtpServer) {
        let token = link_tokens(smtp, &self.email, "verify", 1).await.remove(0);
        let response = reqwest::Client::new().post(system.url("/api/account/verify")).json(&json!({ "token": token })).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }
}

/// The tokens of the links for `purpose` (`verify`, `reset`) mailed to `to`, once at least
/// `at_least` came (in no particular order).
pub async fn link_tokens(smtp: &SmtpServer, to: &str, purpose: &str, at_least: usize) -> Vec<String> {
    let marker = format!("#{purpose}=");
    let tokens = |mails: &[super::mail::Mail]| -> Vec<String> {
        mails
            .iter()
            .filter(|m| m.headers.get("to").is_some_and(|address| address == to))
            .filter_map(|m| Some(m.body.split(&marker).nth(1)?.chars().take_while(char::is_ascii_hexdigit).collect()))
            .collect()
    };
    let mails = smtp.wait_for(&format!("{at_least} {purpose} links reach {to}"), |mails| tokens(mails).len() >= at_least).await;
    tokens(&mails)
}
