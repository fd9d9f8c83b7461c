"""sklearn-disentangle: disentangled and transformation-invariant representation learning
as scikit-learn estimators (PyTorch + skorch).

Estimators share one contract (:class:`~sklearn_disentangle.base.LatentTransformer`):
``fit`` / ``partial_fit`` / ``transform`` (latent codes) / ``inverse_transform``
(reconstructions) / ``score``. Ground-truth data generators live in
:mod:`sklearn_disentangle.datasets`, disentanglement metrics and scorers in
:mod:`sklearn_disentangle.metrics`, cryo-EM and volume readers in :mod:`sklearn_disentangle.io`.
"""

from .base import LatentTransformer, all_estimators
from .cfasl import CFASLVAE
from .diffae import DiffAE3D
from .harmony import HarmonyEstimator
from .o2vae import O2VAE
from .opus_dsd import OpusDSD
from .metrics import (
    beta_vae_score,
    dci,
    evaluate,
    factor_vae_score,
    get_scorer,
    get_scorer_names,
    mfvm,
    mig,
    sap,
)
from .io import (
    HDF5VolumeReader,
    MRCReader,
    ParticleStack,
    StarReader,
    parse_ctf,
    parse_poses,
    read_mrc,
    read_star,
    write_mrc,
    write_star,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "LatentTransformer",
    "all_estimators",
    "CFASLVAE",
    "DiffAE3D",
    "HarmonyEstimator",
    "O2VAE",
    "OpusDSD",
    "ParticleStack",
    "MRCReader",
    "StarReader",
    "HDF5VolumeReader",
    "read_mrc",
    "write_mrc",
    "read_star",
    "write_star",
    "parse_poses",
    "parse_ctf",
    "mig",
    "sap",
    "dci",
    "factor_vae_score",
    "beta_vae_score",
    "mfvm",
    "evaluate",
    "get_scorer",
    "get_scorer_names",
    "__version__",
]
