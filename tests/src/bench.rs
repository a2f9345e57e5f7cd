//! What the browser benchmarks (`tests/benches/`, `harness = false`) share: their runtime, their
//! settings from the environment, and giving up on a page with everything it shows.

use crate::chromium::Page;
use crate::harness::web::{SUMMARY_LINE_JS, dump};
use std::future::Future;
use std::time::Duration;

/// Runs a benchmark's body on a two-thread runtime, as the tests run.
pub fn block_on(body: impl Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(body);
}

/// A number from the environment (`RUNS=5`), or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Waits for `expression` on `page`; on timeout prints the page's summary and console and exits
/// the benchmark (a number measured on a broken call would mislead).
pub async fn wait_or_die(page: &Page, label: &str, what: &str, expression: &str, timeout: Duration) {
    if let Err(err) = page.wait_for(expression, timeout, SUMMARY_LINE_JS).await {
        eprintln!("{label}: {what}: {err:#}\n{}", dump(page, label).await);
        std::process::exit(1);
    }
}
