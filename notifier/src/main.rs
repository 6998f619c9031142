use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_kit::telemetry::init("info,rdkafka=warn,sqlx=warn");
    let config = notifier::Config::parse();
    notifier::run(config, service_kit::shutdown::on_signal()).await
}
