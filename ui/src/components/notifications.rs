//! Notifications: which channels to be told on, webhook endpoints (the signing secret is shown
//! once), a test event per endpoint, and every delivery with its attempts.

use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::api::{self, Endpoints};
use crate::model::{clock_time, Delivery, NotificationSettings, WebhookEndpoint};

#[derive(Properties, PartialEq)]
pub struct NotificationsProps {
    pub endpoints: Endpoints,
}

/// What the page shows, loaded together.
#[derive(Clone, PartialEq)]
struct Loaded {
    settings: NotificationSettings,
    webhooks: Vec<WebhookEndpoint>,
    deliveries: Vec<Delivery>,
}

async fn load(endpoints: &Endpoints) -> Result<Loaded, String> {
    Ok(Loaded {
        settings: api::notification_settings(endpoints).await?,
        webhooks: api::webhooks(endpoints).await?,
        deliveries: api::deliveries(endpoints).await?,
    })
}

#[function_component(Notifications)]
pub fn notifications(props: &NotificationsProps) -> Html {
    let loaded = use_state(|| None::<Loaded>);
    let error = use_state(|| None::<String>);
    let url = use_state(String::new);
    let secret = use_state(|| None::<String>);
    let reload = {
        let (loaded, error, endpoints) = (loaded.clone(), error.clone(), props.endpoints.clone());
        Callback::from(move |()| {
            let (loaded, error, endpoints) = (loaded.clone(), error.clone(), endpoints.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match load(&endpoints).await {
                    Ok(found) => loaded.set(Some(found)),
                    Err(message) => error.set(Some(message)),
                }
            });
        })
    };
    {
        let reload = reload.clone();
        use_effect_with((), move |_| reload.emit(()));
    }
    // Runs `call`, then reloads the page's data, or shows why it failed.
    let act = {
        let (error, reload) = (error.clone(), reload.clone());
        move |call: std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>>>>| {
            let (error, reload) = (error.clone(), reload.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match call.await {
                    Ok(()) => {
                        error.set(None);
                        reload.emit(());
                    }
                    Err(message) => error.set(Some(message)),
                }
            });
        }
    };
    let toggle = |channel: &'static str, on: bool| {
        let (act, endpoints) = (act.clone(), props.endpoints.clone());
        Callback::from(move |_: Event| {
            let endpoints = endpoints.clone();
            act(Box::pin(async move { api::set_channel(&endpoints, channel, on).await.map(drop) }));
        })
    };
    let oninput = {
        let url = url.clone();
        Callback::from(move |event: InputEvent| url.set(event.target_unchecked_into::<HtmlInputElement>().value()))
    };
    let onsubmit = {
        let (url, secret, act, endpoints) = (url.clone(), secret.clone(), act.clone(), props.endpoints.clone());
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let (url, secret, endpoints) = (url.clone(), secret.clone(), endpoints.clone());
            act(Box::pin(async move {
                let created = api::create_webhook(&endpoints, &url).await?;
                secret.set(Some(created.secret));
                url.set(String::new());
                Ok(())
            }));
        })
    };
    let on_endpoint = |id: &str, test: bool| {
        let (id, act, endpoints) = (id.to_owned(), act.clone(), props.endpoints.clone());
        Callback::from(move |_: MouseEvent| {
            let (id, endpoints) = (id.clone(), endpoints.clone());
            act(Box::pin(async move {
                if test {
                    api::test_webhook(&endpoints, &id).await
                } else {
                    api::delete_webhook(&endpoints, &id).await
                }
            }));
        })
    };
    let refresh = reload.reform(|_: MouseEvent| ());

    html! {
        <section class="notifications" aria-labelledby="notifications-heading">
            <h2 id="notifications-heading">{ "Notifications" }</h2>
            if let Some(message) = &*error {
                <p class="error" role="alert">{ message }</p>
            }
            if let Some(found) = &*loaded {
                <fieldset class="channels">
                    <legend>{ "Tell me when a verdict lands (one message per batch)" }</legend>
                    <label>
                        <input type="checkbox" class="channel-email" checked={found.settings.email} onchange={toggle("email", !found.settings.email)} />
                        { format!(" by email to {}", found.settings.email_address) }
                        if !found.settings.email_available {
                            <span class="note">{ " (this installation sends no email)" }</span>
                        }
                    </label>
                    <label>
                        <input type="checkbox" class="channel-webhooks" checked={found.settings.webhooks} onchange={toggle("webhooks", !found.settings.webhooks)} />
                        { " by webhook" }
                    </label>
                </fieldset>
                <h3>{ "Webhook endpoints" }</h3>
                <form class="new-webhook" {onsubmit}>
                    <label for="webhook-url">{ "URL" }</label>
                    <input id="webhook-url" type="url" required=true placeholder="https://example.com/hooks" value={(*url).clone()} {oninput} />
                    <button type="submit" disabled={url.trim().is_empty()}>{ "Add endpoint" }</button>
                </form>
                if let Some(secret) = &*secret {
                    <p class="created-secret" role="status">
                        { "Signing secret, shown once (verify the webhook-signature header with it): " }<code class="secret">{ secret }</code>
                    </p>
                }
                if found.webhooks.is_empty() {
                    <p class="empty">{ "No endpoints yet." }</p>
                } else {
                    <ul class="webhook-list">
                        { for found.webhooks.iter().map(|w| html! {
                            <li class="webhook" data-id={w.id.clone()}>
                                <code class="url">{ &w.url }</code>
                                <button type="button" class="send-test" onclick={on_endpoint(&w.id, true)}>{ "Send test event" }</button>
                                <button type="button" class="delete" onclick={on_endpoint(&w.id, false)}>{ "Delete" }</button>
                            </li>
                        }) }
                    </ul>
                }
                <h3>{ "Deliveries" }<button type="button" class="refresh" onclick={refresh}>{ "Refresh" }</button></h3>
                if found.deliveries.is_empty() {
                    <p class="empty">{ "Nothing sent yet." }</p>
                } else {
                    <ol class="deliveries">
                        { for found.deliveries.iter().map(|d| delivery(d, &found.webhooks)) }
                    </ol>
                }
            } else {
                <p>{ "Loading…" }</p>
            }
        </section>
    }
}

fn delivery(d: &Delivery, webhooks: &[WebhookEndpoint]) -> Html {
    let target = match &d.endpoint_id {
        None => "email".to_owned(),
        Some(id) => webhooks.iter().find(|w| &w.id == id).map_or_else(|| "a deleted endpoint".to_owned(), |w| w.url.clone()),
    };
    html! {
        <li class="delivery" data-state={d.state.clone()}>
            <span class={format!("state {}", d.state)}>{ &d.state }</span>
            { " " }<strong>{ &d.event_type }</strong>{ " → " }<span class="target">{ target }</span>
            if let Some(at) = &d.next_attempt_at {
                <span class="next">{ format!(" (next attempt {})", clock_time(at)) }</span>
            }
            <ol class="attempts">
                { for d.attempt_log.iter().map(|a| html! {
                    <li class="attempt">
                        <time datetime={a.attempted_at.clone()}>{ clock_time(&a.attempted_at) }</time>
                        { format!(" attempt {}", a.attempt) }
                        if let Some(code) = a.status_code {
                            <span class="status-code">{ format!(" HTTP {code}") }</span>
                        }
                        if let Some(error) = &a.error {
                            <span class="attempt-error">{ format!(" — {error}") }</span>
                        }
                    </li>
                }) }
            </ol>
        </li>
    }
}
