//! Throughput of the consumer runtime against plain lapin, on the same broker, in one run.
//!
//! `cargo run --release -p pipeline-core --example relay_bench -- [N] [PREFETCH] [CONCURRENCY]`
//!
//! N persistent messages (a ~1 KiB `emails.to_classify` body each) are loaded into the first of
//! four queues of a throw-away vhost; three relays then move them hop to hop (publish with
//! confirms, `mandatory`, ack after confirm) while a sink counts arrivals at the fourth queue. The
//! figure is N divided by the time from starting the relays to the last arrival. The same is done
//! twice: relays built on `pipeline_core::Worker` (JSON decode, handler, metrics, retry machinery),
//! and relays written directly against lapin with the same prefetch and concurrency. The code is
//! `pipeline_core::relay_bench`, shared with `mailroom bench`.

use lapin::{Connection, ConnectionProperties};
use mailroom_tests::TestVhost;
use pipeline_core::relay_bench;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().map(|a| a.parse()).transpose()?.unwrap_or(20_000);
    let prefetch: u16 = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(64);
    let concurrency: usize = args.get(2).map(|a| a.parse()).transpose()?.unwrap_or(32);
    let vhost = TestVhost::create().await;
    let url = vhost.amqp_url();
    let conn = Connection::connect(&url, ConnectionProperties::default()).await?;
    relay_bench::declare(&conn).await?;
    println!(
        "relay_bench: {n} persistent messages through 3 chained relays, prefetch {prefetch}, concurrency {concurrency}"
    );

    let mut results = Vec::new();
    // Plain first, then the runtime, then plain again: the broker's state drifts during a run
    // (queue index, memory), so the average of the two plain runs is the fair baseline.
    for label in ["plain lapin", "pipeline-core runtime", "plain lapin"] {
        relay_bench::preload(&conn, n).await?;
        let figure = if label == "plain lapin" {
            relay_bench::run_plain(&url, n, prefetch, concurrency).await?
        } else {
            relay_bench::run_runtime(&url, n, prefetch, concurrency).await?
        };
        println!("  {label:<22} {:>8.0} emails/s  ({:.2} s)", figure.rate(), figure.elapsed.as_secs_f64());
        results.push(figure.rate());
    }
    let plain = (results[0] + results[2]) / 2.0;
    let runtime = results[1];
    println!("  runtime / plain        {:>8.1} %  (target: at least 80 %)", 100.0 * runtime / plain);
    conn.close(200, "done".into()).await?;
    Ok(())
}
