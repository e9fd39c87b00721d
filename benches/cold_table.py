#!/usr/bin/env python3
"""Issue 11's tables: cold-start users (and items) against popularity, and the warm ua table beside.

Runs ``target/release/fmrecall train --json`` on MovieLens 100K and prints three Markdown tables:

1. **Cold users** — ``--split users:0.2 --seed S --features hybrid``: 20% of the users (189) held out
   whole; the trainer and the feature vocabulary never see them, they are ranked from their side
   features (age, gender, occupation, zip prefix) over the whole catalog, nothing excluded. Rows:
   fmrecall hybrid at the defaults (side features at ``side_learning_rate`` 0.01), fmrecall hybrid
   with every feature at 0.05 (the behaviour before issue 11), fmrecall ids (a new user then knows
   no feature: the item biases alone), the popularity ranking computed on the same train users
   (fmrecall's ``cold_start.popularity``), one row per seed, then means. LightFM's figures are the
   ones issue 11 quotes (its own split of 20% of users, rng seed 42), not measured here.
2. **Cold items** — ``--split items:0.2 --seed S --features hybrid``: 20% of the catalog held out
   whole; recall@10 over the whole catalog is the share of a user's liked held-out items that reach
   their top 10 (cold-item recall@10); "among held-out" ranks the held-out items only. Rows: the
   defaults and ``--item-id-dropout 0.5``.
3. **Warm users** — ``--split ua --min-rating 4`` (train_table.py's protocol), seeds 1 and 2: WARP
   hybrid at the defaults and at the old single learning rate, WARP ids, popularity.

Every run: ``--min-rating 4 --dim 64 --epochs 30 --threads 2 --loss warp`` (min-rating 4 is also the
default: ratings >= 4 are the positives, for the model and for popularity alike). Prints the
1-minute load average at start and end and every command. Exits non-zero if a run fails.

Run from the repository root (stdlib only)::

    cargo build --release
    python3 benches/cold_table.py --data ../shared/data/ml-100k
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

COMMON = ["--min-rating", "4", "--dim", "64", "--epochs", "30", "--threads", "2",
          "--loss", "warp", "--no-register", "--no-refit"]

COLD_RUNS = [
    # (key, label, extra flags)
    ("hybrid", "fmrecall WARP hybrid, defaults (side features at lr 0.01)",
     ["--features", "hybrid"]),
    ("hybrid_one_lr", "fmrecall WARP hybrid, every feature at lr 0.05 (before issue 11)",
     ["--features", "hybrid", "--side-learning-rate", "0.05"]),
    ("ids", "fmrecall WARP ids (a new user knows no feature)", ["--features", "ids"]),
]

ITEM_RUNS = [
    ("hybrid", "fmrecall WARP hybrid, defaults", ["--features", "hybrid"]),
    ("hybrid_drop", "fmrecall WARP hybrid, --item-id-dropout 0.5",
     ["--features", "hybrid", "--item-id-dropout", "0.5"]),
]

WARM_RUNS = [
    ("hybrid", "fmrecall WARP hybrid, defaults (side features at lr 0.01)",
     ["--features", "hybrid"]),
    ("hybrid_one_lr", "fmrecall WARP hybrid, every feature at lr 0.05 (before issue 11)",
     ["--features", "hybrid", "--side-learning-rate", "0.05"]),
    ("ids", "fmrecall WARP ids", ["--features", "ids"]),
]

# Issue 11's LightFM figures (WARP, hybrid, 64 components, 30 epochs, unnormalised features), on
# its own 20% of users (rng seed 42) and its popularity on that split: quoted, not measured.
LIGHTFM_QUOTED = [
    ("LightFM 1.17 WARP hybrid (quoted from issue 11, its own split)", "0.353–0.357", "0.075", "–",
     "0.869"),
    ("popularity (quoted from issue 11, the same split)", "0.375", "0.086", "–", "0.874"),
]

METRICS = ["precision@10", "recall@10", "ndcg@10", "auc"]


def load1():
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


def last_json(stdout):
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON line in output")


def run(cmd, log, what):
    log.append(" ".join(shlex.quote(c) for c in cmd))
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.stderr.write("FAILED (%s, exit %d): %s\n%s\n" % (what, p.returncode, log[-1],
                                                           p.stderr[-3000:]))
        return None
    try:
        r = last_json(p.stdout)
    except ValueError as e:
        sys.stderr.write("FAILED (%s): %s: %s\n" % (what, log[-1], e))
        return None
    sys.stderr.write("%-40s P@10 %.4f  (wall %.1fs)\n" % (what, r.get("precision@10", float("nan")),
                                                          wall))
    return r


def mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def cell(values, digits=4):
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    s = "%.*f" % (digits, mean(values))
    if len(values) > 1:
        s += " (%.*f–%.*f)" % (digits, min(values), digits, max(values))
    return s


def row(label, settings, figures, n_users=None):
    cells = [cell([f.get(m) for f in figures]) for m in METRICS]
    users = "–" if n_users is None else str(n_users)
    return "| %s | %s | %s | %s |" % (label, settings, " | ".join(cells), users)


def main(argv=None):
    ap = argparse.ArgumentParser(description="fmrecall cold-start tables on MovieLens 100K")
    ap.add_argument("--data", default="../shared/data/ml-100k")
    ap.add_argument("--cold-seeds", default="42,1,2",
                    help="seeds of the users:/items: splits (and of training); 42 is the issue's")
    ap.add_argument("--warm-seeds", default="1,2", help="seeds of the ua runs (train_table.py's)")
    ap.add_argument("--binary", default="target/release/fmrecall")
    a = ap.parse_args(argv)
    cold_seeds = [int(s) for s in a.cold_seeds.split(",") if s.strip()]
    warm_seeds = [int(s) for s in a.warm_seeds.split(",") if s.strip()]
    if not os.path.exists(a.binary):
        sys.exit("binary %s not found: run `cargo build --release` first" % a.binary)

    load_start = load1()
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    commands = []
    failed = False
    cold = {}   # (key, seed) -> cold_start object
    items = {}  # (key, seed) -> cold_start object
    warm = {}   # (key, seed) -> summary
    base = [a.binary, "train", "--format", "movielens", "--data", a.data]
    with tempfile.TemporaryDirectory(prefix="fmrecall-cold-table-") as tmp:
        def train(split, seed, key, extra):
            out = os.path.join(tmp, "%s-%s-%d" % (split.replace(":", "_"), key, seed))
            cmd = base + ["--split", split, "--seed", str(seed)] + COMMON + extra + \
                ["--out", out, "--json"]
            return run(cmd, commands, "%s %s seed %d" % (split, key, seed))

        for seed in cold_seeds:
            for key, _label, extra in COLD_RUNS:
                r = train("users:0.2", seed, key, extra)
                if r is None or "cold_start" not in r:
                    failed = True
                    continue
                cold[(key, seed)] = r["cold_start"]
        for seed in cold_seeds[:1]:
            for key, _label, extra in ITEM_RUNS:
                r = train("items:0.2", seed, key, extra)
                if r is None or "cold_start" not in r:
                    failed = True
                    continue
                items[(key, seed)] = r["cold_start"]
        for seed in warm_seeds:
            for key, _label, extra in WARM_RUNS:
                r = train("ua", seed, key, extra)
                if r is None:
                    failed = True
                    continue
                warm[(key, seed)] = r
    load_end = load1()

    print("## Cold-start users: MovieLens 100K, `--split users:0.2`, hybrid features")
    print()
    print("Started %s. 20%% of users held out whole (never trained on, not in the vocabulary), "
          "ranked from side features over the whole catalog. `--min-rating 4 --dim 64 --epochs 30 "
          "--threads 2`; popularity = items by train positives of the same train users." % started)
    print()
    print("| model | seed | P@10 | R@10 | NDCG@10 | AUC | cold users |")
    print("|---|---|---|---|---|---|---|")
    for seed in cold_seeds:
        pop = None
        for key, label, _ in COLD_RUNS:
            c = cold.get((key, seed))
            if c is None:
                print("| %s | %d | failed | | | | |" % (label, seed))
                continue
            pop = c["popularity"]
            print(row(label, str(seed), [c["model"]], c["model"].get("users")))
        if pop is not None:
            print(row("popularity", str(seed), [pop], pop.get("users")))
    if len(cold_seeds) > 1:
        for key, label, _ in COLD_RUNS:
            figs = [cold[(key, s)]["model"] for s in cold_seeds if (key, s) in cold]
            print(row("**mean** " + label, ",".join(map(str, cold_seeds)), figs))
        pops = [cold[("hybrid", s)]["popularity"] for s in cold_seeds if ("hybrid", s) in cold]
        print(row("**mean** popularity", ",".join(map(str, cold_seeds)), pops))
    for label, p, r, n, auc in LIGHTFM_QUOTED:
        print("| %s | 42 (its rng) | %s | %s | %s | %s | – |" % (label, p, r, n, auc))
    print()
    for seed in cold_seeds:
        c = cold.get(("hybrid", seed))
        if c:
            d = c["model"]["precision@10"] - c["popularity"]["precision@10"]
            print("- seed %d: defaults P@10 %.4f vs popularity %.4f (%+.4f); goal P@10 >= 0.40: %s"
                  % (seed, c["model"]["precision@10"], c["popularity"]["precision@10"], d,
                     "met" if c["model"]["precision@10"] >= 0.40 else "NOT met"))
    print()

    print("## Cold-start items: MovieLens 100K, `--split items:0.2`, hybrid features")
    print()
    print("20% of the catalog held out whole. Whole catalog: positives are the held-out items a "
          "user liked, recall@10 = share of them reaching the user's top 10 (train items "
          "excluded). Among held-out: only held-out items ranked (popularity has no train "
          "positive for any of them: ties, broken by item index).")
    print()
    print("| model | seed | ranking | P@10 | R@10 | NDCG@10 | AUC | users |")
    print("|---|---|---|---|---|---|---|---|")
    for seed in cold_seeds[:1]:
        pop = None
        for key, label, _ in ITEM_RUNS:
            c = items.get((key, seed))
            if c is None:
                print("| %s | %d | failed | | | | | |" % (label, seed))
                continue
            pop = c
            print(row(label, "%d | whole catalog" % seed, [c["model"]], c["model"].get("users")))
            among = c.get("among_held_out")
            if among:
                print(row(label, "%d | among held-out" % seed, [among["model"]],
                          among["model"].get("users")))
        if pop is not None:
            print(row("popularity", "%d | whole catalog" % seed, [pop["popularity"]],
                      pop["popularity"].get("users")))
            if pop.get("among_held_out"):
                p = pop["among_held_out"]["popularity"]
                print(row("popularity", "%d | among held-out" % seed, [p], p.get("users")))
    print()

    print("## Warm users: MovieLens 100K, `--split ua --min-rating 4` (train_table.py's protocol)")
    print()
    print("Seeds %s; means (min–max)." % ", ".join(map(str, warm_seeds)))
    print()
    print("| model | settings | P@10 | R@10 | NDCG@10 | AUC | users |")
    print("|---|---|---|---|---|---|---|")
    for key, label, extra in WARM_RUNS:
        figs = [warm[(key, s)] for s in warm_seeds if (key, s) in warm]
        print(row(label, " ".join(extra), figs, figs[0].get("users") if figs else None))
    pops = [warm[("ids", s)]["popularity"] for s in warm_seeds if ("ids", s) in warm]
    print(row("popularity", "items by train positives", pops, pops[0].get("users") if pops else None))
    print()
    print("Load average (1, 5, 15 min): start %.2f %.2f %.2f; end %.2f %.2f %.2f (2 cores)" % (
        load_start + load_end))
    print()
    print("Commands (artifacts in a temporary directory, removed afterwards):")
    print()
    print("```")
    for c in commands:
        print(c)
    print("```")
    if failed:
        sys.stderr.write("some runs failed\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
