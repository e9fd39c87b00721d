//! Filtered search in our graph index (issue "Recall with filters"): at every selectivity, with
//! live inserts and deletes, the answer is brute force's over the same allowed items (exact where
//! the planner scans, recall ≥ 0.99 where it walks), and the plan each search took is counted
//! where `info()` shows it.

use std::sync::Arc;

use fmrecall::recall::bench::clustered;
use fmrecall::recall::{
    build, AllowedBits, ExactIndex, Filter, GraphIndex, GraphParams, Hit, IndexKind, IndexSettings,
    RecallIndex,
};
use fmrecall::rng::Rng;
use fmrecall::vectors::ItemVectors;

fn ids(hits: &[Hit]) -> Vec<u32> {
    hits.iter().map(|h| h.item).collect()
}

/// The plan counters of a graph's `info()`: graph, filtered_graph, exact_scan, graph_then_exact.
fn plans(index: &dyn RecallIndex) -> [u64; 4] {
    let p = &index.info().params["plans"];
    ["graph", "filtered_graph", "exact_scan", "graph_then_exact"].map(|k| p[k].as_u64().unwrap())
}

fn delta(after: [u64; 4], before: [u64; 4]) -> [u64; 4] {
    std::array::from_fn(|i| after[i] - before[i])
}

/// 20,000 clustered vectors: 16,000 built, 4,000 inserted live, 1,000 of all deleted.
struct Catalog {
    vectors: Arc<ItemVectors>,
    graph: GraphIndex,
    queries: Vec<Vec<f32>>,
    deleted: Vec<u32>,
}

fn catalog() -> Catalog {
    let n = 20_000;
    let (all, queries) = clustered(n, 100, 16, 40, 11);
    let built = 16_000;
    let dim = all.dim();
    let head = ItemVectors::from_raw(dim, all.as_slice()[..built * dim].to_vec());
    let vectors = Arc::new(head.with_capacity(n));
    let mut graph = GraphIndex::build(vectors.clone(), GraphParams::default(), 0).unwrap();
    // A breadth for filtered walks, as the load-time tuning picks one (see the last test).
    graph.set_filtered_ef(128);
    for chunk in (built..n).collect::<Vec<_>>().chunks(250) {
        let first = vectors.push(all.row(chunk[0])).unwrap();
        for &i in &chunk[1..] {
            vectors.push(all.row(i)).unwrap();
        }
        graph.insert(first, chunk.len()).unwrap();
    }
    let mut rng = Rng::new(3);
    let mut deleted: Vec<u32> = (0..n as u32).filter(|_| rng.uniform() < 0.05).collect();
    deleted.sort_unstable();
    for &d in &deleted {
        assert!(graph.remove(d));
    }
    Catalog {
        vectors,
        graph,
        queries,
        deleted,
    }
}

#[test]
fn filtered_search_is_brute_force_over_the_allowed_items_at_every_selectivity() {
    let c = catalog();
    let n = c.vectors.len();
    let exact = ExactIndex::new(c.vectors.clone());
    let alive = |i: &u32| c.deleted.binary_search(i).is_err();
    let mut rng = Rng::new(9);
    for s in [0.0, 0.001, 0.01, 0.1, 0.5, 0.9, 1.0] {
        let only: Vec<u32> = (0..n as u32).filter(|_| rng.uniform() < s).collect();
        // Brute force with the same predicate: allowed and not deleted.
        let allowed_alive: Vec<u32> = only.iter().copied().filter(alive).collect();
        let only_bits = AllowedBits::only(&only, n);
        let complement: Vec<u32> = (0..n as u32)
            .filter(|i| only.binary_search(i).is_err())
            .collect();
        let complement_bits = AllowedBits::all_but(&complement, n);
        let (mut found, mut wanted) = (0usize, 0usize);
        for q in &c.queries {
            let want = exact
                .search(q, 10, None, Filter::Only(&allowed_alive))
                .unwrap();
            let got = c.graph.search(q, 10, None, Filter::Only(&only)).unwrap();
            assert_eq!(
                got.len(),
                want.len(),
                "s {s}: as many as are allowed, up to k"
            );
            // The same set as a bitmap, or as all but its complement: the same answer.
            for form in [&only_bits, &complement_bits] {
                let by_bits = c.graph.search(q, 10, None, Filter::Bits(form)).unwrap();
                assert_eq!(ids(&by_bits), ids(&got), "s {s}: bitmap form");
            }
            for h in &got {
                assert!(
                    only.binary_search(&h.item).is_ok(),
                    "s {s}: {} not allowed",
                    h.item
                );
                assert!(alive(&h.item), "s {s}: {} was deleted", h.item);
                let score = fmrecall::kernels::dot(q, c.vectors.row(h.item as usize));
                assert!((h.score - score).abs() < 1e-4, "s {s}: the score is exact");
            }
            let got = ids(&got);
            found += ids(&want).iter().filter(|i| got.contains(i)).count();
            wanted += want.len();
        }
        let recall = if wanted == 0 {
            1.0
        } else {
            found as f64 / wanted as f64
        };
        assert!(recall >= 0.99, "s {s}: recall@10 {recall}");
    }
}

#[test]
fn the_planner_scans_small_allowed_sets_walks_large_ones_and_gives_up_on_anti_correlated_filters() {
    let c = catalog();
    let n = c.vectors.len();
    let exact = ExactIndex::new(c.vectors.clone());
    let q = &c.queries[0];

    // 50 allowed items: scanned, and the answer is exactly brute force's.
    let few: Vec<u32> = (0..n as u32).step_by(400).collect();
    let before = plans(&c.graph);
    let got = c.graph.search(q, 10, None, Filter::Only(&few)).unwrap();
    assert_eq!(delta(plans(&c.graph), before), [0, 0, 1, 0]);
    let alive: Vec<u32> = few
        .iter()
        .copied()
        .filter(|i| c.deleted.binary_search(i).is_err())
        .collect();
    assert_eq!(
        ids(&got),
        ids(&exact.search(q, 10, None, Filter::Only(&alive)).unwrap())
    );

    // Half the items, at random: a filtered walk.
    let half: Vec<u32> = (0..n as u32).filter(|i| i % 2 == 0).collect();
    let before = plans(&c.graph);
    c.graph.search(q, 10, None, Filter::Only(&half)).unwrap();
    assert_eq!(delta(plans(&c.graph), before), [0, 1, 0, 0]);

    // A filter removing the query's best 30% of items: the walk's probe sees almost nothing
    // allowed around the query and hands it to an exact scan; the answer is exact.
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.sort_by(|&a, &b| {
        let score = |i: u32| fmrecall::kernels::dot(q, c.vectors.row(i as usize));
        score(b).total_cmp(&score(a))
    });
    let mut best = order[..n * 3 / 10].to_vec();
    best.sort_unstable();
    let before = plans(&c.graph);
    let got = c.graph.search(q, 10, None, Filter::Exclude(&best)).unwrap();
    assert_eq!(delta(plans(&c.graph), before), [0, 0, 0, 1]);
    let mut excluded = best.clone();
    excluded.extend(&c.deleted);
    excluded.sort_unstable();
    excluded.dedup();
    assert_eq!(
        ids(&got),
        ids(&exact
            .search(q, 10, None, Filter::Exclude(&excluded))
            .unwrap())
    );

    // Nothing filtered, but 5% of the items deleted: a filtered walk too (fewer than 1/64 would
    // walk as unfiltered).
    let before = plans(&c.graph);
    c.graph.search(q, 10, None, Filter::All).unwrap();
    assert_eq!(delta(plans(&c.graph), before), [0, 1, 0, 0]);
    // A user's few seen items excluded: the plain graph walk.
    let plain = GraphIndex::build(c.vectors.clone(), GraphParams::default(), 0).unwrap();
    let before = plans(&plain);
    plain
        .search(q, 10, None, Filter::Exclude(&[3, 7, 11]))
        .unwrap();
    assert_eq!(delta(plans(&plain), before), [1, 0, 0, 0]);
}

#[test]
fn the_served_graph_tunes_its_filtered_breadth_at_load_and_reports_it() {
    let (vectors, queries) = clustered(20_000, 200, 16, 40, 12);
    let settings = IndexSettings {
        kind: IndexKind::Graph,
        ..IndexSettings::default()
    };
    let (index, quality) = build(Arc::new(vectors), &settings, &queries).unwrap();
    let filtered = quality.unwrap().filtered.expect("our graph tunes it");
    assert_eq!(filtered.target, settings.target_filtered_recall);
    // The selectivities it walks reach the target; the others it scans exactly.
    assert!(
        filtered.recall_at_10 >= filtered.target,
        "{filtered:?} falls short of its target"
    );
    let info = index.info();
    assert_eq!(info.params["filtered_ef_search"], filtered.ef_search);
    // One breadth per selectivity class walked, never wider for a less selective class than
    // the widest, and the same as the index serves with.
    let walked: Vec<(f64, usize)> = filtered
        .by_share
        .iter()
        .filter_map(|c| Some((c.share, c.ef_search?)))
        .collect();
    assert!(!walked.is_empty(), "{filtered:?} walks no class");
    assert!(walked.iter().all(|&(_, ef)| ef <= filtered.ef_search));
    assert_eq!(
        info.params["filtered_ef_by_share"],
        serde_json::json!(walked)
    );
    assert_eq!(
        info.params["filtered_exact_below_share"],
        filtered.exact_below_share
    );
    // Served: a random filter of each probe's selectivity recalls at least the target.
    let exact = ExactIndex::new(Arc::new(clustered(20_000, 200, 16, 40, 12).0));
    let mut rng = Rng::new(77);
    for s in [0.1, 0.5] {
        let only: Vec<u32> = (0..20_000u32).filter(|_| rng.uniform() < s).collect();
        let (mut found, mut wanted) = (0, 0);
        for q in &queries {
            let want = ids(&exact.search(q, 10, None, Filter::Only(&only)).unwrap());
            let got = ids(&index.search(q, 10, None, Filter::Only(&only)).unwrap());
            found += want.iter().filter(|i| got.contains(i)).count();
            wanted += want.len();
        }
        let recall = found as f64 / wanted as f64;
        assert!(
            recall >= 0.99,
            "s {s}: served recall@10 {recall} ({filtered:?})"
        );
    }
}
