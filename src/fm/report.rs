//! The training report written beside the artifact: `history.csv` and `training.svg` (loss and
//! precision@k per epoch), so a person can see how training went without tools.

use std::fmt::Write as _;
use std::path::Path;

use super::train::EpochReport;

/// `history.csv`: one row per epoch (epoch, loss, seconds, then the metrics when evaluated).
pub fn history_csv(history: &[EpochReport]) -> String {
    let k = history.iter().find_map(|r| r.metrics.as_ref().map(|m| m.k));
    let mut out = String::from("epoch,loss,seconds");
    if let Some(k) = k {
        let _ = write!(out, ",precision@{k},recall@{k},ndcg@{k},auc");
    }
    out.push('\n');
    for r in history {
        let _ = write!(out, "{},{:.6},{:.4}", r.epoch, r.loss, r.seconds);
        if k.is_some() {
            match &r.metrics {
                Some(m) => {
                    let _ = write!(
                        out,
                        ",{:.6},{:.6},{:.6},{:.6}",
                        m.precision, m.recall, m.ndcg, m.auc
                    );
                }
                None => out.push_str(",,,,"),
            }
        }
        out.push('\n');
    }
    out
}

/// One panel of the chart: a polyline of `values` against epochs, scaled into its box.
fn panel(svg: &mut String, x0: f64, title: &str, colour: &str, values: &[(usize, f64)]) {
    let (w, h, top, left) = (380.0, 220.0, 40.0, x0 + 50.0);
    let _ = write!(
        svg,
        r##"<text x="{}" y="24" font-size="14" font-family="sans-serif">{title}</text>"##,
        x0 + 50.0
    );
    let _ = write!(
        svg,
        r##"<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#999"/>"##
    );
    if values.is_empty() {
        return;
    }
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &(_, v)| {
            (a.min(v), b.max(v))
        });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let last = values.last().map_or(1, |v| v.0).max(2) as f64;
    let first = values[0].0 as f64;
    let px = |e: usize| left + (e as f64 - first) / (last - first).max(1.0) * w;
    let py = |v: f64| top + h - (v - lo) / span * h;
    let points: Vec<String> = values
        .iter()
        .map(|&(e, v)| format!("{:.1},{:.1}", px(e), py(v)))
        .collect();
    let _ = write!(
        svg,
        r##"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"##,
        points.join(" ")
    );
    for (v, y) in [(hi, top), (lo, top + h)] {
        let _ = write!(
            svg,
            r##"<text x="{}" y="{}" font-size="11" text-anchor="end" font-family="sans-serif">{v:.4}</text>"##,
            left - 4.0,
            y + 4.0
        );
    }
    let _ = write!(
        svg,
        r##"<text x="{}" y="{}" font-size="11" text-anchor="middle" font-family="sans-serif">epoch {first}–{last}</text>"##,
        left + w / 2.0,
        top + h + 18.0
    );
}

/// `training.svg`: loss per epoch, and precision@k per epoch when it was evaluated.
pub fn training_svg(history: &[EpochReport]) -> String {
    let mut svg = String::from(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="900" height="290" viewBox="0 0 900 290"><rect width="900" height="290" fill="white"/>"##,
    );
    let loss: Vec<(usize, f64)> = history.iter().map(|r| (r.epoch, r.loss)).collect();
    panel(&mut svg, 0.0, "training loss per epoch", "#c0392b", &loss);
    let precision: Vec<(usize, f64)> = history
        .iter()
        .filter_map(|r| r.metrics.as_ref().map(|m| (r.epoch, m.precision)))
        .collect();
    let k = history
        .iter()
        .find_map(|r| r.metrics.as_ref().map(|m| m.k))
        .unwrap_or(10);
    panel(
        &mut svg,
        450.0,
        &format!("precision@{k} per epoch"),
        "#2471a3",
        &precision,
    );
    svg.push_str("</svg>\n");
    svg
}

/// Writes both files into `dir`.
pub fn write(dir: &Path, history: &[EpochReport]) -> std::io::Result<()> {
    std::fs::write(dir.join("history.csv"), history_csv(history))?;
    std::fs::write(dir.join("training.svg"), training_svg(history))
}
