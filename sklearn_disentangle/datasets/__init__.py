"""Ground-truth datasets generated in code, and loaders for real ones (no downloads)."""

from ._base import FactorGridDataset, GroundTruthDataset

__all__ = ["GroundTruthDataset", "FactorGridDataset"]
