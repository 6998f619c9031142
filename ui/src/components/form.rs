//! The submission form: a text area, a live hint of the two rules, and a submit button that is
//! disabled while sending. On failure the error is shown in words and the text is kept.

use domain::{judge, FailureReason, Verdict};
use web_sys::HtmlTextAreaElement;
use yew::prelude::*;

use crate::api::{self, Endpoints};
use crate::model::SubmissionView;

#[derive(Properties, PartialEq)]
pub struct FormProps {
    pub endpoints: Endpoints,
    pub on_accepted: Callback<SubmissionView>,
}

#[function_component(SubmitForm)]
pub fn submit_form(props: &FormProps) -> Html {
    let text = use_state(String::new);
    let sending = use_state(|| false);
    let error = use_state(|| None::<String>);

    let oninput = {
        let text = text.clone();
        Callback::from(move |event: InputEvent| {
            let area: HtmlTextAreaElement = event.target_unchecked_into();
            text.set(area.value());
        })
    };

    let send = {
        let (text, sending, error) = (text.clone(), sending.clone(), error.clone());
        let endpoints = props.endpoints.clone();
        let on_accepted = props.on_accepted.clone();
        Callback::from(move |()| {
            if *sending || text.is_empty() {
                return;
            }
            sending.set(true);
            error.set(None);
            let (text, sending, error) = (text.clone(), sending.clone(), error.clone());
            let (endpoints, on_accepted) = (endpoints.clone(), on_accepted.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match api::submit(&endpoints, &text).await {
                    Ok(accepted) => {
                        text.set(String::new());
                        on_accepted.emit(accepted);
                    }
                    Err(message) => error.set(Some(message)),
                }
                sending.set(false);
            });
        })
    };
    let onsubmit = {
        let send = send.clone();
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            send.emit(());
        })
    };
    // Ctrl+Enter (or Cmd+Enter) submits from the text area.
    let onkeydown = Callback::from(move |event: KeyboardEvent| {
        if event.key() == "Enter" && (event.ctrl_key() || event.meta_key()) {
            event.prevent_default();
            send.emit(());
        }
    });

    html! {
        <form class="submit-form" onsubmit={onsubmit} aria-labelledby="submit-heading">
            <h2 id="submit-heading">{ "Submit content" }</h2>
            <label for="content">{ "Content" }</label>
            <textarea id="content" name="content" rows="4" value={(*text).clone()}
                {oninput} {onkeydown} aria-describedby="rules" disabled={*sending} />
            <RuleHint content={(*text).clone()} />
            <button type="submit" disabled={*sending || text.is_empty()}>
                { if *sending { "Sending…" } else { "Submit" } }
            </button>
            <span class="shortcut">{ "or Ctrl+Enter" }</span>
            if let Some(message) = &*error {
                <p class="error" role="alert">{ message }</p>
            }
        </form>
    }
}

#[derive(Properties, PartialEq)]
pub struct HintProps {
    pub content: String,
    /// The list's id, for the `aria-describedby` of its text area (unique on the page).
    #[prop_or(AttrValue::Static("rules"))]
    pub id: AttrValue,
}

/// The two rules and whether the text typed so far meets each, judged by the same rule the
/// validator applies (`domain::judge`).
#[function_component(RuleHint)]
pub fn rule_hint(props: &HintProps) -> Html {
    let reasons = match judge(&props.content) {
        Verdict::Passed => Vec::new(),
        Verdict::Failed(reasons) => reasons,
    };
    let length_ok = !reasons.contains(&FailureReason::TooShort);
    let digit_ok = !reasons.contains(&FailureReason::NoDigit);
    let characters = domain::rule::char_count(&props.content);
    let rule = |ok: bool, text: String| {
        let (class, mark, word) = if ok { ("rule ok", "✓", "met") } else { ("rule missing", "✗", "not met") };
        html! { <li class={class}><span aria-hidden="true">{ mark }</span>{ " " }{ text }<span class="visually-hidden">{ format!(" ({word})") }</span></li> }
    };
    html! {
        <ul id={props.id.clone()} class="rules" aria-live="polite">
            { rule(length_ok, format!("At least {} characters ({characters} so far)", domain::rule::MIN_CHARS)) }
            { rule(digit_ok, "At least one digit (0-9)".to_owned()) }
        </ul>
    }
}
