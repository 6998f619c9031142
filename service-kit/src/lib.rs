//! Plumbing every HTTP service shares, kept out of the services so each of them reads as its
//! own job: serving a router the same way everywhere ([`http_server`]), `/healthz` and
//! `/readyz` ([`health`]), `/metrics` ([`metrics`]), JSON error bodies ([`http_error`]), pages
//! of lists ([`page`]), graceful shutdown ([`shutdown`]), logging and tracing ([`telemetry`],
//! [`trace_context`]), PostgreSQL connections ([`postgres`]), the periodic deletion of expired
//! rows ([`retention`]), settings that must not be logged ([`secret`]) and the OpenAPI document
//! ([`openapi`]). Nothing here talks to Kafka: that is `kafka-kit`, which only the services
//! that use the broker link.

/// Where every component finds PostgreSQL unless told otherwise (`DATABASE_URL`).
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/content_processor";

/// A service's settings as its command line gives them with no flags and without reading the
/// environment: the defaults, defined once on the flags themselves. Code that builds a
/// configuration (the one-process mode, the tests) starts from here, so a `KAFKA_BROKERS` in a
/// developer's shell cannot redirect it.
pub fn default_config<T: clap::Parser>() -> T {
    let command = T::command().mut_args(|arg| arg.env(None::<&str>));
    let name = command.get_name().to_owned();
    let matches = command.try_get_matches_from([name]).expect("every flag has a default");
    T::from_arg_matches(&matches).expect("every flag has a default")
}

pub mod health;
pub mod http_error;
pub mod http_server;
pub mod metrics;
pub mod openapi;
pub mod page;
pub mod postgres;
pub mod retention;
pub mod secret;
pub mod shutdown;
pub mod telemetry;
pub mod trace_context;

/// The PostgreSQL channel the projector NOTIFYs after each commit (and after a read-model
/// switch), and the query side LISTENs on.
pub const READ_MODEL_CHANGES: &str = "submission_events";

/// The PostgreSQL channel the query side NOTIFYs when a read waits for a position the read model
/// has not reached, and the projector LISTENs on: it answers by writing where the topic's
/// partitions end now into `public.log_end`, so that a position past the end is refused rather
/// than waited for. These two channels and the tables behind them are the whole contract between
/// the two over the database.
pub const LOG_END_WANTED: &str = "log_end_wanted";
