//! Logging through `tracing`. `RUST_LOG` overrides the default filter; `LOG_FORMAT=json`
//! switches to one JSON object per line for log collectors.

use tracing_subscriber::EnvFilter;

pub fn init(default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // try_init: tests and the one-process mode may call this more than once.
    let _ = if std::env::var("LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// For tests: logs go through the test harness's capture, shown only for failing tests.
pub fn init_for_tests(default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}
