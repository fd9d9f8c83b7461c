"""Benchmark of the disentanglement metrics (pool form) on 10 000 samples x 10 codes x 5 factors.

For MIG and SAP it also times a straightforward per-pair loop -- the shape of
disentanglement_lib's code: ``np.histogram`` + ``np.digitize`` per code dimension and
``sklearn.metrics.mutual_info_score`` per (code, factor) pair for MIG; one ``LinearSVC``
per (code, factor) pair for SAP -- checks that both give the same value (to 1e-9), and
prints the speed-up. Times are medians over ``--repeats`` runs.

Usage::

    python benchmarks/bench_metrics.py                 # prints the table, writes
                                                       # benchmarks/results/metrics_bench.md
    python benchmarks/bench_metrics.py --repeats 5 --dci-repeats 1 --seed 0
"""

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import sklearn
from sklearn.metrics import mutual_info_score
from sklearn.svm import LinearSVC

from sklearn_disentangle.metrics import (
    beta_vae_score,
    dci,
    factor_vae_score,
    mfvm,
    mig,
    sap,
)

# dSprites' factor sizes: shape, scale, orientation, posX, posY
FACTOR_SIZES = (3, 6, 40, 32, 32)


def make_pool(n_samples, n_codes, seed):
    """Factors of a dSprites-sized grid and semi-disentangled float32 codes."""
    rng = np.random.RandomState(seed)
    factors = np.stack([rng.randint(s, size=n_samples) for s in FACTOR_SIZES], axis=1)
    scaled = factors / (np.asarray(FACTOR_SIZES) - 1.0)
    mixing = np.zeros((len(FACTOR_SIZES), n_codes))
    mixing[np.arange(len(FACTOR_SIZES)), np.arange(len(FACTOR_SIZES))] = 2.0
    mixing += 0.3 * rng.normal(size=mixing.shape)
    codes = scaled @ mixing + 0.1 * rng.normal(size=(n_samples, n_codes))
    codes[:, -1] = 0.0  # one collapsed dimension, as in trained VAEs
    return factors, codes.astype(np.float32)


def mig_loop(factors, codes, n_bins=20):
    """Per-pair MIG: one np.histogram/np.digitize per code, one mutual_info_score per pair."""
    disc = np.zeros(codes.shape, dtype=np.int64)
    for i in range(codes.shape[1]):
        edges = np.histogram(codes[:, i], n_bins)[1]
        disc[:, i] = np.digitize(codes[:, i], edges[:-1])
    m = np.zeros((codes.shape[1], factors.shape[1]))
    for i in range(codes.shape[1]):
        for j in range(factors.shape[1]):
            m[i, j] = mutual_info_score(factors[:, j], disc[:, i])
    h = np.array([mutual_info_score(f, f) for f in factors.T])
    top = np.sort(m, axis=0)[::-1]
    return float(np.mean((top[0] - top[1]) / h))


def sap_loop(factors, codes, train_fraction=2 / 3):
    """Per-pair SAP (discrete): one LinearSVC(C=0.01, balanced) per (code, factor) pair."""
    n_train = int(np.ceil(len(factors) * train_fraction))
    x, y, xt, yt = codes[:n_train], factors[:n_train], codes[n_train:], factors[n_train:]
    score = np.zeros((codes.shape[1], factors.shape[1]))
    for i in range(codes.shape[1]):
        for j in range(factors.shape[1]):
            clf = LinearSVC(C=0.01, class_weight="balanced").fit(x[:, i : i + 1], y[:, j])
            score[i, j] = np.mean(clf.predict(xt[:, i : i + 1]) == yt[:, j])
    top = np.sort(score, axis=0)[::-1]
    return float(np.mean(top[0] - top[1]))


def timed(func, repeats):
    times, value = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = func()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=10000)
    parser.add_argument("--n-codes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dci-repeats", type=int, default=1, help="repeats of the (slow) reference GBT DCI")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "metrics_bench.md"))
    args = parser.parse_args(argv)

    start = time.perf_counter()
    factors, codes = make_pool(args.n_samples, args.n_codes, args.seed)
    rows = []  # (metric, variant, seconds, value, reference seconds, reference value)

    t_fast, v_fast = timed(lambda: mig(factors, codes), args.repeats)
    t_loop, v_loop = timed(lambda: mig_loop(factors, codes), args.repeats)
    assert abs(v_fast - v_loop) < 1e-9, (v_fast, v_loop)
    rows.append(("MIG", "vectorised (20 bins)", t_fast, v_fast, t_loop, v_loop))

    sap_repeats = max(1, min(args.repeats, 3))
    t_fast, v_fast = timed(lambda: sap(factors, codes, random_state=0), sap_repeats)
    t_loop, v_loop = timed(lambda: sap_loop(factors, codes), sap_repeats)
    assert abs(v_fast - v_loop) < 1e-9, (v_fast, v_loop)
    rows.append(("SAP", "discrete, n_jobs=1", t_fast, v_fast, t_loop, v_loop))
    t_par, v_par = timed(lambda: sap(factors, codes, random_state=0, n_jobs=2), sap_repeats)
    assert abs(v_par - v_loop) < 1e-9
    rows.append(("SAP", "discrete, n_jobs=2", t_par, v_par, t_loop, v_loop))
    t_c, v_c = timed(lambda: sap(factors, codes, continuous_factors=True), args.repeats)
    rows.append(("SAP", "continuous factors", t_c, v_c, None, None))

    for importance, reps in (("gbt", args.dci_repeats), ("hist_gbt", 1), ("random_forest", 1), ("lasso", args.repeats)):
        t, v = timed(lambda: dci(factors, codes, importance=importance, random_state=0), reps)
        label = f"importance={importance!r}" + (" (reference)" if importance == "gbt" else "")
        rows.append(("DCI-D", label, t, v["disentanglement"], None, None))

    kw = {"random_state": 0}  # reference defaults: batch 64, 10000 / 5000 votes, 10000 variance codes
    for name, func in (("FactorVAE", factor_vae_score), ("beta-VAE", beta_vae_score), ("mFVM_2", mfvm)):
        t, v = timed(lambda: func(factors, codes, **kw), max(1, min(args.repeats, 3)))
        rows.append((name, "pool form, reference sizes", t, v, None, None))
    t, v = timed(lambda: mfvm(factors, codes, cfasl_compat=True, random_state=0), args.repeats)
    rows.append(("mFVM_2", "pool form, cfasl_compat", t, v, None, None))
    total = time.perf_counter() - start

    header = "| metric | variant | time (s, median) | value | per-pair loop (s) | speed-up | same value (1e-9) |"
    lines = [header, "|---|---|---|---|---|---|---|"]
    for metric, variant, t, v, tl, vl in rows:
        if tl is None:
            lines.append(f"| {metric} | {variant} | {t:.4f} | {v:.6f} | | | |")
        else:
            lines.append(
                f"| {metric} | {variant} | {t:.4f} | {v:.6f} | {tl:.4f} | {tl / t:.1f}x | {abs(v - vl) < 1e-9} |"
            )
    table = "\n".join(lines)
    print(table)
    cmd = "python benchmarks/bench_metrics.py " + " ".join(argv if argv is not None else sys.argv[1:])
    meta = (
        f"# Metric benchmark\n\n"
        f"Command: `{cmd.strip()}`  \n"
        f"Data: {args.n_samples} samples x {args.n_codes} code dims (float32, one collapsed) x "
        f"{len(FACTOR_SIZES)} factors of sizes {FACTOR_SIZES}; seed {args.seed} (data), "
        f"random_state=0 (metrics).  \n"
        f"Repeats: MIG/continuous SAP/lasso DCI/cfasl mFVM {args.repeats}, SAP and FVM/beta-VAE/mFVM "
        f"{max(1, min(args.repeats, 3))}, GBT DCI {args.dci_repeats}, hist_gbt/random_forest DCI 1 (median shown).  \n"
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs (shared), "
        f"load average before the run {os.getloadavg()[0]:.2f}; Python {platform.python_version()}, "
        f"numpy {np.__version__}, scikit-learn {sklearn.__version__}.  \n"
        f"Total wall time of the benchmark: {total:.1f} s.\n\n"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(meta + table + "\n")
    print(f"\nwritten to {args.out} (total {total:.1f} s)")


if __name__ == "__main__":
    main()
