//! GroupLens MovieLens loaders: the 100K layout (`u.data`, `u.user`, `u.item`), the 1M layout
//! (`ratings.dat`, `users.dat`, `movies.dat`, `::`-separated) and the CSV layout of 20M/25M/32M and
//! ml-latest (`ratings.csv`, `movies.csv`). The layout is detected from the files present.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{
    decade_feature, entities, latin1, read_file, DataError, Dataset, IdIndex, Interaction, Part,
    SplitSpec,
};

type SideFeatures = HashMap<String, (Option<String>, Vec<String>)>;

/// The genre columns of u.item, in order, when u.genre is absent (from the 100K README).
const GENRES_100K: [&str; 19] = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
];

/// Occupation codes of users.dat in the 1M layout (from the 1M README).
const OCCUPATIONS_1M: [&str; 21] = [
    "other",
    "academic/educator",
    "artist",
    "clerical/admin",
    "college/grad student",
    "customer service",
    "doctor/health care",
    "executive/managerial",
    "farmer",
    "homemaker",
    "K-12 student",
    "lawyer",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Layout {
    Ml100k,
    Ml1m,
    MlCsv,
}

fn detect(dir: &Path) -> Result<Layout, DataError> {
    if dir.join("u.data").is_file() {
        Ok(Layout::Ml100k)
    } else if dir.join("ratings.dat").is_file() {
        Ok(Layout::Ml1m)
    } else if dir.join("ratings.csv").is_file() {
        Ok(Layout::MlCsv)
    } else {
        Err(DataError::UnknownLayout(format!(
            "{}: not a MovieLens folder (expected u.data, ratings.dat or ratings.csv)",
            dir.display()
        )))
    }
}

/// Loads a MovieLens folder; canonical (`ua`, `u1`, …) and file splits are resolved here.
pub(super) fn load(dir: &Path, split: &SplitSpec) -> Result<Dataset, DataError> {
    let layout = detect(dir)?;
    let (ratings_file, parse): (&str, RowParser) = match layout {
        Layout::Ml100k => ("u.data", parse_tab_row),
        Layout::Ml1m => ("ratings.dat", parse_colon_row),
        Layout::MlCsv => ("ratings.csv", parse_csv_row),
    };
    let mut users = IdIndex::default();
    let mut items = IdIndex::default();
    let mut interactions = Vec::new();
    match split {
        SplitSpec::Canonical(name) => {
            if layout != Layout::Ml100k {
                return Err(DataError::InvalidOption(format!(
                    "split {name}: canonical splits exist only in the MovieLens 100K layout; \
                     use random:FRACTION"
                )));
            }
            for (suffix, part) in [("base", Part::Train), ("test", Part::Test)] {
                let path = dir.join(format!("{name}.{suffix}"));
                read_ratings(
                    &path,
                    parse,
                    part,
                    &mut users,
                    &mut items,
                    &mut interactions,
                )?;
            }
        }
        SplitSpec::File(test_path) => {
            let path = dir.join(ratings_file);
            read_ratings(
                &path,
                parse,
                Part::Train,
                &mut users,
                &mut items,
                &mut interactions,
            )?;
            let mut test = Vec::new();
            read_ratings(
                test_path,
                parse,
                Part::Test,
                &mut users,
                &mut items,
                &mut test,
            )?;
            super::split::merge_test_file(&mut interactions, test);
        }
        _ => {
            let path = dir.join(ratings_file);
            read_ratings(
                &path,
                parse,
                Part::Train,
                &mut users,
                &mut items,
                &mut interactions,
            )?;
        }
    }
    let (user_side, item_side) = match layout {
        Layout::Ml100k => (read_users_100k(dir)?, read_items_100k(dir)?),
        Layout::Ml1m => (read_users_1m(dir)?, read_items_1m(dir)?),
        Layout::MlCsv => (HashMap::new(), read_items_csv(dir)?),
    };
    // Every catalog item is an item, rated or not: recall may return it.
    let mut item_ids: Vec<&String> = item_side.keys().collect();
    item_ids.sort_by_key(|id| (id.parse::<u64>().unwrap_or(u64::MAX), (*id).clone()));
    for id in item_ids {
        items.get_or_insert(id);
    }
    Ok(Dataset {
        users: entities(&users, "user", &user_side),
        items: entities(&items, "item", &item_side),
        interactions,
        held_out: Default::default(),
    })
}

/// A parsed ratings row: user id, item id, rating, timestamp.
type Row<'a> = (&'a str, &'a str, &'a str, &'a str);
type RowParser = for<'a> fn(&'a str) -> Option<Row<'a>>;

fn parse_tab_row(line: &str) -> Option<Row<'_>> {
    let mut f = line.split('\t');
    Some((f.next()?, f.next()?, f.next()?, f.next()?))
}

fn parse_colon_row(line: &str) -> Option<Row<'_>> {
    let mut f = line.split("::");
    Some((f.next()?, f.next()?, f.next()?, f.next()?))
}

fn parse_csv_row(line: &str) -> Option<Row<'_>> {
    let mut f = line.split(',');
    Some((f.next()?, f.next()?, f.next()?, f.next()?))
}

/// Calls `f(line_number, line)` for every non-empty line, decoded as Latin-1, without its line end.
fn for_each_line(
    path: &Path,
    mut f: impl FnMut(u64, &str) -> Result<(), String>,
) -> Result<(), DataError> {
    let bytes = read_file(path)?;
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let line = latin1(raw);
        f(i as u64 + 1, &line).map_err(|m| DataError::bad_row(path, i as u64 + 1, m))?;
    }
    Ok(())
}

fn read_ratings(
    path: &Path,
    parse: RowParser,
    part: Part,
    users: &mut IdIndex,
    items: &mut IdIndex,
    out: &mut Vec<Interaction>,
) -> Result<(), DataError> {
    let is_csv = path.extension().is_some_and(|e| e == "csv");
    for_each_line(path, |line_no, line| {
        if is_csv && line_no == 1 && line.starts_with("userId") {
            return Ok(());
        }
        let (u, i, r, t) = parse(line).ok_or("expected user, item, rating and timestamp")?;
        let rating: f32 = r
            .trim()
            .parse()
            .map_err(|_| format!("rating {r:?} is not a number"))?;
        if !rating.is_finite() {
            return Err(format!("rating {r:?} is not finite"));
        }
        let timestamp: i64 = t
            .trim()
            .parse()
            .map_err(|_| format!("timestamp {t:?} is not an integer"))?;
        let (u, i) = (u.trim(), i.trim());
        if u.is_empty() || i.is_empty() {
            return Err("empty user or item id".into());
        }
        out.push(Interaction {
            user: users.get_or_insert(u),
            item: items.get_or_insert(i),
            rating: Some(rating),
            timestamp,
            part,
        });
        Ok(())
    })
}

/// The age buckets of the 1M README, applied to both layouts so features mean the same.
fn age_bucket(age: u32) -> &'static str {
    match age {
        0..=17 => "under-18",
        18..=24 => "18-24",
        25..=34 => "25-34",
        35..=44 => "35-44",
        45..=49 => "45-49",
        50..=55 => "50-55",
        _ => "56+",
    }
}

/// First character of a zip code: a coarse region that new users share with many others.
fn zip_feature(zip: &str) -> Option<String> {
    zip.trim().chars().next().map(|c| format!("zip:{c}"))
}

/// Reads a side file (`sep`-separated, at least `fields` fields, the id first) into
/// id → (title, features) with `row`; a missing file means no side features.
fn read_side(
    dir: &Path,
    name: &str,
    sep: &str,
    fields: usize,
    row: impl Fn(&[&str]) -> Result<(Option<String>, Vec<String>), String>,
) -> Result<SideFeatures, DataError> {
    let mut side = HashMap::new();
    let path = dir.join(name);
    if !path.is_file() {
        return Ok(side);
    }
    for_each_line(&path, |_, line| {
        let f: Vec<&str> = line.split(sep).collect();
        if f.len() < fields {
            return Err(format!(
                "expected {fields} {sep}-separated fields, found {}",
                f.len()
            ));
        }
        side.insert(f[0].trim().to_string(), row(&f)?);
        Ok(())
    })?;
    Ok(side)
}

/// A user's side features, the same in the 100K and 1M layouts.
fn user_side(
    age: &str,
    gender: &str,
    occupation: &str,
    zip: &str,
) -> Result<(Option<String>, Vec<String>), String> {
    let age: u32 = age
        .trim()
        .parse()
        .map_err(|_| format!("age {age:?} is not a number"))?;
    let mut features = vec![
        format!("age:{}", age_bucket(age)),
        format!("gender:{}", gender.trim()),
        format!("occupation:{}", occupation.trim()),
    ];
    features.extend(zip_feature(zip));
    Ok((None, features))
}

fn read_users_100k(dir: &Path) -> Result<SideFeatures, DataError> {
    read_side(dir, "u.user", "|", 5, |f| user_side(f[1], f[2], f[3], f[4]))
}

fn read_items_100k(dir: &Path) -> Result<SideFeatures, DataError> {
    let genres = read_genre_names(dir)?;
    read_side(dir, "u.item", "|", 5 + genres.len(), |f| {
        let mut features = Vec::new();
        for (flag, genre) in f[5..5 + genres.len()].iter().zip(&genres) {
            match flag.trim() {
                "1" => features.push(format!("genre:{genre}")),
                "0" => {}
                other => return Err(format!("genre flag {other:?} is not 0 or 1")),
            }
        }
        // Release date "01-Jan-1995": the year is the last dash-separated part.
        if let Some(year) = f[2].rsplit('-').next().and_then(|y| y.trim().parse().ok()) {
            features.push(decade_feature(year));
        }
        Ok((Some(f[1].to_string()), features))
    })
}

fn read_genre_names(dir: &Path) -> Result<Vec<String>, DataError> {
    let path = dir.join("u.genre");
    if !path.is_file() {
        return Ok(GENRES_100K.iter().map(|s| s.to_string()).collect());
    }
    let mut names: Vec<(usize, String)> = Vec::new();
    for_each_line(&path, |_, line| {
        let (name, idx) = line.split_once('|').ok_or("expected genre|index")?;
        let idx = idx
            .trim()
            .parse()
            .map_err(|_| format!("genre index {idx:?} is not a number"))?;
        names.push((idx, name.to_string()));
        Ok(())
    })?;
    names.sort();
    Ok(names.into_iter().map(|(_, n)| n).collect())
}

fn read_users_1m(dir: &Path) -> Result<SideFeatures, DataError> {
    read_side(dir, "users.dat", "::", 5, |f| {
        let occupation = f[3]
            .trim()
            .parse::<usize>()
            .ok()
            .and_then(|i| OCCUPATIONS_1M.get(i))
            .ok_or_else(|| format!("occupation {:?} is not a code 0-20", f[3]))?;
        user_side(f[2], f[1], occupation, f[4])
    })
}

/// Title and genre features of a movie whose title ends in "(YYYY)".
fn movie_side(title: &str, genres: &str) -> (Option<String>, Vec<String>) {
    let mut features: Vec<String> = genres
        .split('|')
        .map(str::trim)
        .filter(|g| !g.is_empty() && *g != "(no genres listed)")
        .map(|g| format!("genre:{g}"))
        .collect();
    let t = title.trim();
    if let Some(year) = t
        .strip_suffix(')')
        .and_then(|s| s.rsplit_once('('))
        .and_then(|(_, y)| y.trim().parse::<i32>().ok())
    {
        features.push(decade_feature(year));
    }
    (Some(t.to_string()), features)
}

fn read_items_1m(dir: &Path) -> Result<SideFeatures, DataError> {
    read_side(dir, "movies.dat", "::", 3, |f| Ok(movie_side(f[1], f[2])))
}

fn read_items_csv(dir: &Path) -> Result<SideFeatures, DataError> {
    let mut side = HashMap::new();
    let path: PathBuf = dir.join("movies.csv");
    if !path.is_file() {
        return Ok(side);
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_path(&path)
        .map_err(|e| DataError::Io {
            path: path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
    for record in reader.records() {
        let record = record.map_err(|e| super::csv_format::csv_error(&path, e))?;
        let line = record.position().map_or(0, |p| p.line());
        let id = record.get(0).unwrap_or("").trim();
        if id.is_empty() {
            return Err(DataError::bad_row(&path, line, "empty movieId"));
        }
        let title = record.get(1).unwrap_or("");
        let genres = record.get(2).unwrap_or("");
        side.insert(id.to_string(), movie_side(title, genres));
    }
    Ok(side)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_with_years_give_a_decade_and_genres() {
        let (title, f) = movie_side("City of Lost Children, The (1995) ", "Adventure|Sci-Fi");
        assert_eq!(title.as_deref(), Some("City of Lost Children, The (1995)"));
        assert_eq!(f, vec!["genre:Adventure", "genre:Sci-Fi", "decade:1990"]);
    }

    #[test]
    fn ages_fall_in_the_1m_buckets() {
        assert_eq!(age_bucket(17), "under-18");
        assert_eq!(age_bucket(25), "25-34");
        assert_eq!(age_bucket(73), "56+");
    }
}
