//! `fmrecall export --format npy`: the files read back (by a small `.npy` reader of our own, and by
//! NumPy where it is installed) reproduce the FM's own score of user features ∪ item features.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{random_model, synthetic_job};
use fmrecall::data::FeatureSet;
use fmrecall::fm::export_files::{
    ITEM_IDS, ITEM_VECTORS, MANIFEST, SCORE_FORMULA, USER_CONSTANTS, USER_IDS, USER_VECTORS,
};
use fmrecall::fm::{write_npy, ExportError, ExportManifest, ModelArtifact};
use fmrecall::pipeline::run_train;
use sha2::{Digest, Sha256};

/// A hybrid model (ids plus side features on both sides) trained on generated data in `dir`.
fn trained(dir: &Path) -> ModelArtifact {
    run_train(&synthetic_job(dir, 2, FeatureSet::Hybrid), &mut |_| {}).unwrap();
    ModelArtifact::load(dir).unwrap()
}

/// The same artifact with every parameter drawn at random: two epochs from factors of 1e-4 leave
/// the pairwise terms nearly zero, and the check should weigh every term.
fn randomised(artifact: &ModelArtifact) -> ModelArtifact {
    let mut a = artifact.clone();
    a.model = random_model(a.model.n_features(), a.model.dim(), 99);
    a
}

/// An `.npy` array as read back: shape and values.
struct Npy {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Npy {
    fn row(&self, r: usize) -> &[f32] {
        let d = self.shape[1];
        &self.data[r * d..(r + 1) * d]
    }
}

/// Reads an `.npy` v1.0 file of little-endian f32 in C order, checking everything a reader relies
/// on: magic, version, header length, alignment, the dict's three keys, the data length.
fn read_npy(path: &Path) -> Npy {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{path:?}: magic");
    assert_eq!(&bytes[6..8], &[1, 0], "{path:?}: version 1.0");
    let header_len = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
    let start = 10 + header_len;
    assert_eq!(start % 64, 0, "{path:?}: data starts at a multiple of 64");
    let header = std::str::from_utf8(&bytes[10..start]).unwrap();
    assert!(header.ends_with('\n'), "{path:?}: header ends in a newline");
    let dict = header.trim_end();
    assert!(dict.starts_with('{') && dict.ends_with('}'), "{dict}");
    let value = |key: &str| -> &str {
        let at = dict
            .find(&format!("'{key}': "))
            .unwrap_or_else(|| panic!("{key} in {dict}"));
        &dict[at + key.len() + 4..]
    };
    assert!(value("descr").starts_with("'<f4',"), "{dict}");
    assert!(value("fortran_order").starts_with("False,"), "{dict}");
    let shape = value("shape");
    assert!(shape.starts_with('('), "{dict}");
    let shape: Vec<usize> = shape[1..shape.find(')').unwrap()]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let data: Vec<f32> = bytes[start..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(
        (bytes.len() - start, data.len()),
        (4 * data.len(), shape.iter().product::<usize>()),
        "{path:?}: data length against shape {shape:?}"
    );
    Npy { shape, data }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

/// The model's own score of the user's features ∪ the item's (its direct O(k·m) evaluation).
fn fm_score(a: &ModelArtifact, u: usize, i: usize) -> f32 {
    let features = a.meta.users[u].features.iter();
    let (row, _) = a
        .meta
        .vocabulary
        .encode(features.chain(&a.meta.items[i].features));
    let (idx, val): (Vec<u32>, Vec<f32>) = row.into_iter().unzip();
    a.model.score((&idx, &val))
}

/// user_constants[u] + user_vectors[u] · item_vectors[i] against the FM score, for a spread of
/// users and items, within 1e-4 relative (plus 1e-4 absolute for scores near 0).
fn assert_export_reproduces_scores(a: &ModelArtifact, dir: &Path) {
    let items = read_npy(&dir.join(ITEM_VECTORS));
    let users = read_npy(&dir.join(USER_VECTORS));
    let constants = read_npy(&dir.join(USER_CONSTANTS));
    let (n_users, n_items, k) = (a.meta.users.len(), a.meta.items.len(), a.model.dim());
    assert_eq!(items.shape, [n_items, k + 1]);
    assert_eq!(users.shape, [n_users, k + 1]);
    assert_eq!(constants.shape, [n_users]);
    let mut checked = 0;
    for u in (0..n_users).step_by(n_users / 7).chain([n_users - 1]) {
        assert_eq!(users.row(u)[k], 1.0, "user {u}: last coordinate");
        for i in (0..n_items).step_by(n_items / 6).chain([n_items - 1]) {
            let dot: f64 = users
                .row(u)
                .iter()
                .zip(items.row(i))
                .map(|(&p, &q)| f64::from(p) * f64::from(q))
                .sum();
            let exported = f64::from(constants.data[u]) + dot;
            let want = f64::from(fm_score(a, u, i));
            assert!(
                (exported - want).abs() <= 1e-4 * (1.0 + want.abs()),
                "user {u}, item {i}: export gives {exported}, FM gives {want}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 50, "{checked} pairs checked");
}

#[test]
fn the_export_reproduces_the_fm_score_of_user_and_item_features() {
    let dir = tempfile::tempdir().unwrap();
    let artifact = trained(&dir.path().join("model"));
    // Hybrid: side features on both sides, so c_u and b_i hold within-side interactions.
    assert!(artifact.meta.users[0].features.len() > 1);
    assert!(artifact.meta.items[0].features.len() > 1);
    for (name, a) in [
        ("trained", artifact.clone()),
        ("random", randomised(&artifact)),
    ] {
        let out = dir.path().join(name);
        let report = write_npy(&a, &out).unwrap();
        assert_eq!(report.dir, out);
        assert_export_reproduces_scores(&a, &out);
    }
}

#[test]
fn ids_files_and_manifest_line_up_with_the_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let a = trained(&dir.path().join("model"));
    let out = dir.path().join("export");
    let report = write_npy(&a, &out).unwrap();

    let user_ids: Vec<&str> = a.meta.users.iter().map(|e| e.id.as_str()).collect();
    let item_ids: Vec<&str> = a.meta.items.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(lines(&out.join(USER_IDS)), user_ids);
    assert_eq!(lines(&out.join(ITEM_IDS)), item_ids);

    let manifest: ExportManifest =
        serde_json::from_slice(&std::fs::read(out.join(MANIFEST)).unwrap()).unwrap();
    assert_eq!(manifest, report.manifest);
    assert_eq!(manifest.format, "npy");
    assert_eq!(manifest.model_version, a.meta.version);
    assert_eq!(manifest.dim, a.model.dim());
    assert_eq!(
        (manifest.users, manifest.items),
        (user_ids.len(), item_ids.len())
    );
    assert_eq!(
        manifest.score,
        "score(u, i) = user_constants[u] + user_vectors[u] · item_vectors[i]"
    );
    assert_eq!(manifest.score, SCORE_FORMULA);
    // Every file is listed with its real size and checksum; nothing else is in the folder (no
    // temporary file left behind).
    let mut names: Vec<String> = manifest.files.iter().map(|f| f.name.clone()).collect();
    for f in &manifest.files {
        let bytes = std::fs::read(out.join(&f.name)).unwrap();
        assert_eq!(f.bytes, bytes.len() as u64, "{}", f.name);
        let hex: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(f.sha256, hex, "{}", f.name);
    }
    names.push(MANIFEST.into());
    names.sort();
    let mut present: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    present.sort();
    assert_eq!(present, names);
    assert_eq!(
        names,
        [
            ITEM_IDS,
            ITEM_VECTORS,
            MANIFEST,
            USER_CONSTANTS,
            USER_IDS,
            USER_VECTORS
        ]
    );

    // A second export into the same folder replaces the first whole.
    let b = randomised(&a);
    write_npy(&b, &out).unwrap();
    assert_export_reproduces_scores(&b, &out);
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 6);
}

#[test]
fn an_id_with_a_line_break_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = trained(&dir.path().join("model"));
    a.meta.items[3].id = "multi\nline".into();
    let out = dir.path().join("export");
    let err = write_npy(&a, &out).unwrap_err();
    assert!(
        matches!(&err, ExportError::LineBreakInId { kind: "item", id, .. } if id == "multi\nline"),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains("item_ids.txt"), "{message}");
    assert!(message.contains("line break"), "{message}");
    assert!(!out.exists(), "nothing is written");
}

/// The binary, with its database in a folder of the test's own (never the working folder).
fn fmrecall_in(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fmrecall"));
    c.env(
        "FMRECALL_DATABASE__URL",
        format!("sqlite://{}/registry.db", dir.display()),
    );
    c
}

fn export_command(dir: &Path, model: &Path, out: &Path) -> std::process::Output {
    fmrecall_in(dir)
        .arg("export")
        .arg("--model")
        .arg(model)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn the_command_line_exports_and_names_a_bad_out_path() {
    let dir = tempfile::tempdir().unwrap();
    let model: PathBuf = dir.path().join("model");
    let a = trained(&model);

    let out = dir.path().join("vectors");
    let ok = export_command(dir.path(), &model, &out);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let expected = format!(
        "exported {} users and {} items",
        a.meta.users.len(),
        a.meta.items.len()
    );
    assert!(stdout.contains(&expected), "{stdout}");
    assert!(stdout.contains(&out.display().to_string()), "{stdout}");
    assert_export_reproduces_scores(&a, &out);

    // A file where the folder should be.
    let file = dir.path().join("not-a-folder");
    std::fs::write(&file, "x").unwrap();
    let bad = export_command(dir.path(), &model, &file);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");
    assert!(stderr.contains("not a folder"), "{stderr}");
    assert_eq!(std::fs::read(&file).unwrap(), b"x");

    // `--format parquet` writes the two tables and the manifest.
    let parquet = fmrecall_in(dir.path())
        .arg("export")
        .arg("--model")
        .arg(&model)
        .arg("--out")
        .arg(dir.path().join("pq"))
        .args(["--format", "parquet"])
        .output()
        .unwrap();
    assert!(
        parquet.status.success(),
        "{}",
        String::from_utf8_lossy(&parquet.stderr)
    );
    for name in ["items.parquet", "users.parquet", "manifest.json"] {
        assert!(dir.path().join("pq").join(name).is_file(), "{name}");
    }
}

/// NumPy reads the files as they are (skipped, saying so, where python3 has no NumPy; the checks
/// above do not depend on it).
#[test]
fn numpy_loads_the_export_and_gets_the_fm_score() {
    let has_numpy = Command::new("python3")
        .args(["-c", "import numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_numpy {
        println!("skipped: python3 with numpy is not available on this machine");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = randomised(&trained(&dir.path().join("model")));
    let out = dir.path().join("export");
    write_npy(&a, &out).unwrap();
    let script = r#"
import json, sys
import numpy as np
d = sys.argv[1]
items = np.load(d + "/item_vectors.npy")
users = np.load(d + "/user_vectors.npy")
consts = np.load(d + "/user_constants.npy")
uids = open(d + "/user_ids.txt", encoding="utf-8").read().split("\n")[:-1]
iids = open(d + "/item_ids.txt", encoding="utf-8").read().split("\n")[:-1]
u, i = uids.index(sys.argv[2]), iids.index(sys.argv[3])
all_scores = consts[:, None] + users @ items.T
print(json.dumps({
    "items": list(items.shape), "users": list(users.shape), "constants": list(consts.shape),
    "dtype": str(items.dtype), "c_contiguous": bool(items.flags["C_CONTIGUOUS"]),
    "score": float(consts[u] + users[u].astype(np.float64) @ items[i].astype(np.float64)),
    "matrix_score": float(all_scores[u, i]),
}))
"#;
    let (u, i) = (a.meta.users.len() / 2, a.meta.items.len() / 3);
    let run = Command::new("python3")
        .args(["-c", script])
        .arg(&out)
        .args([&a.meta.users[u].id, &a.meta.items[i].id])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let (n, m, k) = (a.meta.users.len(), a.meta.items.len(), a.model.dim());
    assert_eq!(got["items"], serde_json::json!([m, k + 1]));
    assert_eq!(got["users"], serde_json::json!([n, k + 1]));
    assert_eq!(got["constants"], serde_json::json!([n]));
    assert_eq!(got["dtype"], "float32");
    assert_eq!(got["c_contiguous"], true);
    let want = f64::from(fm_score(&a, u, i));
    for key in ["score", "matrix_score"] {
        let s = got[key].as_f64().unwrap();
        assert!(
            (s - want).abs() <= 1e-4 * (1.0 + want.abs()),
            "{key}: numpy gives {s}, FM gives {want}"
        );
    }
}

/// A Parquet vectors file read back through the crate's row API (not the column writer that
/// wrote it): per row, id, the scalar column and the vector.
fn read_vectors_parquet(path: &Path, scalar: &str) -> Vec<(String, f32, Vec<f32>)> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::{ListAccessor, RowAccessor};
    let reader = SerializedFileReader::try_from(path).unwrap();
    let names: Vec<String> = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .root_schema()
        .get_fields()
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    assert_eq!(names, ["id", scalar, "vector"], "{path:?}");
    reader
        .into_iter()
        .map(|row| {
            let row = row.unwrap();
            let list = row.get_list(2).unwrap();
            let vector = (0..list.len())
                .map(|j| list.get_float(j).unwrap())
                .collect();
            (
                row.get_string(0).unwrap().clone(),
                row.get_float(1).unwrap(),
                vector,
            )
        })
        .collect()
}

#[test]
fn the_parquet_export_reproduces_the_fm_score_with_ids_and_biases() {
    use fmrecall::fm::export_files::{ITEMS_PARQUET, PARQUET_SCORE_FORMULA, USERS_PARQUET};
    let dir = tempfile::tempdir().unwrap();
    let a = randomised(&trained(&dir.path().join("model")));
    let out = dir.path().join("export");
    let report = fmrecall::fm::write_parquet(&a, &out).unwrap();
    assert_eq!(report.manifest.format, "parquet");
    assert_eq!(report.manifest.score, PARQUET_SCORE_FORMULA);
    let items = read_vectors_parquet(&out.join(ITEMS_PARQUET), "bias");
    let users = read_vectors_parquet(&out.join(USERS_PARQUET), "constant");
    let k = a.model.dim();
    assert_eq!(
        items.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        a.meta
            .items
            .iter()
            .map(|e| e.id.as_str())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        users.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        a.meta
            .users
            .iter()
            .map(|e| e.id.as_str())
            .collect::<Vec<_>>()
    );
    // The same numbers as the npy export, which the test above checks against the FM.
    let npy = dir.path().join("npy");
    write_npy(&a, &npy).unwrap();
    let npy_items = read_npy(&npy.join(ITEM_VECTORS));
    for (i, (_, bias, vector)) in items.iter().enumerate() {
        assert_eq!(vector.len(), k + 1);
        assert_eq!(vector.as_slice(), npy_items.row(i), "item {i}");
        assert_eq!(*bias, vector[k], "item {i}: bias is the last coordinate");
    }
    let mut checked = 0;
    let (n_users, n_items) = (users.len(), items.len());
    for u in (0..n_users).step_by(n_users / 7).chain([n_users - 1]) {
        let (_, constant, p) = &users[u];
        assert_eq!(p[k], 1.0, "user {u}: last coordinate");
        for i in (0..n_items).step_by(n_items / 6).chain([n_items - 1]) {
            let dot: f64 = p
                .iter()
                .zip(&items[i].2)
                .map(|(&x, &y)| f64::from(x) * f64::from(y))
                .sum();
            let exported = f64::from(*constant) + dot;
            let want = f64::from(fm_score(&a, u, i));
            assert!(
                (exported - want).abs() <= 1e-4 * (1.0 + want.abs()),
                "user {u}, item {i}: export gives {exported}, FM gives {want}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 50, "{checked} pairs checked");
}
