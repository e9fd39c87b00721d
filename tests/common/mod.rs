//! Helpers shared by the integration tests: small random models, training jobs on generated data,
//! and a real server with a raw HTTP client ([`http`]).
#![allow(dead_code)]

pub mod child;
pub mod http;

use std::path::Path;

use fmrecall::data::{synthetic::SyntheticConfig, DataSource, FeatureSet, Format, SplitSpec};
use fmrecall::fm::{FmModel, Loss, TrainParams};
use fmrecall::pipeline::{EpochChoice, TrainJob};
use fmrecall::rng::Rng;

/// A model with every parameter drawn at random (biases included), so no term is trivially zero.
pub fn random_model(n: usize, k: usize, seed: u64) -> FmModel {
    let mut rng = Rng::new(seed);
    let mut m = FmModel::random(n, k, 0.5, &mut rng);
    m.w0 = rng.normal() as f32;
    m.w.iter_mut().for_each(|w| *w = rng.normal() as f32);
    m
}

/// A sparse row of `m` distinct features out of `n`, with values in (0.5, 1.5).
pub fn random_row(n: usize, m: usize, rng: &mut Rng) -> (Vec<u32>, Vec<f32>) {
    let mut idx: Vec<u32> = (0..n as u32).collect();
    rng.shuffle(&mut idx);
    idx.truncate(m);
    let val = idx.iter().map(|_| 0.5 + rng.uniform() as f32).collect();
    (idx, val)
}

/// Hyper-parameters small enough for tests.
pub fn small_params(loss: Loss) -> TrainParams {
    TrainParams {
        loss,
        dim: 16,
        learning_rate: 0.05,
        l2: 0.0,
        max_sampled: 10,
        init_std: 1e-4,
        threads: 1,
        seed: 7,
        user_id_dropout: 0.0,
        item_id_dropout: 0.0,
        side_learning_rate: None,
        history: 0,
        causal_history: 0.0,
    }
}

/// A training job on the generated data with a random 20% test split.
pub fn synthetic_job(out: &Path, epochs: usize, features: FeatureSet) -> TrainJob {
    TrainJob {
        source: DataSource {
            format: Format::Synthetic,
            dir: out.to_path_buf(),
            split: SplitSpec::Random(0.2),
            seed: 11,
            columns: Default::default(),
            synthetic: SyntheticConfig {
                users: 400,
                items: 300,
                ..Default::default()
            },
        },
        features,
        min_rating: 4.0,
        train_min_rating: None,
        params: small_params(Loss::Warp),
        epochs: EpochChoice::Fixed(epochs),
        eval_k: 10,
        out: out.to_path_buf(),
        tune: false,
        validation_fraction: 0.1,
        validation_seed: None,
        // The evaluated model itself: what most tests examine (the deployment path has its own).
        refit_on_all: false,
        eval_every: 1,
        eval_users: None,
    }
}

/// A fresh, empty database of each backend: SQLite in a temporary folder, and PostgreSQL (a new
/// database on the local server, dropped by [`TestDb::drop_pg`]).
/// Registers the artifact in `dir` in the registry at `db_url` and activates it.
pub async fn register_active(db_url: &str, dir: &Path) -> fmrecall::fm::ModelArtifact {
    let artifact = fmrecall::fm::ModelArtifact::load(dir).unwrap();
    let store = fmrecall::store::Store::open(db_url).await.unwrap();
    let id = store
        .register_model(&artifact.meta, &dir.join("model.fmr"))
        .await
        .unwrap()
        .id;
    store.activate(id, "test").await.unwrap();
    artifact
}

pub mod db {
    use std::sync::atomic::{AtomicU32, Ordering};

    /// The local PostgreSQL every machine of ours runs.
    pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

    /// A test database.
    pub struct TestDb {
        /// Its URL.
        pub url: String,
        /// Name of the PostgreSQL database to drop, if any.
        pg_name: Option<String>,
        _dir: Option<tempfile::TempDir>,
    }

    static NEXT: AtomicU32 = AtomicU32::new(0);

    impl TestDb {
        /// A SQLite file in a temporary folder (created on first use).
        pub fn sqlite() -> TestDb {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}/registry/fmrecall.db", dir.path().display());
            TestDb {
                url,
                pg_name: None,
                _dir: Some(dir),
            }
        }

        /// A new PostgreSQL database.
        pub async fn postgres() -> TestDb {
            let name = format!(
                "fmrecall_t_{}_{}_{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .subsec_nanos()
            );
            let admin = fmrecall::store::Store::connect(PG_ADMIN_URL)
                .await
                .expect("PostgreSQL on 127.0.0.1:5432");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(admin.pool())
                .await
                .unwrap();
            TestDb {
                url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
                pg_name: Some(name),
                _dir: None,
            }
        }

        /// Both backends.
        pub async fn both() -> Vec<TestDb> {
            vec![TestDb::sqlite(), TestDb::postgres().await]
        }

        /// Drops the PostgreSQL database (connections are closed by force).
        pub async fn drop_pg(self) {
            if let Some(name) = &self.pg_name {
                if let Ok(admin) = fmrecall::store::Store::connect(PG_ADMIN_URL).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(admin.pool())
                    .await;
                }
            }
        }
    }
}

/// |got − want| ≤ 1e-5 + 1e-5·|want| for every number; everything else equal.
pub fn assert_close(path: &str, got: &serde_json::Value, want: &serde_json::Value) {
    match (got, want) {
        (serde_json::Value::Number(g), serde_json::Value::Number(w)) => {
            let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
            assert!(
                (g - w).abs() <= 1e-5 + 1e-5 * w.abs(),
                "{path}: got {g}, want {w}"
            );
        }
        (serde_json::Value::Array(g), serde_json::Value::Array(w)) => {
            assert_eq!(g.len(), w.len(), "{path}: length");
            for (i, (g, w)) in g.iter().zip(w).enumerate() {
                assert_close(&format!("{path}[{i}]"), g, w);
            }
        }
        (serde_json::Value::Object(g), serde_json::Value::Object(w)) => {
            for (k, w) in w {
                let g = g.get(k).unwrap_or_else(|| panic!("{path}.{k}: missing"));
                assert_close(&format!("{path}.{k}"), g, w);
            }
        }
        (g, w) => assert_eq!(g, w, "{path}"),
    }
}
