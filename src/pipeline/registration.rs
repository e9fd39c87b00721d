//! Registering a finished run, and activating it when asked or when a rule on its figures holds.

use serde::Serialize;

use super::{JobError, TrainSummary};
use crate::fm::{Metrics, ModelArtifact};

/// A condition on a training run's figures, e.g. `precision@10>=0.15`, that must hold for the run to
/// be activated.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivationRule {
    metric: String,
    op: Operator,
    value: f64,
}

/// How an activation rule compares the figure with its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    AtLeast,
    AtMost,
    Above,
    Below,
}

impl Operator {
    /// The operators as written, two-character ones first so that `>=` is not read as `>`.
    const ALL: [(&'static str, Operator); 4] = [
        (">=", Operator::AtLeast),
        ("<=", Operator::AtMost),
        (">", Operator::Above),
        ("<", Operator::Below),
    ];

    fn holds(self, figure: f64, value: f64) -> bool {
        match self {
            Operator::AtLeast => figure >= value,
            Operator::AtMost => figure <= value,
            Operator::Above => figure > value,
            Operator::Below => figure < value,
        }
    }

    fn symbol(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, c)| *c == self)
            .map_or("?", |(s, _)| s)
    }
}

impl std::str::FromStr for ActivationRule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        for (symbol, op) in Operator::ALL {
            if let Some((metric, value)) = s.split_once(symbol) {
                let value: f64 = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("{s:?}: {value:?} is not a number"))?;
                return Ok(ActivationRule {
                    metric: metric.trim().to_string(),
                    op,
                    value,
                });
            }
        }
        Err(format!(
            "{s:?}: expected METRIC>=VALUE (or >, <=, <), e.g. precision@10>=0.15"
        ))
    }
}

impl ActivationRule {
    /// Whether the run's figures satisfy the rule; an error says why it cannot be judged (a run
    /// that was not evaluated, a figure the run does not have).
    pub fn holds(&self, metrics: Option<&Metrics>) -> Result<bool, String> {
        let Some(m) = metrics else {
            return Err("the run was not evaluated (--split none), so no figure can hold".into());
        };
        let figure = m
            .named()
            .into_iter()
            .find(|(name, _)| *name == self.metric)
            .map(|(_, v)| v)
            .ok_or_else(|| {
                let names: Vec<String> = m.named().into_iter().map(|(n, _)| n).collect();
                format!(
                    "no figure {:?}; the run has {}",
                    self.metric,
                    names.join(", ")
                )
            })?;
        Ok(self.op.holds(figure, self.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_rules_parse_and_compare() {
        let m = Metrics {
            k: 10,
            precision: 0.16,
            recall: 0.3,
            ndcg: 0.25,
            auc: 0.9,
            users: 5,
        };
        let rule: ActivationRule = "precision@10>=0.15".parse().unwrap();
        assert!(rule.holds(Some(&m)).unwrap());
        assert!(!"auc > 0.95"
            .parse::<ActivationRule>()
            .unwrap()
            .holds(Some(&m))
            .unwrap());
        assert!("precision@10=0.1".parse::<ActivationRule>().is_err());
        assert!("recall@20>=0.1"
            .parse::<ActivationRule>()
            .unwrap()
            .holds(Some(&m))
            .is_err());
        assert!(rule.holds(None).unwrap_err().contains("not evaluated"));
    }
}

/// Whether a registered run becomes the active model.
#[derive(Debug, Clone, PartialEq)]
pub enum Activation {
    /// Stay a candidate.
    Never,
    /// Activate.
    Always,
    /// Activate when the rule holds on the run's test figures.
    If(ActivationRule),
}

/// What registering a run did.
#[derive(Debug, Clone, Serialize)]
pub struct Registration {
    /// Registry id.
    pub registry_id: i64,
    /// Whether the run is now the active model.
    pub activated: bool,
    /// Why it was or was not activated.
    pub reason: String,
}

/// Registers a finished run as a candidate and activates it according to `activation`.
pub async fn register(
    store: &crate::store::Store,
    summary: &TrainSummary,
    activation: &Activation,
) -> Result<Registration, JobError> {
    let artifact = ModelArtifact::load(&summary.artifact)?;
    let record = store
        .register_model(&artifact.meta, &summary.artifact)
        .await
        .map_err(|e| JobError::Registry(e.to_string()))?;
    let (activate, reason) = match activation {
        Activation::Never => (false, "registered as a candidate".to_string()),
        Activation::Always => (true, "activated (--activate)".to_string()),
        Activation::If(rule) => match rule.holds(summary.metrics.as_ref()) {
            Ok(true) => (true, format!("activated: {rule} holds")),
            Ok(false) => (false, format!("left a candidate: {rule} does not hold")),
            Err(e) => (false, format!("left a candidate: {e}")),
        },
    };
    if activate {
        store
            .activate(record.id, "train")
            .await
            .map_err(|e| JobError::Registry(e.to_string()))?;
    }
    Ok(Registration {
        registry_id: record.id,
        activated: activate,
        reason,
    })
}

impl std::fmt::Display for ActivationRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}{}", self.metric, self.op.symbol(), self.value)
    }
}
