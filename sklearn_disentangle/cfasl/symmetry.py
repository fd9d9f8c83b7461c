"""The CFASL symmetry codebook (Jung et al., TMLR 2024; spec ``cfasl_and_metrics.md`` 1.2-1.6).

Row-vector convention: a symmetry ``g`` (a ``D x D`` matrix) acts on a latent row vector
``z`` as ``z @ g``. The codebook holds ``S = D`` sections (one per latent dimension) of
``T = n_subsections`` learnable Lie-algebra matrices ``G[i, j]`` (elements of gl(D));
group elements are their matrix exponentials.

For a pair of samples ``(x1, x2)`` a linear *section switch* on
``[mu1, std1, mu2, std2]`` predicts, per section, whether that factor changed (trained by
cross-entropy against the pseudo-label ``|z1 - z2| > th``) and an attention over the
section's sub-sections; the composite Lie-algebra element is
``A = sum_ij switch_i * attn_ij * G[i, j]``, the forward symmetry ``g = expm(A)`` and the
inverse ``expm(-A)``.

The four codebook regularisers (parallel, perpendicular, commutativity, sparsity) are
module-level functions of the codes and the codebook so that they can be tested on
constructed codebooks.
"""

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "SymmetryCodebook",
    "change_vectors",
    "parallel_loss",
    "perpendicular_loss",
    "commutativity_loss",
    "sparsity_loss",
    "act",
]

_COS_EPS = 1e-12


def act(z, g):
    """Apply symmetries to latent rows: ``z @ g`` batched.

    Parameters
    ----------
    z : Tensor of shape (n, D)
    g : Tensor of shape (D, D) or (n, D, D)

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.cfasl.symmetry import act
    >>> act(torch.ones(2, 3), torch.eye(3) * 2).tolist()
    [[2.0, 2.0, 2.0], [2.0, 2.0, 2.0]]
    """
    if g.dim() == 2:
        return z @ g
    return torch.bmm(z.unsqueeze(1), g).squeeze(1)


def change_vectors(z, elements):
    """``Delta[i, j, b] = z_b - z_b S_ij``: how group element ``(i, j)`` moves sample ``b``.

    Parameters
    ----------
    z : Tensor of shape (B, D)
    elements : Tensor of shape (S, T, D, D)
        Group elements (matrix exponentials of the codebook).

    Returns
    -------
    Tensor of shape (S, T, B, D)

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.cfasl.symmetry import change_vectors
    >>> change_vectors(torch.ones(4, 3), torch.eye(3).expand(3, 2, 3, 3)).abs().sum().item()
    0.0
    """
    return z - torch.einsum("bd,stde->stbe", z, elements)


def _unit(v):
    return v / (v.norm(dim=-1, keepdim=True) + _COS_EPS)


def sparsity_loss(delta):
    """Mean over elements and samples of ``(sum_d Delta_d^2 - max_d Delta_d^2)^2``.

    Zero when every codebook element moves each code along a single coordinate.

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.cfasl.symmetry import sparsity_loss
    >>> sparsity_loss(torch.tensor([[[[0.0, 2.0, 0.0]]]])).item()
    0.0
    """
    sq = delta.pow(2)
    return (sq.sum(dim=-1) - sq.amax(dim=-1)).pow(2).mean()


def parallel_loss(delta):
    """Within each section, all change vectors should be (anti-)parallel.

    For section ``i`` the ``T * B`` change vectors are pooled; the loss is the mean over
    sections and all vector pairs (self-pairs included) of ``-log(cos^2 + 1e-9)``.
    Zero (up to ``1e-9``) when all changes of a section lie on one line.

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.cfasl.symmetry import parallel_loss
    >>> delta = torch.tensor([1.0, 0.0]).expand(2, 3, 4, 2)
    >>> round(parallel_loss(delta).item(), 6)
    -0.0
    """
    S, T, B, D = delta.shape
    u = _unit(delta.reshape(S, T * B, D))
    cos = torch.bmm(u, u.transpose(1, 2))
    return -torch.log(cos.pow(2) + 1e-9).mean()


def perpendicular_loss(delta, subsections=None):
    """Changes caused by different sections should be orthogonal.

    One sub-section ``j_i`` per section is used (drawn uniformly from
    ``range(n_subsections)`` unless ``subsections`` is given); the ``S * B`` change vectors
    ``Delta[i, j_i, b]`` are compared by squared cosine, same-section blocks are zeroed,
    and the loss is the mean over the whole ``(S B)^2`` matrix (zeros included), as the
    reference.

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.cfasl.symmetry import perpendicular_loss
    >>> delta = torch.eye(3)[:, None, None, :].expand(3, 2, 5, 3)
    >>> perpendicular_loss(delta).item()
    0.0
    """
    S, T, B, D = delta.shape
    if subsections is None:
        subsections = torch.randint(0, T, (S,), device=delta.device)
    chosen = delta[torch.arange(S, device=delta.device), subsections]  # (S, B, D)
    u = _unit(chosen.reshape(S * B, D))
    cos2 = (u @ u.T).pow(2)
    section = torch.arange(S, device=delta.device).repeat_interleave(B)
    other = (section[:, None] != section[None, :]).to(cos2.dtype)
    return (cos2 * other).mean()


def commutativity_loss(generators):
    """Mean over pairs ``a < b`` of ``||G_a G_b - G_b G_a||_F^2`` over ALL codebook elements.

    Vectorised: one batched product of all ``M x M`` pairs.

    Parameters
    ----------
    generators : Tensor of shape (..., D, D)
        Lie-algebra elements (flattened over the leading dimensions).

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.cfasl.symmetry import commutativity_loss
    >>> commutativity_loss(torch.diag_embed(torch.randn(4, 3))).item()
    0.0
    """
    D = generators.shape[-1]
    G = generators.reshape(-1, D, D)
    M = G.shape[0]
    if M < 2:
        return G.sum() * 0.0
    prod = torch.einsum("aij,bjk->abik", G, G)  # G_a G_b
    comm = prod - prod.transpose(0, 1)
    sq = comm.pow(2).sum(dim=(-2, -1))
    iu = torch.triu_indices(M, M, offset=1, device=G.device)
    return sq[iu[0], iu[1]].mean()


def _truncated_normal_(tensor, std=1.0, bound=2.0):
    with torch.no_grad():
        return nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-bound * std, b=bound * std)


class SymmetryCodebook(nn.Module):
    """Learnable codebook of factor-aligned symmetries and the pair section switch.

    Parameters
    ----------
    z_dim : int
        Latent dimension ``D`` (= number of sections).
    n_subsections : int, default=16
        Sub-symmetries per section (``T``).
    th : float, default=0.2
        Pseudo-label threshold: section ``i`` of a pair counts as changed when
        ``|z1_i - z2_i| > th``.
    gumbel_tau : float, default=1e-4
        Temperature of the Gumbel-softmax switch (the reference's value).
    init : {"truncated_normal", "small_normal"}, default="truncated_normal"
        Codebook initialisation: truncated normal (std ``init_std``, cut at +-2 std), the
        reference for the beta-VAE/beta-TCVAE/ControlVAE variants, or ``N(0, 1e-6)``
        (the Commutative Lie Group variant).
    init_std : float, default=1.0

    Attributes
    ----------
    generators : Parameter of shape (z_dim, n_subsections, z_dim, z_dim)
    selector : Linear(4 z_dim, (n_subsections + 2) z_dim)

    Examples
    --------
    >>> import torch
    >>> from sklearn_disentangle.cfasl.symmetry import SymmetryCodebook
    >>> cb = SymmetryCodebook(3, n_subsections=2)
    >>> cb.elements().shape
    torch.Size([3, 2, 3, 3])
    >>> z = torch.randn(4, 3)
    >>> sorted(cb.pair(z[:2], torch.zeros(2, 3), z[2:], torch.zeros(2, 3), z[:2], z[2:]))
    ['A', 'attention', 'g', 'g_inv', 'label', 'logits', 'switch']
    """

    def __init__(self, z_dim, n_subsections=16, th=0.2, gumbel_tau=1e-4, init="truncated_normal", init_std=1.0):
        super().__init__()
        self.z_dim = int(z_dim)
        self.n_subsections = int(n_subsections)
        self.th = float(th)
        self.gumbel_tau = float(gumbel_tau)
        D, T = self.z_dim, self.n_subsections
        self.generators = nn.Parameter(torch.empty(D, T, D, D))
        if init == "truncated_normal":
            _truncated_normal_(self.generators, std=init_std)
        elif init == "small_normal":
            with torch.no_grad():
                self.generators.normal_(0.0, 1e-6)
        else:
            raise ValueError(f"init must be 'truncated_normal' or 'small_normal', got {init!r}.")
        self.selector = nn.Linear(4 * D, (T + 2) * D)

    def elements(self):
        """Group elements ``expm(G[i, j])``, shape (D, T, D, D)."""
        return torch.linalg.matrix_exp(self.generators)

    def regularisers(self, z, subsections=None):
        """The four codebook regularisers on codes ``z`` (B, D): a dict of scalars."""
        delta = change_vectors(z, self.elements())
        return {
            "parallel": parallel_loss(delta),
            "perpendicular": perpendicular_loss(delta, subsections),
            "commutativity": commutativity_loss(self.generators),
            "sparsity": sparsity_loss(delta),
        }

    def pair(self, mu1, logvar1, mu2, logvar2, z1, z2):
        """Composite symmetry between paired samples (P pairs).

        Returns a dict: ``logits`` (P, D, 2) of the section switch, ``label`` (P, D) the
        pseudo-label, ``switch`` (P, D), ``attention`` (P, D, T), ``A`` (P, D, D) the
        composite Lie-algebra element, ``g = expm(A)`` and ``g_inv = expm(-A)``.
        """
        D, T = self.z_dim, self.n_subsections
        h = torch.cat([mu1, torch.exp(0.5 * logvar1), mu2, torch.exp(0.5 * logvar2)], dim=1)
        out = self.selector(h)
        logits = out[:, : 2 * D].reshape(-1, D, 2)
        sub_logits = out[:, 2 * D:].reshape(-1, D, T)
        label = ((z1 - z2).abs() > self.th).long()
        switch = F.gumbel_softmax(logits, tau=self.gumbel_tau, hard=False, dim=-1)[..., 1]
        attention = torch.softmax(sub_logits, dim=-1)
        weights = switch.unsqueeze(-1) * attention  # (P, D, T)
        A = torch.einsum("pst,stij->pij", weights, self.generators)
        return {
            "logits": logits,
            "label": label,
            "switch": switch,
            "attention": attention,
            "A": A,
            "g": torch.linalg.matrix_exp(A),
            "g_inv": torch.linalg.matrix_exp(-A),
        }

    @staticmethod
    def prediction_loss(logits, label):
        """Cross-entropy of the switch logits against the pseudo-label (clean version: on
        logits, not on softmax probabilities), summed over sections, mean over pairs."""
        P, D, _ = logits.shape
        return F.cross_entropy(logits.reshape(P * D, 2), label.reshape(P * D), reduction="sum") / max(P, 1)
