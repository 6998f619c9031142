//! Submitting many texts at once: pasted one per line, or from a text file with one per line;
//! then the batch's counts, live, until every item has its verdict.

use wasm_bindgen_futures::JsFuture;
use web_sys::{HtmlInputElement, HtmlTextAreaElement};
use yew::prelude::*;

use crate::api::{self, Endpoints};
use crate::live::CountsFeed;
use crate::model::{BatchAccepted, BatchView};

/// The items of a pasted or uploaded list: one per non-blank line.
pub fn items_of(text: &str) -> Vec<String> {
    text.lines().map(|line| line.trim_end_matches('\r')).filter(|line| !line.trim().is_empty()).map(str::to_owned).collect()
}

#[derive(Properties, PartialEq)]
pub struct BatchFormProps {
    pub endpoints: Endpoints,
}

#[function_component(BatchForm)]
pub fn batch_form(props: &BatchFormProps) -> Html {
    let text = use_state(String::new);
    let sending = use_state(|| false);
    let error = use_state(|| None::<String>);
    let watching = use_state(|| None::<BatchAccepted>);
    let items = items_of(&text);

    let oninput = {
        let text = text.clone();
        Callback::from(move |event: InputEvent| text.set(event.target_unchecked_into::<HtmlTextAreaElement>().value()))
    };
    // A chosen file's text goes into the text area, to check before sending.
    let onchange = {
        let (text, error) = (text.clone(), error.clone());
        Callback::from(move |event: Event| {
            let input: HtmlInputElement = event.target_unchecked_into();
            let Some(file) = input.files().and_then(|files| files.get(0)) else { return };
            let (text, error) = (text.clone(), error.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match JsFuture::from(file.text()).await.ok().and_then(|value| value.as_string()) {
                    Some(contents) => text.set(contents),
                    None => error.set(Some("That file could not be read as text.".into())),
                }
            });
        })
    };
    let onsubmit = {
        let (text, sending, error, watching) = (text.clone(), sending.clone(), error.clone(), watching.clone());
        let endpoints = props.endpoints.clone();
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let items = items_of(&text);
            if *sending || items.is_empty() {
                return;
            }
            sending.set(true);
            error.set(None);
            let (text, sending, error, watching, endpoints) = (text.clone(), sending.clone(), error.clone(), watching.clone(), endpoints.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match api::submit_batch(&endpoints, &items).await {
                    Ok(accepted) => {
                        text.set(String::new());
                        watching.set(Some(accepted));
                    }
                    Err(message) => error.set(Some(message)),
                }
                sending.set(false);
            });
        })
    };
    html! {
        <form class="batch-form" {onsubmit} aria-labelledby="batch-heading">
            <h2 id="batch-heading">{ "Submit many" }</h2>
            <label for="batch-items">{ "One text per line" }</label>
            <textarea id="batch-items" rows="4" value={(*text).clone()} {oninput} disabled={*sending} />
            <label for="batch-file">{ "or a text file, one per line" }</label>
            <input id="batch-file" type="file" accept=".txt,text/plain" {onchange} disabled={*sending} />
            <button type="submit" disabled={*sending || items.is_empty()}>
                { if *sending { "Sending…".to_owned() } else { format!("Submit {} as a batch", items.len()) } }
            </button>
            if let Some(message) = &*error {
                <p class="error" role="alert">{ message }</p>
            }
            if let Some(accepted) = &*watching {
                <BatchProgress key={accepted.id.clone()} endpoints={props.endpoints.clone()} accepted={accepted.clone()} />
            }
        </form>
    }
}

#[derive(Properties, PartialEq)]
pub struct ProgressProps {
    pub endpoints: Endpoints,
    pub accepted: BatchAccepted,
}

/// One batch's counts per status, live. The stream is opened once the read model holds the
/// batch (a stream of a batch it does not know yet is refused, and the browser would not retry).
#[function_component(BatchProgress)]
pub fn batch_progress(props: &ProgressProps) -> Html {
    let batch = use_state(|| None::<BatchView>);
    let feed = use_mut_ref(|| None::<CountsFeed>);
    let error = use_state(|| None::<String>);
    {
        let (batch, error) = (batch.clone(), error.clone());
        use_effect_with((props.endpoints.clone(), props.accepted.clone()), move |(endpoints, accepted)| {
            let (endpoints, accepted, opened) = (endpoints.clone(), accepted.clone(), feed.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match api::batch(&endpoints, &accepted.id, &accepted.position).await {
                    Ok(first) => {
                        batch.set(Some(first));
                        let on_counts = Callback::from(move |view| batch.set(Some(view)));
                        *opened.borrow_mut() = CountsFeed::open(&endpoints.batch_stream_url(&accepted.id), on_counts);
                    }
                    Err(message) => error.set(Some(message)),
                }
            });
            move || drop(feed.borrow_mut().take())
        });
    }
    if let Some(message) = &*error {
        return html! { <p class="error" role="alert">{ message }</p> };
    }
    let Some(batch) = &*batch else {
        return html! { <p class="batch-progress" role="status">{ "Batch accepted; waiting for its first counts…" }</p> };
    };
    let c = &batch.counts;
    let judged = c.passed + c.failed;
    html! {
        <div class="batch-progress" role="status" aria-live="polite" data-complete={batch.complete.to_string()}>
            <progress max={batch.size.to_string()} value={judged.to_string()} />
            <p class="counts">
                { format!("{judged} of {} judged: {} passed, {} failed, {} processing, {} pending", batch.size, c.passed, c.failed, c.processing, c.pending) }
            </p>
            if batch.complete {
                <p class="batch-done">{ "Every item has its verdict." }</p>
            }
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_item_per_non_blank_line() {
        assert_eq!(items_of("first 1\r\n\n  \nsecond 2\n"), ["first 1", "second 2"]);
        assert!(items_of("\n \n").is_empty());
    }
}
