//! The command line as other tools use it: `train --json` and `eval --json`, and its errors.

use std::process::Command;

/// The binary, with its database in a folder of the test's own (never the working folder).
fn fmrecall_in(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fmrecall"));
    c.env(
        "FMRECALL_DATABASE__URL",
        format!("sqlite://{}/registry.db", dir.display()),
    );
    c
}

fn last_json_line(stdout: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(stdout);
    let line = text.lines().last().expect("some output");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[test]
fn train_and_eval_print_the_metric_contract_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model");
    let train = fmrecall_in(dir.path())
        .args([
            "train",
            "--format",
            "synthetic",
            "--users",
            "300",
            "--items",
            "200",
        ])
        .args([
            "--split",
            "random:0.2",
            "--dim",
            "8",
            "--epochs",
            "3",
            "--threads",
            "2",
            "--json",
            // The evaluated model itself, so that `eval` below measures what train measured.
            "--no-refit",
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        train.status.success(),
        "{}",
        String::from_utf8_lossy(&train.stderr)
    );
    let summary = last_json_line(&train.stdout);
    for key in [
        "precision@10",
        "recall@10",
        "ndcg@10",
        "auc",
        "train_seconds",
        "artifact",
    ] {
        assert!(summary.get(key).is_some(), "missing {key} in {summary}");
    }
    assert!(out.join("model.fmr").is_file());
    assert!(out.join("history.csv").is_file());
    assert!(out.join("training.svg").is_file());

    let eval = fmrecall_in(dir.path())
        .args([
            "eval",
            "--format",
            "synthetic",
            "--users",
            "300",
            "--items",
            "200",
        ])
        .args(["--split", "random:0.2", "--json", "--model"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        eval.status.success(),
        "{}",
        String::from_utf8_lossy(&eval.stderr)
    );
    let metrics = last_json_line(&eval.stdout);
    // The same data, split and model give the same figures as the training run reported.
    for key in ["precision@10", "recall@10", "ndcg@10", "auc"] {
        let (a, b) = (
            summary[key].as_f64().unwrap(),
            metrics[key].as_f64().unwrap(),
        );
        assert!((a - b).abs() < 1e-9, "{key}: train {a} vs eval {b}");
    }
    assert_eq!(summary["fit"], "train_split");

    // The deployment path's model has learnt from the test split too: eval says so.
    let refit = fmrecall_in(dir.path())
        .args(["train", "--format", "synthetic", "--users", "300"])
        .args(["--items", "200", "--dim", "8", "--epochs", "2", "--json"])
        .arg("--out")
        .arg(dir.path().join("refit"))
        .output()
        .unwrap();
    assert!(refit.status.success());
    assert_eq!(last_json_line(&refit.stdout)["fit"], "all_after_evaluation");
    let eval = fmrecall_in(dir.path())
        .args(["eval", "--format", "synthetic", "--users", "300"])
        .args(["--items", "200", "--json", "--model"])
        .arg(dir.path().join("refit"))
        .output()
        .unwrap();
    assert!(eval.status.success());
    let stderr = String::from_utf8_lossy(&eval.stderr);
    assert!(
        stderr.contains("warning:") && stderr.contains("--no-refit"),
        "{stderr}"
    );
}

#[test]
fn ids_only_on_data_with_side_features_warns_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let train = fmrecall_in(dir.path())
        .args(["train", "--format", "synthetic", "--users", "200"])
        .args(["--items", "100", "--dim", "8", "--epochs", "1"])
        .args(["--features", "ids", "--no-register", "--out"])
        .arg(dir.path().join("m"))
        .output()
        .unwrap();
    assert!(train.status.success());
    let stderr = String::from_utf8_lossy(&train.stderr);
    assert!(
        stderr.contains("warning: --features ids ignores the side features"),
        "{stderr}"
    );
}

#[test]
fn a_bad_row_fails_with_its_file_and_line_and_a_nonzero_exit() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("interactions.csv"),
        "user_id,item_id,rating\nu,i,4\nu,j,x\n",
    )
    .unwrap();
    let run = fmrecall_in(dir.path())
        .args(["train", "--format", "csv", "--data"])
        .arg(dir.path())
        .arg("--out")
        .arg(dir.path().join("m"))
        .output()
        .unwrap();
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("interactions.csv:3"), "{err}");
    assert!(!dir.path().join("m/model.fmr").exists());
}

#[test]
fn serving_a_model_that_is_not_there_fails_before_listening_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let nope = dir.path().join("models/nope");
    let mut child = fmrecall_in(dir.path())
        .args(["serve", "--bind", "127.0.0.1:0", "--model"])
        .arg(&nope)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > std::time::Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("`serve --model {}` kept running", nope.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("model not found: {}", nope.display())),
        "{stderr}"
    );
    assert!(!stderr.contains("listening"), "{stderr}");
}

#[test]
fn out_of_range_parameters_are_refused_with_the_allowed_range() {
    let dir = tempfile::tempdir().unwrap();
    let run = fmrecall_in(dir.path())
        .args(["train", "--format", "synthetic", "--learning-rate=-1"])
        .output()
        .unwrap();
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("learning_rate should be a finite number > 0"),
        "{err}"
    );
}

#[test]
fn import_train_from_the_database_register_activate_and_roll_back() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = fmrecall_in(dir.path()).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(run(&["migrate"]).contains("applied 6 migration(s)"));
    let first: serde_json::Value = serde_json::from_str(
        run(&["import", "synthetic", "--users", "200", "--items", "100"]).trim(),
    )
    .unwrap();
    assert_eq!(first["users"], 200);
    let again: serde_json::Value = serde_json::from_str(
        run(&["import", "synthetic", "--users", "200", "--items", "100"]).trim(),
    )
    .unwrap();
    assert_eq!(
        (
            again["users"].as_u64(),
            again["items"].as_u64(),
            again["events"].as_u64()
        ),
        (Some(0), Some(0), Some(0))
    );

    let out = |name: &str| dir.path().join(name).display().to_string();
    let a = last_json_line(
        run(&[
            "train",
            "--source",
            "db",
            "--epochs",
            "2",
            "--dim",
            "8",
            "--json",
            "--activate",
            "--out",
            &out("a"),
        ])
        .as_bytes(),
    );
    assert_eq!(a["activated"], true);
    let b = last_json_line(
        run(&[
            "train",
            "--source",
            "db",
            "--epochs",
            "2",
            "--dim",
            "8",
            "--seed",
            "5",
            "--json",
            "--activate-if",
            "precision@10>=2",
            "--out",
            &out("b"),
        ])
        .as_bytes(),
    );
    assert_eq!(
        b["activated"], false,
        "a rule that cannot hold leaves a candidate"
    );
    let b_id = b["registry_id"].as_i64().unwrap().to_string();
    assert!(run(&["models", "activate", &b_id]).contains("is active"));
    let list = run(&["models", "list"]);
    assert_eq!(
        list.matches("active").count() - list.matches("inactive").count(),
        1,
        "{list}"
    );
    assert!(run(&["models", "rollback"]).contains(&format!("model {} (", a["registry_id"])));
    let shown: serde_json::Value = serde_json::from_str(&run(&["models", "show", &b_id])).unwrap();
    assert_eq!(shown["status"], "retired");
}

#[test]
fn a_batch_job_logs_its_stages_and_epochs_with_time_left_and_counts_print_as_integers() {
    let dir = tempfile::tempdir().unwrap();
    // stderr is a pipe here, as in a scheduler's log: no progress bar, log lines instead.
    let train = fmrecall_in(dir.path())
        .args(["train", "--format", "synthetic", "--users", "200"])
        .args([
            "--items",
            "100",
            "--dim",
            "8",
            "--epochs",
            "3",
            "--no-register",
        ])
        .arg("--out")
        .arg(dir.path().join("m"))
        .output()
        .unwrap();
    assert!(train.status.success());
    let log = String::from_utf8_lossy(&train.stderr);
    for line in [
        "stage=\"loading data\"",
        "phase=\"final\"",
        "epoch=3",
        "eta_seconds=",
        "phase=\"refit\"",
        "stage=\"writing the artifact\"",
    ] {
        assert!(log.contains(line), "{line} in {log}");
    }
    let summary = String::from_utf8_lossy(&train.stdout);
    let users = summary
        .lines()
        .find(|l| l.trim_start().starts_with("users"))
        .expect("a users row");
    assert!(!users.contains('.'), "{users}");
}

#[test]
fn progress_lines_reach_a_log_file_and_the_summary_reports_costs_and_peak_memory() {
    let dir = tempfile::tempdir().unwrap();
    // stderr redirected to a file, as `fmrecall train … 2> train.log` in a batch job.
    let log_path = dir.path().join("train.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let train = fmrecall_in(dir.path())
        .args(["train", "--format", "synthetic", "--users", "300"])
        .args(["--items", "150", "--dim", "8", "--epochs", "3"])
        .args(["--eval-every", "1", "--eval-users", "40", "--no-refit"])
        .args(["--no-register", "--json", "--out"])
        .arg(dir.path().join("m"))
        .stderr(log_file)
        .output()
        .unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(train.status.success(), "{log}");
    for line in [
        "stage=\"loading data\"",
        "epoch=1",
        "epoch=3",
        "eta_seconds=",
        "stage=\"evaluating\"",
        "users_done=",
        "stage=\"writing the artifact\"",
    ] {
        assert!(log.contains(line), "{line} in {log}");
    }
    let summary = last_json_line(&train.stdout);
    assert_eq!(summary["history_users"], 40, "{summary}");
    let peak = summary["peak_rss_bytes"].as_u64().expect("peak_rss_bytes");
    assert!(peak > 1 << 20, "{summary}");
    assert!(summary["eval_seconds"].as_f64().is_some(), "{summary}");
    assert!(summary["load_seconds"].as_f64().is_some(), "{summary}");
}
