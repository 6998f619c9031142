//! The heart of content-processor: what happened (events), what it means (the fold) and how
//! content is judged (the rule). Pure code with no I/O, so every other crate can trust it and
//! every property of it can be tested in microseconds.

pub mod event;
pub mod fold;
pub mod position;
pub mod rule;

pub use event::{AccountId, BatchId, BatchItem, Content, DecodeError, Envelope, Event, EventId, FailureReason, SubmissionId};
pub use fold::{Applied, Status, Submission, TransitionError};
pub use position::Position;
pub use rule::{judge, Verdict};
