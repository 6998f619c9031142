//! One submission and its event timeline, reloaded whenever its status changes; what it
//! replaces or was replaced by; and, when it FAILED, its text to edit and resubmit.

use domain::Status;
use web_sys::HtmlTextAreaElement;
use yew::prelude::*;

use super::list::badge;
use crate::api::{self, Endpoints};
use crate::model::{clock_time, describe_reason, History, SubmissionView};

#[derive(Properties, PartialEq)]
pub struct DetailProps {
    pub endpoints: Endpoints,
    pub submission: SubmissionView,
    pub on_close: Callback<()>,
}

#[function_component(Detail)]
pub fn detail(props: &DetailProps) -> Html {
    let history = use_state(|| None::<Result<History, String>>);
    // The submission as the API has it now: its links may be newer than the list's copy.
    let current = use_state(|| None::<SubmissionView>);
    // The replacement just accepted: the command API's answer is the link, before the read
    // model shows it.
    let resubmitted = use_state(|| None::<(String, String)>);
    {
        let (history, current) = (history.clone(), current.clone());
        let endpoints = props.endpoints.clone();
        let key = (props.submission.id.clone(), props.submission.status);
        use_effect_with(key, move |(id, _)| {
            let id = id.clone();
            wasm_bindgen_futures::spawn_local(async move {
                current.set(api::submission(&endpoints, &id).await.ok());
                history.set(Some(api::history(&endpoints, &id).await));
            });
        });
    }
    let s = &props.submission;
    let links = (*current).clone().filter(|c| c.id == s.id);
    let replaces = links.as_ref().and_then(|c| c.replaces.clone());
    let just_resubmitted = (*resubmitted).clone().filter(|(original, _)| *original == s.id).map(|(_, id)| id);
    let replaced_by = links.as_ref().and_then(|c| c.replaced_by.clone()).or(just_resubmitted);
    let close = props.on_close.reform(|_: MouseEvent| ());
    let on_resubmitted = {
        let (resubmitted, original) = (resubmitted.clone(), s.id.clone());
        Callback::from(move |replacement: String| resubmitted.set(Some((original.clone(), replacement))))
    };
    html! {
        <section class="detail" aria-labelledby="detail-heading">
            <h2 id="detail-heading">{ "Submission " }<code>{ &s.id }</code></h2>
            <button type="button" class="close" onclick={close}>{ "Close" }</button>
            <p>{ badge(s.status) }</p>
            <p class="content">{ &s.content }</p>
            if !s.reasons.is_empty() {
                <ul class="reasons">{ for s.reasons.iter().map(|r| html! { <li>{ describe_reason(r) }</li> }) }</ul>
            }
            if let Some(id) = &replaces {
                <p class="replaces">{ "Edited from " }<code>{ id }</code></p>
            }
            if let Some(id) = &replaced_by {
                <p class="replaced-by">{ "Resubmitted as " }<code>{ id }</code></p>
            } else if s.status == Status::Failed && links.is_some() {
                <Resubmit key={s.id.clone()} endpoints={props.endpoints.clone()} replaces={s.id.clone()} content={s.content.clone()} {on_resubmitted} />
            }
            <h3>{ "Timeline" }</h3>
            { match &*history {
                None => html! { <p>{ "Loading…" }</p> },
                Some(Err(message)) => html! { <p class="error" role="alert">{ message }</p> },
                Some(Ok(history)) => html! {
                    <ol class="timeline">
                        { for history.events.iter().map(|e| html! {
                            <li>
                                <time datetime={e.occurred_at.clone()}>{ clock_time(&e.occurred_at) }</time>
                                { " " }<strong>{ &e.event_type }</strong>{ " → " }{ e.status.as_str() }
                                <span class="coordinates">{ format!(" (partition {}, offset {})", e.kafka_partition, e.kafka_offset) }</span>
                            </li>
                        }) }
                    </ol>
                },
            } }
        </section>
    }
}

#[derive(Properties, PartialEq)]
pub struct ResubmitProps {
    pub endpoints: Endpoints,
    pub replaces: String,
    pub content: String,
    /// Called with the replacement's id.
    pub on_resubmitted: Callback<String>,
}

/// The failed text, to edit and submit again as its replacement.
#[function_component(Resubmit)]
pub fn resubmit(props: &ResubmitProps) -> Html {
    let text = use_state(|| props.content.clone());
    let error = use_state(|| None::<String>);
    let sending = use_state(|| false);
    let oninput = {
        let text = text.clone();
        Callback::from(move |event: InputEvent| text.set(event.target_unchecked_into::<HtmlTextAreaElement>().value()))
    };
    let onsubmit = {
        let (text, error, sending) = (text.clone(), error.clone(), sending.clone());
        let (endpoints, replaces, done) = (props.endpoints.clone(), props.replaces.clone(), props.on_resubmitted.clone());
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            sending.set(true);
            let (text, error, sending) = (text.clone(), error.clone(), sending.clone());
            let (endpoints, replaces, done) = (endpoints.clone(), replaces.clone(), done.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match api::resubmit(&endpoints, &replaces, &text).await {
                    Ok(accepted) => done.emit(accepted.id),
                    Err(message) => error.set(Some(message)),
                }
                sending.set(false);
            });
        })
    };
    html! {
        <form class="resubmit" {onsubmit}>
            <label for="resubmit-content">{ "Edit and resubmit" }</label>
            <textarea id="resubmit-content" rows="3" value={(*text).clone()} {oninput} disabled={*sending} aria-describedby="resubmit-rules" />
            <super::form::RuleHint content={(*text).clone()} id="resubmit-rules" />
            <button type="submit" disabled={*sending || text.is_empty()}>{ "Resubmit" }</button>
            if let Some(message) = &*error {
                <p class="error" role="alert">{ message }</p>
            }
        </form>
    }
}
