//! `mailroom mailbox add|list|show|update|disable|enable`: the mailbox registry.
//!
//! A mailbox is its address plus only what differs from the deployment's settings: its
//! `mailbox` table (the source: `kind`, `maildir`, `[mailbox.imap]`, `[mailbox.gmail]`, the
//! rollout `sample_rate`, …), its `outbox` table (the sink) and its `sender` table (`mode`,
//! quota and burst, reply throttle, `from_name`), and its `rag` table (the reply policy:
//! `signature`, `human_categories`, `no_context`, `reply_language`), and in `classifier` its
//! `auto_answer_min_confidence` and `check_documents`. They come from a TOML file with those tables (`--file`), or
//! from `--set key=value` (a dotted key of `config/default.toml`); secrets only as references,
//! `--secret key=env:VAR` or `--secret key=file:/path` (in a file: `password = { env = "VAR" }`).
//! The poller, the classifier, the generator and the sender pick changes up within
//! `registry.refresh_secs`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use mailroom_db::mailboxes::{self, MailboxRow};
use pipeline_core::Settings;
use serde_json::{Map, Value};

/// `mailroom mailbox …`.
#[derive(Debug, Subcommand)]
pub enum MailboxAction {
    /// Register a mailbox (enabled unless --disabled).
    Add(AddArgs),
    /// Every registered mailbox, with its source, sink, mode and poller.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One mailbox's settings (secrets as their references) and its poller's state.
    Show {
        /// The mailbox's address.
        address: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change a mailbox's settings (merged over what it has).
    Update(ChangeArgs),
    /// Stop serving a mailbox (its poller stops; replies for it are refused).
    Disable {
        /// The mailbox's address.
        address: String,
    },
    /// Serve a disabled mailbox again.
    Enable {
        /// The mailbox's address.
        address: String,
    },
}

/// What `add` and `update` change.
#[derive(Debug, Args)]
pub struct ChangeArgs {
    /// The mailbox's address (its `agent_email`).
    pub address: String,
    /// A TOML file with the mailbox's `[mailbox]`, `[outbox]`, `[sender]` and `[rag]` tables.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// `key=value`, a dotted key such as `mailbox.kind=imap` or `sender.rate_limit=100`
    /// (repeatable; the value is read as JSON when it parses, else as text).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// `key=env:VAR` or `key=file:/path`: a secret by reference (repeatable).
    #[arg(long = "secret", value_name = "KEY=env:VAR|file:PATH")]
    pub secret: Vec<String>,
    /// Remove a key, so the deployment's value applies again (repeatable).
    #[arg(long = "unset", value_name = "KEY")]
    pub unset: Vec<String>,
}

/// `add`'s arguments.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The settings.
    #[command(flatten)]
    pub change: ChangeArgs,
    /// Register it disabled.
    #[arg(long)]
    pub disabled: bool,
}

/// Runs a `mailbox` command.
pub async fn run(settings: &Settings, action: MailboxAction) -> anyhow::Result<ExitCode> {
    let pool = mailroom_db::connect_and_migrate(&settings.database.url, 2).await?;
    let result = match action {
        MailboxAction::Add(args) => add(&pool, args).await,
        MailboxAction::List { json } => list(&pool, json).await,
        MailboxAction::Show { address, json } => show(&pool, &address, json).await,
        MailboxAction::Update(args) => update(&pool, args).await,
        MailboxAction::Disable { address } => enable(&pool, &address, false).await,
        MailboxAction::Enable { address } => enable(&pool, &address, true).await,
    };
    pool.close().await;
    result
}

/// The registry's key for `address`: lower-case, and an address.
fn address_of(address: &str) -> anyhow::Result<String> {
    let address = pipeline_core::messages::agent_address(address.trim());
    match address.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && domain.contains('.') && !address.contains(char::is_whitespace) =>
        {
            Ok(address)
        }
        _ => bail!("{address:?} is not an email address"),
    }
}

async fn add(pool: &sqlx::PgPool, args: AddArgs) -> anyhow::Result<ExitCode> {
    let address = address_of(&args.change.address)?;
    let settings = changed(Value::Object(Map::new()), &args.change)?;
    if !mailboxes::add(pool, &address, !args.disabled, &settings).await? {
        bail!("{address} is registered already (use `mailroom mailbox update`)");
    }
    let state = if args.disabled { "disabled" } else { "enabled" };
    println!("Registered {address} ({state}); the pipeline takes it up within registry.refresh_secs.");
    Ok(ExitCode::SUCCESS)
}

async fn update(pool: &sqlx::PgPool, args: ChangeArgs) -> anyhow::Result<ExitCode> {
    let address = address_of(&args.address)?;
    let row = registered(pool, &address).await?;
    let settings = changed(row.settings, &args)?;
    mailboxes::set_settings(pool, &address, &settings).await?;
    println!(
        "Updated {address}; its poller and sender restart, and the classifier and generator read its policy again, within registry.refresh_secs."
    );
    Ok(ExitCode::SUCCESS)
}

async fn enable(pool: &sqlx::PgPool, address: &str, enabled: bool) -> anyhow::Result<ExitCode> {
    let address = address_of(address)?;
    if !mailboxes::set_enabled(pool, &address, enabled).await? {
        bail!("{address} is not registered");
    }
    println!("{address} is {}.", if enabled { "enabled" } else { "disabled" });
    Ok(ExitCode::SUCCESS)
}

async fn registered(pool: &sqlx::PgPool, address: &str) -> anyhow::Result<MailboxRow> {
    mailboxes::get(pool, address).await?.with_context(|| format!("{address} is not registered"))
}

/// A short description of where a mailbox's mail comes from and goes.
fn kinds(settings: &Value) -> (String, String, String) {
    let text = |v: &Value, default: &str| v.as_str().unwrap_or(default).to_owned();
    (
        text(&settings["mailbox"]["kind"], "(default)"),
        text(&settings["outbox"]["kind"], "(default)"),
        text(&settings["sender"]["mode"], "(default)"),
    )
}

async fn list(pool: &sqlx::PgPool, json: bool) -> anyhow::Result<ExitCode> {
    let rows = mailboxes::list(pool).await?;
    let pollers = mailboxes::pollers(pool).await?;
    if json {
        let out: Vec<Value> = rows
            .iter()
            .map(|r| {
                let poller = pollers.iter().find(|p| p.address == r.address);
                serde_json::json!({
                    "address": r.address,
                    "enabled": r.enabled,
                    "settings": r.settings,
                    "poller": poller.filter(|p| p.leased).map(|p| p.owner.clone()),
                    "last_pass_at": poller.and_then(|p| p.last_pass_at),
                    "last_error": poller.and_then(|p| p.last_error.clone()),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("No mailbox is registered: the poller and sender serve the mailbox of [mailbox] and [outbox].");
        return Ok(ExitCode::SUCCESS);
    }
    let width = rows.iter().map(|r| r.address.len()).max().unwrap_or(7).max(7);
    println!("{:<width$}  {:<8}  {:<8}  {:<8}  {:<9}  POLLER", "ADDRESS", "STATE", "SOURCE", "SINK", "MODE");
    for r in &rows {
        let (source, sink, mode) = kinds(&r.settings);
        let poller = pollers.iter().find(|p| p.address == r.address);
        let poller = match poller {
            Some(p) if p.last_error.is_some() => format!("FAILING: {}", p.last_error.as_deref().unwrap_or_default()),
            Some(p) if p.leased => format!(
                "{} (last pass {})",
                p.owner,
                p.last_pass_at.map_or("-".into(), |t| t.format("%H:%M:%S").to_string())
            ),
            _ => "-".to_owned(),
        };
        let state = if r.enabled { "enabled" } else { "disabled" };
        println!("{:<width$}  {state:<8}  {source:<8}  {sink:<8}  {mode:<9}  {poller}", r.address);
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(pool: &sqlx::PgPool, address: &str, json: bool) -> anyhow::Result<ExitCode> {
    let address = address_of(address)?;
    let row = registered(pool, &address).await?;
    let poller = mailboxes::pollers(pool).await?.into_iter().find(|p| p.address == address);
    if json {
        let out = serde_json::json!({
            "address": row.address,
            "enabled": row.enabled,
            "settings": row.settings,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
            "poller": poller.as_ref().filter(|p| p.leased).map(|p| p.owner.clone()),
            "last_pass_at": poller.as_ref().and_then(|p| p.last_pass_at),
            "last_error": poller.as_ref().and_then(|p| p.last_error.clone()),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} ({})", row.address, if row.enabled { "enabled" } else { "disabled" });
    println!("  changed {}", row.updated_at.format("%Y-%m-%d %H:%M:%S UTC"));
    match &poller {
        Some(p) => println!(
            "  poller: {}{}; last pass {}{}",
            p.owner,
            if p.leased { "" } else { " (lease ran out)" },
            p.last_pass_at.map_or("never".into(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
            p.last_error.as_deref().map(|e| format!("; FAILING: {e}")).unwrap_or_default()
        ),
        None => println!("  poller: none has read it yet"),
    }
    println!("  settings (over the deployment's; secrets as references):");
    println!("{}", serde_json::to_string_pretty(&row.settings)?);
    Ok(ExitCode::SUCCESS)
}

/// `base` with the file's tables, then each `--set`, `--secret` and `--unset`, checked.
fn changed(mut base: Value, args: &ChangeArgs) -> anyhow::Result<Value> {
    if let Some(path) = &args.file {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let table: toml::Table = text.parse().with_context(|| format!("{} is not TOML", path.display()))?;
        merge(&mut base, serde_json::to_value(table)?);
    }
    for pair in &args.set {
        let (key, value) = pair.split_once('=').with_context(|| format!("--set {pair:?}: expected KEY=VALUE"))?;
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
        set(&mut base, key.trim(), value);
    }
    for pair in &args.secret {
        let (key, reference) =
            pair.split_once('=').with_context(|| format!("--secret {pair:?}: expected KEY=env:VAR"))?;
        let reference = match reference.split_once(':') {
            Some(("env", var)) if !var.is_empty() => serde_json::json!({ "env": var }),
            Some(("file", path)) if !path.is_empty() => serde_json::json!({ "file": path }),
            _ => bail!("--secret {pair:?}: the reference is env:VAR or file:/path"),
        };
        set(&mut base, key.trim(), reference);
    }
    for key in &args.unset {
        unset(&mut base, key.trim());
    }
    pipeline_core::mailbox_overlay::validate(&base)?;
    Ok(base)
}

/// Deep-merges `overlay` into `base` (tables merge, values replace).
fn merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o,
    }
}

fn set(base: &mut Value, key: &str, value: Value) {
    let mut at = base;
    let parts: Vec<&str> = key.split('.').collect();
    for part in &parts[..parts.len() - 1] {
        if !at.get(*part).is_some_and(Value::is_object) {
            at[*part] = Value::Object(Map::new());
        }
        at = &mut at[*part];
    }
    at[parts[parts.len() - 1]] = value;
}

fn unset(base: &mut Value, key: &str) {
    let (parent, last) = key.rsplit_once('.').unwrap_or(("", key));
    let mut at = &mut *base;
    for part in parent.split('.').filter(|p| !p.is_empty()) {
        match at.get_mut(part) {
            Some(next) => at = next,
            None => return,
        }
    }
    if let Some(table) = at.as_object_mut() {
        table.remove(last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(set: &[&str], secret: &[&str], unset: &[&str]) -> ChangeArgs {
        ChangeArgs {
            address: "billing@northwind.example".into(),
            file: None,
            set: set.iter().map(|s| (*s).to_owned()).collect(),
            secret: secret.iter().map(|s| (*s).to_owned()).collect(),
            unset: unset.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn sets_and_secrets_become_tables_and_unknown_keys_are_refused() {
        let v = changed(
            Value::Object(Map::new()),
            &args(
                &["mailbox.kind=imap", "mailbox.imap.host=imap.example", "sender.rate_limit=40", "sender.mode=draft"],
                &["mailbox.imap.password=env:BILLING_IMAP_PASSWORD"],
                &[],
            ),
        )
        .expect("valid");
        assert_eq!(v["mailbox"]["imap"]["password"], serde_json::json!({"env": "BILLING_IMAP_PASSWORD"}));
        assert_eq!(v["sender"]["rate_limit"], 40, "numbers stay numbers");
        let v = changed(v, &args(&[], &[], &["sender.mode"])).expect("unset");
        assert!(v["sender"].get("mode").is_none());
        let err = changed(Value::Object(Map::new()), &args(&["sender.rate_limt=5"], &[], &[])).expect_err("typo");
        assert!(err.to_string().contains("sender.rate_limt"), "{err}");
        let err = changed(Value::Object(Map::new()), &args(&["outbox.smtp.password=hunter2"], &[], &[]))
            .expect_err("a literal secret");
        assert!(err.to_string().contains("is a secret"), "{err}");
        assert!(address_of("Billing@Northwind.example").is_ok_and(|a| a == "billing@northwind.example"));
        assert!(address_of("not an address").is_err());
    }
}
