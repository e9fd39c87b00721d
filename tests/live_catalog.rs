//! The live catalog: items written over HTTP (`PUT`/`POST`/`DELETE /v1/items`) are recalled at
//! once from their features, with exactly the vectors the trained path gives them; they survive a
//! restart and a model swap; a second replica on PostgreSQL converges on them.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::db::TestDb;
use common::http::{test_settings, Answer, TestApp};
use fmrecall::config::Settings;
use fmrecall::data::{DataSource, Dataset, FeatureSet, Format, Part, SplitSpec};
use fmrecall::fm::ModelArtifact;
use fmrecall::pipeline::TrainJob;
use serde_json::{json, Value};

const TOKEN: &str = "admin-token";
const AUTH: [(&str, &str); 1] = [("Authorization", "Bearer admin-token")];

async fn send(app: &TestApp, method: &str, path: &str, body: &Value) -> Answer {
    app.request(method, path, Some(body.to_string().as_bytes()), &AUTH)
        .await
}

fn ids(answer: &Answer) -> Vec<String> {
    answer.item_ids()
}

/// A hybrid model of the synthetic data, trained on its train split and registered as active.
async fn trained(dir: &Path, split: SplitSpec, db: &TestDb) -> (TrainJob, ModelArtifact) {
    let mut job = common::synthetic_job(dir, 5, FeatureSet::Hybrid);
    job.source.split = split;
    fmrecall::pipeline::run_train(&job, &mut |_| {}).unwrap();
    let artifact = common::register_active(&db.url, dir).await;
    (job, artifact)
}

/// Settings of a replica following the registry at `url`.
fn replica(url: &str) -> Settings {
    common::http::replica_settings(url, TOKEN)
}

/// Writes items through `POST /v1/items` in batches of 100.
async fn put_all(app: &TestApp, items: &[Value]) {
    for chunk in items.chunks(100) {
        let put = send(app, "POST", "/v1/items", &json!({ "items": chunk })).await;
        assert_eq!(put.status, 200, "{}", String::from_utf8_lossy(&put.body));
    }
}

/// The held-out items of `dataset` as `POST /v1/items` takes them: side features, title.
fn held_out_items(dataset: &Dataset) -> Vec<Value> {
    dataset
        .held_out
        .items
        .iter()
        .map(|&i| {
            let e = &dataset.items[i as usize];
            json!({"item_id": e.id, "title": e.title, "features": e.features[1..]})
        })
        .collect()
}

/// Cold-item precision, recall and NDCG at k, computed from the *served* answers with the offline
/// protocol (`fm::eval::ColdStart`): every user with a positive on a held-out item ranks the whole
/// catalog minus their train items (`among_held_out`: the held-out items only); the positives are
/// the held-out items they liked.
async fn served_cold_item_figures(
    app: &TestApp,
    dataset: &Dataset,
    min_rating: f32,
    k: usize,
    among_held_out: bool,
) -> (f64, f64, f64, usize) {
    let held: HashSet<u32> = dataset.held_out.items.iter().copied().collect();
    let train = dataset.items_by_user(Part::Train, |_| true);
    let liked = dataset.items_by_user(Part::Test, |it| {
        held.contains(&it.item) && Dataset::is_positive(it, min_rating)
    });
    let (mut p, mut r, mut ndcg, mut users) = (0.0, 0.0, 0.0, 0);
    for (u, positives) in liked.iter().enumerate() {
        let positives: Vec<u32> = positives
            .iter()
            .copied()
            .filter(|i| train[u].binary_search(i).is_err())
            .collect();
        if positives.is_empty() {
            continue;
        }
        let mut exclude: Vec<&str> = train[u]
            .iter()
            .map(|&i| dataset.items[i as usize].id.as_str())
            .collect();
        if among_held_out {
            exclude.extend(
                (0..dataset.items.len() as u32)
                    .filter(|i| !held.contains(i))
                    .map(|i| dataset.items[i as usize].id.as_str()),
            );
        }
        let answer = app
            .post(
                "/v1/recall",
                &json!({"user_id": dataset.users[u].id, "k": k, "exclude_seen": false, "exclude_items": exclude}),
            )
            .await;
        let wanted: HashSet<&str> = positives
            .iter()
            .map(|&i| dataset.items[i as usize].id.as_str())
            .collect();
        let hits: Vec<bool> = ids(&answer)
            .iter()
            .map(|id| wanted.contains(id.as_str()))
            .collect();
        let n_hits = hits.iter().filter(|&&h| h).count() as f64;
        let dcg: f64 = hits
            .iter()
            .enumerate()
            .filter(|(_, &h)| h)
            .map(|(rank, _)| 1.0 / (rank as f64 + 2.0).log2())
            .sum();
        let ideal: f64 = (0..positives.len().min(k))
            .map(|rank| 1.0 / (rank as f64 + 2.0).log2())
            .sum();
        p += n_hits / k as f64;
        r += n_hits / positives.len() as f64;
        ndcg += dcg / ideal;
        users += 1;
    }
    let n = users.max(1) as f64;
    (p / n, r / n, ndcg / n, users)
}

/// Offline and served figures ([precision, recall, NDCG] at k) of one ranking.
struct Figures {
    what: &'static str,
    offline: [f64; 3],
    served: [f64; 3],
    users: usize,
}

impl Figures {
    fn assert_equal(&self) {
        for (o, s) in self.offline.iter().zip(&self.served) {
            assert!(
                (o - s).abs() < 1e-9,
                "{}: offline {:?} served {:?}",
                self.what,
                self.offline,
                self.served
            );
        }
    }
}

/// Trains on an items split, serves it, writes the held-out items through the API and returns the
/// offline and the served cold-item figures, over the whole catalog and among the held-out items.
async fn cold_items_through_the_api(job: &TrainJob, db: &TestDb) -> [Figures; 2] {
    let artifact = ModelArtifact::load(&job.out).unwrap();
    let dataset = Dataset::load(&job.source).unwrap();
    let held = held_out_items(&dataset);
    assert!(!held.is_empty());
    let app = TestApp::spawn(replica(&db.url)).await;
    // Items held out of training are not served until they are written.
    let first = held[0]["item_id"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/v1/items/{first}/similar")).await.status,
        404
    );
    put_all(&app, &held).await;
    let counts = app.get("/v1/model").await.json()["live_items"].clone();
    assert_eq!(counts["added"], held.len(), "{counts}");
    let cold = artifact
        .meta
        .cold_start
        .as_ref()
        .expect("cold-item figures");
    let among = &cold.among_held_out.as_ref().expect("among held-out").model;
    let mut figures = Vec::new();
    for (what, offline, among_held_out) in [
        ("whole catalog", &cold.model, false),
        ("among held-out", among, true),
    ] {
        let (p, r, ndcg, users) =
            served_cold_item_figures(&app, &dataset, job.min_rating, offline.k, among_held_out)
                .await;
        assert_eq!(users, offline.users);
        figures.push(Figures {
            what,
            offline: [offline.precision, offline.recall, offline.ndcg],
            served: [p, r, ndcg],
            users,
        });
    }
    figures.try_into().ok().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_out_items_written_over_http_are_recalled_exactly_as_the_offline_cold_item_evaluation_ranks_them(
) {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::sqlite();
    let (job, _) = trained(dir.path(), SplitSpec::Items(0.2), &db).await;
    for f in cold_items_through_the_api(&job, &db).await {
        f.assert_equal();
        assert!(
            f.users > 20 && f.served[1] > 0.0,
            "{}: {} users, {:?}",
            f.what,
            f.users,
            f.served
        );
    }
}

/// The same on MovieLens 100K (read from ../shared when present): the docs' table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn movielens_held_out_items_written_over_http_match_the_offline_figures() {
    let data = Path::new("../shared/data/ml-100k");
    if !data.join("u.data").exists() {
        eprintln!("skipped: {} not found", data.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::sqlite();
    // The command, through the CLI with the shipped defaults.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fmrecall"))
        .args(["train", "--format", "movielens", "--data"])
        .arg(data)
        .args([
            "--split",
            "items:0.2",
            "--seed",
            "42",
            "--features",
            "hybrid",
        ])
        .args(["--no-refit", "--no-register", "--threads", "1", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut job = common::synthetic_job(dir.path(), 30, FeatureSet::Hybrid);
    job.source = DataSource {
        format: Format::Movielens,
        dir: data.to_path_buf(),
        split: SplitSpec::Items(0.2),
        seed: 42,
        ..job.source
    };
    common::register_active(&db.url, dir.path()).await;
    let figures = cold_items_through_the_api(&job, &db).await;
    println!(
        "| ranking | users | figures from | P@10 | R@10 | NDCG@10 |\n|---|---|---|---|---|---|"
    );
    for f in &figures {
        for (from, [p, r, n]) in [("offline", f.offline), ("served", f.served)] {
            println!(
                "| {} | {} | {from} | {p:.4} | {r:.4} | {n:.4} |",
                f.what, f.users
            );
        }
    }
    figures.iter().for_each(Figures::assert_equal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_are_created_changed_deleted_and_validated_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::sqlite();
    let (_, artifact) = trained(dir.path(), SplitSpec::Random(0.2), &db).await;
    let app = TestApp::spawn(replica(&db.url)).await;
    let user = artifact.meta.users[0].id.clone();
    let recall = |k: usize| json!({"user_id": user, "k": k});

    // A new item whose features make it the user's best: copy the features of their top item.
    let top = ids(&app.post("/v1/recall", &recall(1)).await)[0].clone();
    let top_entity = artifact.meta.items.iter().find(|e| e.id == top).unwrap();
    let side: Vec<String> = top_entity.features[1..].to_vec();
    let mut features = side.clone();
    features.push("colour:ultraviolet".into());
    let put = send(
        &app,
        "PUT",
        "/v1/items/fresh-1",
        &json!({"features": features, "title": "Fresh"}),
    )
    .await;
    assert_eq!(put.status, 200, "{}", String::from_utf8_lossy(&put.body));
    assert_eq!(put.json()["recallable"], true);
    assert_eq!(put.json()["trained"], false);
    assert_eq!(
        put.json()["unknown_features"],
        json!(["colour:ultraviolet"])
    );
    let all = ids(&app.post("/v1/recall", &recall(400)).await);
    assert!(all.contains(&"fresh-1".to_string()), "recallable at once");
    // Its exact score is the FM's on its known side features alone.
    let score = app
        .post(
            "/v1/score",
            &json!({"user_id": user, "item_ids": ["fresh-1"]}),
        )
        .await;
    assert_eq!(score.status, 200);
    let similar = app.get("/v1/items/fresh-1/similar?k=3").await;
    assert_eq!(similar.status, 200);

    // Listed with the catalog, marked live.
    let listed = app.get("/v1/items?q=fresh-1").await.json();
    assert_eq!(listed["items"][0]["item_id"], "fresh-1", "{listed}");
    assert_eq!(listed["items"][0]["live"], true);

    // Changing a trained item's features moves it to a new vector and keeps its id feature; a
    // user who had it still never gets it back.
    let seen_item = artifact.meta.items[artifact.meta.seen[0][0] as usize]
        .id
        .clone();
    let changed = send(
        &app,
        "PUT",
        &format!("/v1/items/{seen_item}"),
        &json!({"features": side}),
    )
    .await;
    assert_eq!(changed.json()["trained"], true, "{}", changed.json());
    let counts = app.get("/v1/model").await.json()["live_items"].clone();
    assert_eq!(
        (counts["added"].clone(), counts["updated"].clone()),
        (json!(1), json!(1)),
        "{counts}"
    );
    let with_seen = ids(&app
        .post(
            "/v1/recall",
            &json!({"user_id": user, "k": 400, "exclude_seen": true}),
        )
        .await);
    assert!(
        !with_seen.contains(&seen_item),
        "a seen item that moved is still excluded"
    );
    let without = ids(&app
        .post(
            "/v1/recall",
            &json!({"user_id": user, "k": 400, "exclude_seen": false}),
        )
        .await);
    assert_eq!(
        without.iter().filter(|i| **i == seen_item).count(),
        1,
        "one version of a changed item"
    );

    // Written inactive: stored, never recalled, until it is switched on.
    let dormant = send(
        &app,
        "PUT",
        "/v1/items/dormant",
        &json!({"features": side, "active": false}),
    )
    .await;
    assert_eq!(dormant.status, 200);
    assert!(!ids(&app.post("/v1/recall", &recall(400)).await).contains(&"dormant".to_string()));
    let on = send(&app, "PATCH", "/v1/items/dormant", &json!({"active": true})).await;
    assert_eq!(on.status, 200, "{}", String::from_utf8_lossy(&on.body));
    assert!(ids(&app.post("/v1/recall", &recall(400)).await).contains(&"dormant".to_string()));

    // An item with no feature the model knows is stored but not recalled.
    let unknown = send(
        &app,
        "PUT",
        "/v1/items/mystery",
        &json!({"features": ["colour:ultraviolet"]}),
    )
    .await;
    assert_eq!(
        (unknown.status, unknown.json()["recallable"].clone()),
        (200, json!(false))
    );
    assert!(!ids(&app.post("/v1/recall", &recall(400)).await).contains(&"mystery".to_string()));

    // Deleted: gone from every answer; deleting twice or an unknown id is a 404.
    let del = app
        .request("DELETE", "/v1/items/fresh-1", None, &AUTH)
        .await;
    assert_eq!(del.status, 200, "{}", String::from_utf8_lossy(&del.body));
    assert!(!ids(&app.post("/v1/recall", &recall(400)).await).contains(&"fresh-1".to_string()));
    assert_eq!(app.get("/v1/items/fresh-1/similar").await.status, 404);
    assert_eq!(
        app.request("DELETE", "/v1/items/fresh-1", None, &AUTH)
            .await
            .status,
        404
    );
    let patch = send(&app, "PATCH", "/v1/items/fresh-1", &json!({"active": true})).await;
    assert_eq!(
        patch.status, 404,
        "a deleted item cannot be switched back on"
    );
    assert_eq!(
        app.request("DELETE", "/v1/items/never-was", None, &AUTH)
            .await
            .status,
        404
    );

    // Bad input: a 400 naming the field; no token: 401.
    let long = "x".repeat(300);
    for (path, body, field) in [
        (
            "/v1/items/ok",
            json!({"features": ["no-colon"]}),
            "features[0]",
        ),
        ("/v1/items/ok", json!({"features": [":v"]}), "features[0]"),
        (
            &*format!("/v1/items/{long}"),
            json!({"features": []}),
            "item_id",
        ),
        (
            "/v1/items/ok",
            json!({"features": [], "title": "a\u{1}b"}),
            "title",
        ),
    ] {
        let a = send(&app, "PUT", path, &body).await;
        assert_eq!(
            (a.status, a.json()["error"]["field"].clone()),
            (400, json!(field)),
            "{body}"
        );
    }
    let bulk = send(&app, "POST", "/v1/items", &json!({"items": [{"item_id": "a", "features": []}, {"item_id": "b", "features": ["bad"]}]})).await;
    assert_eq!(
        (bulk.status, bulk.json()["error"]["field"].clone()),
        (400, json!("items[1].features[0]"))
    );
    let too_many: Vec<Value> = (0..101)
        .map(|i| json!({"item_id": format!("i{i}"), "features": []}))
        .collect();
    let bulk = send(&app, "POST", "/v1/items", &json!({ "items": too_many })).await;
    assert_eq!(
        (bulk.status, bulk.json()["error"]["field"].clone()),
        (400, json!("items"))
    );
    let empty = send(&app, "POST", "/v1/items", &json!({"items": []})).await;
    assert_eq!(empty.status, 400);
    let anonymous = app
        .request("PUT", "/v1/items/x", Some(b"{\"features\": []}"), &[])
        .await;
    assert_eq!(anonymous.status, 401);
    // Nothing of the refused writes was stored.
    assert_eq!(app.get("/v1/items?q=ok").await.json()["total"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_without_a_database_refuses_item_writes_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::sqlite();
    trained(dir.path(), SplitSpec::Random(0.2), &db).await;
    let mut settings = test_settings(dir.path(), TOKEN);
    settings.database.url = String::new();
    let app = TestApp::spawn(settings).await;
    let put = send(
        &app,
        "PUT",
        "/v1/items/x",
        &json!({"features": ["genre:g1"]}),
    )
    .await;
    assert_eq!(put.status, 503);
    assert!(put.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("read-only"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_items_survive_a_restart_and_a_new_model() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let db = TestDb::sqlite();
    let (_, artifact) = trained(d1.path(), SplitSpec::Items(0.2), &db).await;
    let mut source = common::synthetic_job(d1.path(), 5, FeatureSet::Hybrid).source;
    source.split = SplitSpec::Items(0.2);
    let dataset_items = held_out_items(&Dataset::load(&source).unwrap());
    let user = artifact.meta.users[0].id.clone();
    let mut app = TestApp::spawn(replica(&db.url)).await;
    put_all(&app, &dataset_items[..10]).await;
    let del = dataset_items[0]["item_id"].as_str().unwrap().to_string();
    app.request("DELETE", &format!("/v1/items/{del}"), None, &AUTH)
        .await;
    let before = app
        .post("/v1/recall", &json!({"user_id": user, "k": 500}))
        .await
        .json()["items"]
        .clone();
    app.stop();
    // A restart replays the catalog: same answers, scores included.
    let app = TestApp::spawn(replica(&db.url)).await;
    let after = app
        .post("/v1/recall", &json!({"user_id": user, "k": 500}))
        .await
        .json()["items"]
        .clone();
    assert_eq!(before, after);
    // The deleted item was never served by this process: only the nine others are replayed.
    let counts = app.get("/v1/model").await.json()["live_items"].clone();
    assert_eq!(counts["added"], 9, "{counts}");
    // A newly activated model re-derives them with its own vocabulary.
    let (_, second) = trained(d2.path(), SplitSpec::Items(0.2), &db).await;
    let want = second.meta.version.clone();
    for _ in 0..200 {
        if app.get("/v1/model").await.json()["version"] == want.as_str() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let model = app.get("/v1/model").await.json();
    assert_eq!(model["version"], want.as_str());
    assert_eq!(model["live_items"]["added"], 9, "{}", model["live_items"]);
    let live: Vec<String> = dataset_items[1..10]
        .iter()
        .map(|i| i["item_id"].as_str().unwrap().to_string())
        .collect();
    let all = ids(&app
        .post("/v1/recall", &json!({"user_id": user, "k": 500}))
        .await);
    assert!(live.iter().all(|i| all.contains(i)));
    assert!(!all.contains(&del));
}

/// The side features of the user's best item: an item written with them must be in their top k.
async fn best_item_features(app: &TestApp, artifact: &ModelArtifact, user: &str) -> Vec<String> {
    let top = ids(&app
        .post("/v1/recall", &json!({"user_id": user, "k": 1}))
        .await)[0]
        .clone();
    let item = artifact.meta.items.iter().find(|e| e.id == top).unwrap();
    item.features[1..].to_vec()
}

/// How many items `app` serves that were written since training.
async fn live_total(app: &TestApp) -> Value {
    app.get("/v1/items?live=true&limit=1").await.json()["total"].clone()
}

/// Whether `item` is in the user's top 400.
async fn recalls(app: &TestApp, user: &str, item: &str) -> bool {
    ids(&app
        .post("/v1/recall", &json!({"user_id": user, "k": 400}))
        .await)
    .iter()
    .any(|i| i == item)
}

async fn converge(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let (_, artifact) = trained(dir.path(), SplitSpec::Random(0.2), &db).await;
    let (a, b) = (
        TestApp::spawn(replica(&db.url)).await,
        TestApp::spawn(replica(&db.url)).await,
    );
    let user = artifact.meta.users[0].id.clone();
    let side = best_item_features(&a, &artifact, &user).await;
    let put = send(&a, "PUT", "/v1/items/new-on-a", &json!({"features": side})).await;
    assert_eq!(put.status, 200);
    let started = Instant::now();
    assert!(
        recalls(&a, &user, "new-on-a").await,
        "at once on the replica that took the write"
    );
    while !recalls(&b, &user, "new-on-a").await {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "replica b never converged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let del = b.request("DELETE", "/v1/items/new-on-a", None, &AUTH).await;
    assert_eq!(del.status, 200);
    let started = Instant::now();
    while recalls(&a, &user, "new-on-a").await {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "replica a kept a deleted item"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgresql_converge_on_items_written_to_either() {
    converge(TestDb::postgres().await).await;
}

/// Milliseconds until `item` is in the user's top 100 on `app`, polling every 2 ms.
async fn millis_until_recalled(app: &TestApp, user: &str, item: &str, since: Instant) -> f64 {
    loop {
        let answer = app
            .post("/v1/recall", &json!({"user_id": user, "k": 100}))
            .await;
        if ids(&answer).iter().any(|i| i == item) {
            return since.elapsed().as_secs_f64() * 1000.0;
        }
        assert!(
            since.elapsed() < Duration::from_secs(30),
            "{item} never appeared"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Visibility of a write, from the `PUT` returning to the item in a recall that should contain it
/// (its features are those of the user's best item), on the replica that took it and on a second
/// one, both on PostgreSQL. Prints the docs' table; `FMRECALL_VISIBILITY_PUTS` (default 20) and
/// `FMRECALL_VISIBILITY_POLL` (seconds, default 0.1; the shipped default is 2) set the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn written_items_become_visible_on_both_replicas() {
    let env = |name: &str, default: f64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let puts = env("FMRECALL_VISIBILITY_PUTS", 20.0) as usize;
    let poll = env("FMRECALL_VISIBILITY_POLL", 0.1);
    let db = TestDb::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let (_, artifact) = trained(dir.path(), SplitSpec::Random(0.2), &db).await;
    let mut settings = replica(&db.url);
    settings.database.poll_seconds = poll;
    let (a, b) = (
        TestApp::spawn(settings.clone()).await,
        TestApp::spawn(settings).await,
    );
    let user = artifact.meta.users[0].id.clone();
    let side = best_item_features(&a, &artifact, &user).await;
    let (mut on_a, mut on_b) = (Vec::new(), Vec::new());
    for i in 0..puts {
        let item = format!("visible-{i}");
        let put = send(
            &a,
            "PUT",
            &format!("/v1/items/{item}"),
            &json!({"features": side}),
        )
        .await;
        assert_eq!(put.status, 200);
        let since = Instant::now();
        let (ta, tb) = tokio::join!(
            millis_until_recalled(&a, &user, &item, since),
            millis_until_recalled(&b, &user, &item, since)
        );
        on_a.push(ta);
        on_b.push(tb);
        // Each item is removed again, so the next one competes only with the catalog.
        let del = a
            .request("DELETE", &format!("/v1/items/{item}"), None, &AUTH)
            .await;
        assert_eq!(del.status, 200);
    }
    println!(
        "| replica | PUTs | poll interval | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|---|"
    );
    for (name, times) in [("took the write", &mut on_a), ("second replica", &mut on_b)] {
        times.sort_by(f64::total_cmp);
        println!(
            "| {name} | {puts} | {poll} s | {:.1} | {:.1} | {:.1} |",
            percentile(times, 0.5),
            percentile(times, 0.99),
            times[times.len() - 1]
        );
    }
}

/// Our graph takes the writes while it serves (past its first capacity, so it is regrown): its
/// answers stay those of brute force on a second replica that replays the same catalog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graph_index_grows_with_written_items_and_answers_like_brute_force() {
    let db = TestDb::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let (_, artifact) = trained(dir.path(), SplitSpec::Random(0.2), &db).await;
    let mut graph_settings = replica(&db.url);
    graph_settings.index.kind = fmrecall::recall::IndexKind::Graph;
    let mut exact_settings = replica(&db.url);
    exact_settings.index.kind = fmrecall::recall::IndexKind::Exact;
    let graph = TestApp::spawn(graph_settings).await;
    let exact = TestApp::spawn(exact_settings).await;
    assert_eq!(
        graph.get("/v1/model").await.json()["index"]["kind"],
        "graph"
    );
    // 1,300 new items (the 300-item model reserves room for 1,024), each with the side features of
    // a trained item and one of another: mixtures the model has never seen.
    let items = &artifact.meta.items;
    let written: Vec<Value> = (0..1300)
        .map(|i| {
            let (a, b) = (&items[i % items.len()], &items[(i * 7 + 3) % items.len()]);
            json!({"item_id": format!("w{i}"), "features": [a.features[1].clone(), b.features[2].clone()]})
        })
        .collect();
    put_all(&graph, &written).await;
    // Changed trained items and deleted written ones.
    for i in 0..30 {
        let item = &items[i * 5];
        let other = &items[i * 5 + 1];
        let put = send(
            &graph,
            "PUT",
            &format!("/v1/items/{}", item.id),
            &json!({"features": other.features[1..]}),
        )
        .await;
        assert_eq!(put.status, 200);
        let del = graph
            .request("DELETE", &format!("/v1/items/w{}", i * 11), None, &AUTH)
            .await;
        assert_eq!(del.status, 200);
    }
    let counts = graph.get("/v1/model").await.json()["live_items"].clone();
    assert_eq!(
        (
            counts["added"].clone(),
            counts["updated"].clone(),
            counts["deleted"].clone()
        ),
        (json!(1270), json!(30), json!(30)),
        "{counts}"
    );
    // The exact replica converges on the same catalog: the same items served live.
    let want = live_total(&graph).await;
    assert_eq!(want, 1300, "1,270 added and 30 changed");
    let started = Instant::now();
    while live_total(&exact).await != want {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the exact replica never converged: {}",
            exact.get("/v1/model").await.json()["live_items"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Written items share feature pairs, so many score alike: an answer is right when each of
    // its items scores at least brute force's k-th best (ties may be broken either way).
    let scores = |a: &Answer| -> Vec<f64> {
        a.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["score"].as_f64().unwrap())
            .collect()
    };
    let deleted: HashSet<String> = (0..30).map(|i| format!("w{}", i * 11)).collect();
    let (mut right, mut total) = (0, 0);
    for user in artifact.meta.users.iter().take(40) {
        for k in [10, 100] {
            let ask = json!({"user_id": user.id, "k": k});
            let (g, e) = (
                graph.post("/v1/recall", &ask).await,
                exact.post("/v1/recall", &ask).await,
            );
            assert!(
                ids(&g).iter().all(|i| !deleted.contains(i)),
                "a deleted item was recalled"
            );
            let kth = scores(&e)[k - 1];
            right += scores(&g).iter().filter(|&&s| s >= kth - 1e-5).count();
            total += k;
        }
    }
    let recall = right as f64 / total as f64;
    assert!(
        recall >= 0.99,
        "graph against brute force after the writes: {recall}"
    );
}
