"""Score a saved Harmony model's poses in each superposition of the true structures.

The two simulated conformations have more than one near-equal least-squares superposition
(``superposition_frames`` in ``harmony_particles.py``), so "one offset for both conformations" is
scored against each. The model is a pickle written by ``harmony_particles.py --save-models``; the
data are regenerated from the same arguments (defaults: the benchmark's rigid3d and rigid2d runs)::

    python benchmarks/harmony_rescore_frames.py rigid3d 0 DIR/rigid3d_harmony_s0.pkl
    python benchmarks/harmony_rescore_frames.py rigid2d 2 DIR/rigid2d_harmony_s2.pkl --own-frames

``--own-frames`` drops a fitted ``common_frame`` before scoring; ``--common-frame`` (re)fits it
with the library as it is now (for a model trained without it, or by older code). Prints one
line per superposition: its offset, its normalised cross-correlation (NCC) on the true
structures, and the error; with ``--common-frame`` also the angle of each anchor's correction.
"""
import argparse
import os
import pickle
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harmony_particles import (angle_stats, make_rigid2d, make_rigid3d, rotation_angle_deg,  # noqa: E402
                               rotation_stats, superposition_frames)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=("rigid2d", "rigid3d"))
    p.add_argument("seed", type=int)
    p.add_argument("model")
    p.add_argument("--n", type=int, default=None, help="images (default 2000 for rigid2d, 1000 for rigid3d)")
    p.add_argument("--size", type=int, default=None, help="side in pixels (default 32 / 16)")
    p.add_argument("--snr", type=float, default=2.0)
    p.add_argument("--max-shift", type=float, default=None, help="default 2.0 / 1.5")
    p.add_argument("--hinge-angle", type=float, default=90.0)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--own-frames", action="store_true", help="drop a fitted common_frame before scoring")
    group.add_argument("--common-frame", action="store_true", help="(re)fit common_frame with the current code")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    if args.kind == "rigid3d":
        X, truth = make_rigid3d(args.n or 1000, args.size or 16, args.snr,
                                1.5 if args.max_shift is None else args.max_shift, args.seed, None, args.hinge_angle)
    else:
        X, truth = make_rigid2d(args.n or 2000, args.size or 32, args.snr,
                                2.0 if args.max_shift is None else args.max_shift, args.seed, args.hinge_angle)
    with open(args.model, "rb") as f:
        est = pickle.load(f)
    if args.own_frames:
        est.frame_anchors_ = est.frame_matrices_ = est.frame_shifts_ = None
    if args.common_frame:
        t1 = time.perf_counter()
        est.set_params(common_frame=True)._fit_common_frame(est.transform(X))
        turns = [rotation_angle_deg(m) for m in est.frame_matrices_]
        print(f"common frame refitted in {time.perf_counter() - t1:.1f} s; corrections (deg) "
              f"{np.round(turns, 1).tolist()}, reference anchor {est.frame_reference_}")
    params, labels = est.transform_params(X), truth["labels"]
    for i, (d, offs, ncc) in enumerate(superposition_frames(truth["templates"])):
        name = "optimum" if i == 0 else "second"
        if args.kind == "rigid3d":
            pred = params[[f"r{a}{b}" for a in (1, 2, 3) for b in (1, 2, 3)]].to_numpy().reshape(-1, 3, 3)
            score = f"median rotation error {rotation_stats(pred, truth['rotations'] @ d[labels]):.1f} deg"
        else:
            s = angle_stats(params["angle_deg"].to_numpy(), truth["psi"] + np.take(offs, labels), labels)["same"]
            score = f"Fisher-Lee {s['fisher_lee']:.3f}, R {s['R']:.3f}, median error {s['median_err_deg']:.1f} deg"
        print(f"{args.kind} seed {args.seed}: {name} superposition (offset {offs[1]:.1f} deg, NCC {ncc:.3f}): {score}")
    print(f"time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
