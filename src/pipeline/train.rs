//! The training and evaluation jobs.

use std::path::PathBuf;

use serde::Serialize;

use super::{JobError, TrainSummary};
use crate::data::{
    DataError, DataSource, Dataset, FeatureRows, FeatureSet, FeatureVocabulary, Part,
    ValidationSplit,
};
use crate::fm::artifact::{make_version, rfc3339, ArtifactMeta, ModelFit, TrainingInfo};
use crate::fm::eval::{
    evaluate, evaluate_model, evaluate_model_reporting, popularity, ColdKind, ColdStart, Comparison,
};
use crate::fm::history::{self, HistoryMeta};
use crate::fm::train::{train, EpochReport, TrainOutcome};
use crate::fm::{
    EvalSet, FmModel, Metrics, ModelArtifact, Schedule, TrainError, TrainHistory, TrainParams,
    TrainingSet,
};

/// How the number of epochs is chosen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum EpochChoice {
    /// A fixed count.
    Fixed(usize),
    /// Early stopping on validation data carved from the train split.
    EarlyStopping {
        /// Upper bound.
        max_epochs: usize,
        /// Epochs without improvement before stopping.
        patience: usize,
        /// Retrain on the whole train split for the chosen number of epochs (otherwise keep the
        /// best epoch of the validation run).
        refit: bool,
    },
}

/// Everything `fmrecall train` needs.
#[derive(Debug, Clone)]
pub struct TrainJob {
    /// Data to learn from and how it is split.
    pub source: DataSource,
    /// Ids only or ids plus side features.
    pub features: FeatureSet,
    /// Ratings at or above this are positives: of evaluation, of the popularity baseline and, unless
    /// `train_min_rating` says otherwise, of training.
    pub min_rating: f32,
    /// Ratings at or above this are what the model learns from (None: `min_rating`). Lower than
    /// `min_rating`, every such interaction counts as implicit feedback ("watched") in training,
    /// while evaluation positives stay those at `min_rating`.
    pub train_min_rating: Option<f32>,
    /// Hyper-parameters.
    pub params: TrainParams,
    /// Epoch schedule.
    pub epochs: EpochChoice,
    /// Cut-off of the ranking metrics.
    pub eval_k: usize,
    /// Artifact folder.
    pub out: PathBuf,
    /// Evaluate on validation data carved from the train split instead of the test split, so
    /// that hyper-parameters can be compared without ever looking at the test split.
    pub tune: bool,
    /// Share of each user's train positives held out as validation data (under a `users:` or
    /// `items:` split: share of the training users or items held out whole).
    pub validation_fraction: f64,
    /// Seed of the validation carve (default: the data seed), so that several carves of the same
    /// train split can be averaged when choosing hyper-parameters.
    pub validation_seed: Option<u64>,
    /// The deployment path: once the run on the train split is evaluated, train again on every
    /// interaction with the same settings and epoch count and keep that model (see [`ModelFit`]).
    pub refit_on_all: bool,
    /// Epochs between two evaluations of the per-epoch history (the last epoch is always
    /// evaluated; 0: only the last).
    pub eval_every: usize,
    /// The per-epoch history on a seeded sample of this many test users (None: all of them); the
    /// final figures are always on all test users.
    pub eval_users: Option<usize>,
}

/// Progress events for whoever draws a progress bar.
#[derive(Debug)]
pub enum Progress<'a> {
    /// A training phase starts (`validation` or `final`), with its epoch bound.
    Phase {
        /// Name of the phase.
        name: &'static str,
        /// Upper bound on its epochs.
        epochs: usize,
    },
    /// An epoch finished.
    Epoch(&'a EpochReport),
    /// A step outside the epochs starts (loading the data, evaluating, writing the artifact), so
    /// that a batch job's log says where the time goes.
    Stage(&'static str),
    /// The final evaluation has ranked `done` of its `total` users (about every 10 s).
    Evaluated {
        /// Users evaluated so far.
        done: usize,
        /// Users to evaluate.
        total: usize,
    },
}

/// The data prepared for one training run.
struct Prepared {
    training: TrainingSet,
    eval: Option<EvalSet>,
}

/// Positive thresholds: what training learns from and what evaluation counts.
#[derive(Debug, Clone, Copy)]
struct Thresholds {
    train: f32,
    eval: f32,
}

impl Thresholds {
    /// Evaluation at `min_rating`; training at `train_min_rating`, or the same when absent.
    fn new(min_rating: f32, train_min_rating: Option<f32>) -> Self {
        Thresholds {
            train: train_min_rating.unwrap_or(min_rating),
            eval: min_rating,
        }
    }
}

/// Per user, (item, history feature) of the most recent `max_items` items of their train history
/// that the vocabulary has a history feature for (`fm::history`).
fn history_features(
    dataset: &Dataset,
    vocab: &FeatureVocabulary,
    max_items: usize,
) -> Vec<Vec<(u32, u32)>> {
    let ids: Vec<&str> = dataset.items.iter().map(|e| e.id.as_str()).collect();
    let features = history::item_features(vocab, &ids);
    history::train_histories(dataset, max_items.max(1))
        .into_iter()
        .map(|items| {
            items
                .into_iter()
                .filter_map(|i| Some((i, features[i as usize]?)))
                .collect()
        })
        .collect()
}

/// The vocabulary of a model trained on `dataset`, with a history feature per item it knows when
/// `history` > 0.
fn vocabulary(dataset: &Dataset, history: usize) -> FeatureVocabulary {
    let vocab = FeatureVocabulary::from_train(dataset);
    if history == 0 {
        return vocab;
    }
    let names: Vec<String> = (dataset.items.iter().enumerate())
        .filter(|(i, _)| !dataset.held_out.item(*i as u32))
        .map(|(_, e)| history::feature_name(&e.id))
        .collect();
    vocab.with_features(names)
}

fn prepare(
    dataset: &Dataset,
    vocab: &FeatureVocabulary,
    thresholds: Thresholds,
    k: usize,
    history: (usize, f32),
) -> Prepared {
    // Held-out users and items are seen from their side features alone, even where the vocabulary
    // knows their id (validation users carved from the training users, under early stopping).
    let held = &dataset.held_out;
    let user_rows = FeatureRows::encode_dropping_ids(vocab, &dataset.users, |u| held.user(u));
    // With history features, training builds each positive's row itself (leaving the positive
    // out); evaluation sees every user with their whole (cut) train history, as serving does.
    let (history, causal) = history;
    // Every train item of each user (causal histories reach back from any positive), the last
    // `history` of them for evaluation.
    let histories = (history > 0).then(|| history_features(dataset, vocab, usize::MAX));
    let eval_user_rows = match &histories {
        Some(h) => {
            let features: Vec<Vec<u32>> = h
                .iter()
                .map(|h| {
                    h[h.len().saturating_sub(history)..]
                        .iter()
                        .map(|&(_, f)| f)
                        .collect()
                })
                .collect();
            user_rows.with_histories(&features)
        }
        None => user_rows.clone(),
    };
    let item_rows = FeatureRows::encode_dropping_ids(vocab, &dataset.items, |i| held.item(i));
    let positive = |it: &crate::data::Interaction| Dataset::is_positive(it, thresholds.train);
    let positives: Vec<(u32, u32)> = dataset
        .interactions
        .iter()
        .filter(|it| it.part == Part::Train && positive(it))
        .map(|it| (it.user, it.item))
        .collect();
    let seen = crate::fm::SeenPairs::new(&dataset.items_by_user(Part::Train, |_| true));
    let eval = EvalSet::new(
        dataset,
        thresholds.eval,
        k,
        eval_user_rows,
        item_rows.clone(),
    );
    Prepared {
        training: TrainingSet {
            user_side_rows: FeatureRows::encode_dropping_ids(vocab, &dataset.users, |_| true),
            item_side_rows: FeatureRows::encode_dropping_ids(vocab, &dataset.items, |_| true),
            is_id: {
                let mut is_id = vec![false; vocab.len()];
                let ids = dataset.users.iter().chain(&dataset.items);
                for j in ids.filter_map(|e| vocab.get(e.features.first()?)) {
                    is_id[j as usize] = true;
                }
                // An item's history feature is its own, like an id (and learns at the ids' rate).
                for j in 0..vocab.len() as u32 {
                    if history::is_history_feature(vocab.name(j)) {
                        is_id[j as usize] = true;
                    }
                }
                is_id
            },
            user_rows,
            item_rows,
            positives,
            seen,
            history: histories.map(|h| TrainHistory::new(h, history, causal)),
        },
        eval: (!eval.users.is_empty()).then_some(eval),
    }
}

/// Runs the training job on the files `job.source` names and writes the artifact and its report
/// into `job.out` (where `{version}` stands for the new model's version).
pub fn run_train(
    job: &TrainJob,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<TrainSummary, JobError> {
    job.params.check()?;
    progress(Progress::Stage("loading data"));
    let started = std::time::Instant::now();
    let dataset = Dataset::load(&job.source)?;
    let load_seconds = started.elapsed().as_secs_f64();
    let mut summary = train_on(job, dataset, progress)?;
    summary.load_seconds = Some(load_seconds);
    Ok(summary)
}

/// The process's peak resident set (VmHWM of /proc/self/status) in bytes, where Linux says.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The training job on an already loaded and split dataset (e.g. read from the database).
///
/// The epochs are chosen on validation data carved from the train split (or fixed); the model
/// trained on the train split is evaluated on the test split; then, on the deployment path
/// (`refit_on_all`), a model with the same settings and epoch count is trained on every
/// interaction, and that is the one written, with the evaluated run's figures.
pub fn train_on(
    job: &TrainJob,
    mut dataset: Dataset,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<TrainSummary, JobError> {
    job.params.check()?;
    let (features, unused_features) = dataset.restrict_features(job.features);
    let warnings: Vec<String> = unused_features.into_iter().collect();
    if job.tune {
        dataset = ValidationSplit::carve(
            &dataset,
            job.validation_fraction,
            job.min_rating,
            job.validation_seed.unwrap_or(job.params.seed),
        );
    }
    let history = (job.params.history, job.params.causal_history);
    let vocab = vocabulary(&dataset, history.0);
    let thresholds = Thresholds::new(job.min_rating, job.train_min_rating);
    let full = prepare(&dataset, &vocab, thresholds, job.eval_k, history);
    if full.training.positives.is_empty() {
        return Err(DataError::Unusable(format!(
            "{}: no train interaction has a rating >= {} (no positives to learn from)",
            job.source.dir.display(),
            thresholds.train
        ))
        .into());
    }
    let n = vocab.len();
    // The per-epoch history of the evaluated run, on a seeded sample of the test users when asked
    // (the final figures below are on all of them).
    let sampled = (full.eval.as_ref()).and_then(|set| match job.eval_users {
        Some(n) if n < set.users.len() => Some(set.sample_users(n, job.params.seed)),
        _ => None,
    });
    let history_set = sampled.as_ref().or(full.eval.as_ref());
    let history_users = history_set.map(|set| set.users.len());
    let fixed = |prepared: &Prepared,
                 history: Option<&EvalSet>,
                 n: usize,
                 epochs: usize,
                 r: &mut dyn FnMut(&EpochReport)| {
        let schedule = Schedule::Fixed {
            epochs,
            evaluate_every: job.eval_every,
        };
        train(&job.params, &prepared.training, n, history, schedule, r)
    };
    let mut validation_history = Vec::new();
    let outcome: TrainOutcome = match job.epochs {
        EpochChoice::Fixed(epochs) => phase(progress, "final", epochs, |r| {
            fixed(&full, history_set, n, epochs, r)
        })?,
        EpochChoice::EarlyStopping {
            max_epochs,
            patience,
            refit,
        } => {
            let seed = job.validation_seed.unwrap_or(job.params.seed);
            let carved =
                ValidationSplit::carve(&dataset, job.validation_fraction, job.min_rating, seed);
            let val = prepare(&carved, &vocab, thresholds, job.eval_k, history);
            let Some(val_eval) = val.eval.as_ref() else {
                return Err(DataError::Unusable(
                    "too few positives per user to carve validation data for early stopping \
                     (give a fixed --epochs N)"
                        .into(),
                )
                .into());
            };
            let schedule = Schedule::EarlyStopping {
                max_epochs,
                patience,
            };
            let chosen = phase(progress, "validation", max_epochs, |r| {
                train(&job.params, &val.training, n, Some(val_eval), schedule, r)
            })?;
            validation_history = chosen.history.clone();
            if refit {
                let epochs = chosen.best_epoch.max(1);
                phase(progress, "final", epochs, |r| {
                    fixed(&full, history_set, n, epochs, r)
                })?
            } else {
                chosen
            }
        }
    };
    let early = matches!(job.epochs, EpochChoice::EarlyStopping { .. });
    if full.eval.is_some() {
        progress(Progress::Stage("evaluating"));
    }
    let eval_started = std::time::Instant::now();
    let metrics = full.eval.as_ref().map(|set| {
        evaluate_model_reporting(
            &outcome.model,
            set,
            job.params.threads,
            &mut |done, total| progress(Progress::Evaluated { done, total }),
        )
    });
    let eval_seconds = metrics
        .as_ref()
        .map(|_| eval_started.elapsed().as_secs_f64());
    // Popularity counted at a rating threshold, over the test users and over the cold ones (whose
    // figures come with the model's beside them).
    let popularity_at = |threshold| {
        let counts = popularity(&dataset, threshold);
        let overall = full.eval.as_ref().map(|set| {
            evaluate(set, job.params.threads, |_, out| {
                out.copy_from_slice(&counts)
            })
        });
        let cold = full.eval.as_ref().and_then(|set| {
            cold_start_figures(&dataset, set, &outcome.model, &counts, job.params.threads)
        });
        (overall, cold)
    };
    let (popularity_metrics, cold_start) = popularity_at(job.min_rating);
    let popularity_training = (thresholds.train != thresholds.eval).then(|| {
        let (overall, cold) = popularity_at(thresholds.train);
        (overall, cold.map(|c| c.popularity))
    });

    // The deployment path: what was evaluated is trained once more on everything. Tuning runs are
    // not models to serve, and a run with nothing evaluated has learnt from everything already.
    let evaluated = metrics.is_some();
    // The train split's rows and test set are done with: not kept alive beside the refit's.
    drop(full);
    let (fit, served, refit_seconds) = if job.refit_on_all && evaluated && !job.tune {
        let everything = dataset.into_everything_as_train();
        let vocab_all = vocabulary(&everything, history.0);
        let all = prepare(&everything, &vocab_all, thresholds, job.eval_k, history);
        let epochs = outcome.best_epoch.max(1);
        let n_all = vocab_all.len();
        let refitted = phase(progress, "refit", epochs, |r| {
            fixed(&all, None, n_all, epochs, r)
        })?;
        let seconds = refitted.train_seconds;
        (
            ModelFit::AllAfterEvaluation,
            Fitted {
                dataset: everything,
                vocabulary: vocab_all,
                model: refitted.model,
            },
            Some(seconds),
        )
    } else {
        let fit = if evaluated || job.tune {
            ModelFit::TrainSplit
        } else {
            ModelFit::AllUnevaluated
        };
        let fitted = Fitted {
            dataset,
            vocabulary: vocab,
            model: outcome.model.clone(),
        };
        (fit, fitted, None)
    };

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let version = make_version(now, &served.model);
    let training = TrainingInfo {
        data: format!("{:?}:{}", job.source.format, job.source.dir.display()).to_lowercase(),
        split: job.source.split.to_string(),
        features,
        min_rating: job.min_rating,
        train_min_rating: job.train_min_rating,
        epochs: outcome.best_epoch,
        early_stopping: early,
        train_seconds: outcome.train_seconds,
        history: outcome.history.clone(),
        history_users,
        validation_history,
        fit,
    };
    let artifact = build_artifact(
        job,
        served,
        training,
        (metrics.clone(), cold_start.clone()),
        &version,
        now,
    );
    let out = PathBuf::from(job.out.to_string_lossy().replace("{version}", &version));
    progress(Progress::Stage("writing the artifact"));
    let path = artifact.write(&out)?;
    crate::fm::report::write(&out, &outcome.history).map_err(|source| JobError::Report {
        path: out.clone(),
        source,
    })?;
    Ok(TrainSummary {
        history_users,
        metrics,
        popularity: popularity_metrics,
        popularity_training,
        cold_start,
        train_seconds: outcome.train_seconds,
        refit_seconds,
        epochs: outcome.best_epoch,
        fit,
        features,
        warnings,
        artifact: path,
        version,
        load_seconds: None,
        eval_seconds,
        peak_rss_bytes: peak_rss_bytes(),
    })
}

/// The model to write, with the data and vocabulary it was fitted on.
struct Fitted {
    dataset: Dataset,
    vocabulary: FeatureVocabulary,
    model: FmModel,
}

/// The model against popularity on the users or items a `users:`/`items:` split held out whole
/// (see [`ColdStart`] for what is measured); None for other splits.
fn cold_start_figures(
    dataset: &Dataset,
    set: &EvalSet,
    model: &FmModel,
    popularity_counts: &[f32],
    threads: usize,
) -> Option<ColdStart> {
    let held = &dataset.held_out;
    let compare = |set: &EvalSet| Comparison {
        model: evaluate_model(model, set, threads),
        popularity: evaluate(set, threads, |_, out| {
            out.copy_from_slice(popularity_counts)
        }),
    };
    let (kind, count, set, among) = if !held.users.is_empty() {
        let cold = set.only_users(|u| held.user(u));
        (ColdKind::Users, held.users.len(), cold, None)
    } else if !held.items.is_empty() {
        let cold = set.only_positives(|i| held.item(i));
        let among = cold.among(|i| held.item(i));
        let among = (!among.users.is_empty()).then(|| compare(&among));
        (ColdKind::Items, held.items.len(), cold, among)
    } else {
        return None;
    };
    if set.users.is_empty() {
        return None;
    }
    let Comparison { model, popularity } = compare(&set);
    Some(ColdStart {
        kind,
        held_out: count,
        model,
        popularity,
        among_held_out: among,
    })
}

/// Announces a training phase, then runs it, forwarding each epoch's report.
fn phase<T>(
    progress: &mut dyn FnMut(Progress<'_>),
    name: &'static str,
    epochs: usize,
    run: impl FnOnce(&mut dyn FnMut(&EpochReport)) -> T,
) -> T {
    progress(Progress::Phase { name, epochs });
    run(&mut |r| progress(Progress::Epoch(r)))
}

fn build_artifact(
    job: &TrainJob,
    fitted: Fitted,
    training: TrainingInfo,
    (metrics, cold_start): (Option<Metrics>, Option<ColdStart>),
    version: &str,
    now: u64,
) -> ModelArtifact {
    // Only users the model has seen in training are "known" (the others are cold-start users);
    // what each of them has seen is every interaction of theirs, test ones included, so that
    // recall never offers an item the user already had.
    let dataset = &fitted.dataset;
    let in_train = dataset.users_in_train();
    // Items an `items:` split held out whole were never trained on: the model does not serve
    // them, as in production, where such an item arrives through `PUT /v1/items/{id}` and is
    // served from its features (exactly the vector the cold-item evaluation ranked it by).
    let held = &dataset.held_out;
    let mut slot = vec![u32::MAX; dataset.items.len()];
    let mut items = Vec::with_capacity(dataset.items.len() - held.items.len());
    for (i, item) in dataset.items.iter().enumerate() {
        if !held.item(i as u32) {
            slot[i] = items.len() as u32;
            items.push(item.clone());
        }
    }
    let mut users = Vec::new();
    let mut seen = Vec::new();
    for ((user, trained), all) in dataset.users.iter().zip(in_train).zip(dataset.seen_items()) {
        if trained {
            users.push(user.clone());
            seen.push(
                all.iter()
                    .map(|&i| slot[i as usize])
                    .filter(|&s| s != u32::MAX)
                    .collect(),
            );
        }
    }
    // The train history of each known user, in artifact item slots: serving rebuilds their row
    // from it and the events since (`fm::history`).
    let history = (job.params.history > 0).then(|| {
        let all = history::train_histories(dataset, job.params.history);
        HistoryMeta {
            max_items: job.params.history,
            per_user: (all.iter().zip(dataset.users_in_train()))
                .filter(|(_, trained)| *trained)
                .map(|(items, _)| {
                    items
                        .iter()
                        .map(|&i| slot[i as usize])
                        .filter(|&s| s != u32::MAX)
                        .collect()
                })
                .collect(),
        }
    });
    ModelArtifact {
        meta: ArtifactMeta {
            history,
            version: version.to_string(),
            created_at: rfc3339(now),
            params: job.params.clone(),
            training,
            metrics,
            cold_start,
            vocabulary: fitted.vocabulary,
            users,
            items,
            seen,
        },
        model: fitted.model,
    }
}

/// What `fmrecall eval` measured.
#[derive(Debug, Clone)]
pub struct EvalOutcome {
    /// The model's figures on the split.
    pub metrics: Metrics,
    /// Why the figures may not mean what they seem, e.g. a model that was fitted on every
    /// interaction (test ones included) of its data.
    pub warnings: Vec<String>,
}

/// `fmrecall eval`: the saved model's figures on a dataset and split.
pub fn run_eval(
    model_path: &std::path::Path,
    source: &DataSource,
    k: usize,
    threads: usize,
) -> Result<EvalOutcome, JobError> {
    let artifact = ModelArtifact::load(model_path)?;
    let mut dataset = Dataset::load(source)?;
    dataset.restrict_features(artifact.meta.training.features);
    let training = &artifact.meta.training;
    let warnings = match training.fit {
        ModelFit::TrainSplit => Vec::new(),
        ModelFit::AllAfterEvaluation | ModelFit::AllUnevaluated => vec![format!(
            "{}: this model was fitted on every interaction of {} (the deployment path), so its \
             figures on a split of that data are inflated; train with --no-refit to evaluate a \
             model on a split",
            model_path.display(),
            training.data
        )],
    };
    let min_rating = artifact.meta.training.min_rating;
    let thresholds = Thresholds::new(min_rating, artifact.meta.training.train_min_rating);
    let prepared = prepare(
        &dataset,
        &artifact.meta.vocabulary,
        thresholds,
        k,
        (
            artifact.meta.params.history,
            artifact.meta.params.causal_history,
        ),
    );
    let set = prepared.eval.ok_or_else(|| {
        DataError::Unusable("the split has no test positives to evaluate on".into())
    })?;
    Ok(EvalOutcome {
        metrics: evaluate_model(&artifact.model, &set, threads),
        warnings,
    })
}

/// `fmrecall eval --replay`: the saved model, trained on the train part of a `time:` split,
/// against each user's interactions after T replayed in time order (`fm::replay`).
pub fn run_replay(
    model_path: &std::path::Path,
    source: &DataSource,
    k: usize,
    threads: usize,
) -> Result<(crate::fm::replay::ReplayReport, Vec<String>), JobError> {
    if !matches!(source.split, crate::data::SplitSpec::Time { .. }) {
        return Err(DataError::InvalidOption(format!(
            "--replay replays interactions in time order: give --split time:QUANTILE, not {}",
            source.split
        ))
        .into());
    }
    let artifact = ModelArtifact::load(model_path)?;
    let mut dataset = Dataset::load(source)?;
    dataset.restrict_features(artifact.meta.training.features);
    let training = &artifact.meta.training;
    let mut warnings = Vec::new();
    if training.split != source.split.to_string() || training.fit != ModelFit::TrainSplit {
        warnings.push(format!(
            "{}: this model was fitted on {} ({}), not on the train part of --split {}: the \
             replay sees what it learnt from",
            model_path.display(),
            training.split,
            training.fit.figures_source(),
            source.split
        ));
    }
    let report = crate::fm::replay::replay(&artifact, &dataset, k, threads);
    if report.steps == 0 {
        return Err(
            DataError::Unusable("the split has no interaction after T to replay".into()).into(),
        );
    }
    Ok((report, warnings))
}

/// The data source described by the `[data]` settings.
pub fn data_source(d: &crate::config::DataSettings) -> Result<DataSource, DataError> {
    Ok(DataSource {
        format: d.format,
        dir: d.dir.clone(),
        split: d.split.parse()?,
        seed: d.seed,
        synthetic: d.synthetic.clone(),
        columns: d.columns.clone(),
    })
}

impl TrainJob {
    /// The job the settings describe.
    pub fn from_settings(s: &crate::config::Settings) -> Result<TrainJob, JobError> {
        let t = &s.train;
        let params = TrainParams {
            loss: t.loss,
            dim: t.dim,
            learning_rate: t.learning_rate,
            l2: t.l2,
            max_sampled: t.max_sampled,
            init_std: t.init_std,
            threads: t.threads,
            seed: s.data.seed,
            user_id_dropout: t.user_id_dropout,
            item_id_dropout: t.item_id_dropout,
            side_learning_rate: t.side_learning_rate,
            history: t.history,
            causal_history: t.causal_history,
        };
        params.check()?;
        if !(t.validation_fraction > 0.0 && t.validation_fraction < 1.0) {
            return Err(TrainError::InvalidParameter {
                name: "validation_fraction",
                allowed: "in (0, 1)",
                value: t.validation_fraction.to_string(),
            }
            .into());
        }
        if let Some(r) = t.train_min_rating.filter(|r| !r.is_finite()) {
            return Err(TrainError::InvalidParameter {
                name: "train_min_rating",
                allowed: "a finite number",
                value: r.to_string(),
            }
            .into());
        }
        if t.epochs == Some(0) || t.max_epochs == 0 {
            return Err(TrainError::InvalidParameter {
                name: if t.epochs == Some(0) {
                    "epochs"
                } else {
                    "max_epochs"
                },
                allowed: ">= 1",
                value: "0".into(),
            }
            .into());
        }
        if t.eval_k == 0 {
            return Err(TrainError::InvalidParameter {
                name: "eval_k",
                allowed: ">= 1",
                value: "0".into(),
            }
            .into());
        }
        let epochs = match t.epochs {
            Some(epochs) => EpochChoice::Fixed(epochs),
            None => EpochChoice::EarlyStopping {
                max_epochs: t.max_epochs,
                patience: t.patience,
                refit: t.refit,
            },
        };
        Ok(TrainJob {
            source: data_source(&s.data)?,
            features: s.data.features,
            min_rating: s.data.min_rating,
            train_min_rating: t.train_min_rating,
            params,
            epochs,
            eval_k: t.eval_k,
            out: t.out.clone(),
            tune: false,
            validation_fraction: t.validation_fraction,
            validation_seed: None,
            refit_on_all: t.refit_on_all,
            eval_every: t.eval_every,
            eval_users: (t.eval_users > 0).then_some(t.eval_users),
        })
    }
}
