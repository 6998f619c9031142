use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_kit::telemetry::init("info,rdkafka=warn");
    let config = projector::Config::parse();
    projector::run(config, service_kit::shutdown::on_signal()).await
}
