//! `--format parquet`: the csv format's tables as Parquet files, as Spark, DuckDB or pandas write
//! them, load into the same dataset as the same rows in CSV; bad files fail naming the file and,
//! where it can be told, the row group and row.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use fmrecall::data::synthetic::SyntheticConfig;
use fmrecall::data::{CsvColumns, DataError, DataSource, Dataset, Format};
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;

fn source(format: Format, dir: &Path, columns: CsvColumns) -> DataSource {
    DataSource {
        format,
        dir: dir.to_path_buf(),
        split: "none".parse().unwrap(),
        seed: 1,
        synthetic: SyntheticConfig::default(),
        columns,
    }
}

/// One column of a test table: a name, its Parquet declaration and its values.
enum Col<'a> {
    /// Optional INT64, with an optional logical type (`TIMESTAMP(MILLIS,true)`).
    Int(&'a str, &'a str, Vec<Option<i64>>),
    /// Optional DOUBLE.
    Double(&'a str, Vec<Option<f64>>),
    /// Optional UTF-8 string.
    Text(&'a str, Vec<Option<&'a str>>),
}

/// Writes a snappy Parquet file of these optional columns, `rows_per_group` rows per row group.
fn write_table(path: &Path, columns: &[Col<'_>], rows_per_group: usize) {
    let fields: Vec<String> = columns
        .iter()
        .map(|c| match c {
            Col::Int(n, "", _) => format!("OPTIONAL INT64 {n};"),
            Col::Int(n, logical, _) => format!("OPTIONAL INT64 {n} ({logical});"),
            Col::Double(n, _) => format!("OPTIONAL DOUBLE {n};"),
            Col::Text(n, _) => format!("OPTIONAL BYTE_ARRAY {n} (STRING);"),
        })
        .collect();
    let schema = parquet::schema::parser::parse_message_type(&format!(
        "message t {{ {} }}",
        fields.join(" ")
    ))
    .unwrap();
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = SerializedFileWriter::new(file, Arc::new(schema), Arc::new(props)).unwrap();
    let rows = match &columns[0] {
        Col::Int(_, _, v) => v.len(),
        Col::Double(_, v) => v.len(),
        Col::Text(_, v) => v.len(),
    };
    let mut start = 0;
    while start < rows {
        let end = (start + rows_per_group).min(rows);
        let mut group = writer.next_row_group().unwrap();
        for c in columns {
            let mut w = group.next_column().unwrap().unwrap();
            fn split<T: Clone>(v: &[Option<T>]) -> (Vec<T>, Vec<i16>) {
                let values = v.iter().flatten().cloned().collect();
                let defs = v.iter().map(|x| i16::from(x.is_some())).collect();
                (values, defs)
            }
            match c {
                Col::Int(_, _, v) => {
                    let (values, defs) = split(&v[start..end]);
                    w.typed::<Int64Type>()
                        .write_batch(&values, Some(&defs), None)
                        .unwrap();
                }
                Col::Double(_, v) => {
                    let (values, defs) = split(&v[start..end]);
                    w.typed::<DoubleType>()
                        .write_batch(&values, Some(&defs), None)
                        .unwrap();
                }
                Col::Text(_, v) => {
                    let (values, defs) = split(&v[start..end]);
                    let values: Vec<ByteArray> = values.into_iter().map(ByteArray::from).collect();
                    w.typed::<ByteArrayType>()
                        .write_batch(&values, Some(&defs), None)
                        .unwrap();
                }
            }
            w.close().unwrap();
        }
        group.close().unwrap();
        start = end;
    }
    writer.close().unwrap();
}

/// A small rating log: (user, item, rating, timestamp in seconds).
fn rows() -> Vec<(i64, &'static str, f64, i64)> {
    let items = ["m1", "m2", "m3", "m4", "m5"];
    (0..40)
        .map(|r| {
            let user = 100 + (r % 7) as i64;
            let item = items[(r * 3 + r / 7) % 5];
            (
                user,
                item,
                0.5 + (r % 10) as f64 * 0.5,
                1_600_000_000 + r as i64,
            )
        })
        .collect()
}

fn write_csv_twin(dir: &Path) {
    let mut text = String::from("user,movie,score,ts\n");
    for (u, i, r, t) in rows() {
        text.push_str(&format!("{u},{i},{r},{t}\n"));
    }
    std::fs::write(dir.join("interactions.csv"), text).unwrap();
    std::fs::write(
        dir.join("users.csv"),
        "id,features,region\n100,age:young,north\n101,,south\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("items.csv"),
        "id,title,genre\nm1,First,drama\nm2,,comedy\nm9,Never rated,drama\n",
    )
    .unwrap();
}

fn write_parquet_tables(dir: &Path, interactions: &Path, rows_per_group: usize) {
    let r = rows();
    write_table(
        interactions,
        &[
            Col::Int("user", "", r.iter().map(|x| Some(x.0)).collect()),
            Col::Text("movie", r.iter().map(|x| Some(x.1)).collect()),
            Col::Double("score", r.iter().map(|x| Some(x.2)).collect()),
            // Milliseconds, as a TIMESTAMP column: read back as seconds.
            Col::Int(
                "ts",
                "TIMESTAMP(MILLIS,true)",
                r.iter().map(|x| Some(x.3 * 1000)).collect(),
            ),
        ],
        rows_per_group,
    );
    write_table(
        &dir.join("users.parquet"),
        &[
            Col::Int("id", "", vec![Some(100), Some(101)]),
            Col::Text("features", vec![Some("age:young"), None]),
            Col::Text("region", vec![Some("north"), Some("south")]),
        ],
        10,
    );
    write_table(
        &dir.join("items.parquet"),
        &[
            Col::Text("id", vec![Some("m1"), Some("m2"), Some("m9")]),
            Col::Text("title", vec![Some("First"), None, Some("Never rated")]),
            Col::Text("genre", vec![Some("drama"), Some("comedy"), Some("drama")]),
        ],
        10,
    );
}

fn columns() -> CsvColumns {
    CsvColumns {
        user: "user".into(),
        item: "movie".into(),
        rating: "score".into(),
        timestamp: "ts".into(),
    }
}

fn assert_same_dataset(a: &Dataset, b: &Dataset) {
    assert_eq!(a.users, b.users);
    assert_eq!(a.items, b.items);
    assert_eq!(a.interactions, b.interactions);
}

#[test]
fn parquet_tables_load_into_the_same_dataset_as_the_same_rows_in_csv() {
    let csv = tempfile::tempdir().unwrap();
    write_csv_twin(csv.path());
    let from_csv = Dataset::load(&source(Format::Csv, csv.path(), columns())).unwrap();

    let pq = tempfile::tempdir().unwrap();
    // Three row groups of 16, 16 and 8 rows.
    write_parquet_tables(pq.path(), &pq.path().join("interactions.parquet"), 16);
    let from_parquet = Dataset::load(&source(Format::Parquet, pq.path(), columns())).unwrap();
    assert_same_dataset(&from_parquet, &from_csv);
    assert_eq!(from_parquet.interactions.len(), 40);
    assert_eq!(from_parquet.interactions[5].timestamp, 1_600_000_005);
    // Side features: the `features` list, other columns as COLUMN:value, titles, listed items.
    let north = &from_parquet.users[0];
    assert_eq!(north.features, ["user:100", "age:young", "region:north"]);
    let never = from_parquet.items.iter().find(|e| e.id == "m9").unwrap();
    assert_eq!(never.title.as_deref(), Some("Never rated"));
}

#[test]
fn a_spark_folder_of_part_files_reads_as_one_table() {
    let csv = tempfile::tempdir().unwrap();
    write_csv_twin(csv.path());
    let from_csv = Dataset::load(&source(Format::Csv, csv.path(), columns())).unwrap();

    let pq = tempfile::tempdir().unwrap();
    let folder = pq.path().join("interactions.parquet");
    std::fs::create_dir(&folder).unwrap();
    // The whole table in one part file, then an empty second part and Spark's marker files.
    write_parquet_tables(pq.path(), &folder.join("part-00000-x.snappy.parquet"), 64);
    std::fs::write(folder.join("_SUCCESS"), "").unwrap();
    std::fs::write(folder.join(".part-00000-x.snappy.parquet.crc"), "junk").unwrap();
    let from_parquet = Dataset::load(&source(Format::Parquet, pq.path(), columns())).unwrap();
    assert_same_dataset(&from_parquet, &from_csv);
}

#[test]
fn a_null_id_is_refused_naming_the_file_row_group_and_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("interactions.parquet");
    let mut users: Vec<Option<i64>> = (0..30).map(Some).collect();
    users[23] = None;
    write_table(
        &path,
        &[
            Col::Int("user_id", "", users),
            Col::Text("item_id", (0..30).map(|_| Some("a")).collect()),
        ],
        10,
    );
    let err = Dataset::load(&source(Format::Parquet, dir.path(), Default::default())).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, DataError::Parquet { .. }), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("row group 2, row 24"), "{message}");
}

#[test]
fn a_missing_column_is_named_with_the_columns_found() {
    let dir = tempfile::tempdir().unwrap();
    write_table(
        &dir.path().join("interactions.parquet"),
        &[
            Col::Int("userId", "", vec![Some(1)]),
            Col::Int("movieId", "", vec![Some(2)]),
        ],
        10,
    );
    let message = Dataset::load(&source(Format::Parquet, dir.path(), Default::default()))
        .unwrap_err()
        .to_string();
    assert!(message.contains("\"user_id\""), "{message}");
    assert!(message.contains("userId,movieId"), "{message}");
    assert!(message.contains("--user-column"), "{message}");
}

#[test]
fn a_file_that_is_not_parquet_fails_the_cli_with_its_path_and_a_nonzero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("interactions.parquet");
    std::fs::write(&path, b"user_id,item_id\n1,2\n").unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_fmrecall"))
        .env(
            "FMRECALL_DATABASE__URL",
            format!("sqlite://{}/registry.db", dir.path().display()),
        )
        .args(["train", "--format", "parquet", "--data"])
        .arg(dir.path())
        .args(["--no-register", "--out"])
        .arg(dir.path().join("m"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("not a readable Parquet file"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// pyarrow is what pandas writes Parquet with; its files (snappy, dictionary-encoded columns,
/// statistics, its own schema metadata) must read as ours do.
#[test]
fn a_file_written_by_pyarrow_loads_when_pyarrow_is_installed() {
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "import pyarrow as pa, pyarrow.parquet as pq\n\
         t = pa.table({{'userId': pa.array([1, 1, 2, 3, 3, 3], pa.int64()),\n\
                       'movieId': pa.array([10, 20, 10, 30, 20, 10], pa.int32()),\n\
                       'rating': pa.array([4.0, 2.5, 5.0, None, 3.0, 4.5], pa.float32()),\n\
                       'timestamp': pa.array([5, 6, 7, 8, 9, 10], pa.int64())}})\n\
         pq.write_table(t, r'{}', row_group_size=4)\n",
        dir.path().join("interactions.parquet").display()
    );
    let python = std::env::var("FMRECALL_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    match Command::new(&python).args(["-c", &script]).output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            eprintln!(
                "SKIPPED a_file_written_by_pyarrow_loads_when_pyarrow_is_installed: {python} \
                 could not write Parquet (pyarrow missing? set FMRECALL_TEST_PYTHON): {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            );
            return;
        }
        Err(e) => {
            eprintln!("SKIPPED a_file_written_by_pyarrow_loads_when_pyarrow_is_installed: {e}");
            return;
        }
    }
    let names = CsvColumns {
        user: "userId".into(),
        item: "movieId".into(),
        ..Default::default()
    };
    let d = Dataset::load(&source(Format::Parquet, dir.path(), names)).unwrap();
    let ids = |e: &[fmrecall::data::Entity]| e.iter().map(|x| x.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&d.users), ["1", "2", "3"]);
    assert_eq!(ids(&d.items), ["10", "20", "30"]);
    let ratings: Vec<Option<f32>> = d.interactions.iter().map(|i| i.rating).collect();
    assert_eq!(
        ratings,
        [Some(4.0), Some(2.5), Some(5.0), None, Some(3.0), Some(4.5)]
    );
    assert_eq!(d.interactions[5].timestamp, 10);
}
