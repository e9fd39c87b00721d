//! Crash safety of the offline job: `fmrecall train --activate` killed with SIGKILL, twenty times, at
//! seeded random moments and at the moments that matter (the temporary artifact appears, the
//! artifact is renamed into place, the run is registered), on one SQLite registry. After every kill:
//! `fmrecall models list --json` still reads the registry; every model it lists, the active one
//! above all, has its file, unchanged since registration, and the file loads; every `model.fmr`
//! under the models folder loads, and a half-written artifact is never named `model.fmr`. Then a
//! run goes through, becomes active, and the service serves it.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::child::{ChildServer, Launch};
use fmrecall::fm::artifact::MODEL_FILE;
use fmrecall::fm::ModelArtifact;
use fmrecall::rng::Rng;
use fmrecall::store::file_sha256;

/// The registry and the models of one test.
struct Workspace {
    root: tempfile::TempDir,
}

impl Workspace {
    fn url(&self) -> String {
        format!("sqlite://{}/registry.db", self.root.path().display())
    }

    fn models(&self) -> PathBuf {
        self.root.path().join("models")
    }

    /// `fmrecall` with this workspace's registry.
    fn fmrecall(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fmrecall"));
        c.env("FMRECALL_DATABASE__URL", self.url())
            .stdin(Stdio::null());
        c
    }

    /// Starts `train --activate` (seed `seed`) into `models/{version}`.
    fn start_training(&self, seed: u64) -> Child {
        let mut c = self.fmrecall();
        c.args([
            "train",
            "--format",
            "synthetic",
            "--users",
            "1500",
            "--items",
            "1500",
        ])
        .args([
            "--features",
            "hybrid",
            "--dim",
            "32",
            "--epochs",
            "6",
            "--threads",
            "2",
        ])
        .args(["--activate", "--json", "--seed", &seed.to_string()])
        .arg("--out")
        .arg(self.models().join("{version}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        c.spawn().expect("fmrecall train starts")
    }

    /// The registry as `fmrecall models list --json` prints it (empty before the first run has
    /// created it: listing would create it).
    fn registry(&self) -> Vec<serde_json::Value> {
        if !self.root.path().join("registry.db").exists() {
            return Vec::new();
        }
        let out = self
            .fmrecall()
            .args(["models", "list", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "models list failed after a kill: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Every invariant the registry and the models folder must keep whatever the moment of a kill;
    /// returns the registry and the artifact folders.
    fn check(&self, after: &str) -> State {
        let rows = self.registry();
        let active: Vec<&serde_json::Value> =
            rows.iter().filter(|r| r["status"] == "active").collect();
        assert!(active.len() <= 1, "{after}: {} active models", active.len());
        for row in &rows {
            let path = PathBuf::from(row["artifact_path"].as_str().unwrap());
            let sha = file_sha256(&path).unwrap_or_else(|e| {
                panic!(
                    "{after}: model {} points at {}: {e}",
                    row["id"],
                    path.display()
                )
            });
            assert_eq!(
                row["sha256"].as_str().unwrap(),
                sha,
                "{after}: {} changed",
                path.display()
            );
            let artifact = ModelArtifact::load(&path)
                .unwrap_or_else(|e| panic!("{after}: model {} does not load: {e}", row["id"]));
            assert_eq!(
                row["version"].as_str().unwrap(),
                artifact.meta.version,
                "{after}"
            );
        }
        let mut dirs = Vec::new();
        if let Ok(entries) = std::fs::read_dir(self.models()) {
            for entry in entries {
                let dir = entry.unwrap().path();
                let names: Vec<String> = std::fs::read_dir(&dir)
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect();
                let has_model = names.iter().any(|n| n == MODEL_FILE);
                let loads = ModelArtifact::load(&dir);
                if has_model {
                    loads
                        .unwrap_or_else(|e| panic!("{after}: a model.fmr that does not load: {e}"));
                } else {
                    assert!(
                        loads.is_err(),
                        "{after}: {} loads without a model.fmr",
                        dir.display()
                    );
                }
                for n in &names {
                    if n.contains(MODEL_FILE) && n != MODEL_FILE {
                        assert!(
                            n.starts_with('.'),
                            "{after}: temporary file {n} is not hidden"
                        );
                    }
                }
                dirs.push(Folder {
                    path: dir,
                    has_model,
                    has_report: names.iter().any(|n| n == "training.svg"),
                });
            }
        }
        State {
            versions: rows
                .iter()
                .map(|r| {
                    (
                        r["version"].as_str().unwrap().to_string(),
                        r["status"].as_str().unwrap().to_string(),
                    )
                })
                .collect(),
            dirs,
        }
    }
}

struct Folder {
    path: PathBuf,
    has_model: bool,
    has_report: bool,
}

struct State {
    versions: Vec<(String, String)>,
    dirs: Vec<Folder>,
}

/// When a run is killed.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// After this long.
    After(Duration),
    /// As soon as a hidden temporary artifact appears (the artifact is being written).
    TempFile,
    /// As soon as a `model.fmr` appears (written; report and registration to come).
    ModelFile,
    /// As soon as the run shows up in the registry as a candidate (activation to come).
    Registered,
}

/// Counts the registry's rows over one open connection, fast enough to catch the moment between
/// a run's registration and its activation.
struct RegistryWatch {
    runtime: tokio::runtime::Runtime,
    store: fmrecall::store::Store,
}

impl RegistryWatch {
    fn open(ws: &Workspace) -> RegistryWatch {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let store = runtime
            .block_on(fmrecall::store::Store::connect(&ws.url()))
            .unwrap();
        RegistryWatch { runtime, store }
    }

    fn rows(&self) -> usize {
        let n: i64 = self
            .runtime
            .block_on(
                sqlx::query_scalar("SELECT COUNT(*) FROM models").fetch_one(self.store.pool()),
            )
            .unwrap_or(0);
        n as usize
    }
}

/// Whether the event a moment waits for has happened.
fn happened(ws: &Workspace, watch: &RegistryWatch, moment: Moment, before: &State) -> bool {
    let new_dirs = || {
        std::fs::read_dir(ws.models())
            .into_iter()
            .flatten()
            .map(|e| e.unwrap().path())
            .filter(|p| before.dirs.iter().all(|d| &d.path != p))
            .collect::<Vec<_>>()
    };
    match moment {
        Moment::After(_) => false,
        Moment::TempFile => new_dirs().iter().any(|d| {
            std::fs::read_dir(d)
                .into_iter()
                .flatten()
                .any(|e| e.unwrap().file_name().to_string_lossy().contains(".tmp"))
        }),
        Moment::ModelFile => new_dirs().iter().any(|d| d.join(MODEL_FILE).exists()),
        Moment::Registered => watch.rows() > before.versions.len(),
    }
}

/// Where the kill landed, judged from what it left behind.
fn landed(before: &State, after: &State, finished: bool) -> &'static str {
    if finished {
        return "finished before the kill";
    }
    let new: Vec<&Folder> = after
        .dirs
        .iter()
        .filter(|d| before.dirs.iter().all(|b| b.path != d.path))
        .collect();
    let new_rows: Vec<&(String, String)> = after
        .versions
        .iter()
        .filter(|v| before.versions.iter().all(|b| b.0 != v.0))
        .collect();
    match (new.first(), new_rows.first()) {
        (None, _) => "loading, training or evaluating",
        (Some(d), None) if !d.has_model => "writing the artifact",
        (Some(d), None) if !d.has_report => "writing the report",
        (Some(_), None) => "before registering",
        (_, Some((_, status))) if status == "candidate" => "between registering and activating",
        (_, Some(_)) => "after activating",
    }
}

#[test]
fn training_killed_at_random_moments_never_leaves_a_registry_pointing_at_a_broken_model() {
    let ws = Workspace {
        root: tempfile::tempdir().unwrap(),
    };
    let mut rng = Rng::new(20261129);
    let mut plan: Vec<Moment> = Vec::new();
    // Three kills early, on a registry that does not exist yet (start-up, migrations).
    for _ in 0..3 {
        plan.push(Moment::After(Duration::from_millis(
            10 + rng.below(150) as u64,
        )));
    }

    let mut landings: std::collections::BTreeMap<&str, usize> = Default::default();
    let mut kills = 0;
    let mut seed = 100;
    let mut watch: Option<RegistryWatch> = None;
    let mut run = |ws: &Workspace,
                   watch: &Option<RegistryWatch>,
                   moment: Moment,
                   landings: &mut std::collections::BTreeMap<&str, usize>| {
        seed += 1;
        let before = ws.check("before a run");
        let started = Instant::now();
        let mut child = ws.start_training(seed);
        let finished = loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "a run failed on its own: {:?}",
                    child.wait_with_output()
                );
                break true;
            }
            let due = match moment {
                Moment::After(d) => started.elapsed() >= d,
                other => happened(
                    ws,
                    watch.as_ref().expect("a registry to watch"),
                    other,
                    &before,
                ),
            };
            if due {
                child.kill().unwrap();
                child.wait().unwrap();
                break false;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "a run took two minutes"
            );
            std::thread::sleep(Duration::from_micros(300));
        };
        let after = ws.check(&format!("a kill at {moment:?}"));
        *landings
            .entry(landed(&before, &after, finished))
            .or_default() += 1;
        !finished
    };

    for &moment in &plan {
        kills += usize::from(run(&ws, &watch, moment, &mut landings));
    }
    // A whole run: it goes through on whatever the kills left, and tells how long a run takes.
    let started = Instant::now();
    let out = ws.start_training(1).wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run_time = started.elapsed();
    ws.check("a whole run");
    watch = Some(RegistryWatch::open(&ws));

    let mut plan = Vec::new();
    for _ in 0..8 {
        plan.push(Moment::After(run_time.mul_f64(0.05 + 1.05 * rng.uniform())));
    }
    for _ in 0..3 {
        plan.extend([Moment::TempFile, Moment::ModelFile, Moment::Registered]);
    }
    rng.shuffle(&mut plan);
    for &moment in &plan {
        kills += usize::from(run(&ws, &watch, moment, &mut landings));
    }

    // The next run succeeds and is what the registry serves.
    let out = ws.start_training(7).wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(summary["activated"], true);
    let state = ws.check("the last run");
    let active: Vec<&(String, String)> =
        state.versions.iter().filter(|v| v.1 == "active").collect();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].0, summary["version"].as_str().unwrap());
    let server = ChildServer::spawn(Launch {
        env: vec![("FMRECALL_DATABASE__URL", ws.url())],
        ..Launch::default()
    });
    let (status, body) = server.get("/v1/model").unwrap();
    let served: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, &served["version"]), (200, &summary["version"]));

    println!(
        "crash safety: {kills} of {} runs killed with SIGKILL (run time {:.2} s), {} models registered; kills landed: {landings:?}",
        3 + plan.len(),
        run_time.as_secs_f64(),
        state.versions.len()
    );
    assert!(kills >= 15, "only {kills} runs were killed mid-way");
    assert!(
        landings.len() >= 4,
        "the kills landed in too few phases to mean much: {landings:?}"
    );
}
