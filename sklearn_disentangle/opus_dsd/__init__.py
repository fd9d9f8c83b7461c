"""OPUS-DSD: structural disentanglement of cryo-EM particles into a latent space and 3-D volumes.

:class:`OpusDSD` (the estimator), its torch model (:mod:`.model`), the geometry it adds to the
shared cryo-EM kernels (:mod:`.geometry`) and the post-training analysis (:mod:`.analysis`).
"""
from .analysis import (
    analyze, cluster_latents, latent_trajectory, pc_trajectory, plot_latent_map, write_cluster_stars,
    write_volume_series,
)
from .estimator import OpusDSD, OpusSchedule
from .model import bfactor_at_epoch, cyclic_beta

__all__ = [
    "OpusDSD", "OpusSchedule", "analyze", "cluster_latents", "pc_trajectory", "latent_trajectory",
    "plot_latent_map", "write_cluster_stars", "write_volume_series", "cyclic_beta", "bfactor_at_epoch",
]
