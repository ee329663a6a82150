//! The whole pipeline as real processes for one scenario: a throw-away vhost, database and
//! directory (inbox, outbox, uploads), the sample knowledge ingested through the real upload API
//! and document ingester, then `poller`, `classifier`, `rag-generator` and `sender` running on
//! the offline providers. The scenario feeds mail, does its damage, and [`Pipeline::finish`]
//! waits for the run to settle, stops the workers and returns the ledger [`Report`].
//!
//! The settings are those of a small production deployment with the waits shortened: retry
//! delays and the send-log claim lease of a few seconds, a send quota nobody reaches, and a
//! retry ladder long enough (≈ 45 s) to ride out the 20-second database outage of the
//! data-store scenario, since an outage shorter than the ladder must not cost a single email.
//! Every worker's log is kept under the harness's log directory and named in the output, so a
//! failed run can be read afterwards.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mailroom_tests::{TestDb, TestDir, TestVhost, bin_path, free_port, repo_root, signal, spawn_logged, wait_for};
use pipeline_core::consumer::MAIL_STAGES;
use pipeline_core::worker_env::env_var;
use sqlx::PgPool;
use tokio::process::Child;

use crate::ledger::{self, Report, Snapshot};
use crate::mailbox::{self, AGENT, Fed};

/// The four stages of the email path.
pub(crate) const STAGES: [&str; 4] = {
    let [a, b, c, d] = pipeline_core::consumer::MAIL_STAGES;
    [a.name, b.name, c.name, d.name]
};

/// The second registered mailbox of every scenario, which only has a little mail of its own.
pub(crate) const QUIET_AGENT: &str = "quiet@northwind.example";

/// The quiet mailbox's emails.
pub(crate) const REGISTERED_QUIET_MAIL: usize = 5;

/// The retry ladder of every scenario (see the module docs).
pub(crate) const RETRY_DELAYS_MS: &str = "500,2000,8000,15000,20000";

/// How a scenario wants its pipeline.
#[derive(Debug, Clone, Default)]
pub(crate) struct Options {
    /// Processes per stage (default one each; a stage absent from the map gets one).
    pub(crate) scale: HashMap<&'static str, usize>,
    /// Stages not started with the others (the slow-consumer scenario starts the classifier
    /// late).
    pub(crate) delayed: Vec<&'static str>,
    /// Extra settings for every worker.
    pub(crate) env: Vec<(&'static str, String)>,
}

/// A running worker process.
pub(crate) struct Proc {
    pub(crate) stage: &'static str,
    pub(crate) child: Child,
    pub(crate) log: PathBuf,
}

/// A running pipeline.
pub(crate) struct Pipeline {
    pub(crate) vhost: TestVhost,
    /// Dropped with the pipeline (the database goes with it).
    _db: TestDb,
    pub(crate) dir: TestDir,
    pub(crate) env: Vec<(&'static str, String)>,
    pub(crate) pool: PgPool,
    pub(crate) fed: Vec<Fed>,
    pub(crate) procs: Vec<Proc>,
    /// Unique per run: part of every Maildir name and Message-ID.
    pub(crate) run: String,
    redis_prefix: String,
    /// When the first mail was fed.
    pub(crate) fed_at: Option<Instant>,
    /// Every log file a worker of this run wrote, for the failure message.
    pub(crate) logs: Vec<PathBuf>,
}

impl Pipeline {
    /// The inbox Maildir the poller reads.
    pub(crate) fn inbox(&self) -> PathBuf {
        self.dir.path.join("inbox")
    }

    /// The outbox Maildir the sender writes.
    pub(crate) fn outbox(&self) -> PathBuf {
        self.dir.path.join("outbox")
    }

    /// Sets everything up, ingests the knowledge base and starts the workers.
    pub(crate) async fn start(options: Options) -> Self {
        let t0 = Instant::now();
        let (vhost, db, dir) = (TestVhost::create().await, TestDb::create().await, TestDir::create());
        let run = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        let redis_prefix = format!("mailroom-test:faults:{run}");
        let inbox = dir.path.join("inbox");
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(inbox.join(sub)).expect("inbox");
        }
        let upload = format!("127.0.0.1:{}", free_port());
        let mut env: Vec<(&'static str, String)> = vec![
            (env_var("amqp.url"), vhost.amqp_url()),
            (env_var("amqp.reconnect_max_ms"), "2000".into()),
            (env_var("database.url"), db.url()),
            (env_var("http.listen"), "127.0.0.1:0".into()),
            (env_var("topology.retry_delays_ms"), RETRY_DELAYS_MS.into()),
            (env_var("consumer.drain_timeout_secs"), "10".into()),
            (env_var("storage.dir"), dir.path.join("uploads").display().to_string()),
            (env_var("upload_api.listen"), upload.clone()),
            (env_var("upload_api.token"), format!("faults-{run}")),
            (env_var("mailbox.kind"), "maildir".into()),
            (env_var("mailbox.maildir"), inbox.display().to_string()),
            (env_var("mailbox.agent_email"), AGENT.into()),
            (env_var("mailbox.poll_interval_ms"), "200".into()),
            (env_var("mailbox.max_backoff_secs"), "2".into()),
            // A poller killed between its claim and the ledger update is taken over this soon.
            (env_var("mailbox.claim_timeout_secs"), "3".into()),
            // A killed poller's mailboxes are taken over this soon, and changes read each second.
            (env_var("registry.lease_secs"), "6".into()),
            (env_var("registry.refresh_secs"), "1".into()),
            (env_var("mailbox.vip_domains"), mailbox::VIP_DOMAIN.into()),
            // The receiving server whose Authentication-Results the fed mail carries.
            (env_var("mailbox.authserv_ids"), mailroom_tests::AUTHSERV_ID.into()),
            (env_var("outbox.kind"), "maildir".into()),
            (env_var("outbox.maildir"), dir.path.join("outbox").display().to_string()),
            // A quota nobody reaches: the scenarios are about faults, not pacing.
            (env_var("sender.rate_limit"), "1000000".into()),
            (env_var("sender.rate_window_secs"), "1".into()),
            (env_var("sender.rate_burst"), "100000".into()),
            (env_var("sender.claim_lease_secs"), "3".into()),
            (env_var("sender.redis_prefix"), redis_prefix.clone()),
            // A backstop: the embedding cache keys of this run expire even if the cleanup does
            // not run (the test process killed).
            (env_var("rag.embedding_cache_ttl_secs"), "900".into()),
        ];
        env.extend(options.env.iter().cloned());
        let (code, out) = mailroom_tests::run(&bin_path("mailroom"), &["topology", "apply"], &env).await;
        assert_eq!(code, 0, "topology apply: {out}");
        let url = secrecy::SecretString::from(db.url());
        let pool = mailroom_db::connect_and_migrate(&url, 4).await.expect("migrate the test database");
        // Several mailboxes, as a real deployment has: the scenario's, and a quiet second one
        // with mail of its own (REGISTERED_QUIET_MAIL emails, answered besides the scenario's),
        // both served from the registry by the same poller and sender processes.
        let quiet = dir.path.join("quiet-inbox");
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(quiet.join(sub)).expect("quiet inbox");
        }
        for (address, inbox, outbox) in [
            (AGENT, inbox.clone(), dir.path.join("outbox")),
            (QUIET_AGENT, quiet.clone(), dir.path.join("quiet-outbox")),
        ] {
            let args = [
                "mailbox".to_owned(),
                "add".to_owned(),
                address.to_owned(),
                "--set".to_owned(),
                format!("mailbox.maildir={}", inbox.display()),
                "--set".to_owned(),
                format!("outbox.maildir={}", outbox.display()),
            ];
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (code, out) = mailroom_tests::run(&bin_path("mailroom"), &args, &env).await;
            assert_eq!(code, 0, "mailbox add {address}: {out}");
        }
        for n in 0..REGISTERED_QUIET_MAIL {
            let raw = format!(
                "{}From: Quiet Customer <quiet{n}@customer.example>\r\nTo: {QUIET_AGENT}\r\n\
                 Subject: Where is my order {n}?\r\nMessage-ID: <quiet{n}.{run}@customer.example>\r\n\r\n\
                 Hello, where is my order number {n}? Thanks\r\n",
                mailroom_tests::authenticated(&format!("quiet{n}@customer.example"))
            );
            std::fs::write(quiet.join("new").join(format!("1764150000.Q{n}.{run}")), raw).expect("quiet mail");
        }
        let mut pipeline = Self {
            vhost,
            _db: db,
            dir,
            env,
            pool,
            fed: Vec::new(),
            procs: Vec::new(),
            run,
            redis_prefix,
            fed_at: None,
            logs: Vec::new(),
        };
        pipeline.ingest_knowledge(&upload).await;
        for stage in STAGES {
            if options.delayed.contains(&stage) {
                continue;
            }
            for _ in 0..options.scale.get(stage).copied().unwrap_or(1) {
                pipeline.spawn(stage);
            }
        }
        eprintln!("[faults] pipeline {} up in {:.1} s", pipeline.run, t0.elapsed().as_secs_f64());
        pipeline
    }

    /// The sample knowledge base through the real upload API and document ingester, both
    /// stopped again once the documents are ready (they are not part of the email path).
    async fn ingest_knowledge(&mut self, upload: &str) {
        let mut api = self.spawn_proc("upload-api");
        let mut ingester = self.spawn_proc("doc-ingester");
        let http = reqwest::Client::new();
        let base = format!("http://{upload}");
        wait_for(Duration::from_secs(60), "the upload API to be ready", || {
            let (http, url) = (http.clone(), format!("{base}/readyz"));
            async move { http.get(url).send().await.ok().filter(|r| r.status().is_success()).map(drop) }
        })
        .await;
        let token = self.env.iter().find(|(k, _)| *k == env_var("upload_api.token")).expect("token").1.clone();
        for name in ["shipping-faq.md", "app-troubleshooting.txt"] {
            let bytes = std::fs::read(repo_root().join("examples/knowledge").join(name)).expect("knowledge file");
            let form = reqwest::multipart::Form::new()
                .text("agent_email", AGENT.to_owned())
                .part("file", reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()));
            let r = http.post(format!("{base}/documents")).bearer_auth(&token).multipart(form).send().await;
            let r = r.expect("upload");
            assert_eq!(r.status().as_u16(), 202, "upload {name}: {}", r.text().await.unwrap_or_default());
        }
        let pool = self.pool.clone();
        wait_for(Duration::from_secs(90), "the knowledge base to be ingested", || {
            let pool = pool.clone();
            async move {
                let ready: i64 = sqlx::query_scalar("SELECT count(*) FROM documents WHERE status = 'ready'")
                    .fetch_one(&pool)
                    .await
                    .ok()?;
                (ready == 2).then_some(())
            }
        })
        .await;
        for child in [&mut api, &mut ingester] {
            signal(child, "TERM");
            let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
        }
    }

    fn spawn_proc(&mut self, program: &str) -> Child {
        let (child, log) = spawn_logged(&bin_path(program), &[], &self.env);
        self.logs.push(log);
        child
    }

    /// Starts one more process of `stage`; returns its index in `procs`.
    pub(crate) fn spawn(&mut self, stage: &'static str) -> usize {
        let (child, log) = spawn_logged(&bin_path(stage), &[], &self.env);
        self.logs.push(log.clone());
        self.procs.push(Proc { stage, child, log });
        self.procs.len() - 1
    }

    /// SIGKILLs process `index` and starts a fresh one in its place.
    pub(crate) async fn kill_and_restart(&mut self, index: usize) {
        let stage = self.procs[index].stage;
        signal(&self.procs[index].child, "KILL");
        let _ = self.procs[index].child.wait().await;
        let (child, log) = spawn_logged(&bin_path(stage), &[], &self.env);
        self.logs.push(log.clone());
        self.procs[index] = Proc { stage, child, log };
    }

    /// Whether process `index` has work in hand right now: a poller while the inbox's `new/`
    /// holds mail (it moves each message out only once published), a consumer while its
    /// `/metrics` count deliveries in flight (its address is in its log).
    pub(crate) async fn busy(&self, index: usize) -> bool {
        let proc = &self.procs[index];
        if proc.stage == "poller" {
            return std::fs::read_dir(self.inbox().join("new")).is_ok_and(|mut d| d.next().is_some());
        }
        let Ok(log) = std::fs::read_to_string(&proc.log) else { return false };
        let Some(addr) = log
            .lines()
            .map(strip_ansi)
            .find_map(|l| l.split("addr=").nth(1).map(|a| a.split_whitespace().next().unwrap_or_default().to_owned()))
        else {
            return false;
        };
        let Ok(response) = reqwest::get(format!("http://{addr}/metrics")).await else { return false };
        let metrics = response.text().await.unwrap_or_default();
        metrics
            .lines()
            .filter(|l| l.starts_with("mailroom_messages_in_flight{"))
            .any(|l| l.rsplit(' ').next().and_then(|n| n.parse::<f64>().ok()).is_some_and(|n| n > 0.0))
    }

    /// How many lines of the logs of every `stage` process of this run contain `needle`.
    pub(crate) fn count_in_logs(&self, stage: &str, needle: &str) -> usize {
        self.logs
            .iter()
            .filter(|log| log.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("{stage}-"))))
            .filter_map(|log| std::fs::read_to_string(log).ok())
            .map(|text| text.lines().filter(|l| strip_ansi(l).contains(needle)).count())
            .sum()
    }

    /// Delivers messages `range` of the mix into the inbox.
    pub(crate) fn feed(&mut self, range: std::ops::Range<usize>) {
        self.fed_at.get_or_insert_with(Instant::now);
        let fed = mailbox::deliver(&self.inbox(), &self.run, range);
        self.fed.extend(fed);
    }

    /// Publishes messages `range` of the mix straight to `emails.to_classify` (confirmed,
    /// many at a time), at the priorities `priority` picks, bypassing the mailbox. Returns each
    /// published email's priority.
    pub(crate) async fn publish_direct(
        &mut self,
        range: std::ops::Range<usize>,
        priority: impl FnMut(usize) -> u8,
    ) -> HashMap<String, u8> {
        self.fed_at.get_or_insert_with(Instant::now);
        let batch = mailbox::direct(&self.run, range, priority);
        // Each email's receipt, as the poller would have recorded it: the sender answers only
        // mail a mailbox received.
        for (_, m) in &batch {
            mailroom_tests::history::record_received(&self.pool, AGENT, &m.email_id, &m.from).await;
        }
        let conn = lapin::Connection::connect(&self.vhost.amqp_url(), lapin::ConnectionProperties::default())
            .await
            .expect("amqp");
        let publisher = pipeline_core::Publisher::open(&conn, None).await.expect("publisher");
        for chunk in batch.chunks(500) {
            let sends = chunk.iter().map(|(_, m)| publisher.publish(m));
            for r in futures_util::future::join_all(sends).await {
                r.expect("confirmed publish");
            }
        }
        let _ = conn.close(200, "published".into()).await;
        let priorities = batch.iter().map(|(fed, m)| (fed.id.clone(), m.priority)).collect();
        self.fed.extend(batch.into_iter().map(|(fed, _)| fed));
        priorities
    }

    /// How many fed emails have reached a terminal state so far (a cheap, approximate count
    /// for progress; [`finish`](Self::finish) does the real check). `None` while the database
    /// does not answer.
    pub(crate) async fn progress(&self) -> Option<usize> {
        let done: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM mailbox_messages WHERE agent_email = $1 AND state = 'unparseable') \
             + (SELECT count(*) FROM classifications WHERE agent_email = $1 AND NOT is_support_inquiry) \
             + (SELECT count(*) FROM replies WHERE agent_email = $1 AND state <> 'claimed')",
        )
        .bind(AGENT)
        .fetch_one(&self.pool)
        .await
        .ok()?;
        let dead = self.exact_depth("dead_letter_queue").await.unwrap_or(0) as i64;
        let unparseable: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM mailbox_messages WHERE agent_email = $1 AND state = 'unparseable'",
        )
        .bind(AGENT)
        .fetch_one(&self.pool)
        .await
        .ok()?;
        Some(usize::try_from(done + (dead - unparseable).max(0)).unwrap_or(0))
    }

    /// Waits until the progress count reaches `n` (or the deadline passes).
    pub(crate) async fn wait_progress(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.progress().await.is_some_and(|p| p >= n) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        false
    }

    /// Ready messages in a queue, exactly (a passive declare); `None` while the broker does not
    /// answer.
    pub(crate) async fn exact_depth(&self, queue: &str) -> Option<u32> {
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            lapin::Connection::connect(&self.vhost.amqp_url(), lapin::ConnectionProperties::default()),
        )
        .await
        .ok()?
        .ok()?;
        let ch = conn.create_channel().await.ok()?;
        let passive = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
        let depth = ch.queue_declare(queue.into(), passive, lapin::types::FieldTable::default()).await.ok();
        let _ = conn.close(200, "ok".into()).await;
        depth.map(|q| q.message_count())
    }

    /// Waits for the run to settle, stops the workers gracefully, reads the dead letters and
    /// checks the ledger. Prints the timings.
    /// What is wrong with the quiet mailbox's mail: each of its emails must have ended exactly
    /// once — a reply sent (one file in its own outbox) or drafted, or classified not support —
    /// whatever the scenario did to the pipeline they share.
    async fn quiet_mailbox_violations(&self) -> Vec<String> {
        let rows: Vec<(String, Option<String>, Option<bool>)> = sqlx::query_as(
            "SELECT m.mailbox_id, r.state, c.is_support_inquiry FROM mailbox_messages m \
             LEFT JOIN replies r ON r.agent_email = m.agent_email AND r.email_id = m.mailbox_id \
             LEFT JOIN classifications c ON c.agent_email = m.agent_email AND c.email_id = m.mailbox_id \
             WHERE m.agent_email = $1",
        )
        .bind(QUIET_AGENT)
        .fetch_all(&self.pool)
        .await
        .expect("the quiet mailbox's ledger");
        let mut v = Vec::new();
        if rows.len() != REGISTERED_QUIET_MAIL {
            v.push(format!("quiet mailbox: {} of {REGISTERED_QUIET_MAIL} emails taken in", rows.len()));
        }
        for (id, reply, support) in &rows {
            match (reply.as_deref(), support) {
                (Some("sent" | "drafted"), _) | (None, Some(false)) => {}
                other => v.push(format!("quiet mailbox: {id} ended {other:?}")),
            }
        }
        let sent = rows.iter().filter(|(_, r, _)| r.as_deref() == Some("sent")).count();
        let files = mailroom_tests::maildir_messages(&self.dir.path.join("quiet-outbox")).len();
        if files != sent {
            v.push(format!("quiet mailbox: {files} reply files for {sent} sent replies"));
        }
        v
    }

    pub(crate) async fn finish(&mut self, settle_timeout: Duration) -> Report {
        let n = self.fed.len();
        let settled = self.wait_progress(n, settle_timeout).await;
        let fed_at = self.fed_at.unwrap_or_else(Instant::now);
        let pipeline_secs = fed_at.elapsed().as_secs_f64();
        if !settled {
            eprintln!(
                "[faults] run {}: only {:?} of {n} settled after {settle_timeout:?}",
                self.run,
                self.progress().await
            );
        }
        // Whatever is still in flight (a duplicate a takeover republished, a message parked in
        // a delay queue) must drain before the workers stop: wait for empty work and delay
        // queues as the management API reports them (refreshed every ~5 s). Dead letters stay
        // where they are: that is their terminal state.
        let vhost = self.vhost.name.clone();
        let drained = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                if let Ok(queues) = mailroom_tests::mgmt().queues(&vhost).await
                    && queues.iter().filter(|q| q.name != "dead_letter_queue").all(|q| q.messages == 0)
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
        .await;
        if drained.is_err() {
            eprintln!("[faults] run {}: queues did not drain within 60 s", self.run);
        }
        self.stop_all().await;
        let mut snapshot = Snapshot::read(&self.pool, &self.inbox(), &self.outbox()).await;
        snapshot.dead_letters = ledger::read_dead_letters(&self.vhost.amqp_url(), None).await;
        snapshot.queues = self.settled_depths(snapshot.dead_letters.len()).await;
        let mut report = ledger::check(&self.fed, &snapshot);
        report.violations.extend(self.quiet_mailbox_violations().await);
        eprintln!(
            "[faults] run {}: {n} emails settled in {pipeline_secs:.1} s ({:.0}/s); {}",
            self.run,
            n as f64 / pipeline_secs,
            report.summary()
        );
        if !report.violations.is_empty() {
            eprintln!("[faults] worker logs of run {}:", self.run);
            for log in &self.logs {
                eprintln!("  {}", log.display());
            }
        }
        report
    }

    /// Queue depths once the management API's statistics have caught up (they lag by up to
    /// ~5 s): polled until every queue is empty but the dead-letter queue, which holds
    /// `dead_letters` ready, or for at most 20 s, whichever comes first.
    pub(crate) async fn settled_depths(&self, dead_letters: usize) -> std::collections::BTreeMap<String, (u64, u64)> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let depths = ledger::queue_depths(&self.vhost.name, &self.vhost.amqp_url()).await;
            let settled = depths.iter().all(|(name, (ready, unacked))| {
                *unacked == 0 && *ready == if name == "dead_letter_queue" { dead_letters as u64 } else { 0 }
            });
            if settled || Instant::now() >= deadline {
                return depths;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// SIGTERM to every worker (they drain what they hold), SIGKILL after 30 s; stage by stage
    /// in the mail's order (poller, classifier, generator, sender), each stage gone before the
    /// next is told. A stage draining what it holds may publish once more — a redelivered
    /// duplicate's message, republished by design — and the stage after it is still there to
    /// take it; stopped all at once, that message was left ready in `emails.to_send` after the
    /// sender had gone (seen once in the broker scenario, 2026-12-05).
    pub(crate) async fn stop_all(&mut self) {
        let order = |stage: &str| MAIL_STAGES.iter().position(|b| b.name == stage).unwrap_or(MAIL_STAGES.len());
        let mut stages: Vec<&'static str> = self.procs.iter().map(|p| p.stage).collect();
        stages.sort_by_key(|s| order(s));
        stages.dedup();
        for stage in stages {
            for p in self.procs.iter().filter(|p| p.stage == stage && p.child.id().is_some()) {
                signal(&p.child, "TERM");
            }
            for p in self.procs.iter_mut().filter(|p| p.stage == stage) {
                if tokio::time::timeout(Duration::from_secs(30), p.child.wait()).await.is_err() {
                    eprintln!("[faults] {} ({}) did not stop within 30 s; killing it", p.stage, p.log.display());
                    let _ = p.child.kill().await;
                }
            }
        }
    }
}

/// A log line without its colour codes (`ESC [ … m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Drop for Pipeline {
    /// Stops the workers and removes this run's Redis keys: the sender's quota and throttle
    /// (`<prefix>:*`) and the embedding cache entries of the questions fed (the generator's keys
    /// are not prefixed per deployment, so they are computed from the texts). The vhost, the
    /// database and the directory clean up after themselves.
    fn drop(&mut self) {
        // Workers first: they must not write new keys after the cleanup, nor watch their vhost
        // and database vanish under them.
        for p in &mut self.procs {
            let _ = p.child.start_kill();
        }
        let prefix = self.redis_prefix.clone();
        let model = embedders::Embedder::model_id(&embedders::HashingEmbedder::new(384)).to_owned();
        let cache_keys: Vec<String> = self
            .fed
            .iter()
            .map(|f| rag_generator::cache::key(&model, &mail_mime::quoting::question_text(&f.subject, &f.body)))
            .collect();
        let _ = std::thread::spawn(move || {
            let Ok(client) =
                mailroom_redis::client(&pipeline_core::settings::RedisSettings::from_url("redis://127.0.0.1:6379"))
            else {
                return;
            };
            let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(5)) else { return };
            let mut keys: Vec<String> =
                redis::cmd("KEYS").arg(format!("{prefix}:*")).query(&mut conn).unwrap_or_default();
            keys.extend(cache_keys);
            for chunk in keys.chunks(500) {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(chunk).query(&mut conn);
            }
        })
        .join();
    }
}
