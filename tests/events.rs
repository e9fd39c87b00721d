//! Events move recall at once: the items of a user's events posted through `POST /v1/events` leave
//! their recall (like the items the model trained on, under `exclude_seen`) on the replica that took
//! them as soon as the write returns, on a second replica within one poll interval, and on a model
//! loaded later (from the stored events). A user id known only from events is served.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::db::TestDb;
use common::http::{Answer, TestApp};
use fmrecall::config::Settings;
use fmrecall::data::FeatureSet;
use fmrecall::fm::ModelArtifact;
use serde_json::{json, Value};

const TOKEN: &str = "admin-token";
const AUTH: [(&str, &str); 1] = [("Authorization", "Bearer admin-token")];

fn ids(answer: &Answer) -> Vec<String> {
    answer.item_ids()
}

/// A hybrid model of the synthetic data, registered as active in `db`.
async fn trained(dir: &Path, db: &TestDb) -> ModelArtifact {
    let job = common::synthetic_job(dir, 5, FeatureSet::Hybrid);
    fmrecall::pipeline::run_train(&job, &mut |_| {}).unwrap();
    common::register_active(&db.url, dir).await
}

fn replica(url: &str) -> Settings {
    common::http::replica_settings(url, TOKEN)
}

async fn post_events(app: &TestApp, events: Value) -> Answer {
    app.request(
        "POST",
        "/v1/events",
        Some(json!({ "events": events }).to_string().as_bytes()),
        &AUTH,
    )
    .await
}

async fn top(app: &TestApp, user: &str, k: usize, exclude_seen: bool) -> Vec<String> {
    ids(&app
        .post(
            "/v1/recall",
            &json!({"user_id": user, "k": k, "exclude_seen": exclude_seen}),
        )
        .await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_leaves_the_users_recall_at_once_and_stays_out_after_a_restart() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let artifact = trained(dir.path(), &db).await;
    let app = TestApp::spawn(replica(&db.url)).await;
    let user = artifact.meta.users[3].id.clone();
    let other = artifact.meta.users[4].id.clone();
    let before = top(&app, &user, 10, true).await;
    let before_other = top(&app, &other, 10, true).await;
    let (watched, second) = (before[0].clone(), before[1].clone());

    let posted = post_events(&app, json!([{"user_id": user, "item_id": watched}])).await;
    assert_eq!(
        posted.status,
        200,
        "{}",
        String::from_utf8_lossy(&posted.body)
    );
    assert_eq!(posted.json()["recorded"], 1);
    let after = top(&app, &user, 10, true).await;
    assert!(
        !after.contains(&watched),
        "{watched} still recalled: {after:?}"
    );
    assert_eq!(after[0], second, "the rest of the ranking is unchanged");
    assert_eq!(after[..9], before[1..], "only the watched item left");
    // Excluded, not deleted: without exclude_seen it is back, with the train items.
    let n = artifact.meta.items.len();
    assert!(top(&app, &user, n, false).await.contains(&watched));
    // Another user is not affected.
    assert_eq!(top(&app, &other, 10, true).await, before_other);

    // A service started later (another replica, a restart, a new model) reads the stored events.
    let later = TestApp::spawn(replica(&db.url)).await;
    assert!(!top(&later, &user, 10, true).await.contains(&watched));
    assert_eq!(top(&later, &other, 10, true).await, before_other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_known_only_from_events_is_served_without_their_items() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let artifact = trained(dir.path(), &db).await;
    let app = TestApp::spawn(replica(&db.url)).await;
    let visitor = "visitor-from-events";
    let asked = app
        .post("/v1/recall", &json!({"user_id": visitor, "k": 10}))
        .await;
    assert_eq!(asked.status, 404, "unknown before any event");

    let items: Vec<String> = artifact.meta.items[..3]
        .iter()
        .map(|i| i.id.clone())
        .collect();
    let events: Vec<Value> = items
        .iter()
        .map(|i| json!({"user_id": visitor, "item_id": i}))
        .collect();
    assert_eq!(post_events(&app, json!(events)).await.status, 200);
    let answer = app
        .post("/v1/recall", &json!({"user_id": visitor, "k": 300}))
        .await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.json()["cold_start"], true);
    let got = ids(&answer);
    assert_eq!(got.len(), artifact.meta.items.len() - items.len());
    for item in &items {
        assert!(!got.contains(item), "{item} is one of the visitor's events");
    }
    // An event on an item the model does not serve is stored and harmless.
    let unknown = post_events(
        &app,
        json!([{"user_id": visitor, "item_id": "no-such-item"}]),
    )
    .await;
    assert_eq!(unknown.status, 200);
    assert_eq!(
        ids(&app
            .post("/v1/recall", &json!({"user_id": visitor, "k": 300}))
            .await),
        got
    );
}

async fn two_replicas(db: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let artifact = trained(dir.path(), db).await;
    let (a, b) = (
        TestApp::spawn(replica(&db.url)).await,
        TestApp::spawn(replica(&db.url)).await,
    );
    let user = artifact.meta.users[7].id.clone();
    let watched = top(&a, &user, 1, true).await[0].clone();
    assert_eq!(top(&b, &user, 1, true).await[0], watched);
    let started = Instant::now();
    let posted = post_events(&a, json!([{"user_id": user, "item_id": watched}])).await;
    assert_eq!(posted.status, 200);
    assert!(
        !top(&a, &user, 10, true).await.contains(&watched),
        "at once on the replica that took the event"
    );
    while top(&b, &user, 10, true).await.contains(&watched) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "replica b never applied the event"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = started.elapsed();
    // The replicas poll every 0.1 s; a generous bound for a loaded machine.
    assert!(
        took < Duration::from_secs(2),
        "replica b took {took:?} to apply the event"
    );
    eprintln!("second replica applied the event after {took:?} (poll 0.1 s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_reaches_a_second_replica_on_postgresql_within_a_poll() {
    let db = TestDb::postgres().await;
    two_replicas(&db).await;
    db.drop_pg().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_reaches_a_second_replica_on_sqlite_within_a_poll() {
    two_replicas(&TestDb::sqlite()).await;
}
