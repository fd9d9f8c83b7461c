"""The model contract every method's ``nn.Module`` follows (DESIGN.md, "The model contract")."""

from abc import ABCMeta, abstractmethod

import torch
from torch import nn

__all__ = ["LatentModule"]


class LatentModule(nn.Module, metaclass=ABCMeta):
    """Base of the methods' models: ``encode``, ``decode``, ``forward`` and ``loss``.

    Subclasses implement:

    - ``encode(x) -> dict`` with at least ``"z_mean"`` (the representation that
      ``transform`` returns) and, for variational models, ``"z_logvar"``;
    - ``decode(z) -> Tensor``: data-space reconstruction (the mean of the likelihood);
    - ``forward(x) -> dict``: everything ``loss`` needs;
    - ``loss(output, x) -> dict``: named scalar terms including ``"loss"`` (what is
      minimised; per-sample mean over the batch).

    Annealed coefficients (``beta`` ...) are plain attributes that callbacks set.

    Examples
    --------
    >>> from sklearn_disentangle.cfasl.model import BetaVAEModule
    >>> module = BetaVAEModule((1, 16, 16), z_dim=3)
    >>> import torch
    >>> sorted(module.encode(torch.rand(2, 1, 16, 16)))
    ['z_logvar', 'z_mean']
    """

    @abstractmethod
    def encode(self, x):
        """Posterior parameters of ``x``: a dict with at least ``"z_mean"``."""

    @abstractmethod
    def decode(self, z):
        """Data-space reconstruction of latents ``z``."""

    @abstractmethod
    def loss(self, output, x):
        """Named loss terms (dict of scalar tensors) including ``"loss"``."""

    def embed(self, x):
        """The representation returned by ``transform``: the posterior mean."""
        return self.encode(x)["z_mean"]

    @staticmethod
    def reparameterize(mu, logvar):
        """Sample ``mu + exp(logvar / 2) * eps`` with ``eps ~ N(0, I)``."""
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
