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

__all__ = ["VAEModule", "CommutativeLieVAEModule", "BetaVAEModule"]


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
        Regularisation weight read by the objective (set by schedule callbacks and the
        ControlVAE controller).
    codebook : SymmetryCodebook or None, default=None
        The CFASL symmetry codebook (CFASL model types only).
    weights : dict or None, default=None
        Further loss weights stored as attributes (``alpha``, ``gamma``, ``lamb``,
        ``epsilon``, ``rec`` ...), read by the objective.

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

    def __init__(self, input_shape, z_dim, objective, hidden_dim=128, reconstruction="bernoulli", beta=1.0,
                 codebook=None, weights=None):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.z_dim = int(z_dim)
        self.objective = objective
        self.reconstruction = reconstruction
        self.beta = float(beta)
        for name, value in (weights or {}).items():
            setattr(self, name, float(value))
        self._build_networks(hidden_dim)
        self.codebook = codebook

    def _build_networks(self, hidden_dim):
        self.encoder = make_encoder(self.input_shape, hidden_dim)
        self.fc_mu = nn.Linear(hidden_dim, self.z_dim)
        self.fc_logvar = nn.Linear(hidden_dim, self.z_dim)
        self.decoder = make_decoder(self.z_dim, self.input_shape, hidden_dim)

    #: Log-variances are clamped to this range (no overflow of exp on unscaled input).
    logvar_bound = 30.0

    def encode(self, x):
        h = self.encoder(x)
        return {"z_mean": self.fc_mu(h), "z_logvar": self.fc_logvar(h).clamp(-self.logvar_bound, self.logvar_bound)}

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
        penalty, terms = self.objective(self, output, x)
        return {"loss": recon + penalty, "recon": recon, **terms}


class CommutativeLieVAEModule(VAEModule):
    """Commutative Lie Group VAE (Zhu et al., 2021) as in CFASL (spec 1.7).

    Encoder: the shared trunk to ``hidden_dim`` features -> Linear(256) -> ReLU ->
    Linear(m^2) -> Sigmoid gives the group features ``gE``; posterior mean and
    log-variance each by an MLP ``m^2 -> 400 -> ReLU -> z_dim``. The decoder maps a code to
    the group element ``expm(sum_i z_i A_i)`` (``m x m``; one learnable Lie-algebra basis
    matrix ``A_i`` per latent dimension, initialised ``N(0, 0.001^2)`` and not
    re-initialised afterwards), flattens it (``gD``) and feeds it to the decoder head
    (Linear(m^2, hidden) -> ReLU -> Linear -> ReLU -> transposed convolutions). In training,
    with probability ``forward_eq_prob`` (0.2) a batch is reconstructed from ``gE``
    instead of ``gD``. ``m = group_size`` (default ``z_dim``: the reference's 10 x 10 for
    ``z_dim = 10``).

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.cfasl.model import CommutativeLieVAEModule
    >>> from sklearn_disentangle.cfasl.objectives import CommutativeLieObjective
    >>> m = CommutativeLieVAEModule((1, 16, 16), 3, CommutativeLieObjective(), weights={"rec": 0.1})
    >>> m.lie_basis.shape
    torch.Size([3, 3, 3])
    >>> sorted(m.loss(m(torch.rand(4, 1, 16, 16)), torch.rand(4, 1, 16, 16)))
    ['commutator', 'group_rec', 'hessian', 'kl', 'loss', 'recon']
    """

    def __init__(self, input_shape, z_dim, objective, hidden_dim=128, reconstruction="bernoulli", beta=1.0,
                 codebook=None, weights=None, group_size=None, forward_eq_prob=0.2):
        self.group_size = int(group_size or z_dim)
        self.forward_eq_prob = float(forward_eq_prob)
        super().__init__(input_shape, z_dim, objective, hidden_dim=hidden_dim, reconstruction=reconstruction,
                         beta=beta, codebook=codebook, weights=weights)

    def _build_networks(self, hidden_dim):
        m2 = self.group_size**2
        self.encoder = make_encoder(self.input_shape, hidden_dim)
        self.group_head = nn.Sequential(nn.Linear(hidden_dim, 256), nn.ReLU(), nn.Linear(256, m2), nn.Sigmoid())
        self.fc_mu = nn.Sequential(nn.Linear(m2, 400), nn.ReLU(), nn.Linear(400, self.z_dim))
        self.fc_logvar = nn.Sequential(nn.Linear(m2, 400), nn.ReLU(), nn.Linear(400, self.z_dim))
        self.lie_basis = nn.Parameter(torch.randn(self.z_dim, self.group_size, self.group_size) * 1e-3)
        self.decoder = make_decoder(m2, self.input_shape, hidden_dim)

    def _encode_all(self, x):
        g_enc = self.group_head(self.encoder(x))
        logvar = self.fc_logvar(g_enc).clamp(-self.logvar_bound, self.logvar_bound)
        return {"z_mean": self.fc_mu(g_enc), "z_logvar": logvar, "group_enc": g_enc}

    def encode(self, x):
        return self._encode_all(x)

    def group_element(self, z):
        """``expm(sum_i z_i A_i)`` for codes ``z`` (n, D): shape (n, m, m)."""
        return torch.linalg.matrix_exp(torch.einsum("nd,dij->nij", z, self.lie_basis))

    def decode_raw(self, z):
        return self.decoder(self.group_element(z).flatten(1))

    def forward(self, x):
        out = self._encode_all(x)
        out["z"] = self.reparameterize(out["z_mean"], out["z_logvar"])
        out["group_dec"] = self.group_element(out["z"]).flatten(1)
        from_encoder = self.training and bool(torch.rand(()) < self.forward_eq_prob)
        out["x_raw"] = self.decoder(out["group_enc"] if from_encoder else out["group_dec"])
        return out


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
