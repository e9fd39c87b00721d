//! Recall and similar items under a filter on item features and ids (`must`, `should`,
//! `must_not`): the answer is brute force over the allowed items, items written live included; bad
//! filters are a 400 naming the field; the plans searches took are in `/v1/model` and `/metrics`.

mod common;

use std::collections::HashSet;

use common::db::TestDb;
use common::http::TestApp;
use fmrecall::data::{FeatureSet, SplitSpec};
use fmrecall::fm::ModelArtifact;
use serde_json::{json, Value};

const TOKEN: &str = "admin-token";
const AUTH: [(&str, &str); 1] = [("Authorization", "Bearer admin-token")];

async fn serve(dir: &std::path::Path, db: &TestDb) -> (TestApp, ModelArtifact) {
    serve_with(dir, db, |_| {}).await
}

/// A trained synthetic model with item genres, active, served with `configure`d settings.
async fn serve_with(
    dir: &std::path::Path,
    db: &TestDb,
    configure: impl FnOnce(&mut fmrecall::config::Settings),
) -> (TestApp, ModelArtifact) {
    let mut job = common::synthetic_job(dir, 5, FeatureSet::Hybrid);
    job.source.split = SplitSpec::Random(0.2);
    fmrecall::pipeline::run_train(&job, &mut |_| {}).unwrap();
    let artifact = common::register_active(&db.url, dir).await;
    let mut settings = common::http::replica_settings(&db.url, TOKEN);
    configure(&mut settings);
    let app = TestApp::spawn(settings).await;
    (app, artifact)
}

fn items(answer: &Value) -> Vec<(String, f64)> {
    listed(answer, "items")
}

/// `(id, score)` of each entry of `answer[key]`.
fn listed(answer: &Value, key: &str) -> Vec<(String, f64)> {
    answer[key]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|i| {
            (
                i["item_id"].as_str().unwrap().to_string(),
                i["score"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// Brute force: every candidate scored through `/v1/score`, best first, the k best.
async fn brute_force(
    app: &TestApp,
    user: &str,
    candidates: &[String],
    k: usize,
) -> Vec<(String, f64)> {
    if candidates.is_empty() {
        return Vec::new();
    }
    let scored = app
        .post(
            "/v1/score",
            &json!({"user_id": user, "item_ids": candidates}),
        )
        .await
        .json();
    let mut all = listed(&scored, "scores");
    all.sort_by(|a, b| b.1.total_cmp(&a.1));
    all.truncate(k);
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_recall_is_brute_force_over_the_allowed_items_live_ones_included() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::sqlite();
    let (app, artifact) = serve(dir.path(), &db).await;
    // An item written live with genre g1, and a trained g1 item deleted.
    let g1: Vec<&fmrecall::data::Entity> = artifact
        .meta
        .items
        .iter()
        .filter(|e| e.features.iter().any(|f| f == "genre:g1"))
        .collect();
    assert!(g1.len() > 5);
    let put = app
        .request(
            "PUT",
            "/v1/items/live-g1",
            Some(
                json!({"features": ["genre:g1", "decade:1990s"]})
                    .to_string()
                    .as_bytes(),
            ),
            &AUTH,
        )
        .await;
    assert_eq!(put.status, 200);
    let gone = g1[0].id.clone();
    assert_eq!(
        app.request("DELETE", &format!("/v1/items/{gone}"), None, &AUTH)
            .await
            .status,
        200
    );

    let user = artifact.meta.users[0].id.clone();
    let seen: HashSet<String> = artifact.meta.seen[0]
        .iter()
        .map(|&i| artifact.meta.items[i as usize].id.clone())
        .collect();
    let has = |e: &fmrecall::data::Entity, f: &str| e.features.iter().any(|x| x == f);
    let all_ids = |keep: &dyn Fn(&fmrecall::data::Entity) -> bool| -> Vec<String> {
        let mut ids: Vec<String> = artifact
            .meta
            .items
            .iter()
            .filter(|e| keep(e) && e.id != gone && !seen.contains(&e.id))
            .map(|e| e.id.clone())
            .collect();
        ids.push("live-g1".into());
        ids
    };
    let live_has = |f: &str| ["genre:g1", "decade:1990s"].contains(&f);
    let cases: Vec<(Value, Vec<String>)> = vec![
        (
            json!({"must": [{"key": "genre", "match": {"value": "g1"}}]}),
            all_ids(&|e| has(e, "genre:g1")),
        ),
        (
            json!({"should": [{"key": "genre", "match": {"any": ["g1", "g2"]}}], "must_not": [{"key": "decade", "match": {"value": "1990s"}}]}),
            all_ids(&|e| (has(e, "genre:g1") || has(e, "genre:g2")) && !has(e, "decade:1990s"))
                .into_iter()
                .filter(|i| i != "live-g1" || !live_has("decade:1990s"))
                .collect(),
        ),
        (
            json!({"must_not": [{"key": "genre", "match": {"value": "g1"}}]}),
            all_ids(&|e| !has(e, "genre:g1"))
                .into_iter()
                .filter(|i| i != "live-g1")
                .collect(),
        ),
        (
            json!({"must": [{"has_id": [g1[1].id, g1[2].id, "live-g1"]}]}),
            vec![g1[1].id.clone(), g1[2].id.clone(), "live-g1".into()]
                .into_iter()
                .filter(|i| !seen.contains(i))
                .collect(),
        ),
    ];
    for (filter, allowed) in cases {
        for k in [5, 50] {
            let answer = app
                .post(
                    "/v1/recall",
                    &json!({"user_id": user, "k": k, "filter": filter}),
                )
                .await;
            assert_eq!(
                answer.status,
                200,
                "{}",
                String::from_utf8_lossy(&answer.body)
            );
            let got = items(&answer.json());
            let want = brute_force(&app, &user, &allowed, k).await;
            assert_eq!(got.len(), want.len(), "{filter}");
            for ((gi, gs), (_, ws)) in got.iter().zip(&want) {
                assert!((gs - ws).abs() < 1e-4, "{filter}: {gi} {gs} vs {ws}");
                assert!(allowed.contains(gi), "{filter}: {gi} is not allowed");
            }
        }
    }

    // Unknown features match nothing and are reported; a contradiction allows nothing.
    let unknown = app
        .post("/v1/recall", &json!({"user_id": user, "filter": {"must": [{"key": "genre", "match": {"value": "nope"}}]}}))
        .await
        .json();
    assert_eq!(unknown["items"], json!([]));
    assert_eq!(unknown["unknown_features"], json!(["genre:nope"]));
    let contradiction = json!({"must": [{"key": "genre", "match": {"value": "g1"}}], "must_not": [{"key": "genre", "match": {"value": "g1"}}]});
    let none = app
        .post(
            "/v1/recall",
            &json!({"user_id": user, "filter": contradiction}),
        )
        .await;
    assert_eq!(
        (none.status, none.json()["items"].clone()),
        (200, json!([]))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_filters_are_a_400_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::sqlite();
    let (app, artifact) = serve(dir.path(), &db).await;
    let user = artifact.meta.users[0].id.clone();
    let huge: Vec<String> = (0..1001).map(|i| format!("v{i}")).collect();
    for (filter, field) in [
        (json!({}), "filter"),
        (
            json!({"must": [{"key": "genre", "match": {"any": huge}}]}),
            "filter",
        ),
        (
            json!({"must": [{"key": "", "match": {"value": "g1"}}]}),
            "filter.must[0].key",
        ),
        (
            json!({"should": [{"key": "a:b", "match": {"value": "g1"}}]}),
            "filter.should[0].key",
        ),
        (
            json!({"must_not": [{"key": "genre", "match": {"any": []}}]}),
            "filter.must_not[0]",
        ),
        (json!({"must": [{"has_id": [""]}]}), "filter.must[0]"),
    ] {
        let a = app
            .post("/v1/recall", &json!({"user_id": user, "filter": filter}))
            .await;
        assert_eq!(
            (a.status, a.json()["error"]["field"].clone()),
            (400, json!(field)),
            "{filter}"
        );
        let item = &artifact.meta.items[0].id;
        let similar = app
            .post(
                &format!("/v1/items/{item}/similar"),
                &json!({"filter": filter}),
            )
            .await;
        assert_eq!(
            (similar.status, similar.json()["error"]["field"].clone()),
            (400, json!(field)),
            "similar: {filter}"
        );
    }
    let batch = app
        .post(
            "/v1/recall/batch",
            &json!({"queries": [{"user_id": user}, {"user_id": user, "filter": {}}]}),
        )
        .await;
    assert_eq!(batch.status, 400);
    assert_eq!(batch.json()["error"]["field"], "queries[1].filter");
    let malformed = app
        .post(
            "/v1/recall",
            &json!({"user_id": user, "filter": {"must": [{"key": "genre"}]}}),
        )
        .await;
    assert_eq!(malformed.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn similar_items_under_a_filter_are_the_filtered_unfiltered_answer() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::sqlite();
    let (app, artifact) = serve(dir.path(), &db).await;
    let item = artifact.meta.items[3].id.clone();
    let path = format!("/v1/items/{item}/similar");
    let has_g1 = |id: &str| {
        artifact
            .meta
            .items
            .iter()
            .any(|e| e.id == id && e.features.iter().any(|f| f == "genre:g1"))
    };
    // Every item ranked unfiltered, then only the g1 ones: the filtered answer is that prefix.
    let everything = app
        .get(&format!("{path}?k={}", artifact.meta.items.len()))
        .await
        .json();
    let want: Vec<(String, f64)> = items(&everything)
        .into_iter()
        .filter(|(id, _)| has_g1(id))
        .take(7)
        .collect();
    assert_eq!(want.len(), 7);
    let filter = json!({"must": [{"key": "genre", "match": {"value": "g1"}}]});
    let answer = app.post(&path, &json!({"k": 7, "filter": filter})).await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let got = items(&answer.json());
    assert_eq!(got.len(), want.len());
    for ((gi, gs), (wi, ws)) in got.iter().zip(&want) {
        assert!(has_g1(gi), "{gi} is not g1");
        assert!((gs - ws).abs() < 1e-5, "{gi} {gs} vs {wi} {ws}");
    }
    // A POST without a filter is the GET; unknown features are reported and match nothing.
    let plain = app.post(&path, &json!({"k": 5})).await.json();
    let get = app.get(&format!("{path}?k=5")).await.json();
    assert_eq!(plain["items"], get["items"]);
    let unknown = app
        .post(
            &path,
            &json!({"filter": {"must": [{"key": "genre", "match": {"value": "nope"}}]}}),
        )
        .await
        .json();
    assert_eq!(unknown["items"], json!([]));
    assert_eq!(unknown["unknown_features"], json!(["genre:nope"]));
    assert_eq!(
        app.post("/v1/items/no-such-item/similar", &json!({}))
            .await
            .status,
        404
    );
    assert_eq!(app.post(&path, &json!({"k": 0})).await.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plans_searches_took_are_in_the_model_and_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::sqlite();
    // Our graph even for this small catalog (auto would pick exact search below 10,000 items).
    let (app, artifact) = serve_with(dir.path(), &db, |s| {
        s.index.kind = fmrecall::recall::IndexKind::Graph;
    })
    .await;
    let user = artifact.meta.users[0].id.clone();
    let filter = json!({"must": [{"key": "genre", "match": {"value": "g1"}}]});
    for _ in 0..3 {
        let a = app
            .post("/v1/recall", &json!({"user_id": user, "filter": filter}))
            .await;
        assert_eq!(a.status, 200);
    }
    let model = app.get("/v1/model").await.json();
    let index = &model["index"];
    assert_eq!(index["kind"], "graph");
    // A small catalog: a g1 filter allows a few dozen items, which the planner scans exactly.
    let plans = &index["params"]["plans"];
    assert!(plans["exact_scan"].as_u64().unwrap() >= 3, "{plans}");
    let metrics = String::from_utf8(app.get("/metrics").await.body).unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("fmrecall_index_searches_total{plan=\"exact_scan\"}"))
        .unwrap_or_else(|| panic!("{metrics}"));
    let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 3, "{line}");
}
