//! The record browser: a partition of the submission topic (or the dead-letter topic) read by
//! offset, twenty records at a time, each shown decoded when it is an event, or as text with the
//! reason it is not.

use web_sys::{HtmlInputElement, HtmlSelectElement};
use yew::prelude::*;

use crate::api::{self, Endpoints};
use crate::model::clock_time;
use crate::operations::{LoggedRecord, Records};

/// Records per page.
const PAGE: i64 = 20;

#[derive(Properties, PartialEq)]
pub struct RecordBrowserProps {
    pub endpoints: Endpoints,
    /// Partitions of the submission topic.
    pub partitions: i32,
}

#[function_component(RecordBrowser)]
pub fn record_browser(props: &RecordBrowserProps) -> Html {
    let topic = use_state(|| "events".to_owned());
    let partition = use_state(|| "0".to_owned());
    let offset = use_state(String::new);
    let shown = use_state(|| None::<Records>);
    let error = use_state(|| None::<String>);

    // Reads a page from `from` (the latest when `None`).
    let load = {
        let (topic, partition, shown, error, endpoints) = (topic.clone(), partition.clone(), shown.clone(), error.clone(), props.endpoints.clone());
        Callback::from(move |from: Option<i64>| {
            let Ok(number) = partition.trim().parse::<i32>() else {
                error.set(Some("The partition is a number.".into()));
                return;
            };
            let (topic, shown, error, endpoints) = ((*topic).clone(), shown.clone(), error.clone(), endpoints.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match api::records(&endpoints, &topic, number, from).await {
                    Ok(page) => {
                        shown.set(Some(page));
                        error.set(None);
                    }
                    Err(message) => error.set(Some(message)),
                }
            });
        })
    };
    let onsubmit = {
        let (load, offset, error) = (load.clone(), offset.clone(), error.clone());
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            match offset.trim() {
                "" => load.emit(None),
                text => match text.parse::<i64>() {
                    Ok(from) => load.emit(Some(from)),
                    Err(_) => error.set(Some("The offset is a number, or empty for the latest records.".into())),
                },
            }
        })
    };
    let on_topic = {
        let topic = topic.clone();
        Callback::from(move |event: Event| topic.set(event.target_unchecked_into::<HtmlSelectElement>().value()))
    };
    let on_partition = {
        let partition = partition.clone();
        Callback::from(move |event: InputEvent| partition.set(event.target_unchecked_into::<HtmlInputElement>().value()))
    };
    let on_offset = {
        let offset = offset.clone();
        Callback::from(move |event: InputEvent| offset.set(event.target_unchecked_into::<HtmlInputElement>().value()))
    };
    let paging = shown.as_ref().map(|page| {
        let first = page.records.first().map_or(page.end_offset, |r| r.offset);
        let older = (first > page.first_offset).then(|| {
            let load = load.clone();
            let from = (first - PAGE).max(page.first_offset);
            Callback::from(move |_: MouseEvent| load.emit(Some(from)))
        });
        let newer = page.records.last().filter(|r| r.offset + 1 < page.end_offset).map(|last| {
            let (load, from) = (load.clone(), last.offset + 1);
            Callback::from(move |_: MouseEvent| load.emit(Some(from)))
        });
        (older, newer)
    });
    html! {
        <section class="record-browser" aria-labelledby="records-heading">
            <h3 id="records-heading">{ "Records" }</h3>
            <form class="records-form" {onsubmit}>
                <label>{ "Topic " }
                    <select id="records-topic" onchange={on_topic}>
                        <option value="events" selected={*topic == "events"}>{ "submission events" }</option>
                        <option value="dead_letters" selected={*topic == "dead_letters"}>{ "dead letters" }</option>
                    </select>
                </label>
                <label>{ format!("Partition (0–{}) ", props.partitions - 1) }
                    <input id="records-partition" inputmode="numeric" value={(*partition).clone()} oninput={on_partition} />
                </label>
                <label>{ "From offset " }
                    <input id="records-offset" inputmode="numeric" placeholder="latest" value={(*offset).clone()} oninput={on_offset} />
                </label>
                <button type="submit">{ "Show" }</button>
            </form>
            if let Some(message) = &*error {
                <p class="error" role="alert">{ message }</p>
            }
            if let Some(page) = &*shown {
                <p class="hint">{ format!("{} partition {}: offsets {} to {}", page.topic, page.partition, page.first_offset, page.end_offset - 1) }</p>
                if page.records.is_empty() {
                    <p class="no-records">{ "No records there." }</p>
                }
                <ol class="records">
                    { for page.records.iter().map(record) }
                </ol>
                if let Some((older, newer)) = paging {
                    if let Some(onclick) = older {
                        <button type="button" class="older" {onclick}>{ "Older" }</button>
                    }
                    if let Some(onclick) = newer {
                        <button type="button" class="newer" {onclick}>{ "Newer" }</button>
                    }
                }
            }
        </section>
    }
}

fn record(record: &LoggedRecord) -> Html {
    let what = match &record.event {
        Some(event) => event["event_type"].as_str().unwrap_or("event").to_owned(),
        None => "not an event".to_owned(),
    };
    let body = match &record.event {
        Some(event) => serde_json::to_string_pretty(event).unwrap_or_default(),
        None => record.text.clone().unwrap_or_else(|| "(no value)".into()),
    };
    html! {
        <li class="record" data-offset={record.offset.to_string()}>
            <p>
                <strong class="offset">{ format!("#{}", record.offset) }</strong>
                { " " }<span class="event-type">{ what }</span>{ " " }
                <time>{ record.timestamp.as_deref().map(clock_time).unwrap_or_default() }</time>
                if let Some(key) = &record.key {
                    <span class="key">{ format!(" key {key}") }</span>
                }
            </p>
            if let Some(problem) = &record.decode_error {
                <p class="decode-error">{ problem }</p>
            }
            if !record.headers.is_empty() {
                <p class="headers">{ record.headers.iter().map(|h| format!("{}: {}", h.key, h.value.as_deref().unwrap_or(""))).collect::<Vec<_>>().join("; ") }</p>
            }
            <pre class="record-text">{ body }</pre>
        </li>
    }
}
