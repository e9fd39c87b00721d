//! The service with its database: catalog writes over HTTP, and several replicas following one
//! registry on PostgreSQL (and SQLite) through model switches, without a failed request.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::db::TestDb;
use common::http::TestApp;
use fmrecall::config::Settings;
use fmrecall::data::FeatureSet;
use fmrecall::fm::ModelArtifact;
use fmrecall::store::Store;
use serde_json::json;

const TOKEN: &str = "admin-token";

fn train(dir: &Path, seed: u64) -> ModelArtifact {
    let mut job = common::synthetic_job(dir, 3, FeatureSet::Hybrid);
    job.params.seed = seed;
    fmrecall::pipeline::run_train(&job, &mut |_| {}).unwrap();
    ModelArtifact::load(dir).unwrap()
}

/// Settings of a replica that follows the registry at `url`.
fn replica(url: &str) -> Settings {
    common::http::replica_settings(url, TOKEN)
}

async fn version(app: &TestApp) -> String {
    app.get("/v1/model").await.json()["version"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn wait_for_version(app: &TestApp, want: &str) {
    for _ in 0..100 {
        if version(app).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("replica never switched to {want}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_created_over_http_is_recalled_by_id_alone_and_in_a_batch_and_deactivated_items_disappear(
) {
    let dir = tempfile::tempdir().unwrap();
    let artifact = train(dir.path(), 1);
    let db = TestDb::sqlite();
    let store = Store::open(&db.url).await.unwrap();
    let id = store
        .register_model(&artifact.meta, &dir.path().join("model.fmr"))
        .await
        .unwrap()
        .id;
    store.activate(id, "test").await.unwrap();
    let app = TestApp::spawn(replica(&db.url)).await;
    let auth = [("Authorization", "Bearer admin-token")];

    assert_eq!(
        app.post("/v1/recall", &json!({"user_id": "brand-new"}))
            .await
            .status,
        404
    );
    let body = json!({"features": ["region:r4", "occupation:o4", "hobby:chess"]});
    let put = app
        .request(
            "PUT",
            "/v1/users/brand-new",
            Some(body.to_string().as_bytes()),
            &auth,
        )
        .await;
    assert_eq!(put.status, 200, "{}", String::from_utf8_lossy(&put.body));
    assert_eq!(put.json()["unknown_features"], json!(["hobby:chess"]));
    let r = app
        .post("/v1/recall", &json!({"user_id": "brand-new", "k": 5}))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["cold_start"], true);
    // In a batch too, looked up in the catalog the same way.
    let batch = app
        .post(
            "/v1/recall/batch",
            &json!({"queries": [{"user_id": "brand-new", "k": 5}, {"user_id": "nobody"}]}),
        )
        .await;
    assert_eq!(
        batch.status,
        200,
        "{}",
        String::from_utf8_lossy(&batch.body)
    );
    let results = batch.json()["results"].clone();
    assert_eq!(results[0]["items"], r.json()["items"]);
    assert_eq!(results[0]["cold_start"], true);
    assert_eq!(results[1]["error"]["code"], "unknown_user");

    let top = app
        .post("/v1/recall", &json!({"user_id": "3", "k": 5}))
        .await
        .json()["items"][0]["item_id"]
        .as_str()
        .unwrap()
        .to_string();
    let off = app
        .request(
            "PATCH",
            &format!("/v1/items/{top}"),
            Some(b"{\"active\": false}"),
            &auth,
        )
        .await;
    assert_eq!(off.status, 200, "{}", String::from_utf8_lossy(&off.body));
    for user in ["3", "4", "5", "brand-new"] {
        let items = app
            .post("/v1/recall", &json!({"user_id": user, "k": 300}))
            .await
            .json()["items"]
            .clone();
        assert!(
            items
                .as_array()
                .unwrap()
                .iter()
                .all(|i| i["item_id"] != top.as_str()),
            "{top} recalled for {user}"
        );
    }
    let similar = app.get("/v1/items/1/similar?k=299").await.json()["items"].clone();
    assert!(similar
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["item_id"] != top.as_str()));
    app.request(
        "PATCH",
        &format!("/v1/items/{top}"),
        Some(b"{\"active\": true}"),
        &auth,
    )
    .await;
    let back = app
        .post("/v1/recall", &json!({"user_id": "3", "k": 5}))
        .await
        .json()["items"][0]["item_id"]
        .clone();
    assert_eq!(back, top.as_str());

    let events = json!({"events": [{"user_id": "brand-new", "item_id": top, "weight": 5.0}, {"user_id": "x", "item_id": "y", "kind": "click"}]});
    let e = app
        .request(
            "POST",
            "/v1/events",
            Some(events.to_string().as_bytes()),
            &auth,
        )
        .await;
    assert_eq!(e.json()["recorded"], 2);
    let bad = json!({"events": [{"user_id": "", "item_id": "y"}]});
    let e = app
        .request(
            "POST",
            "/v1/events",
            Some(bad.to_string().as_bytes()),
            &auth,
        )
        .await;
    assert_eq!(
        (e.status, e.json()["error"]["field"].clone()),
        (400, json!("events[0].user_id"))
    );
    let e = app
        .request(
            "POST",
            "/v1/events",
            Some(events.to_string().as_bytes()),
            &[],
        )
        .await;
    assert_eq!(e.status, 401, "writes need a token");
}

/// Two replicas on one database switch together, with load running, and refuse a broken artifact.
async fn replicas_follow_the_registry(db: &TestDb) {
    let (da, dbb, dc) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (a, b, c) = (
        train(da.path(), 1),
        train(dbb.path(), 2),
        train(dc.path(), 3),
    );
    let store = Store::open(&db.url).await.unwrap();
    let id_a = store
        .register_model(&a.meta, &da.path().join("model.fmr"))
        .await
        .unwrap()
        .id;
    let id_b = store
        .register_model(&b.meta, &dbb.path().join("model.fmr"))
        .await
        .unwrap()
        .id;
    let id_c = store
        .register_model(&c.meta, &dc.path().join("model.fmr"))
        .await
        .unwrap()
        .id;
    store.activate(id_a, "test").await.unwrap();

    let replicas = Arc::new([
        TestApp::spawn(replica(&db.url)).await,
        TestApp::spawn(replica(&db.url)).await,
    ]);
    for r in replicas.iter() {
        assert_eq!(version(r).await, a.meta.version);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (replicas, stop) = (replicas.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let r = replicas[(n % 2) as usize]
                    .post("/v1/recall", &json!({"user_id": (n % 40).to_string()}))
                    .await;
                assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                n += 1;
            }
            n
        })
    };
    store.activate(id_b, "test").await.unwrap();
    for r in replicas.iter() {
        wait_for_version(r, &b.meta.version).await;
    }
    // A registry that points at a damaged file: refused, B keeps serving, readiness stays true.
    let c_file = dc.path().join("model.fmr");
    let mut bytes = std::fs::read(&c_file).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&c_file, &bytes).unwrap();
    sqlx::query("UPDATE models SET status = 'retired' WHERE status = 'active'")
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE models SET status = 'active' WHERE id = $1")
        .bind(id_c)
        .execute(store.pool())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    for r in replicas.iter() {
        assert_eq!(version(r).await, b.meta.version);
        assert_eq!(r.get("/readyz").await.status, 200);
    }
    stop.store(true, Ordering::Relaxed);
    let served = load.await.unwrap();
    assert!(served > 10, "only {served} requests during the switch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgresql_switch_models_together_without_a_failed_request() {
    let db = TestDb::postgres().await;
    replicas_follow_the_registry(&db).await;
    db.drop_pg().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_sqlite_switch_models_together_without_a_failed_request() {
    replicas_follow_the_registry(&TestDb::sqlite()).await;
}
