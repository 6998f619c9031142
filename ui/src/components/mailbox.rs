//! What reaches the page through the user's mailbox: the link that confirms the address (and
//! the banner offering it again until then), and resetting a forgotten password. A link carries
//! its token in the URL's fragment (`#verify=…`, `#reset=…`), which is read here, then removed
//! from the address bar and the history.

use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::api::{self, Endpoints};

/// A link from a mail this page was opened with.
#[derive(Clone, PartialEq)]
pub enum MailLink {
    Verify(String),
    Reset(String),
}

impl MailLink {
    /// The link in the page's address, if any, removing it from there so a reload or the
    /// history does not use it twice.
    pub fn take_from_location() -> Option<MailLink> {
        let window = web_sys::window()?;
        let hash = window.location().hash().ok()?;
        let (purpose, token) = hash.trim_start_matches('#').split_once('=')?;
        let link = match purpose {
            "verify" => MailLink::Verify(token.to_owned()),
            "reset" => MailLink::Reset(token.to_owned()),
            _ => return None,
        };
        if let Ok(history) = window.history() {
            let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&window.location().pathname().unwrap_or_default()));
        }
        Some(link)
    }
}

fn text_input(state: &UseStateHandle<String>) -> Callback<InputEvent> {
    let state = state.clone();
    Callback::from(move |event: InputEvent| state.set(event.target_unchecked_into::<HtmlInputElement>().value()))
}

#[derive(Properties, PartialEq)]
pub struct EndpointsProps {
    pub endpoints: Endpoints,
}

/// Until the address is confirmed nothing is mailed to it: says so, and sends the link again.
#[function_component(UnverifiedBanner)]
pub fn unverified_banner(props: &EndpointsProps) -> Html {
    let outcome = use_state(|| None::<Result<(), String>>);
    let resend = {
        let (outcome, endpoints) = (outcome.clone(), props.endpoints.clone());
        Callback::from(move |_: MouseEvent| {
            let (outcome, endpoints) = (outcome.clone(), endpoints.clone());
            wasm_bindgen_futures::spawn_local(async move { outcome.set(Some(api::resend_verification(&endpoints).await)) });
        })
    };
    html! {
        <p class="unverified" role="status">
            { "Your email address is not confirmed yet: nothing is mailed to it until you follow the link we sent. " }
            <button type="button" class="resend-verification" onclick={resend}>{ "Send the link again" }</button>
            { match &*outcome {
                Some(Ok(())) => html! { <span class="sent">{ " Sent: look in your inbox." }</span> },
                Some(Err(message)) => html! { <span class="error">{ format!(" {message}") }</span> },
                None => html! {},
            } }
        </p>
    }
}

#[derive(Properties, PartialEq)]
pub struct LinkProps {
    pub endpoints: Endpoints,
    pub token: String,
}

/// Confirms the address with the link's token, and says how it went.
#[function_component(VerifyNotice)]
pub fn verify_notice(props: &LinkProps) -> Html {
    let outcome = use_state(|| None::<Result<(), String>>);
    {
        let (outcome, endpoints, token) = (outcome.clone(), props.endpoints.clone(), props.token.clone());
        use_effect_with((), move |_| {
            wasm_bindgen_futures::spawn_local(async move { outcome.set(Some(api::verify_email(&endpoints, &token).await)) });
        });
    }
    match &*outcome {
        None => html! { <p role="status">{ "Confirming your email address…" }</p> },
        Some(Ok(())) => html! { <p class="verified" role="status">{ "Your email address is confirmed: verdicts will be mailed to it." }</p> },
        Some(Err(message)) => html! { <p class="error" role="alert">{ format!("The address is not confirmed: {message}") }</p> },
    }
}

/// A new password, with the link's token; every session ends, and tokens too when asked.
#[function_component(ResetPassword)]
pub fn reset_password(props: &LinkProps) -> Html {
    let password = use_state(String::new);
    let revoke_tokens = use_state(|| false);
    let outcome = use_state(|| None::<Result<(), String>>);
    let onsubmit = {
        let (password, revoke_tokens, outcome) = (password.clone(), revoke_tokens.clone(), outcome.clone());
        let (endpoints, token) = (props.endpoints.clone(), props.token.clone());
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let (password, revoke, outcome, endpoints, token) =
                ((*password).clone(), *revoke_tokens, outcome.clone(), endpoints.clone(), token.clone());
            wasm_bindgen_futures::spawn_local(async move { outcome.set(Some(api::confirm_reset(&endpoints, &token, &password, revoke).await)) });
        })
    };
    let toggle = {
        let revoke_tokens = revoke_tokens.clone();
        Callback::from(move |_: Event| revoke_tokens.set(!*revoke_tokens))
    };
    if let Some(Ok(())) = &*outcome {
        return html! { <p class="password-reset" role="status">{ "Your password is changed and every session ended. Reload the page to sign in with it." }</p> };
    }
    html! {
        <form class="auth-form reset-form" {onsubmit} aria-labelledby="reset-heading">
            <h2 id="reset-heading">{ "Choose a new password" }</h2>
            <label for="new-password">{ "New password" }</label>
            <input id="new-password" type="password" autocomplete="new-password" required=true minlength="8" value={(*password).clone()} oninput={text_input(&password)} />
            <p class="hint">{ "At least 8 characters. Every session of the account ends." }</p>
            <label class="checkbox"><input type="checkbox" checked={*revoke_tokens} onchange={toggle} />{ " Revoke every API token too" }</label>
            <button type="submit">{ "Change the password" }</button>
            if let Some(Err(message)) = &*outcome {
                <p class="error" role="alert">{ message }</p>
            }
        </form>
    }
}

/// Asks for a reset link; the answer is the same whether the address has an account or not.
#[function_component(ForgotPassword)]
pub fn forgot_password(props: &EndpointsProps) -> Html {
    let email = use_state(String::new);
    let outcome = use_state(|| None::<Result<(), String>>);
    let onsubmit = {
        let (email, outcome, endpoints) = (email.clone(), outcome.clone(), props.endpoints.clone());
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let (email, outcome, endpoints) = ((*email).clone(), outcome.clone(), endpoints.clone());
            wasm_bindgen_futures::spawn_local(async move { outcome.set(Some(api::request_reset(&endpoints, &email).await)) });
        })
    };
    html! {
        <form class="forgot-form" {onsubmit} aria-labelledby="forgot-heading">
            <h3 id="forgot-heading">{ "Forgot your password?" }</h3>
            <label for="forgot-email">{ "Email" }</label>
            <input id="forgot-email" type="email" autocomplete="email" required=true value={(*email).clone()} oninput={text_input(&email)} />
            <button type="submit">{ "Mail me a link" }</button>
            { match &*outcome {
                Some(Ok(())) => html! { <p role="status">{ "If an account has this address, a link to reset its password is on its way." }</p> },
                Some(Err(message)) => html! { <p class="error" role="alert">{ message }</p> },
                None => html! {},
            } }
        </form>
    }
}
