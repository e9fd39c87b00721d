//! The `fmrecall` command line: parses arguments, applies them over the settings (one place per
//! subcommand), calls the library and prints results; one function per subcommand.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use fmrecall::config::Settings;
use fmrecall::data::{FeatureSet, Format};
use fmrecall::fm::Loss;
use fmrecall::pipeline::{self, Activation, Progress, TrainJob};
use fmrecall::recall::{bench, HnswParams};
use fmrecall::server;
use fmrecall::store::Store;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(
    name = "fmrecall",
    version,
    about = "Recommendation recall on a Factorization Machine"
)]
struct Cli {
    /// Settings file layered over the built-in defaults (config/default.toml).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train an FM from implicit feedback, evaluate it and write a versioned artifact.
    Train(Box<TrainArgs>),
    /// Evaluate a saved model on a dataset and split.
    Eval(EvalArgs),
    /// Write a model's user and item vectors, ids and biases in inner-product form, as files other
    /// systems read (NumPy .npy or Parquet).
    Export(ExportArgs),
    /// Benchmark the recall indexes (exact, our graph with and without the norm walk, hnswlib,
    /// hnsw_rs): build time, recall@k against exact search, queries/s, memory.
    BenchIndex(BenchIndexArgs),
    /// Benchmark filtered recall at several selectivities, random and correlated with the query:
    /// the graph as served against an exact scan of the allowed items and hnswlib's `filter=`.
    BenchFilter(BenchFilterArgs),
    /// Benchmark live inserts into our graph while queries run (inserts/s, queries/s with and
    /// without inserts, recall@10 against a fresh build), with hnswlib's add_items as the anchor.
    BenchLive(BenchLiveArgs),
    /// Benchmark the fold-in of a request history: recall latency of known users with no history
    /// and with histories of the given lengths (docs/events.md).
    BenchHistory(BenchHistoryArgs),
    /// Write a model's item vectors to its Milvus collection ([index.milvus]) and check them
    /// there, ahead of activation: a service loading that model then reuses the collection.
    Publish(PublishArgs),
    /// Serve recall over HTTP (trains the demo model first when no model is configured).
    Serve(ServeArgs),
    /// Apply pending database migrations.
    Migrate,
    /// Exit 0 when the service on server.bind answers /healthz (for container health checks).
    Healthcheck,
    /// Load a dataset into the database (idempotent; all or nothing).
    Import(ImportArgs),
    /// Write a seeded rating log shaped like MovieLens 25M (Zipf item popularity, lognormal user
    /// activity, ratings, timestamps) as the csv format's files, at any size.
    Generate(GenerateArgs),
    /// The model registry.
    #[command(subcommand)]
    Models(ModelsCommand),
}

#[derive(Args)]
struct GenerateArgs {
    /// Folder to write interactions.csv (and users.csv, items.csv) into.
    #[arg(long)]
    out: PathBuf,
    /// Number of users (MovieLens 25M: 162541).
    #[arg(long, default_value_t = 162_541)]
    users: usize,
    /// Number of items (MovieLens 25M: 59047).
    #[arg(long, default_value_t = 59_047)]
    items: usize,
    /// Number of interactions, exactly (MovieLens 25M: 18.8M).
    #[arg(long, default_value_t = 18_800_000)]
    interactions: usize,
    /// Zipf exponent of item popularity.
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// σ of the lognormal user activity.
    #[arg(long, default_value_t = 1.1)]
    activity_sigma: f64,
    /// Interactions every user has at least.
    #[arg(long, default_value_t = 20)]
    min_per_user: usize,
    /// Share of interactions rated ≥ 4.
    #[arg(long, default_value_t = 0.62)]
    positive_share: f64,
    /// Also write users.csv and items.csv with side features.
    #[arg(long)]
    side_features: bool,
    /// Seed: the same seed and sizes write the same files.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

#[derive(Args)]
struct ImportArgs {
    /// movielens, csv, parquet or synthetic.
    #[arg(value_enum)]
    format: Format,
    /// Folder with the files (not for synthetic).
    dir: Option<PathBuf>,
    /// Synthetic data: number of users.
    #[arg(long)]
    users: Option<usize>,
    /// Synthetic data: number of items.
    #[arg(long)]
    items: Option<usize>,
    /// Seed of the generator.
    #[arg(long)]
    seed: Option<u64>,
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Every registered model, newest first.
    List {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One model as JSON.
    Show {
        /// Registry id.
        id: i64,
    },
    /// Make a model the active one (replicas follow within one poll interval).
    Activate {
        /// Registry id.
        id: i64,
    },
    /// Re-activate the model that was active before the current one.
    Rollback,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on (overrides server.bind).
    #[arg(long)]
    bind: Option<String>,
    /// Model artifact folder or file (overrides server.model).
    #[arg(long)]
    model: Option<PathBuf>,
}

#[derive(Args)]
struct BenchIndexArgs {
    /// Number of synthetic item vectors.
    #[arg(long, default_value_t = 200_000)]
    items: usize,
    /// Dimension of the synthetic vectors.
    #[arg(long, default_value_t = 64)]
    dim: usize,
    /// Number of queries.
    #[arg(long, default_value_t = 1000)]
    queries: usize,
    /// Clusters in the synthetic vectors.
    #[arg(long, default_value_t = 100)]
    clusters: usize,
    /// Use this model's item vectors and its users' queries instead of synthetic vectors.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Search breadths to measure.
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128,256")]
    ef: Vec<usize>,
    /// Recall depth: recall@k against exact search (a search never uses an ef below k).
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Graph links per node.
    #[arg(long, default_value_t = 16)]
    m: usize,
    /// Graph build breadth.
    #[arg(long, default_value_t = 200)]
    ef_construction: usize,
    /// Seed of the synthetic vectors.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Print the rows as a JSON array on the last line of stdout.
    #[arg(long)]
    json: bool,
    /// Indexes to measure (hnswlib includes the NumPy brute-force row).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "exact,graph,hnswlib,hnsw-rs"
    )]
    indexes: Vec<bench::BenchIndex>,
}

#[derive(Args)]
struct BenchFilterArgs {
    /// Number of synthetic item vectors.
    #[arg(long, default_value_t = 1_000_000)]
    items: usize,
    /// Dimension of the synthetic vectors.
    #[arg(long, default_value_t = 64)]
    dim: usize,
    /// Queries of the random-filter rows (the first `--correlated-queries` of them also run the
    /// correlated rows).
    #[arg(long, default_value_t = 500)]
    queries: usize,
    /// Queries of the correlated rows (each has its own filter).
    #[arg(long, default_value_t = 100)]
    correlated_queries: usize,
    /// Clusters in the synthetic vectors.
    #[arg(long, default_value_t = 100)]
    clusters: usize,
    /// Use this model's item vectors and its users' queries instead of synthetic vectors.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Shares of the items the filters allow.
    #[arg(long, value_delimiter = ',', default_value = "0.001,0.01,0.1,0.5,0.9")]
    selectivities: Vec<f64>,
    /// hnswlib's breadths, tried from the smallest until it reaches `--target`.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10,32,64,128,256,512,1024"
    )]
    hnswlib_ef: Vec<usize>,
    /// The recall@k asked of every row.
    #[arg(long, default_value_t = 0.99)]
    target: f64,
    /// Recall depth.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Seed of the synthetic vectors and the random filters.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Print the rows as a JSON array on the last line of stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct BenchHistoryArgs {
    /// Artifact folder or model file (trained with --history to fold histories in).
    #[arg(long)]
    model: PathBuf,
    /// History lengths to time besides none.
    #[arg(long, value_delimiter = ',', default_value = "10,100")]
    lengths: Vec<usize>,
    /// Recalls per length.
    #[arg(long, default_value_t = 2000)]
    queries: usize,
    /// Print the rows as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct PublishArgs {
    /// Artifact folder or model file.
    #[arg(long)]
    model: PathBuf,
}

#[derive(Args)]
struct BenchLiveArgs {
    /// Items in the end: built on `items - inserts`, the rest inserted live.
    #[arg(long, default_value_t = 1_000_000)]
    items: usize,
    /// Items inserted while queries run.
    #[arg(long, default_value_t = 100_000)]
    inserts: usize,
    /// Dimension of the synthetic vectors.
    #[arg(long, default_value_t = 64)]
    dim: usize,
    /// Number of queries.
    #[arg(long, default_value_t = 1000)]
    queries: usize,
    /// Clusters in the synthetic vectors.
    #[arg(long, default_value_t = 100)]
    clusters: usize,
    /// Rows per insert call.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Threads an insert call links its batch with.
    #[arg(long, default_value_t = 1)]
    insert_threads: usize,
    /// Threads searching during the inserts.
    #[arg(long, default_value_t = 1)]
    query_threads: usize,
    /// Search breadth of the throughput phases.
    #[arg(long, default_value_t = 64)]
    ef: usize,
    /// Breadths recall@10 is measured at.
    #[arg(long, value_delimiter = ',', default_value = "32,64,128")]
    recall_ef: Vec<usize>,
    /// Graph links per node.
    #[arg(long, default_value_t = 16)]
    m: usize,
    /// Graph build breadth.
    #[arg(long, default_value_t = 200)]
    ef_construction: usize,
    /// Beam width of live inserts (0 = automatic: a quarter of ef-construction, at least 64).
    #[arg(long, default_value_t = 0)]
    ef_insert: usize,
    /// Seed of the synthetic vectors.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Skip the hnswlib anchor.
    #[arg(long)]
    no_hnswlib: bool,
    /// Print the rows as a JSON array on the last line of stdout.
    #[arg(long)]
    json: bool,
}

/// Where the data comes from (shared by train and eval).
#[derive(Args)]
struct DataArgs {
    /// Input format.
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Folder with the data files.
    #[arg(long)]
    data: Option<PathBuf>,
    /// ua | ub | u1..u5 | random:FRACTION | users:FRACTION (held-out users) | items:FRACTION
    /// (held-out items) | file:PATH | none (train on every interaction, no evaluation).
    #[arg(long)]
    split: Option<String>,
    /// Seed of splits, generator and training.
    #[arg(long)]
    seed: Option<u64>,
    /// Ratings at or above this are positives.
    #[arg(long)]
    min_rating: Option<f32>,
    /// Synthetic data: number of users.
    #[arg(long)]
    users: Option<usize>,
    /// Synthetic data: number of items.
    #[arg(long)]
    items: Option<usize>,
    /// Worker threads.
    #[arg(long)]
    threads: Option<usize>,
    /// Metric cut-off k.
    #[arg(long)]
    k: Option<usize>,
    /// CSV format: the user id column of interactions.csv (default user_id).
    #[arg(long)]
    user_column: Option<String>,
    /// CSV format: the item id column (default item_id).
    #[arg(long)]
    item_column: Option<String>,
    /// CSV format: the rating column (default rating; optional in the file).
    #[arg(long)]
    rating_column: Option<String>,
    /// CSV format: the timestamp column (default timestamp; optional in the file).
    #[arg(long)]
    timestamp_column: Option<String>,
    /// Print one JSON object as the last line of stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct TrainArgs {
    #[command(flatten)]
    data: DataArgs,
    /// ids, hybrid (ids plus side features) or auto (hybrid when the data has side features;
    /// the default).
    #[arg(long, value_enum)]
    features: Option<FeatureSet>,
    /// Ranking loss.
    #[arg(long, value_enum)]
    loss: Option<Loss>,
    /// Factor dimension.
    #[arg(long)]
    dim: Option<usize>,
    /// A fixed epoch count (default: chosen by early stopping on validation data carved from the
    /// train split).
    #[arg(long, conflicts_with = "early_stopping")]
    epochs: Option<usize>,
    /// Adagrad learning rate.
    #[arg(long)]
    learning_rate: Option<f32>,
    /// L2 penalty.
    #[arg(long)]
    l2: Option<f32>,
    /// WARP: negatives sampled per positive.
    #[arg(long)]
    max_sampled: Option<usize>,
    /// Choose the epoch count on validation data carved from the train split (the default unless
    /// train.epochs is configured).
    #[arg(long)]
    early_stopping: bool,
    /// Keep the model evaluated on the split instead of refitting it on every interaction (for
    /// benchmarks, and for `fmrecall eval` afterwards).
    #[arg(long)]
    no_refit: bool,
    /// Evaluate the per-epoch history every N epochs (0: only the last; default 1).
    #[arg(long)]
    eval_every: Option<usize>,
    /// Evaluate the per-epoch history on a seeded sample of N test users (0: all, the default);
    /// the final figures are always on all test users.
    #[arg(long)]
    eval_users: Option<usize>,
    /// Early stopping: upper bound on epochs.
    #[arg(long)]
    max_epochs: Option<usize>,
    /// Early stopping: epochs without improvement before stopping.
    #[arg(long)]
    patience: Option<usize>,
    /// Artifact folder.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Standard deviation of the initial factors.
    #[arg(long)]
    init_std: Option<f32>,
    /// Probability of leaving a user's id feature out of a training sample (DropoutNet-style), so
    /// that side features learn to rank users never seen in training.
    #[arg(long)]
    user_id_dropout: Option<f32>,
    /// Probability of leaving an item's id feature out of a training sample.
    #[arg(long)]
    item_id_dropout: Option<f32>,
    /// Adagrad learning rate of side features (default: train.side_learning_rate, 0.01; unset
    /// there, --learning-rate).
    #[arg(long)]
    side_learning_rate: Option<f32>,
    /// Ratings at or above this are what the model learns from (default: --min-rating, which
    /// stays the threshold of evaluation and of the popularity baseline).
    #[arg(long)]
    train_min_rating: Option<f32>,
    /// History features: each user's most recent N train items as user-side features, weighted
    /// 1/sqrt(n), so that events move the user's vector when served (0: off, the default).
    #[arg(long, value_name = "N")]
    history: Option<usize>,
    /// With --history: the share of positives trained on the N items the user had before them
    /// (the next-item task) rather than on their last N items without them (leave-one-out: the
    /// profile). 0 (default) never, 1 always; 0.5 served both on MovieLens (docs/events.md).
    #[arg(long, value_name = "SHARE")]
    causal_history: Option<f32>,
    /// Evaluate on validation data carved from the train split instead of the test split (for
    /// choosing hyper-parameters without looking at the test split).
    #[arg(long)]
    tune: bool,
    /// Share of the train split carved out as validation data (per user's positives; under a
    /// users:/items: split, share of the training users/items held out whole).
    #[arg(long)]
    validation_fraction: Option<f64>,
    /// Seed of the validation carve (default: --seed), to average several carves when tuning.
    #[arg(long)]
    validation_seed: Option<u64>,
    /// Where the training data comes from: the files of --format/--data, or the database.
    #[arg(long, value_enum, default_value = "files")]
    source: Source,
    /// Activate the new model in the registry.
    #[arg(long)]
    activate: bool,
    /// Activate only if a figure holds, e.g. 'precision@10>=0.15'.
    #[arg(long)]
    activate_if: Option<String>,
    /// Do not register the run in the registry.
    #[arg(long)]
    no_register: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Source {
    Files,
    Db,
}

#[derive(Args)]
struct ExportArgs {
    /// Artifact folder or model file.
    #[arg(long)]
    model: PathBuf,
    /// Folder to write into (created if needed; the export's own files in it are replaced).
    #[arg(long)]
    out: PathBuf,
    /// File format.
    #[arg(long, value_enum, default_value = "npy")]
    format: ExportFormat,
}

/// Formats `fmrecall export` writes.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ExportFormat {
    /// NumPy .npy arrays (f32, C order) with ids files and manifest.json.
    Npy,
    /// items.parquet and users.parquet (id, bias or constant, vector as list<float>; snappy)
    /// with manifest.json.
    Parquet,
}

#[derive(Args)]
struct EvalArgs {
    /// Artifact folder or model file.
    #[arg(long)]
    model: PathBuf,
    /// Replay each user's interactions after T in time order (with --split time:QUANTILE and a
    /// model trained on its train part): hit rate and NDCG of the next item, for static vectors,
    /// static vectors with the events excluded, events folded into the vector (history models),
    /// and popularity at T (docs/events.md).
    #[arg(long)]
    replay: bool,
    #[command(flatten)]
    data: DataArgs,
}

impl DataArgs {
    /// Writes the given flags over the settings.
    fn apply(&self, s: &mut Settings) {
        let d = &mut s.data;
        set(&mut d.format, self.format);
        set(&mut d.dir, self.data.clone());
        set(&mut d.split, self.split.clone());
        set(&mut d.seed, self.seed);
        set(&mut d.min_rating, self.min_rating);
        set(&mut d.synthetic.users, self.users);
        set(&mut d.synthetic.items, self.items);
        set(&mut d.columns.user, self.user_column.clone());
        set(&mut d.columns.item, self.item_column.clone());
        set(&mut d.columns.rating, self.rating_column.clone());
        set(&mut d.columns.timestamp, self.timestamp_column.clone());
        set(&mut s.train.threads, self.threads);
        set(&mut s.train.eval_k, self.k);
    }
}

impl TrainArgs {
    /// Writes the given flags over the settings.
    fn apply(&self, s: &mut Settings) {
        self.data.apply(s);
        set(&mut s.data.features, self.features);
        let t = &mut s.train;
        set(&mut t.loss, self.loss);
        set(&mut t.dim, self.dim);
        if self.epochs.is_some() || self.early_stopping {
            t.epochs = self.epochs;
        }
        t.refit_on_all &= !self.no_refit;
        set(&mut t.learning_rate, self.learning_rate);
        set(&mut t.l2, self.l2);
        set(&mut t.max_sampled, self.max_sampled);
        set(&mut t.max_epochs, self.max_epochs);
        set(&mut t.patience, self.patience);
        set(&mut t.out, self.out.clone());
        set(&mut t.init_std, self.init_std);
        set(&mut t.user_id_dropout, self.user_id_dropout);
        set(&mut t.item_id_dropout, self.item_id_dropout);
        if self.side_learning_rate.is_some() {
            t.side_learning_rate = self.side_learning_rate;
        }
        if self.train_min_rating.is_some() {
            t.train_min_rating = self.train_min_rating;
        }
        set(&mut t.validation_fraction, self.validation_fraction);
        set(&mut t.history, self.history);
        set(&mut t.causal_history, self.causal_history);
        set(&mut t.eval_every, self.eval_every);
        set(&mut t.eval_users, self.eval_users);
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

/// Shows training progress: a bar on a terminal; otherwise (a batch job's log) one log line per
/// stage and epoch, with the rate and the time left, in the configured log format.
fn progress_reporter() -> impl FnMut(Progress<'_>) {
    let terminal = std::io::stderr().is_terminal();
    let mut bar: Option<ProgressBar> = None;
    let mut phase: Option<(&'static str, usize, std::time::Instant)> = None;
    move |event| match event {
        Progress::Stage(name) => {
            if let Some(b) = bar.take() {
                b.finish();
            }
            tracing::info!(stage = name, "training job");
        }
        Progress::Phase { name, epochs } => {
            if let Some(b) = bar.take() {
                b.finish();
            }
            phase = Some((name, epochs, std::time::Instant::now()));
            if terminal {
                let b = ProgressBar::new(epochs as u64);
                b.set_style(
                    ProgressStyle::with_template("{prefix:>10} {bar:30} {pos}/{len} epochs {msg}")
                        .expect("static template"),
                );
                b.set_prefix(name);
                bar = Some(b);
            } else {
                tracing::info!(phase = name, max_epochs = epochs, "training phase");
            }
        }
        Progress::Evaluated { done, total } => {
            tracing::info!(users_done = done, users = total, "evaluating");
        }
        Progress::Epoch(r) => {
            let precision = r.metrics.as_ref().map(|m| m.precision);
            if let Some(b) = &bar {
                let figure = r
                    .metrics
                    .as_ref()
                    .map(|m| format!(" precision@{} {:.4}", m.k, m.precision))
                    .unwrap_or_default();
                b.set_message(format!("loss {:.4}{figure}", r.loss));
                b.inc(1);
                if b.position() >= b.length().unwrap_or(0) {
                    b.finish();
                }
            } else if let Some((name, epochs, started)) = phase {
                // Wall time per epoch so far (evaluation included), times the epochs left: an
                // upper bound under early stopping, which may stop sooner.
                let per_epoch = started.elapsed().as_secs_f64() / r.epoch as f64;
                tracing::info!(
                    phase = name,
                    epoch = r.epoch,
                    max_epochs = epochs,
                    loss = r.loss,
                    precision,
                    epoch_seconds = r.seconds,
                    eta_seconds = (per_epoch * epochs.saturating_sub(r.epoch) as f64).round(),
                    "epoch done"
                );
            }
        }
    }
}

fn run(command: Command, mut settings: Settings) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Train(a) => {
            a.apply(&mut settings);
            train(&a, &settings)
        }
        Command::Eval(a) => {
            a.data.apply(&mut settings);
            eval(&a, &settings)
        }
        Command::Export(a) => export(&a),
        Command::Serve(a) => {
            set(&mut settings.server.bind, a.bind);
            set(&mut settings.server.model, a.model);
            serve(&settings)
        }
        Command::Healthcheck => Ok(server::healthcheck(
            &settings.server.bind,
            std::time::Duration::from_secs(3),
        )?),
        Command::Migrate => migrate(&settings),
        Command::Import(a) => import(a, &settings),
        Command::Generate(a) => generate(&a),
        Command::Models(cmd) => models(cmd, &settings),
        Command::BenchIndex(a) => bench_index(&a),
        Command::BenchLive(a) => bench_live(&a),
        Command::BenchFilter(a) => bench_filter(&a, &settings),
        Command::BenchHistory(a) => bench_history(&a, &settings),
        Command::Publish(a) => publish(&a, &settings),
    }
}

/// `fmrecall train`: the job, then its registration (one runtime and one connection pool for
/// every database step).
fn train(a: &TrainArgs, settings: &Settings) -> Result<(), Box<dyn std::error::Error>> {
    let mut job = TrainJob::from_settings(settings)?;
    job.tune = a.tune;
    job.validation_seed = a.validation_seed;
    let activation = match (&a.activate_if, a.activate) {
        (Some(rule), _) => Activation::If(rule.parse()?),
        (None, true) => Activation::Always,
        (None, false) => Activation::Never,
    };
    let url = &settings.database.url;
    // Tuning runs are evaluated on validation data: not models to serve.
    let register = !a.no_register && !a.tune;
    let needs_store = a.source == Source::Db || register;
    let database = if url.is_empty() || !needs_store {
        None
    } else {
        let rt = runtime()?;
        let store = rt.block_on(Store::open(url))?;
        Some((rt, store))
    };
    let mut progress = progress_reporter();
    let summary = match (a.source, &database) {
        (Source::Db, Some((rt, store))) => {
            progress(Progress::Stage("loading data from the database"));
            let mut dataset = rt.block_on(store.load_dataset())?;
            dataset.apply_split(&job.source.split, job.source.seed)?;
            pipeline::train_on(&job, dataset, &mut progress)?
        }
        (Source::Db, None) => return Err("--source db needs database.url".into()),
        (Source::Files, _) => pipeline::run_train(&job, &mut progress)?,
    };
    let registration = match &database {
        Some((rt, store)) if register => {
            Some(rt.block_on(pipeline::register(store, &summary, &activation))?)
        }
        _ => None,
    };
    for warning in &summary.warnings {
        eprintln!("warning: {warning}");
    }
    if a.data.json {
        let mut out = summary.to_json();
        if let (Some(r), Some(obj)) = (&registration, out.as_object_mut()) {
            obj.insert("registry_id".into(), r.registry_id.into());
            obj.insert("activated".into(), r.activated.into());
        }
        println!("{}", serde_json::to_string(&out)?);
    } else {
        println!("{}", summary.to_text());
        if let Some(r) = registration {
            println!("registry id {}: {}", r.registry_id, r.reason);
        }
    }
    Ok(())
}

/// `fmrecall eval`: a saved model's figures on a dataset and split.
fn eval(a: &EvalArgs, settings: &Settings) -> Result<(), Box<dyn std::error::Error>> {
    let source = pipeline::data_source(&settings.data)?;
    if a.replay {
        let (report, warnings) = pipeline::run_replay(
            &a.model,
            &source,
            settings.train.eval_k,
            settings.train.threads,
        )?;
        for warning in &warnings {
            eprintln!("warning: {warning}");
        }
        if a.data.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            let k = report.k;
            println!(
                "{} steps of {} users ({} unknown to the model)",
                report.steps, report.users, report.unknown_users
            );
            println!(
                "{:<34} {:>9} {:>9}",
                "ranking",
                format!("HR@{k}"),
                format!("NDCG@{k}")
            );
            let rows = [
                ("static vectors", Some(report.static_model)),
                (
                    "static vectors, events excluded",
                    Some(report.exclusion_only),
                ),
                ("events folded in and excluded", report.moving),
                ("popularity at T, events excluded", Some(report.popularity)),
            ];
            for (name, figures) in rows {
                match figures {
                    Some(f) => println!("{name:<34} {:>9.4} {:>9.4}", f.hit_rate, f.ndcg),
                    None => println!("{name:<34} {:>9} {:>9}", "-", "-"),
                }
            }
        }
        return Ok(());
    }
    let pipeline::EvalOutcome { metrics, warnings } = pipeline::run_eval(
        &a.model,
        &source,
        settings.train.eval_k,
        settings.train.threads,
    )?;
    for warning in &warnings {
        eprintln!("warning: {warning}");
    }
    if a.data.json {
        println!("{}", serde_json::to_string(&metrics)?);
    } else {
        for (name, value) in metrics.named() {
            println!("{name:>14} {}", pipeline::figure_text(&name, value));
        }
    }
    Ok(())
}

/// `fmrecall export`: the inner-product form as files, and a one-line summary.
fn export(a: &ExportArgs) -> Result<(), Box<dyn std::error::Error>> {
    let artifact = fmrecall::fm::ModelArtifact::load(&a.model)?;
    let report = match a.format {
        ExportFormat::Npy => fmrecall::fm::write_npy(&artifact, &a.out)?,
        ExportFormat::Parquet => fmrecall::fm::write_parquet(&artifact, &a.out)?,
    };
    let m = &report.manifest;
    println!(
        "exported {} users and {} items (vectors of k + 1 = {}) of model {} as {} to {}",
        m.users,
        m.items,
        m.dim + 1,
        m.model_version,
        m.format,
        report.dir.display()
    );
    Ok(())
}

/// `fmrecall serve`: until SIGTERM or Ctrl-C.
fn serve(settings: &Settings) -> Result<(), Box<dyn std::error::Error>> {
    runtime()?.block_on(async {
        let app = server::Application::build(settings).await?;
        tracing::info!(addr = %app.local_addr()?, "listening");
        app.run_until(server::shutdown_signal()).await
    })?;
    Ok(())
}

/// `fmrecall migrate`.
fn migrate(settings: &Settings) -> Result<(), Box<dyn std::error::Error>> {
    let rt = runtime()?;
    let store = rt.block_on(Store::connect(&settings.database.url))?;
    let applied = rt.block_on(store.migrate())?;
    println!(
        "applied {applied} migration(s) to {}",
        settings.database.url
    );
    Ok(())
}

/// `fmrecall generate`: a rating log of MovieLens 25M's shape.
fn generate(a: &GenerateArgs) -> Result<(), Box<dyn std::error::Error>> {
    let config = fmrecall::data::shaped::ShapeConfig {
        users: a.users,
        items: a.items,
        interactions: a.interactions,
        zipf: a.zipf,
        activity_sigma: a.activity_sigma,
        min_per_user: a.min_per_user,
        positive_share: a.positive_share,
        side_features: a.side_features,
        ..fmrecall::data::shaped::ShapeConfig::movielens_25m()
    };
    let started = std::time::Instant::now();
    let g = fmrecall::data::shaped::write_csv(&config, a.seed, &a.out)?;
    let files: Vec<String> = g.files.iter().map(|f| f.display().to_string()).collect();
    println!(
        "wrote {} interactions of {} users and {} items ({:.1}% rated >= 4; most active user {}, \
         most popular item {}) in {:.1} s: {}",
        g.interactions,
        a.users,
        a.items,
        100.0 * g.positive_share,
        g.max_per_user,
        g.max_per_item,
        started.elapsed().as_secs_f64(),
        files.join(", ")
    );
    Ok(())
}

/// `fmrecall import`: a dataset into the database.
fn import(a: ImportArgs, settings: &Settings) -> Result<(), Box<dyn std::error::Error>> {
    let mut data = settings.data.clone();
    data.format = a.format;
    set(&mut data.dir, a.dir);
    set(&mut data.synthetic.users, a.users);
    set(&mut data.synthetic.items, a.items);
    set(&mut data.seed, a.seed);
    // Every interaction goes in; training splits what it reads from the database itself.
    data.split = "none".into();
    let dataset = fmrecall::data::Dataset::load(&pipeline::data_source(&data)?)?;
    let rt = runtime()?;
    let store = rt.block_on(Store::open(&settings.database.url))?;
    let report = rt.block_on(store.import_dataset(&dataset))?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// `fmrecall models …`: the registry.
fn models(cmd: ModelsCommand, settings: &Settings) -> Result<(), Box<dyn std::error::Error>> {
    let rt = runtime()?;
    let store = rt.block_on(Store::open(&settings.database.url))?;
    match cmd {
        ModelsCommand::List { json } => {
            let models = rt.block_on(store.list_models())?;
            if json {
                println!("{}", serde_json::to_string(&models)?);
                return Ok(());
            }
            println!(
                "{:>4}  {:<9}  {:<28}  {:>8}  {:<24}  path",
                "id", "status", "version", "P@10", "registered"
            );
            for m in models {
                let p = m.metrics.get("precision@10").and_then(|v| v.as_f64());
                println!(
                    "{:>4}  {:<9}  {:<28}  {:>8}  {:<24}  {}",
                    m.id,
                    format!("{:?}", m.status).to_lowercase(),
                    m.version,
                    p.map_or("-".into(), |p| format!("{p:.4}")),
                    m.registered_at,
                    m.artifact_path.display()
                );
            }
        }
        ModelsCommand::Show { id } => {
            let model = rt.block_on(store.model(id))?;
            println!("{}", serde_json::to_string_pretty(&model)?);
        }
        ModelsCommand::Activate { id } => {
            let m = rt.block_on(store.activate(id, "cli"))?;
            println!("model {} ({}) is active", m.id, m.version);
        }
        ModelsCommand::Rollback => {
            let m = rt.block_on(store.rollback("cli"))?;
            println!("rolled back: model {} ({}) is active", m.id, m.version);
        }
    }
    Ok(())
}

/// `fmrecall publish`: the model's Milvus collection, written (or found complete) and checked.
fn publish(a: &PublishArgs, settings: &Settings) -> Result<(), Box<dyn std::error::Error>> {
    let mut index = settings.index.clone();
    index.kind = fmrecall::recall::IndexKind::Milvus;
    let model = fmrecall::serving::ServingModel::load(&a.model, &index)?;
    let info = model.index_info();
    let quality = model.index_quality();
    println!(
        "model {}: {} items in Milvus collection {} ({}), recall@10 {:.4}, recall@100 {:.4} against exact on {} users",
        model.meta().version,
        info.items,
        info.params["collection"].as_str().unwrap_or("?"),
        if info.params["reused_collection"].as_bool() == Some(true) {
            "found complete"
        } else {
            "written"
        },
        quality.map_or(f64::NAN, |q| q.recall_at_10),
        quality.map_or(f64::NAN, |q| q.recall_at_100),
        quality.map_or(0, |q| q.queries),
    );
    Ok(())
}

/// `fmrecall bench-index`: build time, recall@k, queries/s and memory of each index.
/// `fmrecall bench-history`: a table of recall latency by request history length.
fn bench_history(
    a: &BenchHistoryArgs,
    settings: &Settings,
) -> Result<(), Box<dyn std::error::Error>> {
    let model = fmrecall::serving::ServingModel::load(&a.model, &settings.index)?;
    let mut lengths = vec![0];
    lengths.extend(a.lengths.iter().copied().filter(|&l| l > 0));
    let rows = fmrecall::serving::bench_history(&model, &lengths, a.queries.max(1))?;
    if a.json {
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    let meta = model.meta();
    println!(
        "model {} (history features: {}), {} items, index {}",
        meta.version,
        meta.params.history,
        meta.items.len(),
        model.index_info().kind
    );
    println!(
        "| history items | recalls | p50 µs | mean µs | p50 added µs |\n|---|---|---|---|---|"
    );
    for row in &rows {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} |",
            row.history,
            row.queries,
            row.p50_us,
            row.mean_us,
            row.p50_us - rows[0].p50_us
        );
    }
    Ok(())
}

fn bench_index(a: &BenchIndexArgs) -> Result<(), Box<dyn std::error::Error>> {
    let (vectors, queries) = match &a.model {
        Some(dir) => bench::from_model(dir, a.queries)?,
        None => bench::clustered(a.items, a.queries, a.dim, a.clusters, a.seed),
    };
    let params = HnswParams {
        m: a.m,
        ef_construction: a.ef_construction,
        ..HnswParams::default()
    };
    let report = bench::run(
        std::sync::Arc::new(vectors),
        &queries,
        &params,
        &a.ef,
        &a.indexes,
        a.k,
    )?;
    for note in &report.notes {
        println!("{note}");
    }
    print!("{}", bench::table(&report.rows, a.k));
    if a.json {
        println!("{}", serde_json::to_string(&report.rows)?);
    }
    Ok(())
}

/// `fmrecall bench-filter`: filtered recall and queries/s of the served graph, an exact scan and
/// hnswlib, at each selectivity; the graph is built with the configured `[index]` settings.
fn bench_filter(
    a: &BenchFilterArgs,
    settings: &Settings,
) -> Result<(), Box<dyn std::error::Error>> {
    use fmrecall::recall::bench_filter;
    if let Some(bad) = a.selectivities.iter().find(|s| !(0.0..=1.0).contains(*s)) {
        return Err(format!("--selectivities: {bad} is not a share between 0 and 1").into());
    }
    let (vectors, queries) = match &a.model {
        Some(dir) => bench::from_model(dir, a.queries)?,
        None => bench::clustered(a.items, a.queries, a.dim, a.clusters, a.seed),
    };
    let spec = bench_filter::FilterSpec {
        selectivities: a.selectivities.clone(),
        k: a.k,
        correlated_queries: a.correlated_queries,
        hnswlib_efs: a.hnswlib_ef.clone(),
        target: a.target,
        settings: settings.index.clone(),
        seed: a.seed,
    };
    let report = bench_filter::run(std::sync::Arc::new(vectors), &queries, &spec)?;
    for note in &report.notes {
        println!("{note}");
    }
    print!("{}", bench_filter::table(&report.rows, a.k));
    if a.json {
        println!("{}", serde_json::to_string(&report.rows)?);
    }
    Ok(())
}

/// `fmrecall bench-live`: live inserts into our graph while queries run, against hnswlib.
fn bench_live(a: &BenchLiveArgs) -> Result<(), Box<dyn std::error::Error>> {
    let spec = fmrecall::recall::bench_live::LiveSpec {
        items: a.items,
        inserts: a.inserts,
        dim: a.dim,
        queries: a.queries,
        clusters: a.clusters,
        seed: a.seed,
        batch: a.batch,
        insert_threads: a.insert_threads,
        query_threads: a.query_threads,
        params: fmrecall::recall::GraphParams {
            m: a.m,
            ef_construction: a.ef_construction,
            ef_insert: a.ef_insert,
            ..Default::default()
        },
        ef: a.ef,
        recall_efs: a.recall_ef.clone(),
        hnswlib: !a.no_hnswlib,
    };
    let report = fmrecall::recall::bench_live::run(&spec)?;
    for note in &report.notes {
        println!("{note}");
    }
    print!("{}", fmrecall::recall::bench_live::table(&report.rows));
    if a.json {
        println!("{}", serde_json::to_string(&report.rows)?);
    }
    Ok(())
}

/// A runtime for the commands that talk to the database or serve.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Lines go through a buffered writer thread; the guard flushes what is queued when main returns.
    // Lossy: under a flood of lines a full queue drops lines instead of stalling requests.
    let (writer, flush_logs) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .finish(std::io::BufWriter::new(std::io::stderr()));
    let logs = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal())
        .with_max_level(tracing::Level::INFO);
    if settings.server.log_format == fmrecall::config::LogFormat::Json {
        logs.json().init();
    } else {
        logs.init();
    }
    let result = run(cli.command, settings);
    // Queued log lines first, so that they come before the error line below.
    drop(flush_logs);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
