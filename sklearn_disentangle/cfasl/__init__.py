"""CFASL (Jung et al., TMLR 2024) and its baseline VAEs: beta-VAE, beta-TCVAE, ControlVAE,
Commutative Lie Group VAE, each with or without the CFASL symmetry codebook."""

from .control import PIController, PIControllerCallback
from .estimator import CFASLVAE
from .objectives import OBJECTIVES
from .symmetry import SymmetryCodebook

__all__ = ["CFASLVAE", "OBJECTIVES", "PIController", "PIControllerCallback", "SymmetryCodebook"]
