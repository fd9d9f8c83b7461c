"""O2-VAE's torch modules: invariant encoders, the doubling CNN decoder and the aligned loss.

- :class:`E2Encoder`: the paper's O(2)-steerable encoder (e2cnn; induced gated
  non-linearities, invariant pooling, MLP head), exactly invariant to 90-degree rotations
  and flips, approximately to other angles;
- :class:`D4Encoder`: a torch-only encoder exactly invariant to the 8 rotations by
  multiples of 90 degrees and flips (a CNN applied to the 8 copies, max-pooled over them);
- :class:`CNNEncoder`: a plain CNN (the paper's non-invariant baseline);
- :class:`DoublingDecoder`: linear layer to a 1 x 1 map, then transposed convolutions that
  each double the side (the paper's decoder), centre-cropped to the image side;
- :class:`O2VAEModule`: the VAE whose reconstruction term is taken after registering the
  reconstruction to the input over rotations and flips
  (:mod:`sklearn_disentangle.o2vae.registration`).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import LatentModule, MLPDecoder, MLPEncoder, gaussian_kl
from .registration import register, register_brute_force, rotate

__all__ = ["E2Encoder", "D4Encoder", "CNNEncoder", "DoublingDecoder", "O2VAEModule",
           "default_decoder_widths", "ENCODERS"]

#: Paper encoder block layout: (kernel, padding, 2x2 pooling after the block).
_E2_FIRST = (7, 1, False)
_E2_MIDDLE = (5, 2, False)
_E2_POOLED = (1, 3)  # 0-based block indices followed by 2 x 2 pooling (paper: blocks 2 and 4)


def _e2_layout(n_blocks, side):
    """Per-block (kernel, padding, pool) for ``n_blocks`` blocks on ``side`` px input.

    The paper's six-block layout (k7 p1; k5 p2 with pooling after blocks 2 and 4; last k5
    p0) generalised to any number of blocks; the last block keeps padding 2 when the map
    would otherwise vanish (small images).
    """
    layout, size = [], side
    for i in range(n_blocks):
        kernel, padding, _ = _E2_FIRST if i == 0 else _E2_MIDDLE
        last = i == n_blocks - 1
        if last and i > 0:
            padding = 0 if size - kernel + 1 >= 1 else 2
        size = size + 2 * padding - kernel + 1
        pool = (i in _E2_POOLED) and not last
        if size < 1 or (pool and size < 2):
            return None
        if pool:
            size //= 2
        layout.append((kernel, padding, pool))
    return layout


def _head(n_in, out_dim, hidden=64):
    # the paper's MLP head: Linear -> BatchNorm1d -> ELU -> Linear
    return nn.Sequential(nn.Linear(n_in, hidden), nn.BatchNorm1d(hidden), nn.ELU(), nn.Linear(hidden, out_dim))


class E2Encoder(nn.Module):
    """O(2)-steerable CNN encoder of O2-VAE, built with e2cnn (imported lazily).

    Each block: ``R2Conv`` (O(2) with band limit ``max_frequency``; output fields induced
    from SO(2): ``C`` scalar fields, ``C * I`` gates and ``C`` fields of each frequency
    1..I, I = ``max_frequency``) -> batch norm (``InnerBatchNorm`` on scalars and gates,
    ``InducedNormBatchNorm`` on the rest) -> ELU on scalars, induced gated non-linearity
    on the rest -> optional 2 x 2 pooling (pointwise max on scalars; ``field_pool`` on the rest). The last block has
    ``round(C / (I + 1))`` fields of each kind and ends in invariant pooling
    (``GroupPooling`` + ``InducedNormPool``) and a global spatial max, giving ``(I + 1) *
    round(C / (I + 1))`` invariants, then the MLP head.

    Parameters
    ----------
    in_channels : int
    out_dim : int
        ``2 * z_dim`` (mean and log-variance).
    side : int
        Image side (the block layout is checked against it).
    widths : sequence of int, default=(6, 9, 12, 12, 19, 25)
        ``C`` of each block (the paper's).
    max_frequency : int, default=3
    field_pool : {"avg", "norm_max"}, default="avg"
        2 x 2 pooling of the non-scalar fields. ``"norm_max"`` (the paper's ``NormMaxPool``)
        keeps the field of largest norm in each window; that choice jumps at ties, which
        images with flat backgrounds hit, and breaks exact 90-degree invariance (relative
        code changes up to ~1e-3 measured on 32 px digits). ``"avg"`` (average pooling,
        continuous) keeps it at float precision (~1e-6).

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.o2vae.model import E2Encoder
    >>> enc = E2Encoder(1, 4, side=16, widths=(2, 2, 3))
    >>> enc(torch.rand(3, 1, 16, 16)).shape
    torch.Size([3, 4])
    """

    def __init__(self, in_channels, out_dim, side, widths=(6, 9, 12, 12, 19, 25), max_frequency=3,
                 field_pool="avg"):
        super().__init__()
        from ._e2cnn_compat import import_e2cnn, quiet_build

        import_e2cnn()
        from e2cnn import gspaces
        from e2cnn import nn as enn

        widths = tuple(int(w) for w in widths)
        n_freq = int(max_frequency)
        self._init_args = {"in_channels": int(in_channels), "out_dim": int(out_dim), "side": int(side),
                           "widths": widths, "max_frequency": n_freq, "field_pool": field_pool}
        if field_pool not in ("avg", "norm_max"):
            raise ValueError(f"field_pool must be 'avg' or 'norm_max', got {field_pool!r}.")
        if len(widths) < 2:
            raise ValueError(f"encoder_widths needs at least 2 blocks, got {widths}.")
        last = round(widths[-1] / (n_freq + 1))
        if last < 1:
            raise ValueError(
                f"The last encoder width {widths[-1]} gives round({widths[-1]}/{n_freq + 1}) = 0 invariant "
                f"fields; use a last width >= {(n_freq + 1) // 2 + 1}.")
        layout = _e2_layout(len(widths), side)
        if layout is None:
            raise ValueError(
                f"Images of side {side} px are too small for {len(widths)} e2cnn encoder blocks "
                "(kernels 7 then 5, two 2x2 poolings); use larger images or fewer encoder_widths.")
        self.enn = enn
        with quiet_build():
            gspace = gspaces.FlipRot2dOnR2(N=-1, maximum_frequency=n_freq, axis=math.pi / 2)
            group = gspace.fibergroup
            sg_id = (None, -1)  # SO(2) inside O(2)
            subgroup = group.subgroup(sg_id)[0]
            scalar_rep = group.induced_representation(sg_id, subgroup.trivial_representation)
            freq_reps = [group.induced_representation(sg_id, subgroup.irrep(k)) for k in range(1, n_freq + 1)]
            self.in_type = enn.FieldType(gspace, [gspace.trivial_repr] * int(in_channels))
            in_type = self.in_type
            self.blocks = nn.ModuleList()
            for i, (width, (kernel, padding, pool)) in enumerate(zip(widths, layout)):
                invariant = i == len(widths) - 1
                c = last if invariant else width
                block = _E2Block(enn, gspace, in_type, c, kernel, padding, pool, invariant,
                                 scalar_rep, freq_reps, field_pool)
                self.blocks.append(block)
                in_type = block.out_type
            self.n_invariants = in_type.size
            self.global_pool = enn.PointwiseAdaptiveMaxPool(in_type, 1)
        self.head = _head(self.n_invariants, out_dim)
        _basis_buffers_not_persistent(self)
        self._convs = [m for m in self.modules() if isinstance(m, enn.R2Conv)]
        self._derived_buffers_not_persistent()
        self.register_load_state_dict_post_hook(_rebuild_filters_after_load)

    # e2cnn's R2Conv caches its expanded filter as a buffer in eval mode only, so its
    # state_dict would depend on the mode; the cache is derived from the weights, so it is
    # left out of the state_dict and rebuilt after loading.
    def _derived_buffers_not_persistent(self):
        for conv in self._convs:
            for name in ("filter", "expanded_bias"):
                if conv._buffers.get(name) is not None:
                    conv.register_buffer(name, conv._buffers.pop(name), persistent=False)

    def train(self, mode=True):
        super().train(mode)
        self._derived_buffers_not_persistent()
        return self

    # e2cnn's field types hold lambdas and a module reference, which do not pickle: an
    # encoder pickles (and deep-copies) as its constructor arguments and its state_dict.
    def __getstate__(self):
        return {"init_args": self._init_args, "state_dict": self.state_dict(), "training": self.training}

    def __setstate__(self, state):
        self.__init__(**state["init_args"])
        tensors = list(state["state_dict"].values())
        if tensors:  # rebuild on the device the weights were saved from (or mapped to)
            self.to(tensors[0].device)
        self.train(state["training"])
        self.load_state_dict(state["state_dict"])

    def forward(self, x):
        h = self.enn.GeometricTensor(x, self.in_type)
        for block in self.blocks:
            h = block(h)
        h = self.global_pool(h).tensor.flatten(1)
        return self.head(h)


def _rebuild_filters_after_load(module, incompatible_keys):
    if not module.training:  # eval mode: recompute the cached filters from the loaded weights
        module.train(True)
        module.train(False)


def _basis_buffers_not_persistent(module):
    """Leave e2cnn's sampled steerable bases and their index tensors out of the state_dict.

    They are fixed functions of the constructor arguments, and several index buffers are
    expanded views that ``load_state_dict`` cannot copy into; without them the state_dict
    holds exactly the learnable weights, biases and batch-norm statistics.
    """
    for name, sub in module.named_modules():
        if "_basisexpansion" not in name:
            continue
        for buf_name in list(sub._buffers):
            tensor = sub._buffers.pop(buf_name)
            sub.register_buffer(buf_name, tensor, persistent=False)


class _E2Block(nn.Module):
    """One ``inducedgated_norm`` block (see :class:`E2Encoder`)."""

    def __init__(self, enn, gspace, in_type, c, kernel, padding, pool, invariant, scalar_rep, freq_reps,
                 field_pool="avg"):
        super().__init__()
        self.enn = enn
        n_freq = len(freq_reps)
        self.scalar_type = enn.FieldType(gspace, [scalar_rep] * c)
        self.gate_type = enn.FieldType(gspace, [scalar_rep] * (c * n_freq))
        self.gated_type = enn.FieldType(gspace, freq_reps * c)
        self.gates_and_gated = self.gate_type + self.gated_type
        conv_out = self.scalar_type + self.gates_and_gated
        self.conv = enn.R2Conv(in_type, conv_out, kernel, padding=padding, frequencies_cutoff=0.8 * math.pi,
                               sigma=0.6, maximum_offset=0)
        self.bn_scalar = enn.InnerBatchNorm(self.scalar_type)
        self.bn_gate = enn.InnerBatchNorm(self.gate_type)
        self.bn_gated = enn.InducedNormBatchNorm(self.gated_type)
        self.act_scalar = enn.ELU(self.scalar_type)
        labels = ["gate"] * len(self.gate_type) + ["gated"] * len(self.gated_type)
        self.act_gated = enn.InducedGatedNonLinearity1(self.gates_and_gated, gates=labels)
        self.pool_scalar = enn.PointwiseMaxPool(self.scalar_type, 2) if pool else None
        field_pool_cls = enn.NormMaxPool if field_pool == "norm_max" else enn.PointwiseAvgPool
        self.pool_gated = field_pool_cls(self.gated_type, 2) if pool else None
        self.invariant = invariant
        if invariant:
            self.inv_scalar = enn.GroupPooling(self.scalar_type)
            self.inv_gated = enn.InducedNormPool(self.gated_type)
            out_reps = self.inv_scalar.out_type.representations + self.inv_gated.out_type.representations
        else:
            out_reps = self.scalar_type.representations + self.gated_type.representations
        self.out_type = enn.FieldType(gspace, list(out_reps))
        self._sizes = (self.scalar_type.size, self.gate_type.size, self.gated_type.size)

    def forward(self, x):
        enn = self.enn
        t = self.conv(x).tensor
        s, g, q = torch.split(t, self._sizes, dim=1)
        s = self.act_scalar(self.bn_scalar(enn.GeometricTensor(s, self.scalar_type)))
        g = self.bn_gate(enn.GeometricTensor(g, self.gate_type)).tensor
        q = self.bn_gated(enn.GeometricTensor(q, self.gated_type)).tensor
        q = self.act_gated(enn.GeometricTensor(torch.cat([g, q], dim=1), self.gates_and_gated))
        if self.pool_scalar is not None:
            s, q = self.pool_scalar(s), self.pool_gated(q)
        if self.invariant:
            s, q = self.inv_scalar(s), self.inv_gated(q)
        return enn.GeometricTensor(torch.cat([s.tensor, q.tensor], dim=1), self.out_type)


def _cnn_trunk(in_channels, widths):
    # the paper's vanilla encoder blocks: 3x3 stride-2 conv -> BatchNorm -> ELU
    layers, c_in = [], in_channels
    for width in widths:
        layers += [nn.Conv2d(c_in, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ELU()]
        c_in = width
    return nn.Sequential(*layers), c_in


class CNNEncoder(nn.Module):
    """Plain CNN encoder (the paper's non-invariant baseline): stride-2 conv blocks, global max, MLP head.

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.o2vae.model import CNNEncoder
    >>> CNNEncoder(1, 4, widths=(4, 8))(torch.rand(2, 1, 16, 16)).shape
    torch.Size([2, 4])
    """

    def __init__(self, in_channels, out_dim, widths=(32, 64, 128, 128)):
        super().__init__()
        self.trunk, n_out = _cnn_trunk(in_channels, widths)
        self.head = _head(n_out, out_dim)

    def features(self, x):
        return torch.amax(self.trunk(x), dim=(-2, -1))

    def forward(self, x):
        return self.head(self.features(x))


def d4_orbit(x):
    """The 8 images ``rot90^k(x)`` and ``rot90^k(mirror(x))``, stacked on a new first axis.

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.o2vae.model import d4_orbit
    >>> d4_orbit(torch.rand(2, 1, 4, 4)).shape
    torch.Size([8, 2, 1, 4, 4])
    """
    m = torch.flip(x, dims=(-1,))
    return torch.stack([torch.rot90(v, k, dims=(-2, -1)) for v in (x, m) for k in range(4)])


class D4Encoder(CNNEncoder):
    """Torch-only encoder pooled over a dihedral orbit of each image (exactly D4-invariant).

    The CNN trunk of :class:`CNNEncoder` runs on rotated/mirrored copies of each image and
    its pooled features are pooled over the copies before the head (orbit pooling). With
    ``n_rotations=4`` the copies are the 8 images of the dihedral group D4 (rotations by
    multiples of 90 degrees, times a mirror), permutations of pixels, so the code of any
    copy is the code of the image up to float rounding. ``n_rotations=8`` or ``16`` add
    copies rotated by 45 (22.5) degrees with bilinear resampling: still exactly invariant to
    D4 (the added copies are closed under it), and much closer to invariant at other angles,
    at 2 (4) times the cost. Cost: ``2 * n_rotations`` CNN passes.

    Parameters
    ----------
    in_channels, out_dim : int
    widths : tuple of int, default=(32, 64, 128, 128)
    n_rotations : {4, 8, 16}, default=4
        Rotations in the orbit (equally spaced over 360 degrees), each with and without a mirror.
    orbit_pool : {"max", "mean"}, default="max"
        How features are pooled over the orbit. Both are exactly invariant to the orbit's
        group; ``"mean"`` varies more smoothly between the orbit's angles.

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.o2vae.model import D4Encoder
    >>> enc = D4Encoder(1, 4, widths=(4, 8)).eval()
    >>> x = torch.rand(2, 1, 16, 16)
    >>> bool(torch.allclose(enc(x), enc(torch.rot90(x, 1, dims=(-2, -1))), atol=1e-6))
    True
    >>> D4Encoder(1, 4, widths=(4, 8), n_rotations=16, orbit_pool="mean").eval()(x).shape
    torch.Size([2, 4])
    """

    def __init__(self, in_channels, out_dim, widths=(32, 64, 128, 128), n_rotations=4, orbit_pool="max"):
        super().__init__(in_channels, out_dim, widths)
        if n_rotations not in ORBIT_ROTATIONS:
            raise ValueError(f"n_rotations must be one of {ORBIT_ROTATIONS}, got {n_rotations!r}.")
        if orbit_pool not in ("max", "mean"):
            raise ValueError(f"orbit_pool must be 'max' or 'mean', got {orbit_pool!r}.")
        self.n_rotations = int(n_rotations)
        self.orbit_pool = orbit_pool

    def orbit(self, x):
        """The ``2 * n_rotations`` copies of x pooled over, stacked on a new first axis."""
        copies = [x]
        for j in range(1, self.n_rotations // 4):
            angle = torch.full((x.shape[0],), 90.0 * j / (self.n_rotations // 4), device=x.device)
            copies.append(rotate(x, angle))
        return torch.cat([d4_orbit(c) for c in copies])

    def forward(self, x):
        n = x.shape[0]
        views = self.orbit(x)
        feats = self.features(views.flatten(0, 1)).reshape(len(views), n, -1)
        pooled = feats.amax(dim=0) if self.orbit_pool == "max" else feats.mean(dim=0)
        return self.head(pooled)


def default_decoder_widths(side):
    """The paper's decoder widths for a side: 32 -> (192, 96, 96, 48, 48), 64 -> (..., 48).

    ``len(widths)`` doublings of a 1 x 1 map give ``2 ** len(widths) >= side``.

    Examples
    --------
    >>> from sklearn_disentangle.o2vae.model import default_decoder_widths
    >>> default_decoder_widths(32), default_decoder_widths(64)
    ((192, 96, 96, 48, 48), (192, 96, 96, 48, 48, 48))
    """
    n_up = max(1, math.ceil(math.log2(side)))
    base = (192, 96, 96)
    return base[:n_up] + (48,) * max(0, n_up - len(base))


class DoublingDecoder(nn.Module):
    """O2-VAE's decoder: Linear + ELU to a 1 x 1 map, then doubling transposed convolutions.

    ``ConvTranspose2d(k3, s2, p1, output_padding=1)`` + BatchNorm + ELU between
    consecutive ``widths``, then one more to ``out_channels``: the output side is
    ``2 ** len(widths)``, centre-cropped to ``side`` when larger (the paper requires equality).
    Returns logits (the sigmoid is applied by the VAE).

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.o2vae.model import DoublingDecoder
    >>> DoublingDecoder(3, 2, side=12, widths=(8, 8, 4, 4))(torch.zeros(5, 3)).shape
    torch.Size([5, 2, 12, 12])
    """

    def __init__(self, z_dim, out_channels, side, widths):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if 2 ** len(widths) < side:
            raise ValueError(
                f"decoder_widths of length {len(widths)} produce {2 ** len(widths)} px images, smaller than "
                f"the {side} px input; use at least {math.ceil(math.log2(side))} widths (or None for the default).")
        self.side = int(side)
        self.fc = nn.Sequential(nn.Linear(z_dim, widths[0]), nn.ELU())
        layers = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1),
                       nn.BatchNorm2d(c_out), nn.ELU()]
        layers.append(nn.ConvTranspose2d(widths[-1], out_channels, 3, stride=2, padding=1, output_padding=1))
        self.deconvs = nn.Sequential(*layers)

    def forward(self, z):
        h = self.deconvs(self.fc(z)[:, :, None, None])
        start = (h.shape[-1] - self.side) // 2
        return h[..., start:start + self.side, start:start + self.side]


ENCODERS = ("e2cnn", "d4", "cnn")
ORBIT_ROTATIONS = (4, 8, 16)


class O2VAEModule(LatentModule):
    """VAE with an invariant encoder and an orientation-aligned reconstruction loss.

    Loss per sample: ``min over flips of recon(rotate(y, angle, flip), x) + beta * KL``,
    where ``y`` is the decoded image (sigmoid of the logits for ``"bce"``) and the angle
    comes from :func:`~sklearn_disentangle.o2vae.registration.register` (``align="fourier"``)
    or :func:`~sklearn_disentangle.o2vae.registration.register_brute_force` (``"brute"``);
    ``align=None`` gives a plain VAE. In training mode every batch is first rotated by a
    random angle and mirrored with probability 1/2 (``augment``).

    Parameters
    ----------
    input_shape : tuple
        ``(C, H, H)`` for images, or ``(n_features,)`` (MLP encoder/decoder, no alignment).
    z_dim : int
    encoder : {"e2cnn", "d4", "cnn"}
    encoder_widths, decoder_widths : sequences of int
    max_frequency : int
    field_pool : {"avg", "norm_max"}
    orbit_rotations : {4, 8, 16}
    orbit_pool : {"max", "mean"}
        Orbit of the ``"d4"`` encoder (see :class:`D4Encoder`).
    beta : float
    recon_loss : {"bce", "mse"}
    align : {"fourier", "brute", None}
    align_flip : bool
    n_angles : int
    rot_step_deg : float
    augment : bool

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.o2vae.model import O2VAEModule
    >>> m = O2VAEModule((1, 16, 16), 3, encoder="d4", encoder_widths=(4, 8), decoder_widths=(8, 8, 4, 4))
    >>> x = torch.rand(4, 1, 16, 16)
    >>> sorted(m.loss(m(x), x))
    ['kl', 'loss', 'recon']
    """

    def __init__(self, input_shape, z_dim, *, encoder="e2cnn", encoder_widths=(6, 9, 12, 12, 19, 25),
                 decoder_widths=None, max_frequency=3, field_pool="avg", orbit_rotations=4, orbit_pool="max",
                 beta=0.01, recon_loss="bce", align="fourier", align_flip=True, n_angles=360, rot_step_deg=2.0,
                 augment=True):
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)
        self.z_dim = int(z_dim)
        self.beta = float(beta)
        self.recon_loss = recon_loss
        self.align_flip = bool(align_flip)
        self.n_angles = int(n_angles)
        self.rot_step_deg = float(rot_step_deg)
        self.flat = len(self.input_shape) == 1
        if self.flat:
            # flat features have no orientation: an MLP VAE, nothing to align or augment
            self.encoder = MLPEncoder(self.input_shape[0], 2 * self.z_dim)
            self.decoder = MLPDecoder(self.z_dim, self.input_shape)
            self.align, self.augment = None, False
            return
        channels, height, width = self.input_shape
        if height != width:
            raise ValueError(f"O2VAE needs square images, got H x W = {height} x {width}; pad or crop them "
                             "to a square (rotations of a non-square image leave its frame).")
        self.align, self.augment = align, bool(augment)
        if encoder == "e2cnn":
            self.encoder = E2Encoder(channels, 2 * self.z_dim, side=height, widths=encoder_widths,
                                     max_frequency=max_frequency, field_pool=field_pool)
        elif encoder == "d4":
            self.encoder = D4Encoder(channels, 2 * self.z_dim, widths=encoder_widths, n_rotations=orbit_rotations,
                                     orbit_pool=orbit_pool)
        elif encoder == "cnn":
            self.encoder = CNNEncoder(channels, 2 * self.z_dim, widths=encoder_widths)
        else:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}.")
        widths = default_decoder_widths(height) if decoder_widths is None else decoder_widths
        self.decoder = DoublingDecoder(self.z_dim, channels, height, widths)

    # ----------------------------------------------------------------- contract
    def encode(self, x):
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return {"z_mean": mu, "z_logvar": logvar}

    def decode_raw(self, z):
        """Decoder output before the output non-linearity (logits for ``"bce"``)."""
        return self.decoder(z)

    def decode(self, z):
        raw = self.decode_raw(z)
        return torch.sigmoid(raw) if self.recon_loss == "bce" else raw

    def _augment(self, x):
        n = x.shape[0]
        angles = torch.rand(n, device=x.device) * 360.0
        flips = torch.rand(n, device=x.device) < 0.5
        return rotate(x, angles, flips)

    def forward(self, x):
        if self.training and self.augment:
            x = self._augment(x)
        out = self.encode(x)
        z = self.reparameterize(out["z_mean"], out["z_logvar"]) if self.training else out["z_mean"]
        out["x"] = x
        out["recon"] = self.decode(z)
        return out

    def _per_sample_recon(self, y, x):
        if self.recon_loss == "bce":
            per = F.binary_cross_entropy(y, x, reduction="none")
        else:
            per = (y - x).pow(2)
        return per.flatten(1).sum(1)

    def align_to(self, y, x):
        """Register reconstructions ``y`` to inputs ``x``: ``(angles, flipped, aligned, recon per sample)``."""
        if self.align == "fourier":
            return register(x, y, flips=self.align_flip, n_angles=self.n_angles, criterion=self._per_sample_recon)
        if self.align == "brute":
            return register_brute_force(x, y, flips=self.align_flip, step_deg=self.rot_step_deg,
                                        criterion=self._per_sample_recon)
        n = x.shape[0]
        zeros = torch.zeros(n, dtype=x.dtype, device=x.device)
        return zeros, zeros.bool(), y, self._per_sample_recon(y, x)

    def loss(self, output, x):
        # ``output["x"]`` is the (augmented) batch the encoder saw; x the un-augmented one
        target = output.get("x", x)
        *_, recon = self.align_to(output["recon"], target)
        kl = gaussian_kl(output["z_mean"], output["z_logvar"]).sum(dim=1)
        recon, kl = recon.mean(), kl.mean()
        return {"loss": recon + self.beta * kl, "recon": recon, "kl": kl}
