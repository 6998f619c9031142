//! The Kafka security settings (as a managed Kafka needs them) reach librdkafka: against an
//! Apache Kafka broker whose listener requires SASL/PLAIN, a wrong password stops the start at
//! once with the reason (never a hang, never the password in the message), and the right one
//! runs the whole system.

mod support;

use std::time::Duration;

use kafka_kit::{KafkaSecurity, SaslMechanism, SecurityProtocol};
use local_kafka::{ClusterConfig, JvmProfile};
use reqwest::StatusCode;
use support::{TestDb, TestKafka, TestSystem};
use tokio_util::sync::CancellationToken;

const PASSWORD: &str = "right-password-7f3a";
const WRONG_PASSWORD: &str = "wrong-password-91c2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_credentials_reach_the_client_and_a_wrong_password_fails_the_start_clearly() {
    let mut cluster = ClusterConfig::new(support::scratch_dir("sasl"), 1);
    cluster.jvm = JvmProfile::FastStart;
    cluster.heap_mb = 384;
    cluster.sasl_users = vec![("content-processor".into(), PASSWORD.into())];
    let broker = TestKafka::start_with(cluster, 3).await;

    let db = TestDb::create().await;
    let mut config = support::test_config(&db);
    config.kafka_dist = None;
    config.kafka = broker.kafka.clone();
    config.kafka.security = KafkaSecurity {
        protocol: SecurityProtocol::SaslPlaintext,
        sasl_mechanism: SaslMechanism::Plain,
        sasl_username: Some("content-processor".into()),
        sasl_password: Some(WRONG_PASSWORD.to_owned().into()),
        ssl_ca_location: None,
    };
    assert!(!format!("{config:?}").contains(WRONG_PASSWORD), "the password never shows in debug output");

    let attempt = content_processor::start(config.clone(), CancellationToken::new());
    let outcome = tokio::time::timeout(Duration::from_secs(60), attempt).await.expect("a clear error, not a hang");
    let error = match outcome {
        Ok(_) => panic!("a wrong password must not start the system"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("refused the connection") && error.contains("Authentication failed"), "{error}");
    assert!(!error.contains(WRONG_PASSWORD));

    config.kafka.security.sasl_password = Some(PASSWORD.to_owned().into());
    let system = TestSystem::start_with(db, config).await;
    let (status, accepted) = system.submit("over SASL 1").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(system.wait_for_verdict(accepted["id"].as_str().unwrap()).await["status"], "PASSED");
    system.stop().await;
    broker.stop().await;
}
