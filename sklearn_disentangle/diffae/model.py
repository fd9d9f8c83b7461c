"""``DiffAEModule``: semantic encoder + conditional denoiser + diffusion, with an EMA copy of both.

Training (``forward`` + ``loss``), for a batch ``x0`` in ``[-1, 1]``: ``t ~ U{0..T-1}`` and
``eps ~ N(0, I)`` drawn from torch's global generator, ``x_t = sqrt(abar_t) x0 +
sqrt(1 - abar_t) eps``, ``z = Enc(x0)``, loss ``= mean((eps_theta(x_t, t, z) - eps)^2)`` over
batch and voxels. The encoder learns only through this loss.

The module owns the exponential moving average of its weights (``ema_encoder``,
``ema_denoiser``; never trained, ``requires_grad=False``) so that checkpoints and pickles carry
it; :class:`~sklearn_disentangle.diffae.EMACallback` updates it after every optimiser step. In
evaluation mode (``module.eval()``: transform, DDIM, ``score``, validation) the EMA networks
are used, as in the paper.
"""

import copy

import torch

from ..nn import LatentModule
from .diffusion import GaussianDiffusion
from .unet import ConditionalUNet, MLPDenoiser, MLPEncoder, SemanticEncoder

__all__ = ["DiffAEModule"]


class DiffAEModule(LatentModule):
    """Diffusion autoencoder (Preechakul et al. 2022) for images, volumes or flat vectors.

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, H, W)``, ``(C, D, H, W)`` or ``(n_features,)``.
    z_dim : int
    base_channels : int
    channel_mult, encoder_channel_mult : tuple of int
    num_res_blocks : int
    attention_resolutions : tuple of int
    dropout : float
    inplane_only : bool
    embed_channels : int
    n_timesteps : int
    clip_denoised : bool
    inversion_end : {"noise", "last_step"}, default="noise"
    encoder_pool : {"mean", "depth", "cyclic"}, default="mean"
        Pooling of the semantic encoder (see :class:`~sklearn_disentangle.diffae.unet.SemanticEncoder`).

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.diffae.model import DiffAEModule
    >>> m = DiffAEModule((1, 8, 8), z_dim=3, base_channels=4, channel_mult=(1, 2), encoder_channel_mult=(1, 2),
    ...                  num_res_blocks=1, attention_resolutions=(), dropout=0.0, inplane_only=False,
    ...                  embed_channels=8, n_timesteps=100, clip_denoised=True)
    >>> x = torch.rand(2, 1, 8, 8) * 2 - 1
    >>> sorted(m.loss(m(x), x))
    ['eps_mse', 'loss', 'z_rms']
    """

    def __init__(self, input_shape, z_dim, base_channels, channel_mult, encoder_channel_mult, num_res_blocks,
                 attention_resolutions, dropout, inplane_only, embed_channels, n_timesteps, clip_denoised,
                 inversion_end="noise", encoder_pool="mean"):
        super().__init__()
        self.inversion_end = inversion_end
        self.input_shape = tuple(int(s) for s in input_shape)
        self.clip_denoised = bool(clip_denoised)
        self.diffusion = GaussianDiffusion(n_timesteps)
        if len(self.input_shape) == 1:
            width = 8 * base_channels * max(channel_mult)
            n_layers = len(channel_mult) + 1
            self.encoder = MLPEncoder(self.input_shape[0], z_dim, width, len(encoder_channel_mult))
            self.denoiser = MLPDenoiser(self.input_shape[0], z_dim, width, n_layers, embed_channels, dropout)
        else:
            dims = len(self.input_shape) - 1
            channels, spatial = self.input_shape[0], self.input_shape[1:]
            size = max(spatial[-2:]) if (dims == 3 and inplane_only) else max(spatial)
            common = {"inplane_only": inplane_only, "group_limit": min(32, base_channels)}
            self.encoder = SemanticEncoder(dims, channels, z_dim, base_channels, tuple(encoder_channel_mult),
                                           num_res_blocks, tuple(attention_resolutions), size, **common,
                                           pool=encoder_pool, depth=spatial[0] if dims == 3 else None)
            self.denoiser = ConditionalUNet(dims, channels, z_dim, base_channels, tuple(channel_mult),
                                            num_res_blocks, tuple(attention_resolutions), dropout, size,
                                            embed_channels, **common)
        self.ema_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.ema_denoiser = copy.deepcopy(self.denoiser).requires_grad_(False)
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))

    # ------------------------------------------------------------------ EMA
    def _nets(self):
        if self.training:
            return self.encoder, self.denoiser
        return self.ema_encoder, self.ema_denoiser

    @torch.no_grad()
    def update_ema(self, decay):
        """``ema <- decay * ema + (1 - decay) * live`` for every parameter and buffer.

        Examples
        --------
        >>> import torch
        >>> from sklearn_disentangle.diffae.model import DiffAEModule
        >>> m = DiffAEModule((4,), 2, 2, (1,), (1,), 1, (), 0.0, False, 4, 10, True)
        >>> m.update_ema(0.5); int(m.ema_updates)
        1
        """
        for live, ema in ((self.encoder, self.ema_encoder), (self.denoiser, self.ema_denoiser)):
            for p_ema, p in zip(ema.parameters(), live.parameters()):
                p_ema.lerp_(p.detach(), 1.0 - decay)
            for b_ema, b in zip(ema.buffers(), live.buffers()):
                b_ema.copy_(b)
        self.ema_updates += 1

    # ------------------------------------------------------------------ LatentModule
    def encode(self, x):
        """``{"z_mean": z_sem}`` from the live encoder (training) or the EMA encoder (eval)."""
        return {"z_mean": self._nets()[0](x)}

    def eps(self, x_t, t, z):
        """Predicted noise of the live (training) or EMA (eval) denoiser."""
        return self._nets()[1](x_t, t, z)

    def decode(self, z, x_T=None, n_steps=20):
        """DDIM decoding of ``z`` from ``x_T`` (standard normal noise from torch's generator if None)."""
        if x_T is None:
            x_T = torch.randn((len(z),) + self.input_shape, device=z.device, dtype=z.dtype)
        return self.diffusion.ddim_decode(lambda x, t: self.eps(x, t, z), x_T, n_steps, self.clip_denoised)

    def encode_stochastic(self, x, z, n_steps=20, end=None, n_iter=0):
        """DDIM inversion of ``x`` conditioned on ``z``: the ``x_T`` that decodes back to ``x``.

        ``end`` (None: the module's ``inversion_end``) and ``n_iter`` are those of
        :meth:`~sklearn_disentangle.diffae.diffusion.GaussianDiffusion.ddim_invert`.
        """
        return self.diffusion.ddim_invert(lambda xt, t: self.eps(xt, t, z), x, n_steps, self.clip_denoised,
                                          self.inversion_end if end is None else end, n_iter)

    def forward(self, x):
        t = self.diffusion.sample_timesteps(len(x), x.device)
        noise = torch.randn_like(x)
        x_t = self.diffusion.q_sample(x, t, noise)
        z = self.encode(x)["z_mean"]
        return {"eps_hat": self.eps(x_t, t, z), "noise": noise, "t": t, "z": z}

    def loss(self, output, x):
        """Named terms: ``loss`` (= ``eps_mse``, what is minimised) and the diagnostic ``z_rms``."""
        mse = ((output["eps_hat"] - output["noise"]) ** 2).mean()
        z_rms = output["z"].detach().pow(2).mean().sqrt()
        return {"loss": mse, "eps_mse": mse.detach(), "z_rms": z_rms}
