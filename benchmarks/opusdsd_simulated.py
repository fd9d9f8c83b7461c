"""OpusDSD on simulated particles with known conformations: clusters, volumes and a continuous motion.

Data: ``make_cryoem_particles`` (a rigid body plus a hinged domain, analytic projections at
uniformly random RELION poses, random shifts of +-2 px, CTF at 300 kV with random defocus
1-2.5 um and astigmatism, white noise at SNR ``--snr``), written to ``.mrcs`` + ``.star`` and
read back with ``StarReader`` so training streams images from disk, as on real data.

Cases:

- ``discrete``: 4 conformations (hinge at 0, 30, 60, 90 degrees). Metrics: adjusted Rand index
  of KMeans(4) on ``transform`` against the true states; Pearson correlation of each k-means
  centre volume (``inverse_transform`` of the cluster's on-data centre) with the nearest true
  volume, inside the model's crop ball; the same correlation on the *difference* from the mean
  volume (does the centre carry the right conformational change, not just the shared body?);
  and the fraction of centres whose nearest true volume is the majority state of their cluster.
- ``continuous``: hinge coordinate uniform in [0, 1]. Metrics: Spearman correlation of the
  first principal component of ``z`` with the coordinate, the best single latent dimension, and
  a 5-fold cross-validated linear read-out (an upper bound for "a latent direction").

Usage::

    python benchmarks/opusdsd_simulated.py --box 32 --n 4000 --epochs 20 --seeds 0 \
        --out benchmarks/results/opusdsd_simulated.md

``--time-only`` measures seconds per epoch (1 epoch) without the metrics.
"""

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.linear_model import LinearRegression
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import cross_val_predict

from sklearn_disentangle.datasets import make_cryoem_particles
from sklearn_disentangle.io import StarReader
from sklearn_disentangle.opus_dsd import OpusDSD, cluster_latents


def _corr(a, b):
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum() + 1e-30))


def _ball(d, radius):
    c = np.arange(d) - d // 2
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    return x * x + y * y + z * z <= radius * radius


def make_data(case, n, box, snr, seed, folder):
    kw = dict(n_conformations=4, motion="discrete") if case == "discrete" else dict(n_conformations=5,
                                                                                    motion="continuous")
    stack, truth = make_cryoem_particles(n, box, snr=snr, ctf=True, pixel_size=4.0 * 32 / box, max_shift=2.0,
                                         random_state=seed, **kw)
    path = os.path.join(folder, f"{case}.star")
    stack.to_star(path)
    return StarReader().transform([path]), truth


def params_for(args, seed):
    return dict(z_dim=args.z_dim, z_aff_dim=4, downfrac=1.0, templateres=args.templateres, width_mult=args.width_mult,
                batch_size=args.batch_size, lr=args.lr, lr_gamma=0.96, n_pose_candidates=args.candidates,
                lamb=args.lamb, beta_control=2.0, beta_period=args.beta_period, beta_ramp=int(0.8 * args.beta_period),
                max_epochs=args.epochs, device=args.device, random_state=seed, verbose=0)


def evaluate_discrete(est, stack, truth):
    z = est.transform(stack)
    labels = KMeans(4, n_init=10, random_state=0).fit_predict(z)
    ari = adjusted_rand_score(truth.labels, labels)
    clusters = cluster_latents(z, 4, random_state=0)
    vols = est.inverse_transform(clusters.centers).astype(np.float64)
    d = est.box_size_
    inside = _ball(d, 0.5 * est.crop_size_ * d / est.render_size_ - 1)
    true = truth.volumes.astype(np.float64)
    corr = np.array([[_corr(v[inside], t[inside]) for t in true] for v in vols])
    dv = vols - vols.mean(0)
    dt = true - true.mean(0)
    dcorr = np.array([[_corr(a[inside], b[inside]) for b in dt] for a in dv])
    majority = [int(np.bincount(truth.labels[clusters.labels == k], minlength=4).argmax()) for k in range(4)]
    nearest = corr.argmax(1)
    return {
        "ari": float(ari),
        "centre_vol_corr": corr.max(1).round(3).tolist(),
        "centre_vol_corr_min": float(corr.max(1).min()),
        "centre_diff_corr_matched": [float(dcorr[k, majority[k]]) for k in range(4)],
        "centres_matching_majority_state": float(np.mean(nearest == np.array(majority))),
        "diff_corr_nearest_is_majority": float(np.mean(dcorr.argmax(1) == np.array(majority))),
    }


def evaluate_continuous(est, stack, truth):
    z = est.transform(stack).astype(np.float64)
    t = truth.conformation
    pc1 = PCA(1).fit_transform(z)[:, 0]
    rho_pc1 = abs(spearmanr(pc1, t)[0])
    rho_dims = [abs(spearmanr(z[:, j], t)[0]) for j in range(z.shape[1])]
    pred = cross_val_predict(LinearRegression(), z, t, cv=5)
    rho_cv = spearmanr(pred, t)[0]
    return {"spearman_pc1": float(rho_pc1), "spearman_best_dim": float(max(rho_dims)),
            "spearman_linear_cv5": float(rho_cv)}


def run(args):
    rows = []
    folder = tempfile.mkdtemp(prefix="opusdsd_bench_")
    for case in args.cases:
        for seed in args.seeds:
            stack, truth = make_data(case, args.n, args.box, args.snr, seed, folder)
            est = OpusDSD(**params_for(args, seed))
            t0 = time.perf_counter()
            est.fit(stack)
            fit_s = time.perf_counter() - t0
            durs = [h["dur"] for h in est.history_]
            row = {"case": case, "seed": seed, "fit_s": round(fit_s, 1), "s_per_epoch_median": float(np.median(durs)),
                   "final_recon": float(est.history_[-1, "train_recon"]),
                   "first_recon": float(est.history_[0, "train_recon"]),
                   "final_snr": float(est.history_[-1, "train_snr"]), "device": str(est.net_.device),
                   "crop_size": est.crop_size_, "n_params": int(sum(p.numel() for p in est.net_.module_.parameters()))}
            if not args.time_only:
                row.update(evaluate_discrete(est, stack, truth) if case == "discrete"
                           else evaluate_continuous(est, stack, truth))
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def to_markdown(rows, args, elapsed):
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() and args.device != "cpu" else platform.processor()
    lines = [
        "# OpusDSD on simulated particles", "",
        f"Command: `python benchmarks/opusdsd_simulated.py {' '.join(args.argv)}`", "",
        f"Device: {dev} (torch {torch.__version__}, {torch.get_num_threads()} CPU threads); total time {elapsed:.0f} s.",
        f"Data: {args.n} particles per case, {args.box} px, SNR {args.snr}, CTF, shifts +-2 px, true poses; "
        f"seeds {args.seeds}.", "",
        f"Model: z_dim={args.z_dim}, width_mult={args.width_mult}, templateres={args.templateres}, "
        f"batch {args.batch_size}, lr {args.lr}, {args.epochs} epochs, {args.candidates} pose candidates, "
        f"lamb {args.lamb}.", "",
    ]
    disc = [r for r in rows if r["case"] == "discrete"]
    cont = [r for r in rows if r["case"] == "continuous"]
    if disc:
        lines += ["## 4 discrete conformations", "",
                  "| seed | ARI (goal >= 0.8) | centre-volume corr, min (goal >= 0.8) | diff-volume corr (matched) "
                  "| centres -> majority state | s/epoch | recon first -> last |", "|---|---|---|---|---|---|---|"]
        for r in disc:
            if "ari" in r:
                lines.append(f"| {r['seed']} | {r['ari']:.3f} | {r['centre_vol_corr_min']:.3f} "
                             f"({', '.join(f'{c:.3f}' for c in r['centre_vol_corr'])}) | "
                             f"{', '.join(f'{c:.2f}' for c in r['centre_diff_corr_matched'])} | "
                             f"{r['centres_matching_majority_state']:.2f} | {r['s_per_epoch_median']:.1f} | "
                             f"{r['first_recon']:.3f} -> {r['final_recon']:.3f} |")
            else:
                lines.append(f"| {r['seed']} | - | - | - | - | {r['s_per_epoch_median']:.1f} | - |")
        lines.append("")
    if cont:
        lines += ["## Continuous hinge motion", "",
                  "| seed | Spearman PC1 | best single dim | 5-fold linear read-out | s/epoch |", "|---|---|---|---|---|"]
        for r in cont:
            if "spearman_pc1" in r:
                lines.append(f"| {r['seed']} | {r['spearman_pc1']:.3f} | {r['spearman_best_dim']:.3f} | "
                             f"{r['spearman_linear_cv5']:.3f} | {r['s_per_epoch_median']:.1f} |")
            else:
                lines.append(f"| {r['seed']} | - | - | - | {r['s_per_epoch_median']:.1f} |")
        lines.append("")
    lines += ["Raw rows:", "", "```"] + [json.dumps(r) for r in rows] + ["```", ""]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", nargs="+", default=["discrete", "continuous"], choices=["discrete", "continuous"])
    p.add_argument("--box", type=int, default=32)
    p.add_argument("--n", type=int, default=6000)
    p.add_argument("--snr", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--z-dim", type=int, default=8)
    p.add_argument("--width-mult", type=float, default=0.25)
    p.add_argument("--templateres", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--candidates", type=int, default=4)
    p.add_argument("--lamb", type=float, default=1.0)
    p.add_argument("--beta-period", type=int, default=25000)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--time-only", action="store_true")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    args.argv = argv if argv is not None else __import__("sys").argv[1:]
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    rows = run(args)
    md = to_markdown(rows, args, time.perf_counter() - t0)
    print(md)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        tmp = args.out + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(md)
        os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
