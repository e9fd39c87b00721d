//! History features: a model trained with `history` N folds a user's current history (train
//! history, then events, then a request's `history`, the most recent N distinct items) into their
//! vector as features weighted 1/√n. Served scores equal the FM computed directly on those
//! features; an event moves the vector at once; a visitor with no id is served from a history
//! alone; unknown items are reported and ignored; the artifact records the option; and the replay
//! evaluation runs on a time split of the synthetic data.

mod common;

use std::path::Path;

use common::http::TestApp;
use fmrecall::config::Settings;
use fmrecall::data::{DataSource, Dataset, FeatureSet, Part, SplitSpec};
use fmrecall::fm::ModelArtifact;
use fmrecall::serving::{RecallQuery, ServingModel, UserSpec};
use fmrecall::store::EventPair;
use serde_json::json;

const HISTORY: usize = 8;

/// A hybrid model with history features of the synthetic data (random 20% test split).
fn trained(dir: &Path, history: usize) -> ModelArtifact {
    let mut job = common::synthetic_job(dir, 4, FeatureSet::Hybrid);
    job.params.history = history;
    fmrecall::pipeline::run_train(&job, &mut |_| {}).unwrap();
    ModelArtifact::load(dir).unwrap()
}

fn load(dir: &Path) -> ServingModel {
    ServingModel::load(dir, &Settings::load(None).unwrap().index).unwrap()
}

/// The FM score computed directly from feature names, the history items weighted 1/√n.
fn direct_score(
    artifact: &ModelArtifact,
    user_features: &[String],
    history: &[String],
    item: &str,
) -> f64 {
    let vocab = &artifact.meta.vocabulary;
    let entity = artifact.meta.items.iter().find(|e| e.id == item).unwrap();
    let mut idx = Vec::new();
    let mut val = Vec::new();
    for f in user_features.iter().chain(&entity.features) {
        if let Some(j) = vocab.get(f) {
            idx.push(j);
            val.push(1.0f32);
        }
    }
    let w = 1.0 / (history.len() as f32).sqrt();
    for h in history {
        idx.push(vocab.get(&format!("history:{h}")).unwrap());
        val.push(w);
    }
    artifact.model.score_naive((&idx, &val))
}

fn served_score(model: &ServingModel, user: &UserSpec, item: &str) -> f64 {
    let (scores, _) = model.score(user, &[item.to_string()]).unwrap();
    scores[0].score as f64
}

fn close(got: f64, want: f64) {
    assert!(
        (got - want).abs() <= 1e-4 + 1e-4 * want.abs(),
        "served {got}, direct {want}"
    );
}

fn item_id(artifact: &ModelArtifact, slot: u32) -> String {
    artifact.meta.items[slot as usize].id.clone()
}

#[test]
fn a_served_score_is_the_fm_of_id_side_features_and_current_history() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = trained(dir.path(), HISTORY);
    let meta = &artifact.meta;
    assert_eq!(
        meta.params.history, HISTORY,
        "the artifact records the option"
    );
    let recorded = meta
        .history
        .as_ref()
        .expect("train histories in the artifact");
    assert_eq!(recorded.max_items, HISTORY);
    let model = load(dir.path());
    let target = item_id(&artifact, 5);

    for u in [0usize, 17, 133] {
        let user = &meta.users[u];
        let train: Vec<String> = recorded.per_user[u]
            .iter()
            .map(|&i| item_id(&artifact, i))
            .collect();
        assert!(!train.is_empty() && train.len() <= HISTORY);
        let spec = UserSpec {
            id: Some(user.id.clone()),
            ..Default::default()
        };
        close(
            served_score(&model, &spec, &target),
            direct_score(&artifact, &user.features, &train, &target),
        );

        // Events join the history at once (most recent last), the oldest items cut at N. (An
        // event on an item the model already counts as the user's adds nothing: see events.rs.)
        let new: Vec<String> = (200..)
            .filter(|i| meta.seen[u].binary_search(i).is_err())
            .take(3)
            .map(|i| item_id(&artifact, i))
            .collect();
        let pairs: Vec<EventPair> = new
            .iter()
            .map(|i| EventPair {
                user_id: user.id.clone(),
                item_id: i.clone(),
            })
            .collect();
        model.add_events(&pairs);
        let mut current = train.clone();
        current.extend(new.iter().cloned());
        let cut = current[current.len().saturating_sub(HISTORY)..].to_vec();
        close(
            served_score(&model, &spec, &target),
            direct_score(&artifact, &user.features, &cut, &target),
        );
    }

    // An anonymous visitor: the history alone, no id and no side features.
    let visit: Vec<String> = (10..14).map(|i| item_id(&artifact, i)).collect();
    let visitor = UserSpec {
        history: visit.clone(),
        ..Default::default()
    };
    close(
        served_score(&model, &visitor, &target),
        direct_score(&artifact, &[], &visit, &target),
    );
    // A history longer than N keeps its most recent N items.
    let long: Vec<String> = (20..20 + 3 * HISTORY as u32)
        .map(|i| item_id(&artifact, i))
        .collect();
    let visitor = UserSpec {
        history: long.clone(),
        ..Default::default()
    };
    close(
        served_score(&model, &visitor, &target),
        direct_score(&artifact, &[], &long[long.len() - HISTORY..], &target),
    );
}

#[test]
fn a_visitors_history_is_excluded_and_unknown_items_are_reported_and_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = trained(dir.path(), HISTORY);
    let model = load(dir.path());
    let visit: Vec<String> = (30..35).map(|i| item_id(&artifact, i)).collect();
    let query = |history: Vec<String>| RecallQuery {
        user: UserSpec {
            history,
            ..Default::default()
        },
        k: 50,
        exclude_seen: true,
        exclude_items: Vec::new(),
        ef: None,
        filter: None,
    };
    let plain = model.recall(&query(visit.clone())).unwrap();
    let got: Vec<&str> = plain.items.iter().map(|i| i.item_id).collect();
    for item in &visit {
        assert!(!got.contains(&item.as_str()), "{item} is in the history");
    }
    assert!(plain.cold_start);
    let mut with_unknown = visit.clone();
    with_unknown.insert(2, "no-such-item".into());
    let answer = model.recall(&query(with_unknown)).unwrap();
    assert_eq!(answer.unknown_features, vec!["history:no-such-item"]);
    let again: Vec<&str> = answer.items.iter().map(|i| i.item_id).collect();
    assert_eq!(again, got, "the unknown item changes nothing");
}

#[test]
fn a_model_without_history_features_keeps_static_vectors_and_loads_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = trained(dir.path(), 0);
    assert!(artifact.meta.history.is_none());
    assert!(!(0..artifact.meta.vocabulary.len() as u32).any(|j| artifact
        .meta
        .vocabulary
        .name(j)
        .starts_with("history:")));
    let model = load(dir.path());
    let user = &artifact.meta.users[3];
    let spec = UserSpec {
        id: Some(user.id.clone()),
        ..Default::default()
    };
    let target = item_id(&artifact, 9);
    let before = served_score(&model, &spec, &target);
    close(
        before,
        direct_score(&artifact, &user.features, &[], &target),
    );
    model.add_events(&[EventPair {
        user_id: user.id.clone(),
        item_id: item_id(&artifact, 200),
    }]);
    assert_eq!(served_score(&model, &spec, &target), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recall_route_takes_a_history_and_names_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = trained(dir.path(), HISTORY);
    let app = TestApp::spawn(common::http::test_settings(dir.path(), "t")).await;
    let visit: Vec<String> = (40..43).map(|i| item_id(&artifact, i)).collect();
    let ok = app
        .post("/v1/recall", &json!({"history": visit, "k": 5}))
        .await;
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    assert_eq!(ok.json()["items"].as_array().unwrap().len(), 5);
    for (body, field) in [
        (json!({"history": [""]}), "history[0]"),
        (json!({"history": ["1", "a\u{1}b"]}), "history[1]"),
        (json!({"history": vec!["1"; 1001]}), "history"),
        (json!({"k": 5}), "user_id"),
    ] {
        let bad = app.post("/v1/recall", &body).await;
        assert_eq!(bad.status, 400, "{body}");
        assert_eq!(bad.json()["error"]["field"], field, "{body}");
    }
}

#[test]
fn the_replay_of_a_synthetic_time_split_counts_every_later_interaction() {
    let dir = tempfile::tempdir().unwrap();
    let mut job = common::synthetic_job(dir.path(), 4, FeatureSet::Hybrid);
    job.source.split = "time:0.8".parse::<SplitSpec>().unwrap();
    job.params.history = HISTORY;
    fmrecall::pipeline::run_train(&job, &mut |_| {}).unwrap();
    let source: DataSource = job.source.clone();
    let dataset = Dataset::load(&source).unwrap();
    let later = dataset
        .interactions
        .iter()
        .filter(|it| it.part == Part::Test)
        .count();
    assert!(later > 0);
    let (report, warnings) = fmrecall::pipeline::run_replay(dir.path(), &source, 10, 2).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(report.steps, later, "every interaction after T is a step");
    let moving = report.moving.expect("a history model folds events in");
    for f in [
        report.static_model,
        report.exclusion_only,
        moving,
        report.popularity,
    ] {
        assert!(
            (0.0..=1.0).contains(&f.hit_rate) && f.ndcg <= f.hit_rate,
            "{f:?}"
        );
    }
    // Leaving out items the user just had can only lift the next one (no item repeats here).
    assert!(report.exclusion_only.hit_rate >= report.static_model.hit_rate);
    assert!(report.exclusion_only.ndcg >= report.static_model.ndcg);
    // The planted topics make the next item predictable from the last ones.
    assert!(
        moving.hit_rate > report.popularity.hit_rate,
        "moving {moving:?} vs popularity {:?}",
        report.popularity
    );

    // A replay needs a time split.
    let mut random = source.clone();
    random.split = SplitSpec::Random(0.2);
    let refused = fmrecall::pipeline::run_replay(dir.path(), &random, 10, 2).unwrap_err();
    assert!(refused.to_string().contains("time:"), "{refused}");
}
