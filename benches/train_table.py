#!/usr/bin/env python3
"""Issue 2's training table: fmrecall beside LightFM on MovieLens 100K (ua split).

Runs, in one go, for each seed, on ``--split ua --min-rating 4 --dim 64 --threads 2``:

* fmrecall ``--features ids --loss warp --epochs 30`` (LightFM's usual settings; lr 0.05 is the default)
* fmrecall ``--features ids --loss warp --early-stopping`` (epochs chosen on validation from train)
* fmrecall ``--features hybrid --loss warp --epochs 30``
* fmrecall ``--features ids --loss bpr --epochs 30`` and ``--features ids --loss bpr --early-stopping``
* the popularity ranking (from fmrecall's ``--json`` ``popularity`` object)
* when ``--lightfm-python`` imports lightfm: LightFM warp ids (lr 0.05, 30 epochs, max_sampled 10),
  LightFM warp ids (lr 0.02, 60 epochs, max_sampled 20: its best, tuned on test), LightFM hybrid
  normalised and unnormalised, LightFM BPR; same seeds, ``--threads 2``.

Prints a Markdown table (mean over seeds, min-max when several), the 1-minute load average at start
and end, every command run, and fmrecall's train time over LightFM's at the usual settings.
Exits non-zero if the fmrecall binary fails (or a LightFM run fails once LightFM imports).

Run from the repository root (stdlib only)::

    cargo build --release
    python3 benches/train_table.py --data ../shared/data/ml-100k --seeds 1,2
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

# --no-refit: the figures are the evaluated model's own; refitting on ua.test too would only cost time.
COMMON = ["--split", "ua", "--min-rating", "4", "--dim", "64", "--threads", "2", "--no-refit",
          "--no-register"]

FM_RUNS = [
    # (key, label, settings, extra flags)
    ("fm_warp_usual", "fmrecall WARP ids", "lr 0.05, 30 epochs (usual settings)",
     ["--features", "ids", "--loss", "warp", "--epochs", "30"]),
    ("fm_warp_es", "fmrecall WARP ids", "early stopping (validation from train)",
     ["--features", "ids", "--loss", "warp", "--early-stopping"]),
    ("fm_hybrid", "fmrecall WARP hybrid", "lr 0.05, 30 epochs",
     ["--features", "hybrid", "--loss", "warp", "--epochs", "30"]),
    ("fm_bpr", "fmrecall BPR ids", "30 epochs",
     ["--features", "ids", "--loss", "bpr", "--epochs", "30"]),
    ("fm_bpr_es", "fmrecall BPR ids", "early stopping (validation from train)",
     ["--features", "ids", "--loss", "bpr", "--early-stopping"]),
]

LFM_RUNS = [
    ("lfm_warp_usual", "LightFM WARP ids", "lr 0.05, 30 epochs, max_sampled 10 (usual settings)",
     ["--loss", "warp", "--features", "ids", "--learning-rate", "0.05", "--epochs", "30",
      "--max-sampled", "10"]),
    ("lfm_warp_best", "LightFM WARP ids", "lr 0.02, 60 epochs, max_sampled 20 (best, tuned on test)",
     ["--loss", "warp", "--features", "ids", "--learning-rate", "0.02", "--epochs", "60",
      "--max-sampled", "20"]),
    ("lfm_hybrid_norm", "LightFM WARP hybrid", "normalised features, lr 0.05, 30 epochs",
     ["--loss", "warp", "--features", "hybrid", "--normalize", "--learning-rate", "0.05",
      "--epochs", "30"]),
    ("lfm_hybrid_raw", "LightFM WARP hybrid", "unnormalised features, lr 0.05, 30 epochs",
     ["--loss", "warp", "--features", "hybrid", "--no-normalize", "--learning-rate", "0.05",
      "--epochs", "30"]),
    ("lfm_bpr", "LightFM BPR ids", "lr 0.05, 30 epochs",
     ["--loss", "bpr", "--features", "ids", "--learning-rate", "0.05", "--epochs", "30"]),
]

METRICS = ["precision@10", "recall@10", "ndcg@10", "auc", "train_seconds"]


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
        sys.stderr.write("FAILED (%s, exit %d): %s\n%s\n%s\n" % (
            what, p.returncode, log[-1], p.stdout[-2000:], p.stderr[-4000:]))
        return None, wall
    try:
        return last_json(p.stdout), wall
    except ValueError as e:
        sys.stderr.write("FAILED (%s): %s: %s\n%s\n" % (what, log[-1], e, p.stdout[-2000:]))
        return None, wall


def lightfm_available(python):
    if not python or not os.path.exists(python):
        return False
    p = subprocess.run([python, "-c", "import lightfm"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    return p.returncode == 0


def fmt(values, digits=3, seconds=False):
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    mean = sum(values) / len(values)
    f = "%.2f" if seconds else "%%.%df" % digits
    s = f % mean
    if len(values) > 1:
        s += " (" + (f % min(values)) + "–" + (f % max(values)) + ")"
    return s


def main(argv=None):
    ap = argparse.ArgumentParser(description="fmrecall vs LightFM on MovieLens 100K ua")
    ap.add_argument("--data", default="../shared/data/ml-100k")
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--binary", default="target/release/fmrecall")
    ap.add_argument("--lightfm-python", default="/opt/venvs/lightfm/bin/python")
    ap.add_argument("--baseline", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                       "lightfm_baseline.py"))
    a = ap.parse_args(argv)
    seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    if not os.path.exists(a.binary):
        sys.exit("binary %s not found: run `cargo build --release` first" % a.binary)

    load_start = load1()
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    commands = []
    results = {}  # key -> list of result dicts
    failed = False
    with_lfm = lightfm_available(a.lightfm_python)

    with tempfile.TemporaryDirectory(prefix="fmrecall-train-table-") as tmp:
        for seed in seeds:
            for key, _label, _settings, extra in FM_RUNS:
                out = os.path.join(tmp, "%s-seed%d" % (key, seed))
                cmd = [a.binary, "train", "--format", "movielens", "--data", a.data] + COMMON + \
                    extra + ["--seed", str(seed), "--out", out, "--json"]
                r, wall = run(cmd, commands, key)
                if r is None:
                    failed = True
                    continue
                sys.stderr.write("%-16s seed %d: P@10 %.4f  train %.2fs  epochs %s  (wall %.1fs)\n" % (
                    key, seed, r["precision@10"], r["train_seconds"], r.get("epochs"), wall))
                results.setdefault(key, []).append(r)
                if key == "fm_warp_usual" and "popularity" in r:
                    pop = dict(r["popularity"])
                    pop.setdefault("train_seconds", None)
                    results.setdefault("popularity", []).append(pop)
            if with_lfm:
                for key, _label, _settings, extra in LFM_RUNS:
                    cmd = [a.lightfm_python, a.baseline, "--data", a.data, "--split", "ua",
                           "--min-rating", "4", "--no-components", "64", "--threads", "2"] + \
                        extra + ["--seed", str(seed), "--json"]
                    r, wall = run(cmd, commands, key)
                    if r is None:
                        failed = True
                        continue
                    sys.stderr.write("%-16s seed %d: P@10 %.4f  train %.2fs  (wall %.1fs)\n" % (
                        key, seed, r["precision@10"], r["train_seconds"], wall))
                    results.setdefault(key, []).append(r)
    load_end = load1()

    rows = [(k, l, s) for k, l, s, _ in FM_RUNS]
    rows.append(("popularity", "popularity", "items by train positives (fmrecall's figures)"))
    if with_lfm:
        rows += [(k, l, s) for k, l, s, _ in LFM_RUNS]

    print("## fmrecall vs LightFM, MovieLens 100K ua, min-rating 4, dim 64, 2 threads")
    print()
    print("Seeds: %s; started %s. Figures are means over seeds, (min–max) when several." % (
        ", ".join(map(str, seeds)), started))
    print()
    print("| model | settings | P@10 | R@10 | NDCG@10 | AUC | train s | epochs |")
    print("|---|---|---|---|---|---|---|---|")
    for key, label, settings in rows:
        rs = results.get(key, [])
        if not rs:
            print("| %s | %s | failed | | | | | |" % (label, settings))
            continue
        cells = [fmt([r.get(m) for r in rs], digits=4 if m != "auc" else 4,
                     seconds=(m == "train_seconds")) for m in METRICS]
        if key == "popularity":
            cells[-1] = "–"
        epochs = sorted({r.get("epochs") for r in rs if r.get("epochs") is not None})
        print("| %s | %s | %s | %s |" % (label, settings, " | ".join(cells),
                                         ", ".join(map(str, epochs)) or "–"))
    print()
    if not with_lfm:
        print("LightFM: not run (%s does not import lightfm)." % a.lightfm_python)
        print()

    def mean(key, m):
        vs = [r[m] for r in results.get(key, []) if r.get(m) is not None]
        return sum(vs) / len(vs) if vs else None

    fm_t, lfm_t = mean("fm_warp_usual", "train_seconds"), mean("lfm_warp_usual", "train_seconds")
    if fm_t is not None and lfm_t:
        print("Usual settings (WARP ids, lr 0.05, 30 epochs): fmrecall train %.2f s / LightFM %.2f s"
              " = %.2f" % (fm_t, lfm_t, fm_t / lfm_t))
        print()

    print("Issue 2 goals (mean over seeds):")
    checks = [
        ("fmrecall usual P@10 >= 0.155", mean("fm_warp_usual", "precision@10"), 0.155),
        ("fmrecall early stopping P@10 >= 0.165", mean("fm_warp_es", "precision@10"), 0.165),
        ("fmrecall hybrid P@10 >= 0.150", mean("fm_hybrid", "precision@10"), 0.150),
        ("fmrecall BPR (30 epochs) P@10 >= 0.125", mean("fm_bpr", "precision@10"), 0.125),
        ("fmrecall BPR (early stopping) P@10 >= 0.125", mean("fm_bpr_es", "precision@10"), 0.125),
    ]
    for name, v, goal in checks:
        print("- %s: %s -> %s" % (name, "–" if v is None else "%.4f" % v,
                                  "–" if v is None else ("met" if v >= goal else "NOT met")))
    if fm_t is not None and lfm_t:
        print("- fmrecall usual train time <= LightFM's: %.2f s vs %.2f s -> %s" % (
            fm_t, lfm_t, "met" if fm_t <= lfm_t else "NOT met"))
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
