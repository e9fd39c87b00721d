//! The database: the model registry and the catalog (items, users, events). SQLite is the embedded
//! default; PostgreSQL lets several service replicas share one registry. One code path serves both
//! through sqlx's `Any` driver; only the migrations differ (`migrations/sqlite`, `migrations/postgres`).

mod catalog;
mod registry;

use std::borrow::Cow;
use std::path::Path;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, SqlSafeStr};

pub use catalog::{EventPair, EventRecord, ImportReport, ItemRecord};
pub use registry::{file_sha256, verify_artifact, ModelRecord, ModelStatus};

/// Database failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no supported database.
    #[error("database url {0:?}: expected sqlite://PATH or postgres://…")]
    BadUrl(String),
    /// Connecting or querying failed.
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// No such model in the registry.
    #[error("no model with id {0} in the registry")]
    NoSuchModel(i64),
    /// A model's artifact is missing or differs from what was registered.
    #[error("model {id}: {reason}")]
    BadArtifact {
        /// The model's id.
        id: i64,
        /// What is wrong with its file.
        reason: String,
    },
    /// Nothing to roll back to.
    #[error("{0}")]
    NothingToRollBack(String),
    /// A stored value does not parse.
    #[error("database holds a malformed value: {0}")]
    Corrupt(String),
}

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// A pool of connections with the schema migrated.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// Every migration: version, name, SQLite text, PostgreSQL text. One change each.
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        20261129000100,
        "create models",
        include_str!("../../migrations/sqlite/20261129000100_create_models.sql"),
        include_str!("../../migrations/postgres/20261129000100_create_models.sql"),
    ),
    (
        20261129000200,
        "one active model",
        include_str!("../../migrations/sqlite/20261129000200_one_active_model.sql"),
        include_str!("../../migrations/postgres/20261129000200_one_active_model.sql"),
    ),
    (
        20261129000300,
        "create items",
        include_str!("../../migrations/sqlite/20261129000300_create_items.sql"),
        include_str!("../../migrations/postgres/20261129000300_create_items.sql"),
    ),
    (
        20261129000400,
        "create users",
        include_str!("../../migrations/sqlite/20261129000400_create_users.sql"),
        include_str!("../../migrations/postgres/20261129000400_create_users.sql"),
    ),
    (
        20261129000500,
        "create events",
        include_str!("../../migrations/sqlite/20261129000500_create_events.sql"),
        include_str!("../../migrations/postgres/20261129000500_create_events.sql"),
    ),
    (
        20261205000100,
        "live items",
        include_str!("../../migrations/sqlite/20261205000100_live_items.sql"),
        include_str!("../../migrations/postgres/20261205000100_live_items.sql"),
    ),
];

impl Store {
    /// Connects (creating a SQLite file and its folder on first use) without migrating.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if let Some(path) = url.strip_prefix("sqlite://") {
            let file = path.split('?').next().unwrap_or(path);
            if file.is_empty() {
                return Err(StoreError::BadUrl(url.to_string()));
            }
            if let Some(parent) = Path::new(file)
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
            {
                std::fs::create_dir_all(parent).map_err(|e| StoreError::Sql(sqlx::Error::Io(e)))?;
            }
            let url = if url.contains("mode=") {
                url.to_string()
            } else if url.contains('?') {
                format!("{url}&mode=rwc")
            } else {
                format!("{url}?mode=rwc")
            };
            (Backend::Sqlite, url)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string())
        } else {
            return Err(StoreError::BadUrl(url.to_string()));
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // Readers (the service) and a writer (a training job) in other processes.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        Ok(Store { pool, backend })
    }

    /// Connects and applies every pending migration (safe to run from several replicas at once:
    /// sqlx takes a lock).
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let store = Store::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Applies pending migrations; returns how many were applied.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        let migrations: Vec<Migration> = MIGRATIONS
            .iter()
            .map(|&(version, name, sqlite, postgres)| {
                let sql = if self.backend == Backend::Sqlite {
                    sqlite
                } else {
                    postgres
                };
                Migration::new(
                    version,
                    Cow::Borrowed(name),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect();
        let before = self.applied_migrations().await.unwrap_or(0);
        Migrator::with_migrations(migrations)
            .run(&self.pool)
            .await?;
        Ok(self.applied_migrations().await?.saturating_sub(before))
    }

    async fn applied_migrations(&self) -> Result<usize, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.pool)
            .await?;
        Ok(n as usize)
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool, for tests and tools.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// Now as RFC 3339 UTC with milliseconds.
pub(crate) fn now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let base = crate::fm::artifact::rfc3339(d.as_secs());
    format!("{}.{:03}Z", base.trim_end_matches('Z'), d.subsec_millis())
}

/// A JSON array of strings from a column.
pub(crate) fn strings(row: &AnyRow, column: &str) -> Result<Vec<String>, StoreError> {
    use sqlx::Row;
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}
