//! Signing in, or signing up (then signing in). What went wrong is said in words, and what
//! was typed stays.

use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::api::{self, Endpoints};
use crate::model::Session;

#[derive(Properties, PartialEq)]
pub struct AuthProps {
    pub endpoints: Endpoints,
    pub on_signed_in: Callback<Session>,
}

#[function_component(AuthForm)]
pub fn auth_form(props: &AuthProps) -> Html {
    let creating = use_state(|| false);
    let email = use_state(String::new);
    let password = use_state(String::new);
    let sending = use_state(|| false);
    let error = use_state(|| None::<String>);

    let input = |state: &UseStateHandle<String>| {
        let state = state.clone();
        Callback::from(move |event: InputEvent| state.set(event.target_unchecked_into::<HtmlInputElement>().value()))
    };
    let onsubmit = {
        let (creating, email, password, sending, error) = (creating.clone(), email.clone(), password.clone(), sending.clone(), error.clone());
        let (endpoints, on_signed_in) = (props.endpoints.clone(), props.on_signed_in.clone());
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            if *sending {
                return;
            }
            sending.set(true);
            error.set(None);
            let (create, email, password) = (*creating, (*email).clone(), (*password).clone());
            let (sending, error, endpoints, on_signed_in) = (sending.clone(), error.clone(), endpoints.clone(), on_signed_in.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match api::sign_in(&endpoints, &email, &password, create).await {
                    Ok(session) => on_signed_in.emit(session),
                    Err(message) => error.set(Some(message)),
                }
                sending.set(false);
            });
        })
    };
    let switch = {
        let (creating, error) = (creating.clone(), error.clone());
        Callback::from(move |_: MouseEvent| {
            creating.set(!*creating);
            error.set(None);
        })
    };
    let (title, action, other) = if *creating {
        ("Create an account", "Sign up", "I have an account: sign in")
    } else {
        ("Sign in", "Sign in", "New here? Create an account")
    };
    html! {
        <form class="auth-form" {onsubmit} aria-labelledby="auth-heading">
            <h2 id="auth-heading">{ title }</h2>
            <label for="email">{ "Email" }</label>
            <input id="email" type="email" autocomplete="email" required=true value={(*email).clone()} oninput={input(&email)} />
            <label for="password">{ "Password" }</label>
            <input id="password" type="password" required=true minlength="8" value={(*password).clone()} oninput={input(&password)}
                autocomplete={if *creating { "new-password" } else { "current-password" }} />
            if *creating {
                <p class="hint">{ "At least 8 characters." }</p>
            }
            <button type="submit" disabled={*sending}>{ if *sending { "Please wait…" } else { action } }</button>
            <button type="button" class="switch-mode" onclick={switch}>{ other }</button>
            if let Some(message) = &*error {
                <p class="error" role="alert">{ message }</p>
            }
        </form>
    }
}
