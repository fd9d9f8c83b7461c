"""O2VAE: orientation-invariant VAE for cell and organelle morphology (Burgess et al., 2024).

- :mod:`.estimator`: :class:`O2VAE`, the scikit-learn transformer;
- :mod:`.model`: the invariant encoders (e2cnn O(2)-steerable, torch-only D4, plain CNN),
  the doubling decoder and the orientation-aligned VAE module;
- :mod:`.prealignment`: :class:`PrincipalAxisAligner`, the principal-axis prealignment
  baseline (a plain transformer, no model);
- :mod:`.registration`: batched Fourier/polar rotation and flip registration (plain torch);
- :mod:`._e2cnn_compat`: the runtime layer that makes e2cnn 0.2.3 work on NumPy 2
  (applied only when an e2cnn encoder is built).
"""

from .estimator import O2VAE
from .prealignment import PrincipalAxisAligner

__all__ = ["O2VAE", "PrincipalAxisAligner"]
