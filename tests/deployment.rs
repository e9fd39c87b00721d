//! From evaluation to deployment: the default training path evaluates on a holdout, refits on every
//! interaction and registers that model; served recall never offers what a user already had; side
//! features are used by default and never dropped silently; epochs are chosen on validation data.

mod common;

use std::collections::HashSet;
use std::path::Path;

use common::http::{test_settings, TestApp};
use fmrecall::config::Settings;
use fmrecall::data::{Dataset, FeatureSet, Format, SplitSpec};
use fmrecall::fm::artifact::ModelFit;
use fmrecall::fm::ModelArtifact;
use fmrecall::pipeline::{run_eval, run_train, EpochChoice, TrainJob, TrainSummary};
use serde_json::json;

/// The job `fmrecall train` runs with the shipped defaults, on `format` data in `dir`, written to
/// `out`: early stopping (bounded here to keep the test short), evaluation, refit on all.
fn default_job(format: Format, dir: &Path, out: &Path) -> TrainJob {
    let mut s = Settings::load(None).unwrap();
    s.data.format = format;
    s.data.dir = dir.to_path_buf();
    s.data.synthetic.users = 300;
    s.data.synthetic.items = 200;
    s.train.out = out.to_path_buf();
    s.train.max_epochs = 25;
    s.train.patience = 4;
    s.train.dim = 16;
    TrainJob::from_settings(&s).unwrap()
}

fn train(job: &TrainJob) -> TrainSummary {
    run_train(job, &mut |_| {}).unwrap()
}

/// Every item each user interacted with in the data, whatever the rating or split, by external ids.
fn everything_seen(job: &TrainJob) -> Vec<(String, HashSet<String>)> {
    let mut source = job.source.clone();
    source.split = SplitSpec::None;
    let data = Dataset::load(&source).unwrap();
    let mut seen: Vec<HashSet<String>> = vec![HashSet::new(); data.users.len()];
    for it in &data.interactions {
        seen[it.user as usize].insert(data.items[it.item as usize].id.clone());
    }
    data.users.iter().map(|u| u.id.clone()).zip(seen).collect()
}

/// Asks the served model for every user's top `k` and returns, per user, the recalled items they
/// had already interacted with.
async fn recalled_seen_items(model: &Path, job: &TrainJob, k: usize) -> Vec<(String, String)> {
    let app = TestApp::spawn(test_settings(model, "")).await;
    let mut offenders = Vec::new();
    for (user, seen) in everything_seen(job) {
        let answer = app
            .post("/v1/recall", &json!({ "user_id": user, "k": k }))
            .await;
        assert_eq!(answer.status, 200, "user {user}: {}", answer.json());
        let items = answer.json()["items"].as_array().unwrap().clone();
        assert!(!items.is_empty(), "user {user} got no items");
        for item in items {
            let id = item["item_id"].as_str().unwrap().to_string();
            if seen.contains(&id) {
                offenders.push((user.clone(), id));
            }
        }
    }
    offenders
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_path_evaluates_refits_on_everything_and_never_recalls_a_seen_item() {
    let dir = tempfile::tempdir().unwrap();
    let job = default_job(Format::Synthetic, dir.path(), dir.path());
    assert!(job.refit_on_all, "refitting is the default");
    assert!(matches!(job.epochs, EpochChoice::EarlyStopping { .. }));
    let summary = train(&job);
    assert_eq!(summary.fit, ModelFit::AllAfterEvaluation);
    assert!(summary.refit_seconds.is_some());
    let figures = summary
        .metrics
        .as_ref()
        .expect("the evaluated run's figures");
    assert!(figures.users > 0 && figures.precision > 0.0, "{figures:?}");

    let artifact = ModelArtifact::load(dir.path()).unwrap();
    let meta = &artifact.meta;
    assert_eq!(meta.training.fit, ModelFit::AllAfterEvaluation);
    let stored = meta
        .metrics
        .as_ref()
        .expect("figures travel with the model");
    assert_eq!(stored.users, figures.users);
    assert!((stored.precision - figures.precision).abs() < 1e-12);
    assert!(meta.training.early_stopping);
    assert_eq!(meta.training.epochs, summary.epochs);
    assert!(!meta.training.validation_history.is_empty());
    // Refit on everything: every user with an interaction is known, with all of them as seen.
    let seen = everything_seen(&job);
    let with_any = seen.iter().filter(|(_, s)| !s.is_empty()).count();
    assert_eq!(meta.users.len(), with_any);
    for (user, items) in meta.users.iter().zip(&meta.seen) {
        let expected = &seen.iter().find(|(id, _)| *id == user.id).unwrap().1;
        let got: HashSet<String> = items
            .iter()
            .map(|&i| meta.items[i as usize].id.clone())
            .collect();
        assert_eq!(&got, expected, "user {}", user.id);
        assert!(
            meta.vocabulary.get(&user.features[0]).is_some(),
            "user {} has a trained id",
            user.id
        );
    }

    let offenders = recalled_seen_items(dir.path(), &job, 100).await;
    assert!(
        offenders.is_empty(),
        "{} recalled items were already seen, e.g. {:?}",
        offenders.len(),
        &offenders[..offenders.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_evaluated_model_kept_with_no_refit_still_excludes_the_test_interactions() {
    let dir = tempfile::tempdir().unwrap();
    let mut job = default_job(Format::Synthetic, dir.path(), dir.path());
    job.refit_on_all = false;
    job.epochs = EpochChoice::Fixed(5);
    let summary = train(&job);
    assert_eq!(summary.fit, ModelFit::TrainSplit);
    assert_eq!(summary.refit_seconds, None);
    assert_eq!(
        ModelArtifact::load(dir.path()).unwrap().meta.training.fit,
        ModelFit::TrainSplit
    );
    // Before the deployment path, 20% of each user's history (the test split) came back.
    let offenders = recalled_seen_items(dir.path(), &job, 100).await;
    assert!(offenders.is_empty(), "{offenders:?}");
}

#[test]
fn split_none_trains_on_everything_without_evaluating() {
    let dir = tempfile::tempdir().unwrap();
    let mut job = default_job(Format::Synthetic, dir.path(), dir.path());
    job.source.split = "none".parse().unwrap();
    let summary = train(&job);
    assert_eq!(summary.fit, ModelFit::AllUnevaluated);
    assert!(summary.metrics.is_none() && summary.popularity.is_none());
    assert!(
        summary.epochs >= 1,
        "early stopping on data carved from everything"
    );
    let text = summary.to_text();
    assert!(text.contains("not evaluated"), "{text}");
    assert!(!text.contains("no test positives"), "{text}");
    let meta = ModelArtifact::load(dir.path()).unwrap().meta;
    assert_eq!(meta.training.fit, ModelFit::AllUnevaluated);
    assert_eq!(meta.training.split, "none");
    assert!(meta.metrics.is_none());
}

#[test]
fn a_split_of_nothing_is_refused_with_the_way_to_train_on_everything() {
    let e = "random:0".parse::<SplitSpec>().unwrap_err().to_string();
    assert!(e.contains("--split none"), "{e}");
    assert_eq!("none".parse::<SplitSpec>().unwrap(), SplitSpec::None);
}

#[test]
fn evaluating_a_model_refit_on_everything_warns_that_its_figures_are_inflated() {
    let dir = tempfile::tempdir().unwrap();
    let mut job = default_job(Format::Synthetic, dir.path(), dir.path());
    job.epochs = EpochChoice::Fixed(3);
    train(&job);
    let outcome = run_eval(dir.path(), &job.source, 10, 1).unwrap();
    assert!(
        outcome.warnings.iter().any(|w| w.contains("--no-refit")),
        "{:?}",
        outcome.warnings
    );
    job.refit_on_all = false;
    train(&job);
    assert!(run_eval(dir.path(), &job.source, 10, 1)
        .unwrap()
        .warnings
        .is_empty());
}

/// A CSV folder with a user file in the wide layout (`id,region,age`) and an item file in the
/// `features` layout, as a user's own export would be.
fn own_csv_data(dir: &Path) {
    let mut interactions = String::from("user_id,item_id,rating\n");
    for u in 0..60 {
        for j in 0..8 {
            let item = (u * 7 + j * 3) % 40 + (u % 2) * 40;
            interactions.push_str(&format!("u{u},i{item},{}\n", 3 + (j % 3)));
        }
    }
    std::fs::write(dir.join("interactions.csv"), interactions).unwrap();
    let mut users = String::from("id,region,age\n");
    for u in 0..60 {
        users.push_str(&format!("u{u},r{},{}\n", u % 2, 20 + u % 5));
    }
    std::fs::write(dir.join("users.csv"), users).unwrap();
    let mut items = String::from("id,features,title\n");
    for i in 0..80 {
        items.push_str(&format!("i{i},genre:g{},Item {i}\n", i / 40));
    }
    std::fs::write(dir.join("items.csv"), items).unwrap();
}

#[test]
fn side_files_are_used_by_default_and_every_column_is_a_feature() {
    let data = tempfile::tempdir().unwrap();
    own_csv_data(data.path());
    let out = tempfile::tempdir().unwrap();
    let mut job = default_job(Format::Csv, data.path(), out.path());
    job.epochs = EpochChoice::Fixed(3);
    assert_eq!(job.features, FeatureSet::Auto, "auto is the default");
    let summary = train(&job);
    assert_eq!(summary.features, FeatureSet::Hybrid);
    assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
    let meta = ModelArtifact::load(out.path()).unwrap().meta;
    assert_eq!(meta.training.features, FeatureSet::Hybrid);
    for feature in ["region:r1", "age:22", "genre:g1"] {
        assert!(meta.vocabulary.get(feature).is_some(), "{feature} learnt");
    }
    let u3 = meta.users.iter().find(|u| u.id == "u3").unwrap();
    assert_eq!(u3.features, ["user:u3", "region:r1", "age:23"]);
}

#[test]
fn ids_only_on_data_with_side_features_warns_and_names_them() {
    let data = tempfile::tempdir().unwrap();
    own_csv_data(data.path());
    let out = tempfile::tempdir().unwrap();
    let mut job = default_job(Format::Csv, data.path(), out.path());
    job.epochs = EpochChoice::Fixed(2);
    job.features = FeatureSet::Ids;
    let summary = train(&job);
    assert_eq!(summary.features, FeatureSet::Ids);
    let warning = summary.warnings.join("\n");
    for named in ["--features ids", "age", "region", "genre", "hybrid"] {
        assert!(warning.contains(named), "{named} in {warning}");
    }
    assert_eq!(summary.to_json()["warnings"][0], summary.warnings[0]);
    assert!(ModelArtifact::load(out.path())
        .unwrap()
        .meta
        .vocabulary
        .get("region:r1")
        .is_none());
}

#[test]
fn data_without_side_features_trains_on_ids_without_a_warning() {
    let data = tempfile::tempdir().unwrap();
    own_csv_data(data.path());
    std::fs::remove_file(data.path().join("users.csv")).unwrap();
    std::fs::remove_file(data.path().join("items.csv")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut job = default_job(Format::Csv, data.path(), out.path());
    job.epochs = EpochChoice::Fixed(2);
    let summary = train(&job);
    assert_eq!(summary.features, FeatureSet::Ids);
    assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
}

#[test]
fn the_epoch_count_is_chosen_on_validation_data_unless_given() {
    let mut s = Settings::load(None).unwrap();
    assert_eq!(s.train.epochs, None);
    assert!(matches!(
        TrainJob::from_settings(&s).unwrap().epochs,
        EpochChoice::EarlyStopping { refit: true, .. }
    ));
    s.train.epochs = Some(30);
    assert_eq!(
        TrainJob::from_settings(&s).unwrap().epochs,
        EpochChoice::Fixed(30)
    );
    // Zero epochs would attach an untrained model's figures to a model refit for one epoch.
    s.train.epochs = Some(0);
    let e = TrainJob::from_settings(&s).unwrap_err().to_string();
    assert!(e.contains("epochs"), "{e}");
    s.train.epochs = None;
    s.train.max_epochs = 0;
    let e = TrainJob::from_settings(&s).unwrap_err().to_string();
    assert!(e.contains("max_epochs"), "{e}");
}

/// MovieLens 100K as a user's own CSV export (every rating, user and item files in the wide and
/// `features` layouts): trained the default way and served, no user is offered an item they rated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn movielens_100k_as_own_csv_never_recalls_a_rated_item_at_k_100() {
    let ml = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/ml-100k");
    if !ml.join("u.data").is_file() {
        eprintln!("skipped: {} not present", ml.display());
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let latin1 = |name: &str| -> String {
        std::fs::read(ml.join(name))
            .unwrap()
            .iter()
            .map(|&b| b as char)
            .collect()
    };
    let mut interactions = String::from("user_id,item_id,rating,timestamp\n");
    for line in latin1("u.data").lines() {
        let f: Vec<&str> = line.split('\t').collect();
        interactions.push_str(&format!("{},{},{},{}\n", f[0], f[1], f[2], f[3]));
    }
    std::fs::write(data.path().join("interactions.csv"), interactions).unwrap();
    let mut users = String::from("id,age,gender,occupation,zip\n");
    for line in latin1("u.user").lines() {
        let f: Vec<&str> = line.split('|').collect();
        let zip = &f[4][..1.min(f[4].len())];
        users.push_str(&format!("{},{},{},{},{zip}\n", f[0], f[1], f[2], f[3]));
    }
    std::fs::write(data.path().join("users.csv"), users).unwrap();
    let mut items = String::from("id,features,title\n");
    for line in latin1("u.item").lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split('|').collect();
        let genres: Vec<String> = f[5..]
            .iter()
            .enumerate()
            .filter(|(_, flag)| **flag == "1")
            .map(|(g, _)| format!("genre:{g}"))
            .collect();
        let title = f[1].replace('"', "'");
        items.push_str(&format!("{},{},\"{title}\"\n", f[0], genres.join("|")));
    }
    std::fs::write(data.path().join("items.csv"), items).unwrap();

    let out = tempfile::tempdir().unwrap();
    let mut s = Settings::load(None).unwrap();
    s.data.format = Format::Csv;
    s.data.dir = data.path().to_path_buf();
    s.train.out = out.path().to_path_buf();
    let job = TrainJob::from_settings(&s).unwrap();
    let summary = train(&job);
    assert_eq!(summary.fit, ModelFit::AllAfterEvaluation);
    assert_eq!(summary.features, FeatureSet::Hybrid);
    assert_eq!(everything_seen(&job).len(), 943, "every user is asked");
    let offenders = recalled_seen_items(out.path(), &job, 100).await;
    assert!(
        offenders.is_empty(),
        "{} of 94,300 recalled items were rated by their user, e.g. {:?}",
        offenders.len(),
        &offenders[..offenders.len().min(5)]
    );
}
