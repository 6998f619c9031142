//! What goes through a user's mailbox, against a real SMTP server: nothing is mailed to an
//! address until its owner follows the link mailed to it; a forgotten password is reset by a
//! mailed link, which ends every session, can revoke every token and lifts a lockout caused by
//! a stranger's guesses; a stranger asking for one learns nothing of who has an account, nor
//! does one signing up with a taken address; signing out everywhere and changing the password
//! end the other sessions.

mod support;

use reqwest::{header, StatusCode};
use serde_json::{json, Value};
use support::mail::{Mail, SmtpServer};
use support::receiver::Receiver;
use support::user::{link_tokens, User, PASSWORD};
use support::{TestDb, TestSystem};

async fn with_mail(smtp: &SmtpServer) -> TestSystem {
    let db = TestDb::create().await;
    let mut config = support::test_config(&db);
    config.smtp_url = Some(smtp.url().into());
    config.allow_private_webhook_targets = true;
    TestSystem::start_with(db, config).await
}

/// A browser's session: its cookie and CSRF token.
struct Session {
    cookie: String,
    csrf: String,
}

async fn sign_in(system: &TestSystem, email: &str, password: &str) -> Result<Session, StatusCode> {
    let response = reqwest::Client::new().post(system.url("/api/session")).json(&json!({"email": email, "password": password})).send().await.unwrap();
    if response.status() != StatusCode::OK {
        return Err(response.status());
    }
    let cookie = response.headers()[header::SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    Ok(Session { cookie, csrf: body["csrf_token"].as_str().unwrap().to_owned() })
}

/// Who `cookie` signs in as: the status of `GET /api/session`, and the account.
async fn session_of(system: &TestSystem, cookie: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new().get(system.url("/api/session")).header(header::COOKIE, cookie).send().await.unwrap();
    (response.status(), response.json().await.unwrap_or(Value::Null))
}

async fn code_of(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["error"]["code"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_mailed_to_an_address_until_its_owner_follows_the_link() {
    let smtp = SmtpServer::start().await;
    let receiver = Receiver::start().await;
    let system = with_mail(&smtp).await;
    let alice = User::sign_up(&system, "alice@example.com").await;
    assert_eq!(session_of(&system, &alice.cookie).await.1["account"]["email_verified"], false);
    let endpoint = alice.http.post(system.url("/api/webhooks")).json(&json!({"url": receiver.url("ok")})).send().await.unwrap();
    assert_eq!(endpoint.status(), StatusCode::CREATED);

    // Unverified: the verdict goes to the webhook, and no email is even queued.
    let first = alice.submit(&system, "judged before verifying 1").await["id"].as_str().unwrap().to_owned();
    receiver.wait_for("the first verdict reaches the webhook", |r| r.iter().any(|r| r.json()["data"]["submission_id"] == first.as_str())).await;
    let (_, deliveries) = alice.get(&system, "/api/deliveries").await;
    assert!(deliveries["items"].as_array().unwrap().iter().all(|d| d["channel"] == "webhook"), "no email queued: {deliveries}");

    // The link, sent at sign-up and once more on request; single-use.
    let resent = alice.http.post(system.url("/api/account/verification")).send().await.unwrap();
    assert_eq!(resent.status(), StatusCode::ACCEPTED);
    let tokens = link_tokens(&smtp, "alice@example.com", "verify", 2).await;
    let verify = |token: &str| reqwest::Client::new().post(system.url("/api/account/verify")).json(&json!({ "token": token })).send();
    assert_eq!(code_of(verify(&"0".repeat(64)).await.unwrap()).await, (StatusCode::BAD_REQUEST, "invalid_token".to_owned()));
    assert_eq!(verify(&tokens[0]).await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(code_of(verify(&tokens[0]).await.unwrap()).await, (StatusCode::BAD_REQUEST, "invalid_token".to_owned()), "a link works once");
    assert_eq!(session_of(&system, &alice.cookie).await.1["account"]["email_verified"], true);
    let again = alice.http.post(system.url("/api/account/verification")).send().await.unwrap();
    assert_eq!(code_of(again).await, (StatusCode::CONFLICT, "already_verified".to_owned()));

    // Verified: the next verdict is mailed.
    let second = alice.submit(&system, "judged once verified 2").await["id"].as_str().unwrap().to_owned();
    let mails = smtp.wait_for("the second verdict is mailed", |m| m.iter().any(|m| m.body.contains(&second))).await;
    assert!(!mails.iter().any(|m| m.body.contains(&first)), "the verdict judged before verifying was never mailed");
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_password_is_reset_by_mail_which_ends_every_session_and_can_revoke_tokens() {
    let smtp = SmtpServer::start().await;
    let system = with_mail(&smtp).await;
    let alice = User::sign_up(&system, "alice@example.com").await;
    let elsewhere = sign_in(&system, "alice@example.com", PASSWORD).await.unwrap();
    // A stranger's guesses lock the account out of signing in, the right password too...
    while sign_in(&system, "alice@example.com", "a stranger's guess").await.err() == Some(StatusCode::UNAUTHORIZED) {}
    assert_eq!(sign_in(&system, "alice@example.com", PASSWORD).await.err(), Some(StatusCode::TOO_MANY_REQUESTS));

    // A stranger asking learns nothing: the same answer for an address with no account.
    let ask = |email: &str| reqwest::Client::new().post(system.url("/api/password-reset")).json(&json!({ "email": email })).send();
    let (for_nobody, for_alice) = (ask("nobody@example.com").await.unwrap(), ask("alice@example.com").await.unwrap());
    assert_eq!((for_nobody.status(), for_alice.status()), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(for_nobody.json::<Value>().await.unwrap(), for_alice.json::<Value>().await.unwrap());
    assert_eq!(ask("alice@example.com").await.unwrap().status(), StatusCode::ACCEPTED, "a second link");
    let mut tokens = link_tokens(&smtp, "alice@example.com", "reset", 2).await;
    let (token, other) = (tokens.remove(0), tokens.remove(0));
    assert!(smtp.messages().iter().all(|m| m.headers["to"] != "nobody@example.com"), "nothing is mailed to an address with no account");

    let confirm = |body: Value| reqwest::Client::new().post(system.url("/api/password-reset/confirm")).json(&body).send();
    let short = confirm(json!({"token": token, "password": "short"})).await.unwrap();
    assert_eq!(code_of(short).await, (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body".to_owned()));
    let new_password = "a brand new password 2";
    let reset = confirm(json!({"token": token, "password": new_password, "revoke_tokens": true})).await.unwrap();
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    let reused = confirm(json!({"token": token, "password": "yet another password 3"})).await.unwrap();
    assert_eq!(code_of(reused).await, (StatusCode::BAD_REQUEST, "invalid_token".to_owned()), "a link works once");
    let other = confirm(json!({"token": other, "password": "yet another password 3"})).await.unwrap();
    assert_eq!(code_of(other).await, (StatusCode::BAD_REQUEST, "invalid_token".to_owned()), "a reset ends every other link");

    // Every session ended, every token revoked; only the new password signs in (...and the
    // reset was the owner's way back from the stranger's lockout).
    for cookie in [&alice.cookie, &elsewhere.cookie] {
        assert_eq!(session_of(&system, cookie).await.0, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(alice.get(&system, "/api/session").await.0, StatusCode::UNAUTHORIZED, "the token is revoked");
    assert_eq!(sign_in(&system, "alice@example.com", PASSWORD).await.err(), Some(StatusCode::UNAUTHORIZED));
    let signed_in = sign_in(&system, "alice@example.com", new_password).await.unwrap();
    assert_eq!(session_of(&system, &signed_in.cookie).await.1["account"]["email_verified"], true, "the link reached the address");
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_everywhere_and_changing_the_password_end_the_other_sessions() {
    let system = TestSystem::start().await;
    let alice = User::sign_up(&system, "alice@example.com").await;
    let (other, this) =
        (sign_in(&system, "alice@example.com", PASSWORD).await.unwrap(), sign_in(&system, "alice@example.com", PASSWORD).await.unwrap());

    // A token is not a session: signing out with one says so instead of pretending.
    let with_token = alice.http.delete(system.url("/api/session")).send().await.unwrap();
    assert_eq!(code_of(with_token).await, (StatusCode::BAD_REQUEST, "not_a_session".to_owned()));

    let change = |current: &str| {
        reqwest::Client::new()
            .put(system.url("/api/account/password"))
            .header(header::COOKIE, &this.cookie)
            .header("x-csrf-token", &this.csrf)
            .json(&json!({"current_password": current, "new_password": "a changed password 4"}))
            .send()
    };
    assert_eq!(code_of(change("not the password").await.unwrap()).await, (StatusCode::UNAUTHORIZED, "invalid_credentials".to_owned()));
    assert_eq!(change(PASSWORD).await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(session_of(&system, &other.cookie).await.0, StatusCode::UNAUTHORIZED, "another session ended");
    assert_eq!(session_of(&system, &alice.cookie).await.0, StatusCode::UNAUTHORIZED, "the sign-up's session ended");
    assert_eq!(session_of(&system, &this.cookie).await.0, StatusCode::OK, "the one that changed it stays");
    assert_eq!(alice.get(&system, "/api/session").await.0, StatusCode::OK, "tokens stay unless revoked");

    let everywhere = reqwest::Client::new()
        .delete(system.url("/api/sessions"))
        .header(header::COOKIE, &this.cookie)
        .header("x-csrf-token", &this.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(everywhere.status(), StatusCode::NO_CONTENT);
    assert_eq!(session_of(&system, &this.cookie).await.0, StatusCode::UNAUTHORIZED);

    // Without an SMTP server nothing can be mailed, and the answer says so.
    let reset = reqwest::Client::new().post(system.url("/api/password-reset")).json(&json!({"email": "alice@example.com"})).send().await.unwrap();
    assert_eq!(code_of(reset).await, (StatusCode::CONFLICT, "mail_unavailable".to_owned()));
    system.stop().await;
}

/// A stranger signs up with someone else's address (never verified), makes an API token and a
/// webhook endpoint to watch what the account gets. The address's owner takes the account over
/// with a password reset, without asking for the tokens to be revoked: the stranger's token
/// and endpoint die all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_by_the_addresss_owner_voids_what_a_stranger_set_up_with_it() {
    let smtp = SmtpServer::start().await;
    let receiver = Receiver::start().await;
    let system = with_mail(&smtp).await;
    let stranger = User::sign_up(&system, "victim@example.com").await;
    let created = stranger.http.post(system.url("/api/webhooks")).json(&json!({"url": receiver.url("spy")})).send().await.unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);

    let asked = reqwest::Client::new().post(system.url("/api/password-reset")).json(&json!({"email": "victim@example.com"})).send().await.unwrap();
    assert_eq!(asked.status(), StatusCode::ACCEPTED);
    let token = link_tokens(&smtp, "victim@example.com", "reset", 1).await.remove(0);
    let confirm = json!({"token": token, "password": "the owner's own password 5"});
    let reset = reqwest::Client::new().post(system.url("/api/password-reset/confirm")).json(&confirm).send().await.unwrap();
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);

    assert_eq!(stranger.get(&system, "/api/session").await.0, StatusCode::UNAUTHORIZED, "the stranger's token is revoked");
    let owner = sign_in(&system, "victim@example.com", "the owner's own password 5").await.unwrap();
    let endpoints: Value =
        reqwest::Client::new().get(system.url("/api/webhooks")).header(header::COOKIE, &owner.cookie).send().await.unwrap().json().await.unwrap();
    assert_eq!(endpoints["items"], json!([]), "the stranger's endpoint is gone");
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_up_with_a_taken_address_tells_its_owner_and_the_stranger_nothing() {
    let smtp = SmtpServer::start().await;
    let system = with_mail(&smtp).await;
    let alice = User::sign_up(&system, "alice@example.com").await;
    let sign_up = |email: &str, password: &str| {
        reqwest::Client::new().post(system.url("/api/accounts")).json(&json!({"email": email, "password": password})).send()
    };

    // A free address and a taken one get the same answer, with no session either way.
    let (stranger_password, free) = ("a stranger's password 2", "nobody@example.com");
    let answers = [sign_up(free, stranger_password).await.unwrap(), sign_up("ALICE@example.com", stranger_password).await.unwrap()];
    assert!(answers.iter().all(|answer| answer.status() == StatusCode::ACCEPTED && !answer.headers().contains_key(header::SET_COOKIE)));
    let [free_answer, taken_answer] = answers;
    assert_eq!(free_answer.text().await.unwrap(), taken_answer.text().await.unwrap(), "the body does not tell them apart");

    // The owner is told, and keeps the account as it was.
    let to_alice = |m: &&Mail| m.headers.get("to").is_some_and(|to| to == "alice@example.com");
    let mails = smtp
        .wait_for("the owner hears of the attempt", |m| m.iter().filter(to_alice).any(|m| m.headers["subject"].contains("tried to sign up")))
        .await;
    assert!(mails.iter().filter(to_alice).all(|m| !m.body.contains(stranger_password)));
    assert_eq!(sign_in(&system, "alice@example.com", stranger_password).await.err(), Some(StatusCode::UNAUTHORIZED));
    assert!(sign_in(&system, "alice@example.com", PASSWORD).await.is_ok());
    assert_eq!(session_of(&system, &alice.cookie).await.0, StatusCode::OK, "the owner's session lives on");
    // The free address has an account now, waiting for its owner to confirm it.
    link_tokens(&smtp, free, "verify", 1).await;
    assert!(sign_in(&system, free, stranger_password).await.is_ok());
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_in_flight_while_the_password_changes_gets_no_session() {
    let system = TestSystem::start().await;
    let alice = User::sign_up(&system, "alice@example.com").await;
    let pool = system.db.pool().await;
    // A change of password held open between its writes and its commit, as a reset's or a
    // change's transaction is: the new hash written, every session ended.
    let mut change = pool.begin().await.unwrap();
    sqlx::query("UPDATE accounts.accounts SET password_hash = 'replaced' WHERE id = $1::uuid").bind(&alice.id).execute(&mut *change).await.unwrap();
    sqlx::query("DELETE FROM accounts.sessions WHERE account_id = $1::uuid").bind(&alice.id).execute(&mut *change).await.unwrap();

    // A sign-in with the password as it was until now: it has either answered, or waits for the change.
    let url = system.url("/api/session");
    let sign_in =
        tokio::spawn(async move { reqwest::Client::new().post(url).json(&json!({"email": "alice@example.com", "password": PASSWORD})).send().await });
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'";
    support::eventually("the sign-in answered or waits for the change", || async {
        (sign_in.is_finished() || sqlx::query_scalar::<_, i64>(waiting).fetch_one(&pool).await.unwrap() > 0).then_some(())
    })
    .await;
    change.commit().await.unwrap();

    let answer = sign_in.await.unwrap().unwrap();
    let status = answer.status();
    let cookie = answer.headers().get(header::SET_COOKIE).map(|c| c.to_str().unwrap().split(';').next().unwrap().to_owned());
    if let Some(cookie) = cookie {
        assert_eq!(session_of(&system, &cookie).await.0, StatusCode::UNAUTHORIZED, "a session made with the old password outlived the change");
    }
    assert_eq!(code_of(answer).await, (StatusCode::UNAUTHORIZED, "invalid_credentials".to_owned()), "{status}");
    pool.close().await;
    system.stop().await;
}
