//! The catalog: items (with an active flag), users and events, imported from datasets, written by
//! the service, and read back for training.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{now, strings, Store, StoreError};
use crate::data::{CatalogItem, Dataset, Entity, Interaction, Part};

/// Rows per multi-row INSERT: few round trips, well under every parameter limit.
const BATCH: usize = 200;

/// What an import added (rows already present with the same content are not counted).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ImportReport {
    /// Users inserted or changed.
    pub users: u64,
    /// Items inserted or changed.
    pub items: u64,
    /// Events inserted.
    pub events: u64,
}

/// One interaction to record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// User id.
    pub user_id: String,
    /// Item id.
    pub item_id: String,
    /// Kind of interaction (`rating`, `click`, …).
    pub kind: String,
    /// Rating or weight.
    pub weight: Option<f64>,
    /// Seconds since the epoch.
    pub timestamp: i64,
}

/// Who interacted with what: an event as serving uses it (exclusion and history).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPair {
    /// User id.
    pub user_id: String,
    /// Item id.
    pub item_id: String,
}

/// `($1, $2, …), (…)` for `rows` rows of `width` parameters.
fn placeholders(rows: usize, width: usize) -> String {
    placeholders_with(rows, width, "")
}

fn side_features(e: &Entity) -> String {
    // The id feature is derived from the id; only side features are stored.
    serde_json::to_string(&e.features.iter().skip(1).collect::<Vec<_>>())
        .unwrap_or_else(|_| "[]".into())
}

impl Store {
    /// Imports a whole dataset in one transaction: importing the same data twice changes nothing,
    /// and a failure leaves nothing of this import behind. Item active flags are left as they are.
    pub async fn import_dataset(&self, dataset: &Dataset) -> Result<ImportReport, StoreError> {
        let mut tx = self.pool.begin().await?;
        let stamp = now();
        let mut report = ImportReport::default();
        for chunk in dataset.users.chunks(BATCH) {
            let sql = format!(
                "INSERT INTO users (id, features, updated_at) VALUES {} ON CONFLICT (id) DO UPDATE \
                 SET features = excluded.features, updated_at = excluded.updated_at \
                 WHERE users.features <> excluded.features",
                placeholders(chunk.len(), 3)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for u in chunk {
                q = q
                    .bind(u.id.clone())
                    .bind(side_features(u))
                    .bind(stamp.clone());
            }
            report.users += q.execute(&mut *tx).await?.rows_affected();
        }
        for chunk in dataset.items.chunks(BATCH) {
            let sql = format!(
                "INSERT INTO items (id, title, features, updated_at) VALUES {} ON CONFLICT (id) DO UPDATE \
                 SET title = excluded.title, features = excluded.features, updated_at = excluded.updated_at \
                 WHERE items.features <> excluded.features OR COALESCE(items.title, '') <> COALESCE(excluded.title, '')",
                placeholders(chunk.len(), 4)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for i in chunk {
                q = q
                    .bind(i.id.clone())
                    .bind(i.title.clone())
                    .bind(side_features(i))
                    .bind(stamp.clone());
            }
            report.items += q.execute(&mut *tx).await?.rows_affected();
        }
        let events: Vec<EventRecord> = dataset
            .interactions
            .iter()
            .map(|it| EventRecord {
                user_id: dataset.users[it.user as usize].id.clone(),
                item_id: dataset.items[it.item as usize].id.clone(),
                kind: "rating".into(),
                weight: it.rating.map(f64::from),
                timestamp: it.timestamp,
            })
            .collect();
        report.events = insert_events(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(report)
    }

    /// Adds items that are not in the catalog yet (existing rows are left alone).
    pub async fn import_items(&self, items: &[Entity]) -> Result<u64, StoreError> {
        let mut added = 0;
        for chunk in items.chunks(BATCH) {
            let sql = format!(
                "INSERT INTO items (id, title, features, updated_at) VALUES {} ON CONFLICT (id) DO NOTHING",
                placeholders(chunk.len(), 4)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for i in chunk {
                q = q
                    .bind(i.id.clone())
                    .bind(i.title.clone())
                    .bind(side_features(i))
                    .bind(now());
            }
            added += q.execute(&self.pool).await?.rows_affected();
        }
        Ok(added)
    }

    /// Records events (duplicates of stored ones are skipped); returns how many were new.
    pub async fn record_events(&self, events: &[EventRecord]) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let n = insert_events(&mut tx, events).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// The catalog as a dataset: every user, item and event, all in the train part (a split is
    /// applied afterwards). Users seen only in events get their id feature alone.
    pub async fn load_dataset(&self) -> Result<Dataset, StoreError> {
        let mut ds = Dataset::default();
        let mut user_index = std::collections::HashMap::new();
        let mut item_index = std::collections::HashMap::new();
        for row in sqlx::query("SELECT id, features FROM users ORDER BY id")
            .fetch_all(&self.pool)
            .await?
        {
            let id: String = row.try_get("id")?;
            let mut features = vec![format!("user:{id}")];
            features.extend(strings(&row, "features")?);
            user_index.insert(id.clone(), ds.users.len() as u32);
            ds.users.push(Entity {
                id,
                title: None,
                features,
            });
        }
        // Deleted items are left out, with their events.
        let deleted: std::collections::HashSet<String> =
            sqlx::query_scalar::<_, String>("SELECT id FROM items WHERE deleted <> 0")
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .collect();
        for row in
            sqlx::query("SELECT id, title, features FROM items WHERE deleted = 0 ORDER BY id")
                .fetch_all(&self.pool)
                .await?
        {
            let id: String = row.try_get("id")?;
            let mut features = vec![format!("item:{id}")];
            features.extend(strings(&row, "features")?);
            item_index.insert(id.clone(), ds.items.len() as u32);
            ds.items.push(Entity {
                id,
                title: row.try_get("title")?,
                features,
            });
        }
        let rows = sqlx::query("SELECT user_id, item_id, weight, ts FROM events ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        for row in rows {
            let user_id: String = row.try_get("user_id")?;
            let item_id: String = row.try_get("item_id")?;
            if deleted.contains(&item_id) {
                continue;
            }
            let user = *user_index.entry(user_id.clone()).or_insert_with(|| {
                ds.users.push(Entity {
                    id: user_id.clone(),
                    title: None,
                    features: vec![format!("user:{user_id}")],
                });
                ds.users.len() as u32 - 1
            });
            let item = *item_index.entry(item_id.clone()).or_insert_with(|| {
                ds.items.push(Entity {
                    id: item_id.clone(),
                    title: None,
                    features: vec![format!("item:{item_id}")],
                });
                ds.items.len() as u32 - 1
            });
            let weight: Option<f64> = row.try_get("weight")?;
            ds.interactions.push(Interaction {
                user,
                item,
                rating: weight.map(|w| w as f32),
                timestamp: row.try_get("ts")?,
                part: Part::Train,
            });
        }
        Ok(ds)
    }

    /// Sets an item's active flag; false when the item is not in the catalog (or deleted).
    pub async fn set_item_active(&self, id: &str, active: bool) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE items SET active = $1, updated_at = $2 WHERE id = $3 AND deleted = 0",
        )
        .bind(i64::from(active))
        .bind(now())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Ids of deactivated items.
    pub async fn inactive_items(&self) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM items WHERE active = 0 AND deleted = 0 ORDER BY id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Creates or replaces items (features, title and, when given, the active flag; a deleted
    /// item comes back) and logs the change, in one transaction.
    pub async fn upsert_items(&self, items: &[ItemRecord]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let stamp = now();
        for chunk in items.chunks(BATCH) {
            let sql = format!(
                "INSERT INTO items (id, title, features, active, updated_at, deleted) VALUES {} \
                 ON CONFLICT (id) DO UPDATE SET title = excluded.title, features = excluded.features, \
                 active = CASE WHEN excluded.active < 0 THEN items.active ELSE excluded.active END, \
                 updated_at = excluded.updated_at, deleted = 0",
                placeholders_with(chunk.len(), 5, ", 0")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for i in chunk {
                // -1: keep the stored flag (a new row is active).
                let active = i.active.map_or(-1, i64::from);
                q = q
                    .bind(i.id.clone())
                    .bind(i.title.clone())
                    .bind(serde_json::to_string(&i.features).unwrap_or_else(|_| "[]".into()))
                    .bind(active)
                    .bind(stamp.clone());
            }
            q.execute(&mut *tx).await?;
            // A new row given no flag is active.
            let fix = format!(
                "UPDATE items SET active = 1 WHERE active < 0 AND id IN ({})",
                (1..=chunk.len())
                    .map(|i| format!("${i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(fix));
            for i in chunk {
                q = q.bind(i.id.clone());
            }
            q.execute(&mut *tx).await?;
            log_changes(&mut tx, chunk.iter().map(|i| i.id.as_str())).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Marks items deleted and logs the change; returns, per id, whether it was in the catalog.
    pub async fn delete_items(&self, ids: &[String]) -> Result<Vec<bool>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut found = Vec::with_capacity(ids.len());
        let stamp = now();
        for id in ids {
            let done = sqlx::query(
                "UPDATE items SET deleted = 1, updated_at = $1 WHERE id = $2 AND deleted = 0",
            )
            .bind(stamp.clone())
            .bind(id.clone())
            .execute(&mut *tx)
            .await?;
            found.push(done.rows_affected() > 0);
        }
        log_changes(&mut tx, ids.iter().map(String::as_str)).await?;
        tx.commit().await?;
        Ok(found)
    }

    /// Every item row (deleted ones too), for replaying the catalog onto a freshly loaded model.
    pub async fn catalog_items(&self) -> Result<Vec<CatalogItem>, StoreError> {
        let rows = sqlx::query("SELECT id, title, features, deleted FROM items ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(catalog_item).collect()
    }

    /// The last change logged (0 when none).
    pub async fn last_item_change(&self) -> Result<i64, StoreError> {
        let last: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM item_changes")
            .fetch_one(&self.pool)
            .await?;
        Ok(last.unwrap_or(0))
    }

    /// The items changed after change `since` (their rows as they are now), and the last change
    /// seen. A PostgreSQL sequence may commit out of order, so callers re-read a window behind
    /// their last change (see `LiveModel`); replaying a row twice changes nothing.
    pub async fn item_changes_since(
        &self,
        since: i64,
    ) -> Result<(Vec<CatalogItem>, i64), StoreError> {
        let last = self.last_item_change().await?;
        let rows = sqlx::query(
            "SELECT id, title, features, deleted FROM items WHERE id IN \
             (SELECT item_id FROM item_changes WHERE seq > $1 AND seq <= $2) ORDER BY id",
        )
        .bind(since)
        .bind(last)
        .fetch_all(&self.pool)
        .await?;
        Ok((
            rows.iter().map(catalog_item).collect::<Result<_, _>>()?,
            last,
        ))
    }

    /// The last event stored (its row id; 0 when none).
    pub async fn last_event(&self) -> Result<i64, StoreError> {
        let last: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM events")
            .fetch_one(&self.pool)
            .await?;
        Ok(last.unwrap_or(0))
    }

    /// The (user, item) pairs of the events stored after row `since`, in row order, and the last
    /// row id read. As with item changes, a PostgreSQL sequence may commit out of order: callers
    /// re-read a window behind their last row (see `LiveModel`); applying a pair twice changes
    /// nothing.
    pub async fn events_since(&self, since: i64) -> Result<(Vec<EventPair>, i64), StoreError> {
        let last = self.last_event().await?;
        let rows = sqlx::query(
            "SELECT user_id, item_id FROM events WHERE id > $1 AND id <= $2 ORDER BY id",
        )
        .bind(since)
        .bind(last)
        .fetch_all(&self.pool)
        .await?;
        let pairs = rows
            .iter()
            .map(|r| {
                Ok(EventPair {
                    user_id: r.try_get("user_id")?,
                    item_id: r.try_get("item_id")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok((pairs, last))
    }

    /// Creates or replaces a user's side features.
    pub async fn upsert_user(&self, id: &str, features: &[String]) -> Result<(), StoreError> {
        let features = serde_json::to_string(features).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "INSERT INTO users (id, features, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET features = excluded.features, updated_at = excluded.updated_at",
        )
        .bind(id)
        .bind(features)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A user's side features, if the user is in the catalog.
    pub async fn user_features(&self, id: &str) -> Result<Option<Vec<String>>, StoreError> {
        let row = sqlx::query("SELECT features FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| strings(&r, "features")).transpose()
    }
}

/// An item as `PUT /v1/items` stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemRecord {
    /// Id.
    pub id: String,
    /// Title.
    pub title: Option<String>,
    /// Side features.
    pub features: Vec<String>,
    /// The active flag to set; `None` keeps the stored one (a new item is active).
    pub active: Option<bool>,
}

fn catalog_item(row: &sqlx::any::AnyRow) -> Result<CatalogItem, StoreError> {
    let deleted: i64 = row.try_get("deleted")?;
    Ok(CatalogItem {
        id: row.try_get("id")?,
        title: row.try_get("title")?,
        features: strings(row, "features")?,
        deleted: deleted != 0,
    })
}

/// `($1, …, $width<extra>), …`: [`placeholders`] with a literal tail in every row.
fn placeholders_with(rows: usize, width: usize, extra: &str) -> String {
    (0..rows)
        .map(|r| {
            let cols: Vec<String> = (1..=width).map(|c| format!("${}", r * width + c)).collect();
            format!("({}{extra})", cols.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn log_changes<'a>(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    ids: impl Iterator<Item = &'a str>,
) -> Result<(), StoreError> {
    let ids: Vec<&str> = ids.collect();
    for chunk in ids.chunks(BATCH) {
        let sql = format!(
            "INSERT INTO item_changes (item_id) VALUES {}",
            placeholders(chunk.len(), 1)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in chunk {
            q = q.bind(id.to_string());
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

async fn insert_events(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    events: &[EventRecord],
) -> Result<u64, StoreError> {
    let mut added = 0;
    for chunk in events.chunks(BATCH) {
        let sql = format!(
            "INSERT INTO events (user_id, item_id, kind, weight, ts) VALUES {} \
             ON CONFLICT (user_id, item_id, kind, ts) DO NOTHING",
            placeholders(chunk.len(), 5)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for e in chunk {
            q = q
                .bind(e.user_id.clone())
                .bind(e.item_id.clone())
                .bind(e.kind.clone())
                .bind(e.weight)
                .bind(e.timestamp);
        }
        added += q.execute(&mut **tx).await?.rows_affected();
    }
    Ok(added)
}
