use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_kit::telemetry::init("info");
    let config = query_api::Config::parse();
    query_api::run(config, service_kit::shutdown::on_signal()).await
}
