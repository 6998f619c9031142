use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = service_kit::telemetry::init("projector", "info,rdkafka=warn")?;
    let config = projector::Config::parse();
    let result = projector::run(config, service_kit::shutdown::on_signal()).await;
    telemetry.shutdown().await;
    result
}
