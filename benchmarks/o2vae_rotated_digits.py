"""Orientation invariance of O2VAE's codes on rotated digits, against a vanilla VAE.

Trains, with the same budget (epochs, batch size, learning rate, z_dim), on randomly
rotated and mirrored 32 px digits (``make_rotated_digits``):

- ``O2VAE(encoder="e2cnn")``: the paper's O(2)-steerable encoder + Fourier-aligned loss;
- ``O2VAE(encoder="d4")``: torch-only D4-invariant encoder + Fourier-aligned loss, with its
  orbit max- or mean-pooled, and with 8 or 16 rotations in the orbit (``orbit_rotations``);
- ``O2VAE(encoder="cnn")``: plain CNN encoder + Fourier-aligned loss;
- vanilla VAE: ``O2VAE(encoder="cnn", align=None)`` (the paper's baseline),

then, on held-out upright digits, each shown at 24 angles (0-345 degrees) with and without a
mirror, reports

- ``d4_rel``: max relative code change ``|z(g x) - z(x)| / |z(x)|`` over the 7 rotations by
  multiples of 90 degrees and flips (eval mode);
- ``angle_rel``: mean relative code change over all 48 orientations (the issue's "relative
  change under arbitrary angles");
- ``rot_vs_digit``: mean code distance between orientations of one digit image divided by
  the mean distance between codes of different images (0 = perfectly invariant, ~1 = the
  orientation moves the code as much as changing the digit);
- ``acc``: 5-fold accuracy of a logistic regression predicting the digit from the codes of
  all orientations (folds split by image, so no image is in train and test);
- ``ari``: KMeans (k=10) adjusted Rand index against the digit;
- ``s/step``: seconds per training step (mean over the run, including the loss).

Usage::

    python benchmarks/o2vae_rotated_digits.py --quick            # CPU smoke run (tiny widths)
    python benchmarks/o2vae_rotated_digits.py --tiny --n-train 512 --epochs 10   # longer CPU run
    python benchmarks/o2vae_rotated_digits.py --device cuda --write-results benchmarks/results/o2vae_invariance.md
"""

import argparse
import json
import platform
import time

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import GroupKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_disentangle import O2VAE
from sklearn_disentangle.datasets import make_rotated_digits, rotate_images

ANGLES = np.arange(0, 360, 15.0)


def models(args):
    common = {"z_dim": args.z_dim, "max_epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
              "device": args.device, "random_state": 0}
    if args.quick or args.tiny:
        e2w, cw = (3, 4, 4, 6), (8, 16, 32)
    else:
        e2w, cw = None, None  # the paper's e2cnn widths; (32, 64, 128, 128) for the CNNs
    return {
        "O2VAE e2cnn": O2VAE(encoder="e2cnn", encoder_widths=e2w, **common),
        "O2VAE d4": O2VAE(encoder="d4", encoder_widths=cw, **common),
        "O2VAE d4, mean pool": O2VAE(encoder="d4", encoder_widths=cw, orbit_pool="mean", **common),
        "O2VAE d4, 8 rotations, mean pool": O2VAE(encoder="d4", encoder_widths=cw, orbit_rotations=8,
                                                  orbit_pool="mean", **common),
        "O2VAE d4, 16 rotations, mean pool": O2VAE(encoder="d4", encoder_widths=cw, orbit_rotations=16,
                                                   orbit_pool="mean", **common),
        "O2VAE cnn (aligned loss)": O2VAE(encoder="cnn", encoder_widths=cw, **common),
        "vanilla VAE (cnn, align=None)": O2VAE(encoder="cnn", encoder_widths=cw, align=None, **common),
    }


def orbit(test):
    """Every test digit at each angle, unflipped then mirrored: (48, n, H, W).

    Each view is rendered once from the 8 x 8 source digit, exactly as the upright view and the
    training images are (one bilinear resampling), so the orbit differs from the upright image
    by the rotation only - not by the extra blur that re-rotating the rendered 32 px image
    would add at angles other than multiples of 90 degrees.
    """
    n = len(test.images)
    source = test._source[test.instance]
    side = test.images.shape[-1]
    out = []
    for flip in (False, True):
        for angle in ANGLES:
            out.append(rotate_images(source, np.full(n, angle), np.full(n, flip), output_size=side,
                                     extent=1 / np.sqrt(2)))
    return np.stack(out)


def evaluate(model, test):
    upright, labels = test.images, test.factors[:, 0]
    n = len(upright)
    Z0 = model.transform(upright)
    norm0 = np.linalg.norm(Z0, axis=1)
    d4 = []
    for k in range(4):
        for flip in (False, True):
            if k == 0 and not flip:
                continue
            moved = upright[:, :, ::-1] if flip else upright
            moved = np.rot90(moved, k, axes=(1, 2)).copy()
            d4.append(np.max(np.linalg.norm(model.transform(moved) - Z0, axis=1) / norm0))
    views = orbit(test)  # (48, n, H, W)
    assert np.allclose(views[0], upright, atol=1e-6)
    Z = model.transform(views.reshape((-1,) + upright.shape[1:])).reshape(len(views), n, -1)
    rel = np.linalg.norm(Z - Z0[None], axis=-1) / norm0[None]
    # distances within one image's orbit vs between images
    within = np.mean([np.linalg.norm(Z[:, i, None] - Z[None, :, i], axis=-1).mean() for i in range(n)])
    centres = Z.mean(axis=0)
    between = np.linalg.norm(centres[:, None] - centres[None], axis=-1).sum() / (n * (n - 1))
    flat = Z.transpose(1, 0, 2).reshape(n * len(views), -1)  # image-major
    y = np.repeat(labels, len(views))
    groups = np.repeat(np.arange(n), len(views))
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    acc = cross_val_score(clf, flat, y, cv=GroupKFold(5), groups=groups).mean()
    ari = adjusted_rand_score(y, KMeans(10, n_init=4, random_state=0).fit_predict(flat))
    return {"d4_rel": float(max(d4)), "angle_rel": float(rel.mean()), "rot_vs_digit": float(within / between),
            "acc": float(acc), "ari": float(ari)}


def step_timing(args, batch=32, steps=2):
    """Seconds per training step (forward, aligned loss, backward, Adam) of each encoder on
    the CPU, paper widths, ``batch`` images at ``args.resolution`` px (after one warm-up step)."""
    from sklearn_disentangle.o2vae.model import O2VAEModule

    x = torch.from_numpy(make_rotated_digits(batch, resolution=args.resolution, random_state=0).images[:, None])
    out = {}
    cnn = (32, 64, 128, 128)
    variants = {"e2cnn": ("e2cnn", (6, 9, 12, 12, 19, 25), {}), "d4": ("d4", cnn, {}),
                "d4, 8 rotations, mean": ("d4", cnn, {"orbit_rotations": 8, "orbit_pool": "mean"}),
                "d4, 16 rotations, mean": ("d4", cnn, {"orbit_rotations": 16, "orbit_pool": "mean"}),
                "cnn": ("cnn", cnn, {})}
    for name, (encoder, widths, extra) in variants.items():
        torch.manual_seed(0)
        module = O2VAEModule(x.shape[1:], args.z_dim, encoder=encoder, encoder_widths=widths, recon_loss="bce",
                             **extra)
        opt = torch.optim.Adam(module.parameters(), lr=1e-3)
        times = []
        for i in range(steps + 1):
            start = time.perf_counter()
            opt.zero_grad()
            loss = module.loss(module(x), x)["loss"]
            loss.backward()
            opt.step()
            if i:
                times.append(time.perf_counter() - start)
        out[name] = float(np.mean(times))
        print("cpu step", name, round(out[name], 3), flush=True)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-train", type=int, default=1797)
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--z-dim", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="tiny widths, few samples and epochs (CPU smoke run)")
    parser.add_argument("--tiny", action="store_true", help="tiny widths (as --quick) with the given sizes/epochs")
    parser.add_argument("--only", nargs="*", help="substrings of the model names to run")
    parser.add_argument("--cpu-step-timing", action="store_true",
                        help="only time CPU training steps of each encoder (paper widths, batch 32)")
    parser.add_argument("--write-results", help="markdown file for the table (a .json is written beside it)")
    args = parser.parse_args()
    if args.quick:
        args.n_train, args.n_test, args.epochs = min(args.n_train, 256), min(args.n_test, 60), min(args.epochs, 3)
    if args.cpu_step_timing:
        timing = step_timing(args)
        lines = [f"CPU seconds per training step, batch 32, {args.resolution} px, paper widths "
                 f"({platform.processor() or platform.machine()}, torch {torch.__version__}, "
                 f"{torch.get_num_threads()} threads):", "", "| encoder | s/step | x e2cnn speed |", "|---|---|---|"]
        lines += [f"| {k} | {v:.3f} | {timing['e2cnn'] / v:.1f} |" for k, v in timing.items()]
        print("\n".join(lines))
        if args.write_results:
            with open(args.write_results, "w") as fh:
                fh.write("# O2VAE training-step time per encoder (CPU)\n\n" + "\n".join(lines) + "\n")
        return
    torch.manual_seed(0)
    train = make_rotated_digits(args.n_train, resolution=args.resolution, n_angles=360, flips=True,
                                random_state=0).images
    test = make_rotated_digits(args.n_test, resolution=args.resolution, n_angles=1, random_state=1)
    rows, device = {}, None
    for name, model in models(args).items():
        if args.only and not any(s in name for s in args.only):
            continue
        start = time.perf_counter()
        model.fit(train)
        seconds = time.perf_counter() - start
        steps = args.epochs * int(np.ceil(len(train) / args.batch_size))
        row = evaluate(model, test)
        row.update({"s_per_step": seconds / steps, "fit_s": seconds,
                    "final_loss": float(model.history_[-1, "train_loss"])})
        rows[name] = row
        device = str(model.net_.device)
        print(name, json.dumps({k: round(v, 4) for k, v in row.items()}), flush=True)
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else None
    header = (f"Setup: {args.n_train} training digits at {args.resolution} px, random angle (360 classes) and "
              f"mirror; {args.n_test} held-out upright digits x 48 orientations for evaluation. "
              f"{args.epochs} epochs, batch {args.batch_size}, Adam {args.lr}, z_dim {args.z_dim}, "
              f"{'tiny widths (3, 4, 4, 6) e2cnn / (8, 16, 32) CNNs' if args.quick or args.tiny else 'paper widths (e2cnn) / (32, 64, 128, 128) CNNs'}. "
              f"Device: {gpu or device} ({platform.processor() or platform.machine()}, torch {torch.__version__}, "
              f"{torch.get_num_threads()} CPU threads).")
    lines = [header, "", "| model | d4_rel | angle_rel | rot_vs_digit | acc | ari | s/step | final loss |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['d4_rel']:.2e} | {r['angle_rel']:.3f} | {r['rot_vs_digit']:.3f} | "
                     f"{r['acc']:.3f} | {r['ari']:.3f} | {r['s_per_step']:.3f} | {r['final_loss']:.1f} |")
    table = "\n".join(lines)
    print(table)
    if args.write_results:
        with open(args.write_results, "w") as fh:
            fh.write("# O2VAE invariance on rotated digits\n\n"
                     "Produced by `benchmarks/o2vae_rotated_digits.py` (columns explained in its docstring).\n\n")
            fh.write(table + "\n")
        with open(args.write_results.rsplit(".", 1)[0] + ".json", "w") as fh:
            json.dump({"args": vars(args), "device": gpu or device, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
