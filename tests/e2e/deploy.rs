//! The deployment files (Dockerfile, docker-compose.workers.yml, deploy/) must not drift from
//! the code they deploy: every binary is built into the image and every worker is deployed,
//! autoscaling watches queues that exist, dashboards and alerts query metrics the workers
//! export, probes hit the health endpoints, and pods drain before they are killed.
//!
//! No service is needed: the YAML files are read by simple line scanning (they are written in
//! a plain block style), the JSON files with serde_json, and the metric names come from the
//! rendered telemetry registry plus the `Metrics::register` calls of the other crates.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use pipeline_core::telemetry::{DeadLetterLabels, Metrics, QueueLabel, RouteLabels};
use pipeline_core::topology::{
    DEFAULT_RETRY_DELAYS_MS, DOCUMENTS_TO_INGEST, EMAILS_TO_CLASSIFY, EMAILS_TO_RESPOND, EMAILS_TO_SEND, Topology,
    WORK_QUEUES,
};
use serde_json::Value;

/// The operator CLI: built into the image, but not a long-running worker.
const CLI: &str = "mailroom";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests crate sits in the workspace").to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `key: value` → `value`, without quotes or a trailing comment.
fn yaml_value(line: &str) -> Option<String> {
    let (_, value) = line.split_once(':')?;
    let value = value.split(" #").next().unwrap_or("").trim();
    Some(value.trim_matches('"').trim_matches('\'').to_owned())
}

/// The value of the first line that starts with `key:` (after indentation and a list marker).
fn first_value(text: &str, key: &str) -> Option<String> {
    let prefix = format!("{key}:");
    text.lines().map(|l| l.trim_start().trim_start_matches("- ")).find(|l| l.starts_with(&prefix)).and_then(yaml_value)
}

// ---------------------------------------------------------------------------------------------
// What the code says

/// Binaries of the workspace: a crate's `src/main.rs` (named after the package), `src/bin/*.rs`
/// and `[[bin]]` targets.
fn workspace_binaries() -> BTreeSet<String> {
    let mut bins = BTreeSet::new();
    let crates = std::fs::read_dir(root().join("crates")).expect("crates/");
    for dir in crates.map(|e| e.expect("dir entry").path()) {
        let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else { continue };
        let mut section = String::new();
        let mut package = None;
        for line in manifest.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line.to_owned();
            } else if line.starts_with("name") && line.contains('=') {
                let name = line.split_once('=').map(|(_, v)| v.trim().trim_matches('"').to_owned());
                match section.as_str() {
                    "[package]" => package = name,
                    "[[bin]]" => bins.extend(name),
                    _ => {}
                }
            }
        }
        if dir.join("src/main.rs").exists() {
            bins.insert(package.expect("a package name"));
        }
        if let Ok(entries) = std::fs::read_dir(dir.join("src/bin")) {
            for entry in entries {
                let path = entry.expect("dir entry").path();
                if path.extension().is_some_and(|e| e == "rs") {
                    bins.insert(path.file_stem().expect("stem").to_string_lossy().into_owned());
                }
            }
        }
    }
    bins
}

fn workers() -> BTreeSet<String> {
    workspace_binaries().into_iter().filter(|b| b != CLI).collect()
}

/// Every `.rs` file under `dir`.
fn rust_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for path in entries.map(|e| e.expect("dir entry").path()) {
        if path.is_dir() {
            rust_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The sources of the crate a binary belongs to (binary name = crate directory).
fn crate_sources(bin: &str) -> String {
    let mut files = Vec::new();
    rust_sources(&root().join("crates").join(bin).join("src"), &mut files);
    files.iter().map(|f| std::fs::read_to_string(f).expect("read source")).collect()
}

/// Whether a worker serves `/metrics`, `/healthz` and `/readyz`: it runs through the consumer
/// runtime's `serve_worker*`, binds pipeline-core's `HealthServer` (the poller) or merges
/// `pipeline_core::http::router` into its own app. Every worker must (docs/ARCHITECTURE.md,
/// "Binaries").
fn serves_health(bin: &str) -> bool {
    let src = crate_sources(bin);
    src.contains("serve_worker") || src.contains("HealthServer::bind") || src.contains("http::router")
}

/// Whether a worker consumes a queue through the consumer runtime (and so drains on SIGTERM for
/// consumer.drain_timeout_secs).
fn consumes(bin: &str) -> bool {
    crate_sources(bin).contains("serve_worker")
}

/// Metric families the code exports, with their type where known (`counter`, `gauge`,
/// `histogram`). The shared registry is rendered (pipeline-core's metrics, with their types);
/// other crates add theirs with `Metrics::register("name", …)`, found in their sources.
fn exported_metrics() -> BTreeMap<String, Option<String>> {
    // prometheus-client renders a labelled family only once it has a member: give each one.
    let metrics = Metrics::default();
    let queue = QueueLabel { queue: "q".into() };
    let route = RouteLabels { exchange: "e".into(), routing_key: "k".into() };
    for family in [&metrics.consumed, &metrics.acked, &metrics.retried, &metrics.requeued] {
        family.get_or_create(&queue).inc();
    }
    metrics.dead_lettered.get_or_create(&DeadLetterLabels { queue: "q".into(), error_type: "t".into() }).inc();
    metrics.handler_seconds.get_or_create(&queue).observe(0.1);
    metrics.in_flight.get_or_create(&queue).set(0);
    metrics.published.get_or_create(&route).inc();
    metrics.publish_failures.get_or_create(&route).inc();
    let mut families = BTreeMap::new();
    for line in metrics.encode().lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                families.insert(name.to_owned(), Some(kind.to_owned()));
            }
        }
    }
    assert!(families.contains_key("mailroom_messages_consumed"), "the registry renders its families: {families:?}");
    let mut files = Vec::new();
    rust_sources(&root().join("crates"), &mut files);
    for file in files.iter().filter(|f| f.components().any(|c| c.as_os_str() == "src")) {
        let text = std::fs::read_to_string(file).expect("read source");
        for (at, _) in text.match_indices(".register(") {
            let args = text[at + ".register(".len()..].trim_start();
            let Some(literal) = args.strip_prefix('"') else { continue };
            let Some(end) = literal.find('"') else { continue };
            families.entry(format!("mailroom_{}", &literal[..end])).or_insert(None);
        }
    }
    families
}

/// `mailroom_…` metric names in a PromQL expression.
fn mailroom_metrics_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    for (at, _) in expr.match_indices("mailroom_") {
        if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
            continue;
        }
        let len = expr[at..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(expr.len() - at);
        out.push(expr[at..at + len].to_owned());
    }
    out
}

/// Checks one series name against the exported families: the family itself for a gauge,
/// `_total` for a counter, `_bucket`/`_sum`/`_count` for a histogram.
fn check_metric(name: &str, families: &BTreeMap<String, Option<String>>) -> Result<(), String> {
    let candidates = [
        (name, &["gauge"][..]),
        (name.strip_suffix("_total").unwrap_or(""), &["counter"][..]),
        (name.strip_suffix("_created").unwrap_or(""), &["counter", "histogram"][..]),
        (name.strip_suffix("_bucket").unwrap_or(""), &["histogram"][..]),
        (name.strip_suffix("_sum").unwrap_or(""), &["histogram", "summary"][..]),
        (name.strip_suffix("_count").unwrap_or(""), &["histogram", "summary"][..]),
    ];
    for (family, kinds) in candidates {
        match families.get(family) {
            Some(None) => return Ok(()),
            Some(Some(kind)) if kinds.contains(&kind.as_str()) => return Ok(()),
            Some(Some(kind)) => return Err(format!("{name}: {family} is a {kind}, not a {}", kinds.join("/"))),
            None => {}
        }
    }
    Err(format!("{name}: no such metric in the code"))
}

/// Every queue the topology declares (work queues, dead-letter queue, retry queues).
fn topology_queue_names() -> BTreeSet<String> {
    Topology::new(&DEFAULT_RETRY_DELAYS_MS).queues.into_iter().map(|q| q.name).collect()
}

/// RabbitMQ plugin metrics the dashboards and alerts may use, as documented for the
/// rabbitmq_prometheus plugin (deps/rabbitmq_prometheus/metrics.md and metrics-detailed.md of
/// rabbitmq-server): the `rabbitmq_detailed_*` ones come from /metrics/detailed and need the
/// scrape job that asks for their family.
const RABBITMQ_METRICS: &[(&str, Option<&str>)] = &[
    ("rabbitmq_detailed_queue_messages_ready", Some("queue_coarse_metrics")),
    ("rabbitmq_detailed_queue_messages_unacked", Some("queue_coarse_metrics")),
    ("rabbitmq_detailed_queue_messages", Some("queue_coarse_metrics")),
    ("rabbitmq_detailed_queue_consumers", Some("queue_consumer_count")),
    ("rabbitmq_global_messages_received_total", None),
    ("rabbitmq_global_messages_delivered_total", None),
    ("rabbitmq_global_messages_acknowledged_total", None),
    ("rabbitmq_global_messages_redelivered_total", None),
    ("rabbitmq_global_messages_dead_lettered_expired_total", None),
    ("rabbitmq_global_messages_dead_lettered_rejected_total", None),
    ("rabbitmq_global_consumers", None),
    ("rabbitmq_connections", None),
];

fn rabbitmq_metrics_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in expr.match_indices("rabbitmq_") {
        if at > 0 && (expr.as_bytes()[at - 1].is_ascii_alphanumeric() || expr.as_bytes()[at - 1] == b'_') {
            continue;
        }
        let len = expr[at..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(expr.len() - at);
        out.push(expr[at..at + len].to_owned());
    }
    out
}

/// Literal queue names in `queue="…"` and `queue=~"a|b"` matchers (variables skipped).
fn queue_literals(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in expr.match_indices("queue=") {
        if at > 0 && (expr.as_bytes()[at - 1].is_ascii_alphanumeric() || expr.as_bytes()[at - 1] == b'_') {
            continue;
        }
        let rest = expr[at + "queue=".len()..].trim_start_matches('~');
        let Some(rest) = rest.strip_prefix('"') else { continue };
        let value = &rest[..rest.find('"').unwrap_or(rest.len())];
        if value.contains('$') || value.contains('*') || value.contains('+') {
            continue;
        }
        out.extend(value.split('|').map(str::to_owned));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// What the deployment files say

/// One document of a multi-document YAML file.
#[derive(Debug, Clone)]
struct Doc {
    file: String,
    kind: String,
    name: String,
    text: String,
}

impl Doc {
    fn lines(&self) -> impl Iterator<Item = &str> {
        self.text.lines().map(str::trim_start)
    }

    fn value(&self, key: &str) -> Option<String> {
        first_value(&self.text, key)
    }
}

fn yaml_docs(rel: &str) -> Vec<Doc> {
    let text = read(rel);
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut push = |text: &str| {
        let kind = text.lines().find_map(|l| l.strip_prefix("kind:")).map(|k| k.trim().to_owned());
        let name = text
            .lines()
            .skip_while(|l| !l.starts_with("metadata:"))
            .find_map(|l| l.strip_prefix("  name:"))
            .map(|n| n.trim().trim_matches('"').to_owned());
        if let (Some(kind), Some(name)) = (kind, name) {
            docs.push(Doc { file: rel.to_owned(), kind, name, text: text.to_owned() });
        }
    };
    for line in text.lines() {
        if line.trim_end() == "---" {
            push(&current);
            current.clear();
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    push(&current);
    docs
}

/// The resources kustomization.yaml lists (the files a `kubectl apply -k` deploys).
fn kustomization_resources() -> Vec<String> {
    let text = read("deploy/k8s/kustomization.yaml");
    text.lines()
        .skip_while(|l| !l.starts_with("resources:"))
        .skip(1)
        .take_while(|l| l.starts_with("  - ") || l.trim_start().starts_with('#'))
        .filter_map(|l| l.strip_prefix("  - "))
        .map(|r| r.trim().to_owned())
        .collect()
}

fn k8s_docs() -> Vec<Doc> {
    kustomization_resources().iter().flat_map(|r| yaml_docs(&format!("deploy/k8s/{r}"))).collect()
}

fn k8s_of_kind(kind: &str) -> Vec<Doc> {
    k8s_docs().into_iter().filter(|d| d.kind == kind).collect()
}

/// The `data:`/`stringData:` entries of a ConfigMap or Secret document.
fn data_entries(doc: &Doc) -> BTreeMap<String, String> {
    doc.text
        .lines()
        .skip_while(|l| !(l.starts_with("data:") || l.starts_with("stringData:")))
        .skip(1)
        .take_while(|l| l.starts_with("  ") || l.trim().is_empty())
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| Some((l.split_once(':')?.0.trim().to_owned(), yaml_value(l)?)))
        .collect()
}

fn config_map() -> BTreeMap<String, String> {
    let docs = k8s_of_kind("ConfigMap");
    let doc = docs.iter().find(|d| d.name == "mailroom-config").expect("ConfigMap mailroom-config");
    data_entries(doc)
}

/// The port of a `host:port` listen address.
fn port_of(listen: &str) -> u16 {
    listen.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("no port in {listen:?}"))
}

/// The services of docker-compose.workers.yml, each with its block of lines.
fn compose_services() -> BTreeMap<String, String> {
    let text = read("docker-compose.workers.yml");
    let mut services = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    let mut inside = false;
    for line in text.lines() {
        if !line.starts_with(' ') && !line.starts_with('#') && !line.trim().is_empty() {
            inside = line.starts_with("services:");
            services.extend(current.take());
            continue;
        }
        if !inside {
            continue;
        }
        let is_service = line.starts_with("  ")
            && !line.starts_with("   ")
            && !line.trim_start().starts_with('#')
            && line.trim_end().ends_with(':');
        if is_service {
            services.extend(current.take());
            current = Some((line.trim().trim_end_matches(':').to_owned(), String::new()));
        } else if let Some((_, block)) = current.as_mut() {
            block.push_str(line);
            block.push('\n');
        }
    }
    services.extend(current);
    services
}

/// The `ARG BINARIES="…"` list of the Dockerfile: what the image build copies out.
fn dockerfile_binaries(dockerfile: &str) -> BTreeSet<String> {
    let line = dockerfile.lines().find(|l| l.starts_with("ARG BINARIES=")).expect("ARG BINARIES in the Dockerfile");
    line["ARG BINARIES=".len()..].trim_matches('"').split_whitespace().map(str::to_owned).collect()
}

fn dashboard() -> Value {
    serde_json::from_str(&read("deploy/grafana/mailroom.json")).expect("deploy/grafana/mailroom.json is JSON")
}

fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(expr)) = map.get("expr") {
                    out.push(expr.clone());
                }
                map.values().for_each(|v| walk(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, &mut out);
    out
}

/// The `expr:` of every alerting rule (single-line or a `|` block).
fn alert_exprs() -> Vec<String> {
    let text = read("deploy/prometheus/alerts.yml");
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix("expr:") else { continue };
        let rest = rest.trim();
        if rest == "|" || rest == ">" || rest == "|-" || rest == ">-" {
            let indent = line.len() - line.trim_start().len();
            let block: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .map(|l| l.trim())
                .collect();
            out.push(block.join(" "));
        } else {
            out.push(rest.trim_matches('\'').to_owned());
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The checks

#[test]
fn every_binary_is_in_the_image_and_every_worker_is_deployed() {
    let bins = workspace_binaries();
    let workers = workers();
    assert!(bins.contains(CLI), "the operator CLI is a workspace binary: {bins:?}");
    assert!(workers.len() >= 5, "workers found: {workers:?}");

    let dockerfile = read("Dockerfile");
    assert!(dockerfile.contains("cargo build --release --locked --workspace --bins"), "the image builds every binary");
    assert!(dockerfile.contains("COPY --from=builder /out/ /usr/local/bin/"), "the binaries go to /usr/local/bin");
    let copied = dockerfile_binaries(&dockerfile);
    let missing: Vec<_> = bins.difference(&copied).collect();
    assert!(missing.is_empty(), "binaries missing from the Dockerfile's BINARIES: {missing:?}");
    // A listed binary that no longer exists would fail the image build.
    let stale: Vec<_> = copied.difference(&bins).collect();
    assert!(stale.is_empty(), "the Dockerfile lists binaries the workspace does not build: {stale:?}");

    let services = compose_services();
    for worker in &workers {
        let block =
            services.get(worker).unwrap_or_else(|| panic!("docker-compose.workers.yml has no {worker} service"));
        let command = first_value(block, "command").unwrap_or_default();
        assert_eq!(command, format!("[\"{worker}\"]"), "compose service {worker} runs its binary");
        // Every worker serves /readyz, so none opts out of the healthcheck it inherits.
        assert!(!block.contains("disable: true"), "compose service {worker} disables its healthcheck");
    }
    let setup = services.get("setup").expect("the compose setup service");
    assert!(setup.contains("mailroom topology apply && mailroom migrate"), "{setup}");

    let deployments = k8s_of_kind("Deployment");
    for worker in &workers {
        let doc = deployments
            .iter()
            .find(|d| &d.name == worker)
            .unwrap_or_else(|| panic!("deploy/k8s has no Deployment {worker}"));
        // args, not command: command would replace the image's entrypoint (tini).
        assert_eq!(doc.value("args").as_deref(), Some(format!("[\"{worker}\"]").as_str()), "{}", doc.file);
        let command = format!("command: [\"{worker}\"");
        assert!(doc.lines().all(|l| !l.starts_with(&command)), "{}: use args, keep the entrypoint", doc.file);
        assert_eq!(doc.value("image").as_deref(), Some("mailroom"), "{}: the kustomize image name", doc.file);
    }
    for doc in &deployments {
        assert!(workers.contains(&doc.name), "Deployment {} is not a workspace binary", doc.name);
    }
    let job = k8s_of_kind("Job").into_iter().find(|d| d.name == "mailroom-setup").expect("the setup Job");
    for args in [r#"["mailroom", "topology", "apply"]"#, r#"["mailroom", "migrate"]"#] {
        assert!(job.lines().any(|l| l == format!("args: {args}")), "the setup Job runs {args}");
    }
}

#[test]
fn the_kustomization_lists_every_manifest() {
    let listed: BTreeSet<String> = kustomization_resources().into_iter().collect();
    let present: BTreeSet<String> = std::fs::read_dir(root().join("deploy/k8s"))
        .expect("deploy/k8s")
        .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".yaml") && f != "kustomization.yaml")
        .collect();
    assert_eq!(listed, present, "kustomization.yaml resources vs the files in deploy/k8s");
}

#[test]
fn scaled_objects_watch_the_work_queues_of_the_topology() {
    let work_queues: BTreeSet<&str> = WORK_QUEUES.iter().map(|q| q.name).collect();
    let declared = topology_queue_names();
    let deployments: BTreeSet<String> = k8s_of_kind("Deployment").into_iter().map(|d| d.name).collect();
    let auths: BTreeSet<String> = k8s_of_kind("TriggerAuthentication").into_iter().map(|d| d.name).collect();
    let scaled = k8s_of_kind("ScaledObject");

    let mut by_queue = BTreeMap::new();
    for so in &scaled {
        let queue = so.value("queueName").unwrap_or_else(|| panic!("ScaledObject {} has no queueName", so.name));
        assert!(declared.contains(&queue), "ScaledObject {}: queue {queue:?} is not in the topology", so.name);
        assert!(work_queues.contains(queue.as_str()), "ScaledObject {}: {queue:?} is not a work queue", so.name);
        let target = so.lines().skip_while(|l| !l.starts_with("scaleTargetRef:")).nth(1).and_then(yaml_value);
        let target = target.unwrap_or_else(|| panic!("ScaledObject {} has no scaleTargetRef", so.name));
        assert!(deployments.contains(&target), "ScaledObject {} scales a missing Deployment {target}", so.name);
        assert_eq!(so.value("type").as_deref(), Some("rabbitmq"), "{}", so.name);
        assert_eq!(so.value("mode").as_deref(), Some("QueueLength"), "{}", so.name);
        assert_eq!(so.value("protocol").as_deref(), Some("amqp"), "{}: ready messages, as the seed's HPA", so.name);
        let auth = so.lines().skip_while(|l| !l.starts_with("authenticationRef:")).nth(1).and_then(yaml_value);
        assert!(auth.is_some_and(|a| auths.contains(&a)), "ScaledObject {}: unknown authenticationRef", so.name);
        let min: u32 = so.value("minReplicaCount").and_then(|v| v.parse().ok()).expect("minReplicaCount");
        let max: u32 = so.value("maxReplicaCount").and_then(|v| v.parse().ok()).expect("maxReplicaCount");
        assert!(1 <= min && min <= max, "ScaledObject {}: min {min}, max {max}", so.name);
        assert!(
            by_queue.insert(queue.clone(), (target, min, max, so.value("value"))).is_none(),
            "{queue} scaled twice"
        );
    }
    // Each work queue is scaled, by the stage that consumes it.
    for (queue, worker) in [
        (EMAILS_TO_CLASSIFY.name, "classifier"),
        (EMAILS_TO_RESPOND.name, "rag-generator"),
        (EMAILS_TO_SEND.name, "sender"),
        (DOCUMENTS_TO_INGEST.name, "doc-ingester"),
    ] {
        let (target, ..) = by_queue.get(queue).unwrap_or_else(|| panic!("no ScaledObject for {queue}"));
        assert_eq!(target, worker, "{queue} is consumed by {worker}");
    }
    // The classifier's planned autoscaling (docs/ARCHITECTURE.md): 3 to 12 replicas, 50 ready
    // messages per replica.
    assert_eq!(by_queue[EMAILS_TO_CLASSIFY.name], ("classifier".into(), 3, 12, Some("50".into())));

    // The trigger authentication reads a key the Secret template has.
    let trigger_auth = k8s_of_kind("TriggerAuthentication").pop().expect("a TriggerAuthentication");
    let target_ref = |key: &str| {
        let prefix = format!("{key}:");
        trigger_auth
            .lines()
            .skip_while(|l| *l != "secretTargetRef:")
            .find(|l| l.starts_with(&prefix))
            .and_then(yaml_value)
    };
    let secret_name = target_ref("name").expect("secretTargetRef name");
    let key = target_ref("key").expect("secretTargetRef key");
    let secret = k8s_of_kind("Secret").into_iter().find(|s| s.name == secret_name).expect("the referenced Secret");
    assert!(data_entries(&secret).contains_key(&key), "Secret {secret_name} has no key {key}");
}

#[test]
fn dashboards_and_alerts_use_metrics_that_exist() {
    let dashboard = dashboard();
    let families = exported_metrics();
    let mut exprs = dashboard_exprs(&dashboard);
    assert!(exprs.len() > 20, "the dashboard has its queries: {}", exprs.len());
    exprs.extend(alert_exprs());

    let mut used = BTreeSet::new();
    let mut errors = Vec::new();
    for expr in &exprs {
        for name in mailroom_metrics_in(expr) {
            if let Err(e) = check_metric(&name, &families) {
                errors.push(e);
            }
            used.insert(name);
        }
    }
    assert!(errors.is_empty(), "{errors:#?}\nexported: {families:#?}");
    // The sender's metrics are on the dashboard (quota use, outcomes).
    for name in ["mailroom_replies_total", "mailroom_send_deferred_total", "mailroom_handler_duration_seconds_bucket"] {
        assert!(used.contains(name), "the dashboard shows {name}");
    }

    // RabbitMQ's metrics: documented names only, and the detailed ones scraped with their family.
    let scrape = read("deploy/prometheus/prometheus.yml");
    let k8s_scrape = read("deploy/prometheus/kubernetes.yml");
    for expr in &exprs {
        for name in rabbitmq_metrics_in(expr) {
            let known = RABBITMQ_METRICS.iter().find(|(m, _)| *m == name);
            let Some((_, family)) = known else { panic!("{name} is not a documented rabbitmq_prometheus metric") };
            if let Some(family) = family {
                for (file, text) in [("prometheus.yml", &scrape), ("kubernetes.yml", &k8s_scrape)] {
                    assert!(
                        text.contains(family),
                        "{file} must scrape /metrics/detailed with family {family} for {name}"
                    );
                }
            }
        }
    }
    for text in [&scrape, &k8s_scrape] {
        assert!(text.contains("metrics_path: /metrics/detailed"), "the detailed endpoint is scraped");
        assert!(text.contains("alerts.yml"), "the alert rules are loaded");
    }
    // Every worker has a metrics endpoint, and it is scraped under compose.
    for worker in &workers() {
        assert!(serves_health(worker), "{worker} serves no /metrics (every worker must, DESIGN.md §6)");
        assert!(scrape.contains(worker.as_str()), "prometheus.yml does not scrape {worker}");
    }
}

#[test]
fn queue_names_in_dashboards_and_alerts_are_the_topology_s() {
    let declared = topology_queue_names();
    let mut exprs = dashboard_exprs(&dashboard());
    exprs.extend(alert_exprs());
    let mut seen = 0;
    for expr in &exprs {
        for queue in queue_literals(expr) {
            assert!(declared.contains(&queue), "{queue:?} in {expr:?} is not a queue of the topology");
            seen += 1;
        }
    }
    assert!(seen > 0, "some queries name queues");
}

#[test]
fn the_dashboard_is_valid_grafana_json_over_a_datasource_variable() {
    let dashboard = dashboard();
    assert!(dashboard["title"].is_string() && dashboard["uid"].is_string(), "title and uid");
    assert!(dashboard["schemaVersion"].is_u64(), "schemaVersion");
    let vars = dashboard["templating"]["list"].as_array().expect("templating.list");
    assert!(
        vars.iter().any(|v| v["name"] == "DS_PROMETHEUS" && v["type"] == "datasource" && v["query"] == "prometheus"),
        "a datasource variable DS_PROMETHEUS"
    );
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for panel in panels {
        let id = panel["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} twice");
        for key in ["x", "y", "w", "h"] {
            assert!(panel["gridPos"][key].is_u64(), "panel {id}: gridPos.{key}");
        }
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${DS_PROMETHEUS}", "panel {id} uses the datasource variable");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {id} has queries");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${DS_PROMETHEUS}", "panel {id}");
            assert!(target["expr"].as_str().is_some_and(|e| !e.is_empty()), "panel {id}: expr");
        }
    }
}

#[test]
fn pods_probe_the_health_endpoints_and_drain_before_they_are_killed() {
    let config = config_map();
    let drain: u64 = config["MAILROOM__CONSUMER__DRAIN_TIMEOUT_SECS"].parse().expect("drain timeout");
    let worker_port = port_of(&config["MAILROOM__HTTP__LISTEN"]);
    let api_port = port_of(&config["MAILROOM__UPLOAD_API__LISTEN"]);
    assert_eq!(config["MAILROOM__TOPOLOGY__DECLARE"], "false", "workers run as role users; the Job declares");
    // The ladder the Job declares and the workers retry through must be well-formed.
    let ladder: Vec<u32> = config["MAILROOM__TOPOLOGY__RETRY_DELAYS_MS"]
        .split(',')
        .map(|d| d.trim().parse().expect("retry delay in ms"))
        .collect();
    assert!(!ladder.is_empty());

    for doc in k8s_of_kind("Deployment") {
        let worker = doc.name.clone();
        // A container-level env entry wins over the ConfigMap (envFrom).
        let own_drain = doc
            .lines()
            .skip_while(|l| *l != "- name: MAILROOM__CONSUMER__DRAIN_TIMEOUT_SECS")
            .nth(1)
            .and_then(yaml_value)
            .map(|v| v.parse::<u64>().expect("drain override"));
        let drain = own_drain.unwrap_or(drain);
        let grace: u64 = doc.value("terminationGracePeriodSeconds").and_then(|v| v.parse().ok()).expect("grace");
        if consumes(&worker) {
            assert!(
                grace > drain,
                "{worker}: terminationGracePeriodSeconds {grace} must exceed the drain timeout {drain}"
            );
        }

        // Every worker serves the endpoints (docs/ARCHITECTURE.md), so every pod is probed and
        // scraped; a probe of a port nobody listens on would restart the pod forever, hence the
        // check.
        let port = if worker == "upload-api" { api_port } else { worker_port };
        assert!(serves_health(&worker), "{worker} serves no /healthz and /readyz, so it cannot be probed");
        assert_eq!(doc.value("containerPort"), Some(port.to_string()), "{worker} exposes its health port");
        assert_eq!(doc.value("prometheus.io/scrape").as_deref(), Some("true"), "{worker} is scraped");
        assert_eq!(doc.value("prometheus.io/port"), Some(port.to_string()), "{worker} is scraped on it");
        let probe = |kind: &str| doc.lines().skip_while(|l| *l != format!("{kind}:")).nth(2).and_then(yaml_value);
        assert_eq!(probe("livenessProbe").as_deref(), Some("/healthz"), "{worker}: liveness on /healthz");
        assert_eq!(probe("startupProbe").as_deref(), Some("/healthz"), "{worker}: startup on /healthz");
        assert_eq!(probe("readinessProbe").as_deref(), Some("/readyz"), "{worker}: readiness on /readyz");
    }
}

#[test]
fn secrets_use_the_broker_users_and_vhost_of_the_definitions() {
    let definitions: Value = serde_json::from_str(&read("deploy/rabbitmq/definitions.json"))
        .expect("deploy/rabbitmq/definitions.json is JSON");
    let users: BTreeSet<&str> =
        definitions["users"].as_array().expect("users").iter().filter_map(|u| u["name"].as_str()).collect();
    let vhosts: BTreeSet<&str> =
        definitions["vhosts"].as_array().expect("vhosts").iter().filter_map(|v| v["name"].as_str()).collect();
    let secrets = k8s_of_kind("Secret");
    let amqp = secrets.iter().find(|s| s.name == "mailroom-amqp").expect("Secret mailroom-amqp");
    let entries = data_entries(amqp);
    let deployments = k8s_of_kind("Deployment");
    for doc in &deployments {
        // Each worker reads its own role's URL, and that role is a broker user.
        let key = doc
            .lines()
            .skip_while(|l| *l != "- name: MAILROOM__AMQP__URL")
            .find(|l| l.starts_with("key:"))
            .and_then(yaml_value)
            .unwrap_or_else(|| panic!("{}: MAILROOM__AMQP__URL from a secret key", doc.name));
        assert_eq!(key, format!("{}-url", doc.name), "{} uses its own role", doc.name);
        let url = entries.get(&key).unwrap_or_else(|| panic!("Secret mailroom-amqp has no {key}"));
        let user = url.strip_prefix("amqp://").and_then(|r| r.split(':').next()).expect("user in the URL");
        assert_eq!(user, format!("mailroom-{}", doc.name), "{key}");
    }
    for (key, url) in entries.iter().filter(|(_, v)| v.starts_with("amqp://")) {
        let user = url["amqp://".len()..].split(':').next().expect("user");
        assert!(users.contains(user), "{key}: user {user} is not in definitions.json");
        let vhost = url.rsplit('/').next().expect("vhost");
        assert!(vhosts.contains(vhost), "{key}: vhost {vhost} is not in definitions.json");
    }
}
