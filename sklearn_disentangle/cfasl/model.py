"""The VAE of the CFASL baseline family (Jung et al., TMLR 2024, spec 1.8).

Shapes: input ``(n, C, H, W)`` (or flat ``(n, F)`` with MLPs), latent ``(n, z_dim)``.
Encoder: :class:`~sklearn_disentangle.nn.ConvEncoder` to ``hidden_dim`` features (no
activation), then linear heads for the posterior mean and log-variance. Decoder:
:class:`~sklearn_disentangle.nn.ConvDecoder`. The reconstruction term is a Bernoulli
(binary cross-entropy on logits) or Gaussian (squared error) log-likelihood summed over
pixels and averaged over the batch; the regulariser comes from the objective.
"""

import torch
from torch import nn

from ..nn import LatentModule, make_decoder, make_encoder, reconstruction_loss

__all__ = ["VAEModule", "BetaVAEModule"]


class VAEModule(LatentModule):
    """Gaussian-posterior VAE whose regulariser is a pluggable objective.

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, H, W)`` or ``(n_features,)``.
    z_dim : int
        Latent dimension.
    objective : callable
        ``objective(module, output) -> (penalty, terms)``; see
        :mod:`sklearn_disentangle.cfasl.objectives`.
    hidden_dim : int, default=128
        Width of the encoder's last and the decoder's first linear layer.
    reconstruction : {"bernoulli", "gaussian"}, default="bernoulli"
    beta : float, default=1.0
        Regularisation weight read by the objective (set by schedule callbacks).

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.cfasl.model import VAEModule
    >>> from sklearn_disentangle.cfasl.objectives import BetaVAEObjective
    >>> m = VAEModule((1, 32, 32), z_dim=4, objective=BetaVAEObjective())
    >>> x = torch.rand(8, 1, 32, 32).round()
    >>> sorted(m.loss(m(x), x))
    ['kl', 'loss', 'recon']
    """

    def __init__(self, input_shape, z_dim, objective, hidden_dim=128, reconstruction="bernoulli", beta=1.0):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.z_dim = int(z_dim)
        self.objective = objective
        self.reconstruction = reconstruction
        self.beta = float(beta)
        self.encoder = make_encoder(self.input_shape, hidden_dim)
        self.fc_mu = nn.Linear(hidden_dim, z_dim)
        self.fc_logvar = nn.Linear(hidden_dim, z_dim)
        self.decoder = make_decoder(z_dim, self.input_shape, hidden_dim)

    def encode(self, x):
        h = self.encoder(x)
        return {"z_mean": self.fc_mu(h), "z_logvar": self.fc_logvar(h)}

    def decode_raw(self, z):
        """Decoder output before the likelihood's link (logits for Bernoulli)."""
        return self.decoder(z)

    def decode(self, z):
        raw = self.decode_raw(z)
        return torch.sigmoid(raw) if self.reconstruction == "bernoulli" else raw

    def forward(self, x):
        out = self.encode(x)
        out["z"] = self.reparameterize(out["z_mean"], out["z_logvar"])
        out["x_raw"] = self.decode_raw(out["z"])
        return out

    def loss(self, output, x):
        recon = reconstruction_loss(output["x_raw"], x, self.reconstruction).mean()
        penalty, terms = self.objective(self, output)
        return {"loss": recon + penalty, "recon": recon, **terms}


def BetaVAEModule(input_shape, z_dim, beta=1.0, **kwargs):
    """A :class:`VAEModule` with the beta-VAE objective (convenience for docs and tests).

    Examples
    --------
    >>> from sklearn_disentangle.cfasl.model import BetaVAEModule
    >>> BetaVAEModule((1, 16, 16), z_dim=2).z_dim
    2
    """
    from .objectives import BetaVAEObjective

    return VAEModule(input_shape, z_dim, BetaVAEObjective(), beta=beta, **kwargs)
