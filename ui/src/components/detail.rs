//! One submission and its event timeline, reloaded whenever its status changes.

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
    {
        let history = history.clone();
        let endpoints = props.endpoints.clone();
        let key = (props.submission.id.clone(), props.submission.status);
        use_effect_with(key, move |(id, _)| {
            let id = id.clone();
            wasm_bindgen_futures::spawn_local(async move {
                history.set(Some(api::history(&endpoints, &id).await));
            });
        });
    }
    let s = &props.submission;
    let close = props.on_close.reform(|_: MouseEvent| ());
    html! {
        <section class="detail" aria-labelledby="detail-heading">
            <h2 id="detail-heading">{ "Submission " }<code>{ &s.id }</code></h2>
            <button type="button" class="close" onclick={close}>{ "Close" }</button>
            <p>{ badge(s.status) }</p>
            <p class="content">{ &s.content }</p>
            if !s.reasons.is_empty() {
                <ul class="reasons">{ for s.reasons.iter().map(|r| html! { <li>{ describe_reason(r) }</li> }) }</ul>
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
