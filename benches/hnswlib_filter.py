#!/usr/bin/env python3
"""hnswlib 0.8 with its `filter=` callable, for `fmrecall bench-filter` (run as a subprocess).

Reads one little-endian binary file written by src/recall/bench_filter.rs:
  u32 n, n_queries, dim, threads, m, ef_construction, k, n_efs, n_rows, target (x 10,000);
  u32 efs[n_efs]; f32 vectors[n * dim]; f32 queries[n_queries * dim];
  then per row: u32 row_queries, shared; u32 query_ids[row_queries];
  u32 truth[row_queries * k] (the exact filtered top k, u32::MAX where fewer);
  the allowed items as bitmaps of n bits (LSB first): one if shared, else one per query.
Builds hnswlib.Index(space='ip') with the same M, ef_construction and threads, then for each row
tries the breadths from the smallest, one query per call on one thread with
`filter=lambda label: allowed[label]`, until recall@k reaches the target; prints one JSON object
per row: the ef chosen (the first reaching the target, else the best recall), its recall and q/s
(the fastest of PASSES passes, as the Rust side measures).
"""
import json
import sys
import time

import hnswlib
import numpy as np

PASSES = 3
# A breadth whose pass takes longer than this is measured once; the sweep stops after it.
SLOW_PASS_SECONDS = 20.0


def main(path):
    raw = open(path, "rb").read()
    head = np.frombuffer(raw, dtype="<u4", count=10)
    n, nq, dim, threads, m, efc, k, n_efs, n_rows, target = (int(x) for x in head)
    target /= 10_000
    at = 10 * 4
    efs = sorted(int(x) for x in np.frombuffer(raw, dtype="<u4", count=n_efs, offset=at))
    at += 4 * n_efs
    vectors = np.frombuffer(raw, dtype="<f4", count=n * dim, offset=at).reshape(n, dim)
    at += 4 * n * dim
    queries = np.frombuffer(raw, dtype="<f4", count=nq * dim, offset=at).reshape(nq, dim)
    at += 4 * nq * dim

    index = hnswlib.Index(space="ip", dim=dim)
    index.init_index(max_elements=n, ef_construction=efc, M=m, random_seed=100)
    index.add_items(vectors, np.arange(n), num_threads=threads)
    index.set_num_threads(1)

    nbytes = (n + 7) // 8
    for _ in range(n_rows):
        rq, shared = (int(x) for x in np.frombuffer(raw, dtype="<u4", count=2, offset=at))
        at += 8
        ids = np.frombuffer(raw, dtype="<u4", count=rq, offset=at)
        at += 4 * rq
        truth = np.frombuffer(raw, dtype="<u4", count=rq * k, offset=at).reshape(rq, k)
        at += 4 * rq * k
        count = 1 if shared else rq
        bits = np.frombuffer(raw, dtype=np.uint8, count=count * nbytes, offset=at)
        at += count * nbytes
        masks = np.unpackbits(bits.reshape(count, nbytes), axis=1, bitorder="little")[:, :n]
        # Python lists: indexing one is several times faster than a NumPy array from Python.
        allowed = [mask.astype(bool).tolist() for mask in masks]
        callables = [(lambda label, a=a: a[label]) for a in allowed]
        chosen = None
        for ef in efs:
            index.set_ef(max(ef, k))
            seconds = float("inf")
            for _ in range(PASSES):
                hits = expected = 0
                started = time.perf_counter()
                for j in range(rq):
                    want = [t for t in truth[j].tolist() if t != 0xFFFFFFFF]
                    got = []
                    if want:
                        # hnswlib raises when fewer than k allowed items are found.
                        try:
                            labels, _ = index.knn_query(
                                queries[ids[j]], k=len(want), num_threads=1,
                                filter=callables[0 if shared else j])
                            got = labels[0].tolist()
                        except RuntimeError:
                            got = []
                    hits += len(set(got) & set(want))
                    expected += len(want)
                seconds = min(seconds, max(time.perf_counter() - started, 1e-9))
                if seconds > SLOW_PASS_SECONDS:
                    break
            row = {"ef": ef, "recall": hits / max(expected, 1), "qps": rq / seconds}
            if chosen is None or row["recall"] > chosen["recall"]:
                chosen = row
            if row["recall"] >= target:
                chosen = row
                break
            if seconds > SLOW_PASS_SECONDS:
                break
        print(json.dumps(chosen), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
