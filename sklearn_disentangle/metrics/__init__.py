"""Disentanglement metrics and scikit-learn scorers.

Functions take the ground-truth factors first and the codes second (NumPy arrays or
DataFrames of shape ``(n_samples, n_factors)`` and ``(n_samples, n_codes)``) and follow
the reference definitions of disentanglement_lib (Locatello et al., 2019):

- :func:`mig` -- Mutual Information Gap (Chen et al., 2018);
- :func:`sap` -- Separated Attribute Predictability (Kumar et al., 2018);
- :func:`dci` -- disentanglement, completeness, informativeness (Eastwood & Williams, 2018);
- :func:`factor_vae_score` -- FactorVAE score (Kim & Mnih, 2018), pool form;
- :func:`beta_vae_score` -- beta-VAE score (Higgins et al., 2017), pool form;
- :func:`mfvm` -- multi-factor FactorVAE metric mFVM_k (Jung et al., 2024), pool form;
- :func:`evaluate` -- all of them in the generator form, sampling a
  :class:`~sklearn_disentangle.datasets.GroundTruthDataset` as the reference does.

Scorers for ``GridSearchCV`` / ``cross_val_score`` / skorch's ``EpochScoring`` come from
:func:`get_scorer` and :func:`get_scorer_names`.
"""

from ._discretize import discrete_entropy, discrete_mutual_info, histogram_discretize
from ._evaluate import DLIB_DEFAULTS, FAST_DEFAULTS, evaluate
from .beta_vae import beta_vae_score
from .dci import dci, dci_from_importance
from .factor_vae import factor_vae_score
from .mfvm import mfvm
from .mig import mig
from .sap import sap, sap_score_matrix
from .scorers import (
    EpochScorer,
    InterventionalScorer,
    TransformAdapter,
    dci_disentanglement,
    get_scorer,
    get_scorer_names,
)

__all__ = [
    "mig",
    "sap",
    "sap_score_matrix",
    "dci",
    "dci_from_importance",
    "dci_disentanglement",
    "factor_vae_score",
    "beta_vae_score",
    "mfvm",
    "evaluate",
    "DLIB_DEFAULTS",
    "FAST_DEFAULTS",
    "histogram_discretize",
    "discrete_mutual_info",
    "discrete_entropy",
    "get_scorer",
    "get_scorer_names",
    "InterventionalScorer",
    "TransformAdapter",
    "EpochScorer",
]
