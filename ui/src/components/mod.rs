//! The page, one component per part of it.

pub mod app;
pub mod auth;
pub mod batch;
pub mod dashboard;
pub mod detail;
pub mod form;
pub mod list;
pub mod mailbox;
pub mod notifications;
pub mod record_browser;
pub mod tokens;
pub mod your_data;
