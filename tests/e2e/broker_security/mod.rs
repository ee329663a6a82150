//! Broker security end to end, against the real RabbitMQ (never a fake):
//!
//! - the role users of `deploy/rabbitmq/definitions.json`, loaded through the management API into
//!   a throw-away vhost under throw-away names, can do exactly what their process needs and are
//!   refused — `403 ACCESS_REFUSED` — everything else;
//! - what each AMQP operation needs is established on the broker itself, with users holding a
//!   single permission, because the regexes in the file are only as tight as that knowledge;
//! - a worker that may not declare (`topology.declare = false`) reports not-ready, saying why,
//!   until the admin applies the topology, then becomes ready without a restart;
//! - every binary's connection code speaks `amqps://`: a worker verifies the broker against
//!   `amqp.tls.ca_file`, processes a message over TLS, presents a client certificate when
//!   configured, and refuses a broker signed by another CA.
//!
//! The TLS tests need the listener `tests/tls/setup.sh` adds (`.ci/run` runs it); without it
//! they fail and say so — a silent skip would hide a broken TLS path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicQosOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use mailroom_tests::{
    TestDb, TestVhost, amqp_url_as, bin_path, free_port, mgmt_url, repo_root, run, spawn_logged, wait_for,
};
use pipeline_core::messages::{DocumentMetadata, DocumentToIngest, EmailToClassify, EmailToRespond, IncomingEmail};
use pipeline_core::topology::{
    self, DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE, DOCUMENT_EXCHANGE, DOCUMENTS_TO_INGEST, EMAIL_EXCHANGE,
    EMAILS_TO_CLASSIFY, EMAILS_TO_RESPOND, EMAILS_TO_SEND, QueueSpec, RETRY_EXCHANGE, Route,
};
use pipeline_core::worker_env::{WorkerEnv, env_var};
use pipeline_core::{
    DeliveryMeta, Handler, HandlerError, Outgoing, Producer, Publisher, Settings, Telemetry, Topology,
};
use serde_json::{Value, json};

mod forged;
mod tls;

/// The file under test, relative to the repository root.
const DEFINITIONS: &str = "deploy/rabbitmq/definitions.json";
/// The vhost the file defines.
const FILE_VHOST: &str = "mailroom";
/// Every role user the file must define, as `mailroom-<role>`: the admin and one per binary.
fn role_names() -> BTreeSet<String> {
    std::iter::once("admin").chain(pipeline_core::consumer::binary_names()).map(str::to_owned).collect()
}

/// How long one AMQP operation may take before the test calls it hung.
const OP_TIMEOUT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------------
// Management API and the throw-away copy of definitions.json
// ---------------------------------------------------------------------------------------------

/// guest's management API, for what `rabbitmq_mgmt::Client` does not cover (definitions, users).
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new() -> Self {
        Self { http: reqwest::Client::new(), base: mgmt_url() }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let mut request =
            self.http.request(method.clone(), format!("{}/api/{path}", self.base)).basic_auth("guest", Some("guest"));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| format!("{method} {path}: {e}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!("{method} {path}: {status} {text}"));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Creates (or replaces) a user with a password and tags.
    async fn put_user(&self, name: &str, password: &str, tags: &str) {
        let path = format!("users/{}", rabbitmq_mgmt::encode_segment(name));
        self.send(reqwest::Method::PUT, &path, Some(&json!({ "password": password, "tags": tags })))
            .await
            .unwrap_or_else(|e| panic!("set the password of {name}: {e}"));
    }

    /// The vhost's client connections, as the broker reports them (TLS details included).
    async fn connections(&self, vhost: &str) -> Vec<Value> {
        let path = format!("vhosts/{}/connections", rabbitmq_mgmt::encode_segment(vhost));
        match self.send(reqwest::Method::GET, &path, None).await {
            Ok(Value::Array(list)) => list,
            other => panic!("list connections of {vhost}: {other:?}"),
        }
    }
}

/// Runs an async cleanup from `Drop`, on a thread of its own (Drop cannot await, and the test's
/// runtime may be the one panicking).
fn cleanup_blocking<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let _ = std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
            rt.block_on(f());
        }
    })
    .join();
}

/// Users and the vhost this test created; deleted on drop, also when the test panics, so the
/// shared broker keeps no throw-away accounts. Only names created here are ever deleted.
pub(crate) struct BrokerAccounts {
    /// A vhost this test created (`None` when the vhost belongs to a `TestVhost`).
    vhost: Option<String>,
    users: Vec<String>,
}

impl Drop for BrokerAccounts {
    fn drop(&mut self) {
        let (vhost, users) = (self.vhost.clone(), std::mem::take(&mut self.users));
        cleanup_blocking(move || async move {
            let api = Api::new();
            for user in users {
                let _ = api
                    .send(reqwest::Method::DELETE, &format!("users/{}", rabbitmq_mgmt::encode_segment(&user)), None)
                    .await;
            }
            if let Some(vhost) = vhost {
                let _ = mailroom_tests::mgmt().delete_vhost(&vhost).await;
            }
        });
    }
}

/// One role user of the loaded copy.
#[derive(Debug, Clone)]
struct Account {
    name: String,
    password: String,
}

/// `definitions.json` loaded under throw-away names: vhost `mailroom-sec-<id>`, users
/// `mailroom-sec-<id>-<role>`, so parallel tests (and a real `mailroom` vhost on the same broker)
/// never collide. Passwords are set the way docs/OPERATIONS.md tells operators to, after the
/// import.
struct RoleVhost {
    accounts: BTreeMap<String, Account>,
    guard: BrokerAccounts,
}

fn read_definitions() -> Value {
    let path = repo_root().join(DEFINITIONS);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn role_of(user: &str) -> &str {
    user.strip_prefix("mailroom-").unwrap_or_else(|| panic!("user {user} of {DEFINITIONS} is not mailroom-<role>"))
}

impl RoleVhost {
    async fn load() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        let vhost = format!("mailroom-sec-{id}");
        let rename = |user: &str| format!("mailroom-sec-{id}-{}", role_of(user));
        let mut defs = read_definitions();

        let mut accounts = BTreeMap::new();
        for user in defs["users"].as_array_mut().expect("users") {
            let original = user["name"].as_str().expect("user name").to_owned();
            let name = rename(&original);
            user["name"] = json!(name);
            let password = uuid::Uuid::new_v4().simple().to_string();
            accounts.insert(role_of(&original).to_owned(), Account { name, password });
        }
        // The guard exists before anything is created, so a failed import still cleans up.
        let guard =
            BrokerAccounts { vhost: Some(vhost.clone()), users: accounts.values().map(|a| a.name.clone()).collect() };
        for entry in defs["vhosts"].as_array_mut().expect("vhosts") {
            assert_eq!(entry["name"], FILE_VHOST, "{DEFINITIONS} defines only the {FILE_VHOST} vhost");
            entry["name"] = json!(vhost);
        }
        // Everything vhost-scoped must belong to the mailroom vhost: loading the file must never
        // touch another vhost of the broker.
        for section in ["permissions", "topic_permissions", "queues", "exchanges", "bindings", "policies", "parameters"]
        {
            for item in defs[section].as_array_mut().into_iter().flatten() {
                assert_eq!(item["vhost"], FILE_VHOST, "{section} entry of {DEFINITIONS} outside {FILE_VHOST}: {item}");
                item["vhost"] = json!(vhost);
                if let Some(user) = item["user"].as_str() {
                    item["user"] = json!(rename(user));
                }
            }
        }
        let api = Api::new();
        api.send(reqwest::Method::POST, "definitions", Some(&defs)).await.expect("import definitions.json");
        let tags: BTreeMap<String, String> = defs["users"]
            .as_array()
            .expect("users")
            .iter()
            .map(|u| {
                (u["name"].as_str().unwrap_or_default().to_owned(), u["tags"].as_str().unwrap_or_default().to_owned())
            })
            .collect();
        for account in accounts.values() {
            api.put_user(&account.name, &account.password, &tags[&account.name]).await;
        }
        Self { accounts, guard }
    }

    fn vhost(&self) -> &str {
        self.guard.vhost.as_deref().unwrap_or_default()
    }

    fn account(&self, role: &str) -> &Account {
        self.accounts.get(role).unwrap_or_else(|| panic!("{DEFINITIONS} has no mailroom-{role} user"))
    }

    /// AMQP URL of the vhost as a role's user.
    fn url(&self, role: &str) -> String {
        let account = self.account(role);
        amqp_url_as(self.vhost(), &account.name, &account.password)
    }

    /// Applies the topology with the operator CLI as the admin role, as a deployment would.
    async fn apply_topology(&self) {
        let admin = self.account("admin");
        let env = WorkerEnv::new()
            .set("amqp.url", self.url("admin"))
            .set("management.url", mgmt_url())
            .set("management.username", admin.name.clone())
            .set("management.password", admin.password.clone())
            .build();
        // `verify` reads the management API as the admin: its `management` tag is enough.
        for args in [&["topology", "apply"][..], &["topology", "verify"]] {
            let (code, out) = run(&bin_path("mailroom"), args, &env).await;
            assert_eq!(code, 0, "mailroom {args:?} as mailroom-admin: {out}");
            assert!(!out.contains(&admin.password), "mailroom {args:?} logged the admin password: {out}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// AMQP probes: one operation each, on a fresh channel (a refusal closes the channel)
// ---------------------------------------------------------------------------------------------

/// The broker's refusal: `403 ACCESS_REFUSED`, on the channel.
fn is_access_refused(e: &lapin::Error) -> bool {
    matches!(e.kind(), lapin::ErrorKind::ProtocolError(amqp)
        if amqp.get_id() == 403 && amqp.get_message().as_str().starts_with("ACCESS_REFUSED"))
}

async fn timed<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, lapin::Error>>,
) -> Result<T, lapin::Error> {
    tokio::time::timeout(OP_TIMEOUT, f).await.unwrap_or_else(|_| panic!("{what}: no answer within {OP_TIMEOUT:?}"))
}

async fn connect(url: &str) -> Connection {
    Connection::connect(url, ConnectionProperties::default()).await.expect("the role user connects")
}

/// Publishes with confirms and `mandatory`, exactly as the runtime's publisher does.
async fn publish(conn: &Connection, exchange: &str, routing_key: &str) -> Result<(), lapin::Error> {
    let publisher = timed("confirm.select", Publisher::open(conn, None)).await?;
    let props = BasicProperties::default().with_delivery_mode(2).with_content_type("application/json".into());
    match tokio::time::timeout(OP_TIMEOUT, publisher.send_raw(exchange, routing_key, b"{}", props)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(pipeline_core::PublishError::Amqp { source, .. })) => Err(source),
        Ok(Err(other)) => panic!("publish to {exchange}/{routing_key}: unexpected outcome {other}"),
        Err(_) => panic!("publish to {exchange}/{routing_key}: no confirm within {OP_TIMEOUT:?}"),
    }
}

/// Starts a consumer the way a worker does (qos, then basic.consume).
async fn consume(conn: &Connection, queue: &str) -> Result<(), lapin::Error> {
    let channel = timed("channel.open", conn.create_channel()).await?;
    timed("basic.qos", channel.basic_qos(1, BasicQosOptions::default())).await?;
    timed(
        "basic.consume",
        channel.basic_consume(queue.into(), "probe".into(), BasicConsumeOptions::default(), FieldTable::default()),
    )
    .await?;
    let _ = channel.close(200, "probe done".into()).await;
    Ok(())
}

/// The passive checks a worker with `topology.declare = false` makes.
async fn check_topology(conn: &Connection, topology: &Topology) -> Result<(), lapin::Error> {
    let channel = timed("channel.open", conn.create_channel()).await?;
    timed("passive declares", topology.check_exists(&channel)).await
}

async fn declare_queue(conn: &Connection, name: &str) -> Result<(), lapin::Error> {
    let channel = timed("channel.open", conn.create_channel()).await?;
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    timed("queue.declare", channel.queue_declare(name.into(), durable, FieldTable::default())).await.map(drop)
}

async fn declare_exchange(conn: &Connection, name: &str) -> Result<(), lapin::Error> {
    let channel = timed("channel.open", conn.create_channel()).await?;
    let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
    timed(
        "exchange.declare",
        channel.exchange_declare(name.into(), ExchangeKind::Direct, durable, FieldTable::default()),
    )
    .await
}

async fn bind(conn: &Connection, queue: &str, exchange: &str) -> Result<(), lapin::Error> {
    let channel = timed("channel.open", conn.create_channel()).await?;
    timed(
        "queue.bind",
        channel.queue_bind(
            queue.into(),
            exchange.into(),
            "probe".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
}

async fn delete_queue(conn: &Connection, queue: &str) -> Result<(), lapin::Error> {
    let channel = timed("channel.open", conn.create_channel()).await?;
    timed("queue.delete", channel.queue_delete(queue.into(), QueueDeleteOptions::default())).await.map(drop)
}

#[track_caller]
fn allowed(role: &str, what: &str, result: Result<(), lapin::Error>) {
    if let Err(e) = result {
        panic!("{role} must be allowed to {what}, but: {e}");
    }
}

#[track_caller]
fn refused(role: &str, what: &str, result: Result<(), lapin::Error>) {
    match result {
        Ok(()) => panic!("{role} must NOT be allowed to {what}, but the broker allowed it"),
        Err(e) => assert!(is_access_refused(&e), "{role} {what}: expected 403 ACCESS_REFUSED, got {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// What each role needs, from the topology's own constants
// ---------------------------------------------------------------------------------------------

/// What one role's process does on the broker.
struct Role {
    name: &'static str,
    /// The work queue it consumes, if it is a consumer.
    consumes: Option<&'static QueueSpec>,
    /// Every (exchange, routing key) it publishes to: next stage, retry ladder, dead letters.
    publishes: Vec<(&'static str, String)>,
}

impl Role {
    fn exchanges(&self) -> BTreeSet<&'static str> {
        self.publishes.iter().map(|(e, _)| *e).collect()
    }
}

fn route(r: Route) -> (&'static str, String) {
    (r.exchange, r.routing_key.to_owned())
}

/// The role table of the design: each consumer publishes its next stage (if any), its retry
/// ladder and its dead letters; the producers publish their one route.
fn roles(topology: &Topology) -> Vec<Role> {
    // From the one list of binaries: what each publishes, plus a consumer's first retry step and
    // its failure route.
    pipeline_core::consumer::BINARIES
        .into_iter()
        .map(|binary| {
            let mut publishes: Vec<_> = binary.publishes.iter().copied().map(route).collect();
            if let Some(q) = binary.consumes {
                publishes.push((RETRY_EXCHANGE, topology.retry_ladder(q)[0].queue.clone()));
                publishes.push(route(q.failure_route()));
            }
            Role { name: binary.name, consumes: binary.consumes, publishes }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The file itself
// ---------------------------------------------------------------------------------------------

#[test]
fn definitions_define_every_role_with_anchored_regexes_and_placeholder_passwords() {
    let defs = read_definitions();
    let users: BTreeSet<String> = defs["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| role_of(u["name"].as_str().expect("name")).to_owned())
        .collect();
    assert_eq!(users, role_names(), "one user per role, no others");
    for user in defs["users"].as_array().expect("users") {
        // An empty hash matches no password: nobody logs in until an operator sets one.
        assert_eq!(user["password_hash"], "", "{}: passwords in the file are placeholders", user["name"]);
        let tags = user["tags"].as_str().expect("tags");
        let expected = if user["name"] == "mailroom-admin" { "management" } else { "" };
        assert_eq!(tags, expected, "{}: no more management access than needed", user["name"]);
    }
    let vhosts: Vec<&str> =
        defs["vhosts"].as_array().expect("vhosts").iter().filter_map(|v| v["name"].as_str()).collect();
    assert_eq!(vhosts, [FILE_VHOST]);
    let permissions = defs["permissions"].as_array().expect("permissions");
    assert_eq!(permissions.len(), role_names().len(), "one permission entry per role");
    for p in permissions {
        for kind in ["configure", "write", "read"] {
            let regex = p[kind].as_str().expect("regex");
            // Unanchored, `email_exchange` would also match `email_exchange_v2`, and `.` any char.
            assert!(
                regex.starts_with('^') && regex.ends_with('$'),
                "{} {kind} regex {regex:?} is not anchored",
                p["user"]
            );
        }
        if p["user"] != "mailroom-admin" {
            assert_eq!(p["configure"], "^$", "{}: only the admin configures", p["user"]);
        }
    }
    // Every role that may write to the retry exchange is held to its own queue's retry keys.
    let topic: BTreeMap<String, &Value> = defs["topic_permissions"]
        .as_array()
        .expect("topic_permissions")
        .iter()
        .map(|t| (role_of(t["user"].as_str().expect("user")).to_owned(), t))
        .collect();
    for binary in pipeline_core::consumer::BINARIES {
        let Some(queue) = binary.consumes else {
            assert!(!topic.contains_key(binary.name), "{}: no retries, no topic permission", binary.name);
            continue;
        };
        let t = topic.get(binary.name).unwrap_or_else(|| panic!("{}: no topic permission", binary.name));
        assert_eq!(t["exchange"], RETRY_EXCHANGE, "{}", binary.name);
        let escaped = queue.name.replace('.', "\\.");
        assert_eq!(t["write"], format!("^{escaped}\\.retry\\.[0-9]+ms$"), "{}", binary.name);
        assert_eq!(t["read"], "^$", "{}", binary.name);
    }
    assert_eq!(topic.len(), pipeline_core::consumer::BINARIES.iter().filter(|b| b.consumes.is_some()).count());
}

// ---------------------------------------------------------------------------------------------
// What each operation needs, found out on the broker
// ---------------------------------------------------------------------------------------------

/// A user with exactly one set of permissions on a test vhost; deleted on drop.
pub(crate) async fn user_with(
    vhost: &str,
    tag: &str,
    configure: &str,
    write: &str,
    read: &str,
) -> (String, BrokerAccounts) {
    let name = format!("mailroom-perm-{}-{tag}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    // The vhost belongs to TestVhost; this guard only removes the user.
    let guard = BrokerAccounts { vhost: None, users: vec![name.clone()] };
    let api = Api::new();
    api.put_user(&name, "probe-password", "").await;
    mailroom_tests::mgmt().set_permissions(vhost, &name, configure, write, read).await.expect("set permissions");
    (amqp_url_as(vhost, &name, "probe-password"), guard)
}

#[tokio::test]
async fn each_operation_needs_exactly_the_permission_the_definitions_grant_for_it() {
    let vhost = TestVhost::create().await;
    let topology = Topology::new(&topology::DEFAULT_RETRY_DELAYS_MS);
    let guest = connect(&vhost.amqp_url()).await;
    let setup = guest.create_channel().await.expect("channel");
    topology.declare(&setup).await.expect("declare as guest");

    // No permission at all (the "^$" a worker has for configure): the passive declares of a
    // worker with `topology.declare = false`, qos and confirm.select all pass — RabbitMQ up to
    // 4.2.5 checks no permission for them — while publishing and consuming are refused. (4.2.6
    // and 4.3.0 demand configure for passive declares, later releases any permission on the
    // resource: rabbitmq-server#16085, #16272. If this fails after a broker upgrade, that is why;
    // docs/OPERATIONS.md, Security, says what changes then.)
    let (url, _nobody) = user_with(&vhost.name, "none", "^$", "^$", "^$").await;
    let conn = connect(&url).await;
    allowed("a user without permissions", "check the topology passively", check_topology(&conn, &topology).await);
    refused(
        "a user without permissions",
        "publish to email_exchange",
        publish(&conn, EMAIL_EXCHANGE, "classify").await,
    );
    refused("a user without permissions", "consume emails.to_classify", consume(&conn, EMAILS_TO_CLASSIFY.name).await);
    // "^$" matches the empty name, but the broker checks the default exchange as `amq.default`.
    refused(
        "a user without permissions",
        "publish to the default exchange",
        publish(&conn, "", EMAILS_TO_CLASSIFY.name).await,
    );

    // Write on the exchange alone is enough for a confirmed, mandatory publish: `mandatory`
    // needs no read on the queue it routes to, confirms need nothing.
    let (url, _writer) = user_with(&vhost.name, "write", "^$", "^(email_exchange)$", "^$").await;
    let conn = connect(&url).await;
    allowed(
        "write on email_exchange",
        "publish to it with confirms and mandatory",
        publish(&conn, EMAIL_EXCHANGE, "classify").await,
    );
    refused(
        "write on email_exchange",
        "publish to document_exchange",
        publish(&conn, DOCUMENT_EXCHANGE, "ingest").await,
    );
    refused("write on email_exchange", "consume the queue it routes to", consume(&conn, EMAILS_TO_CLASSIFY.name).await);

    // Read on the queue alone is enough to consume it (after qos, like the runtime). The dot is
    // escaped, as in the file: unescaped it would also match `emails_to_classify`.
    let (url, _reader) = user_with(&vhost.name, "read", "^$", "^$", r"^(emails\.to_classify)$").await;
    let conn = connect(&url).await;
    allowed("read on emails.to_classify", "consume it", consume(&conn, EMAILS_TO_CLASSIFY.name).await);
    refused("read on emails.to_classify", "consume emails.to_respond", consume(&conn, EMAILS_TO_RESPOND.name).await);
    refused("read on emails.to_classify", "publish anywhere", publish(&conn, EMAIL_EXCHANGE, "respond").await);
}

// ---------------------------------------------------------------------------------------------
// The roles of definitions.json
// ---------------------------------------------------------------------------------------------

/// A handler that does nothing but say where it would publish: the runtime's broker
/// operations are what is under test.
struct Idle(&'static [Route]);

impl Handler for Idle {
    type Input = Value;

    fn publishes(&self) -> &'static [Route] {
        self.0
    }

    async fn handle(&self, _input: Value, _meta: &DeliveryMeta) -> Result<Vec<Outgoing>, HandlerError> {
        Ok(Vec::new())
    }
}

/// Settings of a process running as `url`'s user, checking the topology instead of declaring it.
fn settings_for(url: &str) -> Settings {
    Settings::load_from(
        None,
        WorkerEnv::new()
            .set("amqp.url", url.to_owned())
            .set("topology.declare", "false")
            .set("amqp.reconnect_initial_ms", "100")
            .set("amqp.reconnect_max_ms", "500")
            .owned(),
    )
    .expect("settings")
}

/// Runs the real consumer runtime as `role` until it reports ready (or fails the test).
async fn worker_becomes_ready(role: &str, queue: &'static QueueSpec, publishes: &'static [Route], url: &str) {
    let telemetry = Arc::new(Telemetry::default());
    let worker =
        pipeline_core::Worker::new(role, queue, Arc::new(Idle(publishes)), &settings_for(url), telemetry.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    let ready = tokio::time::timeout(Duration::from_secs(20), async {
        while !telemetry.health.is_ready() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let reason = telemetry.health.reason();
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(40), running).await;
    assert!(ready.is_ok(), "the {role} runtime did not become ready as mailroom-{role}: {reason}");
}

#[tokio::test]
async fn each_role_can_do_exactly_what_it_needs_and_is_refused_the_rest() {
    let roles_vhost = RoleVhost::load().await;
    roles_vhost.apply_topology().await;
    let topology = Topology::new(&topology::DEFAULT_RETRY_DELAYS_MS);
    // Every exchange a role could try: ours, the default one, and a built-in.
    let exchanges: Vec<&str> = topology.exchanges.iter().map(String::as_str).chain(["", "amq.direct"]).collect();

    for role in roles(&topology) {
        let name = role.name;
        let conn = connect(&roles_vhost.url(name)).await;
        allowed(name, "check the topology passively", check_topology(&conn, &topology).await);

        for (exchange, routing_key) in &role.publishes {
            allowed(name, &format!("publish to {exchange}/{routing_key}"), publish(&conn, exchange, routing_key).await);
        }
        // The retry exchange routes into every work queue; a role may use only its own queue's
        // retry keys (topic permissions), so no role but the sender's reaches emails.to_send
        // through it.
        if role.consumes.is_some() {
            for other in topology::WORK_QUEUES.iter().filter(|q| Some(q.name) != role.consumes.map(|c| c.name)) {
                let key = topology.retry_ladder(other)[0].queue.clone();
                refused(
                    name,
                    &format!("publish to {RETRY_EXCHANGE}/{key}"),
                    publish(&conn, RETRY_EXCHANGE, &key).await,
                );
            }
        }
        let own = role.exchanges();
        for exchange in exchanges.iter().filter(|e| !own.contains(*e)) {
            // The routing key would route if the publish were allowed (the default exchange
            // routes by queue name), so a 403 is the permission and not a missing route.
            let routing_key = role.consumes.map_or(EMAILS_TO_CLASSIFY.name, |q| q.name);
            refused(name, &format!("publish to exchange {exchange:?}"), publish(&conn, exchange, routing_key).await);
        }

        if let Some(queue) = role.consumes {
            allowed(name, &format!("consume {}", queue.name), consume(&conn, queue.name).await);
        }
        for queue in topology.queues.iter().map(|q| q.name.as_str()) {
            if Some(queue) != role.consumes.map(|q| q.name) {
                refused(name, &format!("consume {queue}"), consume(&conn, queue).await);
            }
        }

        // Nothing to configure: no declaring, binding (write on the queue, read on the exchange)
        // or deleting — not even its own queue.
        let own_queue = role.consumes.unwrap_or(&DEAD_LETTER_QUEUE).name;
        refused(name, "declare a queue", declare_queue(&conn, &format!("probe.{name}")).await);
        refused(name, "declare an exchange", declare_exchange(&conn, &format!("probe.{name}")).await);
        refused(name, &format!("bind {own_queue} to {EMAIL_EXCHANGE}"), bind(&conn, own_queue, EMAIL_EXCHANGE).await);
        refused(name, &format!("delete {own_queue}"), delete_queue(&conn, own_queue).await);
        refused(name, "re-declare the topology", {
            let channel = conn.create_channel().await.expect("channel");
            timed("declare", topology.declare(&channel)).await
        });
        let _ = conn.close(200, "done".into()).await;

        // And the real runtime, as this role, with `topology.declare = false`.
        let url = roles_vhost.url(name);
        match role.consumes {
            Some(queue) => {
                let binary = pipeline_core::consumer::binary(name).expect("a binary");
                worker_becomes_ready(name, queue, binary.publishes, &url).await
            }
            None => {
                let producer = Producer::new(name, &settings_for(&url), Arc::new(Telemetry::default()));
                producer.connect().await.unwrap_or_else(|e| panic!("{name} producer as mailroom-{name}: {e}"));
                let published = if name == "poller" {
                    producer.publish(&support_email("role-probe")).await
                } else {
                    producer.publish(&document("role-probe")).await
                };
                published.unwrap_or_else(|e| panic!("{name} producer publishes as mailroom-{name}: {e}"));
                producer.close().await;
            }
        }
    }

    // The admin configures, writes and reads everything in the vhost.
    let admin = connect(&roles_vhost.url("admin")).await;
    for (exchange, routing_key) in [
        route(topology::CLASSIFY),
        route(topology::INGEST),
        route(topology::FAILED_EMAILS),
        (RETRY_EXCHANGE, topology.retry_ladder(&EMAILS_TO_SEND)[0].queue.clone()),
    ] {
        allowed(
            "admin",
            &format!("publish to {exchange}/{routing_key}"),
            publish(&admin, exchange, &routing_key).await,
        );
    }
    for queue in [&EMAILS_TO_CLASSIFY, &EMAILS_TO_RESPOND, &EMAILS_TO_SEND, &DOCUMENTS_TO_INGEST, &DEAD_LETTER_QUEUE] {
        allowed("admin", &format!("consume {}", queue.name), consume(&admin, queue.name).await);
    }
    allowed("admin", "declare a queue", declare_queue(&admin, "probe.admin").await);
    allowed("admin", "bind it", bind(&admin, "probe.admin", DEAD_LETTER_EXCHANGE).await);
    allowed("admin", "delete it", delete_queue(&admin, "probe.admin").await);
    let _ = admin.close(200, "done".into()).await;

    // Role users cannot run the operator's `topology apply` either.
    let (code, out) =
        run(&bin_path("mailroom"), &["topology", "apply"], &[(env_var("amqp.url"), roles_vhost.url("classifier"))])
            .await;
    assert_ne!(code, 0, "mailroom-classifier must not be able to apply the topology: {out}");
    assert!(out.contains("ACCESS_REFUSED") || out.contains("403"), "{out}");
    assert!(!out.contains(&roles_vhost.account("classifier").password), "the password was logged: {out}");
}

fn support_email(id: &str) -> EmailToClassify {
    EmailToClassify::new(
        IncomingEmail {
            email_id: id.into(),
            thread_id: Some(format!("thread-{id}")),
            from: "jane.doe@example.com".into(),
            to: "support@northwind.example".into(),
            subject: "Desk shows E04".into(),
            body: "Hi, my Lift Pro desk suddenly shows E04 on the control panel and won't move. \
                   What does that mean and how do I fix it?"
                .into(),
            agent_email: "support@northwind.example".into(),
            ..Default::default()
        },
        5,
    )
}

fn document(id: &str) -> DocumentToIngest {
    DocumentToIngest {
        message_id: pipeline_core::messages::new_message_id(),
        timestamp: pipeline_core::messages::now(),
        document_id: id.into(),
        filename: "probe.txt".into(),
        file_path: "/nonexistent/probe.txt".into(),
        file_size_bytes: 0,
        uploaded_by: "probe".into(),
        agent_email: "support@northwind.example".into(),
        metadata: DocumentMetadata { upload_source: None, content_type: None },
    }
}

// ---------------------------------------------------------------------------------------------
// A worker that may not declare waits for the admin
// ---------------------------------------------------------------------------------------------

async fn readyz(http: &reqwest::Client, base: &str) -> Option<(u16, String)> {
    let response = http.get(format!("{base}/readyz")).send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.unwrap_or_default()))
}

#[tokio::test]
async fn a_worker_without_configure_permission_is_not_ready_until_the_admin_applies_the_topology() {
    let roles_vhost = RoleVhost::load().await;
    let db = TestDb::create().await;
    let base = format!("127.0.0.1:{}", free_port());
    let env = WorkerEnv::new()
        .set("amqp.url", roles_vhost.url("classifier"))
        .set("topology.declare", "false")
        .set("amqp.reconnect_initial_ms", "100")
        .set("amqp.reconnect_max_ms", "500")
        .set("database.url", db.url())
        .set("http.listen", base.clone())
        .build();
    let (_classifier, log) = spawn_logged(&bin_path("classifier"), &[], &env);
    let http = reqwest::Client::new();
    let base = format!("http://{base}");

    let (status, body) = wait_for(Duration::from_secs(60), "the classifier to report why it is not ready", || async {
        readyz(&http, &base).await.filter(|(_, body)| body.contains("topology missing"))
    })
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("mailroom topology apply"), "the reason says what to do: {body}");
    assert!(body.contains("NOT_FOUND"), "the reason says what is missing: {body}");
    let alive = http.get(format!("{base}/healthz")).send().await.expect("healthz");
    assert_eq!(alive.status().as_u16(), 200, "not ready is not dead: the process stays up and keeps checking");
    let logged = wait_for(Duration::from_secs(10), "the reason in the log", || async {
        std::fs::read_to_string(&log).ok().filter(|text| text.contains("topology missing"))
    })
    .await;
    assert!(logged.contains("mailroom topology apply"), "{logged}");

    roles_vhost.apply_topology().await;
    wait_for(Duration::from_secs(30), "the classifier to become ready after `topology apply`", || async {
        readyz(&http, &base).await.filter(|(status, _)| *status == 200)
    })
    .await;
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(logged.contains("Consuming."), "{logged}");
    assert!(!logged.contains(&roles_vhost.account("classifier").password), "the broker password was logged: {logged}");
}
