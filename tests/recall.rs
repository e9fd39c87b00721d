//! Recall indexes: exactness of brute force, graph recall, filters, refusal of bad input, cold start.

mod common;

use std::sync::Arc;

use fmrecall::data::{Dataset, FeatureRows, FeatureSet};
use fmrecall::fm::eval::{evaluate, popularity};
use fmrecall::fm::{EvalSet, ModelArtifact, UserQuery};
use fmrecall::recall::bench::clustered;
use fmrecall::recall::{
    build, ExactIndex, Filter, HnswParams, HnswRsIndex, IndexError, IndexKind, IndexSettings,
    RecallIndex,
};
use fmrecall::vectors::ItemVectors;

fn naive_top(
    vectors: &ItemVectors,
    q: &[f32],
    k: usize,
    allowed: impl Fn(u32) -> bool,
) -> Vec<u32> {
    let mut all: Vec<(u32, f32)> = (0..vectors.len() as u32)
        .filter(|&i| allowed(i))
        .map(|i| {
            (
                i,
                vectors
                    .row(i as usize)
                    .iter()
                    .zip(q)
                    .map(|(a, b)| a * b)
                    .sum(),
            )
        })
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    all.into_iter().take(k).map(|(i, _)| i).collect()
}

fn small_graph(n: usize) -> (Arc<ItemVectors>, Vec<Vec<f32>>, HnswRsIndex) {
    let (vectors, queries) = clustered(n, 100, 16, 20, 3);
    let vectors = Arc::new(vectors);
    let graph = HnswRsIndex::build(vectors.clone(), HnswParams::default(), 0).unwrap();
    (vectors, queries, graph)
}

#[test]
fn brute_force_equals_a_naive_sort_with_and_without_filters() {
    let (vectors, queries) = clustered(3000, 20, 24, 10, 1);
    let vectors = Arc::new(vectors);
    let exact = ExactIndex::new(vectors.clone());
    let excluded: Vec<u32> = (0..3000).step_by(3).collect();
    let only: Vec<u32> = (0..3000).step_by(7).collect();
    for q in &queries {
        for (filter, allowed) in [
            (Filter::All, Box::new(|_| true) as Box<dyn Fn(u32) -> bool>),
            (Filter::Exclude(&excluded), Box::new(|i| i % 3 != 0)),
            (Filter::Only(&only), Box::new(|i| i % 7 == 0)),
        ] {
            let got: Vec<u32> = exact
                .search(q, 25, None, filter)
                .unwrap()
                .iter()
                .map(|h| h.item)
                .collect();
            assert_eq!(got, naive_top(&vectors, q, 25, allowed));
        }
    }
}

#[test]
fn hnsw_recalls_at_least_ninety_percent_of_the_exact_top_ten() {
    let (vectors, queries, graph) = small_graph(4000);
    let exact = ExactIndex::new(vectors);
    let recall = fmrecall::recall::measure_recall(&graph, &exact, &queries, 10, Some(64)).unwrap();
    assert!(recall >= 0.9, "recall@10 {recall}");
    let self_recall = graph.self_recall(&exact, 200).unwrap();
    assert!(self_recall >= 0.9, "self recall {self_recall}");
}

#[test]
fn hnsw_returns_exact_scores_best_first() {
    let (vectors, queries, graph) = small_graph(2000);
    for q in &queries {
        let hits = graph.search(q, 10, None, Filter::All).unwrap();
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        for h in hits {
            let exact: f32 = vectors
                .row(h.item as usize)
                .iter()
                .zip(q)
                .map(|(a, b)| a * b)
                .sum();
            assert!((h.score - exact).abs() < 1e-4);
        }
    }
}

#[test]
fn filters_never_return_an_excluded_item_in_any_index_or_path() {
    let (vectors, queries, graph) = small_graph(2000);
    let fallback = HnswRsIndex::build(vectors.clone(), HnswParams::default(), 1_000).unwrap();
    let exact = ExactIndex::new(vectors);
    let excluded: Vec<u32> = (0..2000).filter(|i| i % 2 == 0).collect();
    let only: Vec<u32> = (0..2000).filter(|i| i % 50 == 1).collect();
    let indexes: [&dyn RecallIndex; 3] = [&exact, &graph, &fallback];
    for index in indexes {
        for q in &queries {
            for h in index
                .search(q, 20, None, Filter::Exclude(&excluded))
                .unwrap()
            {
                assert!(
                    h.item % 2 == 1,
                    "{} returned excluded {}",
                    index.info().kind,
                    h.item
                );
            }
            let hits = index.search(q, 20, None, Filter::Only(&only)).unwrap();
            assert!(hits.iter().all(|h| h.item % 50 == 1));
            assert!(hits.iter().all(|h| (h.item as usize) < 2000));
        }
    }
}

#[test]
fn non_finite_vectors_and_bad_parameters_are_refused_not_panicked_on() {
    let mut data = vec![0.5f32; 40];
    data[13] = f32::NAN;
    let bad = Arc::new(ItemVectors::from_raw(4, data));
    let e = HnswRsIndex::build(bad.clone(), HnswParams::default(), 0)
        .err()
        .unwrap();
    assert!(matches!(e, IndexError::NonFiniteVector { item: 3 }), "{e}");
    assert!(build(bad, &IndexSettings::default(), &[]).is_err());

    let good = Arc::new(ItemVectors::from_raw(4, vec![0.5f32; 40]));
    for params in [
        HnswParams {
            m: 300,
            ..Default::default()
        },
        HnswParams {
            m: 0,
            ..Default::default()
        },
        HnswParams {
            ef_construction: 0,
            ..Default::default()
        },
    ] {
        let e = HnswRsIndex::build(good.clone(), params, 0).err().unwrap();
        assert!(e.to_string().contains("should be"), "{e}");
    }
    let exact = ExactIndex::new(good);
    assert!(matches!(
        exact.search(&[1.0, 2.0], 3, None, Filter::All),
        Err(IndexError::DimensionMismatch {
            expected: 4,
            got: 2
        })
    ));
    assert!(matches!(
        exact.search(&[1.0, f32::INFINITY, 0.0, 0.0], 3, None, Filter::All),
        Err(IndexError::NonFiniteQuery)
    ));
}

#[test]
fn auto_picks_exact_for_small_catalogs_and_a_graph_above_the_threshold() {
    let (vectors, queries) = clustered(1500, 50, 16, 10, 5);
    let vectors = Arc::new(vectors);
    let settings = IndexSettings {
        exact_below: 2000,
        ..Default::default()
    };
    let (index, quality) = build(vectors.clone(), &settings, &queries).unwrap();
    assert_eq!((index.info().kind, quality), ("exact", None));
    let settings = IndexSettings {
        exact_below: 1000,
        ..Default::default()
    };
    let (index, quality) = build(vectors.clone(), &settings, &queries).unwrap();
    // Our own graph: it measured fastest (README, bench-index).
    assert_eq!(index.info().kind, "graph");
    assert!(quality.unwrap().recall_at_10 >= 0.9);

    let strict = IndexSettings {
        kind: IndexKind::HnswRs,
        min_recall: 1.01,
        ..Default::default()
    };
    let e = build(vectors, &strict, &queries).err().unwrap();
    assert!(e.to_string().contains("below the floor"), "{e}");
}

#[test]
fn a_cold_user_ranked_from_side_features_alone_beats_popularity() {
    let dir = tempfile::tempdir().unwrap();
    let job = common::synthetic_job(dir.path(), 15, FeatureSet::Hybrid);
    fmrecall::pipeline::run_train(&job, &mut |_| {}).unwrap();
    let artifact = ModelArtifact::load(dir.path()).unwrap();
    let vocab = &artifact.meta.vocabulary;

    let mut dataset = Dataset::load(&job.source).unwrap();
    dataset.restrict_features(FeatureSet::Hybrid);
    // Every user becomes a stranger: the id feature is dropped, side features stay.
    let strangers: Vec<_> = dataset
        .users
        .iter()
        .map(|u| fmrecall::data::Entity {
            features: u.features[1..].to_vec(),
            ..u.clone()
        })
        .collect();
    let user_rows = FeatureRows::encode(vocab, &strangers);
    let item_rows = FeatureRows::encode(vocab, &dataset.items);
    let set = EvalSet::new(&dataset, 4.0, 10, user_rows, item_rows);
    let items = ItemVectors::new(&artifact.model, &set.item_rows);
    let cold = evaluate(&set, 2, |u, out| {
        let q = UserQuery::new(&artifact.model, set.user_rows.row(u as usize));
        items.scores_into(&q.vector, out);
    });
    let counts = popularity(&dataset, 4.0);
    let popular = evaluate(&set, 2, |_, out| out.copy_from_slice(&counts));
    assert!(
        cold.precision > 1.5 * popular.precision,
        "cold-start P@10 {} vs popularity {}",
        cold.precision,
        popular.precision
    );
}
