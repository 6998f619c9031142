use clap::Parser;
use content_processor::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_kit::telemetry::init("info,rdkafka=warn,sqlx=warn");
    let config = Config::parse();
    let shutdown = service_kit::shutdown::on_signal();
    let running = content_processor::start(config.clone(), shutdown).await?;

    println!();
    println!("content-processor is running: open http://{}", running.addr);
    match running.embedded_broker() {
        Some(broker) => {
            println!("  Kafka: embedded broker at {} (librdkafka's mock cluster).", broker.bootstrap_servers());
            println!("         It keeps events IN MEMORY ONLY: they are lost when this process exits.");
            println!("         To use a real Kafka instead: --kafka-brokers HOST:9092 (or KAFKA_BROKERS=HOST:9092).");
        }
        None => println!("  Kafka: {}", running.kafka.brokers),
    }
    println!("  PostgreSQL: {}", config.database_url);
    println!("  Stop with Ctrl-C.");
    println!();

    running.wait().await
}
