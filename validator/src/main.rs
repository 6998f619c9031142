use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = service_kit::telemetry::init("validator", "info,rdkafka=warn")?;
    let config = validator::Config::parse();
    let result = validator::run(config, service_kit::shutdown::on_signal()).await;
    telemetry.shutdown().await;
    result
}
