//! `loadgen`: drives a running content-processor over HTTP and measures it.
//!
//! - `loadgen http`: one load run against given URLs (closed or open loop).
//! - `loadgen replay`: how fast a read model is rebuilt from a topic of N events.
//! - `loadgen validators`: verdicts per second of 1, 2, 4... validator processes.
//! - `loadgen live`: thousands of users' SSE streams on one query API under load.
//! - `loadgen retention`: what a retention sweep of a million expired rows costs.
//! - `loadgen signups`: a flood of concurrent sign-ups against one query API.
//! - `loadgen refusals`: the CPU a submission refused with 429 costs against an accepted one.
//! - `loadgen suite`: the whole benchmark, several runs, a table and a JSON file
//!   (what `scripts/bench` runs; see BENCHMARKS.md).

mod broker;
mod cpu;
mod live;
mod load;
mod refusals;
mod replay;
mod report;
mod retention;
mod scaling;
mod signups;
mod statements;
mod suite;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "loadgen", about = "Load generator and benchmarks for content-processor")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One load run against a running system.
    Http(load::LoadArgs),
    /// Rebuild rate: fill a topic with N events, then time a projector replaying it.
    Replay(replay::ReplayArgs),
    /// Live browsers: N users' SSE streams on one query API while submissions flow.
    Live(live::LiveArgs),
    /// Validator scale-out: verdicts per second of 1, 2, 4... processes on one topic.
    Validators(scaling::ScalingArgs),
    /// Retention: time a sweep of N expired rows next to N live ones, its WAL and its effect on writers.
    Retention(retention::RetentionArgs),
    /// Sign-up flood: N concurrent sign-ups on one query API; its memory and a user's reads meanwhile.
    Signups(signups::SignupArgs),
    /// Refusal cost: CPU per submission answered 429 against one answered 202.
    Refusals(refusals::RefusalArgs),
    /// The refusal benchmark's bare server: answers every request 429, and nothing else.
    #[command(hide = true)]
    BareRefuser {
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Wraps it in the layers every service has.
        #[arg(long)]
        with_common_layers: bool,
    },
    /// The whole benchmark: several runs of every scenario, with per-component memory.
    Suite(suite::SuiteArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = service_kit::telemetry::init("bench", "warn")?;
    match Cli::parse().command {
        Command::Http(args) => {
            let report = load::run(&args).await?;
            report::print_load(&report);
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Replay(args) => {
            let launcher = broker::Launcher::new(args.kafka_dist.as_deref())?;
            let report = replay::run(&args, &launcher).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Live(args) => {
            let launcher = broker::Launcher::new(args.kafka_dist.as_deref())?;
            let report = live::run(&args, &launcher).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Validators(args) => {
            let launcher = broker::Launcher::new(args.kafka_dist.as_deref())?;
            let reports = scaling::run(&args, &launcher).await?;
            println!("{}", serde_json::to_string_pretty(&reports)?);
        }
        Command::Retention(args) => {
            let report = retention::run(&args).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Signups(args) => {
            let report = signups::run(&args).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Refusals(args) => {
            let launcher = broker::Launcher::new(args.kafka_dist.as_deref())?;
            let report = refusals::run(&args, &launcher).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::BareRefuser { listen, with_common_layers } => refusals::serve_bare_refusals(listen, with_common_layers).await?,
        Command::Suite(args) => suite::run(&args).await?,
    }
    Ok(())
}
