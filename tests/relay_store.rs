//! One suite, two stores: every promise of the relay's store, checked
//! against the embedded SQLite outbox and against PostgreSQL (a fresh
//! database per test). Durability across a reopen, the de-duplication
//! window, per-group order, the dead-letter list, pruning, superseded and
//! digested deliveries, the dead-lettering of removed destinations; and, for the
//! store several replicas share, leases: a live one holds, an expired one
//! is taken over.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use lookout::config::Secret;
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
    let newest = s.newest_in_group("x", "g1").await.unwrap().expect("g1 has pending deliveries");
    assert!(newest > head.id, "a newer one is queued behind the head");
    assert_eq!(
        s.newest_in_group("x", "g2").await.unwrap(),
        Some(other.id),
        "the head is the newest"
    );
    assert_eq!(s.newest_in_group("x", "none").await.unwrap(), None);
    assert_eq!(s.newest_in_group("y", "g1").await.unwrap(), None, "per destination");
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
