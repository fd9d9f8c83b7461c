"""Networks of DiffAE in 2-D and 3-D: the semantic encoder and the conditional noise-prediction UNet.

Shapes: input ``(B, C, H, W)`` (``dims=2``) or ``(B, C, D, H, W)`` (``dims=3``). With
``inplane_only=True`` (3-D only) every down/up-sampling acts on ``H, W`` only and the depth
``D`` is never reduced (the cardiac set-up, where the 50 cine frames are the depth axis).

- :class:`SemanticEncoder` (a "half UNet"): input conv, per level ``num_res_blocks``
  unconditioned residual blocks (plus self-attention at the listed resolutions) and a
  down-sampling residual block between levels, a middle block (res, attention, res), then
  GroupNorm, SiLU, global average pooling and a 1x1 convolution to ``z_dim``: ``z_sem`` is a
  raw linear output.
- :class:`ConditionalUNet`: ``eps_theta(x_t, t, z_sem)``. Every residual block is modulated by
  adaptive group normalisation, ``AdaGN(h, t, z) = (1 + s_z) * ((1 + s_t) * GN(h) + b_t)``,
  with ``(s_t, b_t)`` a linear map of the time embedding and ``s_z`` a linear map of
  ``z_sem``. The last convolution of every residual block, the output projection of every
  attention block and the final convolution start at zero, so at initialisation the UNet
  outputs zero and the gradient reaching ``z_sem`` is exactly zero for the first two
  optimiser steps.
- :class:`MLPDenoiser` / :class:`MLPEncoder`: the same conditioning on flat feature vectors
  (used for ``(n_samples, n_features)`` input without ``image_shape``).

"Resolution" (for ``attention_resolutions``) is the largest in-plane side at that depth of
the network: the input's largest spatial side, halved at every down-sampling.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["timestep_embedding", "SemanticEncoder", "ConditionalUNet", "MLPEncoder", "MLPDenoiser", "CyclicPhasePool",
           "cyclic_depth_features"]


def timestep_embedding(t, dim, max_period=10000.0):
    """Sinusoidal embedding of (integer) steps: cosines then sines of ``t * freq``.

    Parameters
    ----------
    t : Tensor of shape (B,)
    dim : int
    max_period : float, default=10000.0

    Returns
    -------
    emb : Tensor of shape (B, dim), float32

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.diffae.unet import timestep_embedding
    >>> timestep_embedding(torch.tensor([0, 10]), 6).shape
    torch.Size([2, 6])
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / max(half, 1))
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def _zero(module):
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def _groups(channels, limit):
    # GroupNorm needs groups | channels; the paper caps groups at min(32, base width)
    return math.gcd(int(limit), int(channels))


class _CyclicDepthConv3d(nn.Conv3d):
    """3-D convolution that pads the depth axis cyclically (frame -1 is the last frame) and the rest with zeros."""

    def __init__(self, cin, cout, k):
        super().__init__(cin, cout, k, padding=(0, k // 2, k // 2))

    def forward(self, x):
        d = self.kernel_size[0] // 2
        return super().forward(F.pad(x, (0, 0, 0, 0, d, d), mode="circular") if d else x)


def _conv(dims, cin, cout, k=3, cyclic_depth=False):
    if dims == 3 and cyclic_depth:
        return _CyclicDepthConv3d(cin, cout, k)
    cls = nn.Conv2d if dims == 2 else nn.Conv3d
    return cls(cin, cout, k, padding=k // 2)


class _Resample(nn.Module):
    def __init__(self, dims, mode, inplane_only):
        super().__init__()
        self.mode = mode
        self.factor = (1, 2, 2) if (dims == 3 and inplane_only) else (2,) * dims

    def forward(self, x):
        if self.mode == "down":
            pool = F.avg_pool2d if x.dim() == 4 else F.avg_pool3d
            return pool(x, self.factor, self.factor)
        return F.interpolate(x, scale_factor=self.factor, mode="nearest")


class ResBlock(nn.Module):
    """Residual block, optionally conditioned (AdaGN on time and ``z``) and resampling.

    Parameters
    ----------
    dims : {2, 3}
    in_channels, out_channels : int
    emb_dim : int or None
        Width of the time embedding; ``None`` for an unconditioned (encoder) block, which is
        ``skip(x) + conv(SiLU(GN(x)))`` (one convolution).
    cond_dim : int or None
        Width of ``z_sem`` (conditioned blocks only).
    dropout : float
    resample : {None, "down", "up"}
    inplane_only : bool
    group_limit : int
    cyclic_depth : bool, default=False
        Pad the depth axis of 3-D input cyclically (a depth axis that is one period).

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.diffae.unet import ResBlock
    >>> blk = ResBlock(2, 4, 8, emb_dim=6, cond_dim=3, dropout=0.0, resample="down")
    >>> blk(torch.randn(2, 4, 8, 8), torch.randn(2, 6), torch.randn(2, 3)).shape
    torch.Size([2, 8, 4, 4])
    """

    def __init__(self, dims, in_channels, out_channels, emb_dim=None, cond_dim=None, dropout=0.0, resample=None,
                 inplane_only=False, group_limit=32, cyclic_depth=False):
        super().__init__()
        self.conditioned = emb_dim is not None
        self.in_norm = nn.GroupNorm(_groups(in_channels, group_limit), in_channels)
        self.resample = None if resample is None else _Resample(dims, resample, inplane_only)
        self.in_conv = _conv(dims, in_channels, out_channels, cyclic_depth=cyclic_depth)
        if self.conditioned:
            self.emb = nn.Linear(emb_dim, 2 * out_channels)
            self.cond = nn.Linear(cond_dim, out_channels)
            self.out_norm = nn.GroupNorm(_groups(out_channels, group_limit), out_channels)
            self.dropout = nn.Dropout(dropout)
            self.out_conv = _zero(_conv(dims, out_channels, out_channels, cyclic_depth=cyclic_depth))
        self.skip = nn.Identity() if in_channels == out_channels else _conv(dims, in_channels, out_channels, 1)

    def forward(self, x, emb=None, cond=None):
        h = F.silu(self.in_norm(x))
        if self.resample is not None:
            h = self.resample(h)
            x = self.resample(x)
        h = self.in_conv(h)
        if self.conditioned:
            shape = (h.shape[0], -1) + (1,) * (h.dim() - 2)
            scale_t, shift_t = self.emb(F.silu(emb)).reshape(shape).chunk(2, dim=1)
            scale_z = self.cond(F.silu(cond)).reshape(shape)
            h = self.out_norm(h)
            h = h * (1 + scale_t) + shift_t
            h = h * (1 + scale_z)
            h = self.out_conv(self.dropout(F.silu(h)))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over all spatial positions, zero-initialised output, residual.

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.diffae.unet import AttentionBlock
    >>> AttentionBlock(8)(torch.randn(1, 8, 2, 4, 4)).shape
    torch.Size([1, 8, 2, 4, 4])
    """

    def __init__(self, channels, group_limit=32):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(channels, group_limit), channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv1d(channels, channels, 1))

    def forward(self, x, *args):
        b, c = x.shape[:2]
        qkv = self.qkv(self.norm(x).reshape(b, c, -1))
        q, k, v = (u.transpose(1, 2)[:, None].float() for u in qkv.chunk(3, dim=1))  # (B, 1, N, C)
        h = F.scaled_dot_product_attention(q, k, v)[:, 0].transpose(1, 2).to(x.dtype)  # softmax(qk^T/sqrt c) v
        return x + self.proj(h).reshape(x.shape)


def _check_dims(dims):
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3, got {dims!r}.")


def encoder_output_depth(depth, n_levels, inplane_only):
    """Depth of the semantic encoder's last feature map for an input of depth ``depth``.

    ``n_levels - 1`` down-samplings; average pooling floors, and ``inplane_only`` keeps depth.

    Examples
    --------
    >>> from sklearn_disentangle.diffae.unet import encoder_output_depth
    >>> encoder_output_depth(16, 3, inplane_only=False), encoder_output_depth(16, 3, inplane_only=True)
    (4, 16)
    """
    return int(depth) if inplane_only else int(depth) // 2 ** (int(n_levels) - 1)


def cyclic_depth_features(g):
    """Per channel: the mean along depth and the first Fourier coefficient along it (real, imaginary).

    Parameters
    ----------
    g : tensor of shape (n, C, D), D >= 2
        Features per depth position (in-plane already pooled).

    Returns
    -------
    mean, re, im : tensors of shape (n, C)
        ``mean_t g``, ``Re F1`` and ``Im F1`` with ``F1 = mean_t g(t) exp(-2 pi i t / D)``.
        Rolling ``g`` by ``k`` positions along depth keeps the mean and multiplies ``F1`` by
        ``exp(-2 pi i k / D)``.

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.diffae.unet import cyclic_depth_features
    >>> g = torch.cos(2 * torch.pi * torch.arange(8.0) / 8)[None, None]  # one channel, one cycle
    >>> [round(float(v), 3) + 0.0 for v in cyclic_depth_features(g)]  # mean, Re F1, Im F1
    [0.0, 0.5, 0.0]
    """
    d = g.shape[-1]
    if g.dim() != 3 or d < 2:
        raise ValueError(f"cyclic_depth_features needs features (n, C, D) with D >= 2, got {tuple(g.shape)}.")
    w = torch.arange(d, dtype=g.dtype, device=g.device) * (2 * math.pi / d)
    return g.mean(-1), (g * torch.cos(w)).mean(-1), -(g * torch.sin(w)).mean(-1)


class CyclicPhasePool(nn.Module):
    """Pool ``(n, C, D)`` features of a periodic depth axis into shift-invariant content and a phase.

    The first Fourier coefficient along depth, ``F1_c``, of every channel turns by the same
    angle when the input is rolled along depth. A learnt complex combination
    ``u = sum_c w_c F1_c`` fixes a phase ``e = u / |u|``; ``F1_c * conj(e)`` is then invariant
    to the roll, as is the mean along depth. Those ``3 C`` invariant features go through a
    linear layer to ``z_dim - 2`` outputs and ``(Re e, Im e)``, the phase as a point on the
    unit circle, fill the last two. The phase's origin and direction are learnt: it equals a
    physical phase (such as the cardiac phase) up to a global offset and, possibly, sign.

    Parameters
    ----------
    channels : int
        ``C``.
    z_dim : int
        Output width, at least 3.
    eps : float, default=1e-6
        Added to ``|u|^2`` before the square root (a finite gradient where ``u`` vanishes).

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.diffae.unet import CyclicPhasePool
    >>> _ = torch.manual_seed(0)
    >>> pool = CyclicPhasePool(4, 6)
    >>> g = torch.randn(2, 4, 8)
    >>> z, z_rolled = pool(g), pool(torch.roll(g, 2, dims=-1))
    >>> torch.allclose(z[:, :4], z_rolled[:, :4], atol=1e-5)  # content: unchanged by the roll
    True
    >>> turned = torch.view_as_complex(z[:, 4:].contiguous()) * torch.exp(torch.tensor(-0.5j * torch.pi))
    >>> torch.allclose(torch.view_as_real(turned), z_rolled[:, 4:], atol=1e-5)  # phase: turned by 2 * 2 pi / 8
    True
    """

    def __init__(self, channels, z_dim, eps=1e-6):
        super().__init__()
        if int(z_dim) < 3:
            raise ValueError(f"CyclicPhasePool needs z_dim >= 3 (two outputs are the phase), got {z_dim}.")
        self.eps = float(eps)
        self.phase_weight = nn.Parameter(torch.randn(2, int(channels)) / math.sqrt(int(channels)))
        self.out = nn.Linear(3 * int(channels), int(z_dim) - 2)

    def forward(self, g):
        mean, re, im = cyclic_depth_features(g)
        a, b = self.phase_weight
        u_re, u_im = re @ a - im @ b, re @ b + im @ a  # sum_c (a_c + i b_c) F1_c
        norm = torch.sqrt(u_re ** 2 + u_im ** 2 + self.eps)
        cos, sin = (u_re / norm)[:, None], (u_im / norm)[:, None]
        aligned = torch.cat([mean, re * cos + im * sin, im * cos - re * sin], 1)  # F1 * conj(e)
        return torch.cat([self.out(aligned), cos, sin], 1)


class SemanticEncoder(nn.Module):
    """DiffAE's semantic encoder: images/volumes to ``z_sem`` of shape ``(B, z_dim)``.

    Parameters
    ----------
    dims : {2, 3}
    in_channels : int
    z_dim : int
    base_channels : int
    channel_mult : tuple of int
        One entry per level (the paper's encoder: ``(1, 1, 2, 3, 4, 4)``).
    num_res_blocks : int
    attention_resolutions : tuple of int
    image_size : int
        Largest spatial side of the input.
    inplane_only : bool
    group_limit : int
    pool : {"mean", "depth", "cyclic"}, default="mean"
        ``"mean"`` (DiffAE): global average pooling, then a 1x1 convolution to ``z_dim``.
        ``"depth"`` (3-D only): average over the in-plane axes only and map the remaining
        ``channels x depth`` features to ``z_dim`` with a linear layer, so that ``z_sem`` can
        say *where along the depth axis* (when, for time-as-depth cines) something happens.
        ``"cyclic"`` (3-D only, ``z_dim >= 3``): average over the in-plane axes, then
        :class:`CyclicPhasePool`, and the encoder's convolutions pad the depth axis
        cyclically: for a depth axis that is one period (a cine of one cardiac cycle),
        ``z_sem[:, :-2]`` is invariant to a cyclic shift along depth (the mean over depth and
        the first Fourier coefficients registered to a learnt phase) and ``z_sem[:, -2:]`` is
        that phase as ``(cos, sin)``, turned by ``2 pi k / D`` by a shift of ``k`` frames
        (exactly with ``inplane_only``; with depth down-sampling, for shifts by multiples of
        the down-sampling factor). Any depth >= 2.
    depth : int or None, default=None
        Depth of the input; required by ``pool="depth"``.

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.diffae.unet import SemanticEncoder
    >>> enc = SemanticEncoder(3, 1, 5, 4, (1, 2), 1, (), 8, inplane_only=True)
    >>> enc(torch.randn(2, 1, 4, 8, 8)).shape
    torch.Size([2, 5])
    >>> SemanticEncoder(3, 1, 5, 4, (1, 2), 1, (), 8, inplane_only=True, pool="depth", depth=4)(
    ...     torch.randn(2, 1, 4, 8, 8)).shape
    torch.Size([2, 5])
    """

    def __init__(self, dims, in_channels, z_dim, base_channels, channel_mult, num_res_blocks,
                 attention_resolutions, image_size, inplane_only=False, group_limit=32, pool="mean", depth=None):
        super().__init__()
        _check_dims(dims)
        if pool not in ("mean", "depth", "cyclic"):
            raise ValueError(f"pool must be 'mean', 'depth' or 'cyclic', got {pool!r}.")
        if pool == "depth" and (dims != 3 or depth is None or int(depth) < 1):
            raise ValueError("pool='depth' needs 3-D input and its depth (depth=D); use pool='mean' for 2-D.")
        if pool == "cyclic" and dims != 3:
            raise ValueError("pool='cyclic' needs 3-D input (a depth axis to take the Fourier coefficient "
                             "along); use pool='mean' for 2-D.")
        self.pool = pool
        ch = base_channels * channel_mult[0]
        self.inp = _conv(dims, in_channels, ch, cyclic_depth=pool == "cyclic")
        blocks = []
        res = image_size
        kw = {"inplane_only": inplane_only, "group_limit": group_limit, "cyclic_depth": pool == "cyclic"}
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(dims, ch, base_channels * mult, **kw))
                ch = base_channels * mult
                if res in attention_resolutions:
                    blocks.append(AttentionBlock(ch, group_limit))
            if level != len(channel_mult) - 1:
                blocks.append(ResBlock(dims, ch, ch, resample="down", **kw))
                res //= 2
        blocks += [ResBlock(dims, ch, ch, **kw), AttentionBlock(ch, group_limit), ResBlock(dims, ch, ch, **kw)]
        self.blocks = nn.ModuleList(blocks)
        self.out_norm = nn.GroupNorm(_groups(ch, group_limit), ch)
        if pool == "mean":
            self.out = _conv(dims, ch, z_dim, 1)
        elif pool == "cyclic":
            self.out = CyclicPhasePool(ch, z_dim)
        else:
            self.out = nn.Linear(ch * encoder_output_depth(depth, len(channel_mult), inplane_only), z_dim)

    def forward(self, x):
        h = self.inp(x)
        for blk in self.blocks:
            h = blk(h)
        h = F.silu(self.out_norm(h))
        if self.pool == "depth":
            return self.out(h.mean(dim=(3, 4)).flatten(1))
        if self.pool == "cyclic":
            return self.out(h.mean(dim=(3, 4)))
        h = h.mean(dim=tuple(range(2, h.dim())), keepdim=True)
        return self.out(h).flatten(1)


class ConditionalUNet(nn.Module):
    """Noise-prediction UNet ``eps_theta(x_t, t, z_sem)`` with AdaGN conditioning.

    Parameters
    ----------
    dims : {2, 3}
    in_channels : int
    z_dim : int
        Width of ``z_sem``.
    base_channels : int
    channel_mult : tuple of int
        The paper's: ``(1, 1, 2, 3, 4)``.
    num_res_blocks : int
        Per level on the way down; ``num_res_blocks + 1`` on the way up.
    attention_resolutions : tuple of int
    dropout : float
    image_size : int
    embed_channels : int
        Width of the time embedding.
    inplane_only : bool
    group_limit : int

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.diffae.unet import ConditionalUNet
    >>> unet = ConditionalUNet(2, 1, 3, 4, (1, 2), 1, (), 0.0, 8, 8)
    >>> eps = unet(torch.randn(2, 1, 8, 8), torch.tensor([0, 999]), torch.randn(2, 3))
    >>> eps.shape, float(eps.detach().abs().max())   # zero-initialised output convolution
    (torch.Size([2, 1, 8, 8]), 0.0)
    """

    def __init__(self, dims, in_channels, z_dim, base_channels, channel_mult, num_res_blocks,
                 attention_resolutions, dropout, image_size, embed_channels, inplane_only=False, group_limit=32):
        super().__init__()
        _check_dims(dims)
        self.base_channels = base_channels
        self.time_embed = nn.Sequential(nn.Linear(base_channels, embed_channels), nn.SiLU(),
                                        nn.Linear(embed_channels, embed_channels))
        kw = {"emb_dim": embed_channels, "cond_dim": z_dim, "dropout": dropout, "inplane_only": inplane_only,
              "group_limit": group_limit}
        ch = base_channels * channel_mult[0]
        self.inp = _conv(dims, in_channels, ch)
        skips = [ch]
        res = image_size
        down = []
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [ResBlock(dims, ch, base_channels * mult, **kw)]
                ch = base_channels * mult
                if res in attention_resolutions:
                    layers.append(AttentionBlock(ch, group_limit))
                down.append(nn.ModuleList(layers))
                skips.append(ch)
            if level != len(channel_mult) - 1:
                down.append(nn.ModuleList([ResBlock(dims, ch, ch, resample="down", **kw)]))
                skips.append(ch)
                res //= 2
        self.down = nn.ModuleList(down)
        self.middle = nn.ModuleList([ResBlock(dims, ch, ch, **kw), AttentionBlock(ch, group_limit),
                                     ResBlock(dims, ch, ch, **kw)])
        up = []
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [ResBlock(dims, ch + skips.pop(), base_channels * mult, **kw)]
                ch = base_channels * mult
                if res in attention_resolutions:
                    layers.append(AttentionBlock(ch, group_limit))
                if level and i == num_res_blocks:
                    layers.append(ResBlock(dims, ch, ch, resample="up", **kw))
                    res *= 2
                up.append(nn.ModuleList(layers))
        self.up = nn.ModuleList(up)
        self.out_norm = nn.GroupNorm(_groups(ch, group_limit), ch)
        self.out = _zero(_conv(dims, ch, in_channels))

    def forward(self, x, t, z):
        emb = self.time_embed(timestep_embedding(t, self.base_channels).to(x.dtype))
        h = self.inp(x)
        hs = [h]
        for layers in self.down:
            for layer in layers:
                h = layer(h, emb, z)
            hs.append(h)
        for layer in self.middle:
            h = layer(h, emb, z)
        for layers in self.up:
            h = torch.cat([h, hs.pop()], dim=1)
            for layer in layers:
                h = layer(h, emb, z)
        return self.out(F.silu(self.out_norm(h)))


class MLPEncoder(nn.Module):
    """Semantic encoder for flat feature vectors: ``n_layers`` SiLU layers then a linear map.

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.diffae.unet import MLPEncoder
    >>> MLPEncoder(10, 3, 16, 2)(torch.randn(4, 10)).shape
    torch.Size([4, 3])
    """

    def __init__(self, n_features, z_dim, width, n_layers):
        super().__init__()
        layers, d = [], n_features
        for _ in range(n_layers):
            layers += [nn.Linear(d, width), nn.LayerNorm(width), nn.SiLU()]
            d = width
        layers.append(nn.Linear(d, z_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class _MLPBlock(nn.Module):
    def __init__(self, din, width, emb_dim, z_dim, dropout):
        super().__init__()
        self.lin = nn.Linear(din, width)
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.emb = nn.Linear(emb_dim, 2 * width)
        self.cond = nn.Linear(z_dim, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h, emb, z):
        scale_t, shift_t = self.emb(F.silu(emb)).chunk(2, dim=1)
        h = self.norm(self.lin(h)) * (1 + scale_t) + shift_t
        return self.dropout(F.silu(h * (1 + self.cond(F.silu(z)))))


class MLPDenoiser(nn.Module):
    """``eps_theta(x_t, t, z)`` on flat vectors: AdaGN-style modulated layers with input skips.

    Every hidden layer sees the previous layer concatenated with ``x_t`` (as DiffAE's
    MLPSkipNet); the output layer starts at zero.

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.diffae.unet import MLPDenoiser
    >>> MLPDenoiser(10, 3, 16, 2, 8)(torch.randn(4, 10), torch.tensor([1, 2, 3, 4]), torch.randn(4, 3)).shape
    torch.Size([4, 10])
    """

    def __init__(self, n_features, z_dim, width, n_layers, embed_channels, dropout=0.0):
        super().__init__()
        self.embed_channels = embed_channels
        self.time_embed = nn.Sequential(nn.Linear(embed_channels, embed_channels), nn.SiLU(),
                                        nn.Linear(embed_channels, embed_channels))
        self.blocks = nn.ModuleList(
            _MLPBlock(n_features + (width if i else 0), width, embed_channels, z_dim, dropout)
            for i in range(n_layers))
        self.out = _zero(nn.Linear(width, n_features))

    def forward(self, x, t, z):
        emb = self.time_embed(timestep_embedding(t, self.embed_channels).to(x.dtype))
        h = self.blocks[0](x, emb, z)
        for blk in self.blocks[1:]:
            h = blk(torch.cat([h, x], dim=1), emb, z)
        return self.out(h)
