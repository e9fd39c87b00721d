//! The `fmrecall` command line: parses arguments, calls the library, prints results.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use fmrecall::config::Settings;
use fmrecall::data::{FeatureSet, Format};
use fmrecall::fm::Loss;
use fmrecall::pipeline::{self, Progress, TrainJob};
use fmrecall::recall::{bench, HnswParams};
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
    Train(TrainArgs),
    /// Evaluate a saved model on a dataset and split.
    Eval(EvalArgs),
    /// Benchmark brute force against hnsw_rs: build time, recall@10, queries/s, memory.
    BenchIndex(BenchIndexArgs),
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
    /// ua | ub | u1..u5 | random:FRACTION | file:PATH.
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
    /// Print one JSON object as the last line of stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct TrainArgs {
    #[command(flatten)]
    data: DataArgs,
    /// ids, or ids plus side features.
    #[arg(long, value_enum)]
    features: Option<FeatureSet>,
    /// Ranking loss.
    #[arg(long, value_enum)]
    loss: Option<Loss>,
    /// Factor dimension.
    #[arg(long)]
    dim: Option<usize>,
    /// Epochs (without early stopping).
    #[arg(long)]
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
    /// Choose the epoch count on validation data carved from the train split.
    #[arg(long)]
    early_stopping: bool,
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
    /// Evaluate on validation data carved from the train split instead of the test split (for
    /// choosing hyper-parameters without looking at the test split).
    #[arg(long)]
    tune: bool,
}

#[derive(Args)]
struct EvalArgs {
    /// Artifact folder or model file.
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    data: DataArgs,
}

fn apply_data_args(s: &mut Settings, a: &DataArgs) {
    let d = &mut s.data;
    set(&mut d.format, a.format);
    set(&mut d.dir, a.data.clone());
    set(&mut d.split, a.split.clone());
    set(&mut d.seed, a.seed);
    set(&mut d.min_rating, a.min_rating);
    set(&mut d.synthetic.users, a.users);
    set(&mut d.synthetic.items, a.items);
    set(&mut s.train.threads, a.threads);
    set(&mut s.train.eval_k, a.k);
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

fn progress_bar() -> impl FnMut(Progress<'_>) {
    let mut bar: Option<ProgressBar> = None;
    move |event| match event {
        Progress::Phase { name, epochs } => {
            if let Some(b) = bar.take() {
                b.finish();
            }
            let b = ProgressBar::new(epochs as u64);
            b.set_style(
                ProgressStyle::with_template("{prefix:>10} {bar:30} {pos}/{len} epochs {msg}")
                    .expect("static template"),
            );
            b.set_prefix(name);
            bar = Some(b);
        }
        Progress::Epoch(r) => {
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
            }
        }
    }
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let mut settings = Settings::load(cli.config.as_deref())?;
    match cli.command {
        Command::Train(a) => {
            apply_data_args(&mut settings, &a.data);
            let t = &mut settings.train;
            set(&mut settings.data.features, a.features);
            set(&mut t.loss, a.loss);
            set(&mut t.dim, a.dim);
            set(&mut t.epochs, a.epochs);
            set(&mut t.learning_rate, a.learning_rate);
            set(&mut t.l2, a.l2);
            set(&mut t.max_sampled, a.max_sampled);
            set(&mut t.max_epochs, a.max_epochs);
            set(&mut t.patience, a.patience);
            set(&mut t.out, a.out);
            set(&mut t.init_std, a.init_std);
            t.early_stopping |= a.early_stopping;
            let mut job = TrainJob::from_settings(&settings)?;
            job.tune = a.tune;
            let summary = pipeline::run_train(&job, &mut progress_bar())?;
            if a.data.json {
                println!("{}", serde_json::to_string(&summary.to_json())?);
            } else {
                println!("{}", summary.to_text());
            }
        }
        Command::Eval(a) => {
            apply_data_args(&mut settings, &a.data);
            let source = pipeline::data_source(&settings.data)?;
            let metrics = pipeline::run_eval(
                &a.model,
                &source,
                settings.train.eval_k,
                settings.train.threads,
            )?;
            if a.data.json {
                println!("{}", serde_json::to_string(&metrics)?);
            } else {
                for (name, value) in metrics.named() {
                    println!("{name:>14} {value:.4}");
                }
            }
        }
        Command::BenchIndex(a) => {
            let (vectors, queries) = match &a.model {
                Some(dir) => fmrecall::recall::bench::from_model(dir, a.queries)?,
                None => bench::clustered(a.items, a.queries, a.dim, a.clusters, a.seed),
            };
            let params = HnswParams {
                m: a.m,
                ef_construction: a.ef_construction,
                ..HnswParams::default()
            };
            let report = bench::run(std::sync::Arc::new(vectors), &queries, &params, &a.ef)?;
            for note in &report.notes {
                println!("{note}");
            }
            print!("{}", bench::table(&report.rows));
            if a.json {
                println!("{}", serde_json::to_string(&report.rows)?);
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
