//! The UI in a real browser (Debian's Chromium through chromedriver) against the running system
//! with the real broker and database. Alice signs up and submits valid and invalid content and
//! watches the statuses change without a reload, while a second page signed in as her sees the
//! same submissions appear live. Bob, on a phone-sized screen, signs up beside them: neither
//! ever sees the other's submissions, live or after a reload. Alice creates an API token in the
//! UI, uses it, revokes it. She resubmits a failed text edited, submits a batch from a file and
//! watches its counts, and registers a webhook, sends it a test event and sees the delivery.
//! Saves screenshots to `artifacts/ui-e2e.png`, `ui-phone.png`, `ui-batch.png` and
//! `ui-notifications.png`. Carol meets what reaches her through her mailbox: the banner until
//! her address is confirmed, the link that confirms it, and a forgotten password reset by a
//! mailed link.

mod support;

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use futures_util::FutureExt;
use serde_json::{json, Value};
use support::browser::{artifacts, built_ui, close_all, sign_in, submit, Chromedriver, Screen};
use support::mail::SmtpServer;
use support::user::link_tokens;
use support::{TestDb, TestSystem, DEADLINE};

/// Records, in the page, every status each submission has shown, in order; and marks the page so
/// a reload would be noticed.
const WATCH_STATUSES: &str = r#"
    window.__notReloaded = true;
    window.__seen = {};
    const record = () => document.querySelectorAll('li.submission').forEach(li => {
        const seen = (window.__seen[li.dataset.id] ||= []);
        if (seen[seen.length - 1] !== li.dataset.status) seen.push(li.dataset.status);
    });
    new MutationObserver(record).observe(document.body, {subtree: true, childList: true, attributes: true, attributeFilter: ['data-status']});
    record();
"#;

async fn seen(client: &Client) -> Value {
    client.execute("return [window.__seen, window.__notReloaded === true];", vec![]).await.unwrap()
}

/// Waits until the page has shown the submission with `content` reaching `status`; returns the
/// statuses it showed on the way.
async fn wait_for_status(client: &Client, content: &str, status: &str) -> Vec<String> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let found = client
            .execute(
                "const li = [...document.querySelectorAll('li.submission')].find(li => li.querySelector('.content').textContent === arguments[0]);
                 return li ? [li.dataset.id, li.dataset.status] : null;",
                vec![json!(content)],
            )
            .await
            .unwrap();
        if let Some([id, shown]) = found.as_array().map(|a| [a[0].clone(), a[1].clone()]) {
            if shown == status {
                let all = seen(client).await;
                assert_eq!(all[1], true, "the page was not reloaded");
                return serde_json::from_value(all[0][id.as_str().unwrap()].clone()).unwrap_or_default();
            }
        }
        assert!(Instant::now() < deadline, "the page showed {content:?} as {status} in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The names of the tokens the page lists, newest first, once it lists `count` of them.
async fn shown_tokens(client: &Client, count: usize) -> Vec<String> {
    support::eventually(&format!("the page lists {count} tokens"), || async {
        let shown = client.execute("return [...document.querySelectorAll('li.token-item .name')].map(n => n.textContent);", vec![]).await.ok()?;
        let names: Vec<String> = serde_json::from_value(shown).ok()?;
        (names.len() == count).then_some(names)
    })
    .await
}

/// The contents the page lists.
async fn listed(client: &Client) -> Vec<String> {
    let shown = client.execute("return [...document.querySelectorAll('li.submission .content')].map(c => c.textContent);", vec![]).await.unwrap();
    serde_json::from_value(shown).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_watch_submissions_change_status_live_in_a_real_browser() {
    let db = TestDb::create().await;
    let mut config = support::test_config(&db);
    config.ui_dir = built_ui();
    config.processing_delay_ms = 700; // long enough for every state to be on screen
    config.allow_private_webhook_targets = true; // the webhook receiver is on loopback
    let mut system = TestSystem::start_with(db, config).await;

    let driver = Chromedriver::start().await;
    let page = driver.open(&system.base, Screen::Desktop).await;
    let other = driver.open(&system.base, Screen::Desktop).await;
    let bob = driver.open(&system.base, Screen::Phone).await;
    let outcome = AssertUnwindSafe(scenario(&mut system, &page, &other, &bob)).catch_unwind().await;
    close_all([page, other, bob], outcome).await;
    system.stop().await;
}

/// Alice on two pages, Bob on a phone. Alice types and submits on the first, both her pages
/// watch; Bob sees none of it.
async fn scenario(system: &mut TestSystem, page: &Client, other: &Client, bob: &Client) {
    sign_in(page, "alice@example.com", "alice's password 1", true).await;
    sign_in(other, "alice@example.com", "alice's password 1", false).await;
    sign_in(bob, "bob@example.com", "bob's password 1", true).await;
    for client in [page, other, bob] {
        client.execute(WATCH_STATUSES, vec![]).await.unwrap();
    }

    let valid = "my first valid text 42";
    submit(page, valid).await;
    let shown = wait_for_status(page, valid, "PASSED").await;
    assert_eq!(shown, ["PENDING", "PROCESSING", "PASSED"], "PENDING, then PROCESSING, then PASSED, live");

    let invalid = "nope";
    submit(page, invalid).await;
    let shown = wait_for_status(page, invalid, "FAILED").await;
    assert_eq!(shown.first().map(String::as_str), Some("PENDING"));
    let reasons = page.find(Locator::Css("li.submission[data-status=FAILED] .reasons")).await.unwrap().text().await.unwrap();
    assert!(reasons.contains("too short") && reasons.contains("no digit"), "{reasons}");

    // Alice's other page, open all along, saw both appear and change, without a reload.
    assert_eq!(wait_for_status(other, valid, "PASSED").await.last().map(String::as_str), Some("PASSED"));
    let other_shown = wait_for_status(other, invalid, "FAILED").await;
    assert!(other_shown.contains(&"PENDING".to_owned()) || other_shown.contains(&"PROCESSING".to_owned()), "{other_shown:?}");

    // Bob's submission reaches his page only; Alice's never reached his.
    let bobs = "bob's own text 99";
    submit(bob, bobs).await;
    wait_for_status(bob, bobs, "PASSED").await;
    assert_eq!(listed(bob).await, [bobs], "Bob sees only his own, live");
    for alice in [page, other] {
        assert!(!listed(alice).await.contains(&bobs.to_owned()), "Alice never sees Bob's");
    }
    // On a phone-sized screen the text gets the width of the screen, not a sliver of it.
    let artifacts = artifacts();
    std::fs::write(artifacts.join("ui-phone.png"), bob.screenshot().await.unwrap()).unwrap();
    let widths = bob
        .execute("return [window.innerWidth, document.querySelector('li.submission .content').getBoundingClientRect().width];", vec![])
        .await
        .unwrap();
    let (viewport, text) = (widths[0].as_f64().unwrap(), widths[1].as_f64().unwrap());
    assert!(viewport <= 400.0 && text > viewport * 0.6, "the text is {text} px wide on a {viewport} px screen");

    // Text is shown as text, never as markup.
    let markup = "<img src=x onerror=\"window.__xss=1\"> 12345";
    submit(page, markup).await;
    wait_for_status(page, markup, "PASSED").await;
    assert_eq!(page.execute("return window.__xss === undefined;", vec![]).await.unwrap(), true);

    // The broker goes away: the user is told in words, and what they typed stays.
    system.kafka_node().kill(1).await.unwrap();
    let during_outage = "typed during the outage 7";
    submit(page, during_outage).await;
    let error = page.wait().at_most(DEADLINE).for_element(Locator::Css("form.submit-form p.error")).await.unwrap();
    let message = error.text().await.unwrap();
    assert!(message.contains("unavailable") && message.contains("try again"), "{message}");
    let kept = page.find(Locator::Css("textarea#content")).await.unwrap().prop("value").await.unwrap();
    assert_eq!(kept.as_deref(), Some(during_outage));
    system.kafka_node().restart(1).await.unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        page.find(Locator::Css("form.submit-form button[type=submit]")).await.unwrap().click().await.unwrap();
        // The text area is disabled while sending; wait for the answer.
        tokio::time::sleep(Duration::from_millis(100)).await;
        page.wait().at_most(DEADLINE).for_element(Locator::Css("textarea#content:not([disabled])")).await.unwrap();
        let failed = page.execute("return document.querySelector('form.submit-form p.error') !== null;", vec![]).await.unwrap();
        if failed == false {
            break;
        }
        assert!(Instant::now() < deadline, "the retry is accepted once the broker is back");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    wait_for_status(page, during_outage, "PASSED").await;

    // The detail view shows the timeline.
    page.find(Locator::Css("li.submission[data-status=FAILED] button.open")).await.unwrap().click().await.unwrap();
    let timeline = page.wait().for_element(Locator::Css("ol.timeline li:nth-child(3)")).await.unwrap();
    assert!(timeline.text().await.unwrap().contains("SubmissionFailed"));

    std::fs::write(artifacts.join("ui-e2e.png"), page.screenshot().await.unwrap()).unwrap();

    // After a reload each still sees only their own.
    for client in [other, bob] {
        client.refresh().await.unwrap();
        client.wait().at_most(DEADLINE).for_element(Locator::Css("ol.submissions")).await.unwrap();
    }
    assert_eq!(listed(bob).await, [bobs]);
    let alices = listed(other).await;
    assert!(alices.contains(&valid.to_owned()) && !alices.contains(&bobs.to_owned()), "{alices:?}");

    // Alice makes an API token in the UI; a script uses it, sees her submissions only, and is
    // refused once she revokes it.
    page.find(Locator::Css("button.show-tokens")).await.unwrap().click().await.unwrap();
    page.wait().for_element(Locator::Css("input#token-name")).await.unwrap().send_keys("my script").await.unwrap();
    page.find(Locator::Css("form.new-token button[type=submit]")).await.unwrap().click().await.unwrap();
    let token = page.wait().at_most(DEADLINE).for_element(Locator::Css("code.token")).await.unwrap().text().await.unwrap();
    let script = reqwest::Client::builder().default_headers(support::bearer(&token)).build().unwrap();
    let mine: Value = script.get(system.url("/api/submissions")).send().await.unwrap().json().await.unwrap();
    let contents: Vec<&str> = mine["items"].as_array().unwrap().iter().map(|item| item["content"].as_str().unwrap()).collect();
    assert!(contents.contains(&valid) && !contents.contains(&bobs), "{contents:?}");
    // The script makes 50 more: the list shows a page of the newest, and older ones on demand.
    for i in 0..50 {
        let made = script.post(system.url("/api/tokens")).json(&json!({"name": format!("job {i}")})).send().await.unwrap();
        assert_eq!(made.status(), reqwest::StatusCode::CREATED);
    }
    page.find(Locator::Css("input#token-name")).await.unwrap().send_keys("newest").await.unwrap();
    page.find(Locator::Css("form.new-token button[type=submit]")).await.unwrap().click().await.unwrap();
    assert_eq!(shown_tokens(page, 50).await.first().map(String::as_str), Some("newest"));
    page.wait().at_most(DEADLINE).for_element(Locator::Css("button.show-older")).await.unwrap().click().await.unwrap();
    assert_eq!(shown_tokens(page, 52).await.last().map(String::as_str), Some("my script"), "the oldest, on the second page");
    assert!(page.find(Locator::Css("button.show-older")).await.is_err(), "no more pages");
    page.execute(
        "[...document.querySelectorAll('li.token-item')].find(li => li.querySelector('.name').textContent === 'my script').querySelector('button.revoke').click();",
        vec![],
    )
    .await
    .unwrap();
    page.wait().at_most(DEADLINE).for_element(Locator::Css("button.show-older")).await.unwrap().click().await.unwrap();
    page.wait()
        .at_most(DEADLINE)
        .for_element(Locator::XPath("//li[@class='token-item'][span[@class='name']='my script']/span[@class='revoked']"))
        .await
        .unwrap();
    let refused = script.get(system.url("/api/submissions")).send().await.unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::UNAUTHORIZED);

    more_than_one_at_a_time(page, &artifacts).await;

    // Signing out ends the session on the server: a reload shows the sign-in form again.
    other.find(Locator::Css("button.sign-out")).await.unwrap().click().await.unwrap();
    other.wait().at_most(DEADLINE).for_element(Locator::Css("form.auth-form")).await.unwrap();
    other.refresh().await.unwrap();
    other.wait().at_most(DEADLINE).for_element(Locator::Css("form.auth-form")).await.unwrap();

    // Bob downloads his data, then deletes his account: signed out, and he cannot sign in again.
    bob.find(Locator::Css("button.show-your-data")).await.unwrap().click().await.unwrap();
    let export = bob.wait().at_most(DEADLINE).for_element(Locator::Css("a.export")).await.unwrap();
    assert!(export.attr("href").await.unwrap().unwrap().ends_with("/api/account/export"));
    bob.find(Locator::Css("input#delete-password")).await.unwrap().send_keys("not his password").await.unwrap();
    bob.find(Locator::Css("form.delete-account button[type=submit]")).await.unwrap().click().await.unwrap();
    bob.wait().at_most(DEADLINE).for_element(Locator::Css("form.delete-account p.error")).await.unwrap();
    let field = bob.find(Locator::Css("input#delete-password")).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys("bob's password 1").await.unwrap();
    bob.find(Locator::Css("form.delete-account button[type=submit]")).await.unwrap().click().await.unwrap();
    bob.wait().at_most(DEADLINE).for_element(Locator::Css("form.auth-form")).await.unwrap();
    let signed_in = reqwest::Client::new()
        .post(system.url("/api/session"))
        .json(&json!({"email": "bob@example.com", "password": "bob's password 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), reqwest::StatusCode::UNAUTHORIZED);
}

/// Resubmitting a failed text, a batch from a file, and notifications, on Alice's page.
async fn more_than_one_at_a_time(page: &Client, artifacts: &std::path::Path) {
    page.find(Locator::Css("button.show-tokens")).await.unwrap().click().await.unwrap();
    page.wait().at_most(DEADLINE).for_element(Locator::Css("ol.submissions")).await.unwrap();

    // The failed text, edited and resubmitted: both show the link.
    page.find(Locator::Css("li.submission[data-status=FAILED] button.open")).await.unwrap().click().await.unwrap();
    let area = page.wait().at_most(DEADLINE).for_element(Locator::Css("textarea#resubmit-content")).await.unwrap();
    assert_eq!(area.prop("value").await.unwrap().as_deref(), Some("nope"), "the failed text, to edit");
    area.send_keys(" longer now 1").await.unwrap();
    page.find(Locator::Css("form.resubmit button[type=submit]")).await.unwrap().click().await.unwrap();
    let link = page.wait().at_most(DEADLINE).for_element(Locator::Css("p.replaced-by code")).await.unwrap().text().await.unwrap();
    wait_for_status(page, "nope longer now 1", "PASSED").await;
    let replacement = page
        .execute("return [...document.querySelectorAll('li.submission')].find(li => li.querySelector('.content').textContent === 'nope longer now 1').dataset.id;", vec![])
        .await
        .unwrap();
    assert_eq!(replacement.as_str(), Some(link.as_str()), "the original names its replacement");
    page.find(Locator::Css(&format!("li.submission[data-id='{link}'] button.open"))).await.unwrap().click().await.unwrap();
    page.wait().at_most(DEADLINE).for_element(Locator::Css("p.replaces code")).await.unwrap();

    // A batch from a text file, one item per line, followed live to its last verdict.
    let dir = support::scratch_dir("batch-file");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("items.txt");
    std::fs::write(&file, "batch item one 12345\nshort\n\nbatch item three 67890\n").unwrap();
    page.find(Locator::Css("input#batch-file")).await.unwrap().send_keys(file.to_str().unwrap()).await.unwrap();
    let button = page
        .wait()
        .at_most(DEADLINE)
        .for_element(Locator::XPath("//form[@class='batch-form']//button[contains(., 'Submit 3 as a batch')]"))
        .await
        .unwrap();
    button.click().await.unwrap();
    let done = page.wait().at_most(DEADLINE).for_element(Locator::Css(".batch-progress[data-complete=true] p.counts")).await.unwrap();
    assert_eq!(done.text().await.unwrap(), "3 of 3 judged: 2 passed, 1 failed, 0 processing, 0 pending");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::write(artifacts.join("ui-batch.png"), page.screenshot().await.unwrap()).unwrap();

    // Notifications: a webhook endpoint, its secret once, a test event delivered and shown.
    let receiver = support::receiver::Receiver::start().await;
    page.find(Locator::Css("button.show-notifications")).await.unwrap().click().await.unwrap();
    let url = page.wait().at_most(DEADLINE).for_element(Locator::Css("input#webhook-url")).await.unwrap();
    url.send_keys(&receiver.url("ok")).await.unwrap();
    page.find(Locator::Css("form.new-webhook button[type=submit]")).await.unwrap().click().await.unwrap();
    let secret = page.wait().at_most(DEADLINE).for_element(Locator::Css("code.secret")).await.unwrap().text().await.unwrap();
    assert!(secret.starts_with("whsec_"), "{secret}");
    page.wait().at_most(DEADLINE).for_element(Locator::Css("li.webhook button.send-test")).await.unwrap().click().await.unwrap();
    receiver.wait_for("the test event arrives", |r| !r.is_empty()).await;
    let deadline = Instant::now() + DEADLINE;
    while page.find(Locator::Css("li.delivery[data-state=delivered] .status-code")).await.is_err() {
        assert!(Instant::now() < deadline, "the delivery shows as delivered");
        page.find(Locator::Css("button.refresh")).await.unwrap().click().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let shown = page.find(Locator::Css("li.delivery[data-state=delivered]")).await.unwrap().text().await.unwrap();
    assert!(shown.contains("webhook.test") && shown.contains("HTTP 204"), "{shown}");
    // Email off, and it stays off after a reload.
    page.find(Locator::Css("input.channel-email")).await.unwrap().click().await.unwrap();
    page.wait().at_most(DEADLINE).for_element(Locator::Css("input.channel-email:not(:checked)")).await.unwrap();
    std::fs::write(artifacts.join("ui-notifications.png"), page.screenshot().await.unwrap()).unwrap();
    page.refresh().await.unwrap();
    page.wait().at_most(DEADLINE).for_element(Locator::Css("button.show-notifications")).await.unwrap().click().await.unwrap();
    page.wait().at_most(DEADLINE).for_element(Locator::Css("input.channel-email:not(:checked)")).await.unwrap();
    page.find(Locator::Css("button.show-notifications")).await.unwrap().click().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_links_mailed_to_a_user_work_in_a_real_browser() {
    let smtp = SmtpServer::start().await;
    let db = TestDb::create().await;
    let mut config = support::test_config(&db);
    config.ui_dir = built_ui();
    config.smtp_url = Some(smtp.url().into());
    let system = TestSystem::start_with(db, config).await;
    let driver = Chromedriver::start().await;
    let page = driver.open(&system.base, Screen::Desktop).await;
    let outcome = AssertUnwindSafe(mailbox(&system, &smtp, &driver, &page)).catch_unwind().await;
    close_all([page], outcome).await;
    system.stop().await;
}

/// Carol signs up and is told her address is not confirmed; she opens the link mailed to her
/// (a new tab, as a mail client opens it), and once she reloads her page the banner is gone.
/// Signed out, she has forgotten her password: the link mailed to her takes a new one, which
/// she signs in with.
async fn mailbox(system: &TestSystem, smtp: &SmtpServer, driver: &Chromedriver, page: &Client) {
    sign_in(page, "carol@example.com", "carol's password 1", true).await;
    page.wait().at_most(DEADLINE).for_element(Locator::Css("p.unverified")).await.expect("the page says the address is not confirmed");

    let token = link_tokens(smtp, "carol@example.com", "verify", 1).await.remove(0);
    let link = driver.open(&format!("{}/#verify={token}", system.base), Screen::Desktop).await;
    let confirmed = link.wait().at_most(DEADLINE).for_element(Locator::Css("p.verified")).await.map(drop);
    let address = link.current_url().await.map(|url| url.to_string()).unwrap_or_default();
    let _ = link.close().await;
    confirmed.expect("the link confirms the address");
    assert!(!address.contains(&token), "the token left the address bar: {address}");
    page.refresh().await.unwrap();
    page.wait().at_most(DEADLINE).for_element(Locator::Css("p.connection.live")).await.expect("signed in still");
    assert!(page.find(Locator::Css("p.unverified")).await.is_err(), "no banner once the address is confirmed");

    page.find(Locator::Css("button.sign-out")).await.unwrap().click().await.unwrap();
    page.wait().at_most(DEADLINE).for_element(Locator::Css("form.forgot-form")).await.expect("'Forgot your password?'");
    page.find(Locator::Css("input#forgot-email")).await.unwrap().send_keys("carol@example.com").await.unwrap();
    page.find(Locator::Css("form.forgot-form button[type=submit]")).await.unwrap().click().await.unwrap();
    let token = link_tokens(smtp, "carol@example.com", "reset", 1).await.remove(0);
    let link = driver.open(&format!("{}/#reset={token}", system.base), Screen::Desktop).await;
    let reset = async {
        link.wait().at_most(DEADLINE).for_element(Locator::Css("form.reset-form")).await.expect("the reset form");
        link.find(Locator::Css("input#new-password")).await.unwrap().send_keys("carol's new password 2").await.unwrap();
        link.find(Locator::Css("form.reset-form button[type=submit]")).await.unwrap().click().await.unwrap();
        link.wait().at_most(DEADLINE).for_element(Locator::Css("p.password-reset")).await.map(drop)
    };
    let changed = reset.await;
    let _ = link.close().await;
    changed.expect("the new password is taken");
    page.refresh().await.unwrap();
    sign_in(page, "carol@example.com", "carol's new password 2", false).await;
}
