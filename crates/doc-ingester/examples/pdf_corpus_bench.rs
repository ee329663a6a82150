//! PDF extraction on real documents: each configured engine order over the corpus.
//!
//! `cargo run --release -p doc-ingester --example pdf_corpus_bench -- [LIST] [--engines A[,B]]… [--limit N] [--jobs N]`
//!
//! (`--limit N`: N documents spread evenly over the corpus, for a quicker run. `--jobs N`: N
//! documents extracted at once, as N `doc-ingester` processes would — the worker takes one
//! document at a time and is scaled by processes; default 1.)
//!
//! Fetches the Debian packages named in LIST (default `tests/corpus/pdf-packages.txt`) through
//! `scripts/fetch-debian-docs.sh` (cached), then for each engine order (default: each engine
//! alone, then `ingester.pdf_engines` of `config/default.toml`) extracts every PDF the way the
//! worker does — in the isolated child, one document at a time, with the default limits — and
//! compares each document's text with poppler's `pdftotext` (non-whitespace characters). Prints
//! per order: documents that would end `ready` (text extracted), documents within 15 % of
//! pdftotext's length, pages/s, crashes and timeouts, then the documents that failed or differ
//! most. Per-document results go to `target/pdf-corpus/<order>.tsv`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use doc_ingester::IngesterSettings;
use doc_ingester::extract::{self, Engine, ExtractError, Limits};
use mailroom_tests::corpus;
use mailroom_tests::{repo_root, target_dir};
use pipeline_core::settings::Settings;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // This binary is also the extraction child of the runs it measures.
    if args.first().map(String::as_str) == Some(extract::CHILD_COMMAND) {
        return extract::child_main(&args[1..]);
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pdf_corpus_bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One document's outcome under one engine order.
struct Outcome {
    path: PathBuf,
    /// `ready`, or the `error_type` it would fail with.
    status: String,
    pages: usize,
    skipped_pages: usize,
    seconds: f64,
    chars: usize,
    reference: Option<usize>,
    fallback: bool,
}

fn run(args: &[String]) -> anyhow::Result<()> {
    let mut list = repo_root().join("tests/corpus/pdf-packages.txt");
    let mut orders: Vec<Vec<Engine>> = Vec::new();
    let mut limit = usize::MAX;
    let mut jobs = 1usize;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--engines" => {
                let value = it.next().ok_or_else(|| anyhow::anyhow!("--engines needs a list"))?;
                orders.push(extract::engines::parse_list(value).map_err(anyhow::Error::msg)?);
            }
            "--limit" => limit = it.next().and_then(|v| v.parse().ok()).ok_or_else(|| anyhow::anyhow!("--limit N"))?,
            "--jobs" => {
                jobs = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| anyhow::anyhow!("--jobs N"))?
            }
            other => list = PathBuf::from(other),
        }
    }
    let settings = Settings::load_from(None, std::iter::empty::<(String, String)>())?;
    let ingester: IngesterSettings = settings.section("ingester")?;
    let defaults = ingester.limits()?;
    if orders.is_empty() {
        orders = Engine::ALL.iter().map(|e| vec![*e]).collect();
        orders.push(defaults.engines.clone());
    }
    corpus::require_pdftotext();
    let root = corpus::fetch(&list);
    let all = corpus::pdfs(&root);
    // --limit N takes N documents spread evenly over the sorted corpus (every package).
    let pdfs: Vec<PathBuf> =
        if limit >= all.len() { all } else { (0..limit).map(|i| all[i * all.len() / limit].clone()).collect() };
    println!("pdf_corpus_bench: {} PDFs from {} under {}", pdfs.len(), list.display(), root.display());
    let started = Instant::now();
    let references: Vec<Option<usize>> = pdfs.iter().map(|p| corpus::pdftotext_chars(&root, p)).collect();
    println!(
        "  pdftotext reference: {} documents with text, {} failed ({:.0} s, cached)",
        references.iter().filter(|r| r.is_some_and(|n| n > 0)).count(),
        references.iter().filter(|r| r.is_none()).count(),
        started.elapsed().as_secs_f64()
    );
    let program = std::env::current_exe()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let out_dir = target_dir().join("pdf-corpus");
    std::fs::create_dir_all(&out_dir)?;
    let mut table = String::from(
        "| engines | documents with text | ready | within 15 % of pdftotext (of ready) | pages | seconds | pages/s per process | pages per CPU-second | jobs | overall pages/s (wall) | crashed | timed out | fallback used | with skipped pages |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for engines in orders {
        let name: Vec<&str> = engines.iter().map(|e| e.name()).collect();
        let name = name.join(",");
        let limits = Limits { engines: engines.clone(), ..defaults.clone() };
        let cpu_before = children_cpu_seconds();
        let wall = Instant::now();
        let outcomes = runtime.block_on(measure_all(&program, &pdfs, &references, &limits, jobs));
        let wall = wall.elapsed().as_secs_f64();
        let cpu = children_cpu_seconds() - cpu_before;
        write_tsv(&out_dir.join(format!("{name}.tsv")), &root, &outcomes)?;
        let row = summary(&name, &outcomes, cpu, wall, jobs);
        println!("\n{row}");
        table.push_str(&row);
        table.push('\n');
        report_worst(&root, &outcomes);
    }
    println!("\n{table}");
    Ok(())
}

/// Every document through [`measure`], `jobs` at a time, outcomes in the documents' order.
async fn measure_all(
    program: &Path,
    pdfs: &[PathBuf],
    references: &[Option<usize>],
    limits: &Limits,
    jobs: usize,
) -> Vec<Outcome> {
    let mut running = tokio::task::JoinSet::new();
    let mut outcomes: Vec<Option<Outcome>> = (0..pdfs.len()).map(|_| None).collect();
    for (i, (pdf, reference)) in pdfs.iter().zip(references).enumerate() {
        if running.len() >= jobs
            && let Some(Ok((done, outcome))) = running.join_next().await
        {
            outcomes[done] = Some(outcome);
        }
        let (program, pdf, limits, reference) = (program.to_path_buf(), pdf.clone(), limits.clone(), *reference);
        running.spawn(async move { (i, measure(&program, &pdf, &limits, reference).await) });
    }
    while let Some(Ok((done, outcome))) = running.join_next().await {
        outcomes[done] = Some(outcome);
    }
    outcomes.into_iter().flatten().collect()
}

async fn measure(program: &Path, pdf: &Path, limits: &Limits, reference: Option<usize>) -> Outcome {
    let started = Instant::now();
    let result = extract::extract_pdf_isolated(program, pdf, limits).await;
    let seconds = started.elapsed().as_secs_f64();
    let mut outcome = Outcome {
        path: pdf.to_path_buf(),
        status: String::new(),
        pages: 0,
        skipped_pages: 0,
        seconds,
        chars: 0,
        reference,
        fallback: false,
    };
    match result {
        Ok(done) => {
            outcome.pages = done.page_count();
            outcome.skipped_pages = done.failed_pages.len();
            outcome.chars = done.pages.iter().map(|p| corpus::visible_chars(&p.text)).sum();
            outcome.fallback = !done.fallbacks.is_empty();
            // The worker fails a document without text (`NoExtractableText`).
            outcome.status = if outcome.chars > 0 { "ready".into() } else { "NoExtractableText".into() };
        }
        Err(e) => outcome.status = describe(&e),
    }
    outcome
}

fn describe(e: &ExtractError) -> String {
    format!("{}: {}", e.error_type(), e.to_string().chars().take(160).collect::<String>())
}

fn ready(o: &Outcome) -> bool {
    o.status == "ready"
}

fn agrees(o: &Outcome) -> bool {
    o.reference.is_some_and(|r| corpus::agrees(o.chars, r))
}

/// CPU time (user + system) of the finished extraction children so far, from `/proc/self/stat`
/// (`cutime`, `cstime`, in clock ticks of 1/100 s): on a shared machine it shows what the
/// extraction itself costs, whatever else is running.
fn children_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    // Fields after the command name start at field 3 (state); cutime and cstime are fields 16, 17.
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(16 - 3) + ticks(17 - 3)) / 100.0
}

fn summary(name: &str, outcomes: &[Outcome], cpu_seconds: f64, wall_seconds: f64, jobs: usize) -> String {
    let count = |f: &dyn Fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    // Documents without a text layer (pdftotext finds none either: figures, scans) cannot end
    // ready and should not; they are counted apart.
    let has_text = |o: &Outcome| o.reference.is_none_or(|r| r > 0);
    let total = count(&has_text);
    let textless = outcomes.len() - total;
    let ready_count = count(&|o| has_text(o) && ready(o));
    let agreeing = count(&|o| has_text(o) && ready(o) && agrees(o));
    let pages: usize = outcomes.iter().map(|o| o.pages).sum();
    let seconds: f64 = outcomes.iter().map(|o| o.seconds).sum();
    let pct = |n: usize, of: usize| if of == 0 { 0.0 } else { 100.0 * n as f64 / of as f64 };
    format!(
        "| {name} | {total} (+{textless} without text) | {ready_count} ({:.1} %) | {agreeing} ({:.1} %) | {pages} | {seconds:.0} | {:.0} | {:.0} | {jobs} | {:.0} | {} | {} | {} | {} |",
        pct(ready_count, total),
        pct(agreeing, ready_count),
        pages as f64 / seconds.max(1e-9),
        pages as f64 / cpu_seconds.max(1e-9),
        pages as f64 / wall_seconds.max(1e-9),
        count(&|o| o.status.starts_with("ExtractionCrashed")),
        count(&|o| o.status.starts_with("ExtractionTimeout")),
        count(&|o| o.fallback),
        count(&|o| o.skipped_pages > 0),
    )
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).display().to_string()
}

fn ratio(o: &Outcome) -> f64 {
    match o.reference {
        Some(r) if r > 0 => o.chars as f64 / r as f64,
        _ => f64::NAN,
    }
}

fn report_worst(root: &Path, outcomes: &[Outcome]) {
    for o in outcomes.iter().filter(|o| !ready(o)) {
        println!("  not ready: {} ({} s): {}", relative(root, &o.path), o.seconds.round(), o.status);
    }
    let mut differing: Vec<&Outcome> = outcomes.iter().filter(|o| ready(o) && !agrees(o)).collect();
    differing.sort_by(|a, b| (ratio(b) - 1.0).abs().total_cmp(&(ratio(a) - 1.0).abs()));
    for o in differing.iter().take(15) {
        println!(
            "  differs: {} ({} chars vs pdftotext {}, ratio {:.2})",
            relative(root, &o.path),
            o.chars,
            o.reference.map_or("failed".into(), |r| r.to_string()),
            ratio(o)
        );
    }
    if differing.len() > 15 {
        println!("  … and {} more outside 15 %", differing.len() - 15);
    }
}

fn write_tsv(path: &Path, root: &Path, outcomes: &[Outcome]) -> anyhow::Result<()> {
    let mut out =
        String::from("document\tstatus\tpages\tskipped_pages\tseconds\tchars\tpdftotext_chars\tratio\tfallback\n");
    for o in outcomes {
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{:.3}\t{}\t{}\t{:.3}\t{}",
            relative(root, &o.path),
            o.status.replace('\t', " "),
            o.pages,
            o.skipped_pages,
            o.seconds,
            o.chars,
            o.reference.map_or("-".into(), |r| r.to_string()),
            ratio(o),
            o.fallback
        );
    }
    std::fs::write(path, out)?;
    Ok(())
}
