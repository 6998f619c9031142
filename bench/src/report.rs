//! Tables for people; the JSON is written by the suite.

use crate::load::LoadReport;

pub fn print_load(r: &LoadReport) {
    let what = match (r.concurrency, r.offered_rate) {
        (Some(c), _) => format!("closed loop, {c} workers"),
        (_, Some(rate)) => format!("open loop, {rate}/s offered"),
        _ => String::new(),
    };
    println!("{what}, {:.0} s: sent {}, accepted {} ({:.0}/s), verdicts {:.0}/s, missing {}, errors {:?}",
        r.seconds, r.sent, r.accepted, r.accepted_per_second, r.verdicts_per_second, r.verdicts_missing, r.errors);
    for (name, p) in [("POST", &r.post_latency_ms), ("POST->verdict (SSE)", &r.end_to_end_latency_ms)] {
        println!("  {name:<20} p50 {:>8.2} ms  p90 {:>8.2}  p99 {:>8.2}  p99.9 {:>8.2}  max {:>8.2}  (n={})",
            p.p50, p.p90, p.p99, p.p999, p.max, p.count);
    }
}

/// One line of the summary: a metric's median over the runs, with the spread.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SummaryRow {
    pub metric: String,
    pub unit: &'static str,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub target: Option<String>,
}

pub fn print_summary(rows: &[SummaryRow], runs: usize) {
    println!();
    println!("{:<52} {:>12} {:>12} {:>12}  {}", format!("metric (median of {runs} runs)"), "median", "min", "max", "target");
    for r in rows {
        println!("{:<52} {:>12.2} {:>12.2} {:>12.2}  {}",
            format!("{} [{}]", r.metric, r.unit), r.median, r.min, r.max, r.target.as_deref().unwrap_or(""));
    }
}
