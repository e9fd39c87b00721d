//! Cold start: users and items held out whole, never seen in training, ranked and recalled from
//! their side features alone, and measured against popularity on the same train data.

mod common;

use std::path::Path;

use common::http::{test_settings, TestApp};
use common::synthetic_job;
use fmrecall::data::{Dataset, FeatureSet, SplitSpec, ValidationSplit};
use fmrecall::fm::eval::ColdKind;
use fmrecall::fm::ModelArtifact;
use fmrecall::pipeline::{run_eval, run_train, TrainJob, TrainSummary};

/// A job on the generated data (its side features reveal each user's and item's planted topic)
/// with `split` held out whole.
fn cold_job(dir: &Path, split: SplitSpec, features: FeatureSet, epochs: usize) -> TrainJob {
    let mut job = synthetic_job(dir, epochs, features);
    job.source.split = split;
    job.params.side_learning_rate = Some(0.01);
    job
}

fn train(job: &TrainJob) -> TrainSummary {
    run_train(job, &mut |_| {}).unwrap()
}

#[test]
fn cold_users_ranked_from_their_features_beat_popularity_by_a_wide_margin() {
    let dir = tempfile::tempdir().unwrap();
    let job = cold_job(dir.path(), SplitSpec::Users(0.2), FeatureSet::Hybrid, 15);
    let summary = train(&job);
    let cold = summary
        .cold_start
        .expect("a users split reports cold-start figures");
    assert_eq!(cold.kind, ColdKind::Users);
    assert_eq!(cold.held_out, 80, "20% of 400 users");
    assert!(
        cold.model.users > 50,
        "{} cold users evaluated",
        cold.model.users
    );
    assert_eq!(cold.model.users, cold.popularity.users);
    assert!(
        cold.model.precision > 1.5 * cold.popularity.precision
            && cold.model.precision > cold.popularity.precision + 0.1,
        "cold P@10 {} vs popularity {}",
        cold.model.precision,
        cold.popularity.precision
    );
    // Every evaluated user of a users split is a held-out user: the overall figures are theirs.
    assert_eq!(summary.metrics, Some(cold.model));
}

#[test]
fn a_model_trained_without_side_features_does_not_beat_popularity_for_cold_users() {
    let dir = tempfile::tempdir().unwrap();
    let job = cold_job(dir.path(), SplitSpec::Users(0.2), FeatureSet::Ids, 15);
    let cold = train(&job).cold_start.unwrap();
    // With ids only, a new user has no feature the model knows: every item gets its bias alone.
    assert!(
        cold.model.precision < cold.popularity.precision + 0.02,
        "ids-only cold P@10 {} vs popularity {}",
        cold.model.precision,
        cold.popularity.precision
    );
}

#[test]
fn held_out_users_never_reach_training_or_the_vocabulary() {
    let dir = tempfile::tempdir().unwrap();
    let job = cold_job(dir.path(), SplitSpec::Users(0.2), FeatureSet::Hybrid, 1);
    let dataset = Dataset::load(&job.source).unwrap();
    assert_eq!(dataset.held_out.users.len(), 80);
    train(&job);
    let artifact = ModelArtifact::load(dir.path()).unwrap();
    let vocab = &artifact.meta.vocabulary;
    let known: std::collections::HashSet<&str> =
        artifact.meta.users.iter().map(|u| u.id.as_str()).collect();
    for (u, user) in dataset.users.iter().enumerate() {
        let id_feature = format!("user:{}", user.id);
        if dataset.held_out.user(u as u32) {
            assert_eq!(vocab.get(&id_feature), None, "{id_feature} leaked");
            assert!(!known.contains(user.id.as_str()), "user {} leaked", user.id);
        } else {
            assert!(vocab.get(&id_feature).is_some(), "{id_feature} missing");
        }
    }
    // Their side features are shared with training users, so they are known.
    assert!(vocab.get("region:r0").is_some());
}

#[test]
fn held_out_items_never_reach_the_vocabulary_nor_the_served_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let job = cold_job(dir.path(), SplitSpec::Items(0.2), FeatureSet::Hybrid, 15);
    let dataset = Dataset::load(&job.source).unwrap();
    assert_eq!(dataset.held_out.items.len(), 60, "20% of 300 items");
    let summary = train(&job);
    let artifact = ModelArtifact::load(dir.path()).unwrap();
    let vocab = &artifact.meta.vocabulary;
    for (i, item) in dataset.items.iter().enumerate() {
        let id_feature = format!("item:{}", item.id);
        let held_out = dataset.held_out.item(i as u32);
        assert_eq!(vocab.get(&id_feature).is_none(), held_out, "{id_feature}");
    }
    // The model does not serve them: they arrive through `PUT /v1/items/{id}`, as in production
    // (tests/live_catalog.rs serves them so and finds the offline figures).
    assert_eq!(artifact.meta.items.len(), 240);
    let served: std::collections::HashSet<&str> =
        artifact.meta.items.iter().map(|e| e.id.as_str()).collect();
    for &i in &dataset.held_out.items {
        assert!(!served.contains(dataset.items[i as usize].id.as_str()));
    }

    let cold = summary
        .cold_start
        .expect("an items split reports cold-start figures");
    assert_eq!((cold.kind, cold.held_out), (ColdKind::Items, 60));
    // Popularity has no train positive for a new item: none reaches anyone's top 10.
    assert_eq!(cold.popularity.recall, 0.0);
    // Ranked among themselves, features order new items far better than popularity's ties.
    let among = cold
        .among_held_out
        .expect("held-out items ranked among themselves");
    assert!(
        among.model.precision > 1.5 * among.popularity.precision
            && among.model.auc > among.popularity.auc + 0.1,
        "new items: P@10 {} AUC {} vs popularity {} {}",
        among.model.precision,
        among.model.auc,
        among.popularity.precision,
        among.popularity.auc
    );
}

#[test]
fn item_id_dropout_lets_new_items_reach_users_top_ten() {
    let dir = tempfile::tempdir().unwrap();
    let without = train(&cold_job(
        dir.path(),
        SplitSpec::Items(0.2),
        FeatureSet::Hybrid,
        15,
    ))
    .cold_start
    .unwrap();
    let mut job = cold_job(dir.path(), SplitSpec::Items(0.2), FeatureSet::Hybrid, 15);
    job.params.item_id_dropout = 0.5;
    let with = train(&job).cold_start.unwrap();
    // Without dropout an item's id carries its weight, and a new item (no id) never competes with
    // the known ones; trained to rank without ids half of the time, its genre does.
    assert!(
        with.model.recall > without.model.recall + 0.05,
        "cold-item recall@10 {} with dropout vs {} without",
        with.model.recall,
        without.model.recall
    );
}

#[test]
fn dropout_probabilities_outside_zero_to_one_are_refused_with_the_range() {
    let mut params = common::small_params(fmrecall::fm::Loss::Warp);
    params.user_id_dropout = 1.5;
    let e = params.check().unwrap_err().to_string();
    assert_eq!(e, "user_id_dropout should be in [0, 1], but is 1.5");
    params.user_id_dropout = 0.0;
    params.item_id_dropout = -0.1;
    assert!(params.check().is_err());
    params.item_id_dropout = 0.0;
    params.side_learning_rate = Some(0.0);
    let e = params.check().unwrap_err().to_string();
    assert!(e.contains("side_learning_rate"), "{e}");
}

#[test]
fn validation_users_are_carved_from_the_training_users_never_from_the_held_out_ones() {
    let dir = tempfile::tempdir().unwrap();
    let job = cold_job(dir.path(), SplitSpec::Users(0.2), FeatureSet::Hybrid, 1);
    let dataset = Dataset::load(&job.source).unwrap();
    let carved = ValidationSplit::carve(&dataset, 0.25, 4.0, 3);
    assert_eq!(
        carved.held_out.users.len(),
        80,
        "25% of the 320 training users"
    );
    for &u in &carved.held_out.users {
        assert!(
            !dataset.held_out.user(u),
            "validation user {u} is a test user"
        );
    }
    // Nothing of the test users is left, and validation users have no train interaction.
    for it in &carved.interactions {
        assert!(!dataset.held_out.user(it.user));
        if carved.held_out.user(it.user) {
            assert_eq!(it.part, fmrecall::data::Part::Test);
        }
    }
}

#[test]
fn tuning_under_a_users_split_measures_validation_users_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut job = cold_job(dir.path(), SplitSpec::Users(0.2), FeatureSet::Hybrid, 2);
    job.tune = true;
    job.validation_fraction = 0.25;
    let cold = train(&job).cold_start.unwrap();
    assert_eq!(
        cold.held_out, 80,
        "25% of the 320 training users, not the 80 test users"
    );
    let artifact = ModelArtifact::load(dir.path()).unwrap();
    assert_eq!(
        artifact.meta.users.len(),
        240,
        "trained on the other training users"
    );
}

#[test]
fn bad_split_fractions_are_refused_naming_the_flag() {
    for bad in ["users:1.5", "users:0", "items:-0.2", "users:x"] {
        let e = bad.parse::<SplitSpec>().unwrap_err().to_string();
        assert!(e.contains("--split") && e.contains(bad), "{e}");
    }
    let e = "users:1.5".parse::<SplitSpec>().unwrap_err().to_string();
    assert!(e.contains("(0, 1)"), "{e}");

    let run = std::process::Command::new(env!("CARGO_BIN_EXE_fmrecall"))
        .env("FMRECALL_DATABASE__URL", "")
        .args(["train", "--format", "synthetic", "--split", "users:1.5"])
        .output()
        .unwrap();
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("--split \"users:1.5\""), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_route_shows_cold_start_figures_beside_the_warm_ones() {
    let dir = tempfile::tempdir().unwrap();
    let job = cold_job(dir.path(), SplitSpec::Users(0.2), FeatureSet::Hybrid, 3);
    let summary = train(&job);
    let app = TestApp::spawn(test_settings(dir.path(), "token")).await;
    let m = app.get("/v1/model").await.json();
    let cold = summary.cold_start.unwrap();
    assert_eq!(m["cold_start"]["kind"], "users");
    assert_eq!(m["cold_start"]["held_out"], 80);
    assert_eq!(
        m["cold_start"]["popularity"]["precision@10"].as_f64(),
        Some(cold.popularity.precision)
    );
    assert_eq!(
        m["cold_start"]["model"]["precision@10"].as_f64(),
        m["metrics"]["precision@10"].as_f64()
    );
    // A new user is served from features with the same model.
    let r = app
        .post(
            "/v1/recall",
            &serde_json::json!({"features": ["region:r1", "occupation:o1"], "k": 5}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["items"].as_array().map(Vec::len), Some(5));
}

#[test]
fn model_files_written_before_cold_start_figures_existed_still_load() {
    let dir = tempfile::tempdir().unwrap();
    let job = cold_job(dir.path(), SplitSpec::Users(0.2), FeatureSet::Hybrid, 1);
    train(&job);
    let path = dir.path().join("model.fmr");
    let bytes = std::fs::read(&path).unwrap();
    // Rewrite the header as an older build wrote it: no cold-start figures, no dropout or side
    // learning rate among the hyper-parameters, no training threshold of its own.
    let header_len = u64::from_le_bytes(bytes[12..20].try_into().unwrap()) as usize;
    let mut header: serde_json::Value =
        serde_json::from_slice(&bytes[20..20 + header_len]).unwrap();
    assert!(header["cold_start"].is_object());
    header.as_object_mut().unwrap().remove("cold_start");
    let params = header["params"].as_object_mut().unwrap();
    for key in ["user_id_dropout", "item_id_dropout", "side_learning_rate"] {
        assert!(params.remove(key).is_some(), "{key}");
    }
    let training = header["training"].as_object_mut().unwrap();
    assert!(training.remove("train_min_rating").is_some());
    let header = serde_json::to_vec(&header).unwrap();
    let mut old = bytes[..12].to_vec();
    old.extend_from_slice(&(header.len() as u64).to_le_bytes());
    old.extend_from_slice(&header);
    old.extend_from_slice(&bytes[20 + header_len..bytes.len() - 32]);
    let digest = <sha2::Sha256 as sha2::Digest>::digest(&old);
    old.extend_from_slice(&digest);

    let loaded = ModelArtifact::from_bytes(&old, &path).unwrap();
    assert_eq!(loaded.meta.cold_start, None);
    assert_eq!(loaded.meta.params.user_id_dropout, 0.0);
    assert_eq!(loaded.meta.params.side_learning_rate, None);
    assert_eq!(loaded.meta.training.train_min_rating, None);
    assert_eq!(loaded.model, ModelArtifact::load(&path).unwrap().model);
}

#[test]
fn learning_from_lower_ratings_leaves_evaluation_and_popularity_at_min_rating() {
    let (dir_default, dir_all) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let default = cold_job(
        dir_default.path(),
        SplitSpec::Users(0.2),
        FeatureSet::Hybrid,
        3,
    );
    let mut all = cold_job(dir_all.path(), SplitSpec::Users(0.2), FeatureSet::Hybrid, 3);
    all.train_min_rating = Some(1.0);
    let (by_default, from_all) = (train(&default), train(&all));

    // The model learnt from other interactions (the generator's off-topic ratings 1-3 too) ...
    assert_ne!(from_all.metrics, by_default.metrics);
    // ... but is judged on the same positives (ratings >= 4), against the same popularity.
    let (cold_default, cold_all) = (
        by_default.cold_start.unwrap(),
        from_all.cold_start.clone().unwrap(),
    );
    assert_eq!(cold_all.model.users, cold_default.model.users);
    assert_eq!(from_all.popularity, by_default.popularity);
    assert_eq!(cold_all.popularity, cold_default.popularity);

    // Beside it, popularity counted on what the model learnt from; absent when that is the same.
    assert!(by_default.popularity_training.is_none());
    let (overall, cold) = from_all
        .popularity_training
        .clone()
        .expect("popularity on the training interactions");
    let overall = overall.unwrap();
    assert_ne!(Some(&overall), from_all.popularity.as_ref());
    assert_eq!(
        cold,
        Some(overall),
        "every evaluated user of a users split is held out"
    );

    // The artifact records the threshold, and `eval` of the saved model measures the same.
    let artifact = ModelArtifact::load(dir_all.path()).unwrap();
    assert_eq!(artifact.meta.training.train_min_rating, Some(1.0));
    assert_eq!(artifact.meta.training.min_rating, 4.0);
    let again = run_eval(dir_all.path(), &all.source, 10, 1)
        .unwrap()
        .metrics;
    assert_eq!(Some(again), from_all.metrics);
}
