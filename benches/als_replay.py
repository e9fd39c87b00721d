"""implicit's ALS on the replay protocol of `fmrecall eval --split time:Q --replay` (issue 22).

Train on the MovieLens 100K ratings before the Q quantile T of the timestamps (every rating an
interaction, weight 1), then replay each user's ratings from T on in time order: before each one,
the user's post-T ratings so far are known; the next item is the target; hit rate@10 and NDCG@10
over the whole catalog with the user's current items (train and post-T so far) excluded.

- static: the user's factors as trained (users with no train rating have zero factors);
- recalculate: `recommend(..., recalculate_user=True)` on the current items (ALS's fold-in).

Usage: python benches/als_replay.py ../shared/data/ml-100k [--quantile 0.8] [--factors 64]
       [--iterations 15] [--regularization 0.05] [--seed 42]
Needs `pip install implicit numpy scipy` (e.g. in a venv under /tmp).
"""

import argparse
import math
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import scipy.sparse as sp
from implicit.als import AlternatingLeastSquares


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data")
    p.add_argument("--quantile", type=float, default=0.8)
    p.add_argument("--factors", type=int, default=64)
    p.add_argument("--iterations", type=int, default=15)
    p.add_argument("--regularization", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--k", type=int, default=10)
    a = p.parse_args()

    rows = []
    with open(os.path.join(a.data, "u.data")) as f:
        for order, line in enumerate(f):
            u, i, _r, ts = line.split("\t")
            rows.append((int(ts), order, int(u) - 1, int(i) - 1))
    n_users = max(r[2] for r in rows) + 1
    n_items = max(r[3] for r in rows) + 1
    times = sorted(r[0] for r in rows)
    t = times[min(int(math.floor(len(times) * a.quantile)), len(times) - 1)]
    train = [r for r in rows if r[0] < t]
    test = sorted(r for r in rows if r[0] >= t)

    def matrix(pairs):
        users = np.array([u for u, _ in pairs], dtype=np.int32)
        items = np.array([i for _, i in pairs], dtype=np.int32)
        m = sp.csr_matrix(
            (np.ones(len(pairs), dtype=np.float32), (users, items)), shape=(n_users, n_items)
        )
        m.data[:] = 1.0
        return m

    train_pairs = [(u, i) for _, _, u, i in train]
    user_items = matrix(train_pairs)
    model = AlternatingLeastSquares(
        factors=a.factors,
        iterations=a.iterations,
        regularization=a.regularization,
        random_state=a.seed,
    )
    started = time.time()
    model.fit(user_items, show_progress=False)
    fit_seconds = time.time() - started

    current = {u: set() for u in range(n_users)}
    for u, i in train_pairs:
        current[u].add(i)
    sums = {"static": [0.0, 0.0], "recalculate": [0.0, 0.0]}
    started = time.time()
    for _, _, u, target in test:
        items = sorted(current[u])
        row = sp.csr_matrix(
            (np.ones(len(items), dtype=np.float32), (np.zeros(len(items), dtype=np.int32), items)),
            shape=(1, n_items),
        )
        for name, recalc in (("static", False), ("recalculate", True)):
            ids, _ = model.recommend(
                u,
                row,
                N=a.k,
                filter_already_liked_items=True,
                recalculate_user=recalc,
            )
            ids = list(ids)
            if target in ids:
                rank = ids.index(target)
                sums[name][0] += 1.0
                sums[name][1] += 1.0 / math.log2(rank + 2)
        current[u].add(target)
    replay_seconds = time.time() - started

    pop = np.asarray(user_items.sum(axis=0)).ravel()
    pop_hits = [0.0, 0.0]
    current = {u: set() for u in range(n_users)}
    for u, i in train_pairs:
        current[u].add(i)
    order = np.argsort(-pop, kind="stable")
    for _, _, u, target in test:
        top = []
        for i in order:
            if i not in current[u]:
                top.append(int(i))
                if len(top) == a.k:
                    break
        if target in top:
            pop_hits[0] += 1.0
            pop_hits[1] += 1.0 / math.log2(top.index(target) + 2)
        current[u].add(target)

    n = len(test)
    import implicit

    print(
        f"implicit {implicit.__version__}, T = {t} (quantile {a.quantile}), {len(train)} train "
        f"ratings, {n} replayed; ALS factors {a.factors}, iterations {a.iterations}, "
        f"regularization {a.regularization}; fit {fit_seconds:.1f} s, replay {replay_seconds:.1f} s"
    )
    print(f"{'ranking':<34} {'HR@' + str(a.k):>9} {'NDCG@' + str(a.k):>9}")
    print(f"{'popularity at T, events excluded':<34} {pop_hits[0] / n:>9.4f} {pop_hits[1] / n:>9.4f}")
    for name, label in (("static", "ALS static"), ("recalculate", "ALS recalculate_user=True")):
        h, d = sums[name]
        print(f"{label:<34} {h / n:>9.4f} {d / n:>9.4f}")


if __name__ == "__main__":
    sys.exit(main())
