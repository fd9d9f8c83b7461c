"""Harmony: semantic content disentangled from parameterised transformations (Uddin et al., CVPR 2022).

- :mod:`.estimator`: :class:`HarmonyEstimator`, the scikit-learn transformer, and
  :func:`auto_gamma`, the reference's automatic ``gamma``;
- :mod:`.model`: the two-branch, shared-weight autoencoder with pose heads
  (:class:`~sklearn_disentangle.harmony.model.HarmonyModule`);
- :mod:`.warps`: differentiable rotation / shift / scale warps in plain torch (one
  resampling per warp; Rodrigues' formula for 3-D axis-angle rotations);
- :mod:`.search`: the exhaustive rotation search of ``pose_search`` (global grid, then
  local refinement, scored through sparse interpolation matrices) and the density centre
  that gives it a rotation-free shift.
"""

from .estimator import HarmonyEstimator, auto_gamma

__all__ = ["HarmonyEstimator", "auto_gamma"]
