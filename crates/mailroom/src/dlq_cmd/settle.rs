//! `dlq replay` and `dlq purge`: the commands that take dead letters out of the queue, each
//! acked only once its fate is sealed (the copy confirmed, or the operator's yes).

use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use lapin::options::BasicAckOptions;
use pipeline_core::Settings;
use pipeline_core::dead_letter::{NotReplayable, plan_replay};
use pipeline_core::publisher::Publisher;
use pipeline_core::topology::{DEAD_LETTER_QUEUE, Route};
use tracing::{info, warn};

use super::{DlqError, DlqReader, Held, Selection};

/// What a replay did.
#[derive(Debug, Default)]
struct ReplayReport {
    replayed: BTreeMap<&'static str, u64>,
    not_replayable: Vec<(String, NotReplayable)>,
    seen_ids: HashSet<String>,
    failure: Option<String>,
}

pub(super) async fn replay(
    settings: &Settings,
    selection: Selection,
    ids: &[String],
    rate: Option<f64>,
) -> anyhow::Result<ExitCode> {
    let mut reader = DlqReader::open(settings, "replay").await?;
    let publisher = match Publisher::open(reader.connection(), None).await {
        Ok(p) => p,
        Err(e) => {
            reader.close().await;
            return Err(DlqError::Amqp(e).into());
        }
    };
    let pace = rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let mut report = ReplayReport::default();
    // Dead letters not selected (or not replayable) stay unacked until the end: returning them
    // one by one would put them back at the head of the queue, where the next basic.get would
    // find them again.
    let mut kept: Vec<Held> = Vec::new();
    loop {
        let held = match reader.next().await {
            Ok(Some(held)) => held,
            Ok(None) => break,
            Err(e) => {
                report.failure = Some(e.to_string());
                break;
            }
        };
        if !selection.matches(&held.info) {
            kept.push(held);
            continue;
        }
        report.seen_ids.insert(held.info.id.clone());
        let started = Instant::now();
        let plan = match plan_replay(&held.info, &held.delivery.properties, &held.delivery.data) {
            Ok(plan) => plan,
            Err(reason) => {
                warn!(dead_letter_id = %held.info.id, %reason, "Cannot replay; leaving it in the queue.");
                report.not_replayable.push((held.info.id.clone(), reason));
                kept.push(held);
                continue;
            }
        };
        let Route { exchange, routing_key } = plan.route;
        if let Err(e) = publisher.send_raw(exchange, routing_key, &plan.body, plan.properties).await {
            // Not confirmed, so not acked: the dead letter stays. A broker that refuses one
            // publish will refuse the next, so stop here.
            report.failure = Some(format!("republishing {} failed: {e}", held.info.id));
            kept.push(held);
            break;
        }
        // The copy is safe in the original queue; only now may the dead letter go. Dying right
        // here replays it once more next time (a duplicate), never zero times.
        if let Err(e) = held.delivery.acker.ack(BasicAckOptions::default()).await {
            report.failure = Some(format!(
                "{} was replayed but could not be removed ({e}); it stays and will be replayed again",
                held.info.id
            ));
            break;
        }
        info!(
            dead_letter_id = %held.info.id, original_queue = plan.queue.name, exchange, routing_key,
            "Replayed dead letter."
        );
        *report.replayed.entry(plan.queue.name).or_default() += 1;
        if let Some(pace) = pace {
            tokio::time::sleep(pace.saturating_sub(started.elapsed())).await;
        }
    }
    let queued = reader.queued();
    reader.close().await;
    drop(kept);

    let total: u64 = report.replayed.values().sum();
    let per_queue: Vec<String> = report.replayed.iter().map(|(q, n)| format!("{n} to {q}")).collect();
    if total == 0 {
        println!("Replayed nothing ({queued} dead letter(s) examined).");
    } else {
        println!("Replayed {total} dead letter(s): {}.", per_queue.join(", "));
    }
    let missing: Vec<&String> = ids.iter().filter(|id| !report.seen_ids.contains(*id)).collect();
    for id in &missing {
        println!("Not found: {id}.");
    }
    for (id, reason) in &report.not_replayable {
        println!("Kept {id}: {reason}.");
    }
    if let Some(failure) = &report.failure {
        println!("Stopped: {failure}. Whatever was not replayed is still in {}.", DEAD_LETTER_QUEUE.name);
    }
    let clean = report.failure.is_none() && report.not_replayable.is_empty() && missing.is_empty();
    Ok(if clean { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Asks on the terminal; anything but y/yes (including end of input) is a no.
async fn confirm(question: String) -> bool {
    tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        print!("{question} [y/N] ");
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        match std::io::stdin().read_line(&mut answer) {
            Ok(n) if n > 0 => matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"),
            _ => false,
        }
    })
    .await
    .unwrap_or(false)
}

pub(super) async fn purge(settings: &Settings, selection: Selection, yes: bool) -> anyhow::Result<ExitCode> {
    let mut reader = DlqReader::open(settings, "purge").await?;
    let read = reader.read_all(None).await;
    let held = match read {
        Ok(held) => held,
        Err(e) => {
            reader.close().await;
            return Err(e.into());
        }
    };
    let (chosen, _kept): (Vec<Held>, Vec<Held>) = held.into_iter().partition(|h| selection.matches(&h.info));
    if chosen.is_empty() {
        reader.close().await;
        println!("No matching dead letters; nothing purged.");
        return Ok(ExitCode::SUCCESS);
    }
    let mut by_kind: BTreeMap<(String, String), u64> = BTreeMap::new();
    for h in &chosen {
        let queue = h.info.original_queue.clone().unwrap_or_else(|| "?".to_owned());
        *by_kind.entry((queue, h.info.error_type.clone())).or_default() += 1;
    }
    let summary: Vec<String> = by_kind.iter().map(|((q, t), n)| format!("{n} {t} from {q}")).collect();
    // The messages stay unacked (held by us) while the operator thinks: exactly these are
    // deleted, never one that arrived after the question was asked.
    if !yes && !confirm(format!("Delete {} dead letter(s) for good ({})?", chosen.len(), summary.join(", "))).await {
        reader.close().await;
        println!("Nothing purged.");
        return Ok(ExitCode::from(1));
    }
    let mut purged = 0u64;
    let mut failure = None;
    for h in &chosen {
        match h.delivery.acker.ack(BasicAckOptions::default()).await {
            Ok(_) => purged += 1,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    reader.close().await;
    info!(purged, "Purged dead letters.");
    match failure {
        None => {
            println!("Purged {purged} dead letter(s).");
            Ok(ExitCode::SUCCESS)
        }
        Some(e) => {
            println!("Purged {purged} of {} dead letter(s); stopped: {e}.", chosen.len());
            Ok(ExitCode::from(1))
        }
    }
}
