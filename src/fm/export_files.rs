//! The exported inner-product form as files other systems read (Spark, Faiss, a vector database):
//! `fmrecall export --format npy` and `--format parquet`.
//!
//! Parquet ([`write_parquet`]), snappy-compressed, one file per side:
//! - `items.parquet`: `id` (string), `bias` (float: b_i), `vector` (list<float>: [q_i; b_i]);
//! - `users.parquet`: `id` (string), `constant` (float: c_u), `vector` (list<float>: [p_u; 1]);
//! - `manifest.json` as below;
//!
//! so that score(u, i) = users.constant[u] + users.vector[u] · items.vector[i]. In NumPy form:
//!
//! Into one folder:
//! - `item_vectors.npy`: f32 (n_items × (k + 1)), row i = [q_i; b_i], in the artifact's catalog order;
//! - `user_vectors.npy`: f32 (n_users × (k + 1)), row u = [p_u; 1], for every user known at training;
//! - `user_constants.npy`: f32 (n_users,), c_u;
//! - `item_ids.txt`, `user_ids.txt`: the external ids, one a line (UTF-8, `\n`), in the same order;
//! - `manifest.json`: model version, k, counts, the formula, and each file's size and SHA-256.
//!
//! so that score(u, i) = user_constants[u] + user_vectors[u] · item_vectors[i] is the FM's score
//! of the user's features with the item's (see [`super::export`]). The vectors are computed by the
//! functions serving uses ([`UserQuery::new`], [`ItemVectors::new`]), so the files hold what the
//! service ranks by.
//!
//! Every file is written to a temporary name, fsynced and renamed into place; an old
//! `manifest.json` is removed before the first rename and the new one renamed last. So a crash
//! never leaves a half-written file under a final name, and a folder with a manifest holds whole
//! files of that export (their checksums are in it). Ids containing a line break (`\n` or `\r`) are
//! refused before anything is written: a line-per-id file cannot hold them unambiguously.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::artifact::ModelArtifact;
use super::export::UserQuery;
use super::npy;
use crate::data::Entity;
use crate::vectors::ItemVectors;

/// File names inside an export folder.
pub const ITEM_VECTORS: &str = "item_vectors.npy";
/// See [`ITEM_VECTORS`].
pub const USER_VECTORS: &str = "user_vectors.npy";
/// See [`ITEM_VECTORS`].
pub const USER_CONSTANTS: &str = "user_constants.npy";
/// See [`ITEM_VECTORS`].
pub const ITEM_IDS: &str = "item_ids.txt";
/// See [`ITEM_VECTORS`].
pub const USER_IDS: &str = "user_ids.txt";
/// See [`ITEM_VECTORS`].
pub const MANIFEST: &str = "manifest.json";

/// File names of a Parquet export.
pub const ITEMS_PARQUET: &str = "items.parquet";
/// See [`ITEMS_PARQUET`].
pub const USERS_PARQUET: &str = "users.parquet";

/// How a Parquet export's files combine into the FM score (also in its manifest).
pub const PARQUET_SCORE_FORMULA: &str =
    "score(u, i) = users.constant[u] + users.vector[u] · items.vector[i]";

/// How the files combine into the FM score (also in the manifest).
pub const SCORE_FORMULA: &str =
    "score(u, i) = user_constants[u] + user_vectors[u] · item_vectors[i]";

/// Why an export could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The output path exists and is not a folder.
    #[error("{0}: exists and is not a folder (give a folder to export into)")]
    NotAFolder(PathBuf),
    /// Creating, writing, syncing or renaming a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The Parquet writer refused the data.
    #[error("{path}: {message}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// What the writer said.
        message: String,
    },
    /// An id cannot be written one a line.
    #[error(
        "{path}: {kind} id {id:?} contains a line break; ids are written one a line, so such ids \
         cannot be exported (nothing was written)"
    )]
    LineBreakInId {
        /// The ids file it would have gone into.
        path: PathBuf,
        /// `user` or `item`.
        kind: &'static str,
        /// The id.
        id: String,
    },
}

/// One file of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedFile {
    /// File name inside the folder.
    pub name: String,
    /// What it holds.
    pub contents: String,
    /// Array shape for `.npy` files; `[lines]` for ids files; `[rows, vector length]` for Parquet.
    pub shape: Vec<usize>,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: String,
}

/// `manifest.json`: what an export holds and how to use it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportManifest {
    /// `npy` or `parquet`.
    pub format: String,
    /// The artifact's model version.
    pub model_version: String,
    /// When the model was created (RFC 3339 UTC).
    pub model_created_at: String,
    /// Factor dimension k; vectors are k + 1 long.
    pub dim: usize,
    /// Users exported (every user known at training).
    pub users: usize,
    /// Items exported (the whole catalog).
    pub items: usize,
    /// [`SCORE_FORMULA`].
    pub score: String,
    /// The data files: item vectors, user vectors, user constants, user ids, item ids.
    pub files: Vec<ExportedFile>,
}

/// What [`write_npy`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportReport {
    /// The export folder.
    pub dir: PathBuf,
    /// Its manifest, as written.
    pub manifest: ExportManifest,
}

/// Writes the inner-product form of `artifact` into `dir` as `.npy` arrays, ids files and a
/// manifest (see the module documentation). The folder is created if needed; the export's own
/// files in it are replaced, nothing else is touched.
///
/// **Errors** if `dir` exists and is not a folder, if an id contains a line break (before
/// anything is written), or if a file cannot be written (temporary files are removed).
pub fn write_npy(artifact: &ModelArtifact, dir: &Path) -> Result<ExportReport, ExportError> {
    let meta = &artifact.meta;
    check_ids(&dir.join(USER_IDS), "user", &meta.users)?;
    check_ids(&dir.join(ITEM_IDS), "item", &meta.items)?;
    staged_export(dir, |staged| write_all(artifact, staged))
}

/// Writes the inner-product form of `artifact` into `dir` as `items.parquet`, `users.parquet`
/// and a manifest (see the module documentation), staged and renamed as [`write_npy`] does.
///
/// **Errors** if `dir` exists and is not a folder or a file cannot be written.
pub fn write_parquet(artifact: &ModelArtifact, dir: &Path) -> Result<ExportReport, ExportError> {
    staged_export(dir, |staged| write_all_parquet(artifact, staged))
}

/// Creates `dir` and runs `write` on a staging area, whose files are removed on failure.
fn staged_export(
    dir: &Path,
    write: impl FnOnce(&mut Staged<'_>) -> Result<ExportReport, ExportError>,
) -> Result<ExportReport, ExportError> {
    if dir.exists() && !dir.is_dir() {
        return Err(ExportError::NotAFolder(dir.to_path_buf()));
    }
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut staged = Staged {
        dir,
        files: Vec::new(),
    };
    let result = write(&mut staged);
    if result.is_err() {
        staged.discard();
    }
    result
}

/// Rows per row group of a vectors file: 65,536 rows of 65 floats are 17 MB before compression.
const ROWS_PER_GROUP: usize = 1 << 16;

/// A Parquet file of `id`, a float column `scalar` and `vector` (list<float>, `width` long rows
/// of `vectors`), in memory: the writer needs a `Send` sink, and the staging writer hashes what
/// it is given.
fn vectors_parquet(
    ids: &[Entity],
    scalar: (&str, &[f32]),
    vectors: &[f32],
    width: usize,
) -> parquet::errors::Result<Vec<u8>> {
    use parquet::basic::Compression;
    use parquet::data_type::{ByteArray, ByteArrayType, FloatType};
    use parquet::errors::ParquetError;
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use std::sync::Arc;

    let (scalar_name, scalars) = scalar;
    // The three-level LIST layout of the Parquet format's LogicalTypes.md, which Spark, pandas
    // and DuckDB read as an array column.
    let schema = parquet::schema::parser::parse_message_type(&format!(
        "message vectors {{
            REQUIRED BYTE_ARRAY id (STRING);
            REQUIRED FLOAT {scalar_name};
            REQUIRED group vector (LIST) {{
                REPEATED group list {{
                    REQUIRED FLOAT element;
                }}
            }}
        }}"
    ))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut buf = Vec::new();
    let mut writer = SerializedFileWriter::new(&mut buf, Arc::new(schema), Arc::new(props))?;
    let missing = || ParquetError::General("the schema has three columns".into());
    let mut start = 0;
    while start < ids.len() {
        let end = (start + ROWS_PER_GROUP).min(ids.len());
        let mut group = writer.next_row_group()?;
        let mut column = group.next_column()?.ok_or_else(missing)?;
        let id_values: Vec<ByteArray> = ids[start..end]
            .iter()
            .map(|e| ByteArray::from(e.id.as_str()))
            .collect();
        column
            .typed::<ByteArrayType>()
            .write_batch(&id_values, None, None)?;
        column.close()?;
        let mut column = group.next_column()?.ok_or_else(missing)?;
        column
            .typed::<FloatType>()
            .write_batch(&scalars[start..end], None, None)?;
        column.close()?;
        let mut column = group.next_column()?.ok_or_else(missing)?;
        let n = (end - start) * width;
        // Every element present (definition level 1); a repetition level of 0 starts a row.
        let defs = vec![1i16; n];
        let reps: Vec<i16> = (0..n).map(|j| i16::from(j % width != 0)).collect();
        column.typed::<FloatType>().write_batch(
            &vectors[start * width..end * width],
            Some(&defs),
            Some(&reps),
        )?;
        column.close()?;
        group.close()?;
        start = end;
    }
    writer.close()?;
    Ok(buf)
}

fn write_all_parquet(
    artifact: &ModelArtifact,
    staged: &mut Staged<'_>,
) -> Result<ExportReport, ExportError> {
    let (meta, model) = (&artifact.meta, &artifact.model);
    let k = model.dim();
    let (n_users, n_items) = (meta.users.len(), meta.items.len());
    let parquet_err = |name: &str| {
        let path = staged.dir.join(name);
        move |e: parquet::errors::ParquetError| ExportError::Parquet {
            path,
            message: e.to_string(),
        }
    };

    let items = ItemVectors::new(model, &artifact.item_rows());
    let biases: Vec<f32> = (0..n_items).map(|i| items.row(i)[k]).collect();
    let bytes = vectors_parquet(&meta.items, ("bias", &biases), items.as_slice(), k + 1)
        .map_err(parquet_err(ITEMS_PARQUET))?;
    drop(items);
    let mut files = vec![staged.write(
        ITEMS_PARQUET,
        "per item: id, bias b_i, vector [q_i; b_i]",
        vec![n_items, k + 1],
        |out| out.write_all(&bytes),
    )?];

    let user_rows = artifact.user_rows();
    let mut vectors = Vec::with_capacity(n_users * (k + 1));
    let mut constants = Vec::with_capacity(n_users);
    for u in 0..n_users {
        let query = UserQuery::new(model, user_rows.row(u));
        vectors.extend_from_slice(&query.vector);
        constants.push(query.constant);
    }
    let bytes = vectors_parquet(&meta.users, ("constant", &constants), &vectors, k + 1)
        .map_err(parquet_err(USERS_PARQUET))?;
    drop(vectors);
    files.push(staged.write(
        USERS_PARQUET,
        "per user: id, constant c_u, vector [p_u; 1]",
        vec![n_users, k + 1],
        |out| out.write_all(&bytes),
    )?);
    finish(
        staged,
        manifest(artifact, "parquet", PARQUET_SCORE_FORMULA, files),
    )
}

/// The manifest of an export of `artifact` in `format` whose scores follow `score`.
fn manifest(
    artifact: &ModelArtifact,
    format: &str,
    score: &str,
    files: Vec<ExportedFile>,
) -> ExportManifest {
    let meta = &artifact.meta;
    ExportManifest {
        format: format.into(),
        model_version: meta.version.clone(),
        model_created_at: meta.created_at.clone(),
        dim: artifact.model.dim(),
        users: meta.users.len(),
        items: meta.items.len(),
        score: score.into(),
        files,
    }
}

/// Writes the manifest (renamed last) and renames every staged file into place.
fn finish(staged: &mut Staged<'_>, manifest: ExportManifest) -> Result<ExportReport, ExportError> {
    let json = serde_json::to_vec_pretty(&manifest).expect("the manifest serialises");
    // Staged like the others (renamed last); it does not list itself.
    staged.write(MANIFEST, "", Vec::new(), |out| out.write_all(&json))?;
    staged.commit()?;
    Ok(ExportReport {
        dir: staged.dir.to_path_buf(),
        manifest,
    })
}

fn write_all(
    artifact: &ModelArtifact,
    staged: &mut Staged<'_>,
) -> Result<ExportReport, ExportError> {
    let (meta, model) = (&artifact.meta, &artifact.model);
    let k = model.dim();
    let (n_users, n_items) = (meta.users.len(), meta.items.len());

    let items = ItemVectors::new(model, &artifact.item_rows());
    let mut files = vec![staged.write(
        ITEM_VECTORS,
        "[q_i; b_i] per item: factor sum, then the item's own terms",
        vec![n_items, k + 1],
        |out| {
            out.write_all(&npy::f32_header(&[n_items, k + 1]))?;
            npy::write_f32s(out, items.as_slice())
        },
    )?];
    drop(items);

    let user_rows = artifact.user_rows();
    let mut constants = Vec::with_capacity(n_users);
    files.push(staged.write(
        USER_VECTORS,
        "[p_u; 1] per user: factor sum, then 1 (meets the item's b_i)",
        vec![n_users, k + 1],
        |out| {
            out.write_all(&npy::f32_header(&[n_users, k + 1]))?;
            for u in 0..n_users {
                let query = UserQuery::new(model, user_rows.row(u));
                npy::write_f32s(out, &query.vector)?;
                constants.push(query.constant);
            }
            Ok(())
        },
    )?);
    files.push(staged.write(
        USER_CONSTANTS,
        "c_u per user: the global bias and the user's own terms",
        vec![n_users],
        |out| {
            out.write_all(&npy::f32_header(&[n_users]))?;
            npy::write_f32s(out, &constants)
        },
    )?);
    for (name, contents, entities) in [
        (USER_IDS, "external user ids, one a line", &meta.users),
        (ITEM_IDS, "external item ids, one a line", &meta.items),
    ] {
        files.push(staged.write(name, contents, vec![entities.len()], |out| {
            entities.iter().try_for_each(|e| writeln!(out, "{}", e.id))
        })?);
    }

    finish(staged, manifest(artifact, "npy", SCORE_FORMULA, files))
}

fn check_ids(path: &Path, kind: &'static str, entities: &[Entity]) -> Result<(), ExportError> {
    match entities.iter().find(|e| e.id.contains(['\n', '\r'])) {
        Some(e) => Err(ExportError::LineBreakInId {
            path: path.to_path_buf(),
            kind,
            id: e.id.clone(),
        }),
        None => Ok(()),
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Files written under temporary names, renamed into place together by [`Staged::commit`].
struct Staged<'a> {
    dir: &'a Path,
    /// (temporary path, final name), in writing order; the manifest last.
    files: Vec<(PathBuf, &'static str)>,
}

impl Staged<'_> {
    /// Writes a file under a temporary name through `fill`, fsyncs it and describes it.
    fn write(
        &mut self,
        name: &'static str,
        contents: &str,
        shape: Vec<usize>,
        fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<ExportedFile, ExportError> {
        let tmp = self.dir.join(format!(".{name}.tmp-{}", std::process::id()));
        self.files.push((tmp.clone(), name));
        let file = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        let mut out = Hashing {
            inner: BufWriter::new(file),
            hash: Sha256::new(),
            bytes: 0,
        };
        let path = self.dir.join(name);
        fill(&mut out).map_err(io_err(&path))?;
        let Hashing { inner, hash, bytes } = out;
        let file = inner
            .into_inner()
            .map_err(|e| io_err(&path)(e.into_error()))?;
        file.sync_all().map_err(io_err(&path))?;
        Ok(ExportedFile {
            name: name.into(),
            contents: contents.into(),
            shape,
            bytes,
            sha256: hash.finalize().iter().map(|b| format!("{b:02x}")).collect(),
        })
    }

    /// Removes an old manifest, renames every file into place (the manifest last) and syncs the
    /// folder so that the renames are durable.
    fn commit(&mut self) -> Result<(), ExportError> {
        let manifest = self.dir.join(MANIFEST);
        match std::fs::remove_file(&manifest) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_err(&manifest)(e));
            }
            _ => {}
        }
        let files = std::mem::take(&mut self.files);
        for (n, (tmp, name)) in files.iter().enumerate() {
            let path = self.dir.join(name);
            if let Err(e) = std::fs::rename(tmp, &path) {
                files[n..].iter().for_each(|(t, _)| {
                    let _ = std::fs::remove_file(t);
                });
                return Err(io_err(&path)(e));
            }
        }
        std::fs::File::open(self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(self.dir))
    }

    /// Removes the temporary files not yet renamed.
    fn discard(&mut self) {
        for (tmp, _) in self.files.drain(..) {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
