//! Parallel graph construction (Malkov & Yashunin 2018, Alg. 1) on all cores with
//! `std::thread::scope`: threads take nodes from a shared counter and insert them concurrently.
//! Each node has a lock held only while its own lists are rewritten; readers never lock (the lists
//! are atomics, see `links.rs`). The entry point is guarded by one mutex, held for a whole
//! insertion only by the rare node that becomes the new top (as hnswlib does), so every insertion
//! starts from a complete upper hierarchy.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::codes::Codes;
use super::kernel::{Kernel, Portable};
use super::links::Links;
use super::order::Far;
use super::search::{with_scratch, Scratch, View};

/// Buffers an inserting thread reuses across insertions.
#[derive(Default)]
struct Bufs {
    found: Vec<(f32, u32)>,
    selected: Vec<(f32, u32)>,
    cands: Vec<(f32, u32)>,
    pruned: Vec<(f32, u32)>,
    ids: Vec<u32>,
}

struct Builder<'a> {
    view: View<'a>,
    locks: Vec<Mutex<()>>,
    /// (entry node, top level).
    entry: Mutex<(u32, usize)>,
    ef_construction: usize,
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
    #[inline(always)]
    fn insert<K: Kernel>(&self, q: u32, s: &mut Scratch, b: &mut Bufs) {
        let links = self.view.links;
        let n = links.len();
        let level = links.levels[q as usize] as usize;
        let guard = lock(&self.entry);
        let (ep, top) = *guard;
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
        for lc in (0..=level.min(top)).rev() {
            s.begin(n);
            self.view
                .search_layer::<K>(qv, qn, cur, self.ef_construction, lc, s, false, |_| true);
            b.found.clear();
            b.found.extend(
                s.results
                    .drain()
                    .map(|Far(d, id)| (d, id))
                    .filter(|&(_, id)| id != q),
            );
            b.found.sort_unstable_by(by_distance);
            // M links for the new node on every layer, as in the paper (Mmax0 = 2M only caps others).
            self.view.select::<K>(q, &b.found, links.m, &mut b.selected);
            b.ids.clear();
            b.ids.extend(b.selected.iter().map(|&(_, id)| id));
            {
                let _own = lock(&self.locks[q as usize]);
                links.set(q, lc, &b.ids);
            }
            for i in 0..b.selected.len() {
                let (d, nb) = b.selected[i];
                self.link_back::<K>(nb, q, d, lc, b);
            }
            if let Some(&first) = b.found.first() {
                cur = first;
            }
        }
        if let Some(mut g) = hold {
            *g = (q, level);
        }
    }

    /// Adds `q` to `nb`'s list on `level`, pruning with the heuristic when the list is full.
    #[inline(always)]
    fn link_back<K: Kernel>(&self, nb: u32, q: u32, d: f32, level: usize, b: &mut Bufs) {
        let links = self.view.links;
        let _guard = lock(&self.locks[nb as usize]);
        b.ids.clear();
        links.for_each(nb, level, |x| b.ids.push(x));
        if b.ids.contains(&q) {
            return;
        }
        if b.ids.len() < links.cap(level) {
            b.ids.push(q);
        } else {
            b.cands.clear();
            b.cands.push((d, q));
            for &x in &b.ids {
                b.cands.push((self.view.pair::<K>(nb, x), x));
            }
            b.cands.sort_unstable_by(by_distance);
            self.view
                .select::<K>(nb, &b.cands, links.cap(level), &mut b.pruned);
            b.ids.clear();
            b.ids.extend(b.pruned.iter().map(|&(_, id)| id));
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

/// Links every node of `links` (whose levels are already drawn) over the vectors `data` with
/// `threads` threads, in `space`; returns the entry point and the top level.
pub(super) fn build(
    data: &[f32],
    dim: usize,
    links: &Links,
    ef_construction: usize,
    threads: usize,
    space: super::BuildSpace,
) -> (u32, usize) {
    let l2 = space == super::BuildSpace::L2;
    let prune_l2 = space == super::BuildSpace::InnerProductL2Prune;
    let n = links.len();
    if n == 0 {
        return (0, 0);
    }
    let norms: Vec<f32> = if l2 || prune_l2 {
        data.chunks_exact(dim)
            .map(|r| crate::kernels::dot(r, r))
            .collect()
    } else {
        Vec::new()
    };
    let builder = Builder {
        view: View {
            data,
            dim,
            links,
            norms: &norms,
            l2,
            prune_l2,
            codes: None,
        },
        locks: (0..n).map(|_| Mutex::new(())).collect(),
        entry: Mutex::new((0, links.levels[0] as usize)),
        ef_construction,
    };
    // Node 0 is the first entry point; the others are inserted in small chunks, roughly in order.
    const CHUNK: usize = 32;
    let next = AtomicUsize::new(1);
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                let mut bufs = Bufs::default();
                with_scratch(|s| loop {
                    let start = next.fetch_add(CHUNK, Ordering::Relaxed);
                    if start >= n {
                        break;
                    }
                    for q in start..(start + CHUNK).min(n) {
                        insert_dispatch(&builder, q as u32, s, &mut bufs);
                    }
                });
            });
        }
    });
    let entry = *lock(&builder.entry);
    link_orphans(links);
    entry
}

/// Gives every layer-0 node without an incoming link one from its nearest out-neighbour, when that
/// neighbour's list has room.
///
/// Under −⟨·,·⟩ pruning favours large-norm nodes (they are "close" to everything), so a node of
/// middling norm can lose all its incoming links. Replacing a link to make room was measured worse
/// (recall@10 0.993 → 0.949 at ef 64 on 20k × 32), so only free slots are used.
fn link_orphans(links: &Links) {
    let n = links.len();
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
    let n = view.links.len();
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
        walk.search_layer::<K>(q, 0.0, ep, ef, 0, s, false, |_| true);
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
/// list already. Returns how many links were added.
pub(super) fn link_missed(
    view: &View<'_>,
    codes: Option<&Codes>,
    entry: (u32, usize),
    ef: usize,
    threads: usize,
) -> usize {
    let links = view.links;
    let n = links.len();
    if n < 2 {
        return 0;
    }
    let threads = threads.max(1);
    let per = n.div_ceil(threads);
    let missed: Vec<(u32, [u32; FROM])> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let range = (t * per, ((t + 1) * per).min(n));
                    with_scratch(|s| {
                        #[cfg(target_arch = "x86_64")]
                        if crate::kernels::has_avx2() {
                            // SAFETY: the CPU supports AVX2 and FMA, checked just above.
                            return unsafe { find_missed_avx2(view, codes, entry, ef, range, s) };
                        }
                        find_missed::<Portable>(view, codes, entry, ef, range, s)
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut ids: Vec<u32> = Vec::with_capacity(links.m0);
    let mut added = 0;
    // Links each node has given up to repairs, so a hub that many missed items end on gives up
    // different slots (at most a quarter of its list) instead of overwriting the last one again.
    let mut given_up: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    for (item, from) in missed {
        let free = from
            .iter()
            .copied()
            .find(|&r| r != item && (links.count(r, 0) < links.m0 || links.contains(r, 0, item)));
        let target = free.or_else(|| {
            from.iter()
                .copied()
                .find(|&r| r != item && given_up.get(&r).copied().unwrap_or(0) < links.m0 / 4)
        });
        let Some(r) = target else { continue };
        ids.clear();
        links.for_each(r, 0, |x| ids.push(x));
        if ids.contains(&item) {
            continue;
        }
        if ids.len() < links.m0 {
            ids.push(item);
        } else {
            let k = given_up.entry(r).or_insert(0);
            let slot = ids.len() - 1 - *k;
            ids[slot] = item;
            *k += 1;
        }
        links.set(r, 0, &ids);
        added += 1;
    }
    added
}
