//! No Docker engine runs here, so this checks what can be checked without one: the compose file
//! parses, names every service, runs three Kafka brokers in KRaft mode from the official image
//! of the version the tests run on, creates the topic as the failover test proves it (three
//! replicas, two in sync), and starts each service with a binary this workspace builds.

use serde_yaml::Value;

fn compose() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docker-compose.yml");
    let text = std::fs::read_to_string(path).expect("docker-compose.yml at the repository root");
    let mut value: Value = serde_yaml::from_str(&text).expect("docker-compose.yml is valid YAML");
    value.apply_merge().expect("YAML merge keys resolve");
    value
}

#[test]
fn names_every_service_of_the_production_topology() {
    let compose = compose();
    let services = compose["services"].as_mapping().expect("services");
    let mut names: Vec<&str> = services.keys().filter_map(Value::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["command-api", "kafka-1", "kafka-2", "kafka-3", "mailpit", "notifier", "postgres", "projector", "prometheus", "query-api", "validator"]
    );
}

/// The Apache Kafka version the tests and the one-command run use (local-kafka/pom.xml).
fn tested_kafka_version() -> String {
    let pom = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../local-kafka/pom.xml")).unwrap();
    let start = pom.find("<kafka.version>").unwrap() + "<kafka.version>".len();
    pom[start..].split('<').next().unwrap().to_owned()
}

#[test]
fn three_kafka_brokers_of_the_tested_version_form_one_kraft_quorum() {
    let compose = compose();
    let image = format!("apache/kafka:{}", tested_kafka_version());
    let mut cluster_ids = Vec::new();
    for (i, name) in ["kafka-1", "kafka-2", "kafka-3"].iter().enumerate() {
        let kafka = &compose["services"][*name];
        let env = &kafka["environment"];
        assert_eq!(kafka["image"].as_str(), Some(image.as_str()), "{name}");
        assert_eq!(env["KAFKA_PROCESS_ROLES"], "broker,controller", "{name}");
        assert_eq!(env["KAFKA_NODE_ID"].as_str(), Some((i + 1).to_string().as_str()), "{name}");
        assert_eq!(env["KAFKA_CONTROLLER_QUORUM_VOTERS"], "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093", "{name}");
        assert_eq!(env["KAFKA_ADVERTISED_LISTENERS"].as_str(), Some(format!("PLAINTEXT://{name}:9092").as_str()));
        assert_eq!(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"], "3", "{name}");
        assert!(kafka["volumes"][0].as_str().unwrap().starts_with(&format!("{name}-data:")), "{name} keeps its log");
        cluster_ids.push(env["CLUSTER_ID"].as_str().unwrap().to_owned());
    }
    cluster_ids.dedup();
    assert_eq!(cluster_ids.len(), 1, "one cluster id for the three nodes");
}

#[test]
fn each_service_runs_a_binary_this_workspace_builds_and_finds_its_dependencies() {
    let compose = compose();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    for service in ["command-api", "validator", "projector", "query-api", "notifier"] {
        let spec = &compose["services"][service];
        assert_eq!(spec["build"], ".", "{service} is built from the repository");
        let binary = spec["command"][0].as_str().unwrap();
        let manifest = std::fs::read_to_string(format!("{root}/{binary}/Cargo.toml")).unwrap();
        assert!(manifest.contains(&format!("name = \"{binary}\"")), "{service} runs a workspace binary");
        let env = &spec["environment"];
        if service != "query-api" {
            assert_eq!(env["KAFKA_BROKERS"], "kafka-1:9092,kafka-2:9092,kafka-3:9092", "{service}");
            // As the failover test runs it: three replicas, two in sync before acks=all.
            assert_eq!(env["KAFKA_REPLICATION_FACTOR"], "3", "{service}");
            assert_eq!(env["KAFKA_MIN_INSYNC_REPLICAS"], "2", "{service}");
        }
        if matches!(service, "command-api" | "validator" | "projector" | "query-api" | "notifier") {
            assert!(env["DATABASE_URL"].as_str().unwrap().contains("@postgres:5432/"), "{service}");
        }
    }
    // The UI comes from the query API's origin and submits to the command API's.
    let ui_origin = "http://localhost:8002";
    assert_eq!(compose["services"]["query-api"]["ports"][0], "8002:8002");
    assert_eq!(compose["services"]["query-api"]["environment"]["UI_COMMAND_API_URL"], "http://localhost:8001");
    assert_eq!(compose["services"]["command-api"]["ports"][0], "8001:8001");
    assert_eq!(compose["services"]["command-api"]["environment"]["CORS_ALLOWED_ORIGINS"], ui_origin);
    // ...and manages notifications at the notifier's, which mails to the mail catcher.
    let notifier = &compose["services"]["notifier"];
    assert_eq!(compose["services"]["query-api"]["environment"]["UI_NOTIFIER_API_URL"], "http://localhost:8005");
    assert_eq!(notifier["ports"][0], "8005:8005");
    assert_eq!(notifier["environment"]["CORS_ALLOWED_ORIGINS"], ui_origin);
    assert_eq!(notifier["environment"]["SMTP_URL"], "smtp://mailpit:1025");
    // The query API mails the links that confirm an address or reset a password, to the UI it serves.
    assert_eq!(compose["services"]["query-api"]["environment"]["SMTP_URL"], "smtp://mailpit:1025");
    assert_eq!(compose["services"]["query-api"]["environment"]["PUBLIC_URL"], ui_origin);
    assert!(compose["services"]["mailpit"]["image"].as_str().unwrap().starts_with("axllent/mailpit:"));
    // ...and its operations dashboard reads the projector's admin endpoints.
    let projector = &compose["services"]["projector"];
    assert_eq!(compose["services"]["query-api"]["environment"]["UI_ADMIN_API_URL"], "http://localhost:8004");
    assert_eq!(projector["ports"][0], "8004:8004");
    assert_eq!(projector["environment"]["PROJECTOR_ADMIN_LISTEN"], "0.0.0.0:8004");
    assert_eq!(projector["environment"]["CORS_ALLOWED_ORIGINS"], ui_origin);
    let dockerfile = std::fs::read_to_string(format!("{root}/Dockerfile")).unwrap();
    for service in ["command-api", "validator", "projector", "query-api", "notifier"] {
        let binary = compose["services"][service]["command"][0].as_str().unwrap();
        assert!(dockerfile.contains(&format!("target/release/{binary}")), "the image holds {binary}, which {service} runs");
    }
    // The query API serves the UI from UI_DIR: the image must hold a built one there.
    assert!(dockerfile.contains("./scripts/build-ui"), "the image builds the UI");
    assert!(dockerfile.contains("COPY --from=ui /src/ui/dist/ /usr/local/share/content-processor/ui/"));
    assert!(dockerfile.contains("UI_DIR=/usr/local/share/content-processor/ui"));
}

/// Prometheus scrapes every component on the port the compose file has it listen on (its
/// metrics share the listener of its API, health or admin endpoints).
#[test]
fn prometheus_scrapes_every_component_where_it_listens() {
    let compose = compose();
    let prometheus = &compose["services"]["prometheus"];
    assert_eq!(prometheus["volumes"][0], "./ops/prometheus.yml:/etc/prometheus/prometheus.yml:ro");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../ops/prometheus.yml");
    let config: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut scraped = std::collections::BTreeMap::new();
    for job in config["scrape_configs"].as_sequence().unwrap() {
        assert!(job["metrics_path"].is_null(), "the default path, /metrics");
        for target in job["static_configs"].as_sequence().into_iter().flatten().flat_map(|c| c["targets"].as_sequence().unwrap()) {
            let (host, port) = target.as_str().unwrap().split_once(':').unwrap();
            scraped.insert(host.to_owned(), port.to_owned());
        }
        for discovery in job["dns_sd_configs"].as_sequence().into_iter().flatten() {
            for name in discovery["names"].as_sequence().unwrap() {
                scraped.insert(name.as_str().unwrap().to_owned(), discovery["port"].as_u64().unwrap().to_string());
            }
        }
    }
    for (service, listen) in [
        ("command-api", "COMMAND_API_LISTEN"),
        ("query-api", "QUERY_API_LISTEN"),
        ("projector", "PROJECTOR_ADMIN_LISTEN"),
        ("validator", "VALIDATOR_HEALTH_LISTEN"),
        ("notifier", "NOTIFIER_LISTEN"),
    ] {
        let address = compose["services"][service]["environment"][listen].as_str().unwrap_or_else(|| panic!("{service} sets {listen}"));
        let port = address.rsplit_once(':').unwrap().1;
        assert_eq!(scraped.get(service).map(String::as_str), Some(port), "Prometheus scrapes {service} on {port}");
    }
}
