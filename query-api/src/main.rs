use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let telemetry = service_kit::telemetry::init("query-api", "info")?;
    let config = query_api::Config::parse();
    let result = query_api::run(config, service_kit::shutdown::on_signal()).await;
    telemetry.shutdown().await;
    result
}
