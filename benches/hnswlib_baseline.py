#!/usr/bin/env python3
"""hnswlib baseline for `fmrecall bench-index` (run by the Rust bench as a subprocess).

Reads one little-endian binary file written by src/recall/bench.rs:
  u32 n, n_queries, dim, threads, m, ef_construction, k, n_efs; u32 efs[n_efs];
  f32 vectors[n * dim]; f32 queries[n_queries * dim]; u32 truth[n_queries * k]
(truth = the exact inner-product top-k computed by the Rust side). Builds
hnswlib.Index(space='ip') with the same M, ef_construction and threads, and prints
one JSON object per ef on stdout: index, ef, build_seconds, recall (at k), qps, memory_mib,
after one row for NumPy brute force (`vectors @ q` + argpartition, one query at a time, one thread).
qps is measured on one thread with the whole batch handed to hnswlib in one call (its C++
loop, no Python overhead per query: the baseline at its best).
"""
import json
import sys
import time

import hnswlib
import numpy as np


PASSES = 3


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def main(path):
    raw = open(path, "rb").read()
    head = np.frombuffer(raw, dtype="<u4", count=8)
    n, nq, dim, threads, m, efc, k, n_efs = (int(x) for x in head)
    at = 8 * 4
    efs = [int(x) for x in np.frombuffer(raw, dtype="<u4", count=n_efs, offset=at)]
    at += 4 * n_efs
    vectors = np.frombuffer(raw, dtype="<f4", count=n * dim, offset=at).reshape(n, dim)
    at += 4 * n * dim
    queries = np.frombuffer(raw, dtype="<f4", count=nq * dim, offset=at).reshape(nq, dim)
    at += 4 * nq * dim
    truth = np.frombuffer(raw, dtype="<u4", count=nq * k, offset=at).reshape(nq, k)

    # NumPy brute force, one query at a time on one thread (the bench sets OPENBLAS_NUM_THREADS=1):
    # the baseline of issue 3's "exact search at least as fast per query as NumPy's".
    # Every row is the fastest of PASSES passes, as in the Rust bench (src/recall/bench.rs).
    seconds = float("inf")
    for _ in range(PASSES):
        started = time.perf_counter()
        hits = 0
        for i in range(nq):
            scores = vectors @ queries[i]
            top = np.argpartition(scores, -k)[-k:]
            top = top[np.argsort(-scores[top])]
            hits += len(set(top.tolist()) & set(truth[i].tolist()))
        seconds = min(seconds, max(time.perf_counter() - started, 1e-9))
        if seconds > 5.0:
            break
    print(json.dumps({
        "index": "NumPy brute force (one query at a time)",
        "ef": None,
        "build_seconds": 0.0,
        "recall": hits / (k * max(nq, 1)),
        "qps": nq / seconds,
        "memory_mib": 0.0,
    }), flush=True)

    before = rss_bytes()
    started = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=dim)
    index.init_index(max_elements=n, ef_construction=efc, M=m, random_seed=100)
    index.add_items(vectors, np.arange(n), num_threads=threads)
    build_seconds = time.perf_counter() - started
    memory_mib = (rss_bytes() - before) / (1024 * 1024)

    index.set_num_threads(1)
    for ef in efs:
        index.set_ef(max(ef, k))
        seconds = float("inf")
        for _ in range(PASSES):
            started = time.perf_counter()
            labels, _ = index.knn_query(queries, k=k, num_threads=1)
            seconds = min(seconds, max(time.perf_counter() - started, 1e-9))
            if seconds > 5.0:
                break
        hits = sum(len(set(labels[i].tolist()) & set(truth[i].tolist())) for i in range(nq))
        print(json.dumps({
            "index": "hnswlib 0.8 (C++)",
            "ef": ef,
            "build_seconds": build_seconds,
            "recall": hits / (k * max(nq, 1)),
            "qps": nq / seconds,
            "memory_mib": memory_mib,
        }), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
