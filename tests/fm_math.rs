//! The FM's arithmetic: Rendle's linear-time identity, its gradient, and the inner-product export.

mod common;

use common::{random_model, random_row};
use fmrecall::data::FeatureRows;
use fmrecall::fm::UserQuery;
use fmrecall::rng::Rng;
use fmrecall::vectors::ItemVectors;

#[test]
fn the_linear_time_score_equals_the_naive_pairwise_sum() {
    let model = random_model(200, 12, 1);
    let mut rng = Rng::new(2);
    for m in [0, 1, 2, 5, 17, 40] {
        let (idx, val) = random_row(200, m, &mut rng);
        let fast = f64::from(model.score((&idx, &val)));
        let naive = model.score_naive((&idx, &val));
        let scale = naive.abs().max(1.0);
        assert!(
            (fast - naive).abs() <= 1e-4 * scale,
            "m = {m}: O(km) {fast} vs O(km²) {naive}"
        );
    }
}

#[test]
fn analytic_gradients_match_central_finite_differences() {
    let mut model = random_model(30, 6, 3);
    let (idx, val) = random_row(30, 5, &mut Rng::new(4));
    let grad = model.gradient((&idx, &val));
    let eps = 1e-2f32;
    let close = |analytic: f32, numeric: f32, what: &str| {
        assert!(
            (analytic - numeric).abs() <= 2e-3 * analytic.abs().max(1.0),
            "{what}: analytic {analytic} vs numeric {numeric}"
        );
    };
    for &(j, g) in &grad.w {
        let orig = model.w[j as usize];
        model.w[j as usize] = orig + eps;
        let up = model.score((&idx, &val));
        model.w[j as usize] = orig - eps;
        let down = model.score((&idx, &val));
        model.w[j as usize] = orig;
        close(g, (up - down) / (2.0 * eps), &format!("w[{j}]"));
    }
    for (j, g) in &grad.v {
        for (f, &gf) in g.iter().enumerate() {
            let orig = model.v[[*j as usize, f]];
            model.v[[*j as usize, f]] = orig + eps;
            let up = model.score((&idx, &val));
            model.v[[*j as usize, f]] = orig - eps;
            let down = model.score((&idx, &val));
            model.v[[*j as usize, f]] = orig;
            close(gf, (up - down) / (2.0 * eps), &format!("v[{j},{f}]"));
        }
    }
}

#[test]
fn exported_vectors_reproduce_the_full_fm_score_and_its_ranking() {
    // Users own features 0..40, items 40..100; each has several, so within-side terms matter.
    let model = random_model(100, 8, 5);
    let mut rng = Rng::new(6);
    let mut items = FeatureRows::default();
    let mut item_rows = Vec::new();
    for _ in 0..50 {
        let (idx, val) = random_row(60, 1 + rng.below(4), &mut rng);
        let idx: Vec<u32> = idx.iter().map(|i| i + 40).collect();
        items.push(
            &idx.iter()
                .copied()
                .zip(val.iter().copied())
                .collect::<Vec<_>>(),
        );
        item_rows.push((idx, val));
    }
    let vectors = ItemVectors::new(&model, &items);
    for _ in 0..20 {
        let (u_idx, u_val) = random_row(40, 1 + rng.below(4), &mut rng);
        let query = UserQuery::new(&model, (&u_idx, &u_val));
        let mut exact = Vec::new();
        let mut exported = Vec::new();
        for (i, (i_idx, i_val)) in item_rows.iter().enumerate() {
            let idx: Vec<u32> = u_idx.iter().chain(i_idx).copied().collect();
            let val: Vec<f32> = u_val.iter().chain(i_val).copied().collect();
            // The f64 reference, rounded once to the precision of the exported vectors.
            let fm = model.score_naive((&idx, &val)) as f32;
            let ip = query.constant + fmrecall::kernels::dot(&query.vector, vectors.row(i));
            assert!(
                (fm - ip).abs() <= 1e-4 * fm.abs().max(1.0),
                "item {i}: FM {fm} vs c_u + <P_u, Q_i> {ip}"
            );
            exact.push((i, fm));
            exported.push((i, ip));
        }
        let top = |mut v: Vec<(usize, f32)>| {
            v.sort_by(|a, b| b.1.total_cmp(&a.1));
            v.into_iter().take(10).map(|(i, _)| i).collect::<Vec<_>>()
        };
        assert_eq!(top(exact), top(exported));
    }
}
