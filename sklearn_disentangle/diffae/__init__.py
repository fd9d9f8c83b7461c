"""DiffAE3D: 2-D and 3-D diffusion autoencoders with a semantic latent (Preechakul et al. 2022;
Ometto, Chatterjee et al. 2024), with the UK Biobank cardiac pipeline's data conventions.

- :class:`DiffAE3D` (estimator.py): the scikit-learn estimator;
- model.py / unet.py / diffusion.py: the torch module, its networks, the noise schedule and DDIM;
- :class:`EMACallback`: exponential moving average of the weights;
- io.py: :class:`DiffAEVolumeReader` (HDF5 series to model input), :func:`write_latents` /
  :func:`read_latents` (``emb.h5`` and FID/IID TSV);
- folds.py: the paper's fold CSVs and :class:`FoldCSVSplit` (a scikit-learn splitter).
"""

from .callbacks import EMACallback
from .estimator import PRESETS, DiffAE3D
from .folds import FoldCSVSplit, make_folds, read_fold_csv, write_fold_csv
from .io import DiffAEVolumeReader, crop_or_pad, inverse_normal_transform, read_latents, write_latents

__all__ = [
    "DiffAE3D",
    "PRESETS",
    "EMACallback",
    "DiffAEVolumeReader",
    "crop_or_pad",
    "write_latents",
    "read_latents",
    "inverse_normal_transform",
    "FoldCSVSplit",
    "make_folds",
    "read_fold_csv",
    "write_fold_csv",
]
