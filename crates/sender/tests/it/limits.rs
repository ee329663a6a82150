//! The shared limits against the real Redis; every test uses its own key prefix and removes it.

use std::time::{Duration, Instant};

use sender::ratelimit::{Permit, RateLimiter};
use sender::throttle::ReplyThrottle;

use crate::{cleanup, connection, prefix};

#[tokio::test]
async fn the_bucket_smooths_sends_and_is_shared_by_every_sender() {
    let p = prefix();
    // 101 per 10 s, burst 1: the first at once, then one every 100 ms (100 refills in 10 s).
    let limiters: Vec<RateLimiter> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(RateLimiter::new(connection().await, &p, 101, Duration::from_secs(10), 1));
        }
        v
    };
    assert_eq!(limiters[0].try_acquire("support@a.example").await.expect("redis"), Permit::Granted);
    match limiters[1].try_acquire("support@a.example").await.expect("redis") {
        Permit::Wait(d) => assert!(d > Duration::from_millis(50) && d <= Duration::from_millis(100), "{d:?}"),
        Permit::Granted => panic!("the second process must see the first one's send"),
    }
    // Another mailbox has its own bucket.
    assert_eq!(limiters[2].try_acquire("help@b.example").await.expect("redis"), Permit::Granted);

    // Three "processes" sending as fast as allowed for about a second get about ten sends
    // between them (one per 100 ms), not thirty and not a burst of a hundred.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for limiter in limiters.clone() {
        tasks.push(tokio::spawn(async move {
            let mut granted = 0;
            while started.elapsed() < Duration::from_millis(1000) {
                match limiter.try_acquire("support@a.example").await.expect("redis") {
                    Permit::Granted => granted += 1,
                    Permit::Wait(d) => tokio::time::sleep(d.min(Duration::from_millis(20))).await,
                }
            }
            granted
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("task");
    }
    let elapsed_ms = started.elapsed().as_millis() as i64;
    let expected = elapsed_ms / 100;
    // Never faster than the rate (the point of the limiter); slower only if this busy machine
    // kept every poller asleep past a refill, which a burst of 1 cannot make up for.
    assert!(total as i64 <= expected + 2, "{total} sends in {elapsed_ms} ms, at most about {expected} allowed");
    assert!(total as i64 >= expected / 2, "{total} sends in {elapsed_ms} ms, expected about {expected}");
    cleanup(&mut connection().await, &p).await;
}

#[tokio::test]
async fn a_burst_comes_out_of_the_quota_so_no_window_exceeds_it() {
    let p = prefix();
    // 10 per hour with a burst of 4: four at once, then one every 10 minutes (the 6 left over
    // the hour), not every 6 minutes (which would allow 4 + 10 in the first hour).
    let limiter = RateLimiter::new(connection().await, &p, 10, Duration::from_secs(3600), 4);
    for _ in 0..4 {
        assert_eq!(limiter.try_acquire("support@a.example").await.expect("redis"), Permit::Granted);
    }
    match limiter.try_acquire("support@a.example").await.expect("redis") {
        Permit::Wait(d) => assert!(d > Duration::from_secs(590) && d <= Duration::from_secs(601), "{d:?}"),
        Permit::Granted => panic!("the burst is spent"),
    }
    // A burst as large as the quota is the quota at once, refilled over the window.
    let whole = RateLimiter::new(connection().await, &p, 2, Duration::from_secs(3600), 2);
    for _ in 0..2 {
        assert_eq!(whole.try_acquire("help@b.example").await.expect("redis"), Permit::Granted);
    }
    match whole.try_acquire("help@b.example").await.expect("redis") {
        Permit::Wait(d) => assert!(d > Duration::from_secs(1790) && d <= Duration::from_secs(1801), "{d:?}"),
        Permit::Granted => panic!("the quota is spent"),
    }
    cleanup(&mut connection().await, &p).await;
}

#[tokio::test]
async fn the_sixth_reply_to_one_address_in_the_window_is_refused_and_redeliveries_do_not_count() {
    let p = prefix();
    let throttle = ReplyThrottle::new(connection().await, &p, 5, Duration::from_secs(3600));
    for i in 0..5 {
        assert!(throttle.allow("support@a.example", "Loop@Example.com", &format!("email-{i}")).await.expect("redis"));
    }
    // A redelivered email already counted is still allowed and not counted again.
    assert!(throttle.allow("support@a.example", "loop@example.com", "email-4").await.expect("redis"));
    assert!(!throttle.allow("support@a.example", "loop@example.com", "email-5").await.expect("redis"), "sixth");
    // Other recipients and other mailboxes are unaffected.
    assert!(throttle.allow("support@a.example", "other@example.com", "email-6").await.expect("redis"));
    assert!(throttle.allow("help@b.example", "loop@example.com", "email-7").await.expect("redis"));
    cleanup(&mut connection().await, &p).await;
}

#[tokio::test]
async fn the_throttle_window_slides() {
    let p = prefix();
    let throttle = ReplyThrottle::new(connection().await, &p, 2, Duration::from_millis(300));
    assert!(throttle.allow("s@a.example", "c@x.example", "1").await.expect("redis"));
    assert!(throttle.allow("s@a.example", "c@x.example", "2").await.expect("redis"));
    assert!(!throttle.allow("s@a.example", "c@x.example", "3").await.expect("redis"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(throttle.allow("s@a.example", "c@x.example", "3").await.expect("redis"), "old replies age out");
    cleanup(&mut connection().await, &p).await;
}

#[tokio::test]
async fn the_limits_reconnect_at_once_when_redis_drops_the_connection() {
    // The policy `sender::run` connects with (redis-rs 1.x counts from `min_delay`; 0.32 counted
    // from an implicit 1 s): 5 attempts, 1 s then 2 s apart, time-outs of seconds, not minutes.
    let config = sender::redis_config();
    assert_eq!((config.min_delay(), config.max_delay()), (Duration::from_secs(1), Some(Duration::from_secs(2))));
    assert_eq!((config.exponent_base(), config.number_of_retries()), (2.0, 5));
    assert_eq!(
        (config.connection_timeout(), config.response_timeout()),
        (Some(Duration::from_secs(2)), Some(Duration::from_secs(5)))
    );

    let p = prefix();
    let conn = connection().await;
    let limiter = RateLimiter::new(conn.clone(), &p, 1000, Duration::from_secs(3600), 1000);
    let throttle = ReplyThrottle::new(conn.clone(), &p, 1000, Duration::from_secs(3600));
    assert_eq!(limiter.try_acquire("support@a.example").await.expect("redis"), Permit::Granted);
    // What a Redis restart does to the sender: its connection is closed by the server and the
    // scripts are gone from the script cache (flushing it only makes other tests reload theirs).
    let id: i64 = redis::cmd("CLIENT").arg("ID").query_async(&mut conn.clone()).await.expect("CLIENT ID");
    let mut admin = connection().await;
    let killed: i64 = redis::cmd("CLIENT").arg("KILL").arg("ID").arg(id).query_async(&mut admin).await.expect("kill");
    assert_eq!(killed, 1);
    let () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut admin).await.expect("SCRIPT FLUSH");

    // At most the request that found the connection closed fails (a transient error for the
    // handler); the next ones go through a new connection, at once.
    let started = Instant::now();
    let mut failures = 0;
    let permit = loop {
        match limiter.try_acquire("support@a.example").await {
            Ok(permit) => break permit,
            Err(e) => {
                failures += 1;
                assert!(started.elapsed() < Duration::from_secs(5), "no reconnection within 5 s: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(permit, Permit::Granted);
    assert!(failures <= 1, "{failures} failed requests after the connection was dropped");
    assert!(started.elapsed() < Duration::from_secs(2), "reconnected after {:?}", started.elapsed());
    assert!(throttle.allow("support@a.example", "c@x.example", "1").await.expect("the throttle reconnected too"));
    let new_id: i64 = redis::cmd("CLIENT").arg("ID").query_async(&mut conn.clone()).await.expect("CLIENT ID");
    assert_ne!(new_id, id, "a new connection");
    cleanup(&mut admin, &p).await;
}
