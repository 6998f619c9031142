use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = service_kit::telemetry::init("command-api", "info,rdkafka=warn")?;
    let config = command_api::Config::parse();
    let result = command_api::run(config, service_kit::shutdown::on_signal()).await;
    telemetry.shutdown().await;
    result
}
