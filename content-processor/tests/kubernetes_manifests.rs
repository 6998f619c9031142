//! The Kubernetes manifests in `ops/kubernetes`, checked offline (no cluster runs here):
//! built-in kinds against the Kubernetes API schemas (`kubernetes-validate` from PyPI, which
//! `scripts/test` installs), and the operators' resources and every workload against what the
//! code relies on: the topic's name, partitions, replication, `min.insync.replicas` and
//! retention; the groups and transactional ids the Kafka user may use; the environment each
//! binary reads (taken from its own `--help`); where it listens and where it is probed; and the
//! route that sends each API operation to the service that serves it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_yaml::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_content-processor");

fn folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/kubernetes")
}

/// Every `.yaml` file in `dir`, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().path()).filter(|path| path.extension().is_some_and(|ext| ext == "yaml")).collect();
    files.sort();
    files
}

/// The manifests `kubectl apply -k` applies and the Jobs run by hand, without the kustomization.
fn manifest_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = yaml_files(&folder()).into_iter().filter(|f| !f.ends_with("kustomization.yaml")).collect();
    files.extend(yaml_files(&folder().join("jobs")));
    files
}

fn documents(file: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(file).unwrap();
    text.split("\n---\n").map(|doc| serde_yaml::from_str(doc).unwrap()).filter(|doc: &Value| !doc.is_null()).collect()
}

/// Every resource, by (kind, name).
fn resources() -> BTreeMap<(String, String), Value> {
    let mut all = BTreeMap::new();
    for file in manifest_files() {
        for doc in documents(&file) {
            let key = (str_of(&doc["kind"]).to_owned(), str_of(&doc["metadata"]["name"]).to_owned());
            assert!(all.insert(key.clone(), doc).is_none(), "{key:?} is defined twice");
        }
    }
    all
}

fn resource(kind: &str, name: &str) -> Value {
    resources().remove(&(kind.to_owned(), name.to_owned())).unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn of_kind(kind: &str) -> Vec<Value> {
    resources().into_iter().filter(|((k, _), _)| k == kind).map(|(_, doc)| doc).collect()
}

fn str_of(value: &Value) -> &str {
    value.as_str().unwrap_or_else(|| panic!("a string, not {value:?}"))
}

/// A number or a string holding one, as Kubernetes and Strimzi take both.
fn int_of(value: &Value) -> i64 {
    value.as_i64().or_else(|| value.as_str()?.parse().ok()).unwrap_or_else(|| panic!("a number, not {value:?}"))
}

/// The settings every service gets from the ConfigMap.
fn kafka_settings() -> BTreeMap<String, String> {
    let map = resource("ConfigMap", "content-processor-kafka");
    map["data"].as_mapping().unwrap().iter().map(|(k, v)| (str_of(k).to_owned(), str_of(v).to_owned())).collect()
}

#[test]
fn the_kustomization_applies_every_manifest_and_leaves_the_jobs_to_be_run_by_hand() {
    let kustomization: Value = serde_yaml::from_str(&std::fs::read_to_string(folder().join("kustomization.yaml")).unwrap()).unwrap();
    let listed: BTreeSet<&str> = kustomization["resources"].as_sequence().unwrap().iter().map(str_of).collect();
    let present: BTreeSet<String> = yaml_files(&folder())
        .iter()
        .map(|f| f.file_name().unwrap().to_str().unwrap().to_owned())
        .filter(|name| name != "kustomization.yaml")
        .collect();
    assert_eq!(listed, present.iter().map(String::as_str).collect());
    assert_eq!(kustomization["namespace"], "content-processor");
    assert_eq!(kustomization["images"][0]["name"], "content-processor", "the image every workload names");
}

#[test]
fn built_in_kinds_are_valid_against_the_kubernetes_api_schemas() {
    let python = std::env::var("CONTENT_PROCESSOR_PYTHON")
        .expect("CONTENT_PROCESSOR_PYTHON: the tools' Python, which ./scripts/test installs with kubernetes-validate");
    let validate = Path::new(&python).with_file_name("kubernetes-validate");
    let built_in = ["v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v2"];
    let expected: BTreeSet<String> = resources()
        .into_iter()
        .filter(|(_, doc)| built_in.contains(&str_of(&doc["apiVersion"])))
        .map(|((kind, name), _)| format!("{}/{name}", kind.to_lowercase()))
        .collect();
    assert!(expected.len() >= 20, "{expected:?}");
    // The oldest Kubernetes Strimzi 0.49 supports, and the newest the package knows.
    for version in ["1.27.0", "1.37.0"] {
        let output = std::process::Command::new(&validate)
            .args(["--strict", "--kubernetes-version", version])
            .args(manifest_files())
            .output()
            .unwrap_or_else(|e| panic!("{} runs: {e}", validate.display()));
        let report = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "kubernetes-validate {version}:\n{report}");
        let passed: BTreeSet<String> =
            report.lines().filter_map(|line| line.split("passed for resource ").nth(1)?.split(' ').next().map(str::to_owned)).collect();
        assert_eq!(passed, expected, "every built-in resource was validated against {version}:\n{report}");
    }
}

/// The Kafka version the tests and the one-command run use (local-kafka/pom.xml).
fn tested_kafka_version() -> String {
    let pom = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../local-kafka/pom.xml")).unwrap();
    let start = pom.find("<kafka.version>").unwrap() + "<kafka.version>".len();
    pom[start..].split('<').next().unwrap().to_owned()
}

#[test]
fn strimzi_runs_kraft_node_pools_with_the_replication_acks_all_relies_on() {
    let kafka = resource("Kafka", "content-processor-kafka");
    assert_eq!(str_of(&kafka["spec"]["kafka"]["version"]), tested_kafka_version());
    let config = &kafka["spec"]["kafka"]["config"];
    assert_eq!(int_of(&config["default.replication.factor"]), 3);
    assert_eq!(int_of(&config["min.insync.replicas"]), 2);
    assert_eq!(int_of(&config["offsets.topic.replication.factor"]), 3);
    assert_eq!(int_of(&config["transaction.state.log.replication.factor"]), 3);
    assert_eq!(int_of(&config["transaction.state.log.min.isr"]), 2);
    assert_eq!(config["auto.create.topics.enable"], Value::Bool(false));
    assert!(kafka["spec"]["zookeeper"].is_null(), "KRaft");

    let pools = of_kind("KafkaNodePool");
    for role in ["controller", "broker"] {
        let pool = pools.iter().find(|p| p["spec"]["roles"].as_sequence().unwrap().iter().any(|r| r == role)).unwrap();
        assert_eq!(pool["metadata"]["labels"]["strimzi.io/cluster"], "content-processor-kafka");
        assert!(int_of(&pool["spec"]["replicas"]) >= 3, "{role}s: a quorum of three");
        assert_eq!(pool["spec"]["storage"]["type"], "persistent-claim", "{role}s keep their data");
    }

    // The clients' bootstrap address is the cluster's TLS listener, with SCRAM passwords.
    let listener = kafka["spec"]["kafka"]["listeners"].as_sequence().unwrap().iter().find(|l| l["tls"] == Value::Bool(true)).unwrap();
    assert_eq!(listener["authentication"]["type"], "scram-sha-512");
    let settings = kafka_settings();
    assert_eq!(settings["KAFKA_BROKERS"], format!("content-processor-kafka-kafka-bootstrap:{}", int_of(&listener["port"])));
    assert_eq!(settings["KAFKA_SECURITY_PROTOCOL"], "sasl_ssl");
    assert_eq!(settings["KAFKA_SASL_MECHANISM"], "SCRAM-SHA-512");
}

#[test]
fn the_topics_are_what_the_services_would_create_and_kept_for_ever() {
    let settings = kafka_settings();
    let mut kafka = kafka_kit::KafkaArgs::for_brokers(&settings["KAFKA_BROKERS"]);
    kafka.topic = settings["KAFKA_TOPIC"].clone();
    for topic_name in [kafka.topic.clone(), kafka.dead_letter_topic()] {
        let topic = of_kind("KafkaTopic").into_iter().find(|t| t["spec"]["topicName"] == topic_name.as_str());
        let topic = topic.unwrap_or_else(|| panic!("a KafkaTopic for {topic_name}"));
        assert_eq!(topic["metadata"]["labels"]["strimzi.io/cluster"], "content-processor-kafka");
        assert_eq!(int_of(&topic["spec"]["partitions"]).to_string(), settings["KAFKA_PARTITIONS"], "{topic_name}");
        assert_eq!(int_of(&topic["spec"]["replicas"]).to_string(), settings["KAFKA_REPLICATION_FACTOR"], "{topic_name}");
        assert_eq!(int_of(&topic["spec"]["replicas"]), 3, "{topic_name}");
        let config = &topic["spec"]["config"];
        assert_eq!(int_of(&config["min.insync.replicas"]).to_string(), settings["KAFKA_MIN_INSYNC_REPLICAS"], "{topic_name}");
        assert_eq!(int_of(&config["min.insync.replicas"]), 2, "{topic_name}");
        // Replaying the whole log rebuilds the read model: nothing may expire.
        assert_eq!(int_of(&config["retention.ms"]), -1, "{topic_name}");
        assert_eq!(int_of(&config["retention.bytes"]), -1, "{topic_name}");
    }
}

/// Whether one of `acls` lets the user do `operation` on the resource `kind` named `name`.
fn granted(acls: &[Value], kind: &str, name: &str, operation: &str) -> bool {
    acls.iter().any(|acl| {
        let resource = &acl["resource"];
        let names_it = match resource["patternType"].as_str() {
            Some("prefix") => name.starts_with(str_of(&resource["name"])),
            _ => resource["name"].as_str().is_none_or(|literal| literal == name),
        };
        resource["type"] == kind && names_it && acl["operations"].as_sequence().unwrap().iter().any(|op| op == operation)
    })
}

#[test]
fn the_kafka_user_may_do_what_each_service_does_and_no_more() {
    let settings = kafka_settings();
    let user = resource("KafkaUser", &settings["KAFKA_SASL_USERNAME"]);
    assert_eq!(user["spec"]["authentication"]["type"], "scram-sha-512");
    let acls = user["spec"]["authorization"]["acls"].as_sequence().unwrap().clone();
    let kafka = kafka_kit::KafkaArgs { topic: settings["KAFKA_TOPIC"].clone(), ..kafka_kit::KafkaArgs::for_brokers("") };
    for topic in [kafka.topic.clone(), kafka.dead_letter_topic()] {
        for operation in ["Describe", "Read", "Write"] {
            assert!(granted(&acls, "topic", &topic, operation), "{operation} on topic {topic}");
        }
        assert!(!granted(&acls, "topic", &topic, "Create"), "topics come from the KafkaTopic resources");
    }
    let groups = [
        validator::Config::new(kafka.clone()).group_id,
        notifier::Config::new("", kafka.clone()).group_id,
        projector::CONSUMER_GROUP.to_owned(),
        kafka_kit::inspect::INSPECTOR_GROUP_ID.to_owned(),
    ];
    for group in &groups {
        assert!(granted(&acls, "group", group, "Read") && granted(&acls, "group", group, "Describe"), "group {group}");
    }
    let transactional_id = format!("{}some-instance-0", kafka_kit::atomic_publisher::transactional_id_prefix(&kafka.topic));
    assert!(granted(&acls, "transactionalId", &transactional_id, "Write"), "the command API's batch transactions");
    assert!(granted(&acls, "cluster", "kafka-cluster", "IdempotentWrite"), "the idempotent producers");
    assert!(!granted(&acls, "group", "somebody-else", "Read"), "only the groups of this system");
}

#[test]
fn postgresql_comes_from_cloudnative_pg_and_its_secret_is_every_database_url() {
    let cluster = resource("Cluster", "content-processor-db");
    assert!(str_of(&cluster["apiVersion"]).starts_with("postgresql.cnpg.io/"));
    assert!(int_of(&cluster["spec"]["instances"]) >= 2, "a standby to fail over to");
    let database_urls: Vec<Value> = workloads().iter().flat_map(|(_, container)| env_of(container)).filter(|e| e["name"] == "DATABASE_URL").collect();
    assert!(database_urls.len() >= 5, "{database_urls:?}");
    for url in database_urls {
        // CloudNativePG writes the application's credentials into `<cluster>-app`; `uri` names the primary.
        assert_eq!(url["valueFrom"]["secretKeyRef"]["name"], "content-processor-db-app");
        assert_eq!(url["valueFrom"]["secretKeyRef"]["key"], "uri");
    }
}

/// Every Deployment's and Job's container, with the name of the resource.
fn workloads() -> Vec<(String, Value)> {
    resources()
        .into_iter()
        .filter(|((kind, _), _)| kind == "Deployment" || kind == "Job")
        .map(|((_, name), doc)| {
            let containers = doc["spec"]["template"]["spec"]["containers"].as_sequence().unwrap().clone();
            assert_eq!(containers.len(), 1, "{name}");
            (name, containers[0].clone())
        })
        .collect()
}

fn env_of(container: &Value) -> Vec<Value> {
    container["env"].as_sequence().cloned().unwrap_or_default()
}

/// The environment variables `content-processor <args>` reads, from its `--help`.
fn variables_read_by(args: &[&str]) -> BTreeSet<String> {
    let output = std::process::Command::new(BINARY).args(args).arg("--help").output().unwrap();
    assert!(output.status.success(), "{args:?} --help");
    let help = String::from_utf8(output.stdout).unwrap();
    help.split("[env: ").skip(1).map(|rest| rest.split(['=', ']']).next().unwrap().to_owned()).collect()
}

#[test]
fn every_workload_sets_only_variables_its_binary_reads_and_is_probed_where_it_listens() {
    let settings = kafka_settings();
    // Each workload's listener, and the one of its health checks and metrics.
    let listen_variables = [
        ("command-api", "COMMAND_API_LISTEN", "COMMAND_API_INTERNAL_LISTEN"),
        ("query-api", "QUERY_API_LISTEN", "QUERY_API_INTERNAL_LISTEN"),
        ("validator", "VALIDATOR_HEALTH_LISTEN", "VALIDATOR_HEALTH_LISTEN"),
        ("projector", "PROJECTOR_ADMIN_LISTEN", "PROJECTOR_INTERNAL_LISTEN"),
        ("notifier", "NOTIFIER_LISTEN", "NOTIFIER_INTERNAL_LISTEN"),
    ];
    let workloads = workloads();
    let names: BTreeSet<&str> = workloads.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["command-api", "create-admin", "notifier", "projector", "query-api", "rebuild", "validator"]));
    for (name, container) in &workloads {
        let command: Vec<&str> = container["command"].as_sequence().unwrap().iter().map(str_of).collect();
        assert_eq!(command[0], "content-processor", "{name}");
        let reads = variables_read_by(&command[1..2]);
        let mut set: Vec<String> = env_of(container).iter().map(|e| str_of(&e["name"]).to_owned()).collect();
        if !container["envFrom"].is_null() {
            assert_eq!(container["envFrom"][0]["configMapRef"]["name"], "content-processor-kafka", "{name}");
            set.extend(settings.keys().cloned());
        }
        for variable in &set {
            assert!(reads.contains(variable), "{name} sets {variable}, which `content-processor {}` does not read", command[1]);
        }
        assert!(container["resources"]["requests"]["memory"].is_string() && container["resources"]["limits"]["memory"].is_string(), "{name}");
        assert!(!container["resources"]["requests"]["cpu"].is_null(), "{name}");
        for secret in env_of(container).iter().filter_map(|e| e["valueFrom"]["secretKeyRef"].as_mapping().cloned()) {
            let secret_name = str_of(&secret[&Value::from("name")]).to_owned();
            // Operators write these; any other Secret is the operator's to create, and optional.
            let made_by_an_operator = ["content-processor-db-app", settings["KAFKA_SASL_USERNAME"].as_str()].contains(&secret_name.as_str());
            let documented = (secret_name == "content-processor-admin" && name == "create-admin") || secret_name == "content-processor-kek";
            assert!(
                made_by_an_operator || documented || secret.get(Value::from("optional")) == Some(&Value::Bool(true)),
                "{name}: Secret {secret_name}"
            );
        }
        if set.iter().any(|v| v.starts_with("KAFKA_")) {
            let mounted = container["volumeMounts"].as_sequence().unwrap();
            assert!(mounted.iter().any(|m| settings["KAFKA_SSL_CA_LOCATION"].starts_with(str_of(&m["mountPath"]))), "{name}: the cluster CA");
        }
        let Some((_, listen, internal)) = listen_variables.iter().find(|(role, _, _)| role == name) else { continue };
        let port_of = |variable: &str| -> i64 {
            let address = env_of(container).into_iter().find(|e| e["name"] == variable).unwrap_or_else(|| panic!("{name} sets {variable}"));
            str_of(&address["value"]).rsplit(':').next().unwrap().parse().unwrap()
        };
        let ports = container["ports"].as_sequence().unwrap();
        let declared =
            |port: i64| ports.iter().find(|p| int_of(&p["containerPort"]) == port).unwrap_or_else(|| panic!("{name} declares port {port}"));
        assert_eq!(int_of(&ports[0]["containerPort"]), port_of(listen), "{name} listens where its first port is declared");
        // Probes and the scraper reach the internal listener (where there is one): nothing else serves /readyz.
        let checked = declared(port_of(internal));
        for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
            assert_eq!(container[probe]["httpGet"]["path"], path, "{name} {probe}");
            assert_eq!(container[probe]["httpGet"]["port"], checked["name"], "{name} {probe}");
        }
        let annotations = &resource("Deployment", name)["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(str_of(&annotations["prometheus.io/port"]), port_of(internal).to_string(), "{name} is scraped where it serves /metrics");
    }
}

#[test]
fn every_deployment_has_a_disruption_budget_and_two_projectors_run() {
    let budgets = of_kind("PodDisruptionBudget");
    for deployment in of_kind("Deployment") {
        let name = str_of(&deployment["metadata"]["name"]);
        let labels = &deployment["spec"]["template"]["metadata"]["labels"];
        assert_eq!(deployment["spec"]["selector"]["matchLabels"], *labels, "{name}");
        let budget = budgets.iter().find(|b| b["spec"]["selector"]["matchLabels"] == *labels);
        let budget = budget.unwrap_or_else(|| panic!("a PodDisruptionBudget for {name}"));
        // A budget that allows no eviction at all would block every node drain.
        assert!(budget["spec"]["maxUnavailable"] == 1 || int_of(&budget["spec"]["minAvailable"]) < int_of(&deployment["spec"]["replicas"]), "{name}");
    }
    assert_eq!(int_of(&resource("Deployment", "projector")["spec"]["replicas"]), 2, "one writes, one stands by");
}

#[test]
fn keda_scales_the_validators_on_their_group_lag_up_to_one_per_partition() {
    let settings = kafka_settings();
    let scaled = resource("ScaledObject", "validator");
    assert_eq!(scaled["spec"]["scaleTargetRef"]["name"], "validator");
    // A validator beyond the partition count would hold no partition.
    assert!(int_of(&scaled["spec"]["maxReplicaCount"]) <= settings["KAFKA_PARTITIONS"].parse::<i64>().unwrap());
    let trigger = &scaled["spec"]["triggers"][0];
    assert_eq!(trigger["type"], "kafka");
    let kafka = kafka_kit::KafkaArgs::for_brokers(&settings["KAFKA_BROKERS"]);
    assert_eq!(str_of(&trigger["metadata"]["consumerGroup"]), validator::Config::new(kafka).group_id);
    assert_eq!(str_of(&trigger["metadata"]["topic"]), settings["KAFKA_TOPIC"]);
    assert_eq!(str_of(&trigger["metadata"]["bootstrapServers"]), settings["KAFKA_BROKERS"]);
    let auth = resource("TriggerAuthentication", str_of(&trigger["authenticationRef"]["name"]));
    let password = auth["spec"]["secretTargetRef"].as_sequence().unwrap().iter().find(|r| r["parameter"] == "password").unwrap().clone();
    assert_eq!(str_of(&password["name"]), settings["KAFKA_SASL_USERNAME"], "the KafkaUser's Secret");
}

/// The service the route sends `method path` to: Gateway API precedence (an exact path before
/// the longest prefix, then a rule with a method before one without, then rule order).
fn routed(route: &Value, method: &str, path: &str) -> Option<String> {
    let mut best: Option<((bool, usize, bool), String)> = None;
    for rule in route["spec"]["rules"].as_sequence().unwrap() {
        let service = str_of(&rule["backendRefs"][0]["name"]).to_owned();
        for matched in rule["matches"].as_sequence().unwrap() {
            let value = str_of(&matched["path"]["value"]);
            let path_matches = match str_of(&matched["path"]["type"]) {
                "Exact" => path == value,
                "PathPrefix" => value == "/" || path == value || path.starts_with(&format!("{value}/")),
                other => panic!("path match {other} is not checked here"),
            };
            let method_matches = matched["method"].as_str().is_none_or(|m| m.eq_ignore_ascii_case(method));
            if path_matches && method_matches {
                let rank = (matched["path"]["type"] == "Exact", value.len(), !matched["method"].is_null());
                if best.as_ref().is_none_or(|(best_rank, _)| rank > *best_rank) {
                    best = Some((rank, service.clone()));
                }
            }
        }
    }
    best.map(|(_, service)| service)
}

#[test]
fn the_route_sends_every_operation_to_the_service_that_serves_it() {
    let route = resource("HTTPRoute", "content-processor");
    let services = [
        ("command-api", command_api::openapi()),
        ("query-api", query_api::openapi()),
        ("notifier", notifier::openapi()),
        ("projector", <operations::AdminApi as utoipa::OpenApi>::openapi()),
    ];
    // What every service serves for itself: probed and scraped on its own port, not routed.
    let own = ["/healthz", "/readyz", "/metrics", "/api/openapi.json"];
    let mut checked = 0;
    for (service, document) in services {
        let ports: Vec<i64> = route["spec"]["rules"]
            .as_sequence()
            .unwrap()
            .iter()
            .flat_map(|rule| rule["backendRefs"].as_sequence().unwrap().clone())
            .filter(|backend| backend["name"] == service)
            .map(|backend| int_of(&backend["port"]))
            .collect();
        let declared = resource("Service", service)["spec"]["ports"][0]["port"].clone();
        assert!(!ports.is_empty() && ports.iter().all(|port| *port == int_of(&declared)), "{service} is routed to its Service's port");
        for (template, item) in &document.paths.paths {
            if own.contains(&template.as_str()) {
                continue;
            }
            let path = template.replace("{id}", "0196f0a4-1c2b-7000-8000-000000000000");
            let methods = [("GET", &item.get), ("POST", &item.post), ("PUT", &item.put), ("DELETE", &item.delete), ("PATCH", &item.patch)];
            for (method, _) in methods.iter().filter(|(_, operation)| operation.is_some()) {
                assert_eq!(routed(&route, method, &path).as_deref(), Some(service), "{method} {template}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 30, "{checked} operations");
}
