//! One suite, two stores: every promise of the relay's store, checked
//! against the embedded SQLite outbox and against PostgreSQL (a fresh
//! database per test). Durability across a reopen, the de-duplication
//! window, per-group order, the dead-letter list, pruning, superseded and
//! digested deliveries, the dead-lettering of removed destinations; and, for the
//! store several replicas share, leases: a live one holds, an expired one
//! is taken over; a destination's rate budget and Slack's threads are one
//! for every replica.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use lookout::config::Secret;
use lookout::relay::budget::Take;
use lookout::relay::config::StoreConfig;
use lookout::relay::store::postgres::Postgres;
use lookout::relay::store::sqlite::Sqlite;
use lookout::relay::store::{Accepted, Mark, NewNotification, RelayStore};
use sha2::Digest;
use support::postgres::TestDb;

const WINDOW: Duration = Duration::from_secs(300);

/// Where a test's store lives: reopened as often as the test likes.
enum Place {
    Sqlite(tempfile::TempDir),
    Postgres(TestDb),
}

impl Place {
    fn sqlite() -> Place {
        Place::Sqlite(tempfile::tempdir().unwrap())
    }

    fn postgres() -> Place {
        Place::Postgres(TestDb::create())
    }

    /// A store on this place, as one replica sees it.
    async fn open_as(&self, window: Duration, replica: &str, lease: Duration) -> Arc<dyn RelayStore> {
        match self {
            Place::Sqlite(dir) => Arc::new(Sqlite::open(dir.path(), window).await.unwrap()),
            Place::Postgres(db) => Arc::new(Postgres::open(&store(&db.url, replica, lease), window).await.unwrap()),
        }
    }

    async fn open(&self, window: Duration) -> Arc<dyn RelayStore> {
        self.open_as(window, "a", Duration::from_secs(30)).await
    }
}

fn store(url: &str, replica: &str, lease: Duration) -> StoreConfig {
    StoreConfig {
        url: Secret::new(url),
        pool_size: 4,
        lease,
        replica: replica.into(),
        tls: Default::default(),
    }
}

fn note(group: &str, dedup: &str, destinations: &[&str]) -> NewNotification {
    NewNotification {
        payload: format!("{{\"groupKey\":\"{group}\",\"n\":\"{dedup}\"}}"),
        group_key: group.into(),
        // A digest, as intake makes it (the SQLite store keys on its first 128 bits).
        dedup: sha2::Sha256::digest(dedup.as_bytes()).iter().map(|b| format!("{b:02x}")).collect(),
        destinations: destinations.iter().map(|d| d.to_string()).collect(),
    }
}

/// Every test, once per store.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::Place::sqlite()).await
            })*
        }
        mod on_postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::Place::postgres()).await
            })*
        }
    };
}

both!(
    accepted_survives_a_reopen,
    copies_within_the_window_are_stored_once,
    a_group_goes_out_one_at_a_time_in_order,
    dead_letters_are_listed_retried_and_dropped,
    delivered_rows_are_pruned,
    a_superseded_delivery_names_its_newer_one_and_is_pruned,
    the_queue_for_a_digest_is_bounded_by_count_and_bytes,
    many_outcomes_are_recorded_at_once,
    deliveries_of_unconfigured_destinations_are_dead_lettered,
    threads_set_through_one_handle_are_read_and_cleared_through_another,
    threads_of_groups_with_no_delivery_left_are_pruned,
    a_budget_lets_a_burst_through_then_spaces_the_rest_and_pauses,
);

async fn accepted_survives_a_reopen(place: Place) {
    {
        let s = place.open(WINDOW).await;
        for (g, k) in [("g1", "1"), ("g2", "2"), ("g3", "3")] {
            assert_eq!(s.ingest(note(g, k, &["slack", "mail"])).await.unwrap(), Accepted::Stored);
        }
    }
    let s = place.open(WINDOW).await;
    let due = s.next_due("slack", 10).await.unwrap();
    assert_eq!(due.iter().map(|p| p.group_key.as_str()).collect::<Vec<_>>(), ["g1", "g2", "g3"]);
    assert!(due[0].payload.contains("\"n\":\"1\""), "{:?}", due[0]);
    assert_eq!(due[0].attempts, 0);
    let q = s.queue().await.unwrap();
    assert!(q.iter().any(|(d, n, _)| d == "mail" && *n == 3), "{q:?}");
    for p in &due {
        s.mark(Mark::Done(p.id)).await.unwrap();
    }
    drop(s);
    let s = place.open(WINDOW).await;
    assert!(s.next_due("slack", 10).await.unwrap().is_empty(), "delivered stays delivered");
    assert_eq!(s.next_due("mail", 10).await.unwrap().len(), 3, "each destination on its own");
}

async fn copies_within_the_window_are_stored_once(place: Place) {
    let s = place.open(WINDOW).await;
    assert_eq!(s.ingest(note("g", "a", &["x"])).await.unwrap(), Accepted::Stored);
    assert_eq!(s.ingest(note("g", "a", &["x"])).await.unwrap(), Accepted::Duplicate);
    // Ten copies at once, committed together or not: one is stored.
    let copies = (0..10).map(|_| {
        let s = s.clone();
        tokio::spawn(async move { s.ingest(note("g", "b", &["x"])).await.unwrap() })
    });
    let outcomes: Vec<Accepted> = futures::future::join_all(copies).await.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(outcomes.iter().filter(|&&o| o == Accepted::Stored).count(), 1, "{outcomes:?}");
    drop(s);
    let s = place.open(WINDOW).await;
    assert_eq!(
        s.ingest(note("g", "a", &["x"])).await.unwrap(),
        Accepted::Duplicate,
        "known after a reopen"
    );
    drop(s);
    // Outside the window (none at all), a copy is stored again.
    let s = place.open(Duration::ZERO).await;
    assert_eq!(s.ingest(note("g", "a", &["x"])).await.unwrap(), Accepted::Stored);
    assert_eq!(s.next_due("x", 10).await.unwrap().len(), 1, "one group, one head");
}

async fn a_group_goes_out_one_at_a_time_in_order(place: Place) {
    let s = place.open(WINDOW).await;
    for (g, k) in [("g1", "1"), ("g1", "2"), ("g2", "3"), ("g1", "4")] {
        s.ingest(note(g, k, &["x"])).await.unwrap();
    }
    let g1 = |due: &[lookout::relay::store::Pending]| -> Vec<String> {
        due.iter().filter(|p| p.group_key == "g1").map(|p| p.payload.clone()).collect()
    };
    let due = s.next_due("x", 10).await.unwrap();
    assert_eq!(due.len(), 2, "one head per group: {due:?}");
    let head = due.iter().find(|p| p.group_key == "g1").unwrap().clone();
    assert!(head.payload.contains("\"n\":\"1\""));
    // A retry scheduled for the head holds the rest of its group back.
    s.mark(Mark::Retry(head.id, lookout::probe::unix_now() + 3600.0, "503".into()))
        .await
        .unwrap();
    assert!(g1(&s.next_due("x", 10).await.unwrap()).is_empty());
    drop(s);
    // Due again now (a reopen with the retry brought forward by hand).
    match &place {
        Place::Sqlite(dir) => {
            let c = rusqlite::Connection::open(dir.path().join("outbox.db")).unwrap();
            c.execute("UPDATE deliveries SET next_attempt = 0", []).unwrap();
        }
        Place::Postgres(db) => db.execute("UPDATE relay_deliveries SET next_attempt = 0").unwrap(),
    }
    let s = place.open(WINDOW).await;
    let again = s.next_due("x", 10).await.unwrap();
    let head = again.iter().find(|p| p.group_key == "g1").unwrap().clone();
    assert!(head.payload.contains("\"n\":\"1\"") && head.attempts == 1, "{head:?}");
    s.mark(Mark::Done(head.id)).await.unwrap();
    let next = g1(&s.next_due("x", 10).await.unwrap());
    assert_eq!(next.len(), 1);
    assert!(next[0].contains("\"n\":\"2\""), "then the second, not the fourth: {next:?}");
}

async fn dead_letters_are_listed_retried_and_dropped(place: Place) {
    let s = place.open(WINDOW).await;
    s.ingest(note("g1", "1", &["x"])).await.unwrap();
    s.ingest(note("g2", "2", &["x"])).await.unwrap();
    for p in s.next_due("x", 10).await.unwrap() {
        s.mark(Mark::Dead(p.id, format!("400 from {}", p.group_key))).await.unwrap();
    }
    let dead = s.dlq().await.unwrap();
    assert_eq!(dead.len(), 2);
    assert_eq!(
        (dead[0].reason.as_str(), dead[0].attempts, dead[0].destination.as_str()),
        ("400 from g1", 1, "x")
    );
    assert!(s.next_due("x", 10).await.unwrap().is_empty(), "dead is not due");
    assert_eq!(s.dlq_retry(&[dead[0].id]).await.unwrap(), 1);
    let due = s.next_due("x", 10).await.unwrap();
    assert_eq!(
        (due.len(), due[0].id, due[0].attempts),
        (1, dead[0].id, 0),
        "queued again, attempts reset"
    );
    assert_eq!(s.dlq_drop(&[]).await.unwrap(), 1, "all that are dead");
    assert!(s.dlq().await.unwrap().is_empty());
    assert_eq!(s.dlq_retry(&[dead[1].id]).await.unwrap(), 0, "dropped is gone for good");
}

async fn delivered_rows_are_pruned(place: Place) {
    let s = place.open(WINDOW).await;
    s.ingest(note("g1", "1", &["x"])).await.unwrap();
    s.ingest(note("g2", "2", &["x"])).await.unwrap();
    let due = s.next_due("x", 10).await.unwrap();
    s.mark(Mark::Done(due[0].id)).await.unwrap();
    assert_eq!(s.prune(Duration::from_secs(3600)).await.unwrap(), 0, "too young");
    assert_eq!(s.prune(Duration::ZERO).await.unwrap(), 1, "the delivered one only");
    let q = s.queue().await.unwrap();
    assert_eq!(q.iter().map(|(_, n, _)| n).sum::<i64>(), 1, "the pending one stays: {q:?}");
}

async fn a_superseded_delivery_names_its_newer_one_and_is_pruned(place: Place) {
    let s = place.open(WINDOW).await;
    for (g, k) in [("g1", "1"), ("g1", "2"), ("g2", "3")] {
        s.ingest(note(g, k, &["x"])).await.unwrap();
    }
    let due = s.next_due("x", 10).await.unwrap();
    let head = due.iter().find(|p| p.group_key == "g1").unwrap().clone();
    let other = due.iter().find(|p| p.group_key == "g2").unwrap().clone();
    let newest = s
        .newer_in_group("x", "g1", head.id)
        .await
        .unwrap()
        .expect("g1 has one behind its head");
    assert!(newest > head.id, "a newer one is queued behind the head");
    assert_eq!(s.newer_in_group("x", "g2", other.id).await.unwrap(), None, "the head is the newest");
    assert_eq!(s.newer_in_group("x", "none", 0).await.unwrap(), None);
    assert_eq!(s.newer_in_group("y", "g1", 0).await.unwrap(), None, "per destination");
    s.mark(Mark::Superseded(head.id, newest)).await.unwrap();
    let next = s.next_due("x", 10).await.unwrap();
    let g1: Vec<_> = next.iter().filter(|p| p.group_key == "g1").collect();
    assert_eq!(g1.len(), 1);
    assert_eq!(g1[0].id, newest, "the newer one goes next");
    assert!(g1[0].payload.contains("\"n\":\"2\""));
    assert!(s.dlq().await.unwrap().is_empty(), "superseded is not dead");
    let q = s.queue().await.unwrap();
    assert_eq!(q.iter().map(|(_, n, _)| n).sum::<i64>(), 2, "superseded is not pending: {q:?}");
    assert_eq!(s.prune(Duration::ZERO).await.unwrap(), 1, "pruned like a delivered one");
}

async fn the_queue_for_a_digest_is_bounded_by_count_and_bytes(place: Place) {
    let s = place.open(WINDOW).await;
    for (g, k) in [("g1", "1"), ("g1", "2"), ("g2", "3"), ("g3", "4"), ("g2", "5")] {
        s.ingest(note(g, k, &["x"])).await.unwrap();
    }
    s.ingest(note("g4", "6", &["y"])).await.unwrap();
    // A head claimed and put off for an hour is queued all the same.
    let due = s.next_due("x", 10).await.unwrap();
    s.mark(Mark::Retry(due[0].id, lookout::probe::unix_now() + 3600.0, "503".into()))
        .await
        .unwrap();
    let all = s.queued("x", 100, usize::MAX).await.unwrap();
    let order: Vec<&str> = all.iter().map(|p| p.group_key.as_str()).collect();
    assert_eq!(order, ["g1", "g1", "g2", "g3", "g2"], "every pending one, due or not, oldest first");
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(s.queued("x", 2, usize::MAX).await.unwrap().len(), 2, "bounded by count");
    let size = all[0].payload.len();
    assert!(all.iter().all(|p| p.payload.len() == size), "the test's payloads are of one size");
    let two = s.queued("x", 100, size * 2 + size / 2).await.unwrap();
    assert_eq!(
        two.iter().map(|p| p.id).collect::<Vec<_>>(),
        all[..2].iter().map(|p| p.id).collect::<Vec<_>>(),
        "bounded by bytes"
    );
    let first = s.queued("x", 100, 0).await.unwrap();
    assert_eq!(first.len(), 1, "the first whatever its size");
    assert_eq!(first[0].id, all[0].id);
    assert_eq!(s.queued("y", 100, usize::MAX).await.unwrap().len(), 1, "per destination");
    assert!(s.queued("z", 100, usize::MAX).await.unwrap().is_empty());
}

async fn many_outcomes_are_recorded_at_once(place: Place) {
    let s = place.open(WINDOW).await;
    for (g, k) in [("g1", "1"), ("g1", "2"), ("g2", "3"), ("g3", "4")] {
        s.ingest(note(g, k, &["x"])).await.unwrap();
    }
    let heads = s.next_due("x", 10).await.unwrap();
    let all = s.queued("x", 100, usize::MAX).await.unwrap();
    let id = |k: &str| all.iter().find(|p| p.payload.contains(&format!("\"n\":\"{k}\""))).unwrap().id;
    assert_eq!(heads.len(), 3);
    s.mark_all(vec![
        Mark::Done(id("1")),
        Mark::Dead(id("3"), "400".into()),
        // One claimed, one never offered (behind its group's head): both digested.
        Mark::Digested(id("2"), "delivered in a digest".into()),
        Mark::Digested(id("4"), "delivered in a digest".into()),
    ])
    .await
    .unwrap();
    assert!(s.next_due("x", 10).await.unwrap().is_empty(), "nothing left pending");
    assert!(s.queued("x", 100, usize::MAX).await.unwrap().is_empty());
    let dead = s.dlq().await.unwrap();
    assert_eq!(
        dead.iter().map(|d| (d.id, d.reason.as_str())).collect::<Vec<_>>(),
        [(id("3"), "400")]
    );
    assert_eq!(
        s.prune(Duration::ZERO).await.unwrap(),
        3,
        "done and digested are pruned, dead is kept"
    );
}

async fn deliveries_of_unconfigured_destinations_are_dead_lettered(place: Place) {
    let s = place.open(WINDOW).await;
    s.ingest(note("g1", "1", &["x", "gone"])).await.unwrap();
    s.ingest(note("g2", "2", &["gone"])).await.unwrap();
    s.ingest(note("g3", "3", &["other"])).await.unwrap();
    let mut counts = s.dead_letter_unconfigured(&["x".to_string()]).await.unwrap();
    counts.sort();
    assert_eq!(counts, [("gone".to_string(), 2), ("other".to_string(), 1)]);
    let dead = s.dlq().await.unwrap();
    assert_eq!(dead.len(), 3);
    assert!(
        dead.iter()
            .all(|d| d.reason == format!("destination `{}` is no longer configured", d.destination)),
        "{dead:?}"
    );
    assert_eq!(
        s.next_due("x", 10).await.unwrap().len(),
        1,
        "a configured destination keeps its queue"
    );
    assert!(s.dead_letter_unconfigured(&["x".to_string()]).await.unwrap().is_empty(), "once");
    // Put back (the destination configured again), it is queued as before.
    assert_eq!(s.dlq_retry(&[]).await.unwrap(), 3);
    assert_eq!(s.next_due("gone", 10).await.unwrap().len(), 2);
}

// The store several replicas share.

const SHORT: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_lease_holds_and_an_expired_one_is_taken_over() {
    let place = Place::postgres();
    let a = place.open_as(WINDOW, "a", SHORT).await;
    let b = place.open_as(WINDOW, "b", SHORT).await;
    a.ingest(note("g1", "1", &["x"])).await.unwrap();
    a.ingest(note("g1", "2", &["x"])).await.unwrap();
    let mine = a.next_due("x", 10).await.unwrap();
    assert_eq!(mine.len(), 1);
    // Renewed while `a` lives: not offered to `b` even after several leases.
    let until = Instant::now() + SHORT * 2;
    while Instant::now() < until {
        assert!(b.next_due("x", 10).await.unwrap().is_empty(), "a live claim is not offered");
        assert!(a.next_due("x", 10).await.unwrap().is_empty(), "nor the group's next one");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // `a` dies holding it: once the lease has run out, `b` takes it.
    drop(a);
    let started = Instant::now();
    let taken = loop {
        let due = b.next_due("x", 10).await.unwrap();
        if !due.is_empty() {
            break due;
        }
        assert!(started.elapsed() < SHORT * 3, "not taken over within a lease");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(taken[0].id, mine[0].id, "the same delivery, in order");
    // Given back, a claim is offered again at once.
    b.release(&[taken[0].id]).await.unwrap();
    assert_eq!(b.next_due("x", 10).await.unwrap()[0].id, taken[0].id);
    b.mark(Mark::Done(taken[0].id)).await.unwrap();
    assert!(b.next_due("x", 10).await.unwrap()[0].payload.contains("\"n\":\"2\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_from_a_lost_lease_is_not_recorded() {
    let Place::Postgres(db) = Place::postgres() else { unreachable!() };
    let place = Place::Postgres(db);
    let a = place.open_as(WINDOW, "a", SHORT).await;
    let b = place.open_as(WINDOW, "b", SHORT).await;
    a.ingest(note("g", "1", &["x"])).await.unwrap();
    let mine = a.next_due("x", 1).await.unwrap();
    // As if `a` were paused past its lease: the lease ends, `b` claims it.
    let Place::Postgres(db) = &place else { unreachable!() };
    db.execute("UPDATE relay_deliveries SET lease_until = 0").unwrap();
    let theirs = b.next_due("x", 1).await.unwrap();
    assert_eq!(theirs[0].id, mine[0].id);
    a.mark(Mark::Dead(mine[0].id, "late".into())).await.unwrap();
    assert!(a.dlq().await.unwrap().is_empty(), "the old owner's outcome is ignored");
    b.mark(Mark::Done(theirs[0].id)).await.unwrap();
    assert_eq!(db.count("SELECT COUNT(*) FROM relay_deliveries WHERE state = 'done'"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_arriving_at_two_replicas_are_stored_once() {
    let place = Place::postgres();
    let a = place.open_as(WINDOW, "a", SHORT).await;
    let b = place.open_as(WINDOW, "b", SHORT).await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        for s in [&a, &b] {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                s.ingest(note("g", &format!("{i:x}"), &["x"])).await.unwrap()
            }));
        }
    }
    let outcomes: Vec<Accepted> = futures::future::join_all(tasks).await.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(outcomes.iter().filter(|&&o| o == Accepted::Stored).count(), 50);
    let Place::Postgres(db) = &place else { unreachable!() };
    assert_eq!(db.count("SELECT COUNT(*) FROM relay_notifications"), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_from_a_newer_lookout_is_refused() {
    let place = Place::postgres();
    drop(place.open(WINDOW).await);
    let Place::Postgres(db) = &place else { unreachable!() };
    assert_eq!(
        db.count("SELECT version::bigint FROM lookout_schema WHERE component = 'relay'"),
        i64::from(lookout::relay::store::postgres::SCHEMA_VERSION)
    );
    db.execute("UPDATE lookout_schema SET version = 99").unwrap();
    let e = Postgres::open(&store(&db.url, "a", SHORT), WINDOW).await.err().expect("refused");
    assert!(e.to_string().contains("newer lookout"), "{e}");
}

#[tokio::test]
async fn an_unreachable_server_is_named_without_its_password() {
    let port = support::free_port();
    let url = format!("postgres://lookout:tok-pg-secret@127.0.0.1:{port}/relay");
    let e = Postgres::open(&store(&url, "a", SHORT), WINDOW).await.err().expect("no server");
    let text = format!("{e} {e:?}");
    assert!(!text.contains("tok-pg-secret"), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_leaves_alone_what_another_replica_holds() {
    let place = Place::postgres();
    let a = place.open_as(WINDOW, "a", SHORT).await;
    let b = place.open_as(WINDOW, "b", SHORT).await;
    for (g, k) in [("g1", "1"), ("g1", "2"), ("g2", "3")] {
        a.ingest(note(g, k, &["x"])).await.unwrap();
    }
    let held = b.next_due("x", 1).await.unwrap();
    assert_eq!(held[0].group_key, "g1");
    // g1 is under way at `b`: its next notification must follow, not go in a digest.
    let queued = a.queued("x", 100, usize::MAX).await.unwrap();
    assert_eq!(queued.iter().map(|p| p.group_key.as_str()).collect::<Vec<_>>(), ["g2"]);
    let g2 = queued[0].id;
    a.mark_all(vec![
        Mark::Digested(held[0].id, "digest".into()),
        Mark::Digested(g2, "digest".into()),
    ])
    .await
    .unwrap();
    let Place::Postgres(db) = &place else { unreachable!() };
    assert_eq!(
        db.count("SELECT COUNT(*) FROM relay_deliveries WHERE state = 'digested'"),
        1,
        "only g2"
    );
    // Nor does `a` dead-letter what `b` holds, even for a destination `a` lacks.
    assert_eq!(a.dead_letter_unconfigured(&[]).await.unwrap(), [("x".to_string(), 1)]);
    // A superseded mark is the lease owner's, as every outcome of a claim.
    a.mark(Mark::Superseded(held[0].id, g2)).await.unwrap();
    assert_eq!(db.count("SELECT COUNT(*) FROM relay_deliveries WHERE state = 'superseded'"), 0);
    b.mark(Mark::Done(held[0].id)).await.unwrap();
    assert_eq!(
        db.count("SELECT COUNT(*) FROM relay_deliveries WHERE state = 'done'"),
        1,
        "the holder records it"
    );
}

async fn threads_set_through_one_handle_are_read_and_cleared_through_another(place: Place) {
    let a = place.open_as(WINDOW, "a", SHORT).await;
    let b = place.open_as(WINDOW, "b", SHORT).await;
    let (ta, tb) = (a.threads(), b.threads());
    assert_eq!(tb.get("bot", "g1").await.unwrap(), None);
    ta.set("bot", "g1", "C1", "1700000000.000001").await.unwrap();
    assert_eq!(
        tb.get("bot", "g1").await.unwrap(),
        Some(("C1".into(), "1700000000.000001".into())),
        "started by one, found by the other"
    );
    assert_eq!(tb.get("other", "g1").await.unwrap(), None, "each destination its own");
    // A new first message replaces the old one.
    tb.set("bot", "g1", "C1", "1700000000.000002").await.unwrap();
    assert_eq!(ta.get("bot", "g1").await.unwrap().unwrap().1, "1700000000.000002");
    tb.clear("bot", "g1").await.unwrap();
    assert_eq!(ta.get("bot", "g1").await.unwrap(), None, "cleared by the other");
    drop((ta, tb, a, b));
    let c = place.open(WINDOW).await;
    c.threads().set("bot", "g2", "C2", "1700000000.000003").await.unwrap();
    drop(c);
    let c = place.open(WINDOW).await;
    assert!(c.threads().get("bot", "g2").await.unwrap().is_some(), "kept across a reopen");
}

async fn threads_of_groups_with_no_delivery_left_are_pruned(place: Place) {
    let s = place.open(WINDOW).await;
    s.ingest(note("delivered", "1", &["bot"])).await.unwrap();
    s.ingest(note("pending", "2", &["bot"])).await.unwrap();
    let t = s.threads();
    // "gone": a group whose deliveries were pruned long ago, or whose
    // destination was removed; "other": the same group as a pending one,
    // but on another destination.
    for g in ["delivered", "pending", "gone"] {
        t.set("bot", g, "C1", "1700000000.000001").await.unwrap();
    }
    t.set("other", "pending", "C1", "1700000000.000002").await.unwrap();
    let due = s.next_due("bot", 10).await.unwrap();
    let delivered = due.iter().find(|p| p.group_key == "delivered").unwrap();
    s.mark(Mark::Done(delivered.id)).await.unwrap();
    s.prune(Duration::from_secs(3600)).await.unwrap();
    assert!(
        t.get("bot", "delivered").await.unwrap().is_some(),
        "its delivery is younger than the age: kept"
    );
    assert_eq!(t.get("bot", "gone").await.unwrap(), None, "no delivery of its group");
    assert_eq!(t.get("other", "pending").await.unwrap(), None, "none to its destination");
    s.prune(Duration::ZERO).await.unwrap();
    assert_eq!(
        t.get("bot", "delivered").await.unwrap(),
        None,
        "its delivery pruned, the thread goes too"
    );
    assert!(
        t.get("bot", "pending").await.unwrap().is_some(),
        "a pending delivery keeps its thread"
    );
}

async fn a_budget_lets_a_burst_through_then_spaces_the_rest_and_pauses(place: Place) {
    let s = place.open(WINDOW).await;
    let spacing = Duration::from_millis(300);
    let b = s.budget("slack", spacing, 3);
    for i in 0..3 {
        assert_eq!(b.take().await.unwrap(), Take::Go, "the burst at once ({i})");
    }
    let Take::Wait(d) = b.take().await.unwrap() else {
        panic!("the burst is spent")
    };
    assert!(d > Duration::ZERO && d <= spacing, "{d:?}");
    tokio::time::sleep(d).await;
    assert_eq!(b.take().await.unwrap(), Take::Go, "one spacing later");
    // Another destination has a budget of its own.
    assert_eq!(s.budget("mail", spacing, 1).take().await.unwrap(), Take::Go);
    b.pause(Duration::from_secs(5)).await.unwrap();
    let Take::Wait(d) = b.take().await.unwrap() else { panic!("paused") };
    assert!(d > Duration::from_secs(4), "{d:?}");
    // A destination without a limit only ever waits for a pause.
    let free = s.budget("hook", Duration::ZERO, 1);
    for _ in 0..100 {
        assert_eq!(free.take().await.unwrap(), Take::Go);
    }
}

/// Takes tokens from `budget` for `run`: the times of those granted.
async fn take_for(budget: Arc<dyn lookout::relay::budget::RateBudget>, run: Duration) -> Vec<Instant> {
    let end = Instant::now() + run;
    let mut granted = Vec::new();
    while Instant::now() < end {
        match budget.take().await.unwrap() {
            Take::Go => granted.push(Instant::now()),
            Take::Wait(d) => tokio::time::sleep(d.min(end.saturating_duration_since(Instant::now()))).await,
        }
    }
    granted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_spend_one_budget() {
    let place = Place::postgres();
    let a = place.open_as(WINDOW, "a", SHORT).await;
    let b = place.open_as(WINDOW, "b", SHORT).await;
    // 5/s, burst 5, for two seconds: 15 at most together; a bucket per
    // replica would grant each of them that many.
    let (spacing, burst, run) = (Duration::from_millis(200), 5, Duration::from_secs(2));
    let started = Instant::now();
    let (ga, gb) = tokio::join!(
        take_for(a.budget("slack", spacing, burst), run),
        take_for(b.budget("slack", spacing, burst), run)
    );
    let elapsed = started.elapsed().as_secs_f64();
    let total = ga.len() + gb.len();
    let bound = burst as f64 + elapsed / spacing.as_secs_f64();
    eprintln!(
        "two replicas took {} + {} = {total} tokens in {elapsed:.2}s (bound {bound:.1})",
        ga.len(),
        gb.len()
    );
    assert!((total as f64) <= bound + 1.0, "{total} tokens, more than {bound:.1}");
    assert!(total >= 12, "the budget was spent, not withheld: {total}");
    // And in every stretch of the run, not only over all of it.
    let mut all: Vec<Instant> = ga.into_iter().chain(gb).collect();
    all.sort();
    for i in 0..all.len() {
        for j in i..all.len() {
            let window = (all[j] - all[i]).as_secs_f64();
            let allowed = burst as f64 + window / spacing.as_secs_f64() + 1.0;
            assert!(((j - i + 1) as f64) <= allowed, "{} tokens within {window:.3}s", j - i + 1);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_and_a_token_given_back_are_seen_by_the_other_replica() {
    let place = Place::postgres();
    let a = place.open_as(WINDOW, "a", SHORT).await;
    let b = place.open_as(WINDOW, "b", SHORT).await;
    let (ba, bb) = (
        a.budget("slack", Duration::from_secs(60), 1),
        b.budget("slack", Duration::from_secs(60), 1),
    );
    assert_eq!(ba.take().await.unwrap(), Take::Go);
    assert!(
        matches!(bb.take().await.unwrap(), Take::Wait(d) if d > Duration::from_secs(50)),
        "spent by the other"
    );
    // Taken for a notification that was then superseded: given back, it is the other's.
    ba.give_back().await.unwrap();
    assert_eq!(bb.take().await.unwrap(), Take::Go, "given back");
    // A 429 at `b`: `a` waits too, as long as Slack said.
    let (pa, pb) = (
        a.budget("bot", Duration::from_millis(100), 1),
        b.budget("bot", Duration::from_millis(100), 1),
    );
    assert_eq!(pa.take().await.unwrap(), Take::Go);
    pb.pause(Duration::from_secs(3)).await.unwrap();
    let Take::Wait(d) = pa.take().await.unwrap() else {
        panic!("paused by the other replica")
    };
    assert!(d > Duration::from_secs(2) && d <= Duration::from_secs(3), "{d:?}");
    // A shorter pause does not shorten it.
    pa.pause(Duration::from_millis(10)).await.unwrap();
    let Take::Wait(d) = a.budget("bot", Duration::from_millis(100), 1).take().await.unwrap() else {
        panic!("still paused")
    };
    assert!(d > Duration::from_secs(2), "{d:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_of_version_2_is_upgraded() {
    let place = Place::postgres();
    let old = place.open(WINDOW).await;
    assert_eq!(old.ingest(note("g", "1", &["x"])).await.unwrap(), Accepted::Stored);
    drop(old);
    let Place::Postgres(db) = &place else { unreachable!() };
    // The database as lookout's schema 2 left it, with a queued notification.
    db.execute("DROP FUNCTION relay_rate_take; DROP TABLE relay_rate, relay_threads; UPDATE lookout_schema SET version = 2")
        .unwrap();
    let s = place.open(WINDOW).await;
    assert_eq!(db.count("SELECT version::bigint FROM lookout_schema WHERE component = 'relay'"), 3);
    assert_eq!(s.next_due("x", 10).await.unwrap().len(), 1, "the queue kept");
    assert_eq!(s.budget("x", Duration::from_secs(1), 1).take().await.unwrap(), Take::Go);
    s.threads().set("x", "g", "C", "1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_the_server_cannot_answer_for_says_so_and_recovers() {
    let pg = support::postgres::Private::start();
    let s: Arc<dyn RelayStore> = Arc::new(Postgres::open(&store(&pg.url(), "a", SHORT), WINDOW).await.unwrap());
    let b = s.budget("slack", Duration::from_millis(10), 1);
    assert_eq!(b.take().await.unwrap(), Take::Go);
    pg.down();
    let started = Instant::now();
    let e = b.take().await.expect_err("no server, no token");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered in time: {:?}",
        started.elapsed()
    );
    assert!(e.to_string().contains(&format!("127.0.0.1:{}", pg.port)), "{e}");
    pg.up();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match b.take().await {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "not recovered: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The cost of the shared budget: one statement per token. Run on demand:
/// `cargo test --test relay_store shared_budget_cost -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn shared_budget_cost() {
    let place = Place::postgres();
    let s = place.open(WINDOW).await;
    // The fastest finite limit (1000/s) and the largest burst: nearly every
    // take is granted, and a refused one costs the same statement.
    let shared = s.budget("slack", Duration::from_millis(1), 1000);
    let local = lookout::relay::budget::Local::new(Duration::from_millis(1), 1000);
    for (name, b) in [
        ("shared (PostgreSQL)", shared.as_ref()),
        ("local (governor)", &local as &dyn lookout::relay::budget::RateBudget),
    ] {
        let (mut lat, mut granted) = (Vec::new(), 0);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(3) {
            let t = Instant::now();
            if b.take().await.unwrap() == Take::Go {
                granted += 1;
            }
            lat.push(t.elapsed());
        }
        let secs = started.elapsed().as_secs_f64();
        lat.sort();
        let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
        eprintln!(
            "{name}: {} takes in {secs:.1}s = {:.0} takes/s ({granted} granted), p50 {:?}, p99 {:?}",
            lat.len(),
            lat.len() as f64 / secs,
            q(0.5),
            q(0.99)
        );
    }
    // Three replicas asking back to back for one destination's row at once.
    let mut handles = Vec::new();
    for r in ["a", "b", "c"] {
        let b = place
            .open_as(WINDOW, r, SHORT)
            .await
            .budget("slack", Duration::from_millis(1), 1000);
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(3) {
                let t = Instant::now();
                b.take().await.unwrap();
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat: Vec<Duration> = futures::future::join_all(handles)
        .await
        .into_iter()
        .flat_map(|r| r.unwrap())
        .collect();
    lat.sort();
    let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    eprintln!(
        "three replicas at once: {} takes in 3s = {:.0} takes/s, p50 {:?}, p99 {:?}",
        lat.len(),
        lat.len() as f64 / 3.0,
        q(0.5),
        q(0.99)
    );
}
