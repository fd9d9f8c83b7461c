"""Harmony on simulated data: content separated from pose, against the library's beta-VAE.

Three experiments (``--experiments``), each with ``HarmonyEstimator`` and
``CFASLVAE(model_type="betavae")`` trained on the same images:

- ``rigid2d``: projections of the 2-conformation molecule of
  :func:`sklearn_disentangle.datasets.cryoem.molecule_blobs` seen from **one** viewing
  direction (``CryoEMConformationDataset(n_views=1)``), rotated in-plane by a random angle in
  [0, 360) (``cryoem.rotations.rotate_images``), shifted by a random sub-pixel shift in
  ``[-max_shift, max_shift]`` (``cryoem.projection.shift_images``) and given white Gaussian
  noise at ``--snr``. No CTF.
- ``rigid3d``: ``make_subtomograms`` (2 conformations, uniform random 3-D rotations, shifts,
  noise at ``--snr``); with ``--max-angle3d A`` the same molecule rotated by at most A degrees
  (uniform axis), an easier case.
- ``contrast``: scikit-learn's digits 0 and 1 at ``--size`` px (upright,
  ``make_rotated_digits(n_angles=1)``), multiplied by a random gain ``U(0.35, 1.0)``.
- ``contrast_particles``: the 2-conformation projections of ``rigid2d`` at ``--size`` px with
  no rotation or shift, scaled to a maximum of 1, multiplied by a random gain
  ``U(--gain-low, 1.0)`` and given white noise at ``--contrast-snr`` (of the mean gain's
  image): the gain, not the conformation, carries most of the pixel variance.

Reported per method: KMeans (k=2) adjusted Rand index of the codes against the
conformation (digit), plus the pose recovery:

- ``rigid2d``: circular correlation (Jammalamadaka-SenGupta) of predicted vs true in-plane
  angle, for ``pred ~ true + c`` and for the mirrored ``pred ~ -true + c`` (the canonical
  frame may be mirrored), the mean resultant length ``R = |mean exp(i (pred -+ true))|`` (1 =
  exact up to one global offset) overall and per conformation (each may pick its own
  canonical orientation), and the median angular error after removing the best offset;
- ``rigid3d``: median geodesic error between predicted and true rotations after the best
  global rotation (orthogonal Procrustes), against the same statistic for random rotations;
- ``contrast``: Pearson correlation of log predicted gain vs log true gain (a global factor
  is free).

Usage::

    python benchmarks/harmony_particles.py --quick                       # CPU smoke run (seconds)
    python benchmarks/harmony_particles.py --device cuda --write-results benchmarks/results/harmony_particles.md
    # the reference's arrangement: --content-from input --rotation-head axis_angle --no-resolve-3d
"""

import argparse
import json
import os
import platform
import pickle
import sys
import tempfile
import time

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from sklearn_disentangle import CFASLVAE, HarmonyEstimator
from sklearn_disentangle.cryoem.projection import shift_images
from sklearn_disentangle.cryoem.rotations import rotate_images
from sklearn_disentangle.harmony import model as harmony_model
from sklearn_disentangle.harmony.search import RotationSearch, superpose
from sklearn_disentangle.harmony.search import superposition_ncc as library_superposition_ncc
from sklearn_disentangle.datasets import make_rotated_digits
from sklearn_disentangle.cryoem.rotations import axis_angle_to_matrix
from sklearn_disentangle.datasets.cryoem import (
    CryoEMConformationDataset,
    make_subtomograms,
    molecule_blobs,
    render_volume,
)


# ----------------------------------------------------------------------------- data
def make_rigid2d(n, size, snr, max_shift, seed, hinge_angle=90.0):
    rng = np.random.RandomState(seed)
    data = CryoEMConformationDataset(box_size=size, n_conformations=2, n_views=1, hinge_angle=hinge_angle,
                                     random_state=seed)
    labels = rng.randint(2, size=n)
    clean = data.sample_observations_from_factors(np.stack([labels, np.zeros(n, int)], 1))
    psi = rng.uniform(0.0, 360.0, n)
    shifts = rng.uniform(-max_shift, max_shift, (n, 2))
    img = rotate_images(torch.as_tensor(clean), torch.as_tensor(psi, dtype=torch.float32))
    img = shift_images(img, torch.as_tensor(shifts)).numpy()
    sigma = np.sqrt(img.var(axis=(1, 2)).mean() / snr) if snr else 0.0
    X = (img + rng.standard_normal(img.shape) * sigma).astype(np.float32)
    templates = data.sample_observations_from_factors(np.array([[0, 0], [1, 0]]))
    return X, {"labels": labels, "psi": psi, "shifts": shifts, "templates": templates}


def make_rigid3d(n, size, snr, max_shift, seed, max_angle=None, hinge_angle=90.0):
    if max_angle is None:
        X, truth = make_subtomograms(n, size, n_conformations=2, snr=snr, max_shift=max_shift,
                                     hinge_angle=hinge_angle, random_state=seed)
        return X, {"labels": truth.labels, "rotations": truth.rotations, "shifts": truth.shifts,
                   "templates": truth.templates}
    # rotations by at most max_angle degrees: uniform axis, angle with density ~ a^2 (the
    # small-angle limit of the uniform measure), the same molecule and noise model
    rng = np.random.RandomState(seed)
    labels = rng.randint(2, size=n)
    axis = rng.standard_normal((n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    angle = np.deg2rad(max_angle) * rng.uniform(0, 1, n) ** (1 / 3)
    rotations = axis_angle_to_matrix(torch.as_tensor(axis * angle[:, None])).numpy()
    shifts = rng.uniform(-max_shift, max_shift, (n, 3))
    centres, sigmas, weights = molecule_blobs(np.linspace(0.0, 1.0, 2)[labels], size, hinge_angle)
    clean = render_volume(np.einsum("nij,nbj->nbi", rotations, centres) + shifts[:, None, :], sigmas, weights, size)
    sigma = float(np.sqrt(clean.var(axis=(1, 2, 3)).mean() / snr))
    X = (clean + rng.standard_normal(clean.shape) * sigma).astype(np.float32)
    templates = render_volume(molecule_blobs(np.linspace(0.0, 1.0, 2), size, hinge_angle)[0], sigmas, weights, size)
    return X, {"labels": labels, "rotations": rotations, "shifts": shifts, "templates": templates}


def make_contrast_particles(n, size, seed, gain_low=0.2, snr=20.0):
    rng = np.random.RandomState(seed)
    data = CryoEMConformationDataset(box_size=size, n_conformations=2, n_views=1, random_state=seed)
    labels = rng.randint(2, size=n)
    clean = data.sample_observations_from_factors(np.stack([labels, np.zeros(n, int)], 1))
    clean = clean / clean.max()
    gains = rng.uniform(gain_low, 1.0, n)
    img = clean * gains[:, None, None]
    sigma = np.sqrt(img.var(axis=(1, 2)).mean() / snr)
    X = (img + rng.standard_normal(img.shape) * sigma).astype(np.float32)
    return X, {"labels": labels, "gains": gains}


def make_contrast(n, size, seed):
    rng = np.random.RandomState(seed)
    digits = make_rotated_digits(None, resolution=size, n_angles=1, random_state=seed)
    keep = np.flatnonzero(digits.factors[:, 0] < 2)
    idx = rng.choice(keep, size=n, replace=len(keep) < n)
    gains = rng.uniform(0.35, 1.0, n)
    imgs = np.clip(digits.images[idx], 0.0, 1.0)
    X = (imgs * gains[:, None, None]).astype(np.float32)
    return X, {"labels": digits.factors[idx, 0], "gains": gains}


# ----------------------------------------------------------------------------- metrics
def ari(Z, labels, seed=0):
    return float(adjusted_rand_score(labels, KMeans(2, n_init=10, random_state=seed).fit_predict(Z)))


def circ_corr(a, b):
    """Jammalamadaka-SenGupta circular correlation of angles a, b (radians)."""
    ma, mb = np.angle(np.mean(np.exp(1j * a))), np.angle(np.mean(np.exp(1j * b)))
    sa, sb = np.sin(a - ma), np.sin(b - mb)
    return float(np.sum(sa * sb) / np.sqrt(np.sum(sa ** 2) * np.sum(sb ** 2)))


def fisher_lee(a, b):
    """Fisher-Lee (1983) circular correlation of angles a, b (radians).

    Unlike Jammalamadaka-SenGupta's it needs no mean direction, so it is defined for angles
    spread uniformly over the circle: 1 for ``b = a + c``, -1 for ``b = c - a``, any constant ``c``.
    """
    n = len(a)
    A, B = np.sum(np.cos(a) * np.cos(b)), np.sum(np.sin(a) * np.sin(b))
    C, D = np.sum(np.cos(a) * np.sin(b)), np.sum(np.sin(a) * np.cos(b))
    E, F, G, H = np.sum(np.cos(2 * a)), np.sum(np.sin(2 * a)), np.sum(np.cos(2 * b)), np.sum(np.sin(2 * b))
    return float(4 * (A * B - C * D) / np.sqrt((n ** 2 - E ** 2 - F ** 2) * (n ** 2 - G ** 2 - H ** 2)))


def angle_stats(pred_deg, true_deg, labels):
    a, b = np.deg2rad(pred_deg), np.deg2rad(true_deg)
    out = {}
    for name, sgn in (("same", 1), ("mirrored", -1)):
        d = np.exp(1j * (a - sgn * b))
        offset = np.angle(d.mean())
        err = np.rad2deg(np.abs(np.angle(d * np.exp(-1j * offset))))
        out[name] = {
            "circ_corr": circ_corr(a, sgn * b), "R": float(abs(d.mean())), "fisher_lee": fisher_lee(a, sgn * b),
            "circ_corr_per_class": [circ_corr(a[labels == c], sgn * b[labels == c]) for c in np.unique(labels)],
            "R_per_class": [float(abs(d[labels == c].mean())) for c in np.unique(labels)],
            "median_err_deg": float(np.median(err)),
        }
    return out


def rotation_errors(pred, true):
    """Geodesic errors (deg) of pred_i vs true_i C with the best global C (Procrustes)."""
    m = np.einsum("nji,njk->ik", true, pred)  # sum_i true_i^T pred_i
    u, _, vt = np.linalg.svd(m)
    d = np.sign(np.linalg.det(u @ vt))
    return geodesic_deg(true @ (u @ np.diag([1, 1, d]) @ vt), pred)


def rotation_stats(pred, true):
    """Median geodesic error (deg) of pred_i vs true_i C with the best global C (Procrustes)."""
    return float(np.median(rotation_errors(pred, true)))


def flipped_fraction(pred, true):
    """Fraction of samples more than 120 degrees from true_i C, C the best offset of the majority.

    A median error hides a second mode: samples aligned a half-turn away from the rest (a
    pseudo-symmetric template). C is picked among the samples' own offsets true_i^T pred_i
    (the first 200) as the one with the smallest median error, so the flipped minority does
    not pull it as it pulls the Procrustes mean.
    """
    cands = np.einsum("nji,njk->nik", true[:200], pred[:200])
    errs = [geodesic_deg(true @ c, pred) for c in cands]
    return float((errs[int(np.argmin([np.median(e) for e in errs]))] > 120).mean())


def geodesic_deg(a, b):
    """Angle (deg) of a_i^T b_i for stacks of rotation matrices."""
    rel = np.einsum("nji,njk->nik", a, b)
    return np.rad2deg(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))


SUPERPOSITION_CANDIDATES = 32  # global-grid rotations refined for the true structures' superposition


def _standardised(templates):
    t = torch.as_tensor(np.asarray(templates), dtype=torch.float32)[:, None]
    dims = tuple(range(1, t.ndim))
    return (t - t.mean(dims, keepdim=True)) / t.std(dims, keepdim=True)


def superposition_offsets(templates, n_candidates=SUPERPOSITION_CANDIDATES):
    """Matrices D_c: conformation 0's true template, best superposed (least squares) onto conformation c's.

    The simulator's common frame is the molecule's body frame, but with a 90-degree hinge
    swing the least-squares superposition of the two true structures is far from it (2-D
    -46 / -40 / -74 degrees for data seeds 0 / 1 / 2, 3-D about 105), so no intensity-based
    method can recover that frame. Truth composed with D_c (``R_i D_c``) is the frame a
    perfect superposition would give. The search refines the ``n_candidates`` best rotations
    of its global grid: with the grid's argmax alone (``n_candidates=1``, stops 20-22) it
    stopped in a second, weaker superposition (3-D 90 degrees, 2-D seed 2 -179 degrees).
    """
    t = _standardised(templates)
    k = t.ndim - 2
    search = RotationSearch(k, 360 if k == 2 else 1000, n_candidates=n_candidates)
    return superpose(t, t[:1], search)["matrix"].double().numpy()


def superposition_ncc(templates, matrix):
    """Normalised cross-correlation of template 0 and template 1 read at ``matrix r`` (both about
    their density centres): how well ``matrix`` superposes the two true structures."""
    t = _standardised(templates)
    return library_superposition_ncc(t[1:2], t[:1], torch.as_tensor(matrix, dtype=torch.float32))


def rotation_angle_deg(m):
    """Rotation angle (deg, 0-180) of one 2x2 or 3x3 rotation matrix."""
    c = m[0, 0] if len(m) == 2 else (np.trace(m) - 1) / 2
    return float(np.rad2deg(np.arccos(np.clip(c, -1, 1))))


def superposition_frames(templates):
    """The true structures' superpositions to score poses in: the least-squares optimum and, when
    the grid's argmax ends in another one (more than 30 degrees away), that second optimum.

    Returns a list of ``(D, offset_deg per conformation, ncc)``, best first. Two near-equal
    superpositions (3-D: NCC 0.865 and 0.850, 170 degrees apart) make the frame shared by
    the conformations ambiguous; a model whose frames agree with either is consistent.
    """
    frames = []
    for n_candidates in (SUPERPOSITION_CANDIDATES, 1):
        d = superposition_offsets(templates, n_candidates)
        if frames and rotation_angle_deg(frames[0][0][1].T @ d[1]) <= 30:
            continue  # the same superposition
        # 2-D: the signed in-plane offset; 3-D: the rotation angle
        offs = [float(np.rad2deg(np.arctan2(m[0, 1], m[0, 0]))) if len(m) == 2 else rotation_angle_deg(m) for m in d]
        frames.append((d, offs, superposition_ncc(templates, d[1])))
    return frames


def head_rotations(est, X):
    """The rotation head's prediction before the pose search (a fitted ``pose_search`` model)."""
    Xv = est._validate_input(X, reset=False)
    return est._infer(Xv, lambda m, xb: m._encode_prepared(m.prepare(xb))["head_matrix"]).astype(np.float64)


# ----------------------------------------------------------------------------- runs
def run_experiment(kind, args, seed):
    size = args.size3d if kind == "rigid3d" else args.size
    if kind == "rigid2d":
        X, truth = make_rigid2d(args.n, size, args.snr, args.max_shift, seed, args.hinge_angle)
    elif kind == "rigid3d":
        shift3d = args.max_shift if args.max_shift3d is None else args.max_shift3d
        X, truth = make_rigid3d(args.n3d, size, args.snr, shift3d, seed, args.max_angle3d, args.hinge_angle)
    elif kind == "contrast_particles":
        X, truth = make_contrast_particles(args.n, size, seed, args.gain_low, args.contrast_snr)
    else:
        X, truth = make_contrast(args.n, size, seed)
    labels = truth["labels"]
    res = {"kind": kind, "seed": seed, "n": len(X), "shape": list(X.shape[1:])}
    if kind in ("rigid2d", "rigid3d"):  # the true structures' superposition, once per data set
        res["hinge_angle"] = args.hinge_angle
        frames = superposition_frames(truth["templates"])
        offsets = frames[0][0]
        res["superposition_offset_deg"], res["superposition_ncc"] = frames[0][1], frames[0][2]
        if len(frames) > 1:
            res["superposition2_offset_deg"], res["superposition2_ncc"] = frames[1][1], frames[1][2]
    epochs = args.epochs3d if kind == "rigid3d" else args.epochs
    widths = tuple(args.encoder_widths) if args.encoder_widths else None
    if kind == "rigid3d" and args.rigid3d_widths:
        widths = tuple(args.rigid3d_widths)
    if args.quick:
        widths = {"rigid2d": (64, 32), "rigid3d": (4, 8, 32), "contrast": (8, 16, 32),
                  "contrast_particles": (8, 16, 32)}[kind]
    variants = [v for v in (("harmony", {}), ("harmony_no_half_turns", {"resolve_half_turns": False}))
                if v[0] == "harmony" and not args.only_no_half_turns
                or v[0] == "harmony_no_half_turns" and kind == "rigid2d" and (args.ablate_half_turns or args.only_no_half_turns)]
    for name, extra in variants:
        if kind == "rigid3d" and args.rotation_head:
            extra = dict(extra, rotation_head=args.rotation_head)
        if kind == "rigid3d" and args.no_resolve_3d:
            extra = dict(extra, resolve_half_turns=False)
        if args.content_from and kind in ("rigid2d", "rigid3d"):
            extra = dict(extra, content_from=args.content_from)
        if args.pose_search is not None and kind in ("rigid2d", "rigid3d"):
            extra = dict(extra, pose_search=args.pose_search)
        if args.content_warmup is not None:
            extra = dict(extra, content_warmup=args.content_warmup)
        if args.free_bits:
            extra = dict(extra, prior_free_bits=args.free_bits)
        if args.common_frame:
            extra = dict(extra, common_frame=True)
        est = HarmonyEstimator("contrast" if kind == "contrast_particles" else kind, z_dim=args.z_dim,
                               max_epochs=epochs, lr=args.lr, encoder_widths=widths,
                               augment_rotation=args.augment_rotation,
                               prior_kl_weight=args.prior_kl_weight, device=args.device, random_state=seed, **extra)
        t0 = time.perf_counter()
        est.fit(X)
        res[f"{name}_fit_s"] = time.perf_counter() - t0
        res[f"{name}_gamma"] = est.gamma_
        res[f"{name}_config"] = {k: est.get_params()[k] for k in ("content_from", "rotation_head",
                                                                   "resolve_half_turns", "lr", "encoder_widths")}
        res[f"{name}_config"]["pose_search"] = getattr(est, "pose_search_", 0)
        search = getattr(est.net_.module_, "rotation_search", None)
        res[f"{name}_config"]["search_candidates"] = search.n_candidates if search is not None else 0
        res[f"{name}_config"]["content_warmup"] = est.content_warmup_
        res[f"{name}_config"]["common_frame"] = est.common_frame
        res[f"{name}_config"]["prior_free_bits"] = est.prior_free_bits
        res[f"{name}_config"]["z_dim"] = est.z_dim
        res[f"{name}_history"] = {k: [float(v) for v in est.history_[:, k]]
                                  for k in ("train_loss", "train_pose_head", "train_kl_prior", "variational")
                                  if k in est.history_[-1]}
        res[f"{name}_final_loss"] = float(est.history_[-1, "train_loss"])
        res[f"{name}_ari"] = ari(est.transform(X), labels, seed)
        if args.save_models:
            os.makedirs(args.save_models, exist_ok=True)
            with open(os.path.join(args.save_models, f"{kind}_{name}_s{seed}.pkl"), "wb") as f:
                pickle.dump(est, f)
        params = est.transform_params(X)
        if kind == "rigid2d":
            res[f"{name}_angles"] = angle_stats(params["angle_deg"].to_numpy(), truth["psi"], labels)
            for tag in ("", "2"):
                if f"superposition{tag}_offset_deg" in res:
                    res[f"{name}_angles_superposed{tag}"] = angle_stats(
                        params["angle_deg"].to_numpy(),
                        truth["psi"] + np.take(res[f"superposition{tag}_offset_deg"], labels), labels)
            res[f"{name}_shift_corr"] = [float(np.corrcoef(params[c], truth["shifts"][:, i])[0, 1])
                                         for i, c in enumerate(("shift_x", "shift_y"))]
        elif kind == "rigid3d":
            pred = params[[f"r{i}{j}" for i in (1, 2, 3) for j in (1, 2, 3)]].to_numpy().reshape(-1, 3, 3)
            rand = np.linalg.qr(np.random.RandomState(seed).standard_normal((len(X), 3, 3)))[0]
            rand *= np.sign(np.linalg.det(rand))[:, None, None]
            res[f"{name}_rot_median_err_deg"] = rotation_stats(pred, truth["rotations"])
            for tag, frame in zip(("", "2"), frames):
                res[f"{name}_rot_median_err_deg_superposed{tag}"] = rotation_stats(
                    pred, truth["rotations"] @ frame[0][labels])
            if est.pose_search_:  # the rotation head alone, trained to predict the searched rotation
                head = head_rotations(est, X)
                res[f"{name}_head_rot_median_err_deg_per_class"] = [
                    rotation_stats(head[labels == c], truth["rotations"][labels == c]) for c in np.unique(labels)]
                res[f"{name}_head_vs_search_median_deg"] = float(np.median(geodesic_deg(head, pred)))
            res["random_rot_median_err_deg"] = rotation_stats(rand, truth["rotations"])
            res[f"{name}_rot_median_err_deg_per_class"] = [
                rotation_stats(pred[labels == c], truth["rotations"][labels == c]) for c in np.unique(labels)]
            res[f"{name}_rot_flipped_per_class"] = [
                flipped_fraction(pred[labels == c], truth["rotations"][labels == c]) for c in np.unique(labels)]
            res[f"{name}_shift_corr"] = [float(np.corrcoef(params[c], truth["shifts"][:, i])[0, 1])
                                         for i, c in enumerate(("shift_x", "shift_y", "shift_z"))]
        else:
            res[f"{name}_gain_log_corr"] = float(np.corrcoef(np.log(params["gain"]), np.log(truth["gains"]))[0, 1])
    for zd in args.vae_z:
        vae = CFASLVAE(z_dim=zd, model_type="betavae", max_epochs=epochs, lr=args.vae_lr, batch_size=64,
                       hidden_dim=32 if args.quick else None, device=args.device, random_state=seed)
        t0 = time.perf_counter()
        vae.fit(X)
        res[f"betavae_z{zd}_fit_s"] = time.perf_counter() - t0
        res[f"betavae_z{zd}_ari"] = ari(vae.transform(X), labels, seed)
    return res


def _ncc(r, tag):
    """', NCC x' of a superposition in a results row (absent in rows from before stop 23)."""
    return f", NCC {r[f'superposition{tag}_ncc']:.3f}" if f"superposition{tag}_ncc" in r else ""


def to_markdown(results, args, wall):
    lines = ["# Harmony on simulated particles, subtomograms and gain-varied images", "",
             f"Command: `python {' '.join(sys.argv)}`  ", f"Device: {device_name(args.device)}; "
             f"total wall time {wall:.0f} s; torch {torch.__version__}; seeds {args.seeds}.", ""]
    lines += ["| kind | seed | n | shape | model | KMeans ARI | pose recovery | fit (s) |",
              "|---|---|---|---|---|---|---|---|"]
    for r in results:
        head = f"| {r['kind']} | {r['seed']} | {r['n']} | {'x'.join(map(str, r['shape']))} "
        for name in ("harmony", "harmony_no_half_turns"):
            if f"{name}_ari" not in r:
                continue
            if r["kind"] == "rigid2d":
                s, m = r[f"{name}_angles"]["same"], r[f"{name}_angles"]["mirrored"]
                sup = r[f"{name}_angles_superposed"]["same"]
                offs = ", ".join(f"{v:.0f}" for v in r["superposition_offset_deg"])
                pose = (f"angle Fisher-Lee corr {s['fisher_lee']:.3f}, J-S circ. corr {s['circ_corr']:.3f} "
                        f"(per conformation "
                        f"{', '.join(f'{v:.3f}' for v in s['circ_corr_per_class'])}; mirrored fit {m['circ_corr']:.3f}); "
                        f"R {s['R']:.3f} (per conformation {', '.join(f'{v:.3f}' for v in s['R_per_class'])}); "
                        f"median err {s['median_err_deg']:.1f} deg; "
                        f"in the superposition frame (conformations {offs} deg{_ncc(r, '')}): R {sup['R']:.3f}, "
                        f"Fisher-Lee corr {sup['fisher_lee']:.3f}, J-S circ. corr {sup['circ_corr']:.3f}, median err "
                        f"{sup['median_err_deg']:.1f} deg; "
                        + (f"in the second superposition (conformations "
                           f"{', '.join(f'{v:.0f}' for v in r['superposition2_offset_deg'])} deg{_ncc(r, '2')}): "
                           f"Fisher-Lee corr {r[f'{name}_angles_superposed2']['same']['fisher_lee']:.3f}, median err "
                           f"{r[f'{name}_angles_superposed2']['same']['median_err_deg']:.1f} deg; "
                           if f"{name}_angles_superposed2" in r else "")
                        + f"shift corr "
                        f"{', '.join(f'{v:.2f}' for v in r[f'{name}_shift_corr'])}")
            elif r["kind"] == "rigid3d":
                pose = (f"median rotation err {r[f'{name}_rot_median_err_deg']:.1f} deg (per conformation "
                        f"{', '.join(f'{v:.1f}' for v in r[f'{name}_rot_median_err_deg_per_class'])}"
                        + (f", more than 120 deg off (a flipped mode) "
                           f"{', '.join(f'{v:.0%}' for v in r[f'{name}_rot_flipped_per_class'])}"
                           if f"{name}_rot_flipped_per_class" in r else "")
                        + f"; random rotations "
                        f"{r['random_rot_median_err_deg']:.1f}); in the superposition frame (conformations "
                        f"{', '.join(f'{v:.0f}' for v in r['superposition_offset_deg'])} deg apart{_ncc(r, '')}) "
                        f"{r[f'{name}_rot_median_err_deg_superposed']:.1f} deg"
                        + (f", in the second superposition ("
                           f"{', '.join(f'{v:.0f}' for v in r['superposition2_offset_deg'])} deg apart{_ncc(r, '2')}) "
                           f"{r[f'{name}_rot_median_err_deg_superposed2']:.1f} deg"
                           if f"{name}_rot_median_err_deg_superposed2" in r else "")
                        + f"; shift corr "
                        f"{', '.join(f'{v:.2f}' for v in r[f'{name}_shift_corr'])}")
                if f"{name}_head_vs_search_median_deg" in r:
                    pose += (f"; rotation head alone: per conformation "
                             f"{', '.join(f'{v:.1f}' for v in r[f'{name}_head_rot_median_err_deg_per_class'])} deg, "
                             f"{r[f'{name}_head_vs_search_median_deg']:.1f} deg from the search")
            else:
                pose = f"corr(log gain, log true gain) {r[f'{name}_gain_log_corr']:.3f}"
            cfg = r[f"{name}_config"]
            label = f"Harmony (content_from={cfg['content_from']!r}, resolve_half_turns={cfg['resolve_half_turns']}"
            label += f", rotation_head={cfg['rotation_head']!r}" if r["kind"] == "rigid3d" else ""
            label += f", pose_search={cfg.get('pose_search', 0)}"
            label += f" ({cfg['search_candidates']} candidates)" if cfg.get("search_candidates") else ""
            label += f", content_warmup={cfg['content_warmup']}" if "content_warmup" in cfg else ""
            label += f", z_dim={cfg['z_dim']}" if cfg.get("z_dim", 1) != 1 else ""
            label += f", common_frame={cfg['common_frame']})" if "common_frame" in cfg else ")"
            lines.append(head + f"| {label} | {r[f'{name}_ari']:.3f} | {pose} | {r[f'{name}_fit_s']:.1f} |")
        for z in args.vae_z:
            if f"betavae_z{z}_ari" not in r:
                continue
            lines.append(head + f"| beta-VAE (CFASLVAE betavae, z_dim={z}) | {r[f'betavae_z{z}_ari']:.3f} | - | "
                         f"{r[f'betavae_z{z}_fit_s']:.1f} |")
    lines += ["", "Raw results (JSON):", "", "```json", json.dumps(results, indent=1), "```", ""]
    return "\n".join(lines)


def device_name(device):
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiments", nargs="+", default=["rigid2d", "rigid3d", "contrast"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--n", type=int, default=4000)
    p.add_argument("--n3d", type=int, default=2000)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--size3d", type=int, default=32)
    p.add_argument("--snr", type=float, default=2.0)
    p.add_argument("--max-shift", type=float, default=2.0)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--epochs3d", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--vae-lr", type=float, default=1e-3)
    p.add_argument("--vae-z", nargs="*", type=int, default=[1, 10])
    p.add_argument("--encoder-widths", nargs="*", type=int, default=None,
                   help="Harmony encoder widths (default: the reference's networks)")
    p.add_argument("--augment-rotation", type=float, default=90.0)
    p.add_argument("--prior-kl-weight", type=float, default=1.0)
    p.add_argument("--gain-low", type=float, default=0.2, help="contrast_particles: gains U(gain_low, 1)")
    p.add_argument("--contrast-snr", type=float, default=20.0, help="contrast_particles: SNR of the noise")
    p.add_argument("--rotation-head", default=None, choices=["6d", "axis_angle"],
                   help="rigid3d: HarmonyEstimator(rotation_head=...) (default: the estimator's)")
    p.add_argument("--hinge-angle", type=float, default=90.0,
                   help="rigid2d/rigid3d: domain swing in degrees between the two conformations (molecule_blobs)")
    p.add_argument("--max-angle3d", type=float, default=None,
                   help="rigid3d: rotations of at most this many degrees (default: uniform over SO(3))")
    p.add_argument("--max-shift3d", type=float, default=None,
                   help="rigid3d: shifts U(-s, s) voxels per axis (default: --max-shift)")
    p.add_argument("--rigid3d-widths", nargs="*", type=int, default=None,
                   help="rigid3d: Harmony encoder widths (default: --encoder-widths, else the reference's)")
    p.add_argument("--no-resolve-3d", action="store_true", help="rigid3d: resolve_half_turns=False")
    p.add_argument("--pose-search", type=int, default=None,
                   help="rigid2d/rigid3d: HarmonyEstimator(pose_search=...) (default: the estimator's)")
    p.add_argument("--search-candidates", type=int, default=None,
                   help="grid rotations the pose search refines per sample (harmony.model.SEARCH_CANDIDATES, "
                        "default 4; 1 = the argmax-only search before stop 22)")
    p.add_argument("--content-warmup", type=int, default=None,
                   help="HarmonyEstimator(content_warmup=...) epochs (default: the estimator's)")
    p.add_argument("--z-dim", type=int, default=1, help="HarmonyEstimator(z_dim=...); KMeans(2) runs on all of it")
    p.add_argument("--free-bits", type=float, default=0.0, help="HarmonyEstimator(prior_free_bits=...)")
    p.add_argument("--common-frame", action="store_true", help="HarmonyEstimator(common_frame=True)")
    p.add_argument("--content-from", default=None, choices=["input", "canonical"],
                   help="rigid2d/rigid3d: HarmonyEstimator(content_from=...) (default: the estimator's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--ablate-half-turns", action="store_true",
                   help="rigid2d: also train with resolve_half_turns=False (the reference's behaviour)")
    p.add_argument("--only-no-half-turns", action="store_true", help="rigid2d: only resolve_half_turns=False")
    p.add_argument("--quick", action="store_true", help="tiny CPU smoke run")
    p.add_argument("--write-results", default=None)
    p.add_argument("--save-models", default=None, help="folder to pickle each fitted Harmony estimator into")
    args = p.parse_args(argv)
    if args.search_candidates is not None:
        harmony_model.SEARCH_CANDIDATES = args.search_candidates
    if args.quick:
        args.n, args.n3d, args.size, args.size3d, args.epochs, args.epochs3d = 256, 64, 16, 16, 2, 2
    t0 = time.perf_counter()
    results = []
    for kind in args.experiments:
        for seed in args.seeds:
            r = run_experiment(kind, args, seed)
            print(json.dumps(r), flush=True)
            results.append(r)
    wall = time.perf_counter() - t0
    md = to_markdown(results, args, wall)
    if args.write_results:
        folder = os.path.dirname(os.path.abspath(args.write_results))
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(md)
        os.replace(tmp, args.write_results)
    print(md)


if __name__ == "__main__":
    main()
