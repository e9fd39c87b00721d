//! Recall@k and single-thread queries/s of the graph index with and without the norm walk, for a
//! trained model's users with their seen items excluded, as `POST /v1/recall` serves them
//! (`bench-index --model` measures unfiltered queries).
//!
//! ```text
//! cargo run --release --example exclude_seen_recall -- MODEL_DIR K NORM_SCAN_ITEMS [USERS]
//! ```
//! e.g. `-- /tmp/load/m100k 100 8192` (the README's "Deep recall on a trained model").

use std::sync::Arc;
use std::time::Instant;

use fmrecall::fm::ModelArtifact;
use fmrecall::recall::{bench, ExactIndex, Filter, GraphIndex, GraphParams, RecallIndex};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: exclude_seen_recall MODEL_DIR K NORM_SCAN_ITEMS [USERS]".into());
    }
    let dir = std::path::Path::new(&args[1]);
    let k: usize = args[2].parse()?;
    let walk_items: usize = args[3].parse()?;
    let users: usize = args.get(4).map_or(Ok(2500), |u| u.parse())?;
    let artifact = ModelArtifact::load(dir)?;
    let all_users = artifact.meta.seen.len();
    let (items, queries) = bench::from_model(dir, users)?;
    // from_model takes every `step`-th user; the same step finds their seen lists.
    let step = (all_users / users.max(1)).max(1);
    let seen: Vec<&[u32]> = (0..queries.len())
        .map(|i| artifact.meta.seen[i * step].as_slice())
        .collect();
    let items = Arc::new(items);
    let exact = ExactIndex::new(items.clone());
    let mut graph = GraphIndex::build(items.clone(), GraphParams::default(), 0)?;
    for (label, walk) in [("graph alone", 0), ("graph + norm walk", walk_items)] {
        graph.set_norm_scan(walk);
        let mut found = 0;
        let mut best = f64::INFINITY;
        for pass in 0..3 {
            let started = Instant::now();
            let answers = queries
                .iter()
                .zip(&seen)
                .map(|(q, s)| graph.search(q, k, None, Filter::Exclude(s)))
                .collect::<Result<Vec<_>, _>>()?;
            best = best.min(started.elapsed().as_secs_f64());
            if pass == 0 {
                for ((q, s), got) in queries.iter().zip(&seen).zip(&answers) {
                    let want = exact.search(q, k, None, Filter::Exclude(s))?;
                    found += got
                        .iter()
                        .filter(|h| want.iter().any(|w| w.item == h.item))
                        .count();
                }
            }
        }
        println!(
            "{label} ({walk} walk items), k {k}, {} users, seen excluded: recall@{k} {:.4}, {:.0} queries/s (1 thread)",
            queries.len(),
            found as f64 / (k * queries.len()).max(1) as f64,
            queries.len() as f64 / best
        );
    }
    Ok(())
}
