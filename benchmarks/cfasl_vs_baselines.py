"""CFASL vs its baselines on dSprites-like data: 8 model types x seeds, same number of steps.

Every model type of :class:`~sklearn_disentangle.CFASLVAE` is trained for the same number
of optimisation steps (batch 64, Adam, the same ``lr`` for all) on a dSprites-like grid
(shape 3 x scale 6 x orientation ``--orientations`` x posX ``--positions`` x posY
``--positions``), then scored with FactorVAE score (FVM), mFVM (k = 2), MIG, SAP and
DCI (``importance="lasso"``) through :func:`sklearn_disentangle.metrics.evaluate`
(generator form, disentanglement_lib protocol, posterior means, metric seed 0).

The grid is rendered once and cached as uint8; each fitted model encodes the whole grid
once, and the metrics look codes up by grid row (``transform`` is deterministic, so this
is exactly what encoding the sampled observations gives, minus the repeated work).

Writes ``<out>.csv`` (one row per model type and seed, appended as runs finish, so a
time-limited run keeps what it finished) and ``<out>.md`` (mean +- sd per model type,
steps/s, the command, seeds and the wall time).

Usage::

    python benchmarks/cfasl_vs_baselines.py --resolution 32 --steps 600 --seeds 0 1 2
    python benchmarks/cfasl_vs_baselines.py --resolution 64 --steps 3000 --device cuda \\
        --out benchmarks/results/cfasl_vs_baselines_64px
"""

import argparse
import csv
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sklearn_disentangle import CFASLVAE
from sklearn_disentangle.datasets import make_dsprites_like
from sklearn_disentangle.datasets._base import FactorGridDataset
from sklearn_disentangle.metrics import evaluate

MODEL_TYPES = ["betavae", "cfasl_betavae", "betatcvae", "cfasl_betatcvae",
               "controlvae", "cfasl_controlvae", "commutativevae", "cfasl_commutativevae"]
METRIC_COLUMNS = ["factor_vae", "mfvm_2", "mig", "sap", "dci_disentanglement", "dci_completeness",
                  "dci_informativeness_test"]


class CachedGrid(FactorGridDataset):
    """A rendered grid whose 'observations' are grid row indices (one float column)."""

    def __init__(self, source):
        self.factor_names = source.factor_names
        self.factor_sizes = source.factor_sizes
        self.observation_shape = (1,)

    def _render(self, factors):
        return self.index_from_factors(factors).astype(np.float64)[:, None]


class CodeLookup:
    """``transform`` of grid-row indices: the precomputed codes of those rows."""

    def __init__(self, codes):
        self.codes = codes

    def transform(self, rows):
        return self.codes[np.asarray(rows)[:, 0].astype(np.int64)]


def metric_params(args):
    sizes = {"batch_size": 64, "n_train": args.fvm_train, "n_eval": args.fvm_eval,
             "n_variance_estimate": 5000}
    return {
        "mig": {"n_train": args.pool_train},
        "sap": {"n_train": args.pool_train, "n_test": args.pool_test},
        "dci": {"n_train": args.pool_train, "n_test": args.pool_test, "importance": "lasso"},
        "factor_vae": dict(sizes),
        "mfvm": {**sizes, "n_fixed": 2},
    }


def encode_grid(est, images, batch=2048):
    codes = []
    for start in range(0, len(images), batch):
        codes.append(est.transform(images[start:start + batch].astype(np.float32)))
    return np.concatenate(codes)


def summary_table(rows, model_types=MODEL_TYPES):
    """Markdown lines: mean +- sd (ddof 1) over seeds per model type, and mean steps/s."""
    lines = ["| model_type | n | FVM | mFVM k=2 | MIG | SAP | DCI D | DCI C | DCI I | steps/s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for model_type in model_types:
        sub = [r for r in rows if r["model_type"] == model_type]
        if not sub:
            continue
        cells = []
        for k in METRIC_COLUMNS + ["steps_per_s"]:
            v = np.array([float(r[k]) for r in sub])
            sd = v.std(ddof=1) if len(v) > 1 else 0.0
            cells.append(f"{v.mean():.3f} +- {sd:.3f}" if k != "steps_per_s" else f"{v.mean():.1f}")
        lines.append(f"| {model_type} | {len(sub)} | " + " | ".join(cells) + " |")
    return lines


def merge(csv_paths, out):
    """Combine per-run CSVs (e.g. from separate time-limited runs) into ``out``.csv and a table."""
    rows = []
    for path in csv_paths:
        with open(path, newline="") as fh:
            rows.extend(csv.DictReader(fh))
    rows.sort(key=lambda r: (int(r["seed"]), MODEL_TYPES.index(r["model_type"])))
    with open(Path(out).with_suffix(".csv"), "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return summary_table(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--orientations", type=int, default=10)
    p.add_argument("--positions", type=int, default=16)
    p.add_argument("--steps", type=int, default=600, help="optimisation steps per model (batch 64)")
    p.add_argument("--epochs", type=int, default=2, help="passes over a training subset of steps/epochs batches")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--model-types", nargs="+", default=MODEL_TYPES)
    p.add_argument("--z-dim", type=int, default=10)
    p.add_argument("--n-subsections", type=int, default=10, help="README value for dSprites (code: 16)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--c", type=float, default=16.0)
    p.add_argument("--epsilon", type=float, default=0.1)
    p.add_argument("--th", type=float, default=0.2)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 avoids oversubscription)")
    p.add_argument("--pool-train", type=int, default=4000)
    p.add_argument("--pool-test", type=int, default=2000)
    p.add_argument("--fvm-train", type=int, default=300)
    p.add_argument("--fvm-eval", type=int, default=200)
    p.add_argument("--time-limit", type=float, default=None, help="stop starting new runs after this many s")
    p.add_argument("--out", default=None, help="output prefix (default benchmarks/results/cfasl_vs_baselines_<res>px)")
    p.add_argument("--merge", nargs="+", default=None, metavar="CSV",
                   help="only combine these result CSVs into --out (.csv) and print the table")
    args = p.parse_args(argv)
    if args.merge:
        print("\n".join(merge(args.merge, args.out)))
        return 0
    out = Path(args.out or f"benchmarks/results/cfasl_vs_baselines_{args.resolution}px")
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.time()

    source = make_dsprites_like(resolution=args.resolution, n_orientations=args.orientations,
                                n_positions=args.positions)
    t0 = time.time()
    images = (source.images > 0.5).astype(np.uint8)
    print(f"rendered {len(images)} images of {args.resolution} px in {time.time() - t0:.1f} s", flush=True)
    grid = CachedGrid(source)
    batch = 64
    steps_per_epoch = args.steps // args.epochs
    n_train = steps_per_epoch * batch
    if n_train > len(images):
        raise SystemExit(f"--steps/--epochs needs {n_train} training images, the grid has {len(images)}; "
                         "raise --epochs.")
    params = metric_params(args)

    rows = []
    csv_path = out.with_suffix(".csv")
    fields = ["model_type", "seed", "steps", "fit_s", "steps_per_s", "final_loss"] + METRIC_COLUMNS
    with open(csv_path, "w", newline="") as fh:
        csv.DictWriter(fh, fieldnames=fields).writeheader()
    for seed in args.seeds:
        rng = np.random.RandomState(seed)
        X = images[np.sort(rng.choice(len(images), n_train, replace=False))].astype(np.float32)
        for model_type in args.model_types:
            if args.time_limit is not None and time.time() - t_start > args.time_limit:
                print(f"time limit reached; skipping {model_type} seed {seed}", flush=True)
                continue
            est = CFASLVAE(z_dim=args.z_dim, model_type=model_type, beta=args.beta, c=args.c,
                           n_subsections=args.n_subsections, epsilon=args.epsilon, th=args.th,
                           max_epochs=args.epochs, batch_size=batch, lr=args.lr, device=args.device,
                           random_state=seed)
            t0 = time.time()
            est.fit(X)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            fit_s = time.time() - t0
            codes = encode_grid(est, images)
            scores = evaluate(CodeLookup(codes), grid, metrics=("mig", "sap", "dci", "factor_vae", "mfvm"),
                              random_state=0, metric_params=params, encode_batch_size=4096)
            row = {"model_type": model_type, "seed": seed, "steps": args.epochs * steps_per_epoch,
                   "fit_s": round(fit_s, 2), "steps_per_s": round(args.epochs * steps_per_epoch / fit_s, 2),
                   "final_loss": round(float(est.history_[-1, "train_loss"]), 3)}
            row.update({k: round(float(scores[k].iloc[0]), 4) for k in METRIC_COLUMNS})
            rows.append(row)
            with open(csv_path, "a", newline="") as fh:
                csv.DictWriter(fh, fieldnames=fields).writerow(row)
            print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)

    wall = time.time() - t_start
    lines = [
        "# CFASL vs baselines (dSprites-like)",
        "",
        f"command: python {' '.join(sys.argv if argv is None else ['benchmarks/cfasl_vs_baselines.py', *argv])}",
        f"machine: {platform.machine()}, torch {torch.__version__}, device "
        f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() and args.device != 'cpu' else 'cpu'}, "
        f"threads {torch.get_num_threads()}",
        f"data: {args.resolution} px dSprites-like grid, shape 3 x scale 6 x orientation {args.orientations} x "
        f"posX {args.positions} x posY {args.positions} ({len(images)} images); training subset "
        f"{n_train} per seed",
        f"training: {args.epochs * steps_per_epoch} steps of batch {batch}, Adam lr {args.lr} (selector 0.2 lr), "
        f"grad clip 1.0, z_dim {args.z_dim}, n_subsections {args.n_subsections}, beta {args.beta}, c {args.c}, "
        f"rec 0.1, alpha = gamma = lamb = 1, epsilon {args.epsilon}, th {args.th}",
        f"metrics: evaluate(random_state=0) on posterior means; FVM / mFVM(k=2) {args.fvm_train} train + "
        f"{args.fvm_eval} eval votes of 64 (threshold 0.05, 5000 for variances); MIG/SAP/DCI pools "
        f"{args.pool_train} / {args.pool_test}; DCI importance = lasso (D = disentanglement, "
        "C = completeness, I = test informativeness)",
        f"seeds: {' '.join(map(str, args.seeds))}; wall time {wall:.0f} s",
        "",
    ] + summary_table(rows, args.model_types)
    text = "\n".join(lines) + "\n"
    out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
