"""Loss pieces of variational autoencoders, batched over the leading dimension."""

import math

import torch
import torch.nn.functional as F

__all__ = ["gaussian_kl", "log_normal_pdf", "reconstruction_loss", "RECONSTRUCTIONS"]

RECONSTRUCTIONS = ("bernoulli", "gaussian")
_LOG_2PI = math.log(2 * math.pi)


def gaussian_kl(mu, logvar):
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample and dimension, shape of ``mu``.

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.nn import gaussian_kl
    >>> float(gaussian_kl(torch.zeros(1, 3), torch.zeros(1, 3)).sum())
    0.0
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def log_normal_pdf(x, mu, logvar):
    """Elementwise log density of ``x`` under N(mu, exp(logvar)) (broadcasting).

    Examples
    --------
    >>> import torch, math
    >>> from sklearn_disentangle.nn import log_normal_pdf
    >>> round(float(log_normal_pdf(torch.tensor(0.0), torch.tensor(0.0), torch.tensor(0.0))), 6)
    -0.918939
    """
    return -0.5 * (_LOG_2PI + logvar + (x - mu).pow(2) * torch.exp(-logvar))


def reconstruction_loss(raw, x, kind):
    """Negative log-likelihood of ``x`` summed over features, per sample.

    Parameters
    ----------
    raw : Tensor of shape (n, ...)
        Decoder output before the output nonlinearity: logits for ``"bernoulli"``, the
        mean for ``"gaussian"``.
    x : Tensor of the same shape
        Target.
    kind : {"bernoulli", "gaussian"}
        ``"bernoulli"``: binary cross-entropy with logits (targets in [0, 1]);
        ``"gaussian"``: squared error (unit variance, constants dropped), as the
        disentanglement references use.

    Returns
    -------
    Tensor of shape (n,)

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.nn import reconstruction_loss
    >>> reconstruction_loss(torch.zeros(2, 4), torch.ones(2, 4), "gaussian")
    tensor([4., 4.])
    """
    if kind == "bernoulli":
        per = F.binary_cross_entropy_with_logits(raw, x, reduction="none")
    elif kind == "gaussian":
        per = (raw - x).pow(2)
    else:
        raise ValueError(f"reconstruction must be one of {RECONSTRUCTIONS}, got {kind!r}.")
    return per.reshape(per.shape[0], -1).sum(dim=1)
