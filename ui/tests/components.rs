//! Components rendered natively with Yew's server-side renderer (effects do not run there):
//! what a user reads, what a screen reader reads, and that their text stays text.

use domain::Status;
use ui::api::Endpoints;
use ui::components::auth::{AuthForm, AuthProps};
use ui::components::form::{FormProps, HintProps, RuleHint, SubmitForm};
use ui::components::list::{ItemProps, SubmissionItem};
use ui::model::SubmissionView;
use yew::{Callback, LocalServerRenderer};

fn submission(status: Status, content: &str, reasons: &[&str]) -> SubmissionView {
    SubmissionView {
        id: "0b5a9e3c-1f2d-4e6a-8b7c-9d0e1f2a3b4c".into(),
        content: content.into(),
        status,
        reasons: reasons.iter().map(|r| r.to_string()).collect(),
        created_at: "2026-11-25T10:11:12.123456Z".into(),
        owner_email: None,
        replaces: None,
        replaced_by: None,
    }
}

async fn render_item(submission: SubmissionView) -> String {
    render_item_for(submission, false).await
}

async fn render_item_for(submission: SubmissionView, show_owner: bool) -> String {
    LocalServerRenderer::<SubmissionItem>::with_props(ItemProps { submission, selected: false, on_select: Callback::noop(), show_owner })
        .render()
        .await
}

#[tokio::test]
async fn an_admin_sees_who_made_each_submission_and_a_user_does_not() {
    let mut owned = submission(Status::Passed, "text 1234567", &[]);
    owned.owner_email = Some("ada@example.com".into());
    let for_admin = render_item_for(owned.clone(), true).await;
    assert!(for_admin.contains(r#"<span class="owner">ada@example.com</span>"#), "{for_admin}");
    let for_user = render_item_for(owned, false).await;
    assert!(!for_user.contains("class=\"owner\""), "{for_user}");
    let from_before_accounts = render_item_for(submission(Status::Passed, "text 1234567", &[]), true).await;
    assert!(from_before_accounts.contains("(from before accounts)"), "{from_before_accounts}");
}

#[tokio::test]
async fn the_sign_in_form_is_labelled_and_offers_to_create_an_account() {
    let html =
        LocalServerRenderer::<AuthForm>::with_props(AuthProps { endpoints: Endpoints::default(), on_signed_in: Callback::noop() }).render().await;
    assert!(html.contains(r#"<label for="email">"#) && html.contains(r#"id="email""#), "{html}");
    assert!(html.contains(r#"<label for="password">"#) && html.contains(r#"type="password""#), "{html}");
    assert!(html.contains(r#"autocomplete="current-password""#), "{html}");
    assert!(html.contains("New here? Create an account"), "{html}");
}

#[tokio::test]
async fn a_failed_submission_shows_its_status_in_words_and_its_reasons() {
    let html = render_item(submission(Status::Failed, "nope", &["too_short", "no_digit"])).await;
    assert!(html.contains("FAILED"), "{html}");
    assert!(html.contains("too short: fewer than 10 characters"), "{html}");
    assert!(html.contains("no digit: contains no 0-9"), "{html}");
    assert!(html.contains("10:11:12 UTC"), "{html}");
    assert!(html.contains(r#"data-status="FAILED""#), "{html}");
}

#[tokio::test]
async fn every_status_has_its_own_word_and_icon_not_only_a_colour() {
    let mut seen = Vec::new();
    for (status, icon) in [(Status::Pending, "⏳"), (Status::Processing, "⚙"), (Status::Passed, "✔"), (Status::Failed, "✖")] {
        let html = render_item(submission(status, "text 1234567", &[])).await;
        assert!(html.contains(status.as_str()) && html.contains(icon), "{status:?}: {html}");
        seen.push(html);
    }
    seen.dedup();
    assert_eq!(seen.len(), 4);
}

#[tokio::test]
async fn user_text_is_rendered_as_text_never_as_markup() {
    let html = render_item(submission(Status::Passed, "<script>alert(1)</script> & <b>42</b>", &[])).await;
    assert!(!html.contains("<script>") && !html.contains("<b>"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;42&lt;/b&gt;"), "{html}");
}

async fn render_hint(content: &str) -> String {
    LocalServerRenderer::<RuleHint>::with_props(HintProps { content: content.into(), id: "rules".into() }).render().await
}

#[tokio::test]
async fn the_hint_shows_both_rules_as_the_text_is_typed() {
    let empty = render_hint("").await;
    assert_eq!(empty.matches("(not met)").count(), 2, "{empty}");
    assert!(empty.contains("(0 so far)"), "{empty}");

    let short_with_digit = render_hint("abc1").await;
    assert_eq!(short_with_digit.matches("(not met)").count(), 1, "{short_with_digit}");
    assert!(short_with_digit.contains("(4 so far)"));

    let valid = render_hint("ééééééééé1").await;
    assert_eq!(valid.matches("(met)").count(), 2, "counts characters, not bytes: {valid}");
    assert!(valid.contains("(10 so far)"));
}

#[tokio::test]
async fn the_form_is_labelled_and_starts_with_submit_disabled() {
    let html =
        LocalServerRenderer::<SubmitForm>::with_props(FormProps { endpoints: Endpoints::default(), on_accepted: Callback::noop() }).render().await;
    assert!(html.contains(r#"<label for="content">"#), "{html}");
    assert!(html.contains(r#"id="content""#), "{html}");
    assert!(html.contains(r#"aria-describedby="rules""#), "{html}");
    let button = &html[html.find("<button").unwrap()..];
    assert!(button.starts_with(r#"<button type="submit" disabled"#), "nothing typed, nothing to send: {button}");
}
