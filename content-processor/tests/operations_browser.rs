//! The operations dashboard in a real browser (Chromium through chromedriver) against the
//! running system with Apache Kafka and PostgreSQL. An admin opens it and, without reloading,
//! watches submissions made elsewhere show up in the counts per status and in the throughput
//! chart, sees two validators and the partitions each holds, the queue depth of every
//! partition, a dead letter with its reason and content, browses the topic to a record and to
//! the poison one, and starts a rebuild and sees it switch. A user who is not an admin is never
//! offered the dashboard. The interactive API docs at `/docs` show every operation. Saves
//! `artifacts/ui-operations.png`, `ui-operations-log.png` and `ui-docs.png`.

mod support;

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use fantoccini::{Client, Locator};
use futures_util::FutureExt;
use rdkafka::producer::FutureRecord;
use reqwest::StatusCode;
use serde_json::Value;
use support::browser::{artifacts, built_ui, close_all, sign_in, Chromedriver, Screen};
use support::{TestDb, TestSystem, DEADLINE};

const PASSING: usize = 6;
const FAILING: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_watches_the_operations_dashboard_live_in_a_real_browser() {
    let db = TestDb::create().await;
    let mut config = support::test_config(&db);
    config.ui_dir = built_ui();
    config.validators = 2;
    let system = TestSystem::start_with(db, config).await;

    let driver = Chromedriver::start().await;
    let admin = driver.open(&system.base, Screen::Desktop).await;
    let user = driver.open(&system.base, Screen::Desktop).await;
    let outcome = AssertUnwindSafe(scenario(&system, &driver, &admin, &user)).catch_unwind().await;
    close_all([admin, user], outcome).await;
    system.stop().await;
}

/// Text of the first element matching `css`, once there is one.
async fn text_of(page: &Client, css: &str) -> String {
    page.wait().at_most(DEADLINE).for_element(Locator::Css(css)).await.unwrap_or_else(|_| panic!("{css} is shown")).text().await.unwrap()
}

/// Waits until `script` (returning a boolean) is true in the page.
async fn until(page: &Client, what: &str, script: &str) {
    let deadline = std::time::Instant::now() + DEADLINE;
    while page.execute(script, vec![]).await.unwrap() != Value::Bool(true) {
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn scenario(system: &TestSystem, driver: &Chromedriver, admin: &Client, user: &Client) {
    // A user who is not an admin is not offered the dashboard.
    sign_in(user, "not-an-admin@example.com", "a user's password 1", true).await;
    assert!(user.find(Locator::Css("button.show-operations")).await.is_err(), "no Operations button for a user");

    sign_in(admin, "admin@tests.example", "admin password 1", false).await;
    admin.find(Locator::Css("button.show-operations")).await.unwrap().click().await.unwrap();
    admin.wait().at_most(DEADLINE).for_element(Locator::Css(".dashboard .status-counts")).await.unwrap();
    admin.execute("window.__notReloaded = true;", vec![]).await.unwrap();

    // Two validators, each holding partitions.
    until(admin, "two validators hold partitions", "return document.querySelectorAll('tr.member').length === 2 && [...document.querySelectorAll('tr.member td.partitions')].every(td => td.textContent !== '');").await;
    let partitions: usize =
        admin.execute("return document.querySelectorAll('tr.partition').length;", vec![]).await.unwrap().as_u64().unwrap() as usize;
    assert_eq!(partitions, system.running.kafka.partitions as usize, "a queue-depth row per partition");

    // Submissions made elsewhere show up live: counts, and the chart leaves its baseline.
    for i in 0..PASSING + FAILING {
        let content = if i < PASSING { format!("watched from the dashboard {i}") } else { format!("tiny{i}") };
        let (status, _) = system.submit(&content).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    until(
        admin,
        "the counts show every verdict",
        &format!(
            "return document.querySelector('.status-count[data-status=PASSED] .count').textContent === '{PASSING}'
                 && document.querySelector('.status-count[data-status=FAILED] .count').textContent === '{FAILING}';"
        ),
    )
    .await;
    until(
        admin,
        "the chart shows the submissions",
        "return document.querySelector('polyline.accepted').getAttribute('points').split(' ').some(p => p.split(',')[1] !== '150.0');",
    )
    .await;
    let totals = text_of(admin, ".legend .totals").await;
    assert!(totals.contains(&format!("{} accepted, {} judged", PASSING + FAILING, PASSING + FAILING)), "{totals}");
    until(
        admin,
        "the queues are empty again",
        "return [...document.querySelectorAll('tfoot .validator-depth, tfoot .projector-depth')].every(td => td.textContent === '0');",
    )
    .await;

    // A poison record: the dead letters show it with its reason and content.
    let kafka = &system.running.kafka;
    let producer = kafka.producer(Duration::from_secs(5)).unwrap();
    let delivered = producer
        .send(FutureRecord::to(&kafka.topic).key("poison").payload("{ this is not an event").partition(1))
        .await
        .expect("written to the topic");
    until(
        admin,
        "the dead letter is shown",
        "return document.querySelector('#dead-heading').textContent === 'Dead letters: 1' && document.querySelector('li.dead-letter') !== null;",
    )
    .await;
    let letter = text_of(admin, "li.dead-letter").await;
    assert!(
        letter.contains("undecodable") && letter.contains("{ this is not an event") && letter.contains(&format!("from 1:{}", delivered.offset)),
        "{letter}"
    );

    // The record browser: the poison record as text with its reason, then an event decoded.
    let field = |id: &'static str| async move { admin.find(Locator::Id(id)).await.unwrap() };
    field("records-partition").await.clear().await.unwrap();
    field("records-partition").await.send_keys("1").await.unwrap();
    field("records-offset").await.send_keys(&delivered.offset.to_string()).await.unwrap();
    admin.find(Locator::Css("form.records-form button[type=submit]")).await.unwrap().click().await.unwrap();
    let poison = text_of(admin, &format!("li.record[data-offset='{}']", delivered.offset)).await;
    assert!(poison.contains("not an event") && poison.contains("not a valid event") && poison.contains("{ this is not an event"), "{poison}");
    if delivered.offset > 0 {
        admin.find(Locator::Css("button.older")).await.unwrap().click().await.unwrap();
        let first = text_of(admin, "li.record[data-offset='0']").await;
        assert!(first.contains("SubmissionCreated") || first.contains("ProcessingStarted"), "{first}");
        assert!(first.contains("\"submission_id\""), "decoded: {first}");
    }

    // A rebuild, started here and followed to its switch.
    admin.find(Locator::Css("button.start-rebuild")).await.unwrap().click().await.unwrap();
    admin.wait().at_most(DEADLINE).for_element(Locator::Css("button.confirm-rebuild")).await.unwrap().click().await.unwrap();
    admin.wait().at_most(DEADLINE).for_element(Locator::Css("section.rebuild[data-state=switched]")).await.unwrap();
    assert!(text_of(admin, "section.rebuild").await.contains("generation 1 to 2"));
    until(
        admin,
        "the counts are the same after the rebuild",
        &format!("return document.querySelector('.status-count[data-status=PASSED] .count').textContent === '{PASSING}';"),
    )
    .await;

    assert_eq!(admin.execute("return window.__notReloaded === true;", vec![]).await.unwrap(), true, "all of it without a reload");
    // The interactive API docs, from this server only.
    let docs = driver.open(&format!("{}/docs/", system.base), Screen::Desktop).await;
    let docs_outcome = AssertUnwindSafe(async {
        until(&docs, "the docs list every operation", "return document.querySelectorAll('.opblock').length >= 30;").await;
        std::fs::write(artifacts().join("ui-docs.png"), docs.screenshot().await.unwrap()).unwrap();
    })
    .catch_unwind()
    .await;
    close_all([docs], docs_outcome).await;

    admin.execute("window.scrollTo(0, 0);", vec![]).await.unwrap();
    std::fs::write(artifacts().join("ui-operations.png"), admin.screenshot().await.unwrap()).unwrap();
    admin.execute("document.querySelector('section.dead-letters').scrollIntoView();", vec![]).await.unwrap();
    std::fs::write(artifacts().join("ui-operations-log.png"), admin.screenshot().await.unwrap()).unwrap();
}
