//! Tables for people; the JSON is written by the suite.

use crate::broker::BrokerKind;
use crate::cpu::{counts_in_total, part_name, Cost, JIT, LOADGEN};
use crate::load::LoadReport;

pub fn print_load(r: &LoadReport) {
    let what = match (r.concurrency, r.offered_rate) {
        (Some(c), _) => format!("closed loop, {c} workers"),
        (_, Some(rate)) => format!("open loop, {rate}/s offered"),
        _ => String::new(),
    };
    println!(
        "{what}, {:.0} s: sent {}, accepted {} ({:.0}/s), verdicts {:.0}/s, missing {}, errors {:?}",
        r.seconds, r.sent, r.accepted, r.accepted_per_second, r.verdicts_per_second, r.verdicts_missing, r.errors
    );
    for (name, p) in [("POST", &r.post_latency_ms), ("POST->verdict (SSE)", &r.end_to_end_latency_ms)] {
        println!(
            "  {name:<20} p50 {:>8.2} ms  p90 {:>8.2}  p99 {:>8.2}  p99.9 {:>8.2}  max {:>8.2}  (n={})",
            p.p50, p.p90, p.p99, p.p999, p.max, p.count
        );
    }
    if let Some(cost) = &r.cpu {
        print_cost("CPU per submission", cost);
    }
}

/// A window's CPU cost: per unit of work when there was any, else as shares of a core.
pub fn print_cost(what: &str, cost: &Cost) {
    let (total, each, unit) = match cost.units {
        0 => (cost.cores_total, &cost.cores, "cores"),
        _ => (cost.ms_per_unit_total, &cost.ms_per_unit, "ms"),
    };
    let parts: Vec<String> = each.iter().filter(|(name, _)| counts_in_total(name)).map(|(name, value)| format!("{name} {value:.3}")).collect();
    let compiling: String =
        each.iter().filter(|(name, _)| name.ends_with(JIT)).map(|(name, value)| format!("; {}: {value:.3}", part_name(name))).collect();
    println!(
        "  {what:<20} {total:.3} {unit} in all: {} (the load generator: {:.3}{compiling})",
        parts.join(", "),
        each.get(LOADGEN).copied().unwrap_or(0.0)
    );
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

/// The summaries of several brokers side by side: per metric, each broker's median with the
/// spread of its runs.
pub fn print_summary(summaries: &[(BrokerKind, Vec<SummaryRow>)], runs: usize) {
    println!();
    print!("{:<58}", format!("metric (median of {runs} runs [min..max])"));
    for (kind, _) in summaries {
        print!(" {:>30}", kind.label());
    }
    println!("  target");
    let Some((_, first)) = summaries.first() else { return };
    for (i, row) in first.iter().enumerate() {
        print!("{:<58}", format!("{} [{}]", row.metric, row.unit));
        for (_, rows) in summaries {
            match rows.get(i).filter(|r| r.metric == row.metric) {
                Some(r) => print!(" {:>30}", format!("{:.2} [{:.2}..{:.2}]", r.median, r.min, r.max)),
                None => print!(" {:>30}", "-"),
            }
        }
        println!("  {}", row.target.as_deref().unwrap_or(""));
    }
}
