"""Objectives of the CFASL baseline family: one class per ``model_type``.

An objective turns the model's forward output into the regulariser added to the
reconstruction term, plus named terms for the history. Weights (``beta`` ...) are read from
the module, so schedule callbacks can change them during training. Adding a model type is
writing one class here and registering it in :data:`OBJECTIVES`.
"""

import math

import torch

from ..nn.losses import gaussian_kl, log_normal_pdf

__all__ = ["BetaVAEObjective", "BetaTCVAEObjective", "OBJECTIVES", "log_importance_weights"]


class BetaVAEObjective:
    """beta-VAE (Higgins et al., ICLR 2017): ``beta * KL(q(z|x) || N(0, I))``.

    The KL is summed over latent dimensions and averaged over the batch.

    Examples
    --------
    >>> from sklearn_disentangle.cfasl.objectives import BetaVAEObjective
    >>> BetaVAEObjective().weights
    ('beta',)
    """

    weights = ("beta",)

    def __init__(self, **kwargs):
        pass

    def __call__(self, module, out):
        kl = gaussian_kl(out["z_mean"], out["z_logvar"]).sum(dim=1).mean()
        return module.beta * kl, {"kl": kl}


def log_importance_weights(batch_size, dataset_size, estimator="mss", device=None):
    """Log weights ``log W[b, c]`` of the aggregate-posterior estimate of beta-TCVAE.

    ``log q(z_b) ~= logsumexp_c (log q(z_b | x_c) + log W[b, c])`` (Chen et al., 2018).

    - ``"mws"`` (minibatch weighted sampling): ``W = 1 / (N B)`` everywhere.
    - ``"mss"`` (minibatch stratified sampling), the paper's intent: ``W[b, b] = 1 / N``
      (the sample's own data point), one other entry per row, ``W[b, b + 1 mod B]``, is
      ``(N - B + 1) / (N (B - 1))``, all others ``1 / (B - 1)``; each row sums to 1.

    Notes
    -----
    The public beta-TCVAE code (copied by CFASL) fills the matrix with a flat stride of
    ``B`` instead of ``B + 1``, so it puts ``1 / N`` in column 0 of every row rather than
    on the diagonal (spec ``cfasl_and_metrics.md`` 1.7). We implement the paper's diagonal.

    Examples
    --------
    >>> from sklearn_disentangle.cfasl.objectives import log_importance_weights
    >>> w = log_importance_weights(4, 100).exp()
    >>> [round(float(v), 6) for v in w.sum(dim=1)]
    [1.0, 1.0, 1.0, 1.0]
    """
    B, N = int(batch_size), int(dataset_size)
    if estimator == "mws" or B < 2:
        return torch.full((B, B), -math.log(N * B), device=device)
    if N < B:
        raise ValueError(f"dataset_size ({N}) must be >= batch size ({B}) for minibatch stratified sampling.")
    W = torch.full((B, B), 1.0 / (B - 1), device=device)
    idx = torch.arange(B, device=device)
    W[idx, idx] = 1.0 / N
    W[idx, (idx + 1) % B] = (N - B + 1) / (N * (B - 1))
    return W.log()


class BetaTCVAEObjective:
    """beta-TCVAE (Chen et al., NeurIPS 2018): ``MI + beta * TC + dimension-wise KL``.

    The ELBO's KL term is decomposed into the index-code mutual information, the total
    correlation and the dimension-wise KL; only the total correlation is weighted by
    ``beta`` (MI and dimension-wise KL keep weight 1, as in CFASL's runs). The aggregate
    posterior is estimated on the minibatch with stratified (``"mss"``, default, as the
    reference) or weighted (``"mws"``) sampling.

    Parameters
    ----------
    dataset_size : int
        Number of training samples N.
    tc_estimator : {"mss", "mws"}, default="mss"

    Examples
    --------
    >>> from sklearn_disentangle.cfasl.objectives import BetaTCVAEObjective
    >>> BetaTCVAEObjective(dataset_size=1000).tc_estimator
    'mss'
    """

    weights = ("beta",)

    def __init__(self, dataset_size, tc_estimator="mss", **kwargs):
        self.dataset_size = int(dataset_size)
        self.tc_estimator = tc_estimator

    def __call__(self, module, out):
        z, mu, logvar = out["z"], out["z_mean"], out["z_logvar"]
        B = z.shape[0]
        # log q(z_b | x_c) per dimension, shape (B, B, D)
        log_qz_pairs = log_normal_pdf(z[:, None, :], mu[None, :, :], logvar[None, :, :])
        log_qz_x = log_normal_pdf(z, mu, logvar).sum(dim=1)
        log_pz = log_normal_pdf(z, torch.zeros_like(z), torch.zeros_like(z)).sum(dim=1)
        logw = log_importance_weights(B, max(self.dataset_size, B), self.tc_estimator, device=z.device)
        log_qz = torch.logsumexp(logw + log_qz_pairs.sum(dim=2), dim=1)
        log_prod_qzi = torch.logsumexp(logw[:, :, None] + log_qz_pairs, dim=1).sum(dim=1)
        mi = (log_qz_x - log_qz).mean()
        tc = (log_qz - log_prod_qzi).mean()
        dwkl = (log_prod_qzi - log_pz).mean()
        kl = gaussian_kl(mu, logvar).sum(dim=1).mean()
        return mi + module.beta * tc + dwkl, {"mi": mi, "tc": tc, "dwkl": dwkl, "kl": kl}


#: model_type -> objective class. Later model types register here.
OBJECTIVES = {
    "betavae": BetaVAEObjective,
    "betatcvae": BetaTCVAEObjective,
}
