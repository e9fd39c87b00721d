#!/usr/bin/env python3
"""LightFM baseline on MovieLens 100K, under fmrecall's evaluation protocol.

What it measures
----------------
Trains LightFM (WARP or BPR, 64 factors by default) on the train part of a
canonical MovieLens 100K split (``--split ua``: ua.base / ua.test) and prints
precision@k, recall@k, NDCG@k and AUC on the test part, plus the wall time of
the ``fit`` call alone (``train_seconds``). With ``--popularity`` it prints the
same figures for the popularity ranking instead (items scored by their number
of train positives) and trains nothing.

Protocol (the same as fmrecall's ``src/fm/eval.rs``):

* positives are ratings >= ``--min-rating`` (default 4);
* the train interactions matrix is the train positives (binary);
* the test matrix is the test positives that are not among the user's train
  items (train items at any rating);
* every item the user rated in train, at any rating, is removed from that
  user's ranking: LightFM's ``precision_at_k``, ``recall_at_k`` and
  ``auc_score`` get ``train_interactions`` = all train ratings (binary);
* figures are averaged over users with at least one test positive;
* NDCG@k is computed here from ``model.predict`` scores with the same
  exclusion: binary relevance, log2 discount, ideal DCG over
  min(#test positives, k); ties in the top-k are broken by item index.

Users are those of the split's ratings and items the whole u.item catalog,
rated or not, indexed in fmrecall's order (first appearance in the train file,
then the test file, then unrated catalog items by id), so that score ties in
the top-k are broken the same way. ``--features hybrid`` adds side features to
the identity features: users get an age bucket (under-18, 18-24, 25-34, 35-44,
45-49, 50-55, 56+), gender, occupation and the first character of the zip
code; items get their genres (u.item flags, names from u.genre) and release
decade (year of the release date). With ``--normalize`` (the default) every
feature row sums to 1, as LightFM's Dataset does; with ``--no-normalize``
every feature has weight 1.

LightFM's ``predict_rank`` counts ties against the positive (an item with an
equal score ranks above it), whereas fmrecall breaks top-k ties by item index
and counts AUC ties as half. For float model scores ties are rare and both
agree; for the popularity ranking (many ties) they differ, so the JSON also
carries ``tie_half``: the same four figures computed here with fmrecall's
tie rules.

How to run
----------
Needs LightFM 1.17 (numpy, scipy), e.g. in a virtualenv::

    python3 -m venv /opt/venvs/lightfm
    /opt/venvs/lightfm/bin/pip install 'pip<23.1'
    /opt/venvs/lightfm/bin/pip install numpy scipy cython setuptools wheel
    /opt/venvs/lightfm/bin/pip install lightfm==1.17 --no-use-pep517 --no-build-isolation

then, from the repository root (the default ``--data`` is relative to the
current directory)::

    /opt/venvs/lightfm/bin/python benches/lightfm_baseline.py --split ua \\
        --loss warp --epochs 30 --learning-rate 0.05 --max-sampled 10 --seed 1 --json
    /opt/venvs/lightfm/bin/python benches/lightfm_baseline.py --split ua --popularity --json

With ``--json`` the last line of stdout is one JSON object with the keys
``precision@K``, ``recall@K``, ``ndcg@K``, ``auc``, ``train_seconds`` and the
settings.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import scipy.sparse as sp

AGE_BUCKETS = [
    (17, "under-18"),
    (24, "18-24"),
    (34, "25-34"),
    (44, "35-44"),
    (49, "45-49"),
    (55, "50-55"),
]


def age_bucket(age):
    for upper, name in AGE_BUCKETS:
        if age <= upper:
            return name
    return "56+"


def read_lines(path):
    with open(path, "rb") as f:
        for raw in f.read().split(b"\n"):
            raw = raw.rstrip(b"\r")
            if raw.strip():
                yield raw.decode("latin-1")


def id_key(s):
    try:
        return (int(s), s)
    except ValueError:
        return (sys.maxsize, s)


def load(data_dir, split):
    """Reads users, items (with side features) and the split's ratings."""
    users = {}
    for line in read_lines(os.path.join(data_dir, "u.user")):
        f = line.split("|")
        feats = [
            "age:" + age_bucket(int(f[1].strip())),
            "gender:" + f[2].strip(),
            "occupation:" + f[3].strip(),
        ]
        zip_code = f[4].strip()
        if zip_code:
            feats.append("zip:" + zip_code[0])
        users[f[0].strip()] = feats

    genre_path = os.path.join(data_dir, "u.genre")
    genres = []
    for line in read_lines(genre_path):
        name, idx = line.split("|")
        genres.append((int(idx), name))
    genres = [name for _, name in sorted(genres)]

    items = {}
    for line in read_lines(os.path.join(data_dir, "u.item")):
        f = line.split("|")
        feats = []
        for flag, genre in zip(f[5 : 5 + len(genres)], genres):
            if flag.strip() == "1":
                feats.append("genre:" + genre)
        year = f[2].rsplit("-", 1)[-1].strip()
        if year.lstrip("-").isdigit():
            feats.append("decade:%d" % ((int(year) // 10) * 10))
        items[f[0].strip()] = feats

    def ratings(name):
        rows = []
        for line in read_lines(os.path.join(data_dir, name)):
            u, i, r, _ = line.split("\t")[:4]
            rows.append((u.strip(), i.strip(), float(r)))
        return rows

    train = ratings(split + ".base")
    test = ratings(split + ".test")
    # Index order as in fmrecall (it only matters for breaking score ties):
    # users and items by first appearance in the train file, then the test
    # file; then the catalog items never rated, by id.
    user_ids, item_ids = {}, {}
    for u, i, _ in train + test:
        user_ids.setdefault(u, len(user_ids))
        item_ids.setdefault(i, len(item_ids))
        users.setdefault(u, [])
        items.setdefault(i, [])
    for i in sorted(items, key=id_key):
        item_ids.setdefault(i, len(item_ids))
    return users, items, list(user_ids), list(item_ids), train, test


def interactions(rows, uidx, iidx, shape, keep):
    pairs = {(uidx[u], iidx[i]) for u, i, r in rows if keep(r)}
    if not pairs:
        return sp.csr_matrix(shape, dtype=np.float32)
    r, c = zip(*sorted(pairs))
    return sp.csr_matrix(
        (np.ones(len(r), dtype=np.float32), (np.array(r), np.array(c))), shape=shape
    )


def feature_matrix(ids, side, normalize):
    """Identity features followed by side features, as a float32 CSR matrix."""
    names = sorted({name for i in ids for name in side[i]})
    col = {name: len(ids) + n for n, name in enumerate(names)}
    rows, cols = [], []
    for r, i in enumerate(ids):
        rows.append(r)
        cols.append(r)
        for name in side[i]:
            rows.append(r)
            cols.append(col[name])
    m = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)),
        shape=(len(ids), len(ids) + len(names)),
    )
    m.sum_duplicates()
    m.data[:] = 1.0
    if normalize:
        sums = np.asarray(m.sum(axis=1)).ravel()
        m = sp.diags(1.0 / sums).dot(m).tocsr().astype(np.float32)
    return m, len(names)


def tie_half_figures(scores, test, seen, k):
    """fmrecall's rules: excluded items removed, top-k ties by item index, AUC ties half.

    Returns per-user (precision, recall, ndcg, auc) for users with a test positive.
    """
    out = []
    n_items = scores.shape[1]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    for u in range(test.shape[0]):
        pos = test.indices[test.indptr[u] : test.indptr[u + 1]]
        if len(pos) == 0:
            continue
        s = scores[u].astype(np.float64)
        keep = np.ones(n_items, dtype=bool)
        keep[seen.indices[seen.indptr[u] : seen.indptr[u + 1]]] = False
        cand = np.flatnonzero(keep)
        # Stable sort of -score keeps ascending item index among ties.
        order = cand[np.argsort(-s[cand], kind="stable")]
        top = order[:k]
        is_pos = np.zeros(n_items, dtype=bool)
        is_pos[pos] = True
        hits = is_pos[top]
        n_hits = hits.sum()
        dcg = discounts[: len(top)][hits].sum()
        ideal = discounts[: min(len(pos), k)].sum()
        neg = s[cand[~is_pos[cand]]]
        if len(neg) == 0:
            auc = 1.0
        else:
            neg_sorted = np.sort(neg)
            below = np.searchsorted(neg_sorted, s[pos], side="left")
            ties = np.searchsorted(neg_sorted, s[pos], side="right") - below
            auc = (below + 0.5 * ties).sum() / (len(pos) * len(neg))
        out.append((n_hits / k, n_hits / len(pos), dcg / ideal if ideal > 0 else 0.0, auc))
    return np.array(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="../shared/data/ml-100k")
    p.add_argument("--split", default="ua", help="canonical split: ua, ub, u1..u5")
    p.add_argument("--min-rating", type=float, default=4.0)
    p.add_argument("--loss", choices=["warp", "bpr"], default="warp")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--learning-rate", type=float, default=0.05)
    p.add_argument("--max-sampled", type=int, default=10)
    p.add_argument("--no-components", type=int, default=64)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--features", choices=["ids", "hybrid"], default="ids")
    p.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--popularity", action="store_true")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)

    import lightfm
    from lightfm import LightFM
    from lightfm.evaluation import auc_score, precision_at_k, recall_at_k

    users, items, user_ids, item_ids, train_rows, test_rows = load(a.data, a.split)
    uidx = {u: n for n, u in enumerate(user_ids)}
    iidx = {i: n for n, i in enumerate(item_ids)}
    shape = (len(user_ids), len(item_ids))
    train = interactions(train_rows, uidx, iidx, shape, lambda r: r >= a.min_rating)
    seen = interactions(train_rows, uidx, iidx, shape, lambda r: True)
    test_all = interactions(test_rows, uidx, iidx, shape, lambda r: r >= a.min_rating)
    # Test positives that are not among the user's train items (any rating).
    test = (test_all - test_all.multiply(seen)).tocsr()
    test.eliminate_zeros()
    test = test.astype(np.float32)

    settings = {
        "split": a.split,
        "min_rating": a.min_rating,
        "k": a.k,
        "users": int((test.getnnz(axis=1) > 0).sum()),
        "n_users": shape[0],
        "n_items": shape[1],
        "train_positives": int(train.nnz),
        "test_positives": int(test.nnz),
        "lightfm": lightfm.__version__,
    }

    if a.popularity:
        t0 = time.perf_counter()
        counts = np.asarray(train.sum(axis=0)).ravel().astype(np.float32)
        train_seconds = time.perf_counter() - t0
        # A LightFM model whose score is the item's count: zero embeddings and
        # user biases, item bias = count (exact in float32), so that LightFM's
        # own evaluation functions rank by popularity.
        model = LightFM(no_components=1, random_state=a.seed)
        model._initialize(1, shape[1], shape[0])
        model.item_embeddings[:] = 0
        model.user_embeddings[:] = 0
        model.user_biases[:] = 0
        model.item_biases[:] = counts
        user_features = item_features = None
        scores = np.tile(counts, (shape[0], 1))
        settings.update({"model": "popularity"})
    else:
        user_features = item_features = None
        if a.features == "hybrid":
            user_features, n_uf = feature_matrix(user_ids, users, a.normalize)
            item_features, n_if = feature_matrix(item_ids, items, a.normalize)
            settings.update({"user_side_features": n_uf, "item_side_features": n_if})
        model = LightFM(
            no_components=a.no_components,
            loss=a.loss,
            learning_rate=a.learning_rate,
            max_sampled=a.max_sampled,
            random_state=a.seed,
        )
        t0 = time.perf_counter()
        model.fit(
            train,
            user_features=user_features,
            item_features=item_features,
            epochs=a.epochs,
            num_threads=a.threads,
        )
        train_seconds = time.perf_counter() - t0
        uu = np.repeat(np.arange(shape[0], dtype=np.int32), shape[1])
        ii = np.tile(np.arange(shape[1], dtype=np.int32), shape[0])
        scores = model.predict(
            uu,
            ii,
            user_features=user_features,
            item_features=item_features,
            num_threads=a.threads,
        ).reshape(shape)
        settings.update(
            {
                "model": "lightfm",
                "loss": a.loss,
                "epochs": a.epochs,
                "learning_rate": a.learning_rate,
                "max_sampled": a.max_sampled,
                "no_components": a.no_components,
                "seed": a.seed,
                "threads": a.threads,
                "features": a.features,
                "normalize": a.normalize if a.features == "hybrid" else None,
            }
        )

    kw = dict(
        train_interactions=seen,
        user_features=user_features,
        item_features=item_features,
        num_threads=a.threads,
    )
    prec = precision_at_k(model, test, k=a.k, **kw)
    rec = recall_at_k(model, test, k=a.k, **kw)
    auc = auc_score(model, test, **kw)
    own = tie_half_figures(scores, test, seen, a.k)

    result = {
        "precision@%d" % a.k: float(prec.mean()),
        "recall@%d" % a.k: float(rec.mean()),
        "ndcg@%d" % a.k: float(own[:, 2].mean()),
        "auc": float(auc.mean()),
        "train_seconds": train_seconds,
        "tie_half": {
            "precision@%d" % a.k: float(own[:, 0].mean()),
            "recall@%d" % a.k: float(own[:, 1].mean()),
            "ndcg@%d" % a.k: float(own[:, 2].mean()),
            "auc": float(own[:, 3].mean()),
        },
    }
    result.update(settings)

    print(
        "%s: P@%d %.4f  R@%d %.4f  NDCG@%d %.4f  AUC %.4f  train %.2fs  (%d users)"
        % (
            settings["model"] if a.popularity else "lightfm %s %s" % (a.loss, a.features),
            a.k,
            result["precision@%d" % a.k],
            a.k,
            result["recall@%d" % a.k],
            a.k,
            result["ndcg@%d" % a.k],
            result["auc"],
            train_seconds,
            settings["users"],
        )
    )
    if a.json:
        print(json.dumps(result, sort_keys=False))


if __name__ == "__main__":
    main()
