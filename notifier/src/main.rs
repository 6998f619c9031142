use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = service_kit::telemetry::init("notifier", "info,rdkafka=warn,sqlx=warn")?;
    let config = notifier::Config::parse();
    let result = notifier::run(config, service_kit::shutdown::on_signal()).await;
    telemetry.shutdown().await;
    result
}
