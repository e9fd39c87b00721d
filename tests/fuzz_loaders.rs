//! Loader fuzzing (proptest, on the stable toolchain): every reader of files from outside the
//! process — the CSV format, the three MovieLens layouts, the model artifact and the saved graph
//! index — is fed arbitrary bytes and mutations of valid files, and must answer `Ok` or `Err`,
//! never panic. What loads must also be usable: a dataset trains, an artifact serves recall, a
//! graph answers a search. Mutations of the two checksummed formats are also re-sealed (the
//! checksum recomputed after the change), so that the checks behind the checksum are fuzzed too.
//!
//! `FMRECALL_FUZZ_CASES` sets the number of cases per property (256); the cases are the same on
//! every run (a fixed seed) unless `FMRECALL_FUZZ_SEED` names another seed, or `random`.

mod common;

use std::path::Path;
use std::sync::{Arc, OnceLock};

use fmrecall::config::Settings;
use fmrecall::data::{synthetic::SyntheticConfig, DataSource, Dataset, FeatureSet, Format};
use fmrecall::fm::ModelArtifact;
use fmrecall::pipeline::{train_on, EpochChoice};
use fmrecall::recall::{Filter, GraphIndex, GraphParams, RecallIndex};
use fmrecall::serving::{RecallQuery, ServingModel, UserSpec};
use fmrecall::vectors::ItemVectors;
use proptest::prelude::*;
use sha2::{Digest, Sha256};

fn config() -> ProptestConfig {
    cases(1)
}

/// `FMRECALL_FUZZ_CASES` (256) times `times` cases, from `FMRECALL_FUZZ_SEED` (fixed by default).
fn cases(times: u32) -> ProptestConfig {
    use proptest::test_runner::RngSeed;
    let cases: u32 = std::env::var("FMRECALL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let rng_seed = match std::env::var("FMRECALL_FUZZ_SEED").as_deref() {
        Ok("random") => RngSeed::Random,
        Ok(seed) => RngSeed::Fixed(
            seed.parse()
                .expect("FMRECALL_FUZZ_SEED: a number or random"),
        ),
        Err(_) => RngSeed::Fixed(20261129),
    };
    ProptestConfig {
        cases: cases * times,
        rng_seed,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One change to a file's bytes; positions are taken modulo the length.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    Repeat(usize, usize),
}

/// Byte strings that mean something to one of the parsers.
fn token() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec![
            &b","[..],
            b"\"",
            b"\n",
            b"\r\n",
            b"\r",
            b"\t",
            b"::",
            b"|",
            b":",
            b"\xff",
            b"\x00",
            b"\xef\xbb\xbf",
            b"\xc3\x28",
            b"-1",
            b"0",
            b"1e400",
            b"NaN",
            b"inf",
            b"-inf",
            b"99999999999999999999",
            b"4294967296",
            b"-9223372036854775809",
            b"5.5",
            b"\"\"",
            b"userId",
            b"user_id,item_id",
            b"id,features,title",
            b"|||",
            b"(1995)",
            b"()",
        ])
        .prop_map(|t| t.to_vec()),
        prop::collection::vec(any::<u8>(), 0..16),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, x)| Mutation::Flip(at, x)),
        (any::<usize>(), token()).prop_map(|(at, t)| Mutation::Insert(at, t)),
        (any::<usize>(), 1..64usize).prop_map(|(at, n)| Mutation::Delete(at, n)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1..64usize).prop_map(|(at, n)| Mutation::Repeat(at, n)),
    ]
}

fn mutate(bytes: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for m in mutations {
        let len = b.len();
        let at = |p: usize| if len == 0 { 0 } else { p % (len + 1) };
        match m {
            Mutation::Flip(p, x) if len > 0 => b[p % len] ^= x,
            Mutation::Flip(..) => {}
            Mutation::Insert(p, t) => {
                let p = at(*p);
                b.splice(p..p, t.iter().copied());
            }
            Mutation::Delete(p, n) => {
                let p = at(*p);
                b.drain(p..(p + n).min(len));
            }
            Mutation::Truncate(p) => b.truncate(at(*p)),
            Mutation::Repeat(p, n) => {
                let p = at(*p);
                let piece = b[p..(p + n).min(len)].to_vec();
                b.splice(p..p, piece);
            }
        }
    }
    b
}

/// What a file of a dataset folder holds in one case.
#[derive(Debug, Clone)]
enum FileCase {
    Valid,
    Mutated(Vec<Mutation>),
    Arbitrary(Vec<u8>),
    Missing,
}

fn file_case() -> impl Strategy<Value = FileCase> {
    prop_oneof![
        // The loaders refuse a folder at its first bad row, so most cases keep most files valid
        // (or nearly) to get past the first file to the others and, often enough, to training.
        4 => Just(FileCase::Valid),
        4 => prop::collection::vec(mutation(), 1..4).prop_map(FileCase::Mutated),
        1 => prop::collection::vec(any::<u8>(), 0..300).prop_map(FileCase::Arbitrary),
        1 => Just(FileCase::Missing),
    ]
}

/// Writes the folder: each valid file of `files` as its case says.
fn write_folder(dir: &Path, files: &[(&str, &[u8])], cases: &[FileCase]) {
    for ((name, valid), case) in files.iter().zip(cases) {
        let bytes = match case {
            FileCase::Valid => valid.to_vec(),
            FileCase::Mutated(m) => mutate(valid, m),
            FileCase::Arbitrary(b) => b.clone(),
            FileCase::Missing => continue,
        };
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// Loads the folder; what loads must be consistent and must train. Returns whether it loaded.
fn load_and_use(dir: &Path, format: Format, split: &str) -> bool {
    let source = DataSource {
        format,
        dir: dir.to_path_buf(),
        split: split.parse().unwrap(),
        seed: 1,
        synthetic: SyntheticConfig::default(),
        columns: Default::default(),
    };
    let Ok(dataset) = Dataset::load(&source) else {
        return false;
    };
    assert!(!dataset.interactions.is_empty());
    for it in &dataset.interactions {
        assert!((it.user as usize) < dataset.users.len());
        assert!((it.item as usize) < dataset.items.len());
    }
    for (prefix, entities) in [("user:", &dataset.users), ("item:", &dataset.items)] {
        for e in entities {
            assert_eq!(e.features.first(), Some(&format!("{prefix}{}", e.id)));
        }
    }
    let out = tempfile::tempdir().unwrap();
    let mut job = common::synthetic_job(out.path(), 1, FeatureSet::Hybrid);
    job.source = source;
    job.params.dim = 2;
    job.epochs = EpochChoice::Fixed(1);
    if let Ok(summary) = train_on(&job, dataset, &mut |_| {}) {
        ModelArtifact::load(&summary.artifact).expect("a trained model loads");
    }
    true
}

const CSV_INTERACTIONS: &[u8] = b"user_id,item_id,rating,timestamp\nu1,i1,5,100\nu1,i2,3,101\nu2,i1,4,102\n\"u2\",\"i3\",5,103,\nu3,i2,4.5,104\n";
const CSV_USERS: &[u8] = b"id,features,title\nu1,age:18-24|region:north,\nu2,age:25-34,\n";
const CSV_ITEMS: &[u8] = b"id,features,title\ni1,genre:Drama|decade:1990,\"Heat, Part One\"\ni2,genre:Comedy,Second\ni3,genre:Drama,Third\ni4,genre:Horror,Never rated\n";

const ML100K_DATA: &[u8] =
    b"1\t10\t5\t881250949\n1\t20\t3\t881250950\n2\t10\t4\t881250951\n2\t30\t5\t881250952\n3\t20\t4\t881250953\n";
const ML100K_BASE: &[u8] = b"1\t10\t5\t881250949\n2\t10\t4\t881250951\n3\t20\t4\t881250953\n";
const ML100K_TEST: &[u8] = b"1\t20\t3\t881250950\n2\t30\t5\t881250952\n";
const ML100K_USERS: &[u8] = b"1|24|M|technician|85711\n2|53|F|other|94043\n3|17|M|writer|T8H1N\n";
const ML100K_ITEMS: &[u8] = b"10|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n20|Caf\xe9 (1982)|01-Jan-1982||http://y|0|0|0|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0\n30|Heat (1995)|15-Dec-1995||http://z|0|1|0|0|0|0|1|0|0|0|0|0|0|0|0|0|1|0|0\n";
const ML100K_GENRES: &[u8] = b"unknown|0\nAction|1\nAdventure|2\nAnimation|3\nChildren's|4\nComedy|5\nCrime|6\nDocumentary|7\nDrama|8\nFantasy|9\nFilm-Noir|10\nHorror|11\nMusical|12\nMystery|13\nRomance|14\nSci-Fi|15\nThriller|16\nWar|17\nWestern|18\n";

const ML1M_RATINGS: &[u8] =
    b"1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n2::914::5::978298414\n";
const ML1M_USERS: &[u8] = b"1::F::1::10::48067\n2::M::56::16::70072\n";
const ML1M_MOVIES: &[u8] = b"1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::James and the Giant Peach (1996)::Animation|Children's|Musical\n914::My Fair Lady (1964)::Musical|Romance\n";

const MLCSV_RATINGS: &[u8] = b"userId,movieId,rating,timestamp\r\n1,1,4.5,964982703\r\n1,3,4.0,964981247\r\n2,1,2.5,964982224\r\n2,5,5.0,964982225\r\n";
const MLCSV_MOVIES: &[u8] = b"movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n3,\"American President, The (1995)\",Comedy|Drama|Romance\n5,Empty (2010),(no genres listed)\n";

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_csv_format_never_panics(cases in prop::collection::vec(file_case(), 3)) {
        let dir = tempfile::tempdir().unwrap();
        let files = [
            ("interactions.csv", CSV_INTERACTIONS),
            ("users.csv", CSV_USERS),
            ("items.csv", CSV_ITEMS),
        ];
        write_folder(dir.path(), &files, &cases);
        load_and_use(dir.path(), Format::Csv, "random:0.3");
    }

    #[test]
    fn the_movielens_100k_layout_never_panics(
        cases in prop::collection::vec(file_case(), 6),
        canonical in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let files = [
            ("u.data", ML100K_DATA),
            ("ua.base", ML100K_BASE),
            ("ua.test", ML100K_TEST),
            ("u.user", ML100K_USERS),
            ("u.item", ML100K_ITEMS),
            ("u.genre", ML100K_GENRES),
        ];
        write_folder(dir.path(), &files, &cases);
        load_and_use(dir.path(), Format::Movielens, if canonical { "ua" } else { "random:0.3" });
    }

    #[test]
    fn the_movielens_1m_and_csv_layouts_never_panic(
        cases in prop::collection::vec(file_case(), 3),
        csv_layout in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        if csv_layout {
            let files = [("ratings.csv", MLCSV_RATINGS), ("movies.csv", MLCSV_MOVIES), ("links.csv", &b""[..])];
            write_folder(dir.path(), &files, &cases);
        } else {
            let files = [("ratings.dat", ML1M_RATINGS), ("users.dat", ML1M_USERS), ("movies.dat", ML1M_MOVIES)];
            write_folder(dir.path(), &files, &cases);
        }
        load_and_use(dir.path(), Format::Movielens, "random:0.3");
    }
}

/// A small trained model's artifact bytes (trained once per test binary).
fn artifact_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut job = common::synthetic_job(dir.path(), 1, FeatureSet::Hybrid);
        job.source.synthetic.users = 40;
        job.source.synthetic.items = 30;
        job.params.dim = 4;
        fmrecall::pipeline::run_train(&job, &mut |_| {}).unwrap();
        std::fs::read(dir.path().join("model.fmr")).unwrap()
    })
}

/// The artifact's header (JSON) and parameters (f32), as written.
fn artifact_parts() -> (serde_json::Value, Vec<f32>) {
    let b = artifact_bytes();
    let header_len = u64::from_le_bytes(b[12..20].try_into().unwrap()) as usize;
    let header = serde_json::from_slice(&b[20..20 + header_len]).unwrap();
    let floats = b[20 + header_len..b.len() - 32]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (header, floats)
}

/// An artifact file from header bytes and parameters, framed and checksummed as the writer does.
fn seal_artifact(header: &[u8], floats: &[f32]) -> Vec<u8> {
    let mut out = artifact_bytes()[..12].to_vec();
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(header);
    for x in floats {
        out.extend_from_slice(&x.to_le_bytes());
    }
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

/// One change to a JSON document: the node at a depth-first position replaced, removed or
/// duplicated, or a field the reader and the server rely on replaced.
#[derive(Debug, Clone)]
enum JsonEdit {
    Replace(usize, serde_json::Value),
    Remove(usize),
    Duplicate(usize),
    Field(&'static str, serde_json::Value),
}

/// Parts of the header whose shape the rest of the program depends on.
const FIELDS: &[&str] = &[
    "/version",
    "/params/dim",
    "/params/loss",
    "/vocabulary",
    "/vocabulary/0",
    "/users",
    "/users/0",
    "/users/0/id",
    "/users/0/features",
    "/users/0/features/0",
    "/users/1/features",
    "/items",
    "/items/0",
    "/items/0/id",
    "/items/0/features",
    "/items/0/features/0",
    "/items/1/title",
    "/seen",
    "/seen/0",
    "/seen/0/0",
    "/seen/1",
    "/metrics",
    "/metrics/k",
    "/training/history",
    "/training/history/0",
    "/training/history/0/metrics",
    "/training/epochs",
];

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::json;
    // Empty containers and nulls first: shapes the writer never produces.
    prop::sample::select(vec![
        json!([]),
        json!([]),
        json!(null),
        json!({}),
        json!(""),
        json!(null),
        json!(0),
        json!(-1),
        json!(1),
        json!(2),
        json!(1.5),
        json!(1e30),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(""),
        json!("x"),
        json!("user:0"),
        json!("item:1"),
        json!([]),
        json!({}),
        json!([0]),
        json!([4294967295u32]),
        json!(["x"]),
        json!(true),
    ])
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        3 => (prop::sample::select(FIELDS), json_value()).prop_map(|(f, v)| JsonEdit::Field(f, v)),
        1 => (any::<usize>(), json_value()).prop_map(|(at, v)| JsonEdit::Replace(at, v)),
        1 => any::<usize>().prop_map(JsonEdit::Remove),
        1 => any::<usize>().prop_map(JsonEdit::Duplicate),
    ]
}

fn count_nodes(v: &serde_json::Value) -> usize {
    1 + match v {
        serde_json::Value::Array(a) => a.iter().map(count_nodes).sum(),
        serde_json::Value::Object(o) => o.values().map(count_nodes).sum(),
        _ => 0,
    }
}

/// Applies `edit` to the node at depth-first position `target` (counting from `*at`).
fn apply_edit(v: &mut serde_json::Value, target: usize, at: &mut usize, edit: &JsonEdit) -> bool {
    let children: Vec<String> = match v {
        serde_json::Value::Array(a) => (0..a.len()).map(|i| i.to_string()).collect(),
        serde_json::Value::Object(o) => o.keys().cloned().collect(),
        _ => Vec::new(),
    };
    for key in children {
        *at += 1;
        if *at == target {
            match (v, edit) {
                (serde_json::Value::Array(a), JsonEdit::Replace(_, x)) => {
                    a[key.parse::<usize>().unwrap()] = x.clone()
                }
                (serde_json::Value::Object(o), JsonEdit::Replace(_, x)) => {
                    o.insert(key, x.clone());
                }
                (serde_json::Value::Array(a), JsonEdit::Remove(_)) => {
                    a.remove(key.parse::<usize>().unwrap());
                }
                (serde_json::Value::Object(o), JsonEdit::Remove(_)) => {
                    o.remove(&key);
                }
                (serde_json::Value::Array(a), JsonEdit::Duplicate(_)) => {
                    let i = key.parse::<usize>().unwrap();
                    let x = a[i].clone();
                    a.insert(i, x);
                }
                (serde_json::Value::Object(_), JsonEdit::Duplicate(_)) => {}
                _ => unreachable!("only arrays and objects have children"),
            }
            return true;
        }
        let child = match v {
            serde_json::Value::Array(a) => &mut a[key.parse::<usize>().unwrap()],
            serde_json::Value::Object(o) => o.get_mut(&key).unwrap(),
            _ => unreachable!(),
        };
        if apply_edit(child, target, at, edit) {
            return true;
        }
    }
    false
}

/// An artifact that loads is served: loaded with its index, asked for a few recalls. Returns
/// whether it served.
fn serve_if_it_loads(bytes: &[u8]) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("model.fmr");
    std::fs::write(&file, bytes).unwrap();
    let Ok(artifact) = ModelArtifact::from_bytes(bytes, &file) else {
        return false;
    };
    let settings = Settings::load(None).unwrap();
    let Ok(model) = ServingModel::load(&file, &settings.index) else {
        return false;
    };
    let users = artifact
        .meta
        .users
        .iter()
        .take(3)
        .map(|u| Some(u.id.clone()));
    for id in users.chain([None, Some("nobody".to_string())]) {
        for features in [
            None,
            Some(vec!["region:r1".to_string(), "user:0".to_string()]),
        ] {
            let query = RecallQuery {
                user: UserSpec {
                    id: id.clone(),
                    features: features.clone(),
                    history: Vec::new(),
                },
                k: 5,
                exclude_seen: true,
                exclude_items: vec!["1".into()],
                ef: None,
                filter: None,
            };
            let _ = model.recall(&query);
            let _ = model.score(&query.user, &["0".to_string(), "1".to_string()]);
        }
    }
    for item in artifact.meta.items.iter().take(3) {
        let _ = model.similar(&item.id, 3, None);
    }
    let _ = model.find_items("1", 0, 5, false);
    let _ = model.user_feature_groups();
    let _ = model.history();
    true
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_artifact_reader_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = ModelArtifact::from_bytes(&bytes, Path::new("fuzz.fmr"));
        let mut framed = b"FMRECALL\x01\x00\x00\x00".to_vec();
        framed.extend_from_slice(&bytes);
        let _ = ModelArtifact::from_bytes(&framed, Path::new("fuzz.fmr"));
    }

    #[test]
    fn the_artifact_reader_never_panics_on_a_damaged_artifact(mutations in prop::collection::vec(mutation(), 1..8)) {
        let damaged = mutate(artifact_bytes(), &mutations);
        serve_if_it_loads(&damaged);
    }

}

proptest! {
    // The deepest property (the reader's own checks, then serving): four times the cases.
    #![proptest_config(cases(4))]

    #[test]
    fn a_resealed_artifact_with_an_edited_header_or_parameters_never_panics(
        edits in prop::collection::vec(json_edit(), 0..4),
        header_mutations in prop::collection::vec(mutation(), 0..3),
        poison in prop::collection::vec((any::<usize>(), prop::sample::select(vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e30, -1e30, 0.0])), 0..4),
        fit_parameters in any::<bool>(),
    ) {
        let (mut header, mut floats) = artifact_parts();
        for edit in &edits {
            let target = match edit {
                JsonEdit::Field(pointer, value) => {
                    if let Some(node) = header.pointer_mut(pointer) {
                        *node = value.clone();
                    }
                    continue;
                }
                JsonEdit::Replace(p, _) | JsonEdit::Remove(p) | JsonEdit::Duplicate(p) => 1 + p % count_nodes(&header).max(1),
            };
            apply_edit(&mut header, target, &mut 0, edit);
        }
        if fit_parameters {
            // Resize the parameters to what the edited header declares, so the reader gets past
            // the length check (within reason: no gigabyte allocations).
            let n = header["vocabulary"].as_array().map_or(0, |v| v.len());
            let k = header["params"]["dim"].as_u64().unwrap_or(0) as usize;
            if let Some(total) = n.checked_mul(k).and_then(|nk| nk.checked_add(n + 1)).filter(|&t| t < 1 << 20) {
                floats.resize(total, 0.25);
            }
        }
        for (at, x) in poison {
            if !floats.is_empty() {
                let i = at % floats.len();
                floats[i] = x;
            }
        }
        let text = mutate(&serde_json::to_vec(&header).unwrap(), &header_mutations);
        serve_if_it_loads(&seal_artifact(&text, &floats));
    }
}

/// A saved graph over small clustered vectors, and the vectors (built once per test binary).
fn graph_file() -> &'static (Arc<ItemVectors>, Vec<u8>) {
    static GRAPH: OnceLock<(Arc<ItemVectors>, Vec<u8>)> = OnceLock::new();
    GRAPH.get_or_init(|| {
        let (vectors, _) = fmrecall::recall::bench::clustered(300, 1, 8, 10, 5);
        let vectors = Arc::new(vectors);
        let params = GraphParams {
            m: 4,
            ..GraphParams::default()
        };
        let graph = GraphIndex::build(vectors.clone(), params, 0).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.graph");
        graph.save(&path).unwrap();
        (vectors, std::fs::read(&path).unwrap())
    })
}

/// Loads graph bytes against the vectors; a graph that loads answers searches. Returns whether it
/// loaded.
fn search_if_it_loads(bytes: &[u8]) -> bool {
    let (vectors, _) = graph_file();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.graph");
    std::fs::write(&path, bytes).unwrap();
    let Ok(graph) = GraphIndex::load(&path, vectors.clone()) else {
        return false;
    };
    let query: Vec<f32> = vectors.row(7).to_vec();
    for (k, ef) in [(1, None), (10, Some(16)), (50, Some(200)), (300, None)] {
        let hits = graph.search(&query, k, ef, Filter::All).unwrap();
        assert!(hits.iter().all(|h| (h.item as usize) < vectors.len()));
        let excluded = [1u32, 7, 299];
        let _ = graph.search(&query, k, ef, Filter::Exclude(&excluded));
    }
    true
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_graph_reader_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        search_if_it_loads(&bytes);
        let mut framed = b"FMRGRAPH\x01\x00\x00\x00".to_vec();
        framed.extend_from_slice(&bytes);
        search_if_it_loads(&framed);
    }

    #[test]
    fn the_graph_reader_never_panics_on_a_damaged_file(mutations in prop::collection::vec(mutation(), 1..6)) {
        search_if_it_loads(&mutate(&graph_file().1, &mutations));
    }

    #[test]
    fn a_resealed_graph_with_edited_levels_and_links_never_panics(
        levels in prop::collection::vec((any::<usize>(), 0..20u8), 0..4),
        words in prop::collection::vec((any::<usize>(), prop_oneof![0..400u32, any::<u32>()]), 1..6),
    ) {
        // The levels (one byte a node) and the link slots (little-endian u32 counts and ids)
        // edited in place, then a correct checksum: only the reader's own checks stand between
        // these values and the search loop.
        let (vectors, good) = graph_file();
        let n = vectors.len();
        let mut content = good[..good.len() - 32].to_vec();
        let links = GRAPH_HEADER + n;
        for (at, level) in &levels {
            content[GRAPH_HEADER + at % n] = *level;
        }
        for (at, value) in &words {
            let at = links + 4 * (at % ((content.len() - links) / 4));
            content[at..at + 4].copy_from_slice(&value.to_le_bytes());
        }
        let sum = Sha256::digest(&content);
        content.extend_from_slice(&sum);
        search_if_it_loads(&content);
    }
}

/// Bytes before the per-node levels in a graph file (see `recall::graph::persist`).
const GRAPH_HEADER: usize = 112;

#[test]
fn the_unaltered_files_load_so_the_properties_reach_past_the_readers() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        ("interactions.csv", CSV_INTERACTIONS),
        ("users.csv", CSV_USERS),
        ("items.csv", CSV_ITEMS),
    ];
    write_folder(
        dir.path(),
        &files,
        &[FileCase::Valid, FileCase::Valid, FileCase::Valid],
    );
    assert!(load_and_use(dir.path(), Format::Csv, "random:0.3"));
    for files in [
        vec![
            ("u.data", ML100K_DATA),
            ("ua.base", ML100K_BASE),
            ("ua.test", ML100K_TEST),
            ("u.user", ML100K_USERS),
            ("u.item", ML100K_ITEMS),
            ("u.genre", ML100K_GENRES),
        ],
        vec![
            ("ratings.dat", ML1M_RATINGS),
            ("users.dat", ML1M_USERS),
            ("movies.dat", ML1M_MOVIES),
        ],
        vec![("ratings.csv", MLCSV_RATINGS), ("movies.csv", MLCSV_MOVIES)],
    ] {
        let dir = tempfile::tempdir().unwrap();
        write_folder(dir.path(), &files, &vec![FileCase::Valid; files.len()]);
        assert!(
            load_and_use(dir.path(), Format::Movielens, "random:0.3"),
            "{files:?}"
        );
    }
    assert!(serve_if_it_loads(artifact_bytes()));
    let (header, floats) = artifact_parts();
    assert!(serve_if_it_loads(&seal_artifact(
        &serde_json::to_vec(&header).unwrap(),
        &floats
    )));
    assert!(search_if_it_loads(&graph_file().1));
}
