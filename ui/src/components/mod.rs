//! The page, one component per part of it.

pub mod app;
pub mod detail;
pub mod form;
pub mod list;
