//! The HTTP service, started for real on a random port with a model trained in the test.

mod common;

use std::path::{Path, PathBuf};

use common::assert_close;
use common::http::{test_settings, TestApp};
use fmrecall::data::FeatureSet;
use fmrecall::fm::ModelArtifact;
use fmrecall::pipeline::run_train;
use serde_json::{json, Value};

const TOKEN: &str = "s3cret-token";

/// Trains a small hybrid model into `dir` (seeded: same seed, same model).
fn train(dir: &Path, seed: u64) -> PathBuf {
    let mut job = common::synthetic_job(dir, 5, FeatureSet::Hybrid);
    job.params.seed = seed;
    run_train(&job, &mut |_| {}).unwrap();
    dir.to_path_buf()
}

struct Fixture {
    _dirs: Vec<tempfile::TempDir>,
    model_a: PathBuf,
    model_b: PathBuf,
}

fn models() -> Fixture {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let model_a = train(a.path(), 1);
    let model_b = train(b.path(), 2);
    Fixture {
        _dirs: vec![a, b],
        model_a,
        model_b,
    }
}

/// The train items of `user` in the model at `dir`: what exclude-seen leaves out.
fn seen_by(dir: &Path, user: &str) -> Vec<String> {
    let meta = ModelArtifact::load(dir).unwrap().meta;
    let u = meta.users.iter().position(|u| u.id == user).unwrap();
    meta.seen[u]
        .iter()
        .map(|&i| meta.items[i as usize].id.clone())
        .collect()
}

fn ids(items: &Value) -> Vec<String> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["item_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_score_similar_and_model_answer_consistently() {
    let f = models();
    let app = TestApp::spawn(test_settings(&f.model_a, TOKEN)).await;
    let artifact = ModelArtifact::load(&f.model_a).unwrap();
    let version = artifact.meta.version.clone();

    let r = app
        .post("/v1/recall", &json!({"user_id": "3", "k": 7}))
        .await;
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(body["model_version"], version.as_str());
    let items = ids(&body["items"]);
    assert_eq!(items.len(), 7);
    let scores: Vec<f64> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["score"].as_f64().unwrap())
        .collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "best first: {scores:?}"
    );
    assert_eq!(body["cold_start"], false);

    // The scores recall reports are the exact FM scores the score endpoint computes.
    let s = app
        .post("/v1/score", &json!({"user_id": "3", "item_ids": items}))
        .await;
    assert_eq!(s.status, 200);
    for (recalled, scored) in body["items"]
        .as_array()
        .unwrap()
        .iter()
        .zip(s.json()["scores"].as_array().unwrap())
    {
        assert_eq!(recalled["item_id"], scored["item_id"]);
        assert!(
            (recalled["score"].as_f64().unwrap() - scored["score"].as_f64().unwrap()).abs() < 1e-4
        );
    }

    let sim = app.get("/v1/items/5/similar?k=4").await;
    assert_eq!(sim.status, 200);
    let sim_ids = ids(&sim.json()["items"]);
    assert_eq!(sim_ids.len(), 4);
    assert!(
        !sim_ids.contains(&"5".to_string()),
        "an item is not its own neighbour"
    );

    let m = app.get("/v1/model").await.json();
    assert_eq!(m["version"], version.as_str());
    assert_eq!(m["counts"]["items"], 300);
    assert!(m["metrics"]["precision@10"].is_number());
    assert_eq!(m["index"]["kind"], "exact");
    assert!(m["load_seconds"].is_number() && m["serving_since"].is_string());

    assert_eq!(app.get("/healthz").await.json()["status"], "ok");
    assert_eq!(app.get("/readyz").await.json()["status"], "ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclude_seen_and_exclude_items_remove_items_and_batches_answer_in_order() {
    let f = models();
    let app = TestApp::spawn(test_settings(&f.model_a, TOKEN)).await;
    let seen = seen_by(&f.model_a, "3");

    let all = ids(&app
        .post(
            "/v1/recall",
            &json!({"user_id": "3", "k": 300, "exclude_seen": false}),
        )
        .await
        .json()["items"]);
    assert!(
        seen.iter().all(|s| all.contains(s)),
        "without exclusion, seen items can be recalled"
    );
    let fresh = ids(&app
        .post("/v1/recall", &json!({"user_id": "3", "k": 300}))
        .await
        .json()["items"]);
    assert!(
        fresh.iter().all(|i| !seen.contains(i)),
        "exclude_seen is the default"
    );
    assert_eq!(fresh.len(), 300 - seen.len());
    let banned = fresh[..3].to_vec();
    let fewer = ids(&app
        .post(
            "/v1/recall",
            &json!({"user_id": "3", "k": 20, "exclude_items": banned}),
        )
        .await
        .json()["items"]);
    assert!(fewer.iter().all(|i| !banned.contains(i)));

    let batch = app
        .post(
            "/v1/recall/batch",
            &json!({"queries": [
                {"user_id": "3", "k": 2}, {"user_id": "nobody"}, {"features": ["region:r1"], "k": 3}
            ]}),
        )
        .await;
    assert_eq!(batch.status, 200);
    let results = batch.json()["results"].clone();
    assert_eq!(results[0]["items"].as_array().unwrap().len(), 2);
    assert_eq!(results[1]["error"]["code"], "unknown_user");
    assert_eq!(results[2]["items"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_user_is_served_from_features_and_unknown_features_are_reported() {
    let f = models();
    let app = TestApp::spawn(test_settings(&f.model_a, TOKEN)).await;
    let r = app
        .post("/v1/recall", &json!({"user_id": "newcomer", "features": ["region:r2", "occupation:o2", "planet:mars"], "k": 5}))
        .await;
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(body["cold_start"], true);
    assert_eq!(body["unknown_features"], json!(["planet:mars"]));
    assert_eq!(body["items"].as_array().unwrap().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_user_with_features_is_served_in_that_context_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let model = train(dir.path(), 1);
    let app = TestApp::spawn(test_settings(&model, TOKEN)).await;
    let seen = seen_by(&model, "3").len();
    let recall = |body: Value| {
        let app = &app;
        async move {
            let r = app.post("/v1/recall", &body).await;
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            r.json()
        }
    };
    let alone = recall(json!({"user_id": "3", "k": 300})).await;
    let context = recall(json!({"user_id": "3", "features": ["region:r2"], "k": 300})).await;
    let cold = recall(json!({"features": ["region:r2"], "k": 300})).await;
    // Not a cold start: the user's train items are still left out, and the id still counts.
    assert_eq!(context["cold_start"], false);
    assert_eq!(context["items"].as_array().unwrap().len(), 300 - seen);
    assert_ne!(context["items"], alone["items"], "the features count");
    assert_ne!(
        context["items"][0]["score"], cold["items"][0]["score"],
        "the id counts"
    );
    // And the API says so.
    let doc = app.get("/openapi.json").await.json();
    for schema in ["RecallRequest", "ScoreRequest"] {
        let said = doc["components"]["schemas"][schema]["properties"]["features"]["description"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            said.contains("replace that user's side features") && said.contains("cold start"),
            "{schema}: {said}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_parameters_stored_as_f32_show_their_shortest_decimal() {
    let dir = tempfile::tempdir().unwrap();
    let model = train(dir.path(), 1);
    let app = TestApp::spawn(test_settings(&model, TOKEN)).await;
    let m = app.get("/v1/model").await;
    let text = String::from_utf8_lossy(&m.body);
    assert!(text.contains("\"learning_rate\":0.05,"), "{text}");
    assert!(!text.contains("0.0500000007"), "{text}");
    assert_eq!(m.json()["training"]["min_rating"], json!(4.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_refused_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let model = train(dir.path(), 1);
    let mut settings = test_settings(&model, TOKEN);
    settings.server.body_limit_bytes = 4096;
    let app = TestApp::spawn(settings).await;
    let big = json!({"user_id": "3", "exclude_items": vec!["x".repeat(100); 100]});
    let tensor = json!({"x": vec![vec![1.0; 64]; 64], "p": 0.5});
    let auth = format!("Bearer {TOKEN}");
    for a in [
        app.post("/v1/recall", &big).await,
        app.post("/v1/layers/dropout", &tensor).await,
        app.request(
            "POST",
            "/v1/admin/reload",
            Some(big.to_string().as_bytes()),
            &[("Authorization", &auth)],
        )
        .await,
    ] {
        assert_eq!(a.status, 413, "{}", String::from_utf8_lossy(&a.body));
        assert_eq!(a.error_code(), "payload_too_large");
        let message = a.json()["error"]["message"].as_str().unwrap().to_string();
        assert_eq!(
            message,
            "request body exceeds 4096 bytes (server.body_limit_bytes)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_comes_back_in_one_json_shape_naming_the_field() {
    let f = models();
    let mut settings = test_settings(&f.model_a, TOKEN);
    settings.server.body_limit_bytes = 4096;
    settings.server.max_k = 50;
    let app = TestApp::spawn(settings).await;
    let check = |a: &common::http::Answer, status: u16, code: &str| {
        assert_eq!(a.status, status, "{}", String::from_utf8_lossy(&a.body));
        assert_eq!(a.error_code(), code);
    };

    let a = app
        .request("POST", "/v1/recall", Some(b"{\"user_id\": "), &[])
        .await;
    check(&a, 400, "invalid_json");
    let a = app
        .post("/v1/recall", &json!({"user_id": "3", "k": "ten"}))
        .await;
    check(&a, 400, "invalid_field");
    assert_eq!(a.json()["error"]["field"], "k");
    let a = app
        .post("/v1/recall", &json!({"user_id": "3", "k": 0}))
        .await;
    check(&a, 400, "invalid_field");
    assert_eq!(a.json()["error"]["field"], "k");
    let a = app
        .post("/v1/recall", &json!({"user_id": "3", "k": 51}))
        .await;
    check(&a, 400, "invalid_field");
    let a = app.post("/v1/recall", &json!({"k": 5})).await;
    assert_eq!(a.json()["error"]["field"], "user_id");
    let a = app
        .post(
            "/v1/recall/batch",
            &json!({"queries": [{"user_id": "3"}, {"user_id": "3", "k": -1}]}),
        )
        .await;
    check(&a, 400, "invalid_field");
    assert_eq!(a.json()["error"]["field"], "queries[1].k");
    let a = app
        .post("/v1/recall", &json!({"user_id": "3", "colour": "red"}))
        .await;
    check(&a, 400, "invalid_field");

    let big = json!({"user_id": "3", "exclude_items": vec!["x".repeat(100); 100]});
    check(
        &app.post("/v1/recall", &big).await,
        413,
        "payload_too_large",
    );

    check(
        &app.post("/v1/recall", &json!({"user_id": "nobody"})).await,
        404,
        "unknown_user",
    );
    check(
        &app.post(
            "/v1/score",
            &json!({"user_id": "3", "item_ids": ["no-such-item"]}),
        )
        .await,
        404,
        "unknown_item",
    );
    check(
        &app.get("/v1/items/no-such-item/similar").await,
        404,
        "unknown_item",
    );
    check(
        &app.get("/v1/items/5/similar?k=abc").await,
        400,
        "invalid_field",
    );
    check(&app.get("/v1/nowhere").await, 404, "not_found");
    check(
        &app.request("DELETE", "/v1/recall", None, &[]).await,
        405,
        "method_not_allowed",
    );

    check(
        &app.post("/v1/admin/reload", &json!({})).await,
        401,
        "unauthorized",
    );
    let wrong = app
        .request(
            "POST",
            "/v1/admin/reload",
            Some(b"{}"),
            &[("Authorization", "Bearer s3cret-tokeN")],
        )
        .await;
    check(&wrong, 401, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_are_off_without_a_configured_token() {
    let f = models();
    let app = TestApp::spawn(test_settings(&f.model_a, "")).await;
    let a = app
        .request(
            "POST",
            "/v1/admin/reload",
            Some(b"{}"),
            &[("Authorization", "Bearer ")],
        )
        .await;
    assert_eq!(
        (a.status, a.error_code()),
        (403, "admin_disabled".to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_under_load_fails_no_request_and_never_mixes_models() {
    let f = models();
    let app = std::sync::Arc::new(TestApp::spawn(test_settings(&f.model_a, TOKEN)).await);
    let version_a = ModelArtifact::load(&f.model_a).unwrap().meta.version;
    let version_b = ModelArtifact::load(&f.model_b).unwrap().meta.version;
    assert_ne!(version_a, version_b);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (app, stop) = (app.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut versions = std::collections::BTreeSet::new();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || n < 5 {
                let r = app
                    .post(
                        "/v1/recall",
                        &json!({"user_id": (c * 7 + n % 50).to_string(), "k": 10}),
                    )
                    .await;
                assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                versions.insert(r.json()["model_version"].as_str().unwrap().to_string());
                n += 1;
            }
            (n, versions)
        }));
    }
    let auth = format!("Bearer {TOKEN}");
    for round in 0..6 {
        let path = if round % 2 == 0 {
            &f.model_b
        } else {
            &f.model_a
        };
        let body = json!({"path": path});
        let r = app
            .request(
                "POST",
                "/v1/admin/reload",
                Some(body.to_string().as_bytes()),
                &[("Authorization", &auth)],
            )
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for c in clients {
        let (n, versions) = c.await.unwrap();
        total += n;
        assert!(
            versions.iter().all(|v| *v == version_a || *v == version_b),
            "{versions:?}"
        );
    }
    assert!(total > 20, "only {total} requests ran during the swaps");
    assert_eq!(
        app.get("/v1/model").await.json()["version"],
        version_a.as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_artifact_is_refused_and_the_old_model_keeps_serving() {
    let f = models();
    let app = TestApp::spawn(test_settings(&f.model_a, TOKEN)).await;
    let version = ModelArtifact::load(&f.model_a).unwrap().meta.version;
    let broken = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(f.model_b.join("model.fmr")).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xFF;
    std::fs::write(broken.path().join("model.fmr"), &bytes).unwrap();
    let auth = format!("Bearer {TOKEN}");
    for path in [broken.path().to_path_buf(), broken.path().join("missing")] {
        let body = json!({"path": path});
        let r = app
            .request(
                "POST",
                "/v1/admin/reload",
                Some(body.to_string().as_bytes()),
                &[("Authorization", &auth)],
            )
            .await;
        assert_eq!(
            (r.status, r.error_code()),
            (422, "model_refused".to_string())
        );
    }
    assert_eq!(
        app.get("/v1/model").await.json()["version"],
        version.as_str()
    );
    assert_eq!(app.get("/readyz").await.status, 200);
    assert_eq!(
        app.post("/v1/recall", &json!({"user_id": "3"}))
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_openapi_describe_the_service() {
    let f = models();
    let app = TestApp::spawn(test_settings(&f.model_a, TOKEN)).await;
    app.post("/v1/recall", &json!({"user_id": "3"})).await;
    app.post("/v1/recall", &json!({"user_id": "nobody"})).await;
    let m = app.get("/metrics").await;
    let text = String::from_utf8_lossy(&m.body);
    assert!(
        text.contains("fmrecall_requests_total{route=\"/v1/recall\",status=\"200\"} 1"),
        "{text}"
    );
    assert!(text.contains("fmrecall_errors_total{route=\"/v1/recall\"} 1"));
    assert!(text.contains("fmrecall_request_seconds_bucket{route=\"/v1/recall\",le=\"+Inf\"} 2"));
    assert!(text.contains("fmrecall_index_items 300"));
    assert!(m.header("x-request-id").is_some());

    let doc = app.get("/openapi.json").await.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/v1/recall",
        "/v1/recall/batch",
        "/v1/score",
        "/v1/items/{item_id}/similar",
        "/v1/model",
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/admin/reload",
        "/v1/layers/batchnorm",
        "/v1/layers/layernorm",
        "/v1/layers/dropout",
        "/v1/layers/rnn",
        "/v1/layers/lstm",
        "/v1/layers/gcn",
        "/v1/layers/gnn",
        "/v1/layers/fm",
        "/v1/layers/rnn/stability",
        "/v1/layers/gnn/smoothing",
    ] {
        assert!(paths.contains_key(p), "OpenAPI lacks {p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer_endpoints_reproduce_the_golden_fixtures_end_to_end() {
    let f = models();
    let app = TestApp::spawn(test_settings(&f.model_a, TOKEN)).await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/layers");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let fixture: Value =
            serde_json::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap()).unwrap();
        let route = match fixture["layer"].as_str().unwrap() {
            "stability" => "/v1/layers/rnn/stability".to_string(),
            "smoothing" => "/v1/layers/gnn/smoothing".to_string(),
            layer => format!("/v1/layers/{layer}"),
        };
        let r = app.post(&route, &fixture["request"]).await;
        assert_eq!(
            r.status,
            200,
            "{route}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_close(&route, &r.json(), &fixture["expected"]);
        checked += 1;
    }
    assert!(checked >= 19);
    let bad = app
        .post("/v1/layers/dropout", &json!({"x": [[1.0, 2.0]], "p": 1.5}))
        .await;
    assert_eq!(
        (bad.status, bad.json()["error"]["field"].clone()),
        (400, json!("p"))
    );
    let ragged = app
        .post("/v1/layers/layernorm", &json!({"x": [[1.0, 2.0], [3.0]]}))
        .await;
    assert_eq!(
        (ragged.status, ragged.error_code()),
        (400, "invalid_field".to_string())
    );
}
