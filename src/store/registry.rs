//! The model registry: trained artifacts as candidates, one active model, rollback.

use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{now, Store, StoreError};
use crate::fm::artifact::ArtifactMeta;

/// Where a model is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelStatus {
    /// Registered, never served or not yet.
    Candidate,
    /// The one model replicas serve.
    Active,
    /// Served before.
    Retired,
}

impl ModelStatus {
    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "candidate" => Ok(ModelStatus::Candidate),
            "active" => Ok(ModelStatus::Active),
            "retired" => Ok(ModelStatus::Retired),
            other => Err(StoreError::Corrupt(format!("model status {other:?}"))),
        }
    }
}

/// A registered model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelRecord {
    /// Registry id.
    pub id: i64,
    /// The artifact's version.
    pub version: String,
    /// When it was trained.
    pub created_at: String,
    /// When it was registered.
    pub registered_at: String,
    /// Candidate, active or retired.
    pub status: ModelStatus,
    /// Hyper-parameters.
    pub params: serde_json::Value,
    /// Evaluation figures.
    pub metrics: serde_json::Value,
    /// The model file.
    pub artifact_path: PathBuf,
    /// SHA-256 of the model file, hex.
    pub sha256: String,
    /// Who activated it last.
    pub activated_by: Option<String>,
    /// When it was activated last.
    pub activated_at: Option<String>,
}

/// SHA-256 of a file, hex.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let bytes = std::fs::read(path)?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn record(row: &AnyRow) -> Result<ModelRecord, StoreError> {
    let json = |c: &str| -> Result<serde_json::Value, StoreError> {
        let text: String = row.try_get(c)?;
        serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{c}: {e}")))
    };
    let status: String = row.try_get("status")?;
    let path: String = row.try_get("artifact_path")?;
    Ok(ModelRecord {
        id: row.try_get("id")?,
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        registered_at: row.try_get("registered_at")?,
        status: ModelStatus::parse(&status)?,
        params: json("params")?,
        metrics: json("metrics")?,
        artifact_path: PathBuf::from(path),
        sha256: row.try_get("sha256")?,
        activated_by: row.try_get("activated_by")?,
        activated_at: row.try_get("activated_at")?,
    })
}

const COLUMNS: &str =
    "id, version, created_at, registered_at, status, params, metrics, artifact_path, \
                       sha256, activated_by, activated_at";

impl Store {
    /// Registers a written artifact as a candidate; registering the same version again returns the
    /// existing record.
    pub async fn register_model(
        &self,
        meta: &ArtifactMeta,
        model_file: &Path,
    ) -> Result<ModelRecord, StoreError> {
        let path = std::fs::canonicalize(model_file).unwrap_or_else(|_| model_file.to_path_buf());
        let sha = file_sha256(&path).map_err(|e| StoreError::BadArtifact {
            id: 0,
            reason: format!("{}: {e}", path.display()),
        })?;
        let params = serde_json::to_string(&meta.params).unwrap_or_else(|_| "{}".into());
        let metrics = serde_json::to_string(&meta.metrics).unwrap_or_else(|_| "null".into());
        sqlx::query(
            "INSERT INTO models (version, created_at, registered_at, status, params, metrics, artifact_path, sha256) \
             VALUES ($1, $2, $3, 'candidate', $4, $5, $6, $7) ON CONFLICT (version) DO NOTHING",
        )
        .bind(&meta.version)
        .bind(&meta.created_at)
        .bind(now())
        .bind(params)
        .bind(metrics)
        .bind(path.display().to_string())
        .bind(sha)
        .execute(&self.pool)
        .await?;
        let sql = format!("SELECT {COLUMNS} FROM models WHERE version = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&meta.version)
            .fetch_one(&self.pool)
            .await?;
        record(&row)
    }

    /// Every model, newest first.
    pub async fn list_models(&self) -> Result<Vec<ModelRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM models ORDER BY id DESC");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(record).collect()
    }

    /// One model.
    pub async fn model(&self, id: i64) -> Result<ModelRecord, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM models WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NoSuchModel(id))?;
        record(&row)
    }

    /// The active model, if any.
    pub async fn active_model(&self) -> Result<Option<ModelRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM models WHERE status = 'active'");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(record).transpose()
    }

    /// Makes `id` the active model (the previous one retires), after checking that its file still
    /// matches what was registered. Replicas pick it up at their next poll.
    pub async fn activate(&self, id: i64, by: &str) -> Result<ModelRecord, StoreError> {
        let target = self.model(id).await?;
        verify_artifact(&target)?;
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE models SET status = 'retired' WHERE status = 'active' AND id <> $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let seq: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(activation_seq), 0) + 1 FROM models")
                .fetch_one(&mut *tx)
                .await?;
        sqlx::query(
            "UPDATE models SET status = 'active', activated_by = $1, activated_at = $2, activation_seq = $3 \
             WHERE id = $4",
        )
        .bind(by)
        .bind(now())
        .bind(seq)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.model(id).await
    }

    /// Re-activates the model that was active before the current one.
    pub async fn rollback(&self, by: &str) -> Result<ModelRecord, StoreError> {
        let current: Option<(i64, i64)> =
            sqlx::query_as("SELECT id, activation_seq FROM models WHERE status = 'active'")
                .fetch_optional(&self.pool)
                .await?;
        let Some((current_id, current_seq)) = current else {
            return Err(StoreError::NothingToRollBack("no model is active".into()));
        };
        let previous: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM models WHERE id <> $1 AND activation_seq IS NOT NULL AND activation_seq < $2 \
             ORDER BY activation_seq DESC LIMIT 1",
        )
        .bind(current_id)
        .bind(current_seq)
        .fetch_optional(&self.pool)
        .await?;
        let previous = previous.ok_or_else(|| {
            StoreError::NothingToRollBack(format!("model {current_id} is the first ever activated"))
        })?;
        self.activate(previous, by).await
    }
}

/// Refuses a model whose file is missing or differs from the registered checksum.
pub fn verify_artifact(model: &ModelRecord) -> Result<(), StoreError> {
    let sha = file_sha256(&model.artifact_path).map_err(|e| StoreError::BadArtifact {
        id: model.id,
        reason: format!("{}: {e}", model.artifact_path.display()),
    })?;
    if sha != model.sha256 {
        return Err(StoreError::BadArtifact {
            id: model.id,
            reason: format!(
                "{} changed since it was registered (SHA-256 {} ≠ {})",
                model.artifact_path.display(),
                &sha[..12],
                &model.sha256[..12.min(model.sha256.len())]
            ),
        });
    }
    Ok(())
}
