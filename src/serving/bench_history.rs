//! `fmrecall bench-history`: what folding a history into the user's vector adds to a recall. The
//! same known users are recalled with no request history and with one of `len` items (their
//! vector rebuilt from id, side features and that history, and the items excluded), alternating,
//! so that both see the same caches and machine load.

use std::time::Instant;

use serde::Serialize;

use super::{RecallQuery, ServeError, ServingModel, UserSpec};

/// One row of the table: recall latency with a request history of `history` items.
#[derive(Debug, Clone, Serialize)]
pub struct FoldInRow {
    /// Items in the request's history.
    pub history: usize,
    /// Recalls timed.
    pub queries: usize,
    /// Median latency, µs.
    pub p50_us: f64,
    /// Mean latency, µs.
    pub mean_us: f64,
}

/// Times `queries` recalls (k = 10) of known users with request histories of each length in
/// `lengths` (0 first: the baseline). **Errors** if the model knows no user or a recall fails.
pub fn bench_history(
    model: &ServingModel,
    lengths: &[usize],
    queries: usize,
) -> Result<Vec<FoldInRow>, ServeError> {
    let meta = model.meta();
    if meta.users.is_empty() || meta.items.is_empty() {
        return Err(ServeError::NoUser);
    }
    let n_items = meta.items.len();
    let query = |q: usize, len: usize| RecallQuery {
        user: UserSpec {
            id: Some(meta.users[q % meta.users.len()].id.clone()),
            features: None,
            history: (0..len)
                .map(|j| meta.items[(q * 7 + j * 13) % n_items].id.clone())
                .collect(),
        },
        k: 10,
        exclude_seen: true,
        exclude_items: Vec::new(),
        ef: None,
        filter: None,
    };
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(queries); lengths.len()];
    for q in 0..queries {
        for (t, &len) in times.iter_mut().zip(lengths) {
            let asked = query(q, len);
            let started = Instant::now();
            let answer = model.recall(&asked)?;
            let us = started.elapsed().as_secs_f64() * 1e6;
            std::hint::black_box(answer);
            t.push(us);
        }
    }
    Ok(lengths
        .iter()
        .zip(times)
        .map(|(&history, mut t)| {
            t.sort_by(f64::total_cmp);
            FoldInRow {
                history,
                queries,
                p50_us: t.get(t.len() / 2).copied().unwrap_or(f64::NAN),
                mean_us: t.iter().sum::<f64>() / t.len().max(1) as f64,
            }
        })
        .collect())
}
