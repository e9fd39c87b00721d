//! Loaders on small fixtures: the MovieLens 100K and 1M layouts (written by the tests themselves,
//! since MovieLens files may not be redistributed), the CSV layouts, and their errors.

use std::path::Path;

use fmrecall::data::{synthetic::SyntheticConfig, DataSource, Dataset, Format, Part, SplitSpec};

fn source(format: Format, dir: &Path, split: &str) -> DataSource {
    DataSource {
        format,
        dir: dir.to_path_buf(),
        split: split.parse().unwrap(),
        seed: 1,
        synthetic: SyntheticConfig::default(),
        columns: Default::default(),
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// A three-user, four-movie folder in the 100K layout, with a Latin-1 title and the ua split.
fn ml100k(dir: &Path) {
    let data = "1\t10\t5\t881250949\n1\t20\t3\t881250950\n2\t10\t4\t881250951\n2\t30\t5\t881250952\n3\t20\t4\t881250953\n";
    write(dir, "u.data", data.as_bytes());
    write(
        dir,
        "ua.base",
        b"1\t10\t5\t881250949\n2\t10\t4\t881250951\n3\t20\t4\t881250953\n",
    );
    write(
        dir,
        "ua.test",
        b"1\t20\t3\t881250950\n2\t30\t5\t881250952\n",
    );
    write(
        dir,
        "u.user",
        b"1|24|M|technician|85711\n2|53|F|other|94043\n3|17|M|writer|T8H1N\n",
    );
    let flags = |on: &[usize]| -> String {
        (0..19)
            .map(|g| if on.contains(&g) { "|1" } else { "|0" })
            .collect()
    };
    let mut items = Vec::new();
    items.extend(
        format!(
            "10|Toy Story (1995)|01-Jan-1995||http://x{}\n",
            flags(&[3, 4, 5])
        )
        .bytes(),
    );
    // "Café" in Latin-1: é is the single byte 0xE9.
    items.extend(b"20|Caf\xe9 (1982)|01-Jan-1982||http://y");
    items.extend(flags(&[8]).bytes());
    items.extend(b"\n");
    items.extend(
        format!(
            "30|Heat (1995)|15-Dec-1995||http://z{}\n",
            flags(&[1, 6, 16])
        )
        .bytes(),
    );
    items.extend(format!("40|Unrated (2001)|01-Jan-2001||http://w{}\n", flags(&[0])).bytes());
    write(dir, "u.item", &items);
}

#[test]
fn movielens_100k_reads_features_titles_and_the_canonical_split() {
    let dir = tempfile::tempdir().unwrap();
    ml100k(dir.path());
    let ds = Dataset::load(&source(Format::Movielens, dir.path(), "ua")).unwrap();
    assert_eq!(ds.users.len(), 3);
    assert_eq!(ds.items.len(), 4, "the unrated catalog item is an item too");
    assert_eq!(
        ds.interactions
            .iter()
            .filter(|i| i.part == Part::Train)
            .count(),
        3
    );
    assert_eq!(
        ds.interactions
            .iter()
            .filter(|i| i.part == Part::Test)
            .count(),
        2
    );
    let u1 = ds.users.iter().find(|u| u.id == "1").unwrap();
    assert_eq!(
        u1.features,
        [
            "user:1",
            "age:18-24",
            "gender:M",
            "occupation:technician",
            "zip:8"
        ]
    );
    let cafe = ds.items.iter().find(|i| i.id == "20").unwrap();
    assert_eq!(cafe.title.as_deref(), Some("Café (1982)"));
    assert_eq!(cafe.features, ["item:20", "genre:Drama", "decade:1980"]);
    let toy = ds.items.iter().find(|i| i.id == "10").unwrap();
    assert_eq!(
        toy.features,
        [
            "item:10",
            "genre:Animation",
            "genre:Children's",
            "genre:Comedy",
            "decade:1990"
        ]
    );
}

#[test]
fn a_file_split_takes_the_test_interactions_from_a_second_file() {
    let dir = tempfile::tempdir().unwrap();
    ml100k(dir.path());
    let test = dir.path().join("ua.test");
    let ds = Dataset::load(&source(
        Format::Movielens,
        dir.path(),
        &format!("file:{}", test.display()),
    ))
    .unwrap();
    // u.data holds all five rows; the two of ua.test become test and are not duplicated in train.
    assert_eq!(ds.interactions.len(), 5);
    assert_eq!(
        ds.interactions
            .iter()
            .filter(|i| i.part == Part::Test)
            .count(),
        2
    );
}

#[test]
fn movielens_1m_layout_is_detected_and_read() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "ratings.dat",
        b"1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n",
    );
    write(d, "users.dat", b"1::F::1::10::48067\n2::M::56::16::70072\n");
    write(d, "movies.dat", b"1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::James and the Giant Peach (1996)::Animation|Children's|Musical\n");
    let ds = Dataset::load(&source(Format::Movielens, d, "random:0.5")).unwrap();
    assert_eq!(ds.users.len(), 2);
    let u1 = ds.users.iter().find(|u| u.id == "1").unwrap();
    assert_eq!(
        u1.features,
        [
            "user:1",
            "age:under-18",
            "gender:F",
            "occupation:K-12 student",
            "zip:4"
        ]
    );
    let peach = ds.items.iter().find(|i| i.id == "661").unwrap();
    assert_eq!(
        peach.features,
        [
            "item:661",
            "genre:Animation",
            "genre:Children's",
            "genre:Musical",
            "decade:1990"
        ]
    );
}

#[test]
fn movielens_csv_layout_reads_half_stars_and_quoted_titles() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "ratings.csv", b"userId,movieId,rating,timestamp\r\n1,1,4.5,964982703\r\n1,3,4.0,964981247\r\n2,1,2.5,964982224\r\n");
    write(d, "movies.csv", b"movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n3,\"American President, The (1995)\",Comedy|Drama|Romance\n5,Empty (2010),(no genres listed)\n");
    let ds = Dataset::load(&source(Format::Movielens, d, "random:0.3")).unwrap();
    assert_eq!(ds.items.len(), 3);
    let prez = ds.items.iter().find(|i| i.id == "3").unwrap();
    assert_eq!(
        prez.title.as_deref(),
        Some("American President, The (1995)")
    );
    assert_eq!(
        ds.items.iter().find(|i| i.id == "5").unwrap().features,
        ["item:5", "decade:2010"]
    );
    assert!(ds.interactions.iter().any(|i| i.rating == Some(4.5)));
}

#[test]
fn the_csv_format_tolerates_quotes_crlf_and_trailing_columns() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/csv-mini");
    let ds = Dataset::load(&source(Format::Csv, &dir, "random:0.2")).unwrap();
    assert_eq!(ds.interactions.len(), 5);
    assert_eq!(ds.users.len(), 3);
    assert_eq!(ds.items.len(), 4);
    let u1 = ds.users.iter().find(|u| u.id == "u1").unwrap();
    assert_eq!(u1.features, ["user:u1", "age:18-24", "region:north"]);
    let u3 = ds.users.iter().find(|u| u.id == "u3").unwrap();
    assert_eq!(
        u3.features,
        ["user:u3"],
        "a user missing from users.csv keeps its id feature"
    );
    let i1 = ds.items.iter().find(|i| i.id == "i1").unwrap();
    assert_eq!(i1.title.as_deref(), Some("Heat, Part One"));
}

#[test]
fn bad_rows_are_reported_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "interactions.csv",
        b"user_id,item_id,rating\na,b,5\nc,d,five\n",
    );
    let e = Dataset::load(&source(Format::Csv, d, "random:0.2"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("interactions.csv:3") && e.contains("five"),
        "{e}"
    );

    write(d, "u.data", b"1\t2\t5\t100\n1\t3\n");
    let e = Dataset::load(&source(Format::Movielens, d, "random:0.2"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("u.data:2"), "{e}");

    write(d, "interactions.csv", b"user_id,item_id\na,b\n");
    write(d, "items.csv", b"id,features\nb,genre\n");
    let e = Dataset::load(&source(Format::Csv, d, "random:0.2"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("items.csv:2") && e.contains("name:value"), "{e}");
}

#[test]
fn an_empty_dataset_and_an_unknown_folder_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "interactions.csv", b"user_id,item_id\n");
    let e = Dataset::load(&source(Format::Csv, dir.path(), "random:0.2"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no interactions"), "{e}");
    let e = Dataset::load(&source(Format::Movielens, dir.path(), "ua"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a MovieLens folder"), "{e}");
    let missing = Dataset::load(&source(Format::Csv, &dir.path().join("nope"), "random:0.2"));
    assert!(missing.is_err());
}

#[test]
fn canonical_splits_exist_only_for_movielens_100k() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/csv-mini");
    let e = Dataset::load(&source(Format::Csv, &dir, "ua"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("canonical"), "{e}");
    assert!("random:2".parse::<SplitSpec>().is_err());
}

#[test]
fn the_real_movielens_100k_loads_when_present() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/ml-100k");
    if !dir.join("u.data").is_file() {
        eprintln!("skipped: {} not present", dir.display());
        return;
    }
    let ds = Dataset::load(&source(Format::Movielens, &dir, "ua")).unwrap();
    assert_eq!((ds.users.len(), ds.items.len()), (943, 1682));
    assert_eq!(
        ds.interactions
            .iter()
            .filter(|i| i.part == Part::Test)
            .count(),
        9430
    );
    assert_eq!(ds.interactions.len(), 100_000);
}

#[test]
fn a_bad_row_names_its_line_whatever_the_line_endings_and_blank_lines() {
    let dir = tempfile::tempdir().unwrap();
    for (bytes, line) in [
        (&b"user_id,item_id,rating\nu1,i1,4\nu2,i2,x\n"[..], 3),
        (b"user_id,item_id,rating\r\nu1,i1,4\r\nu2,i2,x\r\n", 3),
        (
            b"user_id,item_id,rating\r\nu1,i1,4\r\n\r\n\r\nu2,i2,x\r\n",
            5,
        ),
        (b"user_id,item_id,rating\r\nu1,i1,4\r\nu3,,5\r\n", 3),
    ] {
        write(dir.path(), "interactions.csv", bytes);
        let e = Dataset::load(&source(Format::Csv, dir.path(), "random:0.2"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("interactions.csv:{line}:")),
            "line {line} in {e} ({:?})",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn a_missing_data_folder_is_named_as_missing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    for format in [Format::Csv, Format::Movielens] {
        let e = Dataset::load(&source(format, &missing, "random:0.2"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope: no such folder"), "{e}");
    }
    write(dir.path(), "file.csv", b"x");
    let e = Dataset::load(&source(Format::Csv, &dir.path().join("file.csv"), "none"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a folder"), "{e}");
}

#[test]
fn interaction_columns_can_be_named_and_a_missing_one_lists_those_found() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "interactions.csv",
        b"userId,movieId,rating,timestamp\n1,10,4.5,100\n2,10,3,101\n",
    );
    let mut s = source(Format::Csv, dir.path(), "none");
    let e = Dataset::load(&s).unwrap_err().to_string();
    for part in [
        "interactions.csv:1:",
        "no \"user_id\" column",
        "found userId,movieId,rating,timestamp",
        "--user-column",
        "[data.columns]",
    ] {
        assert!(e.contains(part), "{part} in {e}");
    }
    s.columns.user = "userId".into();
    s.columns.item = "MOVIEID".into();
    // A rating column the settings name must be there: without it every row would be a positive.
    s.columns.rating = "score".into();
    let e = Dataset::load(&s).unwrap_err().to_string();
    assert!(e.contains("no \"score\" column"), "{e}");
    s.columns.rating = "rating".into();
    s.columns.item = "USERID".into();
    let e = Dataset::load(&s).unwrap_err().to_string();
    assert!(e.contains("both"), "{e}");
    s.columns.item = "movieId".into();
    let ds = Dataset::load(&s).unwrap();
    assert_eq!(ds.interactions.len(), 2);
    assert_eq!(ds.interactions[0].rating, Some(4.5));
    assert_eq!(ds.interactions[1].timestamp, 101);
    assert_eq!(ds.items[0].id, "10");
}
