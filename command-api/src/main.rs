use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_kit::telemetry::init("info,rdkafka=warn");
    let config = command_api::Config::parse();
    command_api::run(config, service_kit::shutdown::on_signal()).await
}
