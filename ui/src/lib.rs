//! The browser UI: one page to submit content and watch every submission move
//! PENDING -> PROCESSING -> PASSED | FAILED live, over server-sent events.
//!
//! Client-side rendered Yew, compiled to WebAssembly by `scripts/build-ui` and served by the
//! query API (and the one-process mode) at `/`. Everything users typed is rendered as text,
//! never as markup: Yew escapes text nodes, and nothing here sets inner HTML.

pub mod api;
pub mod components;
pub mod live;
pub mod model;
pub mod operations;

pub use components::app::App;

/// Entry point when loaded in the browser.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn start() {
    yew::Renderer::<App>::new().render();
}
