"""Harmony's torch model: a two-branch, shared-weight autoencoder with explicit pose heads.

The encoder maps an image to a *pose* (rotation, shift, scale or gain, depending on the
kind) and to the Gaussian posterior of a *content* code. The pose warps the input into a
canonical frame (:mod:`sklearn_disentangle.harmony.warps`); the decoder reconstructs that
canonical image from the content code alone. Training feeds each image and a randomly
transformed copy through the same weights and asks (i) each decoder output to match its own
canonicalised input, (ii) the two canonicalised images to agree and (iii) the two content
posteriors to agree (Uddin et al., CVPR 2022).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import LatentModule, gaussian_kl
from .search import RotationSearch, density_centre, superpose
from .warps import axis_angle_to_matrix, rotation_2d, sixd_to_matrix, warp_from_canonical, warp_to_canonical

__all__ = ["HarmonyModule", "KINDS", "POSE_SIZES", "ROTATION_HEADS", "compose_poses", "gaussian_kl_between",
           "invert_pose"]

#: The transformation families: in-plane rigid, in-plane rigid + isotropic scale, 3-D rigid
#: (axis-angle rotation + shift) and a global intensity gain.
KINDS = ("rigid2d", "affine2d", "rigid3d", "contrast")

#: Raw encoder outputs of each pose head ("none": flat features, no geometry); ``rigid3d``
#: with the axis-angle rotation head (the 6-D head has 9: 6 rotation + 3 shift).
POSE_SIZES = {"rigid2d": 4, "affine2d": 5, "rigid3d": 6, "contrast": 1, "none": 0}

#: Parameterisations of the predicted 3-D rotation.
ROTATION_HEADS = ("6d", "axis_angle")
#: weight of a training batch's mean content code in the running ``search_code`` (an EMA)
SEARCH_CODE_MOMENTUM = 0.1
#: global rotation grid of :meth:`HarmonyModule.frame_alignment` by spatial dimension (when the
#: model has no ``pose_search``, whose grid it uses otherwise), and its local refinement rounds
FRAME_GRID = {2: 360, 3: 1000}
FRAME_REFINE_ROUNDS = 6
#: grid rotations refined by :meth:`HarmonyModule.frame_alignment` (the best refined one wins):
#: with fewer it stopped at a weaker of two near-equal superpositions (see ``superpose``)
FRAME_CANDIDATES = 32
#: global-grid rotations refined per sample by ``pose_search`` (the best refined one wins): with
#: the argmax alone a third of simulated subtomograms settled a half-turn away from the rest
SEARCH_CANDIDATES = 4


def gaussian_kl_between(mu1, logvar1, mu2, logvar2):
    """KL(N(mu1, exp(logvar1)) || N(mu2, exp(logvar2))) per sample and dimension.

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.harmony.model import gaussian_kl_between
    >>> z = torch.zeros(1, 2)
    >>> float(gaussian_kl_between(z, z, z + 1, z).sum())
    1.0
    """
    return 0.5 * (logvar2 - logvar1 + (logvar1.exp() + (mu1 - mu2).pow(2)) * torch.exp(-logvar2) - 1.0)


def compose_poses(outer, inner):
    """The pose ``outer o inner``: ``r -> M_o (M_i r + t_i) + t_o``, as ``{"matrix", "shift"}``.

    Other keys of ``outer`` are kept; its 2-D ``angle``, if any, is recomputed from the matrix.

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.harmony.model import compose_poses
    >>> from sklearn_disentangle.harmony.warps import rotation_2d
    >>> a = {"angle": torch.tensor([0.5]), "matrix": rotation_2d(torch.tensor([0.5])), "shift": torch.ones(1, 2)}
    >>> b = {"matrix": rotation_2d(torch.tensor([0.25])), "shift": torch.zeros(1, 2)}
    >>> round(float(compose_poses(a, b)["angle"]), 4)
    0.75
    """
    out = dict(outer)
    out["matrix"] = outer["matrix"] @ inner["matrix"]
    out["shift"] = (outer["matrix"] @ inner["shift"][..., None])[..., 0] + outer["shift"]
    out.pop("axis_angle", None)
    if out["matrix"].shape[-1] == 2 and "angle" in outer:
        out["angle"] = torch.atan2(out["matrix"][:, 0, 1], out["matrix"][:, 0, 0])
    return out


def invert_pose(pose):
    """The inverse ``r -> M^-1 (r - t)`` of a pose ``{"matrix", "shift"}`` (rotations times a scale).

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.harmony.model import compose_poses, invert_pose
    >>> p = {"matrix": 2 * torch.eye(3)[None], "shift": torch.tensor([[1.0, 2.0, 3.0]])}
    >>> q = compose_poses(p, invert_pose(p))
    >>> torch.allclose(q["matrix"], torch.eye(3)), torch.allclose(q["shift"], torch.zeros(3))
    (True, True)
    """
    inv = torch.linalg.inv(pose["matrix"])
    return {"matrix": inv, "shift": -(inv @ pose["shift"][..., None])[..., 0]}


def _mlp(sizes, act):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def _conv(k, transposed=False):
    if transposed:
        return nn.ConvTranspose2d if k == 2 else nn.ConvTranspose3d
    return nn.Conv2d if k == 2 else nn.Conv3d


def _down_shape(spatial, n):
    shape = list(spatial)
    for i in range(n):
        if min(shape) < 2:
            return None
        shape = [(s + 2 - 4) // 2 + 1 for s in shape]
    return shape if min(shape) >= 1 else None


class _ConvEncoder(nn.Module):
    """Stride-2 convolutions (kernel 4) over ``widths[:-1]``, then a dense layer of ``widths[-1]``."""

    def __init__(self, input_shape, out_dim, widths, act):
        super().__init__()
        channels, spatial = input_shape[0], input_shape[1:]
        k = len(spatial)
        n_conv = len(widths) - 1
        shape = _down_shape(spatial, n_conv)
        if shape is None or n_conv < 1:
            raise ValueError(
                f"encoder_widths={tuple(widths)} gives {n_conv} stride-2 convolutions, which do not fit a "
                f"{'x'.join(map(str, spatial))} input; pass fewer (at least 2) widths or larger images.")
        layers, c = [], channels
        for w in widths[:-1]:
            layers += [_conv(k)(c, w, 4, 2, 1), act()]
            c = w
        self.convs = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * math.prod(shape), widths[-1]), act(),
                                  nn.Linear(widths[-1], out_dim))

    def forward(self, x):
        return self.head(self.convs(x))


class _ConvDecoder(nn.Module):
    """Dense layer ``widths[0]``, a coarse grid of ``widths[1]`` channels, then transposed
    convolutions (kernel 4, stride 2) through ``widths[2:]`` to the output channels, centre-cropped."""

    def __init__(self, z_dim, output_shape, widths, act):
        super().__init__()
        channels, spatial = output_shape[0], tuple(output_shape[1:])
        k = len(spatial)
        n_up = len(widths) - 1
        if n_up < 1:
            raise ValueError(f"decoder_widths={tuple(widths)} must have at least 2 entries for a conv decoder.")
        self.start = [-(-s // 2 ** n_up) for s in spatial]
        self.start_channels = widths[1]
        self.spatial = spatial
        self.fc = nn.Sequential(nn.Linear(z_dim, widths[0]), act(),
                                nn.Linear(widths[0], widths[1] * math.prod(self.start)), act())
        layers, c = [], widths[1]
        for i, w in enumerate(list(widths[2:]) + [channels]):
            layers.append(_conv(k, transposed=True)(c, w, 4, 2, 1))
            if i < n_up - 1:
                layers.append(act())
            c = w
        self.deconvs = nn.Sequential(*layers)

    def forward(self, z):
        h = self.deconvs(self.fc(z).view(z.shape[0], self.start_channels, *self.start))
        crop = tuple(slice((h.shape[2 + i] - s) // 2, (h.shape[2 + i] - s) // 2 + s) for i, s in enumerate(self.spatial))
        return h[(slice(None), slice(None)) + crop]


class _MLPDecoder(nn.Module):
    def __init__(self, z_dim, output_shape, widths, act):
        super().__init__()
        self.output_shape = tuple(output_shape)
        self.net = _mlp([z_dim] + list(widths) + [math.prod(self.output_shape)], act)

    def forward(self, z):
        return self.net(z).view((z.shape[0],) + self.output_shape)


class _MLPEncoder(nn.Module):
    def __init__(self, n_in, out_dim, widths, act):
        super().__init__()
        self.net = _mlp([n_in] + list(widths) + [out_dim], act)

    def forward(self, x):
        return self.net(x.flatten(1))


class HarmonyModule(LatentModule):
    """Harmony's Siamese autoencoder for one transformation family.

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, H, W)`` (``rigid2d``, ``affine2d``, ``contrast``), ``(C, D, H, W)``
        (``rigid3d``), or ``(n_features,)`` (flat features: no geometry; only a gain pose
        for ``contrast``, no pose otherwise).
    z_dim : int
    kind : {"rigid2d", "affine2d", "rigid3d", "contrast"}
    encoder_widths, decoder_widths : sequence of int
        Hidden widths. MLP (2-D geometric kinds, flat input): hidden layer sizes. Conv
        (``rigid3d``, ``contrast``): channels of the stride-2 convolutions, the last entry
        being the dense layer; decoders use the reversed list.
    gamma : float
        Weight of the image terms (see :meth:`loss`).
    prior_kl_weight : float
        Weight of the KL of both content posteriors to N(0, I) (0: upstream, no prior).
    prior_free_bits : float
        "Free bits" (Kingma et al., 2016) of the prior term: per content dimension, the
        batch-mean KL to N(0, I) counts as ``max(prior_free_bits, KL)`` nats in the
        objective, so a code that carries less information than that is not pushed towards
        the prior (the recorded ``kl_prior`` stays the plain KL). 0: off.
    cross_weight_in_gamma : bool
        Whether the cross term is multiplied by ``gamma`` (True: upstream 2-D/3-D; False:
        upstream colour variant).
    normalize : bool
        Z-score every sample (over all its values) before encoding and warping.
    decoder_output : {"linear", "tanh", "sigmoid"}
    max_shift : float
        Predicted shifts are ``max_shift * tanh(raw)`` pixels per axis.
    max_scale : float
        Predicted scales are ``max_scale ** tanh(raw)`` (``affine2d``).
    gain_range : tuple of float
        Predicted gains lie in ``(low, high)`` (``contrast``; a scaled sigmoid).
    augment_rotation : float
        Augmentation angles, degrees: ``U(-a, a)`` in 2-D, each axis-angle component in 3-D.
    augment_shift : float
        Augmentation shifts ``U(-s, s)`` pixels per axis.
    augment_scale : tuple of float
        Augmentation scale range (``affine2d``).
    augment_gain : tuple of float
        Augmentation gain range (``contrast``).
    resolve_half_turns : bool
        Rotating kinds: canonicalise each sample with its predicted rotation or that rotation
        composed with a half-turn of the canonical frame (2-D: 180 degrees; 3-D: 180 degrees
        about each canonical axis), whichever matches its reconstruction best
        (:meth:`choose_half_turn`).
    contrast_frame : {"observed", "canonical"}
        ``contrast``: measure the image terms in each branch's observed frame (the decoded
        image times the gain against the input; the cross term as branch 2 brought to branch
        1's gain) or, as the reference, between canonical images ``x / gain``.
    rotation_head : {"6d", "axis_angle"}
        ``rigid3d``: the encoder predicts the rotation as 6 numbers mapped onto SO(3) by
        :func:`~sklearn_disentangle.harmony.warps.sixd_to_matrix`, or as an axis-angle vector
        (the reference).
    content_from : {"input", "canonical"}
        Rotating kinds: the content posterior comes from the encoder's pass over the sample
        (the reference) or from a second pass over the sample canonicalised with its
        predicted pose, averaged over the half-turn candidates when ``resolve_half_turns``.
    pose_search : int
        Rotating kinds: 0 (off), or the size of a global rotation grid searched for every
        sample (:class:`~sklearn_disentangle.harmony.search.RotationSearch`; its best
        ``SEARCH_CANDIDATES`` grid rotations each refined by three local rounds): the
        rotation that best puts a template onto the sample replaces the predicted one (no
        gradient through the choice), the shift is the sample's density centre
        (:func:`~sklearn_disentangle.harmony.search.density_centre`) plus the shift head's
        bounded correction, the content is then read off the sample canonicalised with
        it (``content_from="canonical"``), and the rotation head is trained to predict it
        (loss term ``pose_head``, ``|M_head - M_search|_F^2``). The search runs against the
        decoding of the buffer ``search_code`` (a running mean of the training batches'
        content means, momentum ``SEARCH_CODE_MOMENTUM``), then against the decoding of the
        sample's content read in the frame found. Half-turns are then not searched
        separately (the grid covers them).

    Attributes
    ----------
    variational : float
        Scale in [0, 1] of the sampling noise (``z = mu + v sigma eps``) and of the KL terms
        in training: 1 (the default) is the full objective, 0 a plain autoencoder on the
        content; the estimator's ``content_warmup`` schedules it. Evaluation and held-out
        losses always use the full objective.

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.harmony.model import HarmonyModule
    >>> m = HarmonyModule((1, 16, 16), 2, kind="rigid2d", encoder_widths=(32, 16), decoder_widths=(16, 32))
    >>> x = torch.randn(4, 1, 16, 16)
    >>> sorted(m.loss(m(x), x))
    ['cross', 'kl_branches', 'kl_prior', 'loss', 'recon_1', 'recon_2']
    >>> sorted(m.pose(x))
    ['angle', 'matrix', 'shift']
    """

    def __init__(self, input_shape, z_dim, *, kind="rigid2d", encoder_widths=(512, 512, 512, 512, 128),
                 decoder_widths=None, gamma=1.0, prior_kl_weight=1.0, prior_free_bits=0.0, cross_weight_in_gamma=True,
                 normalize=True,
                 decoder_output="linear", max_shift=4.0, max_scale=2.0, gain_range=(0.5, 2.0),
                 augment_rotation=90.0, augment_shift=3.0, augment_scale=(1.0, 1.5), augment_gain=(1.0, 1.5),
                 resolve_half_turns=False, contrast_frame="observed", rotation_head="axis_angle",
                 content_from="input", pose_search=0):
        super().__init__()
        if content_from not in ("input", "canonical"):
            raise ValueError(f"content_from must be 'input' or 'canonical', got {content_from!r}.")
        self.content_from = content_from
        if rotation_head not in ROTATION_HEADS:
            raise ValueError(f"rotation_head must be one of {ROTATION_HEADS}, got {rotation_head!r}.")
        self.rotation_head = rotation_head
        if contrast_frame not in ("observed", "canonical"):
            raise ValueError(f"contrast_frame must be 'observed' or 'canonical', got {contrast_frame!r}.")
        self.contrast_frame = contrast_frame
        self.resolve_half_turns = bool(resolve_half_turns) and kind in ("rigid2d", "affine2d", "rigid3d")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
        self.input_shape = tuple(int(s) for s in input_shape)
        self.z_dim = int(z_dim)
        self.kind = kind
        self.gamma = float(gamma)
        self.prior_kl_weight = float(prior_kl_weight)
        self.prior_free_bits = float(prior_free_bits)
        self.cross_weight_in_gamma = bool(cross_weight_in_gamma)
        self.normalize = bool(normalize)
        self.decoder_output = decoder_output
        self.max_shift = float(max_shift)
        self.max_scale = float(max_scale)
        self.gain_range = (float(gain_range[0]), float(gain_range[1]))
        self.augment_rotation = float(augment_rotation)
        self.augment_shift = float(augment_shift)
        self.augment_scale = (float(augment_scale[0]), float(augment_scale[1]))
        self.augment_gain = (float(augment_gain[0]), float(augment_gain[1]))
        flat = len(self.input_shape) == 1
        self.pose_kind = "contrast" if kind == "contrast" else ("none" if flat else kind)
        spatial = 0 if flat else len(self.input_shape) - 1
        if not flat and self.pose_kind in ("rigid2d", "affine2d") and spatial != 2:
            raise ValueError(f"kind={kind!r} needs images (C, H, W), got a sample shape {self.input_shape}.")
        if not flat and self.pose_kind == "rigid3d" and spatial != 3:
            raise ValueError(f"kind='rigid3d' needs volumes (C, D, H, W), got a sample shape {self.input_shape}.")
        if isinstance(pose_search, bool) or int(pose_search) != pose_search or pose_search < 0:
            raise ValueError(f"pose_search must be 0 (off) or a positive number of grid rotations, got {pose_search!r}.")
        if pose_search and self.pose_kind == "affine2d":
            raise ValueError("pose_search searches rotations only; it is available for kind='rigid2d' and "
                             "'rigid3d', not 'affine2d' (whose pose also has a scale). Use pose_search=0.")
        rotating = self.pose_kind in ("rigid2d", "rigid3d")
        self.rotation_search = None
        if pose_search and rotating:
            n = int(pose_search)
            self.rotation_search = RotationSearch(spatial, n, n_candidates=min(SEARCH_CANDIDATES, n))
        if self.rotation_search is not None:  # the code whose decoding every sample is aligned to
            self.register_buffer("search_code", torch.zeros(1, self.z_dim))
        # aligns the canonical frames of different contents (frame_alignment); shares the search's plans
        self.frame_search = None
        if self.pose_kind in ("rigid2d", "affine2d", "rigid3d"):
            self.frame_search = self.rotation_search or RotationSearch(spatial, FRAME_GRID[spatial])
        self.variational = 1.0  # noise and KL scale; the estimator's content warm-up schedules it
        enc_w = tuple(int(w) for w in encoder_widths)
        dec_w = tuple(int(w) for w in (decoder_widths if decoder_widths is not None else enc_w[::-1]))
        out_dim = self.n_pose + 2 * self.z_dim
        conv = not flat and kind in ("rigid3d", "contrast")
        act = nn.ReLU if kind == "contrast" else nn.Tanh
        if conv:
            self.encoder = _ConvEncoder(self.input_shape, out_dim, enc_w, act)
            self.decoder = _ConvDecoder(self.z_dim, self.input_shape, dec_w, act)
        else:
            self.encoder = _MLPEncoder(math.prod(self.input_shape), out_dim, enc_w, act)
            self.decoder = _MLPDecoder(self.z_dim, self.input_shape, dec_w, act)

    @property
    def n_pose(self):
        """Number of raw encoder outputs of the pose head.

        Examples
        --------
        >>> from sklearn_disentangle.harmony.model import HarmonyModule
        >>> HarmonyModule((1, 8, 8, 8), 1, kind="rigid3d", encoder_widths=(4, 8), rotation_head="6d").n_pose
        9
        """
        if self.pose_kind == "rigid3d" and self.rotation_head == "6d":
            return 9
        return POSE_SIZES[self.pose_kind]

    # ----------------------------------------------------------------- pieces
    def prepare(self, x):
        """The sample as the model sees it: z-scored per sample when ``normalize``.

        Examples
        --------
        >>> import torch
        >>> from sklearn_disentangle.harmony.model import HarmonyModule
        >>> m = HarmonyModule((1, 8, 8), 1, encoder_widths=(8,))
        >>> x = m.prepare(3 + 2 * torch.randn(2, 1, 8, 8))
        >>> round(abs(float(x[0].mean())), 3), round(float(x[0].std(unbiased=False)), 3)
        (0.0, 1.0)
        """
        if not self.normalize:
            return x
        flat = x.flatten(1)
        mean = flat.mean(1)
        std = flat.std(1, unbiased=False) if flat.shape[1] > 1 else torch.zeros_like(mean)
        shape = (-1,) + (1,) * (x.ndim - 1)
        return (x - mean.view(shape)) / (std.view(shape) + 1e-6)

    def _split(self, phi):
        n_pose = self.n_pose
        raw, mu, logvar = phi[:, :n_pose], phi[:, n_pose:n_pose + self.z_dim], phi[:, n_pose + self.z_dim:]
        return raw, mu, logvar

    def _pose_from_raw(self, raw):
        kind = self.pose_kind
        if kind in ("rigid2d", "affine2d"):
            angle = torch.atan2(raw[:, 1], raw[:, 0])
            norm = torch.sqrt(raw[:, 0] ** 2 + raw[:, 1] ** 2 + 1e-8)
            c, s = raw[:, 0] / norm, raw[:, 1] / norm
            matrix = torch.stack([torch.stack([c, s], -1), torch.stack([-s, c], -1)], -2)
            pose = {"angle": angle, "shift": self.max_shift * torch.tanh(raw[:, 2:4])}
            if kind == "affine2d":
                scale = torch.exp(math.log(self.max_scale) * torch.tanh(raw[:, 4]))
                pose["scale"] = scale
                matrix = matrix * scale[:, None, None]
            pose["matrix"] = matrix
            return pose
        if kind == "rigid3d":
            if self.rotation_head == "6d":
                return {"matrix": sixd_to_matrix(raw[:, :6]), "shift": self.max_shift * torch.tanh(raw[:, 6:9])}
            return {"axis_angle": raw[:, :3], "matrix": axis_angle_to_matrix(raw[:, :3]),
                    "shift": self.max_shift * torch.tanh(raw[:, 3:6])}
        if kind == "contrast":
            lo, hi = self.gain_range
            return {"gain": lo + (hi - lo) * torch.sigmoid(raw[:, 0])}
        return {}

    def _encode_prepared(self, x):
        raw, mu, logvar = self._split(self.encoder(x))
        pose = self._pose_from_raw(raw)
        search = self.rotation_search is not None
        if search and "shift" in pose:  # a rotation search needs a shift that does not need the rotation
            pose["shift"] = pose["shift"] + density_centre(x).detach()
        if self.content_from == "canonical" and "matrix" in pose and not search:
            # content from the sample brought to the canonical frame by its predicted pose,
            # averaged over the half-turns that may still be chosen, so it does not depend on them
            flips = self._half_turns(pose["matrix"]) if self.resolve_half_turns else [None]
            views = [self.canonicalize(x, pose if f is None else dict(pose, matrix=pose["matrix"] @ f))
                     for f in flips]
            parts = [self._split(self.encoder(v))[1:] for v in views]
            mu = torch.stack([p[0] for p in parts]).mean(0)
            logvar = torch.stack([p[1] for p in parts]).mean(0)
        out = {"z_mean": mu, "z_logvar": logvar}
        out.update(pose)
        if search and "matrix" in pose:
            out = self._search_rotation(x, out)
        return out

    def _search_rotation(self, x, enc):
        """Replace the predicted rotation by the searched one (``pose_search``); content re-read.

        Two passes, as a consensus refinement followed by a multi-reference one: every sample
        is first aligned to one template, the decoding of ``search_code`` (a running mean of
        the training samples' content means; training updates it), its content is read in
        that frame, and the rotation is then searched again against the decoding of that
        content (the sample's own conformation). With content from the input there is no
        frame to read it in: one pass, against the decoding of the input pass's content.
        """
        with torch.no_grad():
            own = enc["z_mean"]
            if self.content_from == "canonical":
                first = self.rotation_search(x, self.decode(self.search_code), enc["shift"])
                own = self._split(self.encoder(self.canonicalize(x, dict(enc, matrix=first))))[1]
            found = self.rotation_search(x, self.decode(own), enc["shift"])
        out = dict(enc, head_matrix=enc["matrix"], matrix=found)
        out.pop("axis_angle", None)  # no longer the rotation used; the matrix is
        if "angle" in out:
            out["angle"] = torch.atan2(found[:, 0, 1], found[:, 0, 0])
        if self.content_from == "canonical":
            out["z_mean"], out["z_logvar"] = self._split(self.encoder(self.canonicalize(x, out)))[1:]
        if self.training:
            with torch.no_grad():
                self.search_code.lerp_(out["z_mean"].mean(0, keepdim=True), SEARCH_CODE_MOMENTUM)
        return out

    @torch.no_grad()
    def frame_alignment(self, z, reference):
        """Per code, the pose that puts the decoding of ``reference`` onto the decoding of ``z``.

        Harmony identifies each content's canonical frame only up to a rotation of its own:
        nothing in the objective ties the frame of one conformation to another's. Aligning
        the decoded (noise-free) templates, as cryo-EM programs superpose class averages,
        brings them into one frame. Both decodings are centred on their
        :func:`~sklearn_disentangle.harmony.search.density_centre`, and the rotation is
        searched (``frame_search``: a global grid, then ``FRAME_REFINE_ROUNDS`` local rounds of
        each of its ``FRAME_CANDIDATES`` best rotations).

        Parameters
        ----------
        z : tensor of shape (n, z_dim)
        reference : tensor of shape (1, z_dim)

        Returns
        -------
        pose : dict
            ``matrix`` (n, k, k) and ``shift`` (n, k): the reference's feature at ``r`` is at
            ``matrix r + shift`` in the decoding of ``z``. A pose ``P`` in the frame of ``z``
            is ``compose_poses(P, pose)`` in the reference's frame.

        Examples
        --------
        >>> import torch
        >>> from sklearn_disentangle.harmony.model import HarmonyModule
        >>> m = HarmonyModule((1, 12, 12), 1, encoder_widths=(8,)).eval()
        >>> a = m.frame_alignment(torch.zeros(2, 1), torch.zeros(1, 1))  # a template onto itself
        >>> bool(torch.allclose(a["matrix"], torch.eye(2), atol=1e-3))
        True
        """
        if self.frame_search is None:
            raise ValueError(f"frame_alignment needs a rotating pose (kind rigid2d, affine2d or rigid3d on images), "
                             f"not {self.pose_kind!r}.")
        return superpose(self.decode(z), self.decode(reference), self.frame_search, FRAME_REFINE_ROUNDS,
                         n_candidates=min(FRAME_CANDIDATES, self.frame_search.n_rotations))

    @staticmethod
    def _half_turns(matrix):
        """The half-turns of the canonical frame (identity first), as matrices like ``matrix``."""
        k = matrix.shape[-1]
        signs = [(1, 1), (-1, -1)] if k == 2 else [(1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1)]
        return torch.stack([torch.diag(torch.tensor(sg, dtype=matrix.dtype, device=matrix.device)) for sg in signs])

    def canonicalize(self, x, pose):
        """Warp (prepared) samples into the canonical frame with their pose.

        Examples
        --------
        >>> import torch
        >>> from sklearn_disentangle.harmony.model import HarmonyModule
        >>> m = HarmonyModule((3, 8, 8), 1, kind="contrast", encoder_widths=(4, 8), normalize=False)
        >>> x = torch.ones(1, 3, 8, 8)
        >>> float(m.canonicalize(x, {"gain": torch.tensor([2.0])}).max())
        0.5
        """
        if self.pose_kind in ("rigid2d", "affine2d", "rigid3d"):
            return warp_to_canonical(x, pose["matrix"], pose["shift"])
        if self.pose_kind == "contrast":
            return x / pose["gain"].view((-1,) + (1,) * (x.ndim - 1))
        return x

    def apply_pose(self, x, pose):
        """Put canonical samples into a pose (the inverse of :meth:`canonicalize`).

        Examples
        --------
        >>> import torch
        >>> from sklearn_disentangle.harmony.model import HarmonyModule
        >>> m = HarmonyModule((1, 9, 9), 1, encoder_widths=(8,))
        >>> x = torch.zeros(1, 1, 9, 9); x[0, 0, 4, 4] = 1.0
        >>> pose = {"matrix": torch.eye(2)[None], "shift": torch.tensor([[2.0, 0.0]])}
        >>> [int(i) for i in (m.apply_pose(x, pose)[0, 0] == 1).nonzero()[0]]
        [4, 6]
        """
        if self.pose_kind in ("rigid2d", "affine2d", "rigid3d"):
            return warp_from_canonical(x, pose["matrix"], pose["shift"])
        if self.pose_kind == "contrast":
            return x * pose["gain"].view((-1,) + (1,) * (x.ndim - 1))
        return x

    def sample_augmentation(self, n, device, dtype):
        """Random poses of the augmentation ``A`` (drawn from torch's generator).

        Examples
        --------
        >>> import torch
        >>> from sklearn_disentangle.harmony.model import HarmonyModule
        >>> m = HarmonyModule((1, 8, 8), 1, encoder_widths=(8,), augment_rotation=30.0)
        >>> a = m.sample_augmentation(100, "cpu", torch.float32)
        >>> bool(a["angle"].abs().max() <= torch.pi / 6), bool(a["shift"].abs().max() <= 3.0)
        (True, True)
        """
        def uniform(lo, hi, *shape):
            return lo + (hi - lo) * torch.rand(n, *shape, device=device, dtype=dtype)

        kind = self.pose_kind
        rot = math.radians(self.augment_rotation)
        if kind in ("rigid2d", "affine2d"):
            angle = uniform(-rot, rot)
            matrix = rotation_2d(angle)
            pose = {"angle": angle, "shift": uniform(-self.augment_shift, self.augment_shift, 2)}
            if kind == "affine2d":
                pose["scale"] = uniform(*self.augment_scale)
                matrix = matrix * pose["scale"][:, None, None]
            pose["matrix"] = matrix
            return pose
        if kind == "rigid3d":
            v = uniform(-rot, rot, 3)
            return {"axis_angle": v, "matrix": axis_angle_to_matrix(v),
                    "shift": uniform(-self.augment_shift, self.augment_shift, 3)}
        if kind == "contrast":
            return {"gain": uniform(*self.augment_gain)}
        return {}

    def choose_half_turn(self, x, pose, template):
        """Per sample, the pose or one of its half-turns, whichever canonicalises ``x`` closest to ``template``.

        The candidates are the predicted rotation ``M`` composed with the half-turns of the
        canonical frame: ``M`` and ``-M`` in 2-D; ``M`` and ``M diag(1, -1, -1)``,
        ``M diag(-1, 1, -1)``, ``M diag(-1, -1, 1)`` (180 degrees about the canonical x, y
        and z axes) in 3-D. The choice is made without gradient (squared error against the
        decoded ``template``); the returned pose has ``half_turn`` (the index of the chosen
        candidate, 0 for the prediction itself; a bool in 2-D) and the matrix (and 2-D
        angle) of the chosen rotation. Used with ``resolve_half_turns``.

        Examples
        --------
        >>> import torch
        >>> from sklearn_disentangle.harmony.model import HarmonyModule
        >>> m = HarmonyModule((1, 9, 9), 1, encoder_widths=(8,), resolve_half_turns=True)
        >>> x = torch.zeros(1, 1, 9, 9); x[0, 0, 4, 6] = 1.0       # feature at x = +2
        >>> template = torch.zeros(1, 1, 9, 9); template[0, 0, 4, 2] = 1.0  # expected at x = -2
        >>> pose = {"angle": torch.zeros(1), "matrix": torch.eye(2)[None], "shift": torch.zeros(1, 2)}
        >>> m.choose_half_turn(x, pose, template)["half_turn"].tolist()
        [True]
        """
        k = pose["matrix"].shape[-1]
        flips = self._half_turns(pose["matrix"])
        with torch.no_grad():
            errs = torch.stack([(self.canonicalize(x, dict(pose, matrix=pose["matrix"] @ f)) - template)
                                .pow(2).flatten(1).sum(1) for f in flips], 1)
            best = errs.argmin(1)
        out = dict(pose)
        out["matrix"] = pose["matrix"] @ flips[best]
        out.pop("axis_angle", None)  # no longer the chosen rotation's; the matrix is
        if k == 2:
            flip = best == 1
            out["half_turn"] = flip
            if "angle" in pose:
                turned_angle = torch.remainder(pose["angle"] + 2 * math.pi, 2 * math.pi) - math.pi
                out["angle"] = torch.where(flip, turned_angle, pose["angle"])
        else:
            out["half_turn"] = best
        return out

    # ----------------------------------------------------------------- contract
    def encode(self, x):
        """Content posterior and pose of raw samples ``x`` (prepared first); no augmentation, no sampling.

        Examples
        --------
        >>> import torch
        >>> from sklearn_disentangle.harmony.model import HarmonyModule
        >>> m = HarmonyModule((1, 8, 8), 2, encoder_widths=(8,))
        >>> sorted(m.encode(torch.randn(3, 1, 8, 8)))
        ['angle', 'matrix', 'shift', 'z_logvar', 'z_mean']
        """
        return self._encode_prepared(self.prepare(x))

    def pose(self, x, with_content=False):
        """The predicted pose of raw samples: a dict of tensors (``matrix``, ``shift``, ``angle`` ...).

        With ``resolve_half_turns`` the rotation is the encoder's or one of its half-turns,
        whichever brings the sample closest to the decoding of its content mean.
        ``with_content=True`` also returns the content mean ``z_mean``.

        Examples
        --------
        >>> import torch
        >>> from sklearn_disentangle.harmony.model import HarmonyModule
        >>> m = HarmonyModule((1, 8, 8, 8), 1, kind="rigid3d", encoder_widths=(4, 8))
        >>> {k: tuple(v.shape) for k, v in m.pose(torch.randn(2, 1, 8, 8, 8)).items()}
        {'axis_angle': (2, 3), 'matrix': (2, 3, 3), 'shift': (2, 3)}
        """
        xp = self.prepare(x)
        out = self._encode_prepared(xp)
        if (self.resolve_half_turns and self.rotation_search is None
                and self.pose_kind in ("rigid2d", "affine2d", "rigid3d")):
            out = self.choose_half_turn(xp, out, self.decode(out["z_mean"]))
        drop = ("z_logvar", "half_turn", "head_matrix") + (() if with_content else ("z_mean",))
        return {k: v for k, v in out.items() if k not in drop}

    def decode(self, z):
        """Canonical-frame images of content codes ``z`` (after ``decoder_output``).

        Examples
        --------
        >>> import torch
        >>> from sklearn_disentangle.harmony.model import HarmonyModule
        >>> HarmonyModule((1, 8, 8), 2, encoder_widths=(8,)).decode(torch.zeros(3, 2)).shape
        torch.Size([3, 1, 8, 8])
        """
        raw = self.decoder(z)
        if self.decoder_output == "tanh":
            return torch.tanh(raw)
        if self.decoder_output == "sigmoid":
            return torch.sigmoid(raw)
        return raw

    def forward(self, x):
        """Both branches: ``mu_i``, ``logvar_i``, ``rec_i`` (decoded) and ``can_i`` (canonicalised) for
        the input (i = 1) and a randomly transformed copy (i = 2); codes are sampled in training mode.

        Examples
        --------
        >>> import torch
        >>> from sklearn_disentangle.harmony.model import HarmonyModule
        >>> out = HarmonyModule((1, 8, 8), 2, encoder_widths=(8,))(torch.randn(3, 1, 8, 8))
        >>> sorted(out)
        ['can_1', 'can_2', 'logvar_1', 'logvar_2', 'mu_1', 'mu_2', 'rec_1', 'rec_2']
        """
        x1 = self.prepare(x)
        with torch.no_grad():
            x2 = self.apply_pose(x1, self.sample_augmentation(x1.shape[0], x1.device, x1.dtype))
        out = {}
        for i, xi in ((1, x1), (2, x2)):
            enc = self._encode_prepared(xi)
            mu, logvar = enc["z_mean"], enc["z_logvar"]
            z = mu
            if self.training and self.variational > 0:  # warm-up: the noise grows with the KL weight
                z = mu + self.variational * (self.reparameterize(mu, logvar) - mu)
            out[f"mu_{i}"], out[f"logvar_{i}"] = mu, logvar
            out[f"rec_{i}"] = rec = self.decode(z)
            if "head_matrix" in enc:
                out[f"head_{i}"], out[f"search_{i}"] = enc["head_matrix"], enc["matrix"]
            elif self.resolve_half_turns and self.pose_kind != "none":
                enc = self.choose_half_turn(xi, enc, rec)
            out[f"can_{i}"] = self.canonicalize(xi, enc)
            if self.pose_kind == "contrast":
                out[f"x_{i}"], out[f"gain_{i}"] = xi, enc["gain"]
        return out

    def loss(self, output, x):
        """Harmony's objective, per-sample sums averaged over the batch.

        ``loss = gamma (R1 + R2 + X) + K / z_dim + prior_kl_weight * P`` (the cross term X
        outside ``gamma`` when ``cross_weight_in_gamma=False``), with ``R_i`` the squared
        error of branch i's reconstruction against its canonicalised input, ``X`` the
        squared error between the two canonicalised inputs, ``K`` the KL from branch 1's
        to branch 2's content posterior and ``P`` the mean KL of both posteriors to N(0, I).
        For ``contrast`` with ``contrast_frame="observed"``, ``R_i = |g_i rec_i - x_i|^2`` and
        ``X = |x_1 - (g_1 / g_2) x_2|^2`` (``g_i`` the predicted gains). With ``pose_search``
        the term ``pose_head``, the mean over both branches of ``|M_head - M_search|_F^2``
        (the rotation head against the searched rotation), is added with weight 1.

        Examples
        --------
        >>> import torch
        >>> from sklearn_disentangle.harmony.model import HarmonyModule
        >>> m = HarmonyModule((1, 8, 8), 2, encoder_widths=(8,), prior_kl_weight=0.0)
        >>> x = torch.randn(4, 1, 8, 8)
        >>> t = m.loss(m(x), x)
        >>> bool(torch.isclose(t["loss"], t["recon_1"] + t["recon_2"] + t["cross"] + t["kl_branches"]))
        True
        """
        def sse(a, b):
            return (a - b).pow(2).flatten(1).sum(1).mean()

        if self.pose_kind == "contrast" and self.contrast_frame == "observed":
            shape = (-1,) + (1,) * (output["x_1"].ndim - 1)
            g1, g2 = output["gain_1"].view(shape), output["gain_2"].view(shape)
            r1 = sse(output["rec_1"] * g1, output["x_1"])
            r2 = sse(output["rec_2"] * g2, output["x_2"])
            cross = sse(output["x_1"], output["x_2"] * g1 / g2)
        else:
            r1 = sse(output["rec_1"], output["can_1"])
            r2 = sse(output["rec_2"], output["can_2"])
            cross = sse(output["can_1"], output["can_2"])
        kl = gaussian_kl_between(output["mu_1"], output["logvar_1"], output["mu_2"], output["logvar_2"])
        kl = kl.sum(1).mean() / self.z_dim
        per_dim = [gaussian_kl(output[f"mu_{i}"], output[f"logvar_{i}"]).mean(0) for i in (1, 2)]  # batch means
        prior = 0.5 * (per_dim[0].sum() + per_dim[1].sum())
        prior_objective = prior
        if self.prior_free_bits > 0:
            prior_objective = 0.5 * sum(d.clamp(min=self.prior_free_bits).sum() for d in per_dim)
        if self.cross_weight_in_gamma:
            total = self.gamma * (r1 + r2 + cross)
        else:
            total = self.gamma * (r1 + r2) + cross
        # content warm-up (training only): held-out losses always use the full objective
        scale = self.variational if self.training else 1.0
        total = total + scale * (kl + self.prior_kl_weight * prior_objective)
        terms = {"recon_1": r1, "recon_2": r2, "cross": cross, "kl_branches": kl, "kl_prior": prior}
        if "head_1" in output:
            terms["pose_head"] = 0.5 * sum(sse(output[f"head_{i}"], output[f"search_{i}"]) for i in (1, 2))
            total = total + terms["pose_head"]
        return {"loss": total, **terms}
