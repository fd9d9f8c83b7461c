"""Is the frame shared by the two simulated conformations unique? The superposition landscape.

"One offset for both conformations" (issue 7) scores poses in the frame where the two true
structures are best superposed. That frame is only well defined when one superposition is
clearly better than every other; with the simulator's default 90-degree domain swing the 3-D
structures have two near-equal ones (``harmony_particles.md``, "Stop 23"). This script maps the
normalised cross-correlation (NCC, :func:`sklearn_disentangle.harmony.search.superposition_ncc`)
of conformation 1 read at ``D r`` against conformation 0, over all rotations ``D``, and lists
the distinct local optima (more than ``--min-separation`` degrees apart), best first:

- 2-D (``rigid2d`` templates, one per data seed since the view differs): a 0.25-degree scan;
- 3-D (``rigid3d`` templates, the same for every data seed): the super-Fibonacci grid of
  ``--grid3d`` rotations, each grid local maximum refined by a local hill-climb (3x3x3
  rotation-vector lattices of halving step).

``margin`` is the best NCC minus the runner-up's: near 0, a model may legitimately share
either frame between its conformations. Offsets use the benchmark's convention (2-D: signed
in-plane angle of ``D``; 3-D: rotation angle of ``D`` from the body frame)::

    python benchmarks/harmony_superposition_landscape.py --hinge-angles 90 45 30
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harmony_particles import _standardised, make_rigid2d, make_rigid3d, rotation_angle_deg  # noqa: E402

from sklearn_disentangle.cryoem.rotations import rotation_grid  # noqa: E402
from sklearn_disentangle.harmony.search import RotationSearch, superposition_ncc  # noqa: E402
from sklearn_disentangle.harmony.warps import rotation_2d  # noqa: E402


def _ncc(t, matrices):
    """NCC of conformation 1 read at each rotation against conformation 0 (z-scored templates ``t``)."""
    return superposition_ncc(t[1:2], t[:1], matrices.to(torch.float32)).double().numpy()


def _angle_between(a, b):
    return rotation_angle_deg(a.T @ b)


def _distinct(optima, min_sep):
    """Greedy: keep optima (matrix, ncc), best first, that are ``min_sep`` degrees from every kept one."""
    kept = []
    for m, s in sorted(optima, key=lambda o: -o[1]):
        if all(_angle_between(m, k) > min_sep for k, _ in kept):
            kept.append((m, s))
    return kept


def landscape_2d(templates, min_sep, step=0.25):
    t = _standardised(templates)
    mats = rotation_2d(torch.as_tensor(np.deg2rad(np.arange(0.0, 360.0, step))))
    s = _ncc(t, mats)
    peaks = [i for i in range(len(s)) if s[i] >= max(s[i - 1], s[(i + 1) % len(s)])]
    return _distinct([(mats[i].numpy(), float(s[i])) for i in peaks], min_sep)


def _hill_climb(t, m, step, rounds=6):
    """Local refinement of one rotation: the best of the search's 3x3x3 lattice, step halving."""
    best = _ncc(t, m[None])[0]
    lattice = RotationSearch(3, 1)
    for _ in range(rounds):
        cand = m[None] @ lattice.offsets(step, torch.float64)
        s = _ncc(t, cand)
        if s.max() > best:
            best, m = float(s.max()), cand[int(s.argmax())]
        step /= 2
    return m, best


def landscape_3d(templates, min_sep, n_grid, n_refine=12):
    t = _standardised(templates)
    grid = rotation_grid(n_grid, dtype=torch.float64)
    s = _ncc(t, grid)
    g = grid.numpy()
    ang = np.rad2deg(np.arccos(np.clip((np.einsum("aij,bij->ab", g, g) - 1) / 2, -1, 1)))
    spacing = float(np.median(np.sort(ang, 1)[:, 1]))
    peaks = [i for i in range(len(g)) if s[i] >= s[ang[i] < 1.6 * spacing].max()]
    peaks = sorted(peaks, key=lambda i: -s[i])[:n_refine]
    refined = [_hill_climb(t, grid[i], np.deg2rad(spacing) / 2) for i in peaks]
    return _distinct([(m.numpy(), float(v)) for m, v in refined], min_sep)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hinge-angles", nargs="+", type=float, default=[90.0, 45.0, 30.0])
    p.add_argument("--seeds2d", nargs="*", type=int, default=[0, 1, 2], help="2-D data seeds (the view differs)")
    p.add_argument("--size", type=int, default=32, help="2-D side (px)")
    p.add_argument("--size3d", type=int, default=16, help="3-D side (voxels)")
    p.add_argument("--grid3d", type=int, default=4000, help="3-D rotations scanned before the hill-climb")
    p.add_argument("--min-separation", type=float, default=30.0, help="degrees between distinct optima")
    p.add_argument("--top", type=int, default=3, help="optima listed per structure pair")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    print(f"Command: `python benchmarks/{os.path.basename(__file__)} {' '.join(argv or sys.argv[1:])}`\n")
    print("| hinge (deg) | data | optima: offset (deg) / NCC, best first | margin | runner-up's distance from best (deg) |")
    print("|---|---|---|---|---|")
    for hinge in args.hinge_angles:
        rows = [(f"2-D seed {s}", make_rigid2d(2, args.size, 0.0, 0.0, s, hinge)[1]["templates"], "2d")
                for s in args.seeds2d]
        templates3d = make_rigid3d(2, args.size3d, 2.0, 0.0, 0, None, hinge)[1]["templates"]
        rows.append((f"3-D {args.size3d}^3", templates3d, "3d"))
        for name, templates, kind in rows:
            if kind == "2d":
                optima = landscape_2d(templates, args.min_separation)
                offsets = [float(np.rad2deg(np.arctan2(m[0, 1], m[0, 0]))) for m, _ in optima]
            else:
                optima = landscape_3d(templates, args.min_separation, args.grid3d)
                offsets = [rotation_angle_deg(m) for m, _ in optima]
            listed = ", ".join(f"{o:.1f} / {s:.3f}" for o, (_, s) in zip(offsets[:args.top], optima))
            margin = optima[0][1] - optima[1][1] if len(optima) > 1 else float("nan")
            gap = _angle_between(optima[0][0], optima[1][0]) if len(optima) > 1 else float("nan")
            print(f"| {hinge:g} | {name} | {listed} | {margin:.3f} | {gap:.1f} |", flush=True)
    print(f"\nTotal {time.perf_counter() - t0:.0f} s (CPU, 1 thread).")


if __name__ == "__main__":
    main()
