//! HTTP load against the command API, with the verdicts observed over SSE on the query API.
//!
//! Closed loop: `concurrency` workers, each sending its next submission when the previous one
//! is answered: the maximum sustained throughput. Open loop: submissions are sent at a fixed
//! rate whatever the answers, each at its scheduled time in a task of its own, and latency is
//! measured from that scheduled time, so a slow answer delays no later send and the latency a
//! queue adds is counted (no coordinated omission).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde::Serialize;
use uuid::Uuid;

use crate::cpu::{Cost, Processes};

#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// Base URL of the command API.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub command_url: String,
    /// Base URL of the query API (for the SSE stream of verdicts).
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub query_url: String,
    /// `closed` (fixed concurrency) or `open` (fixed rate).
    #[arg(long, value_enum, default_value_t = Mode::Closed)]
    pub mode: Mode,
    /// Workers in closed loop.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Submissions per second in open loop.
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// How long to wait afterwards for the last verdicts, in seconds.
    #[arg(long, default_value_t = 15)]
    pub drain_seconds: u64,
    /// A personal API token to submit and read with (an admin's sees every verdict).
    #[arg(long, env = "CONTENT_PROCESSOR_TOKEN")]
    pub token: String,
}

/// A client sending `token` with every request.
pub fn client(token: &str, timeout: Option<Duration>) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse()?);
    let mut builder = reqwest::Client::builder().default_headers(headers);
    if let Some(timeout) = timeout {
        builder = builder.timeout(timeout);
    }
    Ok(builder.build()?)
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Closed,
    Open,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    pub(crate) fn of(h: &Histogram<u64>) -> Percentiles {
        let ms = |micros: u64| micros as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub mode: Mode,
    pub concurrency: Option<usize>,
    pub offered_rate: Option<u32>,
    pub seconds: f64,
    pub sent: u64,
    /// Answered 202.
    pub accepted: u64,
    /// Everything else, by kind ("503", "connect", "timeout", ...). Never counted as accepted.
    pub errors: BTreeMap<String, u64>,
    pub accepted_per_second: f64,
    /// Accepted submissions whose verdict reached the SSE client during the send window, per second.
    pub verdicts_per_second: f64,
    /// Accepted submissions whose verdict never arrived (within the drain time).
    pub verdicts_missing: u64,
    pub post_latency_ms: Percentiles,
    pub end_to_end_latency_ms: Percentiles,
    /// What the send window cost in CPU per accepted submission, when the processes were given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cost>,
}

/// Shared between the senders and the SSE reader.
#[derive(Default)]
pub(crate) struct Tracker {
    /// Accepted, verdict not seen yet: when the submission was (meant to be) sent.
    pub(crate) waiting: HashMap<Uuid, Instant>,
    /// Verdicts seen before their POST was answered.
    early: HashMap<Uuid, Instant>,
    pub(crate) post: Option<Histogram<u64>>,
    pub(crate) end_to_end: Option<Histogram<u64>>,
    pub(crate) accepted: u64,
    pub(crate) errors: BTreeMap<String, u64>,
    verdicts_in_window: u64,
    pub(crate) window_end: Option<Instant>,
}

impl Tracker {
    pub(crate) fn new() -> Tracker {
        let histogram = || Histogram::new_with_bounds(1, 600_000_000, 3).ok();
        Tracker { post: histogram(), end_to_end: histogram(), ..Tracker::default() }
    }

    fn record(histogram: &mut Option<Histogram<u64>>, from: Instant, to: Instant) {
        if let Some(h) = histogram {
            h.saturating_record(to.saturating_duration_since(from).as_micros().max(1) as u64);
        }
    }

    fn accepted(&mut self, id: Uuid, sent: Instant, answered: Instant) {
        self.accepted += 1;
        Tracker::record(&mut self.post, sent, answered);
        match self.early.remove(&id) {
            Some(verdict) => self.verdict_seen(sent, verdict),
            None => {
                self.waiting.insert(id, sent);
            }
        }
    }

    pub(crate) fn verdict(&mut self, id: Uuid, at: Instant) {
        match self.waiting.remove(&id) {
            Some(sent) => self.verdict_seen(sent, at),
            None => {
                self.early.insert(id, at);
            }
        }
    }

    fn verdict_seen(&mut self, sent: Instant, at: Instant) {
        Tracker::record(&mut self.end_to_end, sent, at);
        if self.window_end.is_none_or(|end| at <= end) {
            self.verdicts_in_window += 1;
        }
    }

    fn error(&mut self, kind: String) {
        *self.errors.entry(kind).or_default() += 1;
    }
}

fn content(i: u64) -> String {
    if i % 5 == 0 {
        "short".to_owned()
    } else {
        format!("load test submission {i}")
    }
}

pub async fn run(args: &LoadArgs) -> anyhow::Result<LoadReport> {
    run_metered(args, None).await
}

/// As [`run`], also reading what the send window cost `processes` in CPU.
pub async fn run_metered(args: &LoadArgs, processes: Option<&Processes>) -> anyhow::Result<LoadReport> {
    let http = client(&args.token, Some(Duration::from_secs(30)))?;
    let tracker = Arc::new(Mutex::new(Tracker::new()));
    let follower = tracker.clone();
    let verdicts = tokio::spawn(follow_verdicts(
        http.clone(),
        format!("{}/api/stream", args.query_url),
        None,
        || {},
        move |id, at| follower.lock().unwrap().verdict(id, at),
    ));
    // Let the stream connect before the first submission.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let url = format!("{}/api/submissions", args.command_url);
    let started = Instant::now();
    let window = Duration::from_secs(args.seconds);
    tracker.lock().unwrap().window_end = Some(started + window);
    let cpu_before = processes.map(Processes::read);
    let sent = match args.mode {
        Mode::Closed => closed_loop(&http, &url, args.concurrency, started + window, &tracker).await,
        Mode::Open => open_loop(&http, &url, args.rate, started + window, &tracker, Arc::default()).await,
    };

    let cpu = processes.zip(cpu_before).map(|(processes, before)| {
        let accepted = tracker.lock().unwrap().accepted;
        processes.read().since(&before, started.elapsed().as_secs_f64(), accepted)
    });

    let drain_until = Instant::now() + Duration::from_secs(args.drain_seconds);
    while Instant::now() < drain_until && !tracker.lock().unwrap().waiting.is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    verdicts.abort();

    let t = tracker.lock().unwrap();
    let seconds = window.as_secs_f64();
    Ok(LoadReport {
        mode: args.mode,
        concurrency: (args.mode == Mode::Closed).then_some(args.concurrency),
        offered_rate: (args.mode == Mode::Open).then_some(args.rate),
        seconds,
        sent,
        accepted: t.accepted,
        errors: t.errors.clone(),
        accepted_per_second: t.accepted as f64 / seconds,
        verdicts_per_second: t.verdicts_in_window as f64 / seconds,
        verdicts_missing: t.waiting.len() as u64,
        post_latency_ms: Percentiles::of(t.post.as_ref().expect("histogram bounds are valid")),
        end_to_end_latency_ms: Percentiles::of(t.end_to_end.as_ref().expect("histogram bounds are valid")),
        cpu,
    })
}

/// Sends one submission, as the owner of `token` if given (else with the client's own);
/// `sent` is when it was meant to go (open loop) or went (closed loop).
async fn submit(http: &reqwest::Client, url: &str, token: Option<&str>, i: u64, sent: Instant, tracker: &Mutex<Tracker>) {
    let mut request = http.post(url).json(&serde_json::json!({ "content": content(i) }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let outcome = request.send().await;
    let answered = Instant::now();
    let result = match outcome {
        Ok(response) if response.status() == reqwest::StatusCode::ACCEPTED => {
            match response.json::<serde_json::Value>().await.ok().and_then(|b| b["id"].as_str()?.parse().ok()) {
                Some(id) => Ok(id),
                None => Err("202 without an id".to_owned()),
            }
        }
        Ok(response) => Err(response.status().as_u16().to_string()),
        Err(error) if error.is_timeout() => Err("timeout".to_owned()),
        Err(error) if error.is_connect() => Err("connect".to_owned()),
        Err(_) => Err("other".to_owned()),
    };
    let mut t = tracker.lock().unwrap();
    match result {
        Ok(id) => t.accepted(id, sent, answered),
        Err(kind) => t.error(kind),
    }
}

async fn closed_loop(http: &reqwest::Client, url: &str, concurrency: usize, until: Instant, tracker: &Arc<Mutex<Tracker>>) -> u64 {
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (http, url, tracker, next) = (http.clone(), url.to_owned(), tracker.clone(), next.clone());
            tokio::spawn(async move {
                while Instant::now() < until {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    submit(&http, &url, None, i, Instant::now(), &tracker).await;
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
    next.load(std::sync::atomic::Ordering::Relaxed)
}

/// Sends at `rate` per second until `until`; submission `i` is sent as the owner of
/// `tokens[i % len]` (with the client's own token when there are none).
pub(crate) async fn open_loop(
    http: &reqwest::Client,
    url: &str,
    rate: u32,
    until: Instant,
    tracker: &Arc<Mutex<Tracker>>,
    tokens: Arc<[String]>,
) -> u64 {
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let start = Instant::now();
    let mut in_flight = Vec::new();
    let mut i = 0u64;
    loop {
        let scheduled = start + interval.mul_f64(i as f64);
        if scheduled >= until {
            break;
        }
        tokio::time::sleep_until(scheduled.into()).await;
        let (http, url, tracker, tokens) = (http.clone(), url.to_owned(), tracker.clone(), tokens.clone());
        in_flight.push(tokio::spawn(async move {
            let token = (!tokens.is_empty()).then(|| tokens[i as usize % tokens.len()].as_str());
            submit(&http, &url, token, i, scheduled, &tracker).await
        }));
        i += 1;
    }
    for request in in_flight {
        let _ = request.await;
    }
    i
}

/// Reads verdicts from the SSE stream at `url` (as the owner of `token`, if given) until
/// aborted, calling `connected` for each connection made and `verdict` for each verdict;
/// reconnects, resuming, if the stream drops.
pub(crate) async fn follow_verdicts(
    http: reqwest::Client,
    url: String,
    token: Option<String>,
    connected: impl Fn(),
    mut verdict: impl FnMut(Uuid, Instant),
) {
    let mut last_event_id: Option<String> = None;
    loop {
        let mut request = http.get(&url).timeout(Duration::from_secs(3600));
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        if let Some(id) = &last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = match request.send().await {
            Ok(response) if response.status().is_success() => response,
            _ => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        connected();
        let mut events = eventsource_stream::EventStream::new(response.bytes_stream());
        while let Some(Ok(event)) = events.next().await {
            let at = Instant::now();
            last_event_id = Some(event.id.clone());
            if event.event != "status" {
                continue;
            }
            let Ok(data) = serde_json::from_str::<serde_json::Value>(&event.data) else { continue };
            if matches!(data["status"].as_str(), Some("PASSED" | "FAILED")) {
                if let Some(id) = data["submission_id"].as_str().and_then(|s| s.parse().ok()) {
                    verdict(id, at);
                }
            }
        }
    }
}
