//! Parallel graph construction (Malkov & Yashunin 2018, Alg. 1) on all cores with
//! `std::thread::scope`: threads take nodes from a shared counter and insert them concurrently.
//! Each node has a lock held only while its own lists are rewritten; readers never lock (the lists
//! are atomics, see `links.rs`). The entry point is guarded by one mutex, held for a whole
//! insertion only by the rare node that becomes the new top (as hnswlib does), so every insertion
//! starts from a complete upper hierarchy.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::codes::Codes;
use super::kernel::{Kernel, Portable};
use super::links::Links;
use super::order::Far;
use super::search::{with_scratch, Scratch, View};
use crate::vectors::ItemVectors;

/// Buffers an inserting thread reuses across insertions.
#[derive(Default)]
struct Bufs {
    found: Vec<(f32, u32)>,
    /// The new node's chosen neighbours on each of its layers, linked back once all its own lists
    /// are written.
    selected: Vec<Vec<(f32, u32)>>,
    cands: Vec<(f32, u32)>,
    pruned: Vec<(f32, u32)>,
    ids: Vec<u32>,
}

/// Packed [`Entry`] value of a graph without nodes.
const EMPTY: u64 = u64::MAX;

/// The entry point and top level: read by every search with one atomic load, moved by the rare
/// insertion whose node lands above the top (during the build, or a live insert).
pub(super) struct Entry {
    /// Taken by every insertion to read the entry; kept for its whole insertion by a node that
    /// becomes the new top (as hnswlib does), so every insertion starts from a complete hierarchy.
    lock: Mutex<()>,
    /// `node << 32 | level`, or [`EMPTY`].
    packed: AtomicU64,
}

impl Entry {
    /// An entry at `node` on `level`, or none.
    pub fn new(entry: Option<(u32, usize)>) -> Self {
        Entry {
            lock: Mutex::new(()),
            packed: AtomicU64::new(entry.map_or(EMPTY, |(node, level)| pack(node, level))),
        }
    }

    /// The entry node and the top level (None before the first node). Acquire: the new top's
    /// lists were written before it was published here.
    #[inline(always)]
    pub fn get(&self) -> Option<(u32, usize)> {
        let packed = self.packed.load(Ordering::Acquire);
        (packed != EMPTY).then_some(((packed >> 32) as u32, (packed & 0xFFFF_FFFF) as usize))
    }

    /// Moves the entry (the caller holds `lock` or has the graph to itself).
    fn set(&self, node: u32, level: usize) {
        self.packed.store(pack(node, level), Ordering::Release);
    }

    /// Makes `node` the entry of a graph without one; false if it has one.
    pub fn start(&self, node: u32, level: usize) -> bool {
        let _one = lock(&self.lock);
        if self.get().is_some() {
            return false;
        }
        self.set(node, level);
        true
    }
}

fn pack(node: u32, level: usize) -> u64 {
    (u64::from(node) << 32) | level as u64
}

/// What inserting nodes needs: the view over the vectors and lists, the per-node locks (held only
/// while a node's own list is rewritten; one at a time, so no lock order), the entry and the beam.
pub(super) struct Builder<'a> {
    pub view: View<'a>,
    pub locks: &'a [Mutex<()>],
    pub entry: &'a Entry,
    pub ef_construction: usize,
}

/// One mutex per node slot (the capacity), so live inserts lock like the build does.
pub(super) fn node_locks(capacity: usize) -> Box<[Mutex<()>]> {
    (0..capacity).map(|_| Mutex::new(())).collect()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere cannot leave a list half-written in a way that matters (every id written is
    // valid), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn by_distance(a: &(f32, u32), b: &(f32, u32)) -> std::cmp::Ordering {
    a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
}

impl Builder<'_> {
    /// Links node `q` (Alg. 1). The graph must have an entry. All of q's own lists are written
    /// before any node links to it, so a search that reaches q (a live insert) finds every layer of
    /// it filled: a search stepping onto a half-linked top node would otherwise descend into its
    /// empty lower lists and end there.
    #[inline(always)]
    fn insert<K: Kernel>(&self, q: u32, s: &mut Scratch, b: &mut Bufs) {
        let links = self.view.links;
        let n = links.capacity();
        let level = links.levels[q as usize] as usize;
        let guard = lock(&self.entry.lock);
        let Some((ep, top)) = self.entry.get() else {
            return;
        };
        let hold = if level > top {
            Some(guard)
        } else {
            drop(guard);
            None
        };
        let qv = self.view.row(q);
        let qn = self.view.norms.get(q as usize).copied().unwrap_or(0.0);
        let mut cur =
            self.view
                .descend::<K>(qv, qn, (self.view.dist::<K>(qv, qn, ep), ep), top, level);
        let layers = level.min(top) + 1;
        if b.selected.len() < layers {
            b.selected.resize_with(layers, Vec::new);
        }
        for lc in (0..layers).rev() {
            s.begin(n);
            // Unlimited walks never give up.
            let _ = self.view.search_layer::<K>(
                qv,
                qn,
                cur,
                self.ef_construction,
                lc,
                s,
                false,
                None,
                |_| true,
            );
            b.found.clear();
            b.found.extend(
                s.results
                    .drain()
                    .map(|Far(d, id)| (d, id))
                    .filter(|&(_, id)| id != q),
            );
            b.found.sort_unstable_by(by_distance);
            // M links for the new node on every layer, as in the paper (Mmax0 = 2M only caps others).
            let mut selected = std::mem::take(&mut b.selected[lc]);
            self.view.select::<K>(q, &b.found, links.m, &mut selected);
            b.ids.clear();
            b.ids.extend(selected.iter().map(|&(_, id)| id));
            {
                let _own = lock(&self.locks[q as usize]);
                links.set(q, lc, &b.ids);
            }
            b.selected[lc] = selected;
            if let Some(&first) = b.found.first() {
                cur = first;
            }
        }
        for lc in (0..layers).rev() {
            let selected = std::mem::take(&mut b.selected[lc]);
            for &(d, nb) in &selected {
                self.link_back::<K>(nb, q, d, lc, b);
            }
            b.selected[lc] = selected;
        }
        if hold.is_some() {
            self.entry.set(q, level);
        }
    }

    /// Adds `q` to `nb`'s list on `level`, pruning with the heuristic when the list is full. The
    /// repair links at the tail of a layer-0 list (up to half of it, `Links::protected`) are kept
    /// out of the pruning: the heuristic is what dropped them before the repair added them, and
    /// pruning them again undid the repairs as live inserts arrived (self-recall 1.0 → 0.91 after
    /// 10k inserts into 90k).
    #[inline(always)]
    fn link_back<K: Kernel>(&self, nb: u32, q: u32, d: f32, level: usize, b: &mut Bufs) {
        let links = self.view.links;
        let _guard = lock(&self.locks[nb as usize]);
        b.ids.clear();
        links.for_each(nb, level, |x| b.ids.push(x));
        if b.ids.contains(&q) {
            return;
        }
        let kept = if level == 0 {
            links.protected(nb).min(b.ids.len())
        } else {
            0
        };
        let free = b.ids.len() - kept;
        if b.ids.len() < links.cap(level) {
            b.ids.insert(free, q);
        } else {
            b.cands.clear();
            b.cands.push((d, q));
            for &x in &b.ids[..free] {
                b.cands.push((self.view.pair::<K>(nb, x), x));
            }
            b.cands.sort_unstable_by(by_distance);
            self.view
                .select::<K>(nb, &b.cands, links.cap(level) - kept, &mut b.pruned);
            b.ids.drain(..free);
            for (i, &(_, id)) in b.pruned.iter().enumerate() {
                b.ids.insert(i, id);
            }
        }
        links.set(nb, level, &b.ids);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn insert_avx2(builder: &Builder<'_>, q: u32, s: &mut Scratch, b: &mut Bufs) {
    builder.insert::<super::kernel::Avx2>(q, s, b)
}

fn insert_dispatch(builder: &Builder<'_>, q: u32, s: &mut Scratch, b: &mut Bufs) {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::has_avx2() {
        // SAFETY: the CPU supports AVX2 and FMA, checked just above.
        unsafe { insert_avx2(builder, q, s, b) };
        return;
    }
    builder.insert::<Portable>(q, s, b)
}

/// Links the nodes `nodes` (rows published, levels drawn, the graph has an entry) on `threads`
/// threads taking small chunks from a shared counter, roughly in order; one thread links inline.
pub(super) fn link_nodes(builder: &Builder<'_>, nodes: Range<usize>, threads: usize) {
    if nodes.len() <= 1 || threads <= 1 {
        let mut bufs = Bufs::default();
        with_scratch(|s| {
            for q in nodes {
                insert_dispatch(builder, q as u32, s, &mut bufs);
            }
        });
        return;
    }
    // Chunks small enough that a live batch of a few hundred still spreads over the threads.
    let chunk = (nodes.len() / (8 * threads)).clamp(1, 32);
    let next = AtomicUsize::new(nodes.start);
    std::thread::scope(|scope| {
        for _ in 0..threads.min(nodes.len()) {
            scope.spawn(|| {
                let mut bufs = Bufs::default();
                with_scratch(|s| loop {
                    let start = next.fetch_add(chunk, Ordering::Relaxed);
                    if start >= nodes.end {
                        break;
                    }
                    for q in start..(start + chunk).min(nodes.end) {
                        insert_dispatch(builder, q as u32, s, &mut bufs);
                    }
                });
            });
        }
    });
}

/// Squared norms of rows `0..n`, for the build spaces that use them (empty otherwise).
pub(super) fn build_norms(vectors: &ItemVectors, n: usize, space: super::BuildSpace) -> Vec<f32> {
    if space == super::BuildSpace::InnerProduct {
        return Vec::new();
    }
    (0..n)
        .map(|i| {
            let r = vectors.row(i);
            crate::kernels::dot(r, r)
        })
        .collect()
}

/// Links nodes `0..n` of `links` (levels already drawn) over `vectors` with `threads` threads in
/// `space`, setting `entry`.
#[allow(clippy::too_many_arguments)]
pub(super) fn build(
    vectors: &ItemVectors,
    links: &Links,
    n: usize,
    ef_construction: usize,
    threads: usize,
    space: super::BuildSpace,
    locks: &[Mutex<()>],
    entry: &Entry,
) {
    if n == 0 {
        return;
    }
    let norms = build_norms(vectors, n, space);
    let builder = Builder {
        view: View {
            vectors,
            links,
            norms: &norms,
            l2: space == super::BuildSpace::L2,
            prune_l2: space == super::BuildSpace::InnerProductL2Prune,
            codes: None,
        },
        locks,
        entry,
        ef_construction,
    };
    // Node 0 is the first entry point; the others are inserted in small chunks, roughly in order.
    entry.start(0, links.levels[0] as usize);
    link_nodes(&builder, 1..n, threads.max(1));
    link_orphans(links, n);
}

/// Gives every layer-0 node without an incoming link one from its nearest out-neighbour, when that
/// neighbour's list has room.
///
/// Under −⟨·,·⟩ pruning favours large-norm nodes (they are "close" to everything), so a node of
/// middling norm can lose all its incoming links. Replacing a link to make room was measured worse
/// (recall@10 0.993 → 0.949 at ef 64 on 20k × 32), so only free slots are used.
fn link_orphans(links: &Links, n: usize) {
    let mut indegree = vec![0u32; n];
    for node in 0..n as u32 {
        links.for_each(node, 0, |nb| indegree[nb as usize] += 1);
    }
    let mut ids: Vec<u32> = Vec::with_capacity(links.m0);
    for node in 0..n as u32 {
        if indegree[node as usize] > 0 {
            continue;
        }
        let mut outs: Vec<u32> = Vec::new();
        links.for_each(node, 0, |nb| outs.push(nb));
        for &nb in &outs {
            ids.clear();
            links.for_each(nb, 0, |x| ids.push(x));
            if ids.len() < links.m0 {
                ids.push(node);
            } else {
                continue;
            }
            links.set(nb, 0, &ids);
            indegree[node as usize] += 1;
            break;
        }
    }
}

/// How many of the nodes a missed item's search ended on are candidates to link it from.
const FROM: usize = 8;

/// Items that a search for their own vector misses although exact search would rank them in its
/// top 10, each with the [`FROM`] best nodes the search ended on: the places to link them
/// from. The search is the one serving runs (over `codes` when given, then an
/// exact re-score); read-only.
fn find_missed<K: Kernel>(
    view: &View<'_>,
    codes: Option<&Codes>,
    entry: (u32, usize),
    ef: usize,
    range: (usize, usize),
    s: &mut Scratch,
) -> Vec<(u32, [u32; FROM])> {
    let mut missed = Vec::new();
    let n = view.links.capacity();
    let mut found: Vec<(f32, u32)> = Vec::with_capacity(ef);
    let mut prepared = Vec::new();
    // Exact distances, for the final order and the item's own score.
    let exact = View {
        codes: None,
        ..*view
    };
    for i in range.0..range.1 {
        let i = i as u32;
        let q = view.row(i);
        let walk = View {
            codes: codes.map(|c| (c, c.prepare(q, &mut prepared))),
            ..*view
        };
        s.begin(n);
        let start = (walk.dist::<K>(q, 0.0, entry.0), entry.0);
        let ep = walk.descend::<K>(q, 0.0, start, entry.1, 0);
        // Unlimited walks never give up.
        let _ = walk.search_layer::<K>(q, 0.0, ep, ef, 0, s, false, None, |_| true);
        found.clear();
        while let Some(Far(_, id)) = s.results.pop() {
            found.push((exact.dist::<K>(q, 0.0, id), id));
        }
        found.sort_unstable_by(by_distance);
        if found.is_empty() || found.iter().take(10).any(|&(_, id)| id == i) {
            continue;
        }
        let own = exact.dist::<K>(q, 0.0, i);
        let tenth = found.get(9).map_or(f32::INFINITY, |&(d, _)| d);
        if own <= tenth {
            let pick = |j: usize| found.get(j).map_or(found[0].1, |&(_, id)| id);
            missed.push((i, std::array::from_fn(pick)));
        }
    }
    missed
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn find_missed_avx2(
    view: &View<'_>,
    codes: Option<&Codes>,
    entry: (u32, usize),
    ef: usize,
    range: (usize, usize),
    s: &mut Scratch,
) -> Vec<(u32, [u32; FROM])> {
    find_missed::<super::kernel::Avx2>(view, codes, entry, ef, range, s)
}

/// Makes items reachable for their own vector (self-recall): under −⟨·,·⟩ the heuristic prunes
/// links towards middling-norm items in favour of larger ones in the same direction, so a search
/// for such an item's vector ends among its larger neighbours without ever stepping onto it,
/// although exact search ranks it in the top 10 (module documentation). Each missed item gets a
/// layer-0 link from the best of the nodes that search ended on with a free slot, else it takes
/// the place of one of the last-kept links of the best one that has not given up a quarter of its
/// list already. Checks the items `items` (all nodes after a build, the new ones after a live
/// insert); writes lists without the node locks, so no insertion may run meanwhile (searches may).
/// Returns how many links were added.
pub(super) fn link_missed(
    view: &View<'_>,
    codes: Option<&Codes>,
    entry: (u32, usize),
    ef: usize,
    items: Range<usize>,
    threads: usize,
) -> usize {
    let links = view.links;
    if items.end < 2 || items.is_empty() {
        return 0;
    }
    let threads = threads.clamp(1, items.len());
    let per = items.len().div_ceil(threads);
    let base = items.start;
    let end = items.end;
    let find = move |range: (usize, usize)| {
        with_scratch(|s| {
            #[cfg(target_arch = "x86_64")]
            if crate::kernels::has_avx2() {
                // SAFETY: the CPU supports AVX2 and FMA, checked just above.
                return unsafe { find_missed_avx2(view, codes, entry, ef, range, s) };
            }
            find_missed::<Portable>(view, codes, entry, ef, range, s)
        })
    };
    // A live insert of one node checks it inline rather than on a spawned thread.
    let missed: Vec<(u32, [u32; FROM])> = if threads == 1 {
        find((base, end))
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    scope.spawn(move || find((base + t * per, (base + (t + 1) * per).min(end))))
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        })
    };
    let mut ids: Vec<u32> = Vec::with_capacity(links.m0);
    let mut added = 0;
    // Repair links sit at the tail of a list and are counted in `links.pinned`, so a hub that many
    // missed items end on gives up different slots (at most a quarter of its list) instead of
    // overwriting the last one again, and later insertions' pruning keeps them (`link_back`).
    for (item, from) in missed {
        let free = from
            .iter()
            .copied()
            .find(|&r| r != item && (links.count(r, 0) < links.m0 || links.contains(r, 0, item)));
        let target = free.or_else(|| {
            from.iter()
                .copied()
                .find(|&r| r != item && links.pinned(r) < links.m0 / 4)
        });
        let Some(r) = target else { continue };
        ids.clear();
        links.for_each(r, 0, |x| ids.push(x));
        if ids.contains(&item) {
            continue;
        }
        if ids.len() < links.m0 {
            ids.push(item);
            links.set_pinned(r, links.pinned(r) + 1);
        } else {
            let k = links.pinned(r).min(ids.len() - 1);
            let slot = ids.len() - 1 - k;
            ids[slot] = item;
            links.set_pinned(r, k + 1);
        }
        links.set(r, 0, &ids);
        added += 1;
    }
    added
}
