//! The page. Signed out: the sign-in (or sign-up) form. Signed in: the account bar, and either
//! the API tokens, the notifications, the operations dashboard (admins only) or the board: form, connection state, the user's own submissions with "load
//! more", and the detail of the selected one. The board opens the live feed first and loads the
//! first page each time the feed (re)connects or the server says the read model was rebuilt;
//! merging only moves statuses forward, so the order of the two never matters.

use std::rc::Rc;

use yew::prelude::*;

use super::auth::AuthForm;
use super::batch::BatchForm;
use super::dashboard::Dashboard;
use super::detail::Detail;
use super::form::SubmitForm;
use super::list::SubmissionList;
use super::mailbox::{ForgotPassword, MailLink, ResetPassword, UnverifiedBanner, VerifyNotice};
use super::notifications::Notifications;
use super::tokens::Tokens;
use super::your_data::YourData;
use crate::api::{self, Endpoints};
use crate::live::{Connection, LiveFeed};
use crate::model::{Board, Page, Session, StatusChange, SubmissionView};

/// Every change to the list goes through here.
pub enum BoardAction {
    Page { page: Page<SubmissionView>, first: bool },
    Accepted(SubmissionView),
    Live(StatusChange),
}

#[derive(Default, PartialEq)]
pub struct BoardState(pub Board);

impl Reducible for BoardState {
    type Action = BoardAction;

    fn reduce(self: Rc<Self>, action: BoardAction) -> Rc<Self> {
        let mut board = self.0.clone();
        match action {
            BoardAction::Page { page, first } => board.merge_page(page, first),
            BoardAction::Accepted(view) => board.upsert(view),
            BoardAction::Live(change) => board.apply(change),
        }
        Rc::new(BoardState(board))
    }
}

/// What the signed-in page shows below the account bar.
#[derive(Clone, Copy, PartialEq)]
enum View {
    Board,
    Tokens,
    YourData,
    Notifications,
    /// Admins only.
    Operations,
}

/// Whether someone is signed in, once the page knows.
#[derive(Clone, PartialEq)]
enum SignedIn {
    Unknown,
    No(Option<String>),
    Yes(Session),
}

#[function_component(App)]
pub fn app() -> Html {
    let endpoints = use_state(|| None::<Endpoints>);
    let signed_in = use_state(|| SignedIn::Unknown);
    let view = use_state(|| View::Board);
    let sign_out_error = use_state(|| None::<String>);
    // A link from a mail the page was opened with, taken from the address once.
    let mail_link = use_state(MailLink::take_from_location);

    // Where the APIs are, and who is signed in, once.
    {
        let (endpoints, signed_in) = (endpoints.clone(), signed_in.clone());
        use_effect_with((), move |_| {
            wasm_bindgen_futures::spawn_local(async move {
                let found = Endpoints::load().await;
                signed_in.set(match api::session(&found).await {
                    Ok(Some(session)) => SignedIn::Yes(session),
                    Ok(None) => SignedIn::No(None),
                    Err(message) => SignedIn::No(Some(message)),
                });
                endpoints.set(Some(found));
            });
        });
    }

    let Some(base) = (*endpoints).clone() else {
        return html! { <main><p>{ "Loading…" }</p></main> };
    };
    if let Some(MailLink::Reset(token)) = &*mail_link {
        return html! {
            <main>
                <header><h1>{ "Content processor" }</h1></header>
                <ResetPassword endpoints={base} token={token.clone()} />
            </main>
        };
    }
    let verifying = match &*mail_link {
        Some(MailLink::Verify(token)) => html! { <VerifyNotice endpoints={base.clone()} token={token.clone()} /> },
        _ => html! {},
    };
    let session = match &*signed_in {
        SignedIn::Unknown => return html! { <main><p>{ "Loading…" }</p></main> },
        SignedIn::No(problem) => {
            let signed_in = signed_in.clone();
            let on_signed_in = Callback::from(move |session| signed_in.set(SignedIn::Yes(session)));
            return html! {
                <main>
                    <header><h1>{ "Content processor" }</h1></header>
                    { verifying }
                    if let Some(message) = problem {
                        <p class="error" role="alert">{ message }</p>
                    }
                    <AuthForm endpoints={base.clone()} {on_signed_in} />
                    if base.mail {
                        <ForgotPassword endpoints={base} />
                    }
                </main>
            };
        }
        SignedIn::Yes(session) => session.clone(),
    };
    let endpoints = Endpoints { csrf_token: session.csrf_token.clone(), ..base };
    // Signs out of this session, or of every session of the account.
    let sign_out = |everywhere: bool| {
        let (signed_in, sign_out_error, endpoints) = (signed_in.clone(), sign_out_error.clone(), endpoints.clone());
        Callback::from(move |_: MouseEvent| {
            let (signed_in, sign_out_error, endpoints) = (signed_in.clone(), sign_out_error.clone(), endpoints.clone());
            wasm_bindgen_futures::spawn_local(async move {
                let ended = if everywhere { api::sign_out_everywhere(&endpoints).await } else { api::sign_out(&endpoints).await };
                match ended {
                    Ok(()) => {
                        sign_out_error.set(None);
                        signed_in.set(SignedIn::No(None));
                    }
                    // The session may still be alive on the server: stay signed in and say so.
                    Err(message) => sign_out_error.set(Some(format!("Not signed out: {message}"))),
                }
            });
        })
    };
    // A view's button shows it, or the board again when it is showing.
    let switch_to = |target: View| {
        let view = view.clone();
        Callback::from(move |_: MouseEvent| view.set(if *view == target { View::Board } else { target }))
    };
    let is_admin = session.account.is_admin();
    html! {
        <main>
            <header>
                <h1>{ "Content processor" }</h1>
                <nav class="account" aria-label="Account">
                    <span class="email">{ &session.account.email }</span>
                    if is_admin {
                        <span class="role">{ "admin" }</span>
                        <button type="button" class="show-operations" aria-pressed={(*view == View::Operations).to_string()} onclick={switch_to(View::Operations)}>
                            { if *view == View::Operations { "Back to submissions" } else { "Operations" } }
                        </button>
                    }
                    <button type="button" class="show-notifications" aria-pressed={(*view == View::Notifications).to_string()} onclick={switch_to(View::Notifications)}>
                        { if *view == View::Notifications { "Back to submissions" } else { "Notifications" } }
                    </button>
                    <button type="button" class="show-tokens" aria-pressed={(*view == View::Tokens).to_string()} onclick={switch_to(View::Tokens)}>
                        { if *view == View::Tokens { "Back to submissions" } else { "API tokens" } }
                    </button>
                    <button type="button" class="show-your-data" aria-pressed={(*view == View::YourData).to_string()} onclick={switch_to(View::YourData)}>
                        { if *view == View::YourData { "Back to submissions" } else { "Your data" } }
                    </button>
                    <button type="button" class="sign-out" onclick={sign_out(false)}>{ "Sign out" }</button>
                    <button type="button" class="sign-out-everywhere" onclick={sign_out(true)}>{ "Sign out everywhere" }</button>
                </nav>
            </header>
            { verifying }
            if endpoints.mail && !session.account.email_verified && !matches!(&*mail_link, Some(MailLink::Verify(_))) {
                <UnverifiedBanner endpoints={endpoints.clone()} />
            }
            if let Some(message) = &*sign_out_error {
                <p class="error" role="alert">{ message }</p>
            }
            { match *view {
                View::Tokens => html! { <Tokens endpoints={endpoints} /> },
                View::YourData => {
                    let signed_in = signed_in.clone();
                    html! { <YourData endpoints={endpoints} on_deleted={Callback::from(move |()| signed_in.set(SignedIn::No(None)))} /> }
                }
                View::Notifications => html! { <Notifications endpoints={endpoints} /> },
                View::Operations if is_admin => html! { <Dashboard endpoints={endpoints} /> },
                View::Operations => html! {},
                View::Board => html! { <BoardView {endpoints} show_owner={is_admin} /> },
            } }
        </main>
    }
}

#[derive(Properties, PartialEq)]
pub struct BoardProps {
    pub endpoints: Endpoints,
    /// An admin's board shows everyone's submissions, with who made each.
    pub show_owner: bool,
}

/// The signed-in user's submissions, live.
#[function_component(BoardView)]
pub fn board_view(props: &BoardProps) -> Html {
    let endpoints = props.endpoints.clone();
    let board = use_reducer(BoardState::default);
    let connection = use_state(|| Connection::Connecting);
    let selected = use_state(|| None::<String>);
    let load_error = use_state(|| None::<String>);

    // The live feed, and the first page each time it (re)connects.
    {
        let (board, connection, load_error) = (board.dispatcher(), connection.setter(), load_error.setter());
        use_effect_with(endpoints.clone(), move |endpoints| {
            let feed = {
                let endpoints = endpoints.clone();
                let on_change = {
                    let board = board.clone();
                    Callback::from(move |change| board.dispatch(BoardAction::Live(change)))
                };
                let stream_url = endpoints.stream_url();
                // The first page, again on every (re)connect and after a rebuild: merging only
                // moves entries forward, so reloading never loses or duplicates one.
                let reload = Callback::from(move |()| {
                    let (board, load_error, endpoints) = (board.clone(), load_error.clone(), endpoints.clone());
                    wasm_bindgen_futures::spawn_local(async move {
                        match api::page(&endpoints, None).await {
                            Ok(page) => {
                                load_error.set(None);
                                board.dispatch(BoardAction::Page { page, first: true });
                            }
                            Err(message) => load_error.set(Some(message)),
                        }
                    });
                });
                let on_state = {
                    let reload = reload.clone();
                    Callback::from(move |state: Connection| {
                        connection.set(state);
                        if state == Connection::Live {
                            reload.emit(());
                        }
                    })
                };
                LiveFeed::open(&stream_url, on_change, on_state, reload)
            };
            move || drop(feed)
        });
    }

    let on_accepted = {
        let board = board.dispatcher();
        Callback::from(move |view| board.dispatch(BoardAction::Accepted(view)))
    };
    let on_select = {
        let selected = selected.clone();
        Callback::from(move |id: String| selected.set(Some(id)))
    };
    let on_close = {
        let selected = selected.clone();
        Callback::from(move |()| selected.set(None))
    };
    let load_more = board.0.next_cursor.clone().map(|cursor| {
        let (board, load_error, endpoints) = (board.dispatcher(), load_error.clone(), endpoints.clone());
        Callback::from(move |_: MouseEvent| {
            let (board, load_error, endpoints, cursor) = (board.clone(), load_error.clone(), endpoints.clone(), cursor.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match api::page(&endpoints, Some(&cursor)).await {
                    Ok(page) => board.dispatch(BoardAction::Page { page, first: false }),
                    Err(message) => load_error.set(Some(message)),
                }
            });
        })
    });
    let detail = selected.as_ref().and_then(|id| board.0.get(id)).cloned();
    let connection_class = format!("connection {}", format!("{:?}", *connection).to_lowercase());

    html! {
        <>
            <p class={connection_class} role="status" aria-live="polite">
                <span aria-hidden="true">{ "● " }</span>{ connection.label() }
            </p>
            <div class="forms">
                <SubmitForm endpoints={endpoints.clone()} {on_accepted} />
                <BatchForm endpoints={endpoints.clone()} />
            </div>
            if let Some(message) = &*load_error {
                <p class="error" role="alert">{ message }</p>
            }
            <div class="panes">
                <section class="list" aria-labelledby="list-heading">
                    <h2 id="list-heading">{ "Submissions" }</h2>
                    if board.0.loaded {
                        <SubmissionList entries={board.0.entries.clone()} selected={(*selected).clone()} {on_select} show_owner={props.show_owner} />
                    } else {
                        <p>{ "Loading…" }</p>
                    }
                    if let Some(onclick) = load_more {
                        <button type="button" class="load-more" {onclick}>{ "Load more" }</button>
                    }
                </section>
                if let Some(submission) = detail {
                    <Detail endpoints={endpoints.clone()} {submission} {on_close} />
                }
            </div>
        </>
    }
}
