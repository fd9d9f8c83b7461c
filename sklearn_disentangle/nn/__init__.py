"""Torch building blocks shared by the methods' models (no sklearn, no I/O).

- :mod:`.base`: :class:`LatentModule`, the model contract (encode / decode / forward / loss);
- :mod:`.blocks`: the convolutional encoder/decoder family of the disentanglement literature
  (Burgess et al. 2018 / FactorVAE style, 4 stride-2 convs at 64 px, scaled to other sizes)
  and MLPs for flat inputs;
- :mod:`.losses`: Gaussian KL and log-densities, Bernoulli and Gaussian reconstruction.
"""

from .base import LatentModule
from .blocks import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder, make_decoder, make_encoder
from .losses import gaussian_kl, log_normal_pdf, reconstruction_loss

__all__ = [
    "LatentModule",
    "ConvEncoder",
    "ConvDecoder",
    "MLPEncoder",
    "MLPDecoder",
    "make_encoder",
    "make_decoder",
    "gaussian_kl",
    "log_normal_pdf",
    "reconstruction_loss",
]
