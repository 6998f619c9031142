//! The live feeds: one `EventSource` on `/api/stream`, and one per batch being watched.
//!
//! The browser reconnects by itself after a network error and sends `Last-Event-ID`, and the
//! server resumes right after that event, so a reconnect neither loses nor repeats a change.

use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{Event, EventSource, MessageEvent};
use yew::Callback;

use crate::model::{BatchView, StatusChange};

/// Calls `callback` with the JSON data of every `name` event of `source`.
fn on_json<T: serde::de::DeserializeOwned + 'static>(
    source: &EventSource,
    name: &str,
    callback: Callback<T>,
) -> Option<Closure<dyn FnMut(MessageEvent)>> {
    let listener = Closure::<dyn FnMut(MessageEvent)>::new(move |message: MessageEvent| {
        let Some(data) = message.data().as_string() else { return };
        if let Ok(value) = serde_json::from_str::<T>(&data) {
            callback.emit(value);
        }
    });
    source.add_event_listener_with_callback(name, listener.as_ref().unchecked_ref()).ok()?;
    Some(listener)
}

/// What the user is told about the live connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    Connecting,
    Live,
    Reconnecting,
    /// The browser gave up (the server refused the stream); only a reload helps.
    Closed,
}

impl Connection {
    pub fn label(self) -> &'static str {
        match self {
            Connection::Connecting => "Connecting…",
            Connection::Live => "Live",
            Connection::Reconnecting => "Connection lost, reconnecting…",
            Connection::Closed => "Disconnected: reload the page to reconnect",
        }
    }
}

/// An open feed; dropping it closes the connection.
pub struct LiveFeed {
    source: EventSource,
    _on_status: Closure<dyn FnMut(MessageEvent)>,
    _on_reset: Closure<dyn FnMut(MessageEvent)>,
    _on_open: Closure<dyn FnMut(Event)>,
    _on_error: Closure<dyn FnMut(Event)>,
}

impl LiveFeed {
    /// `on_reset` is called when the server says the read model was rebuilt: reload over REST.
    pub fn open(url: &str, on_change: Callback<StatusChange>, on_state: Callback<Connection>, on_reset: Callback<()>) -> Option<LiveFeed> {
        let source = EventSource::new(url).ok()?;
        let on_status = on_json(&source, "status", on_change)?;
        let on_reset = Closure::<dyn FnMut(MessageEvent)>::new(move |_| on_reset.emit(()));
        source.add_event_listener_with_callback("reset", on_reset.as_ref().unchecked_ref()).ok()?;

        let opened = on_state.clone();
        let on_open = Closure::<dyn FnMut(Event)>::new(move |_| opened.emit(Connection::Live));
        source.set_onopen(Some(on_open.as_ref().unchecked_ref()));

        let watched = source.clone();
        let on_error = Closure::<dyn FnMut(Event)>::new(move |_| {
            let state = if watched.ready_state() == EventSource::CLOSED { Connection::Closed } else { Connection::Reconnecting };
            on_state.emit(state);
        });
        source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        Some(LiveFeed { source, _on_status: on_status, _on_reset: on_reset, _on_open: on_open, _on_error: on_error })
    }
}

impl Drop for LiveFeed {
    fn drop(&mut self) {
        self.source.close();
    }
}

/// A batch's counts, live: the server sends a snapshot, then the counts after every change, and
/// a fresh snapshot whenever the browser reconnects.
pub struct CountsFeed {
    source: EventSource,
    _on_counts: Closure<dyn FnMut(MessageEvent)>,
}

impl CountsFeed {
    pub fn open(url: &str, on_counts: Callback<BatchView>) -> Option<CountsFeed> {
        let source = EventSource::new(url).ok()?;
        let on_counts = on_json(&source, "counts", on_counts)?;
        Some(CountsFeed { source, _on_counts: on_counts })
    }
}

impl Drop for CountsFeed {
    fn drop(&mut self) {
        self.source.close();
    }
}
