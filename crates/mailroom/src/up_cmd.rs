//! `mailroom up`: every worker as a child process for local work — how many of each from flags
//! or `[up]` in the settings — with their output prefixed by `[name.n]`, a worker that dies
//! restarted (with a growing pause if it keeps dying), and all of them stopped gracefully on
//! Ctrl-C or SIGTERM.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use pipeline_core::Settings;
use pipeline_core::worker_env::WorkerEnv;
use serde::Deserialize;

use crate::procs::{self, Output, WORKERS};

/// `mailroom up` options.
#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Processes of a stage, `stage=count` (repeatable), e.g. `--scale classifier=3`; overrides
    /// `[up]` in the settings. A count of 0 leaves the stage out.
    #[arg(long = "scale", value_parser = parse_scale)]
    pub scale: Vec<(String, usize)>,
}

fn parse_scale(text: &str) -> Result<(String, usize), String> {
    let (name, count) = text.split_once('=').ok_or_else(|| format!("expected stage=count, got {text:?}"))?;
    if !WORKERS.contains(&name) {
        return Err(format!("unknown stage {name:?}; stages: {}", WORKERS.join(", ")));
    }
    let count = count.parse().map_err(|e| format!("count of {name}: {e}"))?;
    Ok((name.to_owned(), count))
}

/// `[up]`: processes per stage.
#[derive(Debug, Clone, Deserialize)]
struct UpSettings {
    #[serde(flatten)]
    counts: BTreeMap<String, usize>,
}

/// How many processes of each worker to run.
fn plan(settings: &Settings, args: &UpArgs) -> anyhow::Result<Vec<(&'static str, usize)>> {
    let configured: UpSettings = settings.section("up")?;
    for name in configured.counts.keys() {
        anyhow::ensure!(WORKERS.contains(&name.as_str()), "[up] names an unknown stage {name:?}");
    }
    Ok(WORKERS
        .iter()
        .map(|name| {
            let from_flag = args.scale.iter().rev().find(|(n, _)| n == name).map(|(_, c)| *c);
            (*name, from_flag.or_else(|| configured.counts.get(*name).copied()).unwrap_or(1))
        })
        .collect())
}

/// Runs the workers until Ctrl-C.
pub async fn up(settings: &Settings, args: UpArgs) -> anyhow::Result<ExitCode> {
    let bins = procs::bin_dir();
    let plan = plan(settings, &args)?;
    for (name, count) in &plan {
        if *count > 0 {
            procs::worker_path(&bins, name)?;
        }
    }
    // Several processes of a stage cannot share one health port: each takes a free one.
    let env = WorkerEnv::new().set("http.listen", "127.0.0.1:0").owned();
    let mut workers = Vec::new();
    for (name, count) in &plan {
        for instance in 1..=*count {
            workers.push(procs::start(&bins, name, instance, &env, &Output::Prefixed)?);
        }
    }
    let summary: Vec<String> = plan.iter().filter(|(_, c)| *c > 0).map(|(n, c)| format!("{n}×{c}")).collect();
    eprintln!("mailroom up: running {} (Ctrl-C stops them all)", summary.join(", "));
    let shutdown = pipeline_core::shutdown::signal();
    tokio::pin!(shutdown);
    let mut restart_at: BTreeMap<usize, Instant> = BTreeMap::new();
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        for (i, w) in workers.iter_mut().enumerate() {
            if let Some(at) = restart_at.get(&i) {
                if Instant::now() >= *at {
                    restart_at.remove(&i);
                    let restarts = w.restarts + 1;
                    match procs::start(&bins, &w.name, w.instance, &env, &Output::Prefixed) {
                        Ok(fresh) => {
                            *w = fresh;
                            w.restarts = restarts;
                            eprintln!("mailroom up: restarted {} (restart {restarts})", w.label());
                        }
                        Err(e) => eprintln!("mailroom up: cannot restart {}: {e}", w.label()),
                    }
                }
                continue;
            }
            if let Ok(Some(status)) = w.child.try_wait() {
                // A worker that keeps dying is restarted less and less often (1 s … 30 s).
                let pause = Duration::from_secs(1u64 << w.restarts.min(5)).min(Duration::from_secs(30));
                eprintln!("mailroom up: {} exited ({status}); restarting in {} s", w.label(), pause.as_secs());
                restart_at.insert(i, Instant::now() + pause);
            }
        }
    }
    eprintln!("mailroom up: stopping {} workers…", workers.len());
    let killed = procs::stop_all(&mut workers, Duration::from_secs(45)).await;
    if !killed.is_empty() {
        eprintln!("mailroom up: killed {} after the drain deadline", killed.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}
