"""``OpusDSD``: cryo-EM particles (images + consensus poses + CTF) to a structural latent space and volumes."""

import math
import os
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from skorch.callbacks import Callback, LRScheduler
from skorch.dataset import Dataset
from skorch.helper import predefined_split
from sklearn.utils.validation import check_array, check_is_fitted

from .._validation import Interval, Options
from ..base import LatentTransformer
from ..cryoem.ctf import apply_ctf
from ..cryoem.fourier import frequency_grid, resize_fourier
from ..cryoem.projection import project_real, shift_images
from ..io.mrc import read_mrc, write_mrc
from ..io.particles import ParticleStack
from ..training import NonFiniteLossError, to_batch_tensor
from .geometry import ctf_on_grid, derive_sizes, pack_ctf, prepare_mask, view_groups, window_from_mask
from .model import OpusDSDModule, bfactor_at_epoch, cyclic_beta

__all__ = ["OpusDSD", "OpusSchedule"]

_INPUT_HELP = ("OpusDSD is fitted on a ParticleStack with consensus poses and CTF parameters, e.g. "
               "OpusDSD().fit(StarReader().transform(['run_data.star'])) or "
               "ParticleStack.from_star('run_data.star')")


class OpusSchedule(Callback):
    """Set OPUS-DSD's annealed coefficients on the module: cyclic KL ``beta`` and envelope ``bfactor``.

    ``beta`` follows :func:`~sklearn_disentangle.opus_dsd.model.cyclic_beta` of the number of
    training images seen (counted from the history, so ``partial_fit`` and checkpoint resumes
    continue the cycle); ``bfactor`` follows
    :func:`~sklearn_disentangle.opus_dsd.model.bfactor_at_epoch`. Both are recorded per epoch.

    Parameters
    ----------
    schedule : {"cyclic", "constant"}
        ``"constant"`` keeps ``beta = 1``.
    period, ramp : int
        Cycle length and ramp length in images.
    bfactor : float
        OPUS-DSD envelope B (``exp(-pi^2 B s^2)``, s in 1/Angstrom).

    Examples
    --------
    >>> from sklearn_disentangle.opus_dsd import OpusSchedule
    >>> OpusSchedule("cyclic", 125000, 100000, 4.0).schedule
    'cyclic'
    """

    def __init__(self, schedule="cyclic", period=125000, ramp=100000, bfactor=4.0):
        self.schedule = schedule
        self.period = period
        self.ramp = ramp
        self.bfactor = bfactor

    def initialize(self):
        self.n_images_ = 0
        return self

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self.n_images_ = int(sum(b.get("train_batch_size", 0) for h in net.history for b in h["batches"]
                                 if "train_loss" in b))

    def on_epoch_begin(self, net, **kwargs):
        net.module_.bfactor = bfactor_at_epoch(self.bfactor, len(net.history) - 1)

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        if training:
            beta = 1.0 if self.schedule == "constant" else cyclic_beta(self.n_images_, self.period, self.ramp)
            net.module_.beta = float(beta)

    def on_batch_end(self, net, batch=None, training=False, **kwargs):
        if training:
            self.n_images_ += len(batch[0]["index"])

    def on_epoch_end(self, net, **kwargs):
        net.history.record("beta", float(net.module_.beta))
        net.history.record("bfactor", float(net.module_.bfactor))


class _StackImages:
    """Lazy image column of a ParticleStack: indexing reads only those images."""

    def __init__(self, stack):
        self.stack = stack

    def __len__(self):
        return len(self.stack)

    def __getitem__(self, index):
        return self.stack.get_images(index)


class _Particles:
    """A validated ParticleStack as the per-particle arrays the model needs (images stay lazy)."""

    def __init__(self, stack, rotations, shifts_px, ctf, groups, index):
        self.stack, self.rotations, self.shifts_px = stack, rotations, shifts_px
        self.ctf, self.groups, self.index = ctf, groups, index

    def __len__(self):
        return len(self.stack)

    def subset(self, rows):
        return _Particles(self.stack[rows], self.rotations[rows], self.shifts_px[rows], self.ctf[rows],
                          self.groups[rows], self.index[rows])

    def source(self):
        return {"images": _StackImages(self.stack), "rotations": self.rotations, "shifts": self.shifts_px,
                "ctf": self.ctf, "index": self.index, "group": self.groups}

    def batch(self, rows, device, *, index=True):
        src = self.source()
        out = {k: (v[rows] if k == "images" else to_batch_tensor(v[rows])) for k, v in src.items()}
        out["images"] = to_batch_tensor(out["images"])
        if not index:
            out["index"] = torch.full_like(out["index"], -1)
        return {k: v.to(device) for k, v in out.items()}


class OpusDSD(LatentTransformer):
    """OPUS-DSD: structural disentanglement of cryo-EM particles (Luo et al., Nat. Methods 2023).

    A VAE for conformational heterogeneity with known consensus poses. Each particle image is
    recentred, downsampled (``downfrac``), cropped (``window_r`` or the mask), extruded along
    its viewing direction into the reference frame and encoded by a 3-D CNN to ``z``
    (``z_dim``, the structure) and ``z_aff`` (``z_aff_dim``, a small global pose correction). A
    convolutional decoder turns ``z`` into a 3-D density, which is rendered at a few candidate
    poses around the consensus, multiplied by the particle's CTF and compared with the image;
    the candidates are weighted by their posterior (local pose marginalisation). A cyclically
    annealed KL and the *structural disentanglement prior* (latents pulled towards similar
    particles seen from other directions, pushed from dissimilar ones) make ``z`` encode the
    structure rather than the view.

    ``fit`` takes a :class:`~sklearn_disentangle.io.ParticleStack` (e.g. from
    :class:`~sklearn_disentangle.io.StarReader`), streaming images from disk batch by batch.

    Parameters
    ----------
    z_dim : int, default=12
        Latent dimension of the structure code (README: 12).
    z_aff_dim : int, default=4
        Dimension of the pose-correction code (0 disables the affine head).
    lamb : float, default=1.0
        Weight of the structural disentanglement prior (README: 0.1-1.5; too high stretches
        the latent space into a ribbon).
    beta_control : float, default=2.0
        Scale of the KL term (multiplied by the running SNR estimate, as in the original).
    beta_schedule : {"cyclic", "constant"}, default="cyclic"
        Cyclic linear ramp of the KL weight over images seen (``beta_ramp`` images from 0.001
        to 1, held until ``beta_period``), or constant 1.
    beta_period, beta_ramp : int, default=125000, 100000
    bfactor : float, default=4.0
        OPUS-DSD envelope ``exp(-pi^2 B s^2)`` on the rendered projections (s in 1/Angstrom;
        B = 4 is roughly a standard RELION B of 158 A^2). Slightly larger at the first epochs.
    downfrac : float, default=0.75
        Fourier-cropping fraction: images are rendered at ``R = even(D * downfrac)``.
    window_r : float, default=0.85
        Real-space crop fraction when no ``mask`` is given (``S = even(R * window_r)``).
    mask : str, path-like, ndarray of shape (D, D, D) or None, default=None
        Solvent mask of the consensus map (same box as the particles): it sets the crop
        fraction from its bounding box (capped at 0.9), masks the encoder's input and, projected,
        the loss. ``None``: a ball inscribed in the crop.
    templateres : int, default=224
        Size of the decoder's output volume (multiple of 16), resampled to the ``S**3`` crop
        grid before rendering (README: about ``D * downfrac / 0.75``).
    width_mult : float, default=1.0
        Channel multiplier of encoder and decoder (1.0: the original's ~60 M parameters;
        0.125-0.25 for CPU-size runs).
    n_pose_candidates : int, default=8
        Poses rendered per particle: the consensus plus random rotations of up to
        ``pose_jitter_deg`` (1: no pose marginalisation).
    pose_jitter_deg : float, default=5.0
    n_view_groups : int, default=48
        View groups used to pick cross-view positives and negatives for the prior.
    tv_weight : float, default=1.0
        Weight of the template regulariser ``TV + 0.3 L1``.
    pool_size : int, default=12800
        Memory-bank entries drawn per batch for the prior.
    n_positives : int, default=128
        Nearest cross-view bank entries used as positives (``4x`` as many negatives).
    bank_momentum : float, default=0.7
    augment : bool, default=True
        Random B-factor and SNR-scaled gain/offset on the encoder input while training.
    lr_gamma : float, default=0.96
        Learning-rate decay per epoch (StepLR).
    weight_decay : float, default=0.0
        AdamW weight decay.
    max_epochs : int, default=20
    batch_size : int, default=12
    lr : float, default=1e-4
    device : str, default="auto"
    random_state : int, RandomState instance or None, default=None
    verbose : int, default=0
    callbacks : list or None, default=None
    validation_fraction : float, default=0.0
    checkpoint_dir : str or None, default=None
        Parameters (memory bank included), optimiser state and history are saved there after
        every epoch; ``warm_start=True`` resumes from it (the original's ``--load``/``--latents``).
    warm_start : bool, default=False

    Attributes
    ----------
    net_ : DisentangleNet
        ``net_.module_`` is an :class:`~sklearn_disentangle.opus_dsd.model.OpusDSDModule`.
    history_ : skorch.History
        Per epoch: ``train_loss``, ``train_recon``, ``train_kl``, ``train_reg``, ``train_dsd``,
        ``train_snr`` (running signal-to-noise estimate), ``beta``, ``bfactor``.
    box_size_ : int
        Particle box ``D``.
    pixel_size_ : float
        Angstrom per pixel of the particles.
    render_size_, crop_size_ : int
        ``R`` and ``S``.
    window_r_ : float
        Crop fraction used (from the mask when given).
    volume_pixel_size_ : float
        Voxel size of the volumes from ``inverse_transform`` / ``write_volumes`` (``pixel_size_``
        up to the rounding of the crop).
    image_std_ : float
        Standard deviation of the raw images (estimated on up to 1000 of them).
    image_shape_ : tuple
        ``(D, D)``.
    n_features_in_ : int
        ``D * D``.

    See Also
    --------
    sklearn_disentangle.opus_dsd.analysis.analyze : k-means, maps, volumes and star files.

    Notes
    -----
    Deviations from the original (alncat/opusDSD), and why:

    - Runs on CPU or GPU with every size a parameter (the original is CUDA/DataParallel only).
    - The encoder back-projects with the full pose matrix (``V(r) = image((A r)[:2])``) instead
      of de-rotating in plane and then rotating by (rot, tilt); the two are the same volume.
    - Projections are rendered at the particle's own pose in the image frame, so the random
      in-plane rotation augmentation and its unrotated-CTF approximation are not needed.
    - The consensus pose is always the first of the pose candidates (the original omits it).
    - Batches mix view groups; for each particle, bank entries of its *own* group are
      excluded from positives and negatives (the original batches one group at a time).
    - No gradient accumulation; AdamW without weight decay and StepLR per epoch as in
      ``train_cv``. Validation is opt-in (``validation_fraction``), not a required split file.
    - View groups are a Fibonacci grid of directions (no healpy dependency).
    - The encoder's log-variance head starts at -6 (posterior std 0.05): with the original's
      SNR-gated, ``1/M``-scaled KL weight nothing else keeps unit noise on ``z`` from teaching
      the decoder to ignore ``z`` at the start (seen as collapsed latents in small runs).
    - ``transform`` returns the deterministic encoder mean; the original's ``z.N.pkl`` holds
      the running memory bank, available here as :attr:`bank_`.
    - scikit-learn's ``check_estimator`` feeds plain arrays without poses or CTF, which this
      estimator rejects; those checks are listed in ``_expected_failed_checks``.

    References
    ----------
    Luo, Z., Ni, F., Wang, Q., Ma, J. OPUS-DSD: deep structural disentanglement for cryo-EM
    single-particle analysis. Nature Methods 20, 1729-1738 (2023).
    https://doi.org/10.1038/s41592-023-02031-6

    Examples
    --------
    >>> from sklearn_disentangle.opus_dsd import OpusDSD
    >>> from sklearn_disentangle.datasets import make_cryoem_particles
    >>> stack, truth = make_cryoem_particles(32, 16, n_conformations=2, random_state=0)
    >>> est = OpusDSD(z_dim=2, **OpusDSD.PRESETS["tiny"], max_epochs=1, random_state=0).fit(stack)
    >>> est.transform(stack).shape, est.inverse_transform(est.transform(stack[:2])).shape
    ((32, 2), (2, 16, 16, 16))
    """

    #: Parameter presets: ``"paper"`` (README's recommended GPU settings), ``"cpu"`` (32-64 px
    #: boxes on a CPU) and ``"tiny"`` (16 px tests and examples).
    PRESETS = {
        "paper": {"downfrac": 0.75, "templateres": 224, "width_mult": 1.0, "batch_size": 12, "lr": 1e-4,
                  "n_pose_candidates": 8},
        "cpu": {"downfrac": 1.0, "templateres": 64, "width_mult": 0.25, "batch_size": 32, "lr": 1e-3,
                "n_pose_candidates": 4, "beta_period": 25000, "beta_ramp": 20000},
        "tiny": {"downfrac": 1.0, "templateres": 16, "width_mult": 0.03125, "batch_size": 16, "lr": 1e-3,
                 "n_pose_candidates": 2, "pool_size": 256, "n_positives": 8},
    }

    _spatial_dims = 2

    _expected_failed_checks = {
        name: "OpusDSD needs a ParticleStack with poses, CTF and pixel size; sklearn's checks feed plain arrays "
              "(the sklearn behaviours that apply are tested in tests/opus_dsd)."
        for name in (
            "check_fit_score_takes_y", "check_estimators_overwrite_params", "check_dont_overwrite_parameters",
            "check_estimators_fit_returns_self", "check_readonly_memmap_input", "check_n_features_in_after_fitting",
            "check_positive_only_tag_during_fit", "check_estimators_dtypes", "check_complex_data",
            "check_dtype_object", "check_pipeline_consistency", "check_estimators_nan_inf",
            "check_estimators_empty_data_messages", "check_estimator_sparse_tag", "check_estimator_sparse_array",
            "check_estimator_sparse_matrix", "check_estimators_pickle", "check_f_contiguous_array_estimator",
            "check_transformer_data_not_an_array", "check_transformer_general", "check_transformer_preserve_dtypes",
            "check_methods_sample_order_invariance", "check_methods_subset_invariance", "check_fit2d_1sample",
            "check_fit2d_1feature", "check_dict_unchanged", "check_fit_idempotent", "check_fit_check_is_fitted",
            "check_n_features_in", "check_fit1d", "check_fit2d_predict1d",
        )
    }

    _parameter_constraints = {
        **{k: v for k, v in LatentTransformer._parameter_constraints.items() if k != "image_shape"},
        "z_aff_dim": [Interval(Integral, 0, None)],
        "lamb": [Interval(Real, 0, None)],
        "beta_control": [Interval(Real, 0, None)],
        "beta_schedule": [Options(("cyclic", "constant"))],
        "beta_period": [Interval(Integral, 1, None)],
        "beta_ramp": [Interval(Integral, 1, None)],
        "bfactor": [Interval(Real, 0, None)],
        "downfrac": [Interval(Real, 0, 1, closed="right")],
        "window_r": [Interval(Real, 0, 1, closed="right")],
        "mask": [str, os.PathLike, np.ndarray, None],
        "templateres": [Interval(Integral, 16, None)],
        "width_mult": [Interval(Real, 0, None, closed="neither")],
        "n_pose_candidates": [Interval(Integral, 1, None)],
        "pose_jitter_deg": [Interval(Real, 0, 180)],
        "n_view_groups": [Interval(Integral, 1, None)],
        "tv_weight": [Interval(Real, 0, None)],
        "pool_size": [Interval(Integral, 1, None)],
        "n_positives": [Interval(Integral, 1, None)],
        "bank_momentum": [Interval(Real, 0, 1, closed="left")],
        "augment": ["boolean"],
        "lr_gamma": [Interval(Real, 0, 1, closed="right")],
        "weight_decay": [Interval(Real, 0, None)],
    }

    def __init__(self, z_dim=12, *, z_aff_dim=4, lamb=1.0, beta_control=2.0, beta_schedule="cyclic",
                 beta_period=125000, beta_ramp=100000, bfactor=4.0, downfrac=0.75, window_r=0.85, mask=None,
                 templateres=224, width_mult=1.0, n_pose_candidates=8, pose_jitter_deg=5.0, n_view_groups=48,
                 tv_weight=1.0, pool_size=12800, n_positives=128, bank_momentum=0.7, augment=True, lr_gamma=0.96,
                 weight_decay=0.0, max_epochs=20, batch_size=12, lr=1e-4, device="auto", random_state=None,
                 verbose=0, callbacks=None, validation_fraction=0.0, checkpoint_dir=None, warm_start=False):
        self.z_dim = z_dim
        self.z_aff_dim = z_aff_dim
        self.lamb = lamb
        self.beta_control = beta_control
        self.beta_schedule = beta_schedule
        self.beta_period = beta_period
        self.beta_ramp = beta_ramp
        self.bfactor = bfactor
        self.downfrac = downfrac
        self.window_r = window_r
        self.mask = mask
        self.templateres = templateres
        self.width_mult = width_mult
        self.n_pose_candidates = n_pose_candidates
        self.pose_jitter_deg = pose_jitter_deg
        self.n_view_groups = n_view_groups
        self.tv_weight = tv_weight
        self.pool_size = pool_size
        self.n_positives = n_positives
        self.bank_momentum = bank_momentum
        self.augment = augment
        self.lr_gamma = lr_gamma
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks
        self.validation_fraction = validation_fraction
        self.checkpoint_dir = checkpoint_dir
        self.warm_start = warm_start

    # ------------------------------------------------------------------ contract-test hooks
    @classmethod
    def _tiny_params(cls):
        return {"z_dim": 2, "z_aff_dim": 2, "max_epochs": 2, "random_state": 0, **cls.PRESETS["tiny"]}

    @classmethod
    def _tiny_data(cls, n_samples=48, random_state=0):
        from ..datasets import make_cryoem_particles

        stack, truth = make_cryoem_particles(n_samples, 16, n_conformations=2, snr=1.0,
                                             random_state=random_state)
        return stack, truth.labels[:, None]

    @classmethod
    def _inverse_transform_shape(cls, X):
        d = X.shape[-1]
        return (len(X), d, d, d)

    # ------------------------------------------------------------------ input validation
    def _validate_input(self, X, reset):
        if not isinstance(X, ParticleStack):
            raise TypeError(f"{_INPUT_HELP}; got {type(X).__name__}.")
        n = len(X)
        if n == 0:
            raise ValueError("the ParticleStack is empty; OpusDSD needs at least one particle.")
        if X.rotations is None:
            raise ValueError("the particles have no poses (rotations); OpusDSD needs consensus poses, e.g. a RELION "
                             "refinement's run_data.star (rlnAngleRot/Tilt/Psi).")
        if X.shifts is None:
            raise ValueError("the particles have no shifts; pass shifts=np.zeros((n, 2)) to ParticleStack if they are "
                             "centred, or read a STAR file with rlnOriginXAngst/YAngst.")
        if X.ctf is None:
            raise ValueError("the particles have no CTF parameters; OpusDSD renders CTF-modulated projections and "
                             "needs rlnDefocusU/V/Angle, rlnVoltage, rlnSphericalAberration, rlnAmplitudeContrast.")
        ps = X.pixel_sizes
        if np.isnan(ps).any():
            raise ValueError("the pixel size of the particles is unknown; pass pixel_size= to StarReader / "
                             "ParticleStack.from_star or set rlnImagePixelSize in the STAR file.")
        if not np.allclose(ps, ps[0], rtol=1e-4):
            raise ValueError(f"the particles have different pixel sizes ({np.unique(ps)[:4]} A); OpusDSD needs one "
                             "box and pixel size (rescale the optics groups to a common pixel size first).")
        apix, d = float(ps[0]), int(X.box_size)
        if reset:
            self.box_size_, self.pixel_size_ = d, apix
            self.image_shape_ = (d, d)
            self.input_shape_ = (1, d, d)
            self.n_features_in_ = d * d
        else:
            if d != self.box_size_:
                raise ValueError(f"the particles are {d} px but this OpusDSD was fitted on {self.box_size_} px; "
                                 f"rescale them to {self.box_size_} px.")
            if not math.isclose(apix, self.pixel_size_, rel_tol=1e-4):
                raise ValueError(f"the particles have pixel size {apix} A but this OpusDSD was fitted at "
                                 f"{self.pixel_size_} A.")
        rot = X.rotations.astype(np.float32)
        return _Particles(X, rot, (X.shifts / apix).astype(np.float32), pack_ctf(X.ctf),
                          view_groups(X.rotations, self.n_view_groups), np.arange(n, dtype=np.int64))

    def _load_mask(self, d):
        mask = self.mask
        if mask is None:
            return None
        if isinstance(mask, (str, os.PathLike)):
            mask, _ = read_mrc(mask, kind="volume", mmap=False)
        mask = np.asarray(mask, dtype=np.float32)
        if mask.shape != (d, d, d):
            raise ValueError(f"mask has shape {mask.shape} but the particles are {d} px; the mask must be a "
                             f"({d}, {d}, {d}) volume on the particles' box (resample it to the particle box).")
        if not np.isfinite(mask).all():
            raise ValueError("mask contains NaN or infinite values.")
        return mask

    def _check_method_params(self, Xv):
        if self.templateres % 16:
            raise ValueError(f"templateres must be a multiple of 16, got {self.templateres} (e.g. "
                             f"{16 * math.ceil(self.templateres / 16)}).")
        d = self.box_size_
        mask = self._load_mask(d)
        window = window_from_mask(mask) if mask is not None else float(self.window_r)
        self.render_size_, self.crop_size_ = derive_sizes(d, self.downfrac, window)
        self.window_r_ = window
        self._mask_crop = prepare_mask(mask, d, self.render_size_, self.crop_size_)
        extent = min(d, max(2, int(round(self.crop_size_ * d / self.render_size_))))
        self._box_extent = extent
        self.volume_pixel_size_ = self.pixel_size_ * d / self.render_size_ * self.crop_size_ / extent
        stack = Xv.stack
        pick = np.unique(np.linspace(0, len(stack) - 1, min(len(stack), 1000)).astype(np.int64))
        std = float(np.std(stack.get_images(pick), dtype=np.float64))
        if not std > 0 or not np.isfinite(std):
            raise ValueError("the particle images are constant (or not finite); nothing to learn.")
        self.image_std_ = std
        self._n_bank = len(Xv)
        self._groups = torch.as_tensor(Xv.groups)

    def _build_module(self, input_shape):
        return OpusDSDModule(
            self.box_size_, self.render_size_, self.crop_size_, self.templateres, pixel_size=self.pixel_size_,
            mask=self._mask_crop, n_particles=self._n_bank, groups=self._groups, z_dim=self.z_dim,
            z_aff_dim=self.z_aff_dim, width_mult=self.width_mult, n_pose_candidates=self.n_pose_candidates,
            pose_jitter_deg=self.pose_jitter_deg, lamb=self.lamb, beta_control=self.beta_control,
            tv_weight=self.tv_weight, bfactor=self.bfactor, image_std=self.image_std_, pool_size=self.pool_size,
            n_positives=self.n_positives, bank_momentum=self.bank_momentum, augment=self.augment)

    def _extra_callbacks(self):
        return [("opus_schedule", OpusSchedule(self.beta_schedule, self.beta_period, self.beta_ramp, self.bfactor)),
                ("lr_decay", LRScheduler(policy=torch.optim.lr_scheduler.StepLR, step_size=1, gamma=self.lr_gamma))]

    def _make_net(self, module, device):
        net = super()._make_net(module, device)
        net.set_params(optimizer=torch.optim.AdamW, optimizer__weight_decay=float(self.weight_decay))
        return net

    # ------------------------------------------------------------------ training
    def _continue(self, X, epochs):
        Xv = self._validate_input(X, reset=False)
        if len(Xv) != self.net_.module_.bank.shape[0]:
            raise ValueError(
                f"continued training (partial_fit / warm_start) needs the {self.net_.module_.bank.shape[0]} particles "
                f"of the first fit (their memory-bank entries), got {len(Xv)}; use fit() to start afresh.")
        with self._rng(None, self.net_.device, fresh=False):
            self._train(self.net_, Xv, epochs)
        return self

    def _train(self, net, X, epochs):
        X_train = X
        if self.validation_fraction > 0:
            rng = np.random.RandomState(self._seed)
            n_valid = int(round(self.validation_fraction * len(X)))
            if n_valid < 1 or n_valid >= len(X):
                raise ValueError(f"validation_fraction={self.validation_fraction} leaves {len(X) - n_valid} training "
                                 f"and {n_valid} validation particles out of {len(X)}; use more particles or 0.")
            perm = rng.permutation(len(X))
            X_train, X_valid = X.subset(np.sort(perm[n_valid:])), X.subset(np.sort(perm[:n_valid]))
            net.set_params(train_split=predefined_split(Dataset(X_valid.source(), None)))
        net._epochs_this_call = epochs
        try:
            net.partial_fit(X_train.source(), epochs=epochs)
        except NonFiniteLossError:
            self._set_fitted(net)
            raise
        self._set_fitted(net)

    # ------------------------------------------------------------------ inference
    def _batches(self, Xv):
        for start in range(0, len(Xv), self.batch_size):
            yield Xv.batch(slice(start, start + self.batch_size), self.net_.device, index=False)

    def _eval(self):
        module = self.net_.module_
        state = module.training
        module.eval()
        return module, state

    def transform(self, X):
        """Encode particles to the structural latent ``mu`` (posterior means).

        Parameters
        ----------
        X : ParticleStack
            Particles with poses and CTF, same box and pixel size as at fit.

        Returns
        -------
        Z : ndarray of shape (n_particles, z_dim), float32

        Examples
        --------
        >>> from sklearn_disentangle.opus_dsd import OpusDSD
        >>> from sklearn_disentangle.datasets import make_cryoem_particles
        >>> stack, _ = make_cryoem_particles(16, 16, random_state=0)
        >>> est = OpusDSD(z_dim=2, **OpusDSD.PRESETS["tiny"], max_epochs=1, random_state=0).fit(stack)
        >>> est.transform(stack).shape
        (16, 2)
        """
        check_is_fitted(self)
        Xv = self._validate_input(X, reset=False)
        module, state = self._eval()
        try:
            with torch.no_grad():
                out = [module.encode(b)["z_mean"].to("cpu", torch.float32).numpy() for b in self._batches(Xv)]
        finally:
            module.train(state)
        return np.concatenate(out)

    def score(self, X, y=None):
        """Negative mean training objective on the particles (higher is better; seeded).

        Parameters
        ----------
        X : ParticleStack
        y : None
            Ignored.

        Returns
        -------
        score : float

        Examples
        --------
        >>> from sklearn_disentangle.opus_dsd import OpusDSD
        >>> from sklearn_disentangle.datasets import make_cryoem_particles
        >>> stack, _ = make_cryoem_particles(16, 16, random_state=0)
        >>> est = OpusDSD(z_dim=2, **OpusDSD.PRESETS["tiny"], max_epochs=1, random_state=0).fit(stack)
        >>> import numpy as np
        >>> bool(np.isfinite(est.score(stack)))
        True
        """
        check_is_fitted(self)
        Xv = self._validate_input(X, reset=False)
        module, state = self._eval()
        total = 0.0
        try:
            with self._rng(self._seed, self.net_.device, fresh=True), torch.no_grad():
                for b in self._batches(Xv):
                    total += float(module.loss(module(b), b)["loss"]) * len(b["index"])
        finally:
            module.train(state)
        return -total / len(Xv)

    def _check_codes(self, Z):
        Z = check_array(Z, dtype=[np.float32, np.float64])
        if Z.shape[1] != self.z_dim:
            raise ValueError(f"expected latent codes with {self.z_dim} columns (z_dim), got {Z.shape[1]}.")
        return np.ascontiguousarray(Z, dtype=np.float32)

    def _crop_volumes(self, Z):
        module, state = self._eval()
        out = []
        try:
            with torch.no_grad():
                for start in range(0, len(Z), self.batch_size):
                    zb = torch.from_numpy(Z[start:start + self.batch_size]).to(self.net_.device)
                    out.append(module.decode(zb).to("cpu", torch.float64))
        finally:
            module.train(state)
        return torch.cat(out)

    def _to_box(self, vols):
        d, m = self.box_size_, self._box_extent
        vols = resize_fourier(vols, m, ndim=3) if m != vols.shape[-1] else vols
        before = d // 2 - m // 2
        return F.pad(vols, (before, d - m - before) * 3)

    def inverse_transform(self, X):
        """Volumes for latent codes, on the particle box, in the reference frame.

        The decoder's density (on the ``S**3`` crop grid, times the mask) is resampled in
        Fourier space to the box's pixel size and zero-padded to ``D**3``.

        Parameters
        ----------
        X : array-like of shape (n, z_dim)

        Returns
        -------
        volumes : ndarray of shape (n, D, D, D), float32
            Voxel size :attr:`volume_pixel_size_`; intensities in units of the normalised
            images (raw images divided by :attr:`image_std_`) per voxel of the render grid.

        Examples
        --------
        >>> from sklearn_disentangle.opus_dsd import OpusDSD
        >>> from sklearn_disentangle.datasets import make_cryoem_particles
        >>> stack, _ = make_cryoem_particles(16, 16, random_state=0)
        >>> est = OpusDSD(z_dim=2, **OpusDSD.PRESETS["tiny"], max_epochs=1, random_state=0).fit(stack)
        >>> est.inverse_transform(est.transform(stack[:3])).shape
        (3, 16, 16, 16)
        """
        check_is_fitted(self)
        Z = self._check_codes(X)
        return self._to_box(self._crop_volumes(Z)).to(torch.float32).numpy()

    def write_volumes(self, Z, output_dir, *, prefix="volume"):
        """Write the volumes of latent codes as ``.mrc`` files (voxel size :attr:`volume_pixel_size_`).

        Parameters
        ----------
        Z : array-like of shape (n, z_dim)
        output_dir : str or path-like
            Created if needed.
        prefix : str, default="volume"
            Files are ``<prefix>_000.mrc``, ``<prefix>_001.mrc``, ...

        Returns
        -------
        paths : list of str

        Examples
        --------
        >>> from sklearn_disentangle.opus_dsd import OpusDSD
        >>> from sklearn_disentangle.datasets import make_cryoem_particles
        >>> stack, _ = make_cryoem_particles(16, 16, random_state=0)
        >>> est = OpusDSD(z_dim=2, **OpusDSD.PRESETS["tiny"], max_epochs=1, random_state=0).fit(stack)
        >>> import os, tempfile
        >>> [os.path.basename(p) for p in est.write_volumes(est.transform(stack[:2]), tempfile.mkdtemp())]
        ['volume_000.mrc', 'volume_001.mrc']
        """
        from .analysis import write_volume_series

        vols = self.inverse_transform(Z)
        return write_volume_series(vols, output_dir, self.volume_pixel_size_, prefix=prefix)

    def project(self, Z, rotations, *, shifts=None, ctf=None):
        """Simulate particle images of latent codes at poses (the fitted image-formation model).

        Parameters
        ----------
        Z : array-like of shape (n, z_dim)
        rotations : ParticleStack or array-like of shape (n, 3, 3)
            RELION pose matrices; a ParticleStack gives rotations, shifts and CTF at once.
        shifts : array-like of shape (n, 2), default=None
            RELION origins in Angstrom (the image content is shifted by minus them).
        ctf : pandas.DataFrame, default=None
            CTF table (columns of :func:`~sklearn_disentangle.io.parse_ctf`); ``None``: no CTF.

        Returns
        -------
        images : ndarray of shape (n, D, D), float32
            In the units of the raw images.

        Examples
        --------
        >>> from sklearn_disentangle.opus_dsd import OpusDSD
        >>> from sklearn_disentangle.datasets import make_cryoem_particles
        >>> stack, _ = make_cryoem_particles(16, 16, random_state=0)
        >>> est = OpusDSD(z_dim=2, **OpusDSD.PRESETS["tiny"], max_epochs=1, random_state=0).fit(stack)
        >>> est.project(est.transform(stack[:4]), stack[:4]).shape
        (4, 16, 16)
        """
        check_is_fitted(self)
        Z = self._check_codes(Z)
        if isinstance(rotations, ParticleStack):
            stack = rotations
            rotations, shifts, ctf = stack.rotations, stack.shifts, stack.ctf
            if rotations is None:
                raise ValueError("the ParticleStack passed to project has no poses.")
        rot = np.asarray(rotations, dtype=np.float64)
        if rot.shape != (len(Z), 3, 3):
            raise ValueError(f"rotations must have shape ({len(Z)}, 3, 3), got {rot.shape}.")
        d = self.box_size_
        module = self.net_.module_
        vols = self._to_box(self._crop_volumes(Z))
        rot_t = torch.as_tensor(rot)
        # box-voxel sums are (m / S) times the render-grid sums the model was fitted on
        images = project_real(vols, rot_t) * (self.crop_size_ / self._box_extent)
        envelope = None
        if ctf is not None:
            params = torch.as_tensor(pack_ctf(ctf)).to(torch.float64)
            if len(params) != len(Z):
                raise ValueError(f"ctf must have {len(Z)} rows, got {len(params)}.")
            filt = ctf_on_grid(params, d, self.pixel_size_).to(torch.float64)
            ky, kx = frequency_grid((d, d), self.pixel_size_, dtype=torch.float64)
            envelope = torch.exp(-(math.pi ** 2) * float(module.bfactor) * (kx * kx + ky * ky))
            images = apply_ctf(images, filt * envelope)
        if shifts is not None:
            sh = np.asarray(shifts, dtype=np.float64)
            if sh.shape != (len(Z), 2):
                raise ValueError(f"shifts must have shape ({len(Z)}, 2), got {sh.shape}.")
            images = shift_images(images, -torch.as_tensor(sh) / self.pixel_size_)
        return (images * self.image_std_).to(torch.float32).numpy()

    @property
    def bank_(self):
        """The running memory bank of training latents ``(n_particles, z_dim)`` (the original's ``z.N.pkl``).

        Examples
        --------
        >>> from sklearn_disentangle.opus_dsd import OpusDSD
        >>> from sklearn_disentangle.datasets import make_cryoem_particles
        >>> stack, _ = make_cryoem_particles(16, 16, random_state=0)
        >>> est = OpusDSD(z_dim=2, **OpusDSD.PRESETS["tiny"], max_epochs=1, random_state=0).fit(stack)
        >>> est.bank_.shape
        (16, 2)
        """
        check_is_fitted(self)
        return self.net_.module_.bank[:, :self.z_dim].detach().to("cpu", torch.float32).numpy()

    def analyze(self, particles, n_clusters=16, output_dir=None, **kwargs):
        """Run the analysis pipeline (k-means, PCA/UMAP maps, volumes, per-cluster STAR files).

        See :func:`sklearn_disentangle.opus_dsd.analysis.analyze` for the outputs and options.

        Parameters
        ----------
        particles : ParticleStack
        n_clusters : int, default=16
        output_dir : str or path-like
        **kwargs
            Passed to :func:`~sklearn_disentangle.opus_dsd.analysis.analyze`.

        Returns
        -------
        summary : sklearn.utils.Bunch

        Examples
        --------
        >>> from sklearn_disentangle.opus_dsd import OpusDSD
        >>> from sklearn_disentangle.datasets import make_cryoem_particles
        >>> stack, _ = make_cryoem_particles(16, 16, random_state=0)
        >>> est = OpusDSD(z_dim=2, **OpusDSD.PRESETS["tiny"], max_epochs=1, random_state=0).fit(stack)
        >>> import tempfile
        >>> out = est.analyze(stack, n_clusters=2, output_dir=tempfile.mkdtemp(), umap=False, write_volumes=False)
        >>> out.labels.shape
        (16,)
        """
        from .analysis import analyze

        return analyze(self, particles, n_clusters=n_clusters, output_dir=output_dir, **kwargs)
