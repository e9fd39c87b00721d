#!/usr/bin/env python3
"""LightFM 1.17 on a large rating log split into two files, under fmrecall's protocol.

What it does
------------
``split``: reads ``interactions.csv`` (``user_id,item_id,rating,timestamp``, as
``fmrecall generate`` writes it), holds out a seeded random ``--test-fraction``
of the rows and writes ``DIR/train/interactions.csv`` and ``DIR/test.csv``, so
that fmrecall (``--data DIR/train --split file:DIR/test.csv``) and LightFM
train and evaluate on the very same split. With ``--parquet`` it also writes
``DIR/train-parquet/interactions.parquet`` and ``DIR/test.parquet`` (pyarrow,
snappy, the pandas default).

``train``: trains LightFM (WARP, identity features only) on the train
positives (rating >= 4) and reports the wall time of each ``fit_partial``
epoch and precision@k on a seeded sample of test users, excluding each user's
train items at any rating (fmrecall's ``src/fm/eval.rs`` protocol; ids indexed
in order of first appearance in train, then test, as fmrecall does).

Run from the repository root with a LightFM 1.17 virtualenv that also has
pyarrow (see benches/lightfm_baseline.py for the install)::

    fmrecall generate --out /tmp/ml25m
    python benches/lightfm_scale.py split /tmp/ml25m --parquet
    python benches/lightfm_scale.py train /tmp/ml25m --epochs 5 --threads 2 --json
"""

import argparse
import json
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq


def split(args):
    table = pacsv.read_csv(f"{args.dir}/interactions.csv")
    rng = np.random.default_rng(args.seed)
    test = rng.random(table.num_rows) < args.test_fraction
    import os

    os.makedirs(f"{args.dir}/train", exist_ok=True)
    train_t = table.filter(pa.array(~test))
    test_t = table.filter(pa.array(test))
    pacsv.write_csv(train_t, f"{args.dir}/train/interactions.csv")
    pacsv.write_csv(test_t, f"{args.dir}/test.csv")
    if args.parquet:
        os.makedirs(f"{args.dir}/train-parquet", exist_ok=True)
        pq.write_table(train_t, f"{args.dir}/train-parquet/interactions.parquet")
        pq.write_table(test_t, f"{args.dir}/test.parquet")
    print(json.dumps({"train_rows": train_t.num_rows, "test_rows": test_t.num_rows}))


def index(train_ids, test_ids):
    """Dense indices in order of first appearance in train, then test."""
    both = np.concatenate([train_ids, test_ids])
    uniq, first = np.unique(both, return_index=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[order] = np.arange(len(uniq))
    pos = np.searchsorted(uniq, both)
    dense = rank[pos]
    return dense[: len(train_ids)], dense[len(train_ids):], len(uniq)


def train(args):
    import scipy.sparse as sp
    from lightfm import LightFM

    tr = pacsv.read_csv(f"{args.dir}/train/interactions.csv")
    te = pacsv.read_csv(f"{args.dir}/test.csv")
    col = lambda t, n: t.column(n).to_numpy()
    tu, eu, n_users = index(col(tr, "user_id"), col(te, "user_id"))
    ti, ei, n_items = index(col(tr, "item_id"), col(te, "item_id"))
    tr_pos = col(tr, "rating") >= args.min_rating
    te_pos = col(te, "rating") >= args.min_rating
    shape = (n_users, n_items)
    train_pos = sp.coo_matrix(
        (np.ones(tr_pos.sum(), np.float32), (tu[tr_pos], ti[tr_pos])), shape=shape
    ).tocsr()
    train_pos.data[:] = 1.0
    train_all = sp.coo_matrix(
        (np.ones(len(tu), np.float32), (tu, ti)), shape=shape
    ).tocsr()
    test_pos = sp.coo_matrix(
        (np.ones(te_pos.sum(), np.float32), (eu[te_pos], ei[te_pos])), shape=shape
    ).tocsr()
    test_pos.data[:] = 1.0
    # Test positives that were train items are not test positives.
    test_pos = test_pos - test_pos.multiply(train_all.astype(bool))
    test_pos.eliminate_zeros()
    train_pos = train_pos.tocoo()

    model = LightFM(
        no_components=args.dim,
        loss="warp",
        learning_rate=args.learning_rate,
        max_sampled=args.max_sampled,
        random_state=args.seed,
    )
    epochs = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        model.fit_partial(train_pos, epochs=1, num_threads=args.threads)
        epochs.append(time.perf_counter() - start)

    users = np.flatnonzero(np.diff(test_pos.indptr) > 0)
    rng = np.random.default_rng(args.seed)
    if args.eval_users and args.eval_users < len(users):
        users = np.sort(rng.choice(users, args.eval_users, replace=False))
    items = np.arange(n_items, dtype=np.int32)
    precisions = []
    start = time.perf_counter()
    for u in users:
        scores = model.predict(int(u), items, num_threads=args.threads)
        seen = train_all.indices[train_all.indptr[u]:train_all.indptr[u + 1]]
        scores[seen] = -np.inf
        top = np.argpartition(-scores, args.k)[: args.k]
        positives = test_pos.indices[test_pos.indptr[u]:test_pos.indptr[u + 1]]
        precisions.append(np.isin(top, positives).sum() / args.k)
    eval_seconds = time.perf_counter() - start
    out = {
        "train_seconds": sum(epochs),
        "epoch_seconds": epochs,
        f"precision@{args.k}": float(np.mean(precisions)),
        "users": int(len(users)),
        "eval_seconds": eval_seconds,
        "n_users": n_users,
        "n_items": n_items,
        "train_positives": int(train_pos.nnz),
    }
    print(json.dumps(out) if args.json else out)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("split")
    s.add_argument("dir")
    s.add_argument("--test-fraction", type=float, default=0.2)
    s.add_argument("--seed", type=int, default=42)
    s.add_argument("--parquet", action="store_true")
    t = sub.add_parser("train")
    t.add_argument("dir")
    t.add_argument("--epochs", type=int, default=5)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--dim", type=int, default=64)
    t.add_argument("--learning-rate", type=float, default=0.05)
    t.add_argument("--max-sampled", type=int, default=10)
    t.add_argument("--min-rating", type=float, default=4.0)
    t.add_argument("--eval-users", type=int, default=10000)
    t.add_argument("--k", type=int, default=10)
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--json", action="store_true")
    args = p.parse_args()
    split(args) if args.command == "split" else train(args)


if __name__ == "__main__":
    sys.exit(main())
