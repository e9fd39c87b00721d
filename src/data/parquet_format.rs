//! The Parquet format: the csv format's files as Parquet, as Spark, BigQuery, DuckDB or pandas
//! write them. `interactions.parquet` (a file, or a folder of `*.parquet` part files as Spark
//! writes) with a user and an item column (integers or strings) and optional rating (any number)
//! and timestamp (integer seconds, or a TIMESTAMP / INT96 column) columns, named as for the csv
//! format (`--user-column` …); optional `users.parquet` and `items.parquet` with an `id` column,
//! optional `title` and `features` (`name:value` joined by `|`) columns, and every other column a
//! feature `COLUMN:value`.
//!
//! Read column by column with the `parquet` crate's typed readers, one row group at a time, so
//! memory holds one row group of decoded columns beside the interactions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use parquet::basic::{ConvertedType, LogicalType, TimeUnit};
use parquet::column::reader::{ColumnReader, ColumnReaderImpl};
use parquet::data_type::{ByteArray, DataType};
use parquet::file::reader::{FileReader, RowGroupReader, SerializedFileReader};

use super::{CsvColumns, DataError, Dataset, IdIndex, Interaction, Part, SplitSpec};

/// Values of one column of one row group; `None` for nulls.
enum Values {
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Text(Vec<Option<ByteArray>>),
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::Int(v) => v.len(),
            Values::Float(v) => v.len(),
            Values::Text(v) => v.len(),
        }
    }
}

/// The error for a file, naming the row group (and row, counted from 1 over the whole file) where
/// known.
fn bad(
    path: &Path,
    row_group: Option<usize>,
    row: Option<u64>,
    message: impl Into<String>,
) -> DataError {
    let mut at = String::new();
    if let Some(g) = row_group {
        at.push_str(&format!("row group {g}"));
    }
    if let Some(r) = row {
        at.push_str(&format!("{}row {r}", if at.is_empty() { "" } else { ", " }));
    }
    DataError::Parquet {
        path: path.to_path_buf(),
        at,
        message: message.into(),
    }
}

/// The Parquet files of a table: `NAME.parquet` itself, or the `*.parquet` files inside a
/// `NAME.parquet` or `NAME` folder (hidden and `_`-prefixed files, as Spark's `_SUCCESS`, skipped).
fn table_files(dir: &Path, name: &str) -> Result<Option<Vec<PathBuf>>, DataError> {
    let file = dir.join(format!("{name}.parquet"));
    if file.is_file() {
        return Ok(Some(vec![file]));
    }
    for folder in [file, dir.join(name)] {
        if !folder.is_dir() {
            continue;
        }
        let mut parts = Vec::new();
        for entry in std::fs::read_dir(&folder).map_err(|e| DataError::io(&folder, e))? {
            let path = entry.map_err(|e| DataError::io(&folder, e))?.path();
            let visible = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with(['.', '_']) && n.ends_with(".parquet"));
            if visible && path.is_file() {
                parts.push(path);
            }
        }
        parts.sort();
        if parts.is_empty() {
            return Err(DataError::UnknownLayout(format!(
                "{}: a folder without *.parquet files",
                folder.display()
            )));
        }
        return Ok(Some(parts));
    }
    Ok(None)
}

fn open(path: &Path) -> Result<SerializedFileReader<std::fs::File>, DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    SerializedFileReader::new(file).map_err(|e| {
        bad(
            path,
            None,
            None,
            format!("not a readable Parquet file: {e}"),
        )
    })
}

/// A column found by name (case-insensitive) among the file's top-level columns.
struct Column {
    index: usize,
    name: String,
}

fn find_column(
    path: &Path,
    reader: &SerializedFileReader<std::fs::File>,
    name: &str,
) -> Result<Option<Column>, DataError> {
    let schema = reader.metadata().file_metadata().schema_descr();
    for (index, c) in schema.columns().iter().enumerate() {
        if c.path().parts().len() == 1 && c.name().eq_ignore_ascii_case(name) {
            if c.max_rep_level() > 0 {
                return Err(bad(
                    path,
                    None,
                    None,
                    format!(
                        "column {:?} is a list; a single value per row is expected",
                        c.name()
                    ),
                ));
            }
            return Ok(Some(Column {
                index,
                name: c.name().to_string(),
            }));
        }
    }
    Ok(None)
}

fn column_names(reader: &SerializedFileReader<std::fs::File>) -> Vec<String> {
    let schema = reader.metadata().file_metadata().schema_descr();
    schema.columns().iter().map(|c| c.path().string()).collect()
}

/// Reads every value of a column of a row group, nulls as `None`.
fn read_typed<T: DataType>(
    reader: &mut ColumnReaderImpl<T>,
    rows: usize,
    max_def: i16,
) -> parquet::errors::Result<Vec<Option<T::T>>> {
    let mut values = Vec::with_capacity(rows);
    let mut defs = Vec::with_capacity(rows);
    let mut read = 0;
    while read < rows {
        let levels = (max_def > 0).then_some(&mut defs);
        let (records, _, _) = reader.read_records(rows - read, levels, None, &mut values)?;
        if records == 0 {
            break;
        }
        read += records;
    }
    if max_def == 0 {
        return Ok(values.into_iter().map(Some).collect());
    }
    let mut present = values.into_iter();
    Ok(defs
        .iter()
        .map(|&d| if d == max_def { present.next() } else { None })
        .collect())
}

/// Reads a column of a row group as integers, floats or text; timestamps become seconds.
fn read_column(
    path: &Path,
    group: &dyn RowGroupReader,
    g: usize,
    column: &Column,
) -> Result<Values, DataError> {
    let rows = group.metadata().num_rows().max(0) as usize;
    let descr = group.metadata().column(column.index).column_descr_ptr();
    let max_def = descr.max_def_level();
    // Seconds per unit of an INT64 TIMESTAMP column.
    let unit: Option<i64> = match descr.logical_type_ref() {
        Some(LogicalType::Timestamp(t)) => Some(match t.unit {
            TimeUnit::MILLIS => 1_000,
            TimeUnit::MICROS => 1_000_000,
            TimeUnit::NANOS => 1_000_000_000,
        }),
        // Writers from before logical types.
        _ => match descr.converted_type() {
            ConvertedType::TIMESTAMP_MILLIS => Some(1_000),
            ConvertedType::TIMESTAMP_MICROS => Some(1_000_000),
            _ => None,
        },
    };
    let fail = |e: parquet::errors::ParquetError| {
        bad(
            path,
            Some(g),
            None,
            format!("column {:?}: {e}", column.name),
        )
    };
    let reader = group.get_column_reader(column.index).map_err(fail)?;
    let values = match reader {
        ColumnReader::Int32ColumnReader(mut r) => Values::Int(
            read_typed(&mut r, rows, max_def)
                .map_err(fail)?
                .into_iter()
                .map(|v| v.map(i64::from))
                .collect(),
        ),
        ColumnReader::Int64ColumnReader(mut r) => {
            let per = unit.unwrap_or(1);
            Values::Int(
                read_typed(&mut r, rows, max_def)
                    .map_err(fail)?
                    .into_iter()
                    .map(|v| v.map(|x| x.div_euclid(per)))
                    .collect(),
            )
        }
        // Spark's default timestamp type.
        ColumnReader::Int96ColumnReader(mut r) => Values::Int(
            read_typed(&mut r, rows, max_def)
                .map_err(fail)?
                .into_iter()
                .map(|v| v.map(|x| x.to_seconds()))
                .collect(),
        ),
        ColumnReader::FloatColumnReader(mut r) => Values::Float(
            read_typed(&mut r, rows, max_def)
                .map_err(fail)?
                .into_iter()
                .map(|v| v.map(f64::from))
                .collect(),
        ),
        ColumnReader::DoubleColumnReader(mut r) => {
            Values::Float(read_typed(&mut r, rows, max_def).map_err(fail)?)
        }
        ColumnReader::ByteArrayColumnReader(mut r) => {
            Values::Text(read_typed(&mut r, rows, max_def).map_err(fail)?)
        }
        _ => {
            return Err(bad(
                path,
                Some(g),
                None,
                format!(
                    "column {:?} has physical type {}; integers, floats, strings or timestamps \
                     are expected",
                    column.name,
                    descr.physical_type()
                ),
            ))
        }
    };
    if values.len() != rows {
        return Err(bad(
            path,
            Some(g),
            None,
            format!(
                "column {:?} holds {} values for {rows} rows",
                column.name,
                values.len()
            ),
        ));
    }
    Ok(values)
}

/// A value of a row as text (ids, feature values); `None` for a null.
fn text_at(values: &Values, row: usize, buf: &mut String) -> Result<bool, String> {
    use std::fmt::Write;
    buf.clear();
    match values {
        Values::Int(v) => match v[row] {
            Some(x) => write!(buf, "{x}").map(|_| true).map_err(|e| e.to_string()),
            None => Ok(false),
        },
        Values::Float(v) => match v[row] {
            Some(x) => write!(buf, "{x}").map(|_| true).map_err(|e| e.to_string()),
            None => Ok(false),
        },
        Values::Text(v) => match &v[row] {
            Some(x) => {
                let s = std::str::from_utf8(x.data()).map_err(|e| format!("not UTF-8: {e}"))?;
                buf.push_str(s.trim());
                Ok(true)
            }
            None => Ok(false),
        },
    }
}

fn missing_column(path: &Path, which: &str, name: &str, found: &[String]) -> DataError {
    bad(
        path,
        None,
        None,
        format!(
            "no {which} column {name:?} (found {}); name yours with --user-column, \
             --item-column, --rating-column, --timestamp-column or [data.columns]",
            found.join(",")
        ),
    )
}

fn read_interactions(
    path: &Path,
    names: &CsvColumns,
    part: Part,
    (users, items): (&mut IdIndex, &mut IdIndex),
    out: &mut Vec<Interaction>,
) -> Result<(), DataError> {
    let reader = open(path)?;
    let found = column_names(&reader);
    let [user, item, rating, timestamp] =
        [&names.user, &names.item, &names.rating, &names.timestamp].map(|n| n.trim());
    if user.eq_ignore_ascii_case(item) {
        return Err(DataError::InvalidOption(format!(
            "the user and item columns are both {user:?} (--user-column, --item-column)"
        )));
    }
    let user_col = find_column(path, &reader, user)?
        .ok_or_else(|| missing_column(path, "user", user, &found))?;
    let item_col = find_column(path, &reader, item)?
        .ok_or_else(|| missing_column(path, "item", item, &found))?;
    // As for CSV: optional columns may be absent under their default names only.
    let defaults = CsvColumns::default();
    let optional = |name: &str, default: &str, which: &str| {
        let col = find_column(path, &reader, name)?;
        if col.is_none() && !name.eq_ignore_ascii_case(default) {
            return Err(missing_column(path, which, name, &found));
        }
        Ok(col)
    };
    let rating_col = optional(rating, &defaults.rating, "rating")?;
    let timestamp_col = optional(timestamp, &defaults.timestamp, "timestamp")?;
    let rows_total = reader.metadata().file_metadata().num_rows().max(0) as usize;
    out.reserve(rows_total);

    let mut first_row = 0u64;
    let (mut u_text, mut i_text) = (String::new(), String::new());
    for g in 0..reader.num_row_groups() {
        let group = reader
            .get_row_group(g)
            .map_err(|e| bad(path, Some(g), None, e.to_string()))?;
        let group = group.as_ref();
        let u_values = read_column(path, group, g, &user_col)?;
        let i_values = read_column(path, group, g, &item_col)?;
        let r_values = rating_col
            .as_ref()
            .map(|c| read_column(path, group, g, c))
            .transpose()?;
        let t_values = timestamp_col
            .as_ref()
            .map(|c| read_column(path, group, g, c))
            .transpose()?;
        for row in 0..u_values.len() {
            let at = |m: String| bad(path, Some(g), Some(first_row + row as u64 + 1), m);
            let has_user = text_at(&u_values, row, &mut u_text).map_err(&at)?;
            let has_item = text_at(&i_values, row, &mut i_text).map_err(&at)?;
            if !has_user || !has_item || u_text.is_empty() || i_text.is_empty() {
                return Err(at(format!("empty {user} or {item}")));
            }
            let rating = match &r_values {
                None => None,
                Some(Values::Float(v)) => v[row].map(|x| x as f32),
                Some(Values::Int(v)) => v[row].map(|x| x as f32),
                Some(Values::Text(_)) => {
                    return Err(at(format!("the {rating} column holds text, not numbers")))
                }
            };
            if rating.is_some_and(|r| !r.is_finite()) {
                return Err(at(format!("{rating:?} is not a finite rating")));
            }
            let timestamp = match &t_values {
                None => 0,
                Some(Values::Int(v)) => v[row].unwrap_or(0),
                Some(_) => {
                    return Err(at(format!(
                        "the {timestamp} column must hold integers or timestamps"
                    )))
                }
            };
            out.push(Interaction {
                user: users.get_or_insert(&u_text),
                item: items.get_or_insert(&i_text),
                rating,
                timestamp,
                part,
            });
        }
        first_row += u_values.len() as u64;
    }
    Ok(())
}

/// `users.parquet` / `items.parquet`: per id, its title and features.
fn read_side(dir: &Path, name: &str) -> Result<super::csv_format::SideFeatures, DataError> {
    let mut side = HashMap::new();
    let Some(files) = table_files(dir, name)? else {
        return Ok(side);
    };
    for path in files {
        let reader = open(&path)?;
        let found = column_names(&reader);
        let id_col = find_column(&path, &reader, "id")?.ok_or_else(|| {
            bad(
                &path,
                None,
                None,
                format!("no \"id\" column (found {})", found.join(",")),
            )
        })?;
        let title_col = find_column(&path, &reader, "title")?;
        let features_col = find_column(&path, &reader, "features")?;
        let schema = reader.metadata().file_metadata().schema_descr();
        let mut others = Vec::new();
        for (index, c) in schema.columns().iter().enumerate() {
            let named = [Some(&id_col), title_col.as_ref(), features_col.as_ref()]
                .into_iter()
                .flatten()
                .any(|n| n.index == index);
            if !named && c.path().parts().len() == 1 && c.max_rep_level() == 0 {
                others.push(Column {
                    index,
                    name: c.name().to_string(),
                });
            }
        }
        let mut first_row = 0u64;
        let mut text = String::new();
        for g in 0..reader.num_row_groups() {
            let group = reader
                .get_row_group(g)
                .map_err(|e| bad(&path, Some(g), None, e.to_string()))?;
            let group = group.as_ref();
            let ids = read_column(&path, group, g, &id_col)?;
            let titles = title_col
                .as_ref()
                .map(|c| read_column(&path, group, g, c))
                .transpose()?;
            let lists = features_col
                .as_ref()
                .map(|c| read_column(&path, group, g, c))
                .transpose()?;
            let columns = others
                .iter()
                .map(|c| read_column(&path, group, g, c).map(|v| (c, v)))
                .collect::<Result<Vec<_>, _>>()?;
            for row in 0..ids.len() {
                let at = |m: String| bad(&path, Some(g), Some(first_row + row as u64 + 1), m);
                if !text_at(&ids, row, &mut text).map_err(&at)? || text.is_empty() {
                    return Err(at("empty id".into()));
                }
                let id = text.clone();
                let mut features = Vec::new();
                if let Some(lists) = &lists {
                    if text_at(lists, row, &mut text).map_err(&at)? {
                        features = super::csv_format::feature_list(&text).map_err(&at)?;
                    }
                }
                for (c, values) in &columns {
                    if text_at(values, row, &mut text).map_err(&at)? && !text.is_empty() {
                        features.push(format!("{}:{text}", c.name));
                    }
                }
                let title = match &titles {
                    Some(t) if text_at(t, row, &mut text).map_err(&at)? && !text.is_empty() => {
                        Some(text.clone())
                    }
                    _ => None,
                };
                side.insert(id, (title, features));
            }
            first_row += ids.len() as u64;
        }
    }
    Ok(side)
}

/// Loads a Parquet folder; a `file:` split reads the test interactions from another Parquet file.
pub(super) fn load(
    dir: &Path,
    split: &SplitSpec,
    names: &CsvColumns,
) -> Result<Dataset, DataError> {
    let files = table_files(dir, "interactions")?.ok_or_else(|| {
        DataError::UnknownLayout(format!(
            "{}: no interactions.parquet (a file, or a folder of part files)",
            dir.display()
        ))
    })?;
    let train: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let (users, items, interactions) =
        super::csv_format::read_split(&train, split, |path, part, ids, out| {
            read_interactions(path, names, part, ids, out)
        })?;
    let user_side = read_side(dir, "users")?;
    let item_side = read_side(dir, "items")?;
    Ok(super::csv_format::assemble(
        users,
        items,
        interactions,
        &user_side,
        &item_side,
    ))
}
