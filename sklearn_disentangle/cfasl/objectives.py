"""Objectives of the CFASL model family: one class per ``model_type``.

An objective turns the model's forward output into the regulariser added to the
reconstruction term, plus named terms for the history. Weights (``beta`` ...) are read from
the module, so schedule callbacks (and the ControlVAE controller) can change them during
training. Adding a model type is writing one class here and registering it in
:data:`OBJECTIVES`. Class attributes tell the estimator what the model needs:
``lie_group`` (the Commutative Lie Group VAE module), ``codebook`` (the CFASL symmetry
codebook) and ``controlled`` (the ControlVAE PI controller callback).

Signature: ``objective(module, output, x=None) -> (penalty, terms)``; ``x`` (the batch) is
only needed by the CFASL decoder-equivariance term.
"""

import math

import torch

from ..nn.losses import gaussian_kl, log_normal_pdf

from ..nn.losses import reconstruction_loss
from .symmetry import act

__all__ = [
    "BetaVAEObjective",
    "BetaTCVAEObjective",
    "ControlVAEObjective",
    "CommutativeLieObjective",
    "CFASLBetaVAEObjective",
    "CFASLBetaTCVAEObjective",
    "CFASLControlVAEObjective",
    "CFASLCommutativeLieObjective",
    "OBJECTIVES",
    "log_importance_weights",
]


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
    lie_group = False
    codebook = False
    controlled = False

    def __init__(self, **kwargs):
        pass

    def __call__(self, module, out, x=None):
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
    lie_group = False
    codebook = False
    controlled = False

    def __init__(self, dataset_size, tc_estimator="mss", **kwargs):
        self.dataset_size = int(dataset_size)
        self.tc_estimator = tc_estimator

    def __call__(self, module, out, x=None):
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


class ControlVAEObjective(BetaVAEObjective):
    """ControlVAE (Shao et al., ICML 2020): ``beta_t * KL`` with ``beta_t`` set every step
    by a PI controller (:class:`~sklearn_disentangle.cfasl.control.PIControllerCallback`)
    that drives the KL toward the target ``c``.

    Examples
    --------
    >>> from sklearn_disentangle.cfasl.objectives import ControlVAEObjective
    >>> ControlVAEObjective.controlled
    True
    """

    controlled = True


class CommutativeLieObjective:
    """Commutative Lie Group VAE (Zhu, Song, Shi, ICML 2021) as used by CFASL (spec 1.7).

    ``beta * KL + hes * L_hes + commute * L_comm + rec * L_rec`` with, for the Lie-algebra
    basis ``A_i`` (one ``m x m`` matrix per latent dimension),
    ``L_hes = sum_{i != j} ||A_i A_j||_F^2 / D^2`` (the Hessian penalty),
    ``L_comm = sum_{i != j} ||A_i A_j - A_j A_i||_F^2 / D^2`` (the commutator, as in the
    paper; the reference code uses ``A_i A_j - (A_i A_j)^T``) and
    ``L_rec = mean_b ||gE_b - gD_b||^2`` between the encoder's group features and the
    flattened group element ``expm(sum_i z_i A_i)``. ``beta`` is 1 in the reference.

    Examples
    --------
    >>> from sklearn_disentangle.cfasl.objectives import CommutativeLieObjective
    >>> CommutativeLieObjective().hes, CommutativeLieObjective().commute
    (40.0, 20.0)
    """

    weights = ("beta", "rec")
    lie_group = True
    codebook = False
    controlled = False

    def __init__(self, hes=40.0, commute=20.0, **kwargs):
        self.hes = float(hes)
        self.commute = float(commute)

    @staticmethod
    def basis_losses(basis):
        """``(L_hes, L_comm)`` of a Lie-algebra basis of shape (D, m, m)."""
        D = basis.shape[0]
        prod = torch.einsum("aij,bjk->abik", basis, basis)  # A_a A_b
        off = 1.0 - torch.eye(D, device=basis.device, dtype=basis.dtype)
        hes = (prod.pow(2).sum(dim=(-2, -1)) * off).sum() / D**2
        comm = ((prod - prod.transpose(0, 1)).pow(2).sum(dim=(-2, -1)) * off).sum() / D**2
        return hes, comm

    def __call__(self, module, out, x=None):
        kl = gaussian_kl(out["z_mean"], out["z_logvar"]).sum(dim=1).mean()
        hes, comm = self.basis_losses(module.lie_basis)
        group_rec = (out["group_enc"] - out["group_dec"]).pow(2).sum(dim=1).mean()
        penalty = module.beta * kl + self.hes * hes + self.commute * comm + module.rec * group_rec
        return penalty, {"kl": kl, "hessian": hes, "commutator": comm, "group_rec": group_rec}


class _CFASLMixin:
    """Adds the CFASL terms to a baseline objective (spec 1.5-1.6).

    ``alpha * (L_pd + L_pl + L_c + L_s) + gamma * L_p + lamb * L_ee + epsilon * L_de``,
    computed in training mode only (the evaluation loss, and so ``score``, is the
    baseline's ELBO-type objective, as the reference). The batch is paired first half vs
    second half (the loader shuffles); with an odd batch the last sample is left out of
    the pairs, with a single sample the pair terms are skipped.
    """

    codebook = True

    def __call__(self, module, out, x=None):
        penalty, terms = super().__call__(module, out, x)
        if not module.training:
            return penalty, terms
        cb = module.codebook
        z, mu, logvar = out["z"], out["z_mean"], out["z_logvar"]
        reg = cb.regularisers(z)
        block = reg["perpendicular"] + reg["parallel"] + reg["commutativity"] + reg["sparsity"]
        terms.update(reg)
        P = z.shape[0] // 2
        zero = z.sum() * 0.0
        if P >= 1 and x is not None:
            sl1, sl2 = slice(0, P), slice(P, 2 * P)
            pr = cb.pair(mu[sl1], logvar[sl1], mu[sl2], logvar[sl2], z[sl1], z[sl2])
            pred = cb.prediction_loss(pr["logits"], pr["label"])
            z2_back = act(z[sl2], pr["g_inv"])  # z2 g^-1 ~ z1
            z1_fwd = act(z[sl1], pr["g"])  # z1 g ~ z2
            enc_eq = (z2_back - z[sl1]).pow(2).mean() + (z1_fwd - z[sl2]).pow(2).mean()
            raw = module.decode_raw(torch.cat([z2_back, z1_fwd], dim=0))
            target = torch.cat([x[sl1], x[sl2]], dim=0)
            dec_eq = reconstruction_loss(raw, target, module.reconstruction).mean()
        else:
            pred = enc_eq = dec_eq = zero
        terms.update({"prediction": pred, "enc_equivariance": enc_eq, "dec_equivariance": dec_eq})
        penalty = (penalty + module.alpha * block + module.gamma * pred + module.lamb * enc_eq
                   + module.epsilon * dec_eq)
        return penalty, terms


class CFASLBetaVAEObjective(_CFASLMixin, BetaVAEObjective):
    """CFASL + beta-VAE: ``beta * KL`` plus the CFASL terms.

    Examples
    --------
    >>> from sklearn_disentangle.cfasl.objectives import CFASLBetaVAEObjective
    >>> CFASLBetaVAEObjective.codebook
    True
    """

    weights = ("beta", "alpha", "gamma", "lamb", "epsilon")


class CFASLBetaTCVAEObjective(_CFASLMixin, BetaTCVAEObjective):
    """CFASL + beta-TCVAE: ``MI + beta * TC + dwKL`` plus the CFASL terms.

    Examples
    --------
    >>> from sklearn_disentangle.cfasl.objectives import CFASLBetaTCVAEObjective
    >>> CFASLBetaTCVAEObjective(dataset_size=10).codebook
    True
    """

    weights = ("beta", "alpha", "gamma", "lamb", "epsilon")


class CFASLControlVAEObjective(_CFASLMixin, ControlVAEObjective):
    """CFASL + ControlVAE: PI-controlled ``beta_t * KL`` plus the CFASL terms.

    Examples
    --------
    >>> from sklearn_disentangle.cfasl.objectives import CFASLControlVAEObjective
    >>> CFASLControlVAEObjective.controlled and CFASLControlVAEObjective.codebook
    True
    """

    weights = ("beta", "alpha", "gamma", "lamb", "epsilon")


class CFASLCommutativeLieObjective(_CFASLMixin, CommutativeLieObjective):
    """CFASL + Commutative Lie Group VAE. The decoder-equivariance term decodes the
    *transformed* latents (through ``expm(sum_i z_i A_i)``); the reference decodes ``z``
    again, which only duplicates the reconstruction loss.

    Examples
    --------
    >>> from sklearn_disentangle.cfasl.objectives import CFASLCommutativeLieObjective
    >>> CFASLCommutativeLieObjective.lie_group and CFASLCommutativeLieObjective.codebook
    True
    """

    weights = ("beta", "rec", "alpha", "gamma", "lamb", "epsilon")


#: model_type -> objective class.
OBJECTIVES = {
    "betavae": BetaVAEObjective,
    "betatcvae": BetaTCVAEObjective,
    "controlvae": ControlVAEObjective,
    "commutativevae": CommutativeLieObjective,
    "cfasl_betavae": CFASLBetaVAEObjective,
    "cfasl_betatcvae": CFASLBetaTCVAEObjective,
    "cfasl_controlvae": CFASLControlVAEObjective,
    "cfasl_commutativevae": CFASLCommutativeLieObjective,
}
