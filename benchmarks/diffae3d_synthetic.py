"""DiffAE3D on synthetic cardiac-like cines (frames as depth): reconstruction, latent phenotypes, speed.

Data: :func:`sklearn_disentangle.datasets.make_cardiac_volumes` with one slice, so each subject
is a ``(1, frames, size, size)`` volume in ``[-1, 1]`` (the paper's time-as-depth set-up) with
known factors ``radius``, ``wall_thickness``, ``contraction`` and ``phase`` (probed as
``sin``/``cos``). A DiffAE3D (in-plane-only resampling) is trained on ``--n-train`` subjects;
everything else is measured on ``--n-test`` held-out subjects:

- PSNR of encode/decode (``reconstruct``: DDIM inversion then decoding) at 20 and 50 steps,
  on the ``[0, 1]`` intensity scale (data range 1), for four inversions of the same model:
  DiffAE's explicit one (``inversion_end="noise"``), the explicit one stopped at the last
  kept step (``"last_step"``) and the fixed-point one (``"last_step"`` with 1 iteration per
  step, the estimator's default, and with ``--inversion-iters``); and of decoding ``z`` from
  random noise; on the first ``--n-psnr`` held-out subjects;
- 5-fold cross-validated R^2 of ``StandardScaler + RidgeCV`` on the latents for each factor,
  against PCA (fitted on the training volumes) with the same number of components, and the
  same with an RBF kernel ridge probe (is a factor in the latent, even if not linearly?);
- the same linear probe on the latents of the same architecture after one optimiser step
  (``untrained_control``): what random convolutional features already give;
- with ``--encoder-pool cyclic``: the same linear probe on the content part ``z[:, :-2]`` and on
  the phase part ``z[:, -2:]`` separately, and the error of the latent phase angle;
- seconds per training step (median over timed steps, after warm-up) on the chosen device and
  on CPU, and peak memory (CUDA allocator peak; process max RSS).

Run ``python benchmarks/diffae3d_synthetic.py --help``. Training length is either
``--epochs`` or a wall-clock ``--train-seconds`` budget (epochs run until it is spent; the
number done is reported so a run can be repeated with ``--epochs``).
"""

import argparse
import json
import os
import pickle
import resource
import sys
import time

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from sklearn_disentangle import DiffAE3D  # noqa: E402
from sklearn_disentangle.datasets import make_cardiac_volumes  # noqa: E402


def make_data(n, frames, size, seed):
    d = make_cardiac_volumes(n, n_frames=frames, n_slices=1, size=size, random_state=seed)
    X = np.clip(d.volumes[:, :, :, 0] * 2.0 - 1.0, -1.0, 1.0).astype(np.float32)
    f = d.factors
    targets = {"radius": f["radius"].to_numpy(), "wall_thickness": f["wall_thickness"].to_numpy(),
               "contraction": f["contraction"].to_numpy(), "sin_phase": np.sin(f["phase"].to_numpy()),
               "cos_phase": np.cos(f["phase"].to_numpy())}
    return X, targets


def psnr01(a, b):
    """PSNR on the [0, 1] scale of images given in [-1, 1], per sample then averaged (dB)."""
    mse = (((a - b) / 2.0) ** 2).reshape(len(a), -1).mean(1)
    return float(np.mean(10 * np.log10(1.0 / np.maximum(mse, 1e-12))))


def probe_r2(Z, targets, seed, kernel="linear"):
    """5-fold CV R^2 per target of a ridge probe on standardised ``Z``.

    ``kernel="linear"``: RidgeCV (the issue's probe). ``kernel="rbf"``: kernel ridge with an RBF
    kernel, alpha and gamma chosen by an inner 3-fold search: tells "the factor is in the latent
    but not linearly" apart from "the factor is not in the latent".
    """
    cv = KFold(5, shuffle=True, random_state=seed)
    if kernel == "linear":
        reg = RidgeCV(alphas=np.logspace(-3, 3, 13))
    elif kernel != "rbf":
        raise ValueError(f"kernel must be 'linear' or 'rbf', got {kernel!r}.")
    else:
        d = Z.shape[1]
        grid = {"alpha": [1e-3, 1e-2, 1e-1, 1.0], "gamma": [g / d for g in (0.1, 0.3, 1.0, 3.0)]}
        reg = GridSearchCV(KernelRidge(kernel="rbf"), grid, cv=KFold(3, shuffle=True, random_state=seed))
    probe = make_pipeline(StandardScaler(), reg)
    return {k: float(cross_val_score(probe, Z, y, cv=cv, scoring="r2").mean()) for k, y in targets.items()}


def cyclic_split(Z, targets, seed):
    """For ``encoder_pool="cyclic"`` latents: what the content part and the phase part each carry.

    Linear-probe R^2 of every factor from ``Z[:, :-2]`` (content, meant to be blind to the
    phase) and from ``Z[:, -2:]`` (the phase as ``(cos, sin)``, meant to carry nothing else),
    and the error of the latent phase angle against the true phase after the best global
    offset and direction (the encoder may start its cycle anywhere and run either way).
    """
    res = {"r2_content": probe_r2(Z[:, :-2], targets, seed), "r2_phase_dims": probe_r2(Z[:, -2:], targets, seed)}
    true = np.arctan2(targets["sin_phase"], targets["cos_phase"])
    angle = np.arctan2(Z[:, -1], Z[:, -2])
    fits = {s: np.mean(np.exp(1j * (angle - s * true))) for s in (1, -1)}
    sign = max(fits, key=lambda s: abs(fits[s]))
    err = np.degrees(np.abs(np.angle(np.exp(1j * (angle - sign * true - np.angle(fits[sign]))))))
    res.update({"phase_direction": int(sign), "phase_err_deg_median": float(np.median(err)),
                "phase_err_deg_p90": float(np.percentile(err, 90)),
                "phase_norm_min": float(np.hypot(Z[:, -2], Z[:, -1]).min())})
    return res


def model_params(args):
    """DiffAE3D parameters of the benchmark for parsed (or saved, as a Namespace) arguments."""
    return dict(z_dim=args.z_dim, spatial_dims=3, base_channels=args.base_channels, channel_mult=(1, 2, 2),
                encoder_channel_mult=(1, 2, 2, 4), num_res_blocks=1, attention_resolutions=(8,), dropout=0.0,
                inplane_only=True, batch_size=args.batch_size, lr=args.lr, ema_decay=args.ema_decay,
                encoder_pool=getattr(args, "encoder_pool", "mean"), random_state=args.seed)


def untrained_control(params, X_tr, X_te, targets, seed, device):
    """Probe R^2 of the same architecture after one optimiser step from its initialisation.

    The control for the probe: random convolutional features of these simple shells already
    carry some factors linearly, so a trained latent's R^2 means "learnt" only by how much it
    beats this (and PCA).
    """
    est = DiffAE3D(**{**params, "device": device, "max_epochs": 1}).fit(X_tr[: params["batch_size"]])
    Z = est.transform(X_te)
    res = {"r2": probe_r2(Z, targets, seed)}
    if params.get("encoder_pool") == "cyclic":
        res["cyclic_split"] = cyclic_split(Z, targets, seed)
    return res


def step_time(est_params, X, device, n_steps, threads=None):
    """Median seconds per optimiser step of a fresh model on ``device`` (after 3 warm-up steps)."""
    if threads:
        torch.set_num_threads(threads)
    est = DiffAE3D(**{**est_params, "device": device, "max_epochs": 1})
    bs = est.batch_size
    n_steps = min(n_steps, len(X) // bs - 3)
    if n_steps < 1:
        raise ValueError(f"need at least {4 * bs} training volumes to time steps of batch {bs}.")
    sub = X[: bs * (n_steps + 3)]
    est.fit(sub[: bs * 3])  # builds the net; 3 warm-up steps
    net = est.net_
    times = []
    from sklearn_disentangle.training import to_batch_tensor

    for i in range(n_steps):
        xb = to_batch_tensor(sub[bs * (3 + i): bs * (4 + i)]).to(net.device)
        if str(net.device).startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        net.train_step((xb, None))
        for _, cb in net.callbacks_:
            if hasattr(cb, "decay_at"):
                cb.on_batch_end(net, training=True)
        if str(net.device).startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-train", type=int, default=512)
    p.add_argument("--n-test", type=int, default=256)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--z-dim", type=int, default=32)
    p.add_argument("--base-channels", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--n-psnr", type=int, default=None,
                   help="held-out subjects used for the PSNRs (default: all; inversion is the slow part on CPU)")
    p.add_argument("--inversion-iters", type=int, default=3,
                   help="fixed-point iterations per step of the third inversion measured")
    p.add_argument("--encoder-pool", default="mean", choices=("mean", "depth", "cyclic"))
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--train-seconds", type=float, default=120.0)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpu-step-threads", type=int, default=1)
    p.add_argument("--cpu-steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--out", default=None, help="folder for results.json and results.md")
    p.add_argument("--save-model", action="store_true",
                   help="also write the fitted estimator (model.pkl) and the held-out latents and factors "
                        "(latents.npz) to --out, for probes beyond the linear one")
    args = p.parse_args(argv)
    if args.save_model and not args.out:
        p.error("--save-model needs --out (the folder model.pkl and latents.npz are written to).")
    t_start = time.time()
    if args.threads:
        torch.set_num_threads(args.threads)

    X_tr, _ = make_data(args.n_train, args.frames, args.size, args.seed)
    X_te, y_te = make_data(args.n_test, args.frames, args.size, args.seed + 1)
    params = model_params(args)
    est = DiffAE3D(**params, device=args.device, max_epochs=args.epochs or 1)
    device = str(torch.device("cuda" if (args.device == "auto" and torch.cuda.is_available()) else
                              ("cpu" if args.device == "auto" else args.device)))
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    if args.epochs:
        est.fit(X_tr)
    else:
        est.fit(X_tr)
        while time.time() - t0 < args.train_seconds:
            est.partial_fit(X_tr)
    train_s = time.time() - t0
    epochs = len(est.history_)
    steps = int(est.net_.module_.ema_updates)
    losses = [float(h["train_loss"]) for h in est.history_]

    t1 = time.time()
    Z_te = est.transform(X_te)
    res = {"psnr": {}}
    inversions = [("noise", 0), ("last_step", 0), ("last_step", 1), ("last_step", args.inversion_iters)]
    n_psnr = len(X_te) if args.n_psnr is None else min(args.n_psnr, len(X_te))
    X_ps, Z_ps = X_te[:n_psnr], Z_te[:n_psnr]
    res["x_T_std"] = {}
    for n in (20, 50):
        for end, iters in inversions:
            est.set_params(inversion_end=end, inversion_iters=iters)
            x_T = est.encode_stochastic(X_ps, Z_ps, n_steps=n)
            rec = est.inverse_transform(Z_ps, x_T=x_T, n_steps=n)
            key = f"reconstruct_{n} ({end}, {iters} iter)"
            res["psnr"][key] = psnr01(rec, X_ps)
            res["x_T_std"][key] = float(x_T.std())
    est.set_params(inversion_end="noise", inversion_iters=0)
    res["psnr"]["decode_random_xT_20"] = psnr01(est.inverse_transform(Z_ps, n_steps=20, random_state=0), X_ps)
    res["n_psnr"] = n_psnr
    eval_s = time.time() - t1
    pca = PCA(args.z_dim, random_state=args.seed).fit(X_tr.reshape(len(X_tr), -1))
    Z_pca = pca.transform(X_te.reshape(len(X_te), -1))
    res["r2_diffae"] = probe_r2(Z_te, y_te, args.seed)
    res["r2_pca"] = probe_r2(Z_pca, y_te, args.seed)
    res["r2_diffae_rbf"] = probe_r2(Z_te, y_te, args.seed, kernel="rbf")
    res["r2_pca_rbf"] = probe_r2(Z_pca, y_te, args.seed, kernel="rbf")
    if args.encoder_pool == "cyclic":
        res["cyclic_split"] = cyclic_split(Z_te, y_te, args.seed)
    res["untrained"] = untrained_control(params, X_tr, X_te, y_te, args.seed, device)
    peak_gpu = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None

    res["step_s"] = {device: step_time(params, X_tr, device, 20)}
    if device != "cpu":
        res["step_s"][f"cpu ({args.cpu_step_threads} thread)"] = step_time(
            params, X_tr, "cpu", args.cpu_steps, threads=args.cpu_step_threads)
    res.update({
        "args": vars(args), "device": device,
        "gpu_name": torch.cuda.get_device_name() if device.startswith("cuda") else None,
        "torch": torch.__version__, "epochs": epochs, "optimizer_steps": steps, "train_s": train_s,
        "eval_s": eval_s, "loss_first_last": [losses[0], losses[-1]],
        "n_params": int(sum(p.numel() for n_, p in est.net_.module_.named_parameters() if not n_.startswith("ema_"))),
        "peak_gpu_mib": peak_gpu, "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "total_s": time.time() - t_start,
    })
    md = to_markdown(res)
    print(md)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "results.json"), "w") as fh:
            json.dump(res, fh, indent=1)
        with open(os.path.join(args.out, "results.md"), "w") as fh:
            fh.write(md)
        if args.save_model:
            with open(os.path.join(args.out, "model.pkl"), "wb") as fh:
                pickle.dump(est, fh)
            np.savez(os.path.join(args.out, "latents.npz"), Z_test=Z_te, Z_pca=Z_pca, **y_te)
    return res


def to_markdown(res):
    a = res["args"]
    lines = [
        f"device: {res['device']} {res['gpu_name'] or ''} (torch {res['torch']}); seed {a['seed']}; "
        f"{a['n_train']} train / {a['n_test']} test subjects, volumes 1x{a['frames']}x{a['size']}x{a['size']} "
        f"(frames as depth), z_dim {a['z_dim']}, base_channels {a['base_channels']}, batch {a['batch_size']}, "
        f"lr {a['lr']}, EMA {a['ema_decay']} (warm-up), encoder_pool {a.get('encoder_pool', 'mean')!r}, "
        f"{res['n_params']:,} trainable parameters",
        f"training: {res['epochs']} epochs = {res['optimizer_steps']} steps in {res['train_s']:.0f} s "
        f"(loss {res['loss_first_last'][0]:.3f} -> {res['loss_first_last'][1]:.3f}); evaluation {res['eval_s']:.0f} s; "
        f"total {res['total_s']:.0f} s",
        "",
        "| reconstruction (held-out) | PSNR dB ([0,1] scale) |",
        "|---|---|",
    ]
    stds = res.get("x_T_std", {})
    lines[-2:] = [f"| reconstruction ({res.get('n_psnr', a['n_test'])} held-out subjects) | PSNR dB ([0,1] scale) "
                  "| std of x_T |", "|---|---|---|"]
    lines += [f"| {k} | {v:.2f} | {stds[k]:.3f} |" if k in stds else f"| {k} | {v:.2f} | |"
              for k, v in res["psnr"].items()]
    z = a["z_dim"]
    cols = [("r2_diffae", f"R^2 DiffAE3D (z={z})"), ("r2_pca", f"R^2 PCA ({z} comps)"),
            ("r2_diffae_rbf", "RBF kernel ridge: DiffAE3D"), ("r2_pca_rbf", "RBF: PCA")]
    table = dict(res)
    if "untrained" in res:
        table["r2_untrained"] = res["untrained"]["r2"]
        cols.insert(1, ("r2_untrained", "R^2 same net, 1 step"))
    cols = [(key, title) for key, title in cols if key in table]  # results saved before the RBF probe lack it
    lines += ["", "| factor | " + " | ".join(t for _, t in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    lines += ["| " + " | ".join([k] + [f"{table[key][k]:.3f}" for key, _ in cols]) + " |" for k in res["r2_diffae"]]
    if "cyclic_split" in res:
        cs = res["cyclic_split"]
        lines += ["", "| factor | R^2 from z[:, :-2] (content) | R^2 from z[:, -2:] (phase) |", "|---|---|---|"]
        lines += [f"| {k} | {cs['r2_content'][k]:.3f} | {cs['r2_phase_dims'][k]:.3f} |" for k in cs["r2_content"]]
        lines += ["", f"latent phase angle vs true phase (best offset, direction {cs['phase_direction']:+d}): "
                      f"median error {cs['phase_err_deg_median']:.1f} deg, 90th percentile "
                      f"{cs['phase_err_deg_p90']:.1f} deg; smallest |(cos, sin)| {cs['phase_norm_min']:.4f}"]
    lines += ["", "| timing | seconds per training step (median) |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in res["step_s"].items()]
    pg = res["peak_gpu_mib"]
    lines += ["", f"peak memory: GPU allocator {pg:.0f} MiB; " if pg is not None else "",
              f"process max RSS {res['max_rss_mib']:.0f} MiB", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
