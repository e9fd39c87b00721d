//! Sustained load on `POST /v1/recall` while the registry's active model is switched between two
//! models, A and B, back and forth (ten activations through the admin API), against the real binary
//! following the registry. Every answer must be a 200 from exactly one of the two models: its
//! `model_version` is A's or B's, and its items and scores are exactly what that model answers for
//! the same query (computed here from the same artifact and the same saved index), never a mix.
//! Latency is measured before, during and after the switches.
//!
//! The scale comes from the environment, so that `benches/swap_load.sh` runs the same check bigger
//! (a 20,000-item catalog on the graph index, more clients, longer phases):
//! `FMRECALL_SWAP_USERS` (400), `FMRECALL_SWAP_ITEMS` (300), `FMRECALL_SWAP_CLIENTS` (8),
//! `FMRECALL_SWAP_SWAPS` (10), `FMRECALL_SWAP_PHASE_MS` (1000: load before and after the switches),
//! `FMRECALL_SWAP_PAUSE_MS` (200: load between two switches), `FMRECALL_SWAP_EPOCHS` (3),
//! `FMRECALL_SWAP_DIM` (16: factors).

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::child::{ChildServer, Launch};
use common::http::{request_bytes, KeepAlive};
use fmrecall::config::Settings;
use fmrecall::data::FeatureSet;
use fmrecall::fm::ModelArtifact;
use fmrecall::serving::{RecallQuery, ServingModel, UserSpec};
use fmrecall::store::Store;

const TOKEN: &str = "swap-admin";
const K: usize = 10;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v}: not a number"))
        })
        .unwrap_or(default)
}

/// Trains a hybrid model on the synthetic data of the given size into `dir`.
fn train(dir: &Path, size: (usize, usize, usize), epochs: usize, seed: u64) -> ModelArtifact {
    let (users, items, dim) = size;
    let mut job = common::synthetic_job(dir, epochs, FeatureSet::Hybrid);
    job.params.dim = dim;
    job.source.synthetic.users = users;
    job.source.synthetic.items = items;
    job.params.seed = seed;
    job.params.threads = 2;
    fmrecall::pipeline::run_train(&job, &mut |_| {}).unwrap();
    ModelArtifact::load(dir).unwrap()
}

/// One recall answer as (item id, score) pairs.
type Ranked = Vec<(String, f64)>;

/// What each model answers for each user, from the artifact and index the server will load.
fn expected(dir: &Path, users: &[String]) -> (String, HashMap<String, Ranked>) {
    let settings = Settings::load(None).unwrap();
    let model = ServingModel::load(dir, &settings.index).unwrap();
    let answers = users
        .iter()
        .map(|u| {
            let query = RecallQuery {
                user: UserSpec {
                    id: Some(u.clone()),
                    features: None,
                    history: Vec::new(),
                },
                k: K,
                exclude_seen: true,
                exclude_items: Vec::new(),
                ef: None,
                filter: None,
            };
            let items = model.recall(&query).unwrap().items;
            let ranked = items
                .into_iter()
                .map(|i| (i.item_id.to_string(), f64::from(i.score)))
                .collect();
            (u.clone(), ranked)
        })
        .collect();
    (model.meta().version.clone(), answers)
}

/// One request's outcome: when it started (since the load began), how long it took, which model
/// answered, or why it failed.
struct Sample {
    at: Duration,
    latency: Duration,
    outcome: Result<String, String>,
}

/// Checks an answer against the expected answers of the model it names.
fn check(
    body: &serde_json::Value,
    user: &str,
    expected: &HashMap<String, HashMap<String, Ranked>>,
) -> Result<String, String> {
    let version = body["model_version"]
        .as_str()
        .ok_or_else(|| format!("no model_version: {body}"))?;
    let want = expected
        .get(version)
        .ok_or_else(|| format!("version {version} is neither A nor B"))?[user]
        .clone();
    let got: Ranked = body["items"]
        .as_array()
        .ok_or_else(|| format!("no items: {body}"))?
        .iter()
        .map(|i| {
            (
                i["item_id"].as_str().unwrap_or("?").to_string(),
                i["score"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect();
    let same = got.len() == want.len()
        && got
            .iter()
            .zip(&want)
            .all(|((gi, gs), (wi, ws))| gi == wi && (gs - ws).abs() <= 1e-5 * ws.abs().max(1.0));
    if same {
        Ok(version.to_string())
    } else {
        Err(format!(
            "user {user}: the answer labelled {version} is not that model's: got {got:?}, want {want:?}"
        ))
    }
}

/// The serving index's kind, from `/v1/model`.
async fn server_index(addr: std::net::SocketAddr) -> String {
    let mut conn = KeepAlive::connect(addr).await.unwrap();
    let m = conn
        .send(&request_bytes("GET", "/v1/model", &[], b""))
        .await
        .unwrap();
    m.json()["index"]["kind"]
        .as_str()
        .unwrap_or("?")
        .to_string()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_under_load_is_answered_by_exactly_one_model_through_ten_switches() {
    let users = setting("FMRECALL_SWAP_USERS", 400) as usize;
    let items = setting("FMRECALL_SWAP_ITEMS", 300) as usize;
    let clients = setting("FMRECALL_SWAP_CLIENTS", 8) as usize;
    let swaps = setting("FMRECALL_SWAP_SWAPS", 10) as usize;
    let phase = Duration::from_millis(setting("FMRECALL_SWAP_PHASE_MS", 1000));
    let pause = Duration::from_millis(setting("FMRECALL_SWAP_PAUSE_MS", 200));
    let epochs = setting("FMRECALL_SWAP_EPOCHS", 3) as usize;
    let dim = setting("FMRECALL_SWAP_DIM", 16) as usize;

    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = train(dir_a.path(), (users, items, dim), epochs, 1);
    let b = train(dir_b.path(), (users, items, dim), epochs, 2);
    assert_ne!(a.meta.version, b.meta.version);
    let query_users: Vec<String> = a
        .meta
        .users
        .iter()
        .filter(|u| b.meta.users.iter().any(|v| v.id == u.id))
        .take(200)
        .map(|u| u.id.clone())
        .collect();
    // Built and saved here first, so that the server reuses the same graph (when there is one).
    let expected: HashMap<String, HashMap<String, Ranked>> = [
        expected(dir_a.path(), &query_users),
        expected(dir_b.path(), &query_users),
    ]
    .into_iter()
    .collect();
    let differing = query_users
        .iter()
        .filter(|u| expected[&a.meta.version][*u] != expected[&b.meta.version][*u])
        .count();
    assert!(
        differing * 2 > query_users.len(),
        "A and B answer alike for most users: the check could not tell them apart"
    );

    let registry = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/registry.db", registry.path().display());
    let store = Store::open(&url).await.unwrap();
    let id_a = store
        .register_model(&a.meta, &dir_a.path().join("model.fmr"))
        .await
        .unwrap()
        .id;
    let id_b = store
        .register_model(&b.meta, &dir_b.path().join("model.fmr"))
        .await
        .unwrap()
        .id;
    store.activate(id_a, "test").await.unwrap();
    let mut server = ChildServer::spawn(Launch {
        env: vec![
            ("FMRECALL_DATABASE__URL", url.clone()),
            ("FMRECALL_SERVER__ADMIN_TOKEN", TOKEN.into()),
            ("FMRECALL_DATABASE__POLL_SECONDS", "0.5".into()),
        ],
        ..Launch::default()
    });
    let addr = server.addr;

    let expected = Arc::new(expected);
    let query_users = Arc::new(query_users);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut load = Vec::new();
    for c in 0..clients {
        let (expected, users, stop) = (expected.clone(), query_users.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut conn = KeepAlive::connect(addr).await.unwrap();
            let mut n = c;
            while !stop.load(Ordering::Relaxed) {
                let user = &users[n % users.len()];
                n += clients;
                let body = format!(r#"{{"user_id": "{user}", "k": {K}}}"#);
                let request = request_bytes("POST", "/v1/recall", &[], body.as_bytes());
                let at = start.elapsed();
                let sent = Instant::now();
                let outcome = match conn.send(&request).await {
                    Ok(a) if a.status == 200 => check(&a.json(), user, &expected),
                    Ok(a) => Err(format!(
                        "{}: {}",
                        a.status,
                        String::from_utf8_lossy(&a.body)
                    )),
                    Err(e) => {
                        conn = KeepAlive::connect(addr).await.unwrap();
                        Err(format!("connection: {e}"))
                    }
                };
                samples.push(Sample {
                    at,
                    latency: sent.elapsed(),
                    outcome,
                });
            }
            samples
        }));
    }

    tokio::time::sleep(phase).await;
    let swaps_began = start.elapsed();
    let auth = format!("Bearer {TOKEN}");
    let mut admin = KeepAlive::connect(addr).await.unwrap();
    for s in 0..swaps {
        let (id, version) = if s % 2 == 0 {
            (id_b, &b.meta.version)
        } else {
            (id_a, &a.meta.version)
        };
        let path = format!("/v1/admin/models/{id}/activate");
        let r = admin
            .send(&request_bytes(
                "POST",
                &path,
                &[("Authorization", &auth)],
                b"",
            ))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        // The replica that took the activation serves the new model before it answers.
        let m = admin
            .send(&request_bytes("GET", "/v1/model", &[], b""))
            .await
            .unwrap();
        assert_eq!(
            m.json()["version"],
            version.as_str(),
            "after switch {}",
            s + 1
        );
        tokio::time::sleep(pause).await;
    }
    let swaps_ended = start.elapsed();
    tokio::time::sleep(phase).await;
    stop.store(true, Ordering::Relaxed);
    let mut samples = Vec::new();
    for c in load {
        samples.extend(c.await.unwrap());
    }

    let failures: Vec<&String> = samples
        .iter()
        .filter_map(|s| s.outcome.as_ref().err())
        .collect();
    let mut by_version: HashMap<&str, usize> = HashMap::new();
    for s in &samples {
        if let Ok(v) = &s.outcome {
            *by_version.entry(v.as_str()).or_default() += 1;
        }
    }
    let mut phases: [Vec<Duration>; 3] = Default::default();
    for s in &samples {
        let p = if s.at < swaps_began {
            0
        } else if s.at < swaps_ended {
            1
        } else {
            2
        };
        phases[p].push(s.latency);
    }
    let mut row = String::new();
    for (name, lat) in ["before", "during", "after"].iter().zip(phases.iter_mut()) {
        lat.sort_unstable();
        row.push_str(&format!(
            " | {name}: {} requests, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            lat.len(),
            percentile(lat, 0.5),
            percentile(lat, 0.99),
            percentile(lat, 1.0)
        ));
    }
    let index = server_index(addr).await;
    println!(
        "swap load: {users} users, {items} items ({index} index), dim {dim}, {clients} clients, {swaps} switches in {:.1} s; {} requests, {} failed; answered by A {}, by B {}{row}",
        (swaps_ended - swaps_began).as_secs_f64(),
        samples.len(),
        failures.len(),
        by_version.get(a.meta.version.as_str()).unwrap_or(&0),
        by_version.get(b.meta.version.as_str()).unwrap_or(&0),
    );
    assert!(
        failures.is_empty(),
        "{} of {} requests failed; first: {}",
        failures.len(),
        samples.len(),
        failures[0]
    );
    assert!(
        phases.iter().all(|p| p.len() >= clients),
        "too few requests in a phase"
    );
    assert!(
        by_version.len() == 2,
        "both models must have answered: {by_version:?}"
    );
    assert!(server.alive() && !server.log().contains("panicked"));
    assert_eq!(server.terminate(), Some(0));
}
