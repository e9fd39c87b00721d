//! What a training run reports: the summary, as JSON for scripts and as text for people.

use std::path::PathBuf;

use serde::Serialize;

use crate::data::FeatureSet;
use crate::fm::artifact::ModelFit;
use crate::fm::eval::{ColdKind, ColdStart};
use crate::fm::Metrics;

/// What a training run produced.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    /// Test-split figures of the model (None without test positives).
    pub metrics: Option<Metrics>,
    /// The popularity ranking's figures on the same split, for comparison.
    pub popularity: Option<Metrics>,
    /// When the model learns from other ratings than the evaluation's positives
    /// (`train_min_rating`): popularity counted on those same training interactions, overall and
    /// (under a `users:`/`items:` split) on what was held out, so that the model is also compared
    /// with a popularity that saw what it saw.
    pub popularity_training: Option<(Option<Metrics>, Option<Metrics>)>,
    /// Under a `users:` or `items:` split: the model against popularity on what was held out.
    pub cold_start: Option<ColdStart>,
    /// Wall time of the epochs of the evaluated run (of the final run when nothing was evaluated).
    pub train_seconds: f64,
    /// Wall time of the epochs of the refit on all interactions, when there was one.
    pub refit_seconds: Option<f64>,
    /// Epochs the final model was trained for.
    pub epochs: usize,
    /// What the written model was fitted on, and so where `metrics` come from.
    pub fit: ModelFit,
    /// The feature set applied (`auto` resolved).
    pub features: FeatureSet,
    /// Test users the per-epoch history was measured on (a sample under `--eval-users`).
    pub history_users: Option<usize>,
    /// Things the user should know about the run, e.g. side features of the data left unused.
    pub warnings: Vec<String>,
    /// Path of the written model file.
    pub artifact: PathBuf,
    /// The model's version.
    pub version: String,
    /// Wall time of loading and splitting the files (None when the data came from elsewhere).
    pub load_seconds: Option<f64>,
    /// Wall time of the final evaluation of the model on every test user.
    pub eval_seconds: Option<f64>,
    /// Peak resident memory of the process so far (Linux: VmHWM), in bytes.
    pub peak_rss_bytes: Option<u64>,
}

impl TrainSummary {
    /// The `--json` object: metric keys flat (`precision@10`, …), then timing and the artifact.
    pub fn to_json(&self) -> serde_json::Value {
        let mut obj = serde_json::Map::new();
        if let Some(m) = &self.metrics {
            if let serde_json::Value::Object(figures) = serde_json::to_value(m).unwrap_or_default()
            {
                obj.extend(figures);
            }
        }
        obj.insert("train_seconds".into(), self.train_seconds.into());
        if let Some(seconds) = self.refit_seconds {
            obj.insert("refit_seconds".into(), seconds.into());
        }
        obj.insert("epochs".into(), self.epochs.into());
        obj.insert(
            "fit".into(),
            serde_json::to_value(self.fit).unwrap_or_default(),
        );
        obj.insert(
            "features".into(),
            serde_json::to_value(self.features).unwrap_or_default(),
        );
        obj.insert("warnings".into(), self.warnings.clone().into());
        if let Some(users) = self.history_users {
            obj.insert("history_users".into(), users.into());
        }
        obj.insert(
            "artifact".into(),
            self.artifact.display().to_string().into(),
        );
        obj.insert("version".into(), self.version.clone().into());
        for (name, value) in [
            ("load_seconds", self.load_seconds),
            ("eval_seconds", self.eval_seconds),
        ] {
            if let Some(v) = value {
                obj.insert(name.into(), v.into());
            }
        }
        if let Some(bytes) = self.peak_rss_bytes {
            obj.insert("peak_rss_bytes".into(), bytes.into());
        }
        if let Some(p) = &self.popularity {
            obj.insert(
                "popularity".into(),
                serde_json::to_value(p).unwrap_or_default(),
            );
        }
        if let Some(c) = &self.cold_start {
            obj.insert(
                "cold_start".into(),
                serde_json::to_value(c).unwrap_or_default(),
            );
        }
        if let Some((overall, cold)) = &self.popularity_training {
            obj.insert(
                "popularity_training".into(),
                serde_json::json!({ "overall": overall, "cold_start": cold }),
            );
        }
        serde_json::Value::Object(obj)
    }

    /// A short human-readable report.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "model {} ({} epochs, {:.2} s) written to {}\n",
            self.version,
            self.epochs,
            self.train_seconds + self.refit_seconds.unwrap_or(0.0),
            self.artifact.display()
        );
        match self.fit {
            ModelFit::AllAfterEvaluation => out.push_str(
                "refit on all interactions after evaluation; the figures below are the \
                 evaluated run's (same settings and epochs, trained on the train split)\n",
            ),
            ModelFit::AllUnevaluated => {
                out.push_str("trained on all interactions (--split none): not evaluated\n")
            }
            ModelFit::TrainSplit => {}
        }
        let mut costs = Vec::new();
        if let Some(s) = self.load_seconds {
            costs.push(format!("load {s:.1} s"));
        }
        if let Some(s) = self.eval_seconds {
            let users = self.metrics.as_ref().map_or(0, |m| m.users);
            costs.push(format!("final evaluation {s:.1} s ({users} users)"));
        }
        if let Some(users) = self.history_users {
            costs.push(format!("per-epoch history on {users} users"));
        }
        if let Some(bytes) = self.peak_rss_bytes {
            costs.push(format!("peak RSS {:.2} GB", bytes as f64 / 1e9));
        }
        if !costs.is_empty() {
            out.push_str(&costs.join("; "));
            out.push('\n');
        }
        match (&self.metrics, &self.popularity) {
            (Some(m), Some(p)) => out.push_str(&comparison_table(m, p)),
            _ if self.fit == ModelFit::AllUnevaluated => {}
            _ => out.push_str("no test positives: nothing evaluated\n"),
        }
        if let Some(c) = &self.cold_start {
            out.push_str(&cold_start_text(c));
        }
        out
    }
}

/// One figure as text: counts as integers, the rest to four decimals.
pub fn figure_text(name: &str, value: f64) -> String {
    if name == "users" {
        format!("{value:.0}")
    } else {
        format!("{value:.4}")
    }
}

/// The model's figures and popularity's side by side, one row per figure.
fn comparison_table(model: &Metrics, popularity: &Metrics) -> String {
    let mut out = format!("{:>14} {:>8} {:>10}\n", "", "model", "popularity");
    for ((name, a), (_, b)) in model.named().into_iter().zip(popularity.named()) {
        let (a, b) = (figure_text(&name, a), figure_text(&name, b));
        out.push_str(&format!("{name:>14} {a:>8} {b:>10}\n"));
    }
    out
}

/// The cold-start figures as text: the model and popularity side by side.
fn cold_start_text(c: &ColdStart) -> String {
    let table =
        |title: String, m: &Metrics, p: &Metrics| format!("{title}\n{}", comparison_table(m, p));
    match c.kind {
        ColdKind::Users => table(
            format!(
                "cold-start users: {} held out whole, ranked from their side features",
                c.held_out
            ),
            &c.model,
            &c.popularity,
        ),
        ColdKind::Items => {
            let mut out = table(
                format!(
                    "cold-start items: {} held out whole; their positives against the whole \
                     catalog (recall@{} = share reaching the top {})",
                    c.held_out, c.model.k, c.model.k
                ),
                &c.model,
                &c.popularity,
            );
            if let Some(a) = &c.among_held_out {
                out.push_str(&table(
                    "held-out items ranked among themselves".into(),
                    &a.model,
                    &a.popularity,
                ));
            }
            out
        }
    }
}
