//! `dlq list` and `dlq show`: what is in the queue, as a table, JSON, or one dead letter in full.

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use pipeline_core::Settings;
use pipeline_core::dead_letter::{DeadLetterInfo, Shape, full_json};
use pipeline_core::topology::DEAD_LETTER_QUEUE;

use super::{DlqReader, Filter, Selection};

fn age(at: Option<DateTime<Utc>>) -> String {
    let Some(at) = at else { return "?".to_owned() };
    let secs = Utc::now().signed_duration_since(at).num_seconds().max(0);
    match secs {
        0..60 => format!("{secs}s"),
        60..3_600 => format!("{}m", secs / 60),
        3_600..86_400 => format!("{}h{:02}m", secs / 3_600, secs % 3_600 / 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3_600),
    }
}

fn truncate(text: &str, max: usize) -> String {
    let one_line = text.replace(['\n', '\r'], " ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut out: String = one_line.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

pub(super) async fn list(settings: &Settings, filter: Filter, json: bool) -> anyhow::Result<ExitCode> {
    let selection = Selection::new(&[], filter).map_err(anyhow::Error::msg)?;
    let mut reader = DlqReader::open(settings, "list").await?;
    let read = reader.read_all(None).await;
    let queued = reader.queued();
    // Whatever happened, everything goes back before we print.
    reader.close().await;
    let infos: Vec<DeadLetterInfo> = read?.into_iter().map(|h| h.info).filter(|info| selection.matches(info)).collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&infos)?);
        return Ok(ExitCode::SUCCESS);
    }
    if infos.is_empty() {
        println!("No matching dead letters ({queued} in {}).", DEAD_LETTER_QUEUE.name);
        return Ok(ExitCode::SUCCESS);
    }
    let id_width = infos.iter().map(|i| i.id.chars().count()).max().unwrap_or(2).max(2);
    let queue_width = infos.iter().map(|i| i.original_queue.as_deref().unwrap_or("?").len()).max().unwrap_or(5).max(5);
    let type_width = infos.iter().map(|i| i.error_type.len()).max().unwrap_or(10).max(10);
    println!(
        "{:<id_width$}  {:<queue_width$}  {:<type_width$}  {:>7}  {:>7}  {:<8}  ERROR",
        "ID", "QUEUE", "ERROR TYPE", "AGE", "RETRIES", "SHAPE"
    );
    for info in &infos {
        let shape = match info.shape {
            Shape::Envelope => "envelope",
            Shape::XDeath => "x-death",
            Shape::Unknown => "unknown",
        };
        println!(
            "{:<id_width$}  {:<queue_width$}  {:<type_width$}  {:>7}  {:>7}  {:<8}  {}",
            info.id,
            info.original_queue.as_deref().unwrap_or("?"),
            info.error_type,
            age(info.dead_lettered_at),
            info.retry_count.map_or_else(|| "-".to_owned(), |n| n.to_string()),
            shape,
            truncate(&info.error_message, 80)
        );
    }
    println!("{} of {queued} dead letter(s) shown.", infos.len());
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn show(settings: &Settings, id: &str) -> anyhow::Result<ExitCode> {
    let mut reader = DlqReader::open(settings, "show").await?;
    let mut found = None;
    let mut result = Ok(());
    loop {
        match reader.next().await {
            Ok(Some(held)) if held.info.id == id => {
                found = Some(full_json(&held.info, &held.delivery.properties, &held.delivery.data));
                break;
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    reader.close().await;
    result?;
    match found {
        Some(value) => {
            println!("{}", serde_json::to_string_pretty(&value)?);
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("No dead letter with id {id} in {}.", DEAD_LETTER_QUEUE.name);
            Ok(ExitCode::from(1))
        }
    }
}
