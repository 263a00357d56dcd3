//! `deploy/` checked statically (issue 17): the compose file and the Kubernetes
//! manifests parse (PyYAML, not ours) and run cara with a config `cara config check`
//! accepts, with the HTTP token its non-loopback listener needs; the Grafana dashboard
//! queries only metrics `/metrics` exposes; the Dockerfile's build stage runs the
//! README's build command; KEDA watches cara's consumer group and an input topic.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use cara_pipeline::config::Config;
use cara_pipeline::telemetry::Telemetry;
use common::cara;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every YAML file under deploy/, by path relative to it, as JSON documents.
fn deploy_yaml() -> serde_json::Map<String, Value> {
    let out = Command::new("python3")
        .arg(repo().join("tests/clients/deploy_yaml.py"))
        .arg(repo().join("deploy"))
        .output()
        .expect("python3 runs (tests/run installs PyYAML)");
    assert!(
        out.status.success(),
        "deploy/ YAML does not parse: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    match serde_json::from_slice(&out.stdout).expect("the reader prints JSON") {
        Value::Object(files) => files,
        other => panic!("not an object: {other}"),
    }
}

/// `cara config check` of `toml`, with the environment the deployment gives cara.
fn config_checks(toml: &str, what: &str) -> Config {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cara.toml");
    std::fs::write(&path, toml).unwrap();
    let out = cara()
        .args(["config", "check"])
        .arg(&path)
        .env("CARA_HTTP_TOKEN", "a-token-of-sixteen-chars")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the token the non-loopback listener is refused: the deployment must
    // provide one (checked below).
    let out = cara()
        .args(["config", "check"])
        .arg(&path)
        .env_remove("CARA_HTTP_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{what} listens beyond loopback");
    // Read without validating again here: this process has no token.
    toml::from_str(toml).expect("checked")
}

#[test]
fn compose_runs_cara_with_a_config_it_accepts_and_a_token() {
    let files = deploy_yaml();
    let compose = &files["compose.yaml"][0];
    let toml = std::fs::read_to_string(repo().join("deploy/cara.toml")).unwrap();
    let config = config_checks(&toml, "deploy/cara.toml");
    assert_eq!(config.kafka.brokers, "kafka:9092");
    let services = compose["services"].as_object().expect("services");
    assert!(services.contains_key("kafka") && services.contains_key("prometheus"));
    let caras: Vec<&Value> = services
        .iter()
        .filter(|(name, _)| name.starts_with("cara-"))
        .map(|(_, s)| s)
        .collect();
    assert_eq!(caras.len(), 2, "two replicas in one group");
    for service in caras {
        assert_eq!(service["command"][2], "/etc/cara/cara.toml");
        let mounts: Vec<&str> = service["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            mounts.contains(&"./cara.toml:/etc/cara/cara.toml:ro"),
            "{mounts:?}"
        );
        assert!(
            service["environment"]["CARA_HTTP_TOKEN"].is_string(),
            "{service}"
        );
    }
    // Prometheus scrapes each replica on the port cara listens on.
    let port = config.http.listen.port();
    let targets = &files["prometheus.yml"][0]["scrape_configs"][0]["static_configs"][0]["targets"];
    assert_eq!(
        targets,
        &serde_json::json!([format!("cara-1:{port}"), format!("cara-2:{port}")])
    );
}

#[test]
fn kubernetes_runs_the_configmaps_config_with_probes_on_its_port_and_keda_on_its_group() {
    let files = deploy_yaml();
    let docs = files["k8s/cara.yaml"].as_array().unwrap();
    let of_kind = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
    };
    let toml = of_kind("ConfigMap")["data"]["cara.toml"]
        .as_str()
        .expect("the ConfigMap holds cara.toml");
    let config = config_checks(toml, "the ConfigMap's cara.toml");
    let container = &of_kind("StatefulSet")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["args"],
        serde_json::json!(["run", "--config", "/etc/cara/cara.toml"])
    );
    assert_eq!(
        container["ports"][0]["containerPort"],
        config.http.listen.port()
    );
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    let env: Vec<&str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(env.contains(&"CARA_HTTP_TOKEN"), "{env:?}");
    let archive_mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "data")
        .expect("a volume for the archive");
    assert!(config
        .archive
        .dir
        .starts_with(archive_mount["mountPath"].as_str().unwrap()));
    let keda = &of_kind("ScaledObject")["spec"]["triggers"][0]["metadata"];
    assert_eq!(keda["consumerGroup"], config.kafka.group_id.as_str());
    let inputs = [
        &config.kafka.metrics_topic,
        &config.kafka.logs_topic,
        &config.kafka.spans_topic,
    ];
    assert!(inputs.iter().any(|t| keda["topic"] == t.as_str()), "{keda}");
    assert!(docs.iter().any(|d| d["kind"] == "PodDisruptionBudget"));
    assert!(docs.iter().any(|d| d["kind"] == "Service"));
}

/// The metric families a PromQL expression names (`cara_...`, with a sample
/// suffix taken off when the rest is a family).
fn metrics_named(expr: &str, families: &[String]) -> Vec<(String, bool)> {
    let mut named = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("cara_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let known = families.iter().any(|f| f == name)
            || ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| {
                    name.strip_suffix(suffix)
                        .is_some_and(|family| families.iter().any(|f| f == family))
                });
        named.push((name.to_owned(), known));
        rest = &tail[end..];
    }
    named
}

#[test]
fn the_dashboard_queries_only_metrics_cara_exposes() {
    let families = Telemetry::new().metric_names().to_vec();
    assert!(
        families.contains(&"cara_records_in".to_owned()),
        "{families:?}"
    );
    // The matcher itself: a misspelt name is caught.
    assert_eq!(
        metrics_named("rate(cara_records_in_totl[1m])", &families),
        [("cara_records_in_totl".to_owned(), false)]
    );
    let text = std::fs::read_to_string(repo().join("deploy/grafana/dashboards/cara.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let mut queried = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            queried.extend(metrics_named(expr, &families));
        }
    }
    let unknown: Vec<&String> = queried.iter().filter(|(_, k)| !k).map(|(n, _)| n).collect();
    assert!(unknown.is_empty(), "not on /metrics: {unknown:?}");
    // Throughput, lag, dead letters, flush latency, alerts and SLO budgets are all on it.
    for needed in [
        "cara_records_in_total",
        "cara_consumer_lag",
        "cara_dlq_records_total",
        "cara_flush_seconds_bucket",
        "cara_alerts_total",
        "cara_slo_budget_remaining",
    ] {
        assert!(queried.iter().any(|(n, _)| n == needed), "{needed}");
    }
    // Provisioned from where compose mounts it, on the datasource provisioned.
    let files = deploy_yaml();
    let provider = &files["grafana/provisioning/dashboards/cara.yaml"][0]["providers"][0];
    assert_eq!(provider["options"]["path"], "/var/lib/grafana/dashboards");
    let datasource =
        &files["grafana/provisioning/datasources/prometheus.yaml"][0]["datasources"][0];
    assert_eq!(
        dashboard["panels"][0]["datasource"]["uid"],
        datasource["uid"]
    );
}

#[test]
fn the_dockerfile_builds_with_the_readmes_command() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let dockerfile = std::fs::read_to_string(repo().join("deploy/Dockerfile")).unwrap();
    let build = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("RUN cargo build"))
        .map(|rest| format!("cargo build{rest}"))
        .expect("a build stage running cargo build");
    assert!(
        readme.lines().any(|l| l.trim() == build),
        "README does not give `{build}`"
    );
    // A small runtime image, not the toolchain, running as a user.
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(stages.len(), 2, "{stages:?}");
    assert!(stages[1].contains("slim"), "{stages:?}");
    assert!(dockerfile
        .lines()
        .any(|l| l.starts_with("USER ") && !l.contains("root")));
}
