//! The graph's file: saved beside the model artifact so that serving need not rebuild it.
//!
//! Little-endian throughout, whatever the host. Layout (version 1):
//! `"FMRGRAPH"` · version u32 · metric u32 · n u64 · dim u64 · m u32 · m0 u32 · ef_construction u32 ·
//! ef_search u32 · seed u64 · entry u32 · top level u32 · upper length u64 · build seconds f64 ·
//! fingerprint [32] · levels [n × u8] · layer-0 slots [n × (1 + m0) × u32] · upper slots [u32] ·
//! SHA-256 of everything before it [32].
//! The fingerprint is the SHA-256 of the item vectors the graph was built for: loading against other
//! vectors fails with [`GraphFileError::Stale`], so a stale graph is rebuilt, never served.
//! Every count, id and level is validated on load, so no file can make a later search index out of
//! bounds. Writes go to a temporary file that is fsynced, then renamed over the target.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::links::{Links, NO_UPPER};
use super::{BuildSpace, GraphIndex, GraphParams, Metric};
use crate::vectors::ItemVectors;

const MAGIC: &[u8; 8] = b"FMRGRAPH";
const VERSION: u32 = 1;
const HEADER: usize = 112;

/// Why a graph file could not be saved or used.
#[derive(Debug, thiserror::Error)]
pub enum GraphFileError {
    /// Reading or writing failed.
    #[error("graph file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Not a graph file at all.
    #[error("not an fmrecall graph file (bad magic)")]
    Foreign,
    /// Written by another version of the format.
    #[error("graph file version {found} is not supported (this build reads version {supported})")]
    UnsupportedVersion {
        /// Version in the file.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// Shorter than its header says.
    #[error("graph file truncated: {got} bytes, expected {expected}")]
    Truncated {
        /// Bytes the header implies.
        expected: u64,
        /// Bytes present.
        got: u64,
    },
    /// The checksum does not match the content.
    #[error("graph file checksum mismatch (corrupted)")]
    Checksum,
    /// A field is inconsistent.
    #[error("graph file corrupt: {0}")]
    Corrupt(String),
    /// Built for other item vectors: rebuild it.
    #[error("graph file is stale: {0}")]
    Stale(String),
}

/// SHA-256 of the first `n` item vectors (dimension, count, then every component little-endian).
pub(super) fn fingerprint(v: &ItemVectors, n: usize) -> [u8; 32] {
    let n = n.min(v.len());
    let mut h = Sha256::new();
    h.update(b"fmrecall item vectors\0");
    h.update((v.dim() as u64).to_le_bytes());
    h.update((n as u64).to_le_bytes());
    let mut buf = Vec::with_capacity(4096);
    for chunk in v.as_slice()[..n * v.dim()].chunks(1024) {
        buf.clear();
        chunk
            .iter()
            .for_each(|x| buf.extend_from_slice(&x.to_le_bytes()));
        h.update(&buf);
    }
    h.finalize().into()
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GraphFileError + '_ {
    move |source| GraphFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A little-endian cursor that reports a short read as truncation instead of panicking.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, len: usize) -> Result<&[u8], GraphFileError> {
        let end = self.at.checked_add(len).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or(GraphFileError::Truncated {
            expected: (self.at as u64).saturating_add(len as u64),
            got: self.bytes.len() as u64,
        })?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u32(&mut self) -> Result<u32, GraphFileError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> Result<u64, GraphFileError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
}

fn corrupt(what: impl Into<String>) -> GraphFileError {
    GraphFileError::Corrupt(what.into())
}

impl GraphIndex {
    /// Writes the graph's linked nodes to `path` atomically (temporary file, fsync, rename): the
    /// room for inserts is not saved (a load makes it for the vectors it is given), nor are
    /// tombstones. After live inserts the fingerprint covers the rows linked then. **Errors** on
    /// I/O failure. Inserts wait while it runs.
    pub fn save(&self, path: &Path) -> Result<(), GraphFileError> {
        // No insert changes the lists while they are written out.
        let _one = self
            .inserting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let links = &self.links;
        let n = self.len();
        let fingerprint = if self.fingerprint.1 == n {
            self.fingerprint.0
        } else {
            fingerprint(&self.vectors, n)
        };
        let level0 = &links.level0[..n * (1 + links.m0)];
        let upper = &links.upper[..links.upper_len(n)];
        let (entry, max_level) = self.entry.get().unwrap_or((0, 0));
        let mut out: Vec<u8> =
            Vec::with_capacity(HEADER + n + 4 * (level0.len() + upper.len()) + 32);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        // Low byte: the search metric; second byte: the build space (informational).
        let metric: u32 = match self.params.metric {
            Metric::InnerProduct => 0,
            Metric::Cosine => 1,
        } | (match self.params.build_space {
            BuildSpace::InnerProduct => 0,
            BuildSpace::L2 => 1,
            BuildSpace::InnerProductL2Prune => 2,
        } << 8);
        out.extend_from_slice(&metric.to_le_bytes());
        out.extend_from_slice(&(n as u64).to_le_bytes());
        out.extend_from_slice(&(self.space.dim() as u64).to_le_bytes());
        for v in [
            links.m,
            links.m0,
            self.params.ef_construction,
            self.params.ef_search,
        ] {
            out.extend_from_slice(&(v as u32).to_le_bytes());
        }
        out.extend_from_slice(&self.params.seed.to_le_bytes());
        out.extend_from_slice(&entry.to_le_bytes());
        out.extend_from_slice(&(max_level as u32).to_le_bytes());
        out.extend_from_slice(&(upper.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.build_seconds.to_le_bytes());
        out.extend_from_slice(&fingerprint);
        debug_assert_eq!(out.len(), HEADER);
        out.extend_from_slice(&links.levels[..n]);
        for a in level0.iter().chain(upper.iter()) {
            out.extend_from_slice(&a.load(Ordering::Acquire).to_le_bytes());
        }
        let sum: [u8; 32] = Sha256::digest(&out).into();
        out.extend_from_slice(&sum);

        let name = path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "graph".into());
        let tmp = path.with_file_name(format!(".{name}.tmp.{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&out)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            // Make the rename itself durable.
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(path)(e)
        })
    }

    /// Reads a graph saved by [`GraphIndex::save`] for `vectors` (the item vectors, as given to
    /// `build`), with room for inserts up to their capacity (levels beyond the file's nodes drawn
    /// as a build draws them). **Errors** if the file is missing, foreign, of another version, truncated,
    /// corrupted, inconsistent, or built for other vectors ([`GraphFileError::Stale`]: rebuild).
    /// Filtered searches go exact below the default `exact_filter_below` (see
    /// [`GraphIndex::with_exact_filter_below`]).
    pub fn load(path: &Path, vectors: Arc<ItemVectors>) -> Result<Self, GraphFileError> {
        let bytes = std::fs::read(path).map_err(io(path))?;
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(GraphFileError::Foreign);
        }
        let mut r = Reader {
            bytes: &bytes,
            at: MAGIC.len(),
        };
        let version = r.u32()?;
        if version != VERSION {
            return Err(GraphFileError::UnsupportedVersion {
                found: version,
                supported: VERSION,
            });
        }
        let metric = r.u32()?;
        let n = r.u64()?;
        let dim = r.u64()?;
        let m = r.u32()? as usize;
        let m0 = r.u32()? as usize;
        let ef_construction = r.u32()? as usize;
        let ef_search = r.u32()? as usize;
        let seed = r.u64()?;
        let entry = r.u32()?;
        let max_level = r.u32()? as usize;
        let upper_len = r.u64()?;
        let build_seconds = f64::from_bits(r.u64()?);
        let mut fp = [0u8; 32];
        fp.copy_from_slice(r.take(32)?);

        // The length the header implies, in u128 so that absurd fields cannot overflow.
        let expected = HEADER as u128
            + n as u128
            + 4 * (n as u128 * (1 + m0 as u128) + upper_len as u128)
            + 32;
        if (bytes.len() as u128) < expected {
            return Err(GraphFileError::Truncated {
                expected: u64::try_from(expected).unwrap_or(u64::MAX),
                got: bytes.len() as u64,
            });
        }
        if bytes.len() as u128 > expected {
            return Err(corrupt("trailing bytes after the checksum"));
        }
        let body = bytes.len() - 32;
        let sum: [u8; 32] = Sha256::digest(&bytes[..body]).into();
        if sum[..] != bytes[body..] {
            return Err(GraphFileError::Checksum);
        }

        let build_space = match metric >> 8 {
            0 => BuildSpace::InnerProduct,
            1 => BuildSpace::L2,
            2 => BuildSpace::InnerProductL2Prune,
            other => return Err(corrupt(format!("unknown build space {other}"))),
        };
        let metric = match metric & 0xff {
            0 => Metric::InnerProduct,
            1 => Metric::Cosine,
            other => return Err(corrupt(format!("unknown metric {other}"))),
        };
        if n != vectors.len() as u64 || dim != vectors.dim() as u64 {
            return Err(GraphFileError::Stale(format!(
                "built for {n} items of dimension {dim}, the model has {} of dimension {}",
                vectors.len(),
                vectors.dim()
            )));
        }
        if fp != fingerprint(&vectors, vectors.len()) {
            return Err(GraphFileError::Stale(
                "built for other item vectors (fingerprint differs)".into(),
            ));
        }
        let params = GraphParams {
            m,
            ef_construction,
            ef_insert: 0,
            ef_search,
            seed,
            threads: 0,
            metric,
            build_space,
            quantized: GraphParams::default().quantized,
        };
        params
            .check()
            .map_err(|e| corrupt(format!("parameters: {e}")))?;
        if m0 != 2 * m {
            return Err(corrupt(format!("layer-0 capacity {m0} is not 2 × {m}")));
        }
        let n = n as usize;
        let capacity = vectors.capacity();
        if capacity >= u32::MAX as usize {
            return Err(corrupt("capacity above 2^32 - 2 items"));
        }
        let mut levels = r.take(n)?.to_vec();
        if levels.iter().any(|&l| l as usize > super::MAX_LEVEL) {
            return Err(corrupt("a level above the maximum"));
        }
        if capacity > n {
            levels.extend_from_slice(&super::draw_levels(capacity, m, seed)[n..]);
        }
        let links = Links::new(levels, m, m0).ok_or_else(|| corrupt("too many upper slots"))?;
        if links.upper_len(n) as u64 != upper_len {
            return Err(corrupt("upper-layer size does not match the levels"));
        }
        let level0 = &links.level0[..n * (1 + m0)];
        let upper = &links.upper[..links.upper_len(n)];
        for a in level0.iter().chain(upper.iter()) {
            a.store(r.u32()?, Ordering::Relaxed);
        }
        validate(&links, n, entry, max_level)?;

        let entry = (n > 0).then_some((entry, max_level));
        let mut graph = GraphIndex::from_parts(vectors, params, links, entry, (fp, n), n);
        graph.build_seconds = build_seconds;
        Ok(graph)
    }
}

/// Checks every count, id and level of the `n` nodes read, so that searching the loaded graph
/// cannot go out of bounds (or onto a node not in the file).
fn validate(links: &Links, n: usize, entry: u32, max_level: usize) -> Result<(), GraphFileError> {
    if n == 0 {
        return Ok(());
    }
    if entry as usize >= n || links.levels[entry as usize] as usize != max_level {
        return Err(corrupt("entry point is not a top-level node"));
    }
    if links.levels[..n].iter().any(|&l| l as usize > max_level) {
        return Err(corrupt("a node above the top level"));
    }
    for node in 0..n as u32 {
        let top = links.levels[node as usize] as usize;
        if (top == 0) != (links.upper_offset[node as usize] == NO_UPPER) {
            return Err(corrupt("upper-layer offsets inconsistent"));
        }
        for level in 0..=top {
            let slot = links.slot(node, level);
            let count = slot[0].load(Ordering::Relaxed) as usize;
            if count > links.cap(level) {
                return Err(corrupt(format!(
                    "node {node} has {count} links on layer {level}"
                )));
            }
            for a in &slot[1..=count] {
                let id = a.load(Ordering::Relaxed) as usize;
                if id >= n || (links.levels[id] as usize) < level {
                    return Err(corrupt(format!(
                        "node {node} links to {id}, not a node of layer {level}"
                    )));
                }
            }
        }
    }
    Ok(())
}
