//! One poller process for every enabled mailbox of the registry (`mailroom mailbox …`).
//!
//! Each mailbox gets a task of its own — its own source session, cursor, ledger and backoff —
//! so a mailbox whose credentials are refused, or that has a 50,000-message backlog, never
//! holds up another's mail: each is polled at its own interval, concurrently. The registry is
//! read again every `registry.refresh_secs`: a new or enabled mailbox starts, a disabled or
//! removed one stops, a changed one restarts with its new settings.
//!
//! Several poller processes share the registry through a lease per mailbox in PostgreSQL
//! (`mailbox_pollers`): a task polls only while its process holds the mailbox's lease, renewed
//! every third of `registry.lease_secs`; a dead poller's leases run out and another process
//! takes its mailboxes over. How each mailbox's last pass went is recorded there too, for
//! `mailroom status`, and in the metrics `mailroom_poller_mailbox_up{mailbox}` and
//! `mailroom_poller_mailbox_last_success_timestamp_seconds{mailbox}`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mailroom_db::mailboxes::{self, MailboxRow};
use pipeline_core::mailbox_overlay::{RegistrySettings, Version};
use pipeline_core::topology::CLASSIFY;
use pipeline_core::{Producer, Settings, Telemetry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{Instrument as _, error, info, info_span, warn};

use crate::any_source::AnySource;
use crate::{Ledger, MailboxSettings, NAME, Poller, Step};

/// Whether any mailbox is registered (then the registry, not `[mailbox]`, says what to poll).
pub async fn has_mailboxes(pool: &PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM mailboxes)").fetch_one(pool).await
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MailboxLabel {
    mailbox: String,
}

/// Per-mailbox metrics of the registry mode (registered once per process).
#[derive(Clone, Default)]
pub struct MailboxMetrics {
    up: Family<MailboxLabel, Gauge>,
    last_success: Family<MailboxLabel, Gauge>,
    published: Family<MailboxLabel, Gauge>,
}

impl MailboxMetrics {
    /// Adds them to the worker's registry.
    pub fn register(telemetry: &Telemetry) -> Self {
        let m = Self::default();
        let r = &telemetry.metrics;
        r.register("poller_mailbox_up", "1 when the mailbox's last pass completed, 0 when it failed", m.up.clone());
        r.register(
            "poller_mailbox_last_success_timestamp_seconds",
            "Unix time of the mailbox's last completed pass",
            m.last_success.clone(),
        );
        r.register(
            "poller_mailbox_published",
            "Messages of the mailbox published by this process's current task",
            m.published.clone(),
        );
        m
    }
}

/// A mailbox task and what it was started from.
struct Running {
    version: Version,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Why [`serve`] returned.
pub enum Ended {
    /// Shutdown was asked for.
    Shutdown,
    /// The registry is empty again: back to the mailbox of `[mailbox]`.
    Emptied,
}

/// Polls every enabled registered mailbox until `shutdown` (or until the registry is emptied).
pub async fn serve(
    settings: &Settings,
    pool: &PgPool,
    telemetry: &Arc<Telemetry>,
    metrics: &MailboxMetrics,
    shutdown: &mut (impl std::future::Future<Output = ()> + Unpin),
) -> anyhow::Result<Ended> {
    let registry: RegistrySettings = settings.section("registry")?;
    let owner = settings.consumer_for(NAME).consumer_id;
    telemetry.health.set_consuming(true);
    telemetry.health.set_reason("");
    info!(owner, refresh_secs = registry.refresh_secs, "Serving the mailboxes of the registry.");
    let mut running: HashMap<String, Running> = HashMap::new();
    let ended = loop {
        match mailboxes::list(pool).await {
            Ok(rows) if rows.is_empty() => break Ended::Emptied,
            Ok(rows) => {
                telemetry.health.set_connected(true);
                reconcile(&mut running, rows, settings, pool, &registry, &owner, metrics, telemetry).await;
            }
            Err(e) => warn!(error = %e, "Cannot read the mailbox registry; keeping the mailboxes as they are."),
        }
        tokio::select! {
            () = &mut *shutdown => break Ended::Shutdown,
            () = tokio::time::sleep(registry.refresh()) => {}
        }
    };
    for (address, run) in running.drain() {
        stop(&address, run).await;
    }
    Ok(ended)
}

/// Starts, stops and restarts mailbox tasks so that exactly the enabled mailboxes run, each
/// with its current settings.
#[allow(clippy::too_many_arguments)]
async fn reconcile(
    running: &mut HashMap<String, Running>,
    rows: Vec<MailboxRow>,
    settings: &Settings,
    pool: &PgPool,
    registry: &RegistrySettings,
    owner: &str,
    metrics: &MailboxMetrics,
    telemetry: &Arc<Telemetry>,
) {
    // Each entry's version once per read: it reads the secret files its references name.
    let wanted: HashMap<String, (MailboxRow, Version)> = rows
        .into_iter()
        .filter(|r| r.enabled)
        .map(|r| {
            let version = Version::of(r.updated_at, &r.settings);
            (r.address.clone(), (r, version))
        })
        .collect();
    let outdated: Vec<String> = running
        .iter()
        .filter(|(address, run)| wanted.get(*address).is_none_or(|(_, version)| *version != run.version))
        .map(|(address, _)| address.clone())
        .collect();
    for address in outdated {
        if let Some(run) = running.remove(&address) {
            info!(mailbox = %address, "Mailbox disabled, removed or changed; stopping its task.");
            stop(&address, run).await;
            let _ = mailboxes::release(pool, &address, owner).await;
            metrics.up.remove(&MailboxLabel { mailbox: address.clone() });
            telemetry.health.set_detail(&address, None);
        }
    }
    for (address, (row, version)) in wanted {
        if running.contains_key(&address) {
            continue;
        }
        let (stop, stopped) = watch::channel(false);
        let task = MailboxTask {
            base: settings.clone(),
            pool: pool.clone(),
            row: row.clone(),
            owner: owner.to_owned(),
            registry: registry.clone(),
            metrics: metrics.clone(),
            telemetry: telemetry.clone(),
        };
        let span = info_span!("mailbox", mailbox = %address);
        let handle = tokio::spawn(task.run(stopped).instrument(span));
        running.insert(address, Running { version, stop, task: handle });
    }
}

async fn stop(address: &str, run: Running) {
    let _ = run.stop.send(true);
    if tokio::time::timeout(Duration::from_secs(30), run.task).await.is_err() {
        warn!(mailbox = %address, "The mailbox task did not stop within 30 s.");
    }
}

/// One mailbox, polled while this process holds its lease.
struct MailboxTask {
    base: Settings,
    pool: PgPool,
    row: MailboxRow,
    owner: String,
    registry: RegistrySettings,
    metrics: MailboxMetrics,
    telemetry: Arc<Telemetry>,
}

impl MailboxTask {
    fn label(&self) -> MailboxLabel {
        MailboxLabel { mailbox: self.row.address.clone() }
    }

    /// Records the mailbox's state everywhere it is shown: the database (`mailroom status`),
    /// the metrics and `/readyz`'s details (a mailbox's failure does not make the process
    /// unready: the others go on).
    async fn report(&self, error: Option<&str>) {
        let address = &self.row.address;
        if let Err(e) = mailboxes::record_pass(&self.pool, address, &self.owner, error).await {
            warn!(error = %e, "Cannot record the mailbox's state.");
        }
        self.metrics.up.get_or_create(&self.label()).set(i64::from(error.is_none()));
        if error.is_none() {
            let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
            self.metrics
                .last_success
                .get_or_create(&self.label())
                .set(i64::try_from(now.as_secs()).unwrap_or(i64::MAX));
        }
        self.telemetry.health.set_detail(address, error.map(|e| format!("mailbox {address}: {e}")));
    }

    /// Waits `delay`, or less when asked to stop; whether to stop.
    async fn pause(stopped: &mut watch::Receiver<bool>, delay: Duration) -> bool {
        let stop = tokio::select! {
            _ = stopped.wait_for(|s| *s) => true,
            () = tokio::time::sleep(delay) => false,
        };
        stop || *stopped.borrow()
    }

    async fn run(self, mut stopped: watch::Receiver<bool>) {
        let address = self.row.address.clone();
        let lease_secs = self.registry.lease_secs.max(3);
        // The lease first: another poller may be reading this mailbox.
        loop {
            match mailboxes::lease(&self.pool, &address, &self.owner, lease_secs).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => warn!(error = %e, "Cannot take the mailbox's lease."),
            }
            if Self::pause(&mut stopped, self.registry.refresh()).await {
                return;
            }
        }
        info!(owner = %self.owner, "Took the mailbox's lease; polling it.");
        // Renewed in the background, so a long wait (IMAP IDLE, a backoff) cannot lose it; a
        // lost lease stops the task.
        let (lost_tx, mut lost) = watch::channel(false);
        let renewal = {
            let (pool, address, owner) = (self.pool.clone(), address.clone(), self.owner.clone());
            let mut stopped = stopped.clone();
            tokio::spawn(async move {
                let every = Duration::from_secs(lease_secs / 3).max(Duration::from_secs(1));
                loop {
                    if Self::pause(&mut stopped, every).await {
                        return;
                    }
                    match mailboxes::lease(&pool, &address, &owner, lease_secs).await {
                        Ok(true) => {}
                        Ok(false) => {
                            warn!(mailbox = %address, "Another poller took the mailbox's lease; stopping.");
                            let _ = lost_tx.send(true);
                            return;
                        }
                        Err(e) => warn!(mailbox = %address, error = %e, "Cannot renew the mailbox's lease."),
                    }
                }
            })
        };
        self.poll(&mut stopped, &mut lost).await;
        renewal.abort();
        if !*lost.borrow() {
            let _ = mailboxes::release(&self.pool, &address, &self.owner).await;
        }
    }

    /// Builds the mailbox's settings and source (retrying while they cannot work: a secret
    /// reference may be fixed), then polls until stopped or the lease is lost.
    async fn poll(&self, stopped: &mut watch::Receiver<bool>, lost: &mut watch::Receiver<bool>) {
        let address = &self.row.address;
        let mut said = None;
        let (settings, mailbox, source) = loop {
            match self.open() {
                Ok(opened) => break opened,
                Err(reason) => {
                    // Logged when it starts or changes; tried again at every read of the registry.
                    if said.as_ref() != Some(&reason) {
                        error!(error = %reason, "The mailbox's settings cannot work; retrying when the registry is read again.");
                        said = Some(reason.clone());
                    }
                    self.report(Some(&reason)).await;
                    if Self::pause(stopped, self.registry.refresh()).await {
                        return;
                    }
                }
            }
        };
        // A telemetry of its own: the producer's connection state is this mailbox's, not the
        // process's readiness.
        let producer_telemetry = Arc::new(Telemetry::default());
        let producer = Producer::new(NAME, &settings, producer_telemetry.clone()).publishing_to(&[CLASSIFY]);
        let mut poller = Poller::new(source, Ledger::new(self.pool.clone(), producer, mailbox));
        loop {
            if *stopped.borrow() || *lost.borrow() {
                break;
            }
            if let Err(e) = poller.ledger().producer().connect().await {
                self.report(Some(&format!("broker unavailable: {e}"))).await;
            }
            let step = poller.step().await;
            let backoff = match &step {
                Step::Synced(report) => {
                    self.report(None).await;
                    report.log();
                    None
                }
                Step::BackingOff { remaining } => Some(*remaining),
                Step::Failed { error, retry_in } => {
                    warn!(error = %error, retry_in_ms = retry_in.as_millis() as u64, "Mailbox sync failed; retrying later.");
                    self.report(Some(&format!("mailbox unreachable: {error}"))).await;
                    Some(*retry_in)
                }
                Step::Stopped { reason } => {
                    self.report(Some(reason)).await;
                    // Only an operator helps (a refused login): wait for the registry to change.
                    Some(Duration::from_secs(3600))
                }
            };
            let route = pipeline_core::telemetry::RouteLabels {
                exchange: CLASSIFY.exchange.to_owned(),
                routing_key: CLASSIFY.routing_key.to_owned(),
            };
            let published = producer_telemetry.metrics.published.get_or_create(&route).get();
            self.metrics.published.get_or_create(&self.label()).set(i64::try_from(published).unwrap_or(i64::MAX));
            tokio::select! {
                _ = stopped.wait_for(|s| *s) => break,
                _ = lost.wait_for(|l| *l) => break,
                () = poller.wait(backoff) => {}
            }
        }
        poller.close().await;
        info!(mailbox = %address, "Stopped polling the mailbox.");
    }

    /// The mailbox's settings and its source, or why they cannot work.
    fn open(&self) -> Result<(Settings, MailboxSettings, AnySource), String> {
        let settings = self.base.for_mailbox(&self.row.address, &self.row.settings).map_err(|e| e.to_string())?;
        let mailbox: MailboxSettings = settings.section("mailbox").map_err(|e| e.to_string())?;
        let source = AnySource::open(&settings, &mailbox).map_err(|e| e.to_string())?;
        crate::warn_about_authentication(&mailbox);
        Ok((settings, mailbox, source))
    }
}
