"""Harmony on simulated cryo-EM particles: conformations separated from in-plane pose.

Particles of one molecule in two conformations are seen from one direction, each rotated
in-plane by a random angle (0-360 degrees), shifted by up to 2 pixels and buried in noise
(SNR 2). A VAE spends its code on the orientation, so KMeans on it does not find the
conformations. Harmony predicts the pose of each particle, warps it into a canonical frame and
encodes the content there, so one content number separates the conformations, and the
predicted angles follow the true ones.

The script

- trains ``HarmonyEstimator()`` with its defaults and, for comparison, a beta-VAE with the
  same one-number code,
- clusters both codes with KMeans (k = 2) and scores them against the true conformations
  (adjusted Rand index),
- compares the predicted in-plane angles with the true ones (mean resultant length of the
  difference per conformation: 1 means exact up to one offset),
- saves a figure under ``outputs/``: noisy inputs, the canonical image decoded at each cluster
  centre, and predicted against true angles.

Run: ``python examples/harmony_conformations.py [--epochs N] [--n N]`` (4-7 min on one
CPU core with the defaults; measured: Harmony ARI 1.000, beta-VAE 0.001, angle resultant
lengths 0.998 and 0.984).
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from sklearn_disentangle import CFASLVAE, HarmonyEstimator
from sklearn_disentangle.cryoem.projection import shift_images
from sklearn_disentangle.cryoem.rotations import rotate_images
from sklearn_disentangle.datasets.cryoem import CryoEMConformationDataset


def simulate(n, size, snr, seed):
    """Projections of 2 conformations from one view, random in-plane pose, white noise."""
    rng = np.random.RandomState(seed)
    data = CryoEMConformationDataset(box_size=size, n_conformations=2, n_views=1, random_state=seed)
    conformation = rng.randint(2, size=n)
    clean = data.sample_observations_from_factors(np.stack([conformation, np.zeros(n, int)], 1))
    angle = rng.uniform(0.0, 360.0, n)
    shift = rng.uniform(-2.0, 2.0, (n, 2))
    images = rotate_images(torch.as_tensor(clean), torch.as_tensor(angle, dtype=torch.float32))
    images = shift_images(images, torch.as_tensor(shift)).numpy()
    sigma = np.sqrt(images.var(axis=(1, 2)).mean() / snr)
    X = (images + rng.standard_normal(images.shape) * sigma).astype(np.float32)
    return X, conformation, angle


def resultant_length(pred_deg, true_deg):
    """|mean exp(i (pred - true))|: 1 when pred = true + one constant offset."""
    return float(abs(np.mean(np.exp(1j * np.deg2rad(pred_deg - true_deg)))))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="outputs")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    X, conformation, angle = simulate(args.n, args.size, snr=2.0, seed=args.seed)
    print(f"{len(X)} particles of {args.size}x{args.size}: 2 conformations, random in-plane pose, SNR 2")

    harmony = HarmonyEstimator(max_epochs=args.epochs, random_state=args.seed).fit(X)
    vae = CFASLVAE(model_type="betavae", z_dim=1, max_epochs=args.epochs, batch_size=64, lr=1e-3,
                   random_state=args.seed).fit(X)

    print(f"\n{'code':<30}{'KMeans ARI vs conformation':>28}")
    labels = {}
    for name, model in (("Harmony content (z_dim=1)", harmony), ("beta-VAE (z_dim=1)", vae)):
        Z = model.transform(X)
        km = KMeans(2, n_init=10, random_state=0).fit(Z)
        labels[name] = km
        print(f"{name:<30}{adjusted_rand_score(conformation, km.labels_):>28.3f}")

    poses = harmony.transform_params(X)
    print("\nPredicted poses (first rows):")
    print(poses.head().round(2).to_string())
    for c in (0, 1):
        sel = conformation == c
        r = resultant_length(poses["angle_deg"].to_numpy()[sel], angle[sel])
        print(f"conformation {c}: predicted vs true angle, mean resultant length {r:.3f}")

    # figure: inputs, the canonical image at each content cluster centre, angles
    km = labels["Harmony content (z_dim=1)"]
    centres = harmony.inverse_transform(km.cluster_centers_)
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    grid = fig.add_gridspec(2, 5)
    for i in range(4):
        ax = fig.add_subplot(grid[i // 2, i % 2])
        ax.imshow(X[i], cmap="gray")
        ax.set_title(f"input, conformation {conformation[i]}", fontsize=8)
        ax.axis("off")
    for k in range(2):
        ax = fig.add_subplot(grid[k, 2])
        ax.imshow(centres[k], cmap="gray")
        ax.set_title(f"decoded centre of cluster {k}", fontsize=8)
        ax.axis("off")
    ax = fig.add_subplot(grid[:, 3:])
    for c, colour in ((0, "tab:blue"), (1, "tab:orange")):
        sel = conformation == c
        ax.scatter(angle[sel], poses["angle_deg"][sel], s=3, c=colour, label=f"conformation {c}")
    ax.set_xlabel("true in-plane angle (deg)")
    ax.set_ylabel("predicted angle (deg)")
    ax.legend(fontsize=8, markerscale=3)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "harmony_conformations.png", dpi=110)
    print(f"\nfigure: {out / 'harmony_conformations.png'}; total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
