"""Exhaustive rotation search against a template, for Harmony's ``pose_search``.

A rotation that maps a noisy sample onto a template is a global optimisation problem: the
reconstruction error is flat or misleading far from the answer, so a pose head trained by
gradient alone can stay at chance (as Harmony's ``rigid3d`` did on uniformly rotated
subtomograms). Cryo-EM programs search instead. :class:`RotationSearch` scores every
rotation of a fixed global grid (:func:`~sklearn_disentangle.cryoem.rotations.rotation_grid`
in 3-D, evenly spaced angles in 2-D), on 2x-pooled data when every side is at least 16, then
refines the best one by rounds of local lattices of halving step, at full resolution.

The score of a candidate rotation ``L`` for a sample ``y`` (already in the current frame) and
its template ``t`` is ``2 <y, L t> - |L t|^2``: minus the squared error ``|y - L t|^2``
but for ``|y|^2``, which does not depend on ``L``. ``L t`` (the template put into the pose ``L``, zero outside the
frame) is applied as a precomputed sparse interpolation matrix per candidate, so one sparse
product scores all candidates of a batch; the template, not the noisy sample, is resampled,
so the noise of ``y`` is the same for every candidate.

Examples
--------
>>> import torch
>>> from sklearn_disentangle.harmony.search import RotationSearch
>>> from sklearn_disentangle.harmony.warps import rotation_2d, warp_from_canonical
>>> t = torch.zeros(1, 1, 15, 15); t[0, 0, 7, 11] = 1.0; t[0, 0, 4, 7] = 0.5  # asymmetric
>>> truth = rotation_2d(torch.tensor([1.0]))
>>> x = warp_from_canonical(t, truth, torch.zeros(1, 2))
>>> found = RotationSearch(2, 72)(x, t, torch.zeros(1, 2))
>>> bool(torch.allclose(found, truth, atol=0.05))
True
"""

import math
import numbers
import warnings

import torch
import torch.nn.functional as F

from ..cryoem.rotations import rotation_grid
from .warps import _pixel_coords, axis_angle_to_matrix, rotation_2d, warp_from_canonical, warp_to_canonical

__all__ = ["RotationSearch", "density_centre", "interpolation_matrix", "superpose", "superposition_ncc"]

_SCORE_BLOCK = 1 << 24  # at most this many values of candidate images at once


def density_centre(x, quantile=0.9):
    """Centre of mass of the densest part of each sample, in centred pixel coordinates.

    The sample is smoothed by a 3-pixel box filter, everything below its ``quantile`` (per
    sample) is set to zero, and the centre of mass of the rest is returned. A rotation about
    the frame centre moves this centre with the content, so it gives a shift that does not
    need the rotation; with ``pose_search`` Harmony's shift is this centre plus the shift
    head's bounded correction.

    Parameters
    ----------
    x : tensor of shape (n, C, H, W) or (n, C, D, H, W)
    quantile : float, default=0.9

    Returns
    -------
    centre : tensor of shape (n, k)
        ``(x, y[, z])``, relative to the pixel ``size // 2`` of every axis.

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.harmony.search import density_centre
    >>> img = torch.zeros(1, 1, 15, 15); img[0, 0, 9, 4:7] = 1.0  # x = -2, y = +2
    >>> density_centre(img).round(decimals=3) + 0.0
    tensor([[-2.,  2.]])
    """
    k = x.ndim - 2
    pool = F.avg_pool2d if k == 2 else F.avg_pool3d
    smooth = pool(x.sum(1, keepdim=True), 3, stride=1, padding=1, count_include_pad=False)[:, 0]
    flat = smooth.flatten(1)
    w = torch.relu(flat - torch.quantile(flat, quantile, dim=1, keepdim=True)) + 1e-12
    coords = _pixel_coords(x.shape[2:], x.dtype, x.device)  # (P, k)
    return (w @ coords) / w.sum(1, keepdim=True)


def interpolation_matrix(spatial, src):
    """Sparse matrix of (bi/tri)linear interpolation at centred source coordinates.

    Row ``p`` holds the weights that sample a flattened image of shape ``spatial`` at
    ``src[p]`` exactly as :func:`~sklearn_disentangle.harmony.warps.warp_to_canonical`
    does (coordinates ``(x, y[, z])`` relative to the pixel ``size // 2`` of every axis,
    zero outside the frame).

    Parameters
    ----------
    spatial : tuple of int
        ``(H, W)`` or ``(D, H, W)``.
    src : tensor of shape (P, k)
        Source coordinates, ``k = len(spatial)``.

    Returns
    -------
    matrix : sparse CSR tensor of shape (P, prod(spatial))

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.harmony.search import interpolation_matrix
    >>> m = interpolation_matrix((3, 3), torch.tensor([[0.5, 0.0]]))  # halfway right of the centre
    >>> m.to_dense()[0].reshape(3, 3)
    tensor([[0.0000, 0.0000, 0.0000],
            [0.0000, 0.5000, 0.5000],
            [0.0000, 0.0000, 0.0000]])
    """
    k = len(spatial)
    sizes = torch.tensor(spatial[::-1], device=src.device)  # (W, H[, D]) for (x, y[, z])
    strides = torch.tensor([math.prod(spatial[::-1][:a]) for a in range(k)], device=src.device)
    idx = src + torch.div(sizes, 2, rounding_mode="floor").to(src.dtype)
    base = torch.floor(idx)
    frac = idx - base
    base = base.long()
    rows, cols, vals = [], [], []
    p = torch.arange(src.shape[0], device=src.device)
    for corner in range(2 ** k):
        bits = torch.tensor([(corner >> a) & 1 for a in range(k)], device=src.device)
        ii = base + bits
        w = torch.where(bits.bool(), frac, 1 - frac).prod(1)
        ok = ((ii >= 0) & (ii < sizes)).all(1) & (w != 0)
        rows.append(p[ok])
        cols.append((ii[ok] * strides).sum(1))
        vals.append(w[ok])
    coo = torch.sparse_coo_tensor(torch.stack([torch.cat(rows), torch.cat(cols)]), torch.cat(vals),
                                  (src.shape[0], math.prod(spatial)), check_invariants=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
        return coo.coalesce().to_sparse_csr()


class RotationSearch:
    """Global grid search over rotations, then local refinement, of samples against templates.

    Parameters
    ----------
    k : {2, 3}
        Spatial dimension.
    n_rotations : int
        Size of the global grid: angles ``2 pi i / n`` in 2-D, the super-Fibonacci set
        (:func:`~sklearn_disentangle.cryoem.rotations.rotation_grid`) in 3-D.
    refine_rounds : int, default=3
        Local rounds after the global one. Round ``j`` tries the current rotation composed
        with the offsets ``{-s, 0, s}`` (2-D: angle; 3-D: a 3x3x3 lattice of rotation vectors)
        of step ``s = spacing / 2 ** (j + 1)``, ``spacing`` being the grid's (``2 pi / n`` in
        2-D, ``(8 pi^2 / n) ** (1/3)`` in 3-D), so the reach covers half a grid cell.
    n_candidates : int, default=1
        How many of the global round's best rotations are refined (each by all local
        rounds); the one with the best final score wins. More than one guards against a
        coarse grid point of a wrong but similar-looking pose (a half-turn about a
        pseudo-symmetry axis) outscoring the grid point next to the right one, at the cost of
        ``n_candidates`` times the local rounds (see Notes).

    Notes
    -----
    The sparse matrices (one row block per candidate) are built on the first call for each
    image shape, device and dtype and kept; they are not pickled. The global round on
    ``n`` rotations of an image of ``V`` pixels (``V / 2^k`` when pooled) holds
    ``n * V * 2^k`` weights: 4.2 million for 1000 rotations of 16^3 volumes.

    The best grid point is not always next to the best rotation: on simulated 16^3
    subtomograms, refining only the grid's argmax left 29 % and 38 % of two conformations'
    samples a half-turn away from the rest (about the trained templates' pseudo-two-fold
    axis); refining the best 4 grid points with the same trained model left 5 % and 7 %,
    and models trained with 4 (Harmony's ``pose_search``) 0-2 %; refining the argmax
    without pooling left 29 % and 36 % (``benchmarks/results/harmony_particles.md``, "Stop
    22"). Inference took 2.9 times as long with 4 candidates as with 1.

    Examples
    --------
    >>> from sklearn_disentangle.harmony.search import RotationSearch
    >>> s = RotationSearch(3, 1000)
    >>> round(s.spacing * 180 / 3.141592653589793, 1)
    24.6
    """

    def __init__(self, k, n_rotations, refine_rounds=3, n_candidates=1):
        if k not in (2, 3):
            raise ValueError(f"k must be 2 or 3, got {k!r}.")
        self.k = int(k)
        self.n_rotations = int(n_rotations)
        self.refine_rounds = int(refine_rounds)
        self.n_candidates = self._check_candidates(n_candidates)
        self._cache = {}

    def _check_candidates(self, n_candidates):
        if isinstance(n_candidates, bool) or not isinstance(n_candidates, numbers.Integral) \
                or not 1 <= n_candidates <= self.n_rotations:
            raise ValueError(f"n_candidates must be an integer between 1 and n_rotations ({self.n_rotations}), "
                             f"got {n_candidates!r}.")
        return int(n_candidates)

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.__dict__.setdefault("n_candidates", 1)  # pickled before n_candidates existed

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state

    @property
    def spacing(self):
        """Typical distance between neighbouring grid rotations, radians."""
        if self.k == 2:
            return 2 * math.pi / self.n_rotations
        return (8 * math.pi ** 2 / self.n_rotations) ** (1 / 3)

    def grid(self, dtype=torch.float32, device=None):
        """The global grid, matrices of shape (n_rotations, k, k)."""
        if self.k == 2:
            return rotation_2d(torch.arange(self.n_rotations, dtype=torch.float64) * self.spacing).to(dtype=dtype,
                                                                                                      device=device)
        return rotation_grid(self.n_rotations, dtype=dtype, device=device)

    def offsets(self, step, dtype=torch.float32, device=None):
        """The local lattice of one refinement round (identity included), matrices (m, k, k)."""
        g = torch.tensor([-step, 0.0, step], dtype=torch.float64)
        if self.k == 2:
            return rotation_2d(g).to(dtype=dtype, device=device)
        v = torch.stack(torch.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
        return axis_angle_to_matrix(v).to(dtype=dtype, device=device)

    @staticmethod
    def pooled(spatial):
        """Whether the global round runs on 2x-pooled images (every side >= 16)."""
        return min(spatial) >= 16

    def _plan(self, spatial, dtype, device):
        key = (tuple(spatial), dtype, str(device))
        if key not in self._cache:
            grid = self.grid(torch.float64)
            # the global round's pixel q (pooled by f: it covers pixels f q ... f q + f - 1) sits at
            # the centred full-resolution coordinate u = f q + o; the template put into pose R is
            # sampled at R^T u, i.e. at (R^T u - o) / f in the round's own coordinates
            f = 2 if self.pooled(spatial) else 1
            coarse = tuple(s // f for s in spatial)
            o = torch.tensor([f * (c // 2) + (f - 1) / 2 - s // 2 for s, c in zip(spatial, coarse)][::-1],
                             dtype=torch.float64)
            q = _pixel_coords(coarse, torch.float64, "cpu")
            src = (torch.einsum("pi,nij->npj", f * q + o, grid) - o) / f
            p_global = interpolation_matrix(coarse, src.reshape(-1, self.k))
            self._cache[key] = (grid.to(dtype=dtype, device=device), coarse,
                                p_global.to(dtype=dtype).to(device), [])
        return self._cache[key]

    def _round(self, plan, j, spatial, dtype, device):
        """Offsets and interpolation matrix of local round ``j`` (built on first use, kept in ``plan``)."""
        rounds = plan[3]
        while len(rounds) <= j:
            offsets = self.offsets(self.spacing / 2 ** (len(rounds) + 1), torch.float64)
            u = _pixel_coords(spatial, torch.float64, "cpu")
            m = interpolation_matrix(spatial, torch.einsum("pi,nij->npj", u, offsets).reshape(-1, self.k))
            rounds.append((offsets.to(dtype=dtype, device=device), m.to(dtype=dtype).to(device)))
        return rounds[j]

    @staticmethod
    def _scores(matrix, y, template):
        """``2 <y, L t> - |L t|^2`` for every candidate ``L`` (row block of ``matrix``): (m, n).

        One template for all samples (``template`` of length 1) is resampled once.
        """
        n, c = y.shape[:2]
        v = y[0, 0].numel()
        m = matrix.shape[0] // v
        if template.shape[0] == 1 and n > 1:
            lt = torch.sparse.mm(matrix, template.reshape(c, v).T.contiguous()).view(m, v, c)
            return torch.einsum("mvc,ncv->mn", 2 * lt, y.reshape(n, c, v)) - lt.pow(2).sum((1, 2))[:, None]
        ys = y.reshape(n * c, v).T
        ts = template.reshape(n * c, v).T
        chunk = max(1, _SCORE_BLOCK // (m * v))
        out = []
        for start in range(0, n * c, chunk):
            lt = torch.sparse.mm(matrix, ts[:, start:start + chunk].contiguous()).view(m, v, -1)
            out.append((lt * (2 * ys[None, :, start:start + chunk] - lt)).sum(1))
        return torch.cat(out, 1).view(m, n, c).sum(2)

    @torch.no_grad()
    def __call__(self, x, template, shift, refine_rounds=None, n_candidates=None):
        """The rotation ``M`` of the pose ``(M, shift)`` that best brings ``template`` onto ``x``.

        Parameters
        ----------
        x : tensor of shape (n, C, *spatial)
            Observed samples.
        template : tensor of shape (n, C, *spatial) or (1, C, *spatial)
            Canonical images: one per sample, or one for all.
        shift : tensor of shape (n, k)
            The shift of each pose (kept).
        refine_rounds : int or None, default=None
            Local rounds for this call (``None``: the instance's ``refine_rounds``); each
            further round halves the residual step, at 27 (2-D: 3) candidates per sample.
        n_candidates : int or None, default=None
            Grid rotations refined for this call (``None``: the instance's ``n_candidates``),
            between 1 and ``n_rotations``.

        Returns
        -------
        matrices : tensor of shape (n, k, k)
        """
        spatial = tuple(x.shape[2:])
        plan = self._plan(spatial, x.dtype, x.device)
        grid, coarse, p_global = plan[:3]
        n_rounds = self.refine_rounds if refine_rounds is None else int(refine_rounds)
        c = self.n_candidates if n_candidates is None else self._check_candidates(n_candidates)
        n = x.shape[0]
        eye = torch.eye(self.k, dtype=x.dtype, device=x.device).expand(n, self.k, self.k)
        y = warp_to_canonical(x, eye, shift)
        t = template
        if coarse != spatial:
            pool = F.avg_pool2d if self.k == 2 else F.avg_pool3d
            y, t = pool(y, 2), pool(t, 2)
        best = grid[self._scores(p_global, y, t).topk(c, dim=0).indices.reshape(-1)]  # candidate-major
        if c > 1:  # every candidate refined as a sample of its own
            x = x.repeat(c, *([1] * (x.dim() - 1)))
            shift = shift.repeat(c, 1)
            template = template if template.shape[0] == 1 else template.repeat(c, *([1] * (x.dim() - 1)))
        for j in range(n_rounds):
            offsets, matrix = self._round(plan, j, spatial, x.dtype, x.device)
            y = warp_to_canonical(x, best, shift)
            best = best @ offsets[self._scores(matrix, y, template).argmax(0)]
        if c > 1:  # the candidates are compared in the observed frame, where the sample is the same for all
            lt = warp_from_canonical(template.expand(x.shape[0], *template.shape[1:]), best, shift)
            score = (lt * (2 * x - lt)).flatten(1).sum(1)
            best = best.view(c, n, self.k, self.k)[score.view(c, n).argmax(0), torch.arange(n, device=x.device)]
        return best


@torch.no_grad()
def superpose(x, reference, search, refine_rounds=6, n_candidates=None):
    """Per sample, the rigid pose that best puts ``reference`` onto ``x`` (least squares).

    Both are centred on their :func:`density_centre`; the rotation about those centres is
    searched with ``search`` (its global grid, then ``refine_rounds`` local rounds of each of
    its ``n_candidates`` best grid rotations), and the identity is kept unless the search
    finds a lower squared error (the 3-D grid does not hold it, so two copies of one
    template superpose exactly).

    Parameters
    ----------
    x : tensor of shape (n, C, *spatial)
    reference : tensor of shape (1, C, *spatial)
    search : RotationSearch
    refine_rounds : int, default=6
    n_candidates : int or None, default=None
        Grid rotations refined (``None``: the search's own ``n_candidates``). Two different
        structures can have more than one near-equal superposition, and the coarse (pooled)
        global round need not rank the best one first: on two simulated conformations of a
        molecule whose domain swings 90 degrees, refining the grid's argmax stopped at a
        superposition 105 degrees from the best (normalised cross-correlation 0.77 against
        0.81), refining the best 32 found the best.

    Returns
    -------
    pose : dict
        ``matrix`` (n, k, k) and ``shift`` (n, k): the reference's feature at ``r`` is at
        ``matrix r + shift`` in ``x``.

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.harmony.search import RotationSearch, superpose
    >>> from sklearn_disentangle.harmony.warps import rotation_2d, warp_from_canonical
    >>> t = torch.zeros(1, 1, 15, 15); t[0, 0, 7, 11] = 1.0; t[0, 0, 4, 7] = 0.5
    >>> x = warp_from_canonical(t, rotation_2d(torch.tensor([0.5])), torch.zeros(1, 2))
    >>> pose = superpose(x, t, RotationSearch(2, 72))
    >>> round(float(torch.atan2(pose["matrix"][0, 0, 1], pose["matrix"][0, 0, 0])), 2)
    0.5
    """
    k = x.ndim - 2
    eye = torch.eye(k, dtype=x.dtype, device=x.device)[None]
    x_centre, ref_centre = density_centre(x), density_centre(reference)
    centred = warp_to_canonical(reference, eye, ref_centre)  # its density centre at the origin
    found = search(x, centred, x_centre, refine_rounds=refine_rounds, n_candidates=n_candidates)
    candidates = torch.stack([eye.expand_as(found), found])  # ties: the identity
    errors = torch.stack([(warp_to_canonical(x, c, x_centre) - centred).pow(2).flatten(1).sum(1)
                          for c in candidates])
    matrix = candidates[errors.argmin(0), torch.arange(len(x), device=x.device)]
    shift = x_centre - (matrix @ ref_centre.expand(len(x), -1)[..., None])[..., 0]
    return {"matrix": matrix, "shift": shift}


@torch.no_grad()
def superposition_ncc(x, reference, matrix):
    """Normalised cross-correlation of ``reference`` and ``x`` read at ``matrix r``, both about their density centres.

    How well the rotation ``matrix`` superposes two structures, on a scale independent of
    their intensities (1: identical up to a positive gain). Used to compare two
    superpositions that :func:`superpose` can end in, or to map all of them.

    Parameters
    ----------
    x, reference : tensor of shape (1, C, *spatial)
    matrix : tensor of shape (k, k) or (m, k, k)
        The rotation of the pose ``(matrix, x's density centre)`` that canonicalises ``x``;
        a stack of ``m`` rotations is scored in one pass.

    Returns
    -------
    ncc : float, or tensor of shape (m,) for a stack

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.harmony.search import superposition_ncc
    >>> from sklearn_disentangle.harmony.warps import rotation_2d
    >>> t = torch.zeros(1, 1, 15, 15); t[0, 0, 7, 11] = 1.0; t[0, 0, 4, 7] = 0.5
    >>> round(superposition_ncc(3 * t, t, torch.eye(2)), 3)
    1.0
    >>> turns = rotation_2d(torch.tensor([0.0, 3.14159]))
    >>> ncc = superposition_ncc(t, t, turns)  # a stack: one value per rotation
    >>> round(float(ncc[0]), 3), bool(ncc[1] < 0.5), abs(float(ncc[1]) - superposition_ncc(t, t, turns[1])) < 1e-6
    (1.0, True, True)
    """
    k = x.ndim - 2
    stack = matrix.to(x).reshape(-1, k, k)
    eye = torch.eye(k, dtype=x.dtype, device=x.device)[None]
    a = warp_to_canonical(reference, eye, density_centre(reference)).flatten()
    b = warp_to_canonical(x.expand(len(stack), *x.shape[1:]), stack,
                          density_centre(x).expand(len(stack), k)).flatten(1)
    a, b = a - a.mean(), b - b.mean(1, keepdim=True)
    ncc = b @ a / (b.norm(dim=1) * a.norm())
    return float(ncc[0]) if matrix.ndim == 2 else ncc
