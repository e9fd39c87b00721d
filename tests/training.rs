//! Training on generated data with planted structure: learning is real, reproducible and honest.

mod common;

use common::synthetic_job;
use fmrecall::data::FeatureSet;
use fmrecall::fm::{Loss, ModelArtifact};
use fmrecall::pipeline::{run_train, EpochChoice};

#[test]
fn a_trained_model_beats_popularity_by_a_wide_margin_and_an_untrained_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let trained = run_train(&synthetic_job(dir.path(), 15, FeatureSet::Ids), &mut |_| {}).unwrap();
    let (model, popularity) = (trained.metrics.unwrap(), trained.popularity.unwrap());
    assert!(
        model.precision > 2.0 * popularity.precision
            && model.precision > popularity.precision + 0.1,
        "trained P@10 {} vs popularity {}",
        model.precision,
        popularity.precision
    );
    assert!(model.auc > 0.9, "AUC {}", model.auc);

    let untrained = run_train(&synthetic_job(dir.path(), 0, FeatureSet::Ids), &mut |_| {}).unwrap();
    let untrained = untrained.metrics.unwrap();
    assert!(
        untrained.precision < popularity.precision,
        "untrained P@10 {} vs popularity {}",
        untrained.precision,
        popularity.precision
    );
}

#[test]
fn bpr_and_hybrid_features_learn_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut job = synthetic_job(dir.path(), 10, FeatureSet::Hybrid);
    job.params.loss = Loss::Bpr;
    let s = run_train(&job, &mut |_| {}).unwrap();
    let (m, p) = (s.metrics.unwrap(), s.popularity.unwrap());
    assert!(
        m.precision > 1.5 * p.precision,
        "BPR hybrid {} vs popularity {}",
        m.precision,
        p.precision
    );
}

#[test]
fn one_thread_and_one_seed_give_bit_identical_models() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for dir in [&a, &b] {
        run_train(
            &synthetic_job(dir.path(), 3, FeatureSet::Hybrid),
            &mut |_| {},
        )
        .unwrap();
    }
    let ma = ModelArtifact::load(a.path()).unwrap();
    let mb = ModelArtifact::load(b.path()).unwrap();
    assert_eq!(ma.model, mb.model);
}

#[test]
fn early_stopping_chooses_epochs_on_validation_data_and_writes_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let mut job = synthetic_job(dir.path(), 0, FeatureSet::Ids);
    job.epochs = EpochChoice::EarlyStopping {
        max_epochs: 40,
        patience: 3,
        refit: true,
    };
    let mut phases = Vec::new();
    let s = run_train(&job, &mut |p| {
        if let fmrecall::pipeline::Progress::Phase { name, .. } = p {
            phases.push(name)
        }
    })
    .unwrap();
    assert_eq!(phases, ["validation", "final"]);
    assert!((1..=40).contains(&s.epochs));
    let history = std::fs::read_to_string(dir.path().join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), s.epochs + 1, "{history}");
    assert!(history.starts_with("epoch,loss,seconds,precision@10"));
    let svg = std::fs::read_to_string(dir.path().join("training.svg")).unwrap();
    assert!(svg.contains("<polyline"));
    let artifact = ModelArtifact::load(dir.path()).unwrap();
    assert!(artifact.meta.training.early_stopping);
    assert_eq!(artifact.meta.training.epochs, s.epochs);
}

#[test]
fn a_dataset_without_positives_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let mut job = synthetic_job(dir.path(), 2, FeatureSet::Ids);
    job.min_rating = 6.0;
    let e = run_train(&job, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("no positives"), "{e}");
}

#[test]
fn the_per_epoch_history_can_be_thinned_and_sampled_while_the_final_figures_use_every_test_user() {
    let dir = tempfile::tempdir().unwrap();
    let full = run_train(&synthetic_job(dir.path(), 7, FeatureSet::Ids), &mut |_| {}).unwrap();
    let all_users = full.metrics.as_ref().unwrap().users;
    assert_eq!(full.history_users, Some(all_users));

    let mut job = synthetic_job(dir.path(), 7, FeatureSet::Ids);
    job.eval_every = 3;
    job.eval_users = Some(50);
    let thin = run_train(&job, &mut |_| {}).unwrap();
    let artifact = ModelArtifact::load(dir.path()).unwrap();
    let history = &artifact.meta.training.history;
    let evaluated: Vec<usize> = history
        .iter()
        .filter(|r| r.metrics.is_some())
        .map(|r| r.epoch)
        .collect();
    assert_eq!(evaluated, [3, 6, 7], "every third epoch and the last");
    assert!(history
        .iter()
        .filter_map(|r| r.metrics.as_ref())
        .all(|m| m.users == 50));
    assert_eq!(thin.history_users, Some(50));
    assert_eq!(artifact.meta.training.history_users, Some(50));
    assert_eq!(thin.to_json()["history_users"], 50);
    // The final figures: every test user, and the same model as the unsampled run (threads = 1).
    let m = thin.metrics.unwrap();
    assert_eq!(m.users, all_users);
    assert_eq!(m.precision, full.metrics.unwrap().precision);
}
