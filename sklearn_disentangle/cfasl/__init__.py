"""CFASL (Jung et al., TMLR 2024) and its baseline VAEs: beta-VAE, beta-TCVAE."""

from .estimator import CFASLVAE
from .objectives import OBJECTIVES

__all__ = ["CFASLVAE", "OBJECTIVES"]
