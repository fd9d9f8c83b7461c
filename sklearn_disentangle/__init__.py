"""sklearn-disentangle: disentangled and transformation-invariant representation learning
as scikit-learn estimators (PyTorch + skorch).

Estimators share one contract (:class:`~sklearn_disentangle.base.LatentTransformer`):
``fit`` / ``partial_fit`` / ``transform`` (latent codes) / ``inverse_transform``
(reconstructions) / ``score``. Ground-truth data generators live in
:mod:`sklearn_disentangle.datasets`.
"""

from .base import LatentTransformer, all_estimators
from .cfasl import CFASLVAE

__version__ = "0.1.0.dev0"

__all__ = ["LatentTransformer", "all_estimators", "CFASLVAE", "__version__"]
