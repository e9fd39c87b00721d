#!/usr/bin/env python3
"""hnswlib anchor for `fmrecall bench-live` (run by src/recall/bench_live.rs as a subprocess).

Reads one little-endian binary file:
  u32 n, built, n_queries, dim, build_threads, insert_threads, query_threads, m, ef_construction,
      ef, batch, n_efs; u32 efs[n_efs];
  f32 vectors[n * dim]; f32 queries[n_queries * dim]; u32 truth[n_queries * 10]
(truth = the exact inner-product top 10 over all n, from the Rust side). Builds
hnswlib.Index(space='ip') on the first `built` rows with max_elements = n, measures query
throughput of `query_threads` Python threads alone (knn_query of one query at a time, one thread
each; hnswlib releases the GIL inside), then add_items of the remaining rows in batches of `batch`
with num_threads = insert_threads while those query threads keep running, then recall@10 at each
ef. Prints one JSON row in bench-live's shape.
"""
import json
import sys
import threading
import time

import hnswlib
import numpy as np

ALONE_SECONDS = 4.0
PASSES = 3


def query_load(index, queries, threads, stop, seconds=None):
    counts = [0] * threads
    started = time.perf_counter()

    def worker(t):
        i = t * 7919
        nq = len(queries)
        while not stop.is_set():
            if seconds is not None and time.perf_counter() - started >= seconds:
                break
            index.knn_query(queries[i % nq : i % nq + 1], k=10, num_threads=1)
            counts[t] += 1
            i += 1

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    return pool, counts, started


def main(path):
    raw = open(path, "rb").read()
    head = np.frombuffer(raw, dtype="<u4", count=12)
    n, built, nq, dim, build_threads, insert_threads, query_threads, m, efc, ef, batch, n_efs = (
        int(x) for x in head
    )
    at = 12 * 4
    efs = [int(x) for x in np.frombuffer(raw, dtype="<u4", count=n_efs, offset=at)]
    at += 4 * n_efs
    vectors = np.frombuffer(raw, dtype="<f4", count=n * dim, offset=at).reshape(n, dim)
    at += 4 * n * dim
    queries = np.frombuffer(raw, dtype="<f4", count=nq * dim, offset=at).reshape(nq, dim)
    at += 4 * nq * dim
    truth = np.frombuffer(raw, dtype="<u4", count=nq * 10, offset=at).reshape(nq, 10)

    started = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=dim)
    index.init_index(max_elements=n, ef_construction=efc, M=m, random_seed=100)
    index.add_items(vectors[:built], np.arange(built), num_threads=build_threads)
    build_seconds = time.perf_counter() - started
    index.set_ef(ef)

    qps_alone = 0.0
    for _ in range(PASSES):
        stop = threading.Event()
        pool, counts, t0 = query_load(index, queries, query_threads, stop, ALONE_SECONDS)
        for th in pool:
            th.join()
        qps_alone = max(qps_alone, sum(counts) / (time.perf_counter() - t0))

    stop = threading.Event()
    pool, counts, t0 = query_load(index, queries, query_threads, stop)
    started = time.perf_counter()
    for s in range(built, n, batch):
        e = min(s + batch, n)
        index.add_items(vectors[s:e], np.arange(s, e), num_threads=insert_threads)
    insert_seconds = time.perf_counter() - started
    stop.set()
    for th in pool:
        th.join()
    qps_during = sum(counts) / (time.perf_counter() - t0)

    recall = []
    for e in efs:
        index.set_ef(max(e, 10))
        labels, _ = index.knn_query(queries, k=10, num_threads=1)
        hits = sum(len(set(labels[i].tolist()) & set(truth[i].tolist())) for i in range(nq))
        recall.append(hits / (10 * max(nq, 1)))
    print(json.dumps({
        "index": "hnswlib 0.8 add_items (C++)",
        "build_seconds": build_seconds,
        "inserts_per_second": (n - built) / max(insert_seconds, 1e-9),
        "qps_alone": qps_alone,
        "qps_during": qps_during,
        "recall_after": recall,
        "recall_fresh": [],
        "efs": efs,
    }), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
