//! What the system holds about the user: download it all, or delete the account and erase it.

use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::api::{self, Endpoints};

#[derive(Properties, PartialEq)]
pub struct YourDataProps {
    pub endpoints: Endpoints,
    /// Called once the account is deleted: the session is gone with it.
    pub on_deleted: Callback<()>,
}

#[function_component(YourData)]
pub fn your_data(props: &YourDataProps) -> Html {
    let password = use_state(String::new);
    let error = use_state(|| None::<String>);
    let oninput = {
        let password = password.clone();
        Callback::from(move |event: InputEvent| password.set(event.target_unchecked_into::<HtmlInputElement>().value()))
    };
    let onsubmit = {
        let (password, error, endpoints, on_deleted) = (password.clone(), error.clone(), props.endpoints.clone(), props.on_deleted.clone());
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let (password, error, endpoints, on_deleted) = (password.clone(), error.clone(), endpoints.clone(), on_deleted.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match api::delete_account(&endpoints, &password).await {
                    Ok(()) => on_deleted.emit(()),
                    Err(message) => error.set(Some(message)),
                }
            });
        })
    };
    html! {
        <section class="your-data" aria-label="Your data">
            <h2>{ "Your data" }</h2>
            <p>
                { "Everything the system holds about you, as one JSON file: " }
                <a class="export" href={format!("{}/api/account/export", props.endpoints.query_api)} download="content-processor-export.json">
                    { "Download my data" }
                </a>
            </p>
            <form class="delete-account" {onsubmit}>
                <h3>{ "Delete my account" }</h3>
                <p>{ "You are signed out everywhere and the text of every submission you made is erased for good; verdicts stay in the statistics, without the text." }</p>
                <label for="delete-password">{ "Your password" }</label>
                <input id="delete-password" type="password" required=true autocomplete="current-password" value={(*password).clone()} {oninput} />
                <button type="submit" class="danger">{ "Delete my account" }</button>
                if let Some(message) = &*error {
                    <p class="error" role="alert">{ message }</p>
                }
            </form>
        </section>
    }
}
