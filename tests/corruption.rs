//! Corrupted models in the registry, against the real binary following it: a row whose file is
//! missing, a file replaced by another model's, a file altered, a registered file that does not
//! load. Each is refused with a message naming the file and the reason, whether it arrives through
//! the admin API or through another replica's activation seen at a poll; the previous model keeps
//! serving; `/readyz` stays ready and `/v1/model` tells which model serves and which one the
//! registry wants but was refused. A replica starting on such a registry stops with the reason.
//! (Damaged files given to the loader directly are covered by tests/artifact.rs, a damaged file
//! given to `/v1/admin/reload` by tests/api.rs, a damaged graph file by tests/graph_index.rs.)

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::child::{ChildServer, Launch};
use common::http::{request_bytes, send_raw, Answer};
use fmrecall::data::FeatureSet;
use fmrecall::fm::ModelArtifact;
use fmrecall::store::Store;
use serde_json::Value;

const TOKEN: &str = "corruption-admin";

struct Model {
    _dir: tempfile::TempDir,
    file: PathBuf,
    version: String,
    id: i64,
}

async fn trained(store: &Store, seed: u64) -> Model {
    let dir = tempfile::tempdir().unwrap();
    let mut job = common::synthetic_job(dir.path(), 2, FeatureSet::Hybrid);
    job.params.seed = seed;
    fmrecall::pipeline::run_train(&job, &mut |_| {}).unwrap();
    let file = dir.path().join("model.fmr");
    let artifact = ModelArtifact::load(&file).unwrap();
    let id = store
        .register_model(&artifact.meta, &file)
        .await
        .unwrap()
        .id;
    Model {
        _dir: dir,
        file,
        version: artifact.meta.version,
        id,
    }
}

async fn call(addr: SocketAddr, method: &str, path: &str) -> Answer {
    let auth = format!("Bearer {TOKEN}");
    let headers = [("Connection", "close"), ("Authorization", auth.as_str())];
    send_raw(addr, &request_bytes(method, path, &headers, b"")).await
}

/// Makes `id` the active model behind the service's back, as another replica's activation (made
/// before the file went bad) would.
async fn activate_elsewhere(store: &Store, id: i64) {
    sqlx::query("UPDATE models SET status = 'retired' WHERE status = 'active'")
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE models SET status = 'active' WHERE id = $1")
        .bind(id)
        .execute(store.pool())
        .await
        .unwrap();
}

/// Waits (up to 5 s) until `/v1/model` reports a refusal of `version`, and returns the body.
async fn refusal_of(addr: SocketAddr, version: &str) -> Value {
    for _ in 0..100 {
        let m = call(addr, "GET", "/v1/model").await.json();
        if m["registry_refused"]["version"] == version {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the service never reported refusing {version}");
}

/// Waits (up to 5 s) until `/v1/model` reports no refusal.
async fn refusal_cleared(addr: SocketAddr) {
    for _ in 0..100 {
        if call(addr, "GET", "/v1/model").await.json()["registry_refused"].is_null() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the service still reports a refusal after the registry went back");
}

/// The service still serves `version`, is ready, and answers recall with it.
async fn still_serving(addr: SocketAddr, version: &str) {
    assert_eq!(call(addr, "GET", "/readyz").await.status, 200);
    let m = call(addr, "GET", "/v1/model").await.json();
    assert_eq!(m["version"], version);
    let body = br#"{"user_id": "3", "k": 5}"#;
    let r = send_raw(
        addr,
        &request_bytes("POST", "/v1/recall", &[("Connection", "close")], body),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["model_version"].clone()),
        (200, Value::from(version))
    );
}

fn flip_byte(file: &Path) {
    let mut bytes = std::fs::read(file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(file, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_replaced_altered_and_unloadable_models_are_refused_while_the_previous_one_serves()
{
    let registry = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/registry.db", registry.path().display());
    let store = Store::open(&url).await.unwrap();
    let good = trained(&store, 1).await;
    let missing = trained(&store, 2).await;
    let replaced = trained(&store, 3).await;
    let altered = trained(&store, 4).await;
    let other = trained(&store, 5).await;
    let next = trained(&store, 6).await;
    store.activate(good.id, "test").await.unwrap();
    let server = ChildServer::spawn(Launch {
        env: vec![
            ("FMRECALL_DATABASE__URL", url.clone()),
            ("FMRECALL_SERVER__ADMIN_TOKEN", TOKEN.into()),
            ("FMRECALL_DATABASE__POLL_SECONDS", "0.1".into()),
        ],
        ..Launch::default()
    });
    let addr = server.addr;
    still_serving(addr, &good.version).await;

    std::fs::remove_file(&missing.file).unwrap();
    std::fs::copy(&other.file, &replaced.file).unwrap();
    flip_byte(&altered.file);
    let cases = [
        (&missing, "No such file"),
        (&replaced, "changed since it was registered"),
        (&altered, "changed since it was registered"),
    ];

    for (model, says) in cases {
        // Through the admin API: refused before the registry changes.
        let r = call(
            addr,
            "POST",
            &format!("/v1/admin/models/{}/activate", model.id),
        )
        .await;
        assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["error"]["code"], "model_refused");
        let message = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains(says), "{message}");
        assert!(
            message.contains(&model.file.display().to_string()),
            "{message}"
        );
        assert_eq!(store.active_model().await.unwrap().unwrap().id, good.id);
        let m = call(addr, "GET", "/v1/model").await.json();
        assert_eq!(m["registry_refused"], Value::Null);
        still_serving(addr, &good.version).await;

        // Activated by someone else before the file went bad: refused at the next poll.
        activate_elsewhere(&store, model.id).await;
        let m = refusal_of(addr, &model.version).await;
        assert_eq!(m["version"], good.version.as_str());
        let reason = m["registry_refused"]["reason"].as_str().unwrap();
        assert!(
            reason.contains(says) && reason.contains(&model.file.display().to_string()),
            "{reason}"
        );
        still_serving(addr, &good.version).await;

        // Rolled back to the serving model: nothing is reported refused any more.
        activate_elsewhere(&store, good.id).await;
        refusal_cleared(addr).await;
    }

    // A file damaged before it was registered: its checksum matches, its content does not load.
    let broken = tempfile::tempdir().unwrap();
    let broken_file = broken.path().join("model.fmr");
    let mut bytes = std::fs::read(&next.file).unwrap();
    bytes.truncate(bytes.len() - 100);
    std::fs::write(&broken_file, &bytes).unwrap();
    let mut meta = ModelArtifact::load(&next.file).unwrap().meta;
    meta.version.push_str("-broken");
    let broken_id = store.register_model(&meta, &broken_file).await.unwrap().id;
    let r = call(
        addr,
        "POST",
        &format!("/v1/admin/models/{broken_id}/activate"),
    )
    .await;
    // The registry accepts it (the file is what was registered); the service refuses to serve it.
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let m = refusal_of(addr, &meta.version).await;
    let reason = m["registry_refused"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("corrupted model file") && reason.contains("checksum"),
        "{reason}"
    );
    still_serving(addr, &good.version).await;

    // A good model activated: served, and nothing is reported refused any more.
    let r = call(
        addr,
        "POST",
        &format!("/v1/admin/models/{}/activate", next.id),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let m = call(addr, "GET", "/v1/model").await.json();
    assert_eq!(
        (m["version"].as_str(), &m["registry_refused"]),
        (Some(next.version.as_str()), &Value::Null)
    );
    assert!(
        server
            .log()
            .contains("active model refused; the previous one keeps serving"),
        "refusals are logged"
    );

    // A replica starting on a registry whose active model is refused stops with the reason.
    for (model, says) in cases {
        activate_elsewhere(&store, model.id).await;
        let mut replica = std::process::Command::new(env!("CARGO_BIN_EXE_fmrecall"));
        replica
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env("FMRECALL_DATABASE__URL", &url);
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::task::spawn_blocking(move || replica.output()),
        )
        .await
        .expect("the replica stops instead of serving")
        .unwrap()
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "the registry's active model {} ({}) is refused",
                model.id, model.version
            )) && stderr.contains(says),
            "{stderr}"
        );
        // And what to do about it.
        for way_out in [
            "fmrecall models rollback",
            "fmrecall models activate ID",
            "--model DIR",
        ] {
            assert!(stderr.contains(way_out), "{way_out}: {stderr}");
        }
    }
}
