//! The plain CSV format: `interactions.csv` (`user_id,item_id[,rating][,timestamp]`, header row) with
//! optional `users.csv` and `items.csv` (`id[,features][,title][,COLUMN…]`: features `name:value`
//! joined by `|`, and every other column a feature `COLUMN:value`).

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{entities, DataError, Dataset, IdIndex, Interaction, Part, SplitSpec};

/// The names of the interaction file's columns (`[data.columns]`, `--user-column` …), matched
/// without regard to case, so that an export keeps its own header (MovieLens' `userId,movieId`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CsvColumns {
    /// The user id column.
    pub user: String,
    /// The item id column.
    pub item: String,
    /// The optional rating column.
    pub rating: String,
    /// The optional timestamp column (integer).
    pub timestamp: String,
}

impl Default for CsvColumns {
    fn default() -> Self {
        CsvColumns {
            user: "user_id".into(),
            item: "item_id".into(),
            rating: "rating".into(),
            timestamp: "timestamp".into(),
        }
    }
}

/// Converts a csv crate error into one that names the file and line.
pub(super) fn csv_error(path: &Path, e: csv::Error) -> DataError {
    let line = line_of(path, e.position());
    match e.into_kind() {
        csv::ErrorKind::Io(source) => DataError::io(path, source),
        csv::ErrorKind::Utf8 { err, .. } => DataError::bad_row(path, line, format!("{err}")),
        other => DataError::bad_row(path, line, format!("{other:?}")),
    }
}

/// The 1-based line a record starts on, counted from its byte offset. The csv crate ends a CRLF
/// line at its `\r` and starts the next record at the `\n`, so its own line count falls one short
/// per CRLF ending before it: a bad row on line 3 was reported as 2. Only called
/// for an error, so reading the file again costs nothing that matters.
fn line_of(path: &Path, position: Option<&csv::Position>) -> u64 {
    let Some(position) = position else {
        return 0;
    };
    match std::fs::read(path) {
        Ok(bytes) => {
            let mut start = (position.byte() as usize).min(bytes.len());
            // A record "starting" on line endings (that `\n`, or skipped blank lines) starts
            // after them.
            while matches!(bytes.get(start), Some(b'\n' | b'\r')) {
                start += 1;
            }
            1 + bytes[..start].iter().filter(|&&b| b == b'\n').count() as u64
        }
        Err(_) => position.line(),
    }
}

fn reader(path: &Path) -> Result<csv::Reader<std::fs::File>, DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    Ok(csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(file))
}

/// A header cell as compared with column names: no byte-order mark, no padding, lower case.
fn header_name(cell: &str) -> String {
    cell.trim_start_matches('\u{feff}')
        .trim()
        .to_ascii_lowercase()
}

/// Position of each named column (names in lower case) in the header; `required` ones must be
/// present, and the error for a missing one lists the columns found and says how to name others.
fn columns(
    path: &Path,
    headers: &csv::StringRecord,
    required: &[&str],
    optional: &[&str],
    how_to_name: &str,
) -> Result<HashMap<String, usize>, DataError> {
    let mut found = HashMap::new();
    for (i, h) in headers.iter().enumerate() {
        let h = header_name(h);
        if required.contains(&h.as_str()) || optional.contains(&h.as_str()) {
            found.entry(h).or_insert(i);
        }
    }
    for r in required {
        if !found.contains_key(*r) {
            let present: Vec<&str> = headers.iter().map(str::trim).collect();
            return Err(DataError::bad_row(
                path,
                1,
                format!(
                    "header has no {r:?} column (expected {}; found {}){how_to_name}",
                    required.join(","),
                    present.join(",")
                ),
            ));
        }
    }
    Ok(found)
}

fn read_interactions(
    path: &Path,
    names: &CsvColumns,
    part: Part,
    (users, items): (&mut IdIndex, &mut IdIndex),
    out: &mut Vec<Interaction>,
) -> Result<(), DataError> {
    let mut rd = reader(path)?;
    let headers = rd.headers().map_err(|e| csv_error(path, e))?.clone();
    let [user, item, rating, timestamp] =
        [&names.user, &names.item, &names.rating, &names.timestamp]
            .map(|n| n.trim().to_ascii_lowercase());
    if user == item {
        return Err(DataError::InvalidOption(format!(
            "the user and item columns are both {user:?} (--user-column, --item-column)"
        )));
    }
    let cols = columns(
        path,
        &headers,
        &[&user, &item],
        &[&rating, &timestamp],
        "; name yours with --user-column, --item-column, --rating-column, --timestamp-column or \
         [data.columns]",
    )?;
    // The optional columns may be absent under their default names, not under names the user gave:
    // a rating column that silently went missing would make every row a positive.
    let defaults = CsvColumns::default();
    for (name, default) in [
        (&rating, &defaults.rating),
        (&timestamp, &defaults.timestamp),
    ] {
        if !cols.contains_key(name.as_str()) && name != default {
            let present: Vec<&str> = headers.iter().map(str::trim).collect();
            return Err(DataError::bad_row(
                path,
                1,
                format!(
                    "header has no {name:?} column, which the settings name (found {})",
                    present.join(",")
                ),
            ));
        }
    }
    // Column positions resolved once; rows read as bytes into one reused record (no allocation
    // or UTF-8 check of the numeric fields per row): 19M rows are read at disk speed, not at the
    // speed of four map lookups and a String per field.
    let at = |name: &str| cols.get(name).copied();
    let (user_at, item_at, rating_at, timestamp_at) =
        (at(&user), at(&item), at(&rating), at(&timestamp));
    let mut record = csv::ByteRecord::new();
    while rd
        .read_byte_record(&mut record)
        .map_err(|e| csv_error(path, e))?
    {
        let line = || line_of(path, record.position());
        if record.iter().all(<[u8]>::is_empty) {
            continue;
        }
        let field = |i: Option<usize>| i.and_then(|i| record.get(i)).unwrap_or(b"");
        let text = |i: Option<usize>| {
            std::str::from_utf8(field(i))
                .map_err(|e| DataError::bad_row(path, line(), format!("not UTF-8: {e}")))
        };
        let (u, i) = (text(user_at)?, text(item_at)?);
        if u.is_empty() || i.is_empty() {
            return Err(DataError::bad_row(
                path,
                line(),
                format!("empty {user} or {item}"),
            ));
        }
        let rating = match text(rating_at)? {
            "" => None,
            r => match r.parse::<f32>() {
                Ok(v) if v.is_finite() => Some(v),
                _ => {
                    return Err(DataError::bad_row(
                        path,
                        line(),
                        format!("rating {r:?} is not a finite number"),
                    ))
                }
            },
        };
        let timestamp = match text(timestamp_at)? {
            "" => 0,
            t => t.parse::<i64>().map_err(|_| {
                DataError::bad_row(path, line(), format!("timestamp {t:?} is not an integer"))
            })?,
        };
        out.push(Interaction {
            user: users.get_or_insert(u),
            item: items.get_or_insert(i),
            rating,
            timestamp,
            part,
        });
    }
    Ok(())
}

/// Reads the interactions of `train` files as train and, under a `file:` split, those of the test
/// file as test (the same format read by `read`), interning ids in order of first appearance.
pub(super) fn read_split(
    train: &[&Path],
    split: &SplitSpec,
    mut read: impl FnMut(
        &Path,
        Part,
        (&mut IdIndex, &mut IdIndex),
        &mut Vec<Interaction>,
    ) -> Result<(), DataError>,
) -> Result<(IdIndex, IdIndex, Vec<Interaction>), DataError> {
    let mut users = IdIndex::default();
    let mut items = IdIndex::default();
    let mut interactions = Vec::new();
    for path in train {
        read(
            path,
            Part::Train,
            (&mut users, &mut items),
            &mut interactions,
        )?;
    }
    match split {
        SplitSpec::File(test_path) => {
            let mut test = Vec::new();
            read(test_path, Part::Test, (&mut users, &mut items), &mut test)?;
            super::split::merge_test_file(&mut interactions, test);
        }
        SplitSpec::Canonical(name) => {
            return Err(DataError::InvalidOption(format!(
                "split {name}: canonical splits exist only in the MovieLens 100K layout"
            )))
        }
        _ => {}
    }
    Ok((users, items, interactions))
}

/// Per id of a users or items file: its title and its features.
pub(super) type SideFeatures = HashMap<String, (Option<String>, Vec<String>)>;

/// A `features` cell: `name:value` features joined by `|` (blanks ignored).
pub(super) fn feature_list(cell: &str) -> Result<Vec<String>, String> {
    cell.split('|')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(|f| match f.split_once(':') {
            Some((name, value)) if !name.is_empty() && !value.is_empty() => Ok(f.to_string()),
            _ => Err(format!("feature {f:?} is not name:value")),
        })
        .collect()
}

/// The dataset of interned ids, interactions and side features; items listed in the items file
/// are part of the catalog even when nobody interacted with them.
pub(super) fn assemble(
    users: IdIndex,
    mut items: IdIndex,
    interactions: Vec<Interaction>,
    user_side: &SideFeatures,
    item_side: &SideFeatures,
) -> Dataset {
    let mut listed: Vec<&String> = item_side.keys().collect();
    listed.sort();
    for id in listed {
        items.get_or_insert(id);
    }
    Dataset {
        users: entities(&users, "user", user_side),
        items: entities(&items, "item", item_side),
        interactions,
        held_out: Default::default(),
    }
}

fn read_side(path: &Path) -> Result<SideFeatures, DataError> {
    let mut side = HashMap::new();
    if !path.is_file() {
        return Ok(side);
    }
    let mut rd = reader(path)?;
    let headers = rd.headers().map_err(|e| csv_error(path, e))?.clone();
    let cols = columns(path, &headers, &["id"], &["features", "title"], "")?;
    // Every other column is a feature of its own (`region` holding `r2` becomes `region:r2`), so
    // a column of the user's file is never ignored silently.
    let named = |i: usize| cols.values().any(|&c| c == i);
    let feature_columns: Vec<(usize, String)> = headers
        .iter()
        .enumerate()
        .filter(|&(i, h)| !named(i) && !h.trim().is_empty())
        .map(|(i, h)| (i, h.trim_start_matches('\u{feff}').trim().to_string()))
        .collect();
    for record in rd.records() {
        let record = record.map_err(|e| csv_error(path, e))?;
        let position = record.position().cloned();
        let line = || line_of(path, position.as_ref());
        if record.iter().all(str::is_empty) {
            continue;
        }
        let field = |name: &str| cols.get(name).and_then(|&i| record.get(i)).unwrap_or("");
        let id = field("id");
        if id.is_empty() {
            return Err(DataError::bad_row(path, line(), "empty id"));
        }
        let mut features =
            feature_list(field("features")).map_err(|m| DataError::bad_row(path, line(), m))?;
        for (i, name) in &feature_columns {
            match record.get(*i).map(str::trim) {
                Some(value) if !value.is_empty() => features.push(format!("{name}:{value}")),
                _ => {}
            }
        }
        let title = Some(field("title"))
            .filter(|t| !t.is_empty())
            .map(String::from);
        side.insert(id.to_string(), (title, features));
    }
    Ok(side)
}

/// Loads a CSV folder; a `file:` split reads the test interactions from a second interactions file.
pub(super) fn load(
    dir: &Path,
    split: &SplitSpec,
    names: &CsvColumns,
) -> Result<Dataset, DataError> {
    let path = dir.join("interactions.csv");
    if !path.is_file() {
        return Err(DataError::UnknownLayout(format!(
            "{}: no interactions.csv",
            dir.display()
        )));
    }
    let (users, items, interactions) =
        read_split(&[path.as_path()], split, |path, part, ids, out| {
            read_interactions(path, names, part, ids, out)
        })?;
    let user_side = read_side(&dir.join("users.csv"))?;
    let item_side = read_side(&dir.join("items.csv"))?;
    Ok(assemble(users, items, interactions, &user_side, &item_side))
}
