"""Torch side of OPUS-DSD: 3-D back-projection encoder, convolutional template decoder, renderer, loss.

The module takes a batch dict (``images`` raw ``(B, D, D)``, ``rotations`` ``(B, 3, 3)``,
``shifts`` ``(B, 2)`` origins in pixels, ``ctf`` ``(B, 9)`` packed parameters, ``index`` and
``group`` ``(B,)``), so the whole image formation runs on the model's device:

1. recentre (content moves by ``+origin``), Fourier-crop ``D -> R``, crop ``R -> S``, divide by the
   data's standard deviation: the target ``y``;
2. encoder input: ``y`` with a random B-factor and (training) SNR-scaled gain/offset, extruded
   along the viewing direction into the reference frame, times the 3-D mask, then a 3-D CNN
   to ``(mu, logvar)`` of ``z`` (``z_dim``) and ``z_aff`` (``z_aff_dim``, a global pose correction);
3. decoder: ``z -> MLP -> ConvTranspose3d stack -> templateres**3`` density, resampled to ``S**3``;
4. rendering at ``C`` candidate poses near the consensus (the consensus itself first),
   CTF and OPUS-DSD's envelope on the ``R`` grid;
5. loss: pose-marginalised reconstruction, cyclically annealed KL, TV/L1 on the template and the
   structural-disentanglement prior (memory bank of latents, cross-view positives/negatives).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..cryoem.fourier import frequency_grid, ifft2_centered
from ..cryoem.projection import project_real
from ..cryoem.rotations import axis_angle_to_matrix, quaternion_to_matrix
from ..nn import LatentModule
from .geometry import backproject, crop_to_box, ctf_on_grid, recentre_and_crop, render_projections

__all__ = ["OpusEncoder", "ConvTemplate", "AffineHead", "OpusDSDModule", "cyclic_beta", "bfactor_at_epoch"]

# Widths of the reference architecture (width_mult=1.0).
ENCODER_WIDTHS = (32, 64, 128, 256, 512, 512)
ENCODER_FC = 512
DECODER_MLP = (512, 2048)
DECODER_WIDTHS = (1024, 512, 256, 128, 64, 32, 16)


def _scaled(width, mult, floor=4):
    return max(floor, int(round(width * mult)))


def cyclic_beta(n_images, period=125000, ramp=100000, low=0.001):
    """OPUS-DSD's cyclic KL weight over the number of images seen: a linear ramp, then a plateau.

    ``beta = min(low + (n mod period) / ramp, 1)``: from ``low`` to 1 over ``ramp`` images,
    held at 1 until ``period``, then restarted.

    Parameters
    ----------
    n_images : int or ndarray
    period : int, default=125000
    ramp : int, default=100000
    low : float, default=0.001

    Returns
    -------
    beta : float or ndarray

    Examples
    --------
    >>> from sklearn_disentangle.opus_dsd.model import cyclic_beta
    >>> [round(cyclic_beta(n), 3) for n in (0, 50000, 100000, 124999, 125000)]
    [0.001, 0.501, 1.0, 1.0, 0.001]
    """
    import numpy as np

    value = np.minimum(low + np.mod(n_images, period) / float(ramp), 1.0)
    return float(value) if np.ndim(value) == 0 else value


def bfactor_at_epoch(bfactor, epoch):
    """OPUS-DSD's per-epoch envelope B: ``B (1 - 0.1 / (1 + 3 exp(-epoch / 4))) 10 / 9``.

    About ``1.083 B`` at epoch 0, tending to ``B``.

    Examples
    --------
    >>> from sklearn_disentangle.opus_dsd.model import bfactor_at_epoch
    >>> round(bfactor_at_epoch(4.0, 0), 4), round(bfactor_at_epoch(4.0, 1000), 4)
    (4.3333, 4.0)
    """
    return float(bfactor) * (1.0 - 0.1 / (1.0 + 3.0 * math.exp(-0.25 * epoch))) * 10.0 / 9.0


class OpusEncoder(nn.Module):
    """3-D CNN on the back-projected particle: ``(B, 1, S, S, S) -> (mu, logvar)``.

    Three stride-2 ``Conv3d(k=4)`` layers, a trilinear resize to ``12**3``, three more
    (``12 -> 6 -> 3 -> 1``), a linear layer and two linear heads; LeakyReLU(0.2) throughout.

    Parameters
    ----------
    out_dim : int
        ``z_dim + z_aff_dim``.
    width_mult : float, default=1.0
        Channel multiplier (1.0: 32-64-128-256-512-512, fc 512).

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.opus_dsd.model import OpusEncoder
    >>> enc = OpusEncoder(3, width_mult=0.0625)
    >>> [t.shape for t in enc(torch.rand(2, 1, 12, 12, 12))]
    [torch.Size([2, 3]), torch.Size([2, 3])]
    """

    def __init__(self, out_dim, width_mult=1.0, logvar_init=-6.0):
        super().__init__()
        w = [_scaled(c, width_mult) for c in ENCODER_WIDTHS]
        act = lambda: nn.LeakyReLU(0.2)  # noqa: E731
        self.down = nn.Sequential(
            nn.Conv3d(1, w[0], 4, 2, 1), act(), nn.Conv3d(w[0], w[1], 4, 2, 1), act(),
            nn.Conv3d(w[1], w[2], 4, 2, 1), act())
        self.down2 = nn.Sequential(
            nn.Conv3d(w[2], w[3], 4, 2, 1), act(), nn.Conv3d(w[3], w[4], 4, 2, 1), act(),
            nn.Conv3d(w[4], w[5], 4, 2, 1), act())
        fc = _scaled(ENCODER_FC, width_mult)
        self.fc = nn.Sequential(nn.Linear(w[5], fc), act())
        self.mu = nn.Linear(fc, out_dim)
        self.logvar = nn.Linear(fc, out_dim)
        # start near a deterministic auto-encoder (posterior std ~0.05): with OPUS-DSD's tiny,
        # SNR-gated KL weight, unit initial noise on z lets the decoder learn to ignore z
        nn.init.zeros_(self.logvar.weight)
        nn.init.constant_(self.logvar.bias, logvar_init)

    def forward(self, x):
        h = self.down(x)
        h = F.interpolate(h, size=(12, 12, 12), mode="trilinear", align_corners=False)
        h = self.fc(self.down2(h).flatten(1))
        return self.mu(h), self.logvar(h)


class ConvTemplate(nn.Module):
    """Convolutional template decoder: ``z -> (B, T, T, T)`` real-space density.

    ``Linear(z, 512) -> Linear(512, 2048)`` reshaped to ``2048 x 1**3``; transposed 3-D
    convolutions to ``16**3`` (k2 s2, k2 s2, k4 s2, k4 s2); trilinear resize to ``(T/16)**3``;
    four more doubling layers (the last to one channel, no activation) to ``T**3``.

    Parameters
    ----------
    z_dim : int
    templateres : int
        Output size ``T``, a multiple of 16.
    width_mult : float, default=1.0

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.opus_dsd.model import ConvTemplate
    >>> ConvTemplate(2, 16, width_mult=0.0625)(torch.rand(3, 2)).shape
    torch.Size([3, 16, 16, 16])
    """

    def __init__(self, z_dim, templateres, width_mult=1.0):
        super().__init__()
        if templateres % 16:
            raise ValueError(f"templateres must be a multiple of 16, got {templateres}.")
        self.templateres = int(templateres)
        h1, h2 = (_scaled(c, width_mult) for c in DECODER_MLP)
        w = [_scaled(c, width_mult) for c in DECODER_WIDTHS]
        act = lambda: nn.LeakyReLU(0.2)  # noqa: E731
        self.mlp = nn.Sequential(nn.Linear(z_dim, h1), act(), nn.Linear(h1, h2), act())
        self.h2 = h2
        self.up = nn.Sequential(
            nn.ConvTranspose3d(h2, w[0], 2, 2), act(), nn.ConvTranspose3d(w[0], w[1], 2, 2), act(),
            nn.ConvTranspose3d(w[1], w[2], 4, 2, 1), act(), nn.ConvTranspose3d(w[2], w[3], 4, 2, 1), act())
        self.up2 = nn.Sequential(
            nn.ConvTranspose3d(w[3], w[4], 4, 2, 1), act(), nn.ConvTranspose3d(w[4], w[5], 4, 2, 1), act(),
            nn.ConvTranspose3d(w[5], w[6], 4, 2, 1), act(), nn.ConvTranspose3d(w[6], 1, 4, 2, 1))

    def forward(self, z):
        h = self.up(self.mlp(z).reshape(len(z), self.h2, 1, 1, 1))
        size = self.templateres // 16
        h = F.interpolate(h, size=(size,) * 3, mode="trilinear", align_corners=False)
        return self.up2(h)[:, 0]


class AffineHead(nn.Module):
    """Global pose correction from ``z_aff``: a small rotation and a 3-D translation (voxels).

    The last layer is zero-initialised, so training starts at the consensus pose. The
    rotation is the unit quaternion ``(16, a0, a1, a2)`` (normalised).

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.opus_dsd.model import AffineHead
    >>> rot, shift = AffineHead(4, hidden=8)(torch.rand(2, 4))
    >>> bool(torch.allclose(rot, torch.eye(3).expand(2, 3, 3))), shift.shape
    (True, torch.Size([2, 3]))
    """

    def __init__(self, z_aff_dim, hidden=512):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(z_aff_dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 6))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, z_aff):
        out = self.net(z_aff)
        q = torch.cat([torch.full_like(out[:, :1], 16.0), out[:, :3]], 1)
        return quaternion_to_matrix(q), out[:, 3:]


class OpusDSDModule(LatentModule):
    """OPUS-DSD's model: back-projection encoder, ``ConvTemplate`` decoder, renderer and loss.

    Parameters
    ----------
    box_size, render_size, crop_size, templateres : int
        ``D``, ``R``, ``S`` and the decoder's output size ``T``.
    pixel_size : float
        Angstrom per pixel of the ``D`` box.
    mask : tensor of shape (S, S, S)
        3-D mask on the crop grid (encoder input mask; its projection is the loss mask).
    n_particles : int
        Size of the latent memory bank.
    groups : tensor of shape (n_particles,)
        View group of each training particle (for the disentanglement prior).
    z_dim, z_aff_dim : int
    width_mult : float
    n_pose_candidates : int
        Poses rendered per particle: the consensus plus ``C - 1`` random rotations of up to
        ``pose_jitter_deg``.
    pose_jitter_deg : float
    lamb, beta_control, tv_weight : float
        Weights of the disentanglement prior, the KL controller and the template regulariser.
    bfactor : float
        OPUS-DSD envelope B (set per epoch by the schedule callback).
    image_std : float
        Standard deviation of the raw images (they are divided by it).
    pool_size, n_positives : int
        Bank entries drawn per batch for the prior and its number of nearest positives.
    bank_momentum : float
        ``bank <- momentum * bank + (1 - momentum) * mu``.
    augment : bool
        Random B-factor and gain/offset augmentation of the encoder input while training.

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.opus_dsd.geometry import ball_mask
    >>> from sklearn_disentangle.opus_dsd.model import OpusDSDModule
    >>> m = OpusDSDModule(16, 16, 12, 16, pixel_size=4.0, mask=ball_mask(12), n_particles=4,
    ...                   groups=torch.zeros(4, dtype=torch.long), z_dim=2, z_aff_dim=2, width_mult=0.0625)
    >>> batch = {"images": torch.rand(4, 16, 16), "rotations": torch.eye(3).expand(4, 3, 3),
    ...          "shifts": torch.zeros(4, 2), "ctf": torch.tensor([[1.5e4, 1.5e4, 0, 300, 2.7, 0.1, 0, 0, 1]] * 4),
    ...          "index": torch.arange(4), "group": torch.zeros(4, dtype=torch.long)}
    >>> terms = m.loss(m(batch), batch)
    >>> sorted(terms)
    ['dsd', 'kl', 'loss', 'recon', 'reg', 'snr']
    """

    def __init__(self, box_size, render_size, crop_size, templateres, *, pixel_size, mask, n_particles, groups,
                 z_dim=12, z_aff_dim=4, width_mult=1.0, n_pose_candidates=8, pose_jitter_deg=5.0, lamb=1.0,
                 beta_control=2.0, tv_weight=1.0, bfactor=4.0, image_std=1.0, pool_size=12800, n_positives=128,
                 bank_momentum=0.7, augment=True):
        super().__init__()
        self.box_size, self.render_size, self.crop_size = int(box_size), int(render_size), int(crop_size)
        self.templateres = int(templateres)
        self.pixel_size = float(pixel_size)
        self.render_pixel_size = self.pixel_size * self.box_size / self.render_size
        self.z_dim, self.z_aff_dim = int(z_dim), int(z_aff_dim)
        self.n_pose_candidates = int(n_pose_candidates)
        self.pose_jitter_deg = float(pose_jitter_deg)
        self.lamb, self.beta_control, self.tv_weight = float(lamb), float(beta_control), float(tv_weight)
        self.pool_size, self.n_positives = int(pool_size), int(n_positives)
        self.bank_momentum = float(bank_momentum)
        self.augment = bool(augment)
        self.beta = 0.001  # set per batch by the schedule callback
        self.bfactor = float(bfactor)  # set per epoch by the schedule callback
        code = self.z_dim + self.z_aff_dim
        self.encoder = OpusEncoder(code, width_mult)
        self.decoder = ConvTemplate(self.z_dim, self.templateres, width_mult)
        self.affine = AffineHead(self.z_aff_dim, _scaled(512, width_mult)) if self.z_aff_dim else None
        self.register_buffer("mask", torch.as_tensor(mask, dtype=torch.float32).clone())
        self.register_buffer("image_std", torch.tensor(float(image_std)))
        self.register_buffer("bank", torch.randn(int(n_particles), code))
        self.register_buffer("groups", torch.as_tensor(groups, dtype=torch.long).clone())
        self.register_buffer("snr_ema", torch.tensor(0.01))
        self.register_buffer("l1_ema", torch.tensor(0.0))

    # ------------------------------------------------------------------ pieces
    def preprocess(self, images, shifts):
        """Targets ``(B, S, S)`` and their ``R x R`` spectra from raw images and origins (pixels)."""
        spec, y = recentre_and_crop(images.to(torch.float32), shifts, self.render_size, self.crop_size)
        return spec / self.image_std, y / self.image_std

    def encoder_input(self, spec, target, rotations):
        """Back-projected, masked encoder volume ``(B, 1, S, S, S)`` (augmented while training)."""
        x = target
        if self.training and self.augment:
            b = (torch.rand(len(spec), 1, 1, device=spec.device) - 0.5) * 1.5  # U(-0.75, 0.75), px^2
            ky, kx = frequency_grid(spec.shape[-2:], 1.0, dtype=target.dtype, device=spec.device)
            env = torch.exp(-(math.pi ** 2) * b * (kx * kx + ky * ky))
            x = crop_to_box(ifft2_centered(spec * env).real.to(target.dtype), self.crop_size)
            a = self.snr_ema.abs().sqrt()
            u = torch.rand(len(x), 1, 1, device=x.device)
            x = x * (1 + 0.3 * a * (u - 0.5)) + 0.2 * a * torch.randn(len(x), 1, 1, device=x.device)
        vol = backproject(x, rotations) * self.mask
        return vol[:, None]

    def encode(self, x):
        """Posterior of a batch dict: ``z_mean``/``z_logvar`` of ``z``, and of the full code."""
        spec, target = self.preprocess(x["images"], x["shifts"])
        mu, logvar = self.encoder(self.encoder_input(spec, target, x["rotations"].to(target.dtype)))
        return {"z_mean": mu[:, :self.z_dim], "z_logvar": logvar[:, :self.z_dim], "code_mean": mu,
                "code_logvar": logvar}

    def _to_crop_grid(self, vol):
        if vol.shape[-1] != self.crop_size:
            vol = F.interpolate(vol[:, None], size=(self.crop_size,) * 3, mode="trilinear", align_corners=True)[:, 0]
        return vol

    def template(self, z):
        """Decoder density on the ``S**3`` crop grid: ``(B, S, S, S)``."""
        return self._to_crop_grid(self.decoder(z[:, :self.z_dim]))

    def decode(self, z):
        """Masked volumes ``(B, S, S, S)`` in the reference frame (what ``inverse_transform`` resamples)."""
        return self.template(z) * self.mask

    def candidate_rotations(self, n, device, dtype):
        """``(C, 3, 3)`` local pose candidates: identity first, then random rotations <= jitter."""
        c = self.n_pose_candidates
        eye = torch.eye(3, device=device, dtype=dtype)[None]
        if c == 1:
            return eye
        axis = torch.randn(c - 1, 3, device=device, dtype=dtype)
        axis = axis / axis.norm(dim=1, keepdim=True)
        angle = torch.rand(c - 1, 1, device=device, dtype=dtype) * math.radians(self.pose_jitter_deg)
        return torch.cat([eye, axis_angle_to_matrix(axis * angle)], 0)

    def render(self, volumes, rotations, ctf_params, shifts=None):
        """CTF-modulated projections ``(B, C, S, S)`` of ``(B, S, S, S)`` volumes.

        ``rotations`` is ``(B, C, 3, 3)``; ``ctf_params`` the packed ``(B, 9)`` table (or None).
        """
        ctf = None
        if ctf_params is not None:
            ctf = ctf_on_grid(ctf_params, self.render_size, self.render_pixel_size)
        soft = volumes * ((self.mask > 0.5).to(volumes.dtype) + 1e-3)
        return render_projections(soft, rotations, ctf, render_size=self.render_size, shifts_px=shifts,
                                  envelope_b=self.bfactor, pixel_size=self.render_pixel_size)

    # ------------------------------------------------------------------ forward / loss
    def forward(self, x):
        spec, target = self.preprocess(x["images"], x["shifts"])
        rotations = x["rotations"].to(target.dtype)
        mu, logvar = self.encoder(self.encoder_input(spec, target, rotations))
        z = self.reparameterize(mu, logvar) if self.training else mu
        vol_full = self.decoder(z[:, :self.z_dim])
        vol = self._to_crop_grid(vol_full)
        poses = rotations
        shifts = None
        if self.affine is not None:
            d_rot, d_shift = self.affine(z[:, self.z_dim:])
            poses = rotations @ d_rot
            # a reference-frame translation t moves the projection by (A t)[:2]
            shifts = (rotations @ d_shift[:, :, None])[:, :2, 0]
        cand = self.candidate_rotations(len(z), z.device, z.dtype)
        all_poses = poses[:, None] @ cand[None]
        pred = self.render(vol, all_poses, x["ctf"], shifts)
        with torch.no_grad():
            loss_mask = project_real((self.mask > 0.5).to(target.dtype), rotations, batch_size=len(z)) > 0.5
        return {"pred": pred, "target": target, "loss_mask": loss_mask.to(target.dtype), "mu": mu, "logvar": logvar,
                "z": z, "template": vol_full}

    def loss(self, output, x):
        pred, target, m = output["pred"], output["target"], output["loss_mask"]
        mu, logvar, z = output["mu"], output["logvar"], output["z"]
        s = self.crop_size
        counts = m.sum((1, 2)).clamp_min(0.05 * math.pi * s * s)  # M_i
        ym = (target * m)[:, None]
        d = ((pred - ym) ** 2).sum((2, 3))  # (B, C) squared error (the spec's d plus the constant ||y m||^2)
        with torch.no_grad():
            p = torch.softmax(-0.5 * d, dim=1)
        recon = ((p * d).sum(1) / counts).mean()
        M = counts.max()
        with torch.no_grad():
            signal = ((p * (pred ** 2).sum((2, 3))).sum(1) / counts).mean()
            snr = signal / recon.clamp_min(1e-8)
        kl_i = (-0.5 * logvar + 0.5 * logvar.exp() + 0.5 * mu * mu).sum(1)
        tmpl = output["template"]
        tv = torch.sqrt(
            F.pad((tmpl[:, 1:] - tmpl[:, :-1]) ** 2, (0, 0, 0, 0, 0, 1))
            + F.pad((tmpl[:, :, 1:] - tmpl[:, :, :-1]) ** 2, (0, 0, 0, 1))
            + F.pad((tmpl[..., 1:] - tmpl[..., :-1]) ** 2, (0, 1)) + 1e-8).mean()
        l1 = tmpl.abs().mean()
        reg = self.tv_weight * (tv + 0.3 * l1) / M
        l1_gate = 1 - torch.exp(-(self.l1_ema / 0.002) ** 2)
        beta_ctrl = self.beta_control * self.snr_ema * l1_gate
        kl = beta_ctrl * self.beta * kl_i.mean() / M
        lamb = (self.lamb * (1 - torch.exp(-((self.snr_ema / 0.02) ** 2).clamp_max(16)))
                * (1 - torch.exp(-((self.l1_ema / 0.002) ** 2).clamp_max(16))))
        prior = self.dsd_prior(mu, z, x)
        dsd = lamb * prior * (self.beta + 0.05) / 1.05 / M
        if self.training:
            with torch.no_grad():
                self.snr_ema.mul_(0.99).add_(0.01 * snr)
                self.l1_ema.mul_(0.99).add_(0.01 * l1.detach())
                idx = x["index"].long()
                valid = idx >= 0
                self.bank[idx[valid]] = (self.bank_momentum * self.bank[idx[valid]]
                                         + (1 - self.bank_momentum) * mu.detach()[valid])
        total = recon + kl + reg + dsd
        return {"loss": total, "recon": recon, "kl": kl_i.mean().detach(), "reg": (tv + 0.3 * l1).detach(),
                "dsd": prior.detach(), "snr": snr}

    def dsd_prior(self, mu, z, x, eps=1e-3):
        """Structural disentanglement prior (unweighted): cross-view bank terms + in-batch terms.

        Positives are the bank entries nearest to the particle's own bank entry among
        particles of *other* view groups; negatives are the farthest ones mixed with random
        ones (0.8 / 0.2). In-batch repulsion and attraction to the 2 nearest neighbours (by the
        sampled code) complete it.
        """
        b = len(mu)
        idx = x["index"].long()
        total = mu.new_zeros(())
        n_bank = self.bank.shape[0]
        if n_bank > 1:
            pool_n = min(self.pool_size, n_bank)
            pool = torch.randperm(n_bank, device=mu.device)[:pool_n]
            entries = self.bank[pool]
            anchor = torch.where((idx >= 0)[:, None], self.bank[idx.clamp_min(0)], mu.detach())
            same = (self.groups[pool][None, :] == x["group"].long()[:, None]) | (pool[None, :] == idx[:, None])
            valid = ~same
            n_valid = valid.sum(1)
            k = max(1, min(self.n_positives, pool_n // 4))
            if bool((n_valid > 0).any()):
                dist = ((anchor[:, None, :] - entries[None]) ** 2).sum(-1)
                near = dist.masked_fill(~valid, float("inf"))
                pos_d, pos_i = torch.topk(near, min(k, pool_n), dim=1, largest=False)
                pos_ok = torch.isfinite(pos_d)
                pos = entries[pos_i]
                pos_term = torch.log1p(((mu[:, None] - pos) ** 2).sum(-1) + eps)
                pos_loss = (pos_term * pos_ok).sum() / pos_ok.sum().clamp_min(1)
                n_neg = min(4 * k, pool_n)
                far = dist.masked_fill(~valid, float("-inf"))
                neg_d, neg_i = torch.topk(far, n_neg, dim=1, largest=True)
                neg_ok = torch.isfinite(neg_d)
                rnd = torch.multinomial(valid.float() + 1e-12, n_neg, replacement=True)
                neg = 0.8 * entries[neg_i] + 0.2 * entries[rnd]
                neg_term = torch.log1p(1.0 / (((mu[:, None] - neg) ** 2).sum(-1) + eps))
                neg_loss = (neg_term * neg_ok).sum() / neg_ok.sum().clamp_min(1)
                total = total + pos_loss + 3.0 * neg_loss
        if b > 1:
            dij = ((mu[:, None] - mu[None]) ** 2).sum(-1) + eps
            off = ~torch.eye(b, dtype=torch.bool, device=mu.device)
            mmd = (torch.log1p(1.0 / dij) * dij.detach().clamp_max(1.0))[off].mean()
            with torch.no_grad():
                dz = ((z[:, None] - z[None]) ** 2).sum(-1).masked_fill(~off, float("inf"))
                nn_i = torch.topk(dz, min(2, b - 1), dim=1, largest=False).indices
            knn = torch.log1p(((mu[:, None] - mu[nn_i]) ** 2).sum(-1)).mean()
            total = total + mmd + knn
        return total
