//! No Docker engine runs here, so this checks what can be checked without one: the compose file
//! parses, names every service, runs Kafka in KRaft mode from the official image, and starts
//! each service with a binary this workspace builds.

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
    assert_eq!(names, ["command-api", "kafka", "postgres", "projector", "query-api", "validator"]);
}

#[test]
fn kafka_is_the_official_image_in_kraft_mode() {
    let kafka = &compose()["services"]["kafka"];
    assert!(kafka["image"].as_str().unwrap().starts_with("apache/kafka:"));
    assert_eq!(kafka["environment"]["KAFKA_PROCESS_ROLES"], "broker,controller");
    assert!(kafka["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"].is_string());
}

#[test]
fn each_service_runs_a_binary_this_workspace_builds_and_finds_its_dependencies() {
    let compose = compose();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    for service in ["command-api", "validator", "projector", "query-api"] {
        let spec = &compose["services"][service];
        assert_eq!(spec["build"], ".", "{service} is built from the repository");
        let binary = spec["command"][0].as_str().unwrap();
        let manifest = std::fs::read_to_string(format!("{root}/{binary}/Cargo.toml")).unwrap();
        assert!(manifest.contains(&format!("name = \"{binary}\"")), "{service} runs a workspace binary");
        let env = &spec["environment"];
        if service != "query-api" {
            assert_eq!(env["KAFKA_BROKERS"], "kafka:9092", "{service}");
        }
        if matches!(service, "projector" | "query-api") {
            assert!(env["DATABASE_URL"].as_str().unwrap().contains("@postgres:5432/"), "{service}");
        }
    }
    // The UI comes from the query API's origin and submits to the command API's.
    let ui_origin = "http://localhost:8002";
    assert_eq!(compose["services"]["query-api"]["ports"][0], "8002:8002");
    assert_eq!(compose["services"]["query-api"]["environment"]["UI_COMMAND_API_URL"], "http://localhost:8001");
    assert_eq!(compose["services"]["command-api"]["ports"][0], "8001:8001");
    assert_eq!(compose["services"]["command-api"]["environment"]["CORS_ALLOWED_ORIGINS"], ui_origin);
    let dockerfile = std::fs::read_to_string(format!("{root}/Dockerfile")).unwrap();
    for binary in ["command-api", "validator", "projector", "query-api"] {
        assert!(dockerfile.contains(&format!("target/release/{binary}")), "the image holds {binary}");
    }
    // The query API serves the UI from UI_DIR: the image must hold a built one there.
    assert!(dockerfile.contains("./scripts/build-ui"), "the image builds the UI");
    assert!(dockerfile.contains("COPY --from=ui /src/ui/dist/ /usr/local/share/content-processor/ui/"));
    assert!(dockerfile.contains("UI_DIR=/usr/local/share/content-processor/ui"));
}
