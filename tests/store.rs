//! The database against both backends for real: SQLite in a temporary folder and the PostgreSQL on
//! 127.0.0.1:5432 (a fresh database per test, dropped after).

mod common;

use common::db::TestDb;
use fmrecall::data::{
    synthetic::SyntheticConfig, DataSource, Dataset, FeatureSet, Format, SplitSpec,
};
use fmrecall::fm::ModelArtifact;
use fmrecall::store::{EventRecord, ModelStatus, Store, StoreError};

fn small_dataset() -> Dataset {
    Dataset::load(&DataSource {
        format: Format::Synthetic,
        dir: ".".into(),
        split: SplitSpec::Random(0.2),
        seed: 3,
        columns: Default::default(),
        synthetic: SyntheticConfig {
            users: 60,
            items: 40,
            ..Default::default()
        },
    })
    .unwrap()
}

#[tokio::test]
async fn migrations_apply_from_empty_once() {
    for db in TestDb::both().await {
        let store = Store::connect(&db.url).await.unwrap();
        assert_eq!(store.migrate().await.unwrap(), 6, "{}", db.url);
        assert_eq!(
            store.migrate().await.unwrap(),
            0,
            "{}: second run applies nothing",
            db.url
        );
        assert!(store.active_model().await.unwrap().is_none());
        db.drop_pg().await;
    }
}

#[tokio::test]
async fn importing_twice_changes_nothing_and_reads_back_whole() {
    for db in TestDb::both().await {
        let store = Store::open(&db.url).await.unwrap();
        let ds = small_dataset();
        let first = store.import_dataset(&ds).await.unwrap();
        assert_eq!(first.users, 60);
        assert_eq!(first.items, 40);
        assert_eq!(first.events as usize, ds.interactions.len());
        let second = store.import_dataset(&ds).await.unwrap();
        assert_eq!(
            (second.users, second.items, second.events),
            (0, 0, 0),
            "{}",
            db.url
        );

        let back = store.load_dataset().await.unwrap();
        assert_eq!(back.users.len(), 60);
        assert_eq!(back.items.len(), 40);
        assert_eq!(back.interactions.len(), ds.interactions.len());
        let u = back.users.iter().find(|u| u.id == "7").unwrap();
        let orig = ds.users.iter().find(|u| u.id == "7").unwrap();
        assert_eq!(
            u.features, orig.features,
            "id feature first, side features after"
        );
        db.drop_pg().await;
    }
}

#[tokio::test]
async fn a_failed_import_leaves_nothing_behind() {
    for db in TestDb::both().await {
        let store = Store::open(&db.url).await.unwrap();
        // Break the last step of the import: users and items go in first, then events fail.
        sqlx::query("DROP TABLE events")
            .execute(store.pool())
            .await
            .unwrap();
        assert!(store.import_dataset(&small_dataset()).await.is_err());
        let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(store.pool())
            .await
            .unwrap();
        let items: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM items")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!((users, items), (0, 0), "{}", db.url);
        db.drop_pg().await;
    }
}

fn trained(dir: &std::path::Path, seed: u64) -> ModelArtifact {
    let mut job = common::synthetic_job(dir, 1, FeatureSet::Ids);
    job.params.seed = seed;
    fmrecall::pipeline::run_train(&job, &mut |_| {}).unwrap();
    ModelArtifact::load(dir).unwrap()
}

#[tokio::test]
async fn the_registry_keeps_one_active_model_and_rolls_back_to_the_previous() {
    let (da, db_, dc) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (a, b, c) = (
        trained(da.path(), 1),
        trained(db_.path(), 2),
        trained(dc.path(), 3),
    );
    for db in TestDb::both().await {
        let store = Store::open(&db.url).await.unwrap();
        let ra = store
            .register_model(&a.meta, &da.path().join("model.fmr"))
            .await
            .unwrap();
        let rb = store
            .register_model(&b.meta, &db_.path().join("model.fmr"))
            .await
            .unwrap();
        let rc = store
            .register_model(&c.meta, &dc.path().join("model.fmr"))
            .await
            .unwrap();
        assert_eq!(ra.status, ModelStatus::Candidate);
        assert_eq!(
            store
                .register_model(&a.meta, &da.path().join("model.fmr"))
                .await
                .unwrap()
                .id,
            ra.id
        );
        assert!(matches!(
            store.rollback("t").await,
            Err(StoreError::NothingToRollBack(_))
        ));

        store.activate(ra.id, "alice").await.unwrap();
        store.activate(rb.id, "bob").await.unwrap();
        store.activate(rc.id, "carol").await.unwrap();
        let statuses: Vec<_> = store
            .list_models()
            .await
            .unwrap()
            .iter()
            .map(|m| (m.id, m.status))
            .collect();
        assert_eq!(
            statuses
                .iter()
                .filter(|(_, s)| *s == ModelStatus::Active)
                .count(),
            1
        );
        assert_eq!(store.active_model().await.unwrap().unwrap().id, rc.id);

        assert_eq!(store.rollback("dave").await.unwrap().id, rb.id);
        let active = store.active_model().await.unwrap().unwrap();
        assert_eq!(
            (active.id, active.activated_by.as_deref()),
            (rb.id, Some("dave"))
        );
        assert_eq!(
            store.model(rc.id).await.unwrap().status,
            ModelStatus::Retired
        );
        assert!(matches!(
            store.activate(999, "x").await,
            Err(StoreError::NoSuchModel(999))
        ));
        db.drop_pg().await;
    }
}

#[tokio::test]
async fn a_model_whose_file_changed_or_vanished_cannot_be_activated() {
    let dir = tempfile::tempdir().unwrap();
    let a = trained(dir.path(), 1);
    for db in TestDb::both().await {
        let store = Store::open(&db.url).await.unwrap();
        let file = dir.path().join("model.fmr");
        let original = std::fs::read(&file).unwrap();
        let r = store.register_model(&a.meta, &file).await.unwrap();
        let mut altered = original.clone();
        altered[100] ^= 1;
        std::fs::write(&file, &altered).unwrap();
        let e = store.activate(r.id, "x").await.unwrap_err().to_string();
        assert!(e.contains("changed since it was registered"), "{e}");
        std::fs::remove_file(&file).unwrap();
        assert!(matches!(
            store.activate(r.id, "x").await,
            Err(StoreError::BadArtifact { .. })
        ));
        std::fs::write(&file, &original).unwrap();
        assert!(store.active_model().await.unwrap().is_none());
        db.drop_pg().await;
    }
}

#[tokio::test]
async fn items_deactivate_users_upsert_and_events_record_once() {
    for db in TestDb::both().await {
        let store = Store::open(&db.url).await.unwrap();
        store.import_dataset(&small_dataset()).await.unwrap();
        assert!(store.set_item_active("3", false).await.unwrap());
        assert!(!store.set_item_active("no-such-item", false).await.unwrap());
        assert_eq!(store.inactive_items().await.unwrap(), ["3"]);
        // A re-import keeps the operator's deactivation.
        store.import_dataset(&small_dataset()).await.unwrap();
        assert_eq!(store.inactive_items().await.unwrap(), ["3"]);
        store.set_item_active("3", true).await.unwrap();
        assert!(store.inactive_items().await.unwrap().is_empty());

        store
            .upsert_user("newbie", &["region:r1".into()])
            .await
            .unwrap();
        store
            .upsert_user("newbie", &["region:r2".into()])
            .await
            .unwrap();
        assert_eq!(
            store.user_features("newbie").await.unwrap(),
            Some(vec!["region:r2".to_string()])
        );
        assert_eq!(store.user_features("ghost").await.unwrap(), None);

        let e = EventRecord {
            user_id: "newbie".into(),
            item_id: "3".into(),
            kind: "click".into(),
            weight: None,
            timestamp: 5,
        };
        assert_eq!(
            store.record_events(&[e.clone(), e.clone()]).await.unwrap(),
            1
        );
        assert_eq!(store.record_events(&[e]).await.unwrap(), 0);
        db.drop_pg().await;
    }
}
