//! The list of submissions, newest first, each with a status badge that carries a word and an
//! icon as well as a colour.

use domain::Status;
use yew::prelude::*;

use crate::model::{clock_time, describe_reason, SubmissionView};

pub fn badge(status: Status) -> Html {
    let (class, icon) = match status {
        Status::Pending => ("badge pending", "⏳"),
        Status::Processing => ("badge processing", "⚙"),
        Status::Passed => ("badge passed", "✔"),
        Status::Failed => ("badge failed", "✖"),
    };
    html! { <span class={class}><span aria-hidden="true">{ icon }{ " " }</span>{ status.as_str() }</span> }
}

#[derive(Properties, PartialEq)]
pub struct ItemProps {
    pub submission: SubmissionView,
    pub selected: bool,
    pub on_select: Callback<String>,
    /// Show who submitted it (an admin sees everyone's).
    #[prop_or_default]
    pub show_owner: bool,
}

#[function_component(SubmissionItem)]
pub fn submission_item(props: &ItemProps) -> Html {
    let s = &props.submission;
    let onclick = {
        let (id, on_select) = (s.id.clone(), props.on_select.clone());
        Callback::from(move |_| on_select.emit(id.clone()))
    };
    html! {
        <li class="submission" data-id={s.id.clone()} data-status={s.status.as_str()}>
            <button type="button" class="open" {onclick} aria-pressed={props.selected.to_string()}
                aria-label={format!("Show the history of this {} submission", s.status.as_str())}>
                { badge(s.status) }
                <time datetime={s.created_at.clone()}>{ clock_time(&s.created_at) }</time>
                <span class="content">{ &s.content }</span>
                if props.show_owner {
                    <span class="owner">{ s.owner_email.as_deref().unwrap_or("(from before accounts)") }</span>
                }
            </button>
            if s.status == Status::Failed && !s.reasons.is_empty() {
                <ul class="reasons">
                    { for s.reasons.iter().map(|r| html! { <li>{ describe_reason(r) }</li> }) }
                </ul>
            }
        </li>
    }
}

#[derive(Properties, PartialEq)]
pub struct ListProps {
    pub entries: Vec<SubmissionView>,
    pub selected: Option<String>,
    pub on_select: Callback<String>,
    #[prop_or_default]
    pub show_owner: bool,
}

#[function_component(SubmissionList)]
pub fn submission_list(props: &ListProps) -> Html {
    if props.entries.is_empty() {
        return html! { <p class="empty">{ "No submissions yet." }</p> };
    }
    html! {
        <ol class="submissions" aria-label="Submissions, newest first">
            { for props.entries.iter().map(|s| html! {
                <SubmissionItem key={s.id.clone()} submission={s.clone()}
                    selected={props.selected.as_deref() == Some(s.id.as_str())}
                    on_select={props.on_select.clone()} show_owner={props.show_owner} />
            }) }
        </ol>
    }
}
