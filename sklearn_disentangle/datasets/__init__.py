"""Ground-truth datasets generated in code, and loaders for real ones (no downloads)."""

from ._base import FactorGridDataset, GroundTruthDataset
from .cryoem import CryoEMConformationDataset, make_cryoem_particles, make_subtomograms
from .digits import RotatedDigitsDataset, make_rotated_digits, rotate_images
from .loaders import DSpritesDataset, load_dsprites
from .sprites import SpritesDataset, make_dsprites_like
from .volumes import make_cardiac_volumes

__all__ = [
    "GroundTruthDataset",
    "FactorGridDataset",
    "SpritesDataset",
    "make_dsprites_like",
    "DSpritesDataset",
    "load_dsprites",
    "RotatedDigitsDataset",
    "make_rotated_digits",
    "rotate_images",
    "make_cryoem_particles",
    "make_subtomograms",
    "CryoEMConformationDataset",
    "make_cardiac_volumes",
]
