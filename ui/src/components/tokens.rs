//! Personal API tokens: create one (shown once, to copy), see when each was used, revoke.

use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::api::{self, Endpoints};
use crate::model::{clock_time, Page, TokenView};

#[derive(Properties, PartialEq)]
pub struct TokensProps {
    pub endpoints: Endpoints,
}

#[function_component(Tokens)]
pub fn tokens(props: &TokensProps) -> Html {
    let list = use_state(|| None::<Page<TokenView>>);
    let name = use_state(String::new);
    let created = use_state(|| None::<String>);
    let error = use_state(|| None::<String>);
    let reload = {
        let (list, error, endpoints) = (list.clone(), error.clone(), props.endpoints.clone());
        Callback::from(move |()| {
            let (list, error, endpoints) = (list.clone(), error.clone(), endpoints.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match api::tokens(&endpoints, None).await {
                    Ok(tokens) => list.set(Some(tokens)),
                    Err(message) => error.set(Some(message)),
                }
            });
        })
    };
    {
        let reload = reload.clone();
        use_effect_with((), move |_| reload.emit(()));
    }
    let oninput = {
        let name = name.clone();
        Callback::from(move |event: InputEvent| name.set(event.target_unchecked_into::<HtmlInputElement>().value()))
    };
    let onsubmit = {
        let (name, created, error, reload, endpoints) = (name.clone(), created.clone(), error.clone(), reload.clone(), props.endpoints.clone());
        Callback::from(move |event: SubmitEvent| {
            event.prevent_default();
            let (name, created, error, reload, endpoints) = (name.clone(), created.clone(), error.clone(), reload.clone(), endpoints.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match api::create_token(&endpoints, &name).await {
                    Ok(token) => {
                        created.set(Some(token.token));
                        name.set(String::new());
                        error.set(None);
                        reload.emit(());
                    }
                    Err(message) => error.set(Some(message)),
                }
            });
        })
    };
    let revoke = |id: String| {
        let (error, reload, endpoints) = (error.clone(), reload.clone(), props.endpoints.clone());
        Callback::from(move |_: MouseEvent| {
            let (id, error, reload, endpoints) = (id.clone(), error.clone(), reload.clone(), endpoints.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match api::revoke_token(&endpoints, &id).await {
                    Ok(()) => reload.emit(()),
                    Err(message) => error.set(Some(message)),
                }
            });
        })
    };
    // Older tokens, a page at a time, after those shown.
    let show_older = list.as_ref().and_then(|page| page.next_cursor.clone()).map(|cursor| {
        let (list, error, endpoints) = (list.clone(), error.clone(), props.endpoints.clone());
        Callback::from(move |_: MouseEvent| {
            let (list, error, endpoints, cursor) = (list.clone(), error.clone(), endpoints.clone(), cursor.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match api::tokens(&endpoints, Some(&cursor)).await {
                    Ok(older) => {
                        let mut items = list.as_ref().map(|shown| shown.items.clone()).unwrap_or_default();
                        items.extend(older.items);
                        list.set(Some(Page { items, next_cursor: older.next_cursor }));
                    }
                    Err(message) => error.set(Some(message)),
                }
            });
        })
    });
    html! {
        <section class="tokens" aria-labelledby="tokens-heading">
            <h2 id="tokens-heading">{ "API tokens" }</h2>
            <p>{ "Scripts send a token as " }<code>{ "Authorization: Bearer <token>" }</code>{ "." }</p>
            <form class="new-token" {onsubmit}>
                <label for="token-name">{ "Name" }</label>
                <input id="token-name" required=true maxlength="100" value={(*name).clone()} {oninput} />
                <button type="submit" disabled={name.trim().is_empty()}>{ "Create token" }</button>
            </form>
            if let Some(token) = &*created {
                <p class="created-token" role="status">
                    { "Copy it now, it is not shown again: " }<code class="token">{ token }</code>
                </p>
            }
            if let Some(message) = &*error {
                <p class="error" role="alert">{ message }</p>
            }
            if let Some(Page { items: tokens, .. }) = &*list {
                if tokens.is_empty() {
                    <p class="empty">{ "No tokens yet." }</p>
                } else {
                    <ul class="token-list">
                        { for tokens.iter().map(|token| html! {
                            <li class="token-item" data-id={token.id.clone()}>
                                <span class="name">{ &token.name }</span>
                                <span class="used">{ token.last_used_at.as_deref().map_or("never used".to_owned(), |at| format!("last used {}", clock_time(at))) }</span>
                                if token.revoked_at.is_some() {
                                    <span class="revoked">{ "revoked" }</span>
                                } else {
                                    <button type="button" class="revoke" onclick={revoke(token.id.clone())}>{ "Revoke" }</button>
                                }
                            </li>
                        }) }
                    </ul>
                }
            }
            if let Some(onclick) = show_older {
                <button type="button" class="show-older" {onclick}>{ "Show older tokens" }</button>
            }
        </section>
    }
}
